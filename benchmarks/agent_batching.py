"""``agent_step_batching_speedup``: agent steps per second when a batch of agents advance in
lockstep (every unfinished agent's next step in one engine call, what ``Agent.run`` does with a
list of tasks) divided by agent steps per second running the same agents one at a time, on the
same engine, in the same run.

The model is the embedded SmolLM2-135M-Instruct on the ``hf`` engine, with no generation cache
(every step is generated); the engine's prefix cache and its decoding loop (finished rows leave
the batch) serve both sides alike: one agent at a time reuses the system prompt's cache too. The
agent has three tools (a calculator, a unit converter, a lookup in a small table),
``max_steps=3``, ``max_tokens=48`` and ``tool_choice="required"`` (as the toolbox suite: the
first reply calls a tool; replies are constrained to the text protocol's JSON where the engine
can, as by default). It runs ``--tasks`` tasks (32: the 16 below twice) on an engine whose batch
holds them all (``batch_size=--tasks``; in a suite, ``--aie-engine-options batch_size=32``:
``--aie-batch-size`` sets the requests per engine call, not the hf engine's micro-batch). Fewer agents per
batch gain less on a CPU: 16 gave 2.84 where 32 gave 5.3-5.5 (2026-11-28), as the cost of a
decoding step grows far more slowly than its rows, and a lockstep round lasts as long as its
longest reply. The engine is loaded and warmed up first; both sides time the agent loop only,
tool calls and prompt building included, and count the steps they really took.

The two sides are interleaved so that a shared machine's load falls on both alike: in each of
``--chunks`` (4) chunks, one batched run of all the tasks, then a quarter of the tasks one agent
at a time; over the chunks every task runs alone once. The figure is the median over the chunks
of each chunk's ratio (a load spike in one chunk does not decide it); the steps per second of
each side, pooled over the chunks, are printed too.

    .venv/bin/python benchmarks/agent_batching.py [--tasks 32] [--chunks 4]
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import statistics
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


def tokens(trajectories: list[Any]) -> str:
    """Mean prompt and completion tokens per step, and the steps that used all of max_tokens."""
    steps = [s for t in trajectories for s in t.steps]
    prompt = sum(s.prompt_tokens or 0 for s in steps) / max(len(steps), 1)
    completion = [s.completion_tokens or 0 for s in steps]
    return (f"{prompt:.0f} prompt and {sum(completion) / max(len(steps), 1):.1f} completion "
            f"tokens per step (completions {min(completion, default=0)}-"
            f"{max(completion, default=0)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=4,
                        help="the one-at-a-time agents run in this many chunks, each after a "
                             "batched run of all the tasks")
    parser.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args()

    from pytest_aie.agent import Agent
    from pytest_aie.engines.hf import HFEngine
    from pytest_aie.run.model import Model

    tasks = [TASKS[i % len(TASKS)] for i in range(args.tasks)]
    engine = HFEngine(batch_size=args.tasks)
    model = Model("default", "hf", "", engine_obj=engine, progress=lambda _m: None)
    agent = Agent([calculate, convert, capital], max_steps=3, max_seconds=600,
                  max_tokens=args.max_tokens, tool_choice="required", name="bench")
    started = time.perf_counter()
    agent.run(model, tasks[:1])  # load and warm up the engine
    print(f"agent_batching: engine loaded and warmed up in {time.perf_counter() - started:.1f} s "
          f"(protocol {agent._protocol(model)})", file=sys.stderr)

    # Interleaved, so that both sides see the same load on a shared machine: each chunk is a
    # batched run of every task, then a slice of the tasks one agent at a time; over the chunks
    # every task runs alone once.
    steps_b = steps_s = 0
    took_b = took_s = 0.0
    batched_runs: list[Any] = []
    alone: list[Any] = []
    ratios: list[float] = []
    size = -(-len(tasks) // args.chunks)
    for chunk in range(args.chunks):
        n, took, trajs = run(agent, model, tasks)
        steps_b, took_b = steps_b + n, took_b + took
        batched_runs.extend(trajs)
        n_s, took_chunk = 0, 0.0
        for task in tasks[chunk * size:(chunk + 1) * size]:
            n1, took1, one = run(agent, model, [task])
            n_s, took_chunk = n_s + n1, took_chunk + took1
            alone.extend(one)
        steps_s, took_s = steps_s + n_s, took_s + took_chunk
        ratios.append((n / took) / (n_s / took_chunk))
        print(f"agent_batching: chunk {chunk + 1}: batched {n} steps in {took:.1f} s "
              f"({engine_rounds(trajs)} engine calls), one at a time {n_s} steps in "
              f"{took_chunk:.1f} s: ratio {ratios[-1]:.2f}", file=sys.stderr)
    for label, trajs in (("batched", batched_runs), ("one at a time", alone)):
        print(f"agent_batching: {label}: {tokens(trajs)}; "
              f"stopped {dict(Counter(t.stopped for t in trajs))}", file=sys.stderr)
    batched, serial = steps_b / took_b, steps_s / took_s
    print(f"agent_batching: all chunks pooled: {batched / serial:.2f}", file=sys.stderr)
    print(f"agent_steps_per_s_batched: {batched:.3f}")
    print(f"agent_steps_per_s_serial: {serial:.3f}")
    print(f"agent_step_batching_speedup: {statistics.median(ratios):.2f}")


def engine_rounds(trajectories: list[Any]) -> int:
    """Engine calls of a lockstep run: one per step of the longest trajectory."""
    return max((len(t.steps) for t in trajectories), default=0)


if __name__ == "__main__":
    main()
