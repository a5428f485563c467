"""``agent_step_batching_speedup``: agent steps per second when a batch of agents advance in
lockstep (every unfinished agent's next step in one engine call, what ``Agent.run`` does with a
list of tasks) divided by agent steps per second running the same agents one at a time, on the
same engine, in the same run.

The model is the embedded SmolLM2-135M-Instruct on the ``hf`` engine (no generation cache, so
every step is generated); the agent has three tools (a calculator, a unit converter, a lookup in
a small table), ``max_steps=3`` and ``max_tokens=48``, and runs ``--tasks`` tasks (16). The
batched side runs all of them as one batch; the other side runs the first ``--serial`` of them (8)
one agent at a time (steps per second is a rate). Both sides time the agent loop only (the
engine is loaded and warmed up first), tool calls and prompt building included. The embedded
model is a poor agent (most of its replies are not protocol JSON), so a run's steps are what the
model makes of it; both sides count the steps they really took.

    .venv/bin/python benchmarks/agent_batching.py [--tasks 16] [--serial 16]
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import sys
import time
from collections import Counter
from typing import Any, Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.USub: operator.neg}


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / and parentheses.

    Args:
        expression: the expression, e.g. "17 * 23"
    """
    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](walk(node.operand)))
        raise ValueError(f"not arithmetic: {ast.unparse(node)}")

    return round(walk(ast.parse(expression, mode="eval").body), 6)


def convert(value: float, from_unit: Literal["km", "mi", "kg", "lb"],
            to_unit: Literal["km", "mi", "kg", "lb"]) -> float:
    """Convert a value between units: km and mi, kg and lb.

    Args:
        value: the number to convert
        from_unit: the unit it is in
        to_unit: the unit wanted
    """
    factors = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623,
               ("lb", "kg"): 0.453592}
    if (from_unit, to_unit) not in factors:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return round(value * factors[(from_unit, to_unit)], 2)


def capital(country: str) -> str:
    """The capital city of a country.

    Args:
        country: the country's English name
    """
    table = {"japan": "Tokyo", "france": "Paris", "canada": "Ottawa", "brazil": "Brasília"}
    return table[country.strip().lower()]


TASKS = [
    "What is 17 times 23?", "Convert 10 km to miles.", "What is the capital of Japan?",
    "What is 144 divided by 12?", "How many pounds is 5 kg?", "What is the capital of France?",
    "What is 250 minus 75?", "Convert 26.2 miles to km.", "What is the capital of Canada?",
    "What is 9 plus 16?", "How many kg is 150 lb?", "What is the capital of Brazil?",
    "What is 12 squared?", "Convert 42 km to miles.", "What is 3.5 times 4?",
    "How many pounds is 70 kg?",
]


def run(agent: Any, model: Any, tasks: list[str]) -> tuple[int, float, list[Any]]:
    started = time.perf_counter()
    trajectories = agent.run(model, tasks)
    took = time.perf_counter() - started
    return sum(len(t.steps) for t in trajectories), took, trajectories


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--serial", type=int, default=8,
                        help="how many of the agents to run one at a time (a rate)")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    from pytest_aie.agent import Agent
    from pytest_aie.engines.hf import HFEngine
    from pytest_aie.model import Model

    tasks = [TASKS[i % len(TASKS)] for i in range(args.tasks)]
    engine = HFEngine(batch_size=args.tasks)
    model = Model("default", "hf", "", engine_obj=engine, progress=lambda _m: None)
    agent = Agent([calculate, convert, capital], max_steps=3, max_seconds=600,
                  max_tokens=args.max_tokens, name="bench")
    started = time.perf_counter()
    agent.run(model, tasks[:1])  # load and warm up the engine
    print(f"agent_batching: engine loaded and warmed up in {time.perf_counter() - started:.1f} s "
          f"(protocol {agent._protocol(model)})", file=sys.stderr)

    steps_b, took_b, trajs = run(agent, model, tasks)
    print(f"agent_batching: batched {len(tasks)} agents: {steps_b} steps in {took_b:.1f} s, "
          f"{engine_rounds(trajs)} engine calls; stopped {dict(Counter(t.stopped for t in trajs))}",
          file=sys.stderr)
    steps_s, took_s = 0, 0.0
    for task in tasks[:args.serial]:
        n, took, _ = run(agent, model, [task])
        steps_s += n
        took_s += took
    print(f"agent_batching: one at a time {args.serial} agents: {steps_s} steps in {took_s:.1f} s",
          file=sys.stderr)
    batched, serial = steps_b / took_b, steps_s / took_s
    print(f"agent_steps_per_s_batched: {batched:.3f}")
    print(f"agent_steps_per_s_serial: {serial:.3f}")
    print(f"agent_step_batching_speedup: {batched / serial:.2f}")


def engine_rounds(trajectories: list[Any]) -> int:
    """Engine calls of a lockstep run: one per step of the longest trajectory."""
    return max((len(t.steps) for t in trajectories), default=0)


if __name__ == "__main__":
    main()
