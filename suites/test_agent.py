"""An agent with three tools (a calculator, a lookup in a small table, a unit converter) and one
tool that changes state (sending an email, refused in eval runs), on the embedded model.

``target=AGENT`` runs every task of ``agent/tasks.jsonl`` as one batch: all unfinished agents
advance one step per engine call. The model's tool calls go through the engine's native tool
calling where it has one, else through the agent's text protocol. Each case's trajectory (every
step's reply, tool call, arguments, result or error, tokens and time) is in the results log and
shown step by step in the report.

The evals: task success by content (``exact``), and the agent checks: an answer within the
budgets, the expected tools in order, arguments valid against each tool's schema, no loops, the
steps used. A 135M-parameter model is a poor agent; the point is that the harness measures it
correctly.
"""

from __future__ import annotations

import ast
import operator
from typing import Literal

import pytest

from pytest_aie.agent import Agent, tool

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
        ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg}


def calculate(expression: str) -> float:
    """Evaluate an arithmetic expression with + - * / ** and parentheses.

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


TABLE = {
    "japan": {"capital": "Tokyo", "population": "125 million", "currency": "yen"},
    "brazil": {"capital": "Brasília", "population": "203 million", "currency": "real"},
    "canada": {"capital": "Ottawa", "population": "40 million", "currency": "Canadian dollar"},
    "france": {"capital": "Paris", "population": "68 million", "currency": "euro"},
}


def lookup(country: str, field: Literal["capital", "population", "currency"]) -> str:
    """Look up a fact about a country in a small table.

    Args:
        country: the country's English name, e.g. "Japan"
        field: which fact: capital, population or currency
    """
    row = TABLE.get(country.strip().lower())
    if row is None:
        raise KeyError(f"no country {country!r} in the table; known: {sorted(TABLE)}")
    return row[field]


_FACTORS = {("km", "mi"): 0.621371, ("mi", "km"): 1.609344, ("kg", "lb"): 2.204623,
            ("lb", "kg"): 0.453592}


def convert(value: float, from_unit: Literal["km", "mi", "kg", "lb", "C", "F"],
            to_unit: Literal["km", "mi", "kg", "lb", "C", "F"]) -> float:
    """Convert a value between units: km and mi, kg and lb, C and F.

    Args:
        value: the number to convert
        from_unit: the unit it is in
        to_unit: the unit wanted
    """
    if (from_unit, to_unit) == ("C", "F"):
        return round(value * 9 / 5 + 32, 2)
    if (from_unit, to_unit) == ("F", "C"):
        return round((value - 32) * 5 / 9, 2)
    if (from_unit, to_unit) not in _FACTORS:
        raise ValueError(f"cannot convert {from_unit} to {to_unit}")
    return round(value * _FACTORS[(from_unit, to_unit)], 2)


@tool(changes_state=True)
def send_email(to: str, body: str) -> str:
    """Send an email.

    Args:
        to: the recipient's address
        body: the message
    """
    raise AssertionError("an eval run must never send email")  # refused before it is called


# tool_choice="required": the first reply must call a tool (the 135M model otherwise answers
# from memory every time); on the hf engine replies are constrained to the protocol's JSON
AGENT = Agent([calculate, lookup, convert, send_email], max_steps=4, max_seconds=600,
              max_tokens=128, tool_choice="required", name="toolbox")


@pytest.mark.dataset("agent/tasks.jsonl", target=AGENT)
@pytest.mark.exact("contains", normalize="all", min_pass_rate=0.25)
@pytest.mark.agent("success", min_pass_rate=0.5)
@pytest.mark.agent("tool_calls", match="in_order", min_pass_rate=0.3)
@pytest.mark.agent("arguments", min_pass_rate=0.8)
@pytest.mark.agent("loops", min_pass_rate=0.9)
@pytest.mark.agent("steps", max=4)
def test_toolbox_agent(case, output):
    assert output.trajectory is not None
