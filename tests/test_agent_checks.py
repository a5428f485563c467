"""The agent evals: each trajectory check on hand-written trajectory dicts, one failure mode at a
time (wrong tool, missing call, wrong order, extra calls, bad arguments, unknown tool, loop, no
progress, a tool that raised, a refused state-changing tool, budget exceeded), the ``agent``
marker's scores and errors, and whole pytest runs with a batch target whose generations carry
trajectories: gates passing and failing, and unmeasured cases without a trajectory."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest
from scripted_suite import read_records

from pytest_aie.agent import checks
from pytest_aie.agent.checks import (
    expected_calls,
    find_loops,
    invalid_arguments,
    match_calls,
    no_progress,
    refusals,
    tool_errors,
    tool_sequence,
)
from pytest_aie.agent.scorer import NO_TRAJECTORY, build_agent_scorer
from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation, Request
from pytest_aie.errors import EXIT_HARNESS_ERROR, DatasetError, UsageError
from pytest_aie.scorers.base import Sample, Score
from pytest_aie.suite.markers import EVAL_MARKERS, MARKER_HELP

# ---------------------------------------------------------------------------- trajectories


def _fn(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": f"the {name} tool",
        "parameters": {"type": "object", "properties": properties, "required": required,
                       "additionalProperties": False}}}


UNITS = {"type": "string", "enum": ["km", "mi", "kg", "lb"]}
TOOLS = [
    _fn("calculate", {"expression": {"type": "string"}}, ["expression"]),
    _fn("lookup", {"country": {"type": "string"},
                   "field": {"type": "string", "enum": ["capital", "population", "currency"]}},
        ["country", "field"]),
    _fn("convert", {"value": {"type": "number"}, "from_unit": UNITS, "to_unit": UNITS},
        ["value", "from_unit", "to_unit"]),
    _fn("send_email", {"to": {"type": "string"}, "body": {"type": "string"}}, ["to", "body"]),
]


def call(tool: str, arguments: Any = None, result: str | None = "ok", error: str | None = None,
         refused: bool = False, tokens: tuple[int | None, int | None] = (100, 10)) -> dict[str, Any]:
    """A step that calls a tool (index filled in by :func:`traj`)."""
    return {"index": -1, "output": json.dumps({"tool": tool, "arguments": arguments}),
            "tool": tool, "arguments": {} if arguments is None else arguments,
            "result": None if error or refused else result, "error": error, "refused": refused,
            "prompt_tokens": tokens[0], "completion_tokens": tokens[1], "seconds": 0.01}


def reply(output: str, error: str | None = None,
          tokens: tuple[int | None, int | None] = (100, 10)) -> dict[str, Any]:
    """A step without a tool call: the final answer, or an unreadable reply (with an error)."""
    return {"index": -1, "output": output, "tool": None, "arguments": None, "result": None,
            "error": error, "refused": False, "prompt_tokens": tokens[0],
            "completion_tokens": tokens[1], "seconds": 0.01}


def traj(*steps: dict[str, Any], answer: str | None = "done", stopped: str | None = None,
         error: str | None = None) -> dict[str, Any]:
    """A trajectory of ``steps``; with an ``answer`` (the default) a final answer step is added
    and the run stopped with it, else it stopped at ``stopped`` (default max_steps)."""
    rows = [dict(s) for s in steps]
    if answer is not None:
        rows.append(reply(answer))
    for i, s in enumerate(rows):
        s["index"] = i
    return {"task": "a task", "protocol": "text", "tools": TOOLS, "state_changing": ["send_email"],
            "steps": rows, "answer": answer,
            "stopped": "answer" if answer is not None else (stopped or "max_steps"),
            "error": None if answer is not None else (error or f"no answer after {len(rows)} steps"),
            "prompt_tokens": sum(s["prompt_tokens"] or 0 for s in rows),
            "completion_tokens": sum(s["completion_tokens"] or 0 for s in rows),
            "seconds": 0.01 * len(rows)}


JAPAN = {"country": "Japan", "field": "capital"}
KM = {"value": 10, "from_unit": "km", "to_unit": "mi"}


# ---------------------------------------------------------------------------- the calls made


def said_once(result: pytest.RunResult, text: str) -> bool:
    """``text`` is on exactly one line of the run's output, pytest's short test summary left
    out: that repeats an error's message, cut to the terminal's width, so whether it holds
    ``text`` depends on the length of the run's temporary path."""
    return sum(text in line for line in result.stdout.lines if not line.startswith("ERROR ")) == 1


def test_tool_sequence_lists_every_call_made_and_nothing_else() -> None:
    t = traj(reply("hmm", error="unparseable reply"), call("lookup", JAPAN, "Tokyo"),
             call("nope", {"x": 1}, error="unknown tool 'nope'"),
             call("send_email", {"to": "a", "body": "b"}, refused=True,
                  error="refused: send_email changes state"))
    assert tool_sequence(t) == [{"index": 1, "tool": "lookup", "arguments": JAPAN},
                                {"index": 2, "tool": "nope", "arguments": {"x": 1}},
                                {"index": 3, "tool": "send_email", "arguments": {"to": "a", "body": "b"}}]
    assert tool_sequence(traj()) == []


@pytest.mark.parametrize("actual, expected, mode, matched, mismatch", [
    # the same calls
    (["calculate", "lookup"], ["calculate", "lookup"], "exact", True, None),
    # wrong tool
    (["lookup"], ["calculate"], "exact", False, "call 1 (step 0): expected calculate, got lookup"),
    (["lookup"], ["calculate"], "in_order", False,
     "expected call 1 calculate: no call to calculate; calls made: lookup"),
    (["lookup"], ["calculate"], "subset", False,
     "expected call 1 calculate: no call to calculate; calls made: lookup"),
    # a missing call
    (["calculate"], ["calculate", "convert"], "exact", False,
     "missing call 2: expected convert; the agent made only 1"),
    (["calculate"], ["calculate", "convert"], "in_order", False,
     "expected call 2 convert: no call to convert; calls made: calculate"),
    (["calculate"], ["calculate", "convert"], "subset", False,
     "expected call 2 convert: no call to convert; calls made: calculate"),
    ([], ["calculate"], "in_order", False,
     "expected call 1 calculate: no call to calculate; the agent made no calls"),
    # the wrong order
    (["convert", "lookup"], ["lookup", "convert"], "exact", False,
     "call 1 (step 0): expected lookup, got convert (lookup is call 2 (step 1): wrong order)"),
    (["convert", "lookup"], ["lookup", "convert"], "in_order", False,
     "expected call 2 convert: wrong order: it was made as call 1 (step 0), before call 2 "
     "(step 1) lookup that matched an earlier expected call"),
    (["convert", "lookup"], ["lookup", "convert"], "subset", True, None),
    # extra calls: only exact refuses them
    (["calculate", "convert", "lookup"], ["calculate", "convert"], "exact", False,
     "extra call 3 (step 2): lookup() (expected only 2 calls)"),
    (["calculate", "convert", "lookup"], ["calculate", "convert"], "in_order", True, None),
    (["lookup", "calculate", "lookup", "convert"], ["calculate", "convert"], "in_order", True, None),
    (["calculate", "convert", "lookup"], ["lookup", "calculate"], "subset", True, None),
    (["calculate"], [], "exact", False, "extra call 1 (step 0): calculate() (expected only 0 calls)"),
    (["calculate"], [], "in_order", True, None),
    ([], [], "exact", True, None),
    # an expected call made fewer times than expected
    (["lookup"], ["lookup", "lookup"], "in_order", False,
     "expected call 2 lookup: only 1 such call made, each matched by an earlier expected call"),
    (["lookup", "calculate"], ["lookup", "lookup"], "subset", False,
     "expected call 2 lookup: only 1 such call made, each matched by another expected call"),
    (["lookup", "calculate", "lookup"], ["lookup", "lookup"], "subset", True, None),
])
def test_match_calls_by_name(actual: list[str], expected: list[str], mode: str, matched: bool,
                             mismatch: str | None) -> None:
    calls = tool_sequence(traj(*(call(name) for name in actual)))
    got = match_calls(calls, expected, mode)
    assert (got.matched, got.mismatch) == (matched, mismatch)
    assert len(got.pairs) == len(expected)
    if matched:  # each expected call is paired with a call of that tool, none twice
        assert [calls[k]["tool"] for k in got.pairs if k is not None] == list(expected)
        assert len(set(got.pairs)) == len(got.pairs)
        if mode != "subset":
            assert list(got.pairs) == sorted(got.pairs)  # type: ignore[type-var]


def test_subset_matching_finds_a_pairing_where_greedy_would_not() -> None:
    # the first call fits both expected calls, the second only the first one: a greedy pass
    # would give call 1 to the first expected call and find nothing for the second
    calls = [{"tool": "convert", "arguments": KM},
             {"tool": "convert", "arguments": {**KM, "value": 3}}]
    expected = [{"tool": "convert"}, {"tool": "convert", "arguments": {"value": 10}}]
    got = match_calls(calls, expected, "subset")
    assert got.matched and got.pairs == (1, 0)


@pytest.mark.parametrize("arguments, expected, mismatch", [
    (KM, {"value": 10, "to_unit": "mi"}, None),  # a subset of the arguments
    ({**KM, "value": 10.0000000001}, {"value": 10}, None),  # numbers within the tolerance
    ({**KM, "value": 10.5}, {"value": 10}, "'value' is 10.5, expected 10"),
    ({"value": 10, "to_unit": "mi"}, KM, "'from_unit' is missing (expected \"km\")"),
    ({**KM, "to_unit": "kg"}, KM, "'to_unit' is \"kg\", expected \"mi\""),
    ({**KM, "value": True}, {"value": 1}, "'value' is true, expected 1"),  # a bool is no number
    ({"q": {"a": [1, 2.0000000001]}}, {"q": {"a": [1, 2]}}, None),  # nested, lists by item
    ({"q": {"a": [1, 3]}}, {"q": {"a": [1, 2]}}, "'q.a[1]' is 3, expected 2"),
    ({"q": {"a": [1]}}, {"q": {"a": [1, 2]}}, "'q.a' is [1], expected [1, 2]"),
    ('{"value": 10', {"value": 10}, "its arguments are not a JSON object: convert('{\"value\": 10')"),
])
def test_match_calls_compares_arguments_as_a_subset(arguments: Any, expected: dict[str, Any],
                                                    mismatch: str | None) -> None:
    calls = [{"index": 0, "tool": "convert", "arguments": arguments}]
    want = [{"tool": "convert", "arguments": expected}]
    for mode in ("exact", "in_order", "subset"):
        got = match_calls(calls, want, mode)
        assert got.matched is (mismatch is None), mode
        if mismatch is not None:
            assert got.mismatch is not None and got.mismatch.endswith(mismatch), (mode, got)
            assert "convert" in got.mismatch
    assert match_calls(calls, ["convert"], "exact").matched  # a bare name takes any arguments


def test_tolerance_is_an_option() -> None:
    calls = [{"tool": "convert", "arguments": {"value": 6.2}}]
    want = [{"tool": "convert", "arguments": {"value": 6.21}}]
    assert not match_calls(calls, want).matched
    assert match_calls(calls, want, tolerance=0.01).matched


def test_expected_calls_are_read_strictly() -> None:
    assert expected_calls(["a", {"tool": "b"}, {"tool": "c", "arguments": {"x": 1}}]) == [
        {"tool": "a", "arguments": None}, {"tool": "b", "arguments": None},
        {"tool": "c", "arguments": {"x": 1}}]
    assert expected_calls('["a", {"tool": "b"}]') == expected_calls(["a", "b"])  # from a CSV
    for bad, message in [("a", "not a JSON list"), ({"tool": "a"}, "must be a list"),
                         ([{"name": "a"}], "item 0"), ([""], "item 0"), ([3], "item 0"),
                         ([{"tool": "a", "arguments": [1]}], "item 0"),
                         ([{"tool": "a", "args": {}}], "item 0")]:
        with pytest.raises(ValueError, match=message):
            expected_calls(bad)
    with pytest.raises(ValueError, match="unknown match mode 'fuzzy'"):
        match_calls([], [], "fuzzy")


# ---------------------------------------------------------------------------- arguments


def _jsonschema_message(tool: str, arguments: dict[str, Any]) -> str:
    schema = next(t["function"]["parameters"] for t in TOOLS if t["function"]["name"] == tool)
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(arguments))
    assert error is not None
    return str(error.message)


def test_invalid_arguments_against_each_tools_schema() -> None:
    bad_field = {"country": "Japan", "field": "capitol"}
    wrong_type = {"value": "ten", "from_unit": "km", "to_unit": "mi"}
    t = traj(call("lookup", JAPAN, "Tokyo"), call("lookup", bad_field, error="invalid"),
             call("convert", wrong_type, error="invalid"), call("lookup", {"country": "Japan"}),
             call("calculate", {"expression": "1+1", "extra": 1}),
             call("weather", {"city": "Paris"}, error="unknown tool 'weather'"),
             call("calculate", "1+1", error="not a JSON object"))
    bad = invalid_arguments(t)
    assert [b["index"] for b in bad] == [1, 2, 3, 4, 5, 6]
    errors = [b["error"] for b in bad]
    assert errors[0] == f"invalid arguments at 'field': {_jsonschema_message('lookup', bad_field)}"
    assert "'capitol' is not one of" in errors[0]
    assert errors[1] == f"invalid arguments at 'value': {_jsonschema_message('convert', wrong_type)}"
    assert errors[2] == "invalid arguments: 'field' is a required property"
    assert "Additional properties are not allowed ('extra'" in errors[3]
    assert errors[4] == ("unknown tool 'weather'; the agent was offered: calculate, convert, "
                         "lookup, send_email")
    assert errors[5] == "arguments must be a JSON object, got calculate('1+1')"
    assert bad[0]["tool"] == "lookup" and bad[0]["arguments"] == bad_field
    assert invalid_arguments(traj(call("lookup", JAPAN), call("convert", KM))) == []


def test_schemas_in_a_bare_format_and_a_broken_schema() -> None:
    t = traj(call("f", {"n": "x"}))
    t["tools"] = [{"name": "f", "parameters": {"type": "object",
                                               "properties": {"n": {"type": "integer"}}}}]
    assert invalid_arguments(t)[0]["error"] == "invalid arguments at 'n': 'x' is not of type 'integer'"
    t["tools"] = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": 5}}}}]
    with pytest.raises(ValueError, match="tool 'f': its parameters are not a valid JSON Schema"):
        invalid_arguments(t)


# ---------------------------------------------------------------------------- loops and progress


def test_find_loops_consecutive_or_not() -> None:
    a, b = call("lookup", JAPAN, "Tokyo"), call("convert", KM, "6.21")
    assert find_loops(traj(a, a, a)) == {"tool": "lookup", "arguments": JAPAN, "count": 3,
                                         "indices": [0, 1, 2]}
    # not consecutive: alternating between two calls loops too; the first to reach 3 is named
    alternating = find_loops(traj(b, a, b, a, b, a))
    assert alternating is not None and alternating["tool"] == "convert"
    assert alternating["indices"] == [0, 2, 4]
    assert find_loops(traj(a, b, a)) is None  # twice is not three times
    assert find_loops(traj(a, a, a), repeats=4) is None
    assert find_loops(traj(a, a), repeats=2) is not None
    # different arguments are different calls
    assert find_loops(traj(a, call("lookup", {**JAPAN, "field": "currency"}), a)) is None
    # key order and 10 vs 10.0 do not make a call new; failing calls count too
    same = find_loops(traj(call("convert", KM), call("convert", {"to_unit": "mi", "value": 10.0,
                                                                 "from_unit": "km"}),
                           call("convert", KM, error="ValueError: boom")))
    assert same is not None and same["count"] == 3
    with pytest.raises(ValueError, match="repeats=1"):
        find_loops(traj(), repeats=1)


def test_no_progress_when_the_last_steps_bring_nothing_new() -> None:
    tokyo = call("lookup", JAPAN, "Tokyo")
    # the same result again and again, out of budget: the last 3 steps brought nothing new
    got = no_progress(traj(tokyo, tokyo, tokyo, tokyo, answer=None))
    assert got is not None and got["window"] == 3
    assert got["steps"] == [{"index": i, "why": "lookup returned the same result as step 0"}
                            for i in (1, 2, 3)]
    assert no_progress(traj(tokyo, tokyo, tokyo, answer=None)) is None  # step 0 was new
    # errors and refusals are no progress, even when they differ
    errs = traj(call("lookup", JAPAN, error="KeyError: 1"), call("lookup", JAPAN, error="KeyError: 2"),
                call("send_email", {"to": "a", "body": "b"}, refused=True), answer=None)
    got = no_progress(errs)
    assert got is not None and [s["why"] for s in got["steps"]] == [
        "lookup failed: KeyError: 1", "lookup failed: KeyError: 2", "send_email failed: refused"]
    # unreadable replies
    garbled = traj(reply("??", error="unparseable"), reply("!!", error="unparseable"),
                   reply("..", error="unparseable"), answer=None, stopped="error")
    got = no_progress(garbled)
    assert got is not None and got["steps"][0]["why"] == "unreadable reply: unparseable"
    # a new result within the window, or the final answer, is progress
    assert no_progress(traj(tokyo, tokyo, call("lookup", JAPAN, "Tokyo!"), answer=None)) is None
    assert no_progress(traj(tokyo, tokyo, tokyo, tokyo)) is None  # it answered in the end
    # the same text from another tool is new
    assert no_progress(traj(tokyo, tokyo, call("calculate", {"expression": "x"}, "Tokyo"),
                            answer=None)) is None
    assert no_progress(traj(tokyo, tokyo, answer=None)) is None  # fewer steps than the window
    assert no_progress(traj(tokyo, tokyo, answer=None), window=1) is not None
    with pytest.raises(ValueError, match="window=0"):
        no_progress(traj(), window=0)


# ---------------------------------------------------------------------------- errors and counts


def test_tool_errors_by_kind_and_refusals() -> None:
    t = traj(call("lookup", JAPAN, "Tokyo"),
             call("lookup", {"country": "Atlantis", "field": "capital"},
                  error="KeyError: 'no country Atlantis'"),
             call("send_email", {"to": "a@b.c", "body": "hi"}, refused=True,
                  error="refused: send_email changes state"),
             call("weather", {}, error="unknown tool 'weather'"),
             call("convert", {"value": 1}, error="invalid arguments: 'from_unit' is required"),
             reply("??", error="unparseable reply"))
    errors = tool_errors(t)
    assert [(e["index"], e["tool"], e["kind"]) for e in errors] == [
        (1, "lookup", "raised"), (2, "send_email", "refused"), (3, "weather", "unknown_tool"),
        (4, "convert", "invalid_arguments")]
    assert errors[0]["error"] == "KeyError: 'no country Atlantis'"
    assert refusals(t) == [{"index": 2, "tool": "send_email", "arguments": {"to": "a@b.c", "body": "hi"},
                            "error": "refused: send_email changes state"}]
    assert tool_errors(traj(call("lookup", JAPAN))) == [] and refusals(traj()) == []


def test_steps_and_tokens() -> None:
    t = traj(call("lookup", JAPAN, tokens=(120, 20)), call("convert", KM, tokens=(150, 30)))
    assert checks.steps(t) == 3
    assert checks.tokens(t) == {"prompt": 370, "completion": 60, "total": 430}
    # nothing reports tokens (an agent of your own): unknown, not zero
    quiet = traj(call("lookup", JAPAN, tokens=(None, None)))
    quiet["steps"][-1].update(prompt_tokens=None, completion_tokens=None)
    quiet["prompt_tokens"] = quiet["completion_tokens"] = 0
    assert checks.tokens(quiet) is None
    quiet["prompt_tokens"], quiet["completion_tokens"] = 50, 5  # totals without step counts
    assert checks.tokens(quiet) == {"prompt": 50, "completion": 5, "total": 55}


@pytest.mark.parametrize("bad, message", [
    ([], "a trajectory is a dict"), ({"task": "x"}, "no 'steps' list"),
    ({"steps": ["step"]}, "step 0 of the trajectory is a str"),
])
def test_a_malformed_trajectory_is_a_value_error(bad: Any, message: str) -> None:
    for fn in (tool_sequence, checks.steps, find_loops, no_progress, tool_errors):
        with pytest.raises(ValueError, match=message):
            fn(bad)


# ---------------------------------------------------------------------------- the scorer


def sample(trajectory: dict[str, Any] | None, fields: dict[str, Any] | None = None,
           case_id: str = "c0") -> Sample:
    case = Case(id=case_id, fields={"question": "q", **(fields or {})}, source="tasks.jsonl:1")
    gen = Generation(text=(trajectory or {}).get("answer") or "", trajectory=trajectory)
    return Sample(case=case, request=Request(prompt="q"), generation=gen, model="default")


def score(check: str, trajectory: dict[str, Any] | None, fields: dict[str, Any] | None = None,
          **options: Any) -> Score:
    return build_agent_scorer(check, **options).score_samples([sample(trajectory, fields)])[0]


def test_success_is_an_answer_within_the_budgets() -> None:
    ok = score("success", traj(call("lookup", JAPAN, "Tokyo"), answer="Tokyo"))
    assert (ok.value, ok.passed, ok.reason) == (1.0, True, "answered after 2 steps")
    assert ok.metric == "agent.success" and ok.details["stopped"] == "answer"
    over = score("success", traj(call("lookup", JAPAN), call("lookup", JAPAN), answer=None,
                                 error="no answer after 2 steps (max_steps=2)"))
    assert (over.value, over.passed) == (0.0, False)
    assert over.reason == "no answer: stopped at max_steps (no answer after 2 steps (max_steps=2))"
    slow = score("success", traj(call("lookup", JAPAN), answer=None, stopped="max_seconds",
                                 error="no answer after 2.00 s"))
    assert slow.passed is False and "stopped at max_seconds" in slow.reason


@pytest.mark.parametrize("empty", ["", "   \n\t"])
def test_an_empty_answer_fails_success(empty: str) -> None:
    got = score("success", traj(call("lookup", JAPAN, "Tokyo"), answer=empty))
    assert (got.value, got.passed, got.status) == (0.0, False, "failed")
    assert got.reason == "empty answer after 2 steps: the agent stopped without saying anything"


def test_tool_calls_against_the_cases_expected_field() -> None:
    t = traj(call("lookup", JAPAN, "Tokyo"), call("convert", KM, "6.21"))
    ok = score("tool_calls", t, {"expected_tools": ["lookup", {"tool": "convert",
                                                                "arguments": {"value": 10}}]})
    assert ok.passed is True and ok.metric == "agent.tool_calls"
    assert ok.reason.startswith("calls match the expected (in_order): lookup(country=\"Japan\"")
    assert ok.details["pairs"] == [0, 1] and ok.details["match"] == "in_order"
    bad = score("tool_calls", t, {"expected_tools": ["convert", "lookup"]}, match="exact")
    assert bad.passed is False and bad.value == 0.0
    assert bad.details["mismatch"] == ("call 1 (step 0): expected convert, got lookup "
                                       "(convert is call 2 (step 1): wrong order)")
    assert bad.reason == f"calls do not match (exact): {bad.details['mismatch']}"
    assert [c["tool"] for c in bad.details["calls"]] == ["lookup", "convert"]
    other = score("tool_calls", t, {"tools": ["lookup"]}, expected="tools", match="subset")
    assert other.passed is True
    with pytest.raises(DatasetError, match=r"case 'c0' \(tasks.jsonl:1\): field 'expected_tools' "
                                           r"item 0 is 7"):
        score("tool_calls", t, {"expected_tools": [7]})
    assert build_agent_scorer("tool_calls").required_fields() == ("expected_tools",)
    assert build_agent_scorer("tool_calls", expected="x").required_fields() == ("x",)
    assert build_agent_scorer("loops").required_fields() == ()


def test_arguments_loops_progress_and_errors_scores() -> None:
    bad_field = {"country": "Japan", "field": "capitol"}
    s = score("arguments", traj(call("lookup", JAPAN), call("lookup", bad_field, error="x")))
    assert s.passed is False and s.details["invalid"][0]["index"] == 1
    assert s.reason == ("1 of 2 calls have invalid arguments; step 1 lookup(country=\"Japan\", "
                        "field=\"capitol\"): invalid arguments at 'field': "
                        + _jsonschema_message("lookup", bad_field))
    assert score("arguments", traj(call("lookup", JAPAN))).passed is True
    unknown = score("arguments", traj(call("weather", {"city": "Paris"}, error="unknown tool")))
    assert unknown.passed is False and "unknown tool 'weather'" in unknown.reason
    # no calls: the model's failure (not an unmeasured case, which would make the run exit 10),
    # naming the expected tools when the case has them; a case that expects no call passes
    nothing = score("arguments", traj())
    assert (nothing.status, nothing.reason) == ("failed", "the agent never called a tool")
    named = score("arguments", traj(), {"expected_tools": ["lookup", {"tool": "convert"},
                                                           "lookup"]})
    assert (named.status, named.reason) == ("failed",
                                            "the agent never called a tool; expected lookup, convert")
    assert score("arguments", traj(), {"expected_tools": []}).passed is True

    tokyo = call("lookup", JAPAN, "Tokyo")
    loop = score("loops", traj(tokyo, tokyo, tokyo, answer=None))
    assert loop.passed is False and loop.details["loop"]["count"] == 3
    assert loop.reason == 'loop: lookup(country="Japan", field="capital") made 3 times (steps 0, 1, 2)'
    assert score("loops", traj(tokyo, tokyo, tokyo), repeats=4).passed is True
    assert score("loops", traj(tokyo, tokyo)).passed is True

    stuck = score("progress", traj(tokyo, tokyo, tokyo, tokyo, answer=None))
    assert stuck.passed is False and stuck.reason.startswith(
        "no progress in the last 3 steps: step 1: lookup returned the same result as step 0")
    assert score("progress", traj(tokyo, tokyo, tokyo, tokyo)).passed is True
    assert score("progress", traj(tokyo, tokyo, answer=None), window=1).passed is False

    raised = score("errors", traj(tokyo, call("lookup", {"country": "X", "field": "capital"},
                                              error="KeyError: 'X'")))
    assert raised.passed is False
    assert raised.reason == ("1 of 2 tool calls failed (raised); step 1 lookup(country=\"X\", "
                             "field=\"capital\") raised: KeyError: 'X'")
    refused = score("errors", traj(call("send_email", {"to": "a", "body": "b"}, refused=True,
                                        error="refused: send_email changes state")))
    assert refused.passed is False and refused.details["errors"][0]["kind"] == "refused"
    assert score("errors", traj(tokyo)).passed is True


def test_steps_and_tokens_are_lower_is_better_counts() -> None:
    scorer = build_agent_scorer("steps", max=3)
    assert (scorer.binary, scorer.higher_is_better, scorer.bounds) == (False, False, (0.0, None))
    t = traj(call("lookup", JAPAN), call("convert", KM))
    within = scorer.score_samples([sample(t)])[0]
    assert (within.value, within.passed, within.reason) == (3.0, True, "3 steps, within max 3")
    over = score("steps", traj(call("lookup", JAPAN), call("convert", KM), call("calculate")), max=3)
    assert (over.value, over.passed, over.reason) == (4.0, False, "4 steps, over max 3")
    free = score("steps", t)
    assert (free.value, free.passed, free.status) == (3.0, None, "scored")
    used = score("tokens", t, max=250)
    assert (used.value, used.passed) == (330.0, False) and used.metric == "agent.tokens"
    assert used.reason == "330 tokens (300 prompt + 30 completion), over max 250"
    quiet = traj(call("lookup", JAPAN, tokens=(None, None)))
    quiet["steps"][-1].update(prompt_tokens=None, completion_tokens=None)
    quiet["prompt_tokens"] = quiet["completion_tokens"] = 0
    assert score("tokens", quiet).status == "unmeasured"


def test_no_trajectory_or_a_malformed_one_is_unmeasured() -> None:
    for check in ("success", "tool_calls", "arguments", "loops", "progress", "errors", "steps",
                  "tokens"):
        got = score(check, None, {"expected_tools": ["lookup"]})
        assert got.status == "unmeasured" and got.reason == NO_TRAJECTORY, check
        assert "target=Agent(...)" in got.reason and "Trajectory" in got.reason
        broken = score(check, {"task": "x", "stopped": "answer"}, {"expected_tools": ["lookup"]})
        assert broken.status == "unmeasured", check
        assert broken.reason == "malformed trajectory: the trajectory has no 'steps' list"


@pytest.mark.parametrize("args, kwargs, message", [
    (("succes",), {}, "agent('succes'): unknown check. Fix: use one of success, tool_calls, "
                      "arguments, loops, progress, errors, steps, tokens"),
    ((3,), {}, "unknown check"),
    (("loops",), {"match": "exact"}, "match= applies to check='tool_calls' only. Fix: drop "
                                     "match=; check='loops' takes repeats="),
    (("success",), {"max": 3}, "max= applies to check='steps' or 'tokens' only"),
    (("steps",), {"window": 3}, "window= applies to check='progress' only"),
    (("tool_calls",), {"match": "fuzzy"}, "match='fuzzy' is not a match mode. Fix: use match= "
                                          "one of 'exact', 'in_order', 'subset'"),
    (("tool_calls",), {"expected": ""}, "expected='' must name a case field"),
    (("tool_calls",), {"tolerance": -1}, "tolerance=-1 must be a number >= 0"),
    (("loops",), {"repeats": 1}, "repeats=1 must be a whole number >= 2"),
    (("loops",), {"repeats": 2.5}, "repeats=2.5 must be a whole number >= 2"),
    (("progress",), {"window": 0}, "window=0 must be a whole number >= 1"),
    (("steps",), {"max": 0}, "max=0 must be a number >= 1"),
    (("tokens",), {"max": "many"}, "max='many' must be a number >= 0"),
])
def test_bad_marker_arguments_are_usage_errors(args: tuple[Any, ...], kwargs: dict[str, Any],
                                               message: str) -> None:
    with pytest.raises(UsageError) as err:
        build_agent_scorer(*args, **kwargs)
    assert message in str(err.value)


def test_the_marker_is_registered_and_importing_stays_light() -> None:
    assert "agent" in EVAL_MARKERS and MARKER_HELP["agent"].startswith("agent(check='success'")
    assert "exact/judge" in MARKER_HELP["agent"]  # success by content is left to them
    code = ("import sys, pytest_aie.plugin, pytest_aie.suite.spec, pytest_aie.agent.scorer; "
            "print(sorted(m for m in ('jsonschema', 'numpy', 'torch') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------------------- whole runs

INI = "[pytest]\naie_engine = scripted\naie_model = answers.jsonl\naie_cache = off\n"

APP = """
import pytest
from pytest_aie.engines.base import Generation

TRAJECTORIES = {trajectories!r}


class Toolbox:
    \"\"\"A tiny batch target: each case's canned agent run.\"\"\"

    target_label = "toolbox"

    def target_identity(self, model):
        return "toolbox-v1"

    def run_cases(self, cases, model):
        out = []
        for case in cases:
            t = TRAJECTORIES[case.id]
            out.append(Generation(text=(t or {{}}).get("answer") or "", trajectory=t))
        return out


@pytest.mark.dataset("cases.jsonl", target=Toolbox())
{markers}
def test_toolbox(case, output):
    pass
"""

MARKERS = """@pytest.mark.agent("success", min_pass_rate=0.5)
@pytest.mark.agent("tool_calls", match="in_order", min_pass_rate=0.5)
@pytest.mark.agent("loops", min_pass_rate=0.5)
@pytest.mark.agent("steps", max=6, min_score=5)"""


def whole_run(pytester: pytest.Pytester, trajectories: dict[str, Any], markers: str = MARKERS,
              cases: list[dict[str, Any]] | None = None) -> pytest.RunResult:
    if cases is None:
        cases = [{"id": cid, "question": "What is the capital of Japan, in miles?",
                  "expected_tools": ["lookup", {"tool": "convert", "arguments": {"value": 10}}]}
                 for cid in trajectories]
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases), answers="")
    pytester.makeini(INI)
    pytester.makepyfile(test_app=APP.format(trajectories=trajectories, markers=markers))
    return pytester.runpytest("-p", "no:randomly")


def good(n: int) -> dict[str, Any]:
    """A run that calls lookup then convert and answers, with 0-2 extra lookups (3-5 steps)."""
    extra = [call("lookup", {"country": f"C{k}", "field": "capital"}, f"city {k}")
             for k in range(n % 3)]
    return traj(*extra, call("lookup", JAPAN, "Tokyo"), call("convert", KM, "6.21"), answer="6.21")


def looping(n: int) -> dict[str, Any]:
    """A run stuck on one call until its step budget ran out (7 or 8 steps)."""
    return traj(*[call("lookup", JAPAN, "Tokyo")] * (7 + n % 2), answer=None)


def test_a_good_agent_passes_its_gates(pytester: pytest.Pytester) -> None:
    result = whole_run(pytester, {f"c{i}": good(i) for i in range(12)})
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_toolbox [[]agent.success[]]: 12/12 passed, 0 failed*-> PASS*",
        "*test_toolbox [[]agent.tool_calls[]]: 12/12 passed, 0 failed*-> PASS*",
        "*test_toolbox [[]agent.loops[]]: 12/12 passed, 0 failed*-> PASS*",
        "*test_toolbox [[]agent.steps[]]: 12/12 passed, 0 failed*(mean score 4.000, *-> PASS (ceiling 5)",
    ])
    recs = read_records(pytester)
    assert {r["metric"] for r in recs} == {"agent.success", "agent.tool_calls", "agent.loops",
                                           "agent.steps"}
    steps = [r for r in recs if r["metric"] == "agent.steps"]
    assert all(r["binary"] is False and r["higher_is_better"] is False for r in steps)
    assert all(r["trajectory"]["steps"] for r in recs)
    c1 = next(r for r in recs if r["metric"] == "agent.tool_calls" and r["case_id"] == "c1")
    assert c1["details"]["pairs"] == [0, 2]  # the earliest lookup and c1["status"] == "passed"


def test_a_looping_agent_fails_its_gates(pytester: pytest.Pytester) -> None:
    result = whole_run(pytester, {f"c{i}": looping(i) for i in range(12)})
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_toolbox [[]agent.success[]]: 0/12 passed, 12 failed*-> FAIL*",
        "*test_toolbox [[]agent.tool_calls[]]: 0/12 passed, 12 failed*-> FAIL*",
        "*test_toolbox [[]agent.loops[]]: 0/12 passed, 12 failed*-> FAIL*",
        "*test_toolbox [[]agent.steps[]]: 0/12 passed, 12 failed*(mean score 7.500, *-> FAIL (ceiling 5)",
    ])
    recs = {(r["metric"], r["case_id"]): r for r in read_records(pytester)}
    loop = recs[("agent.loops", "c0")]
    assert loop["status"] == "failed" and loop["details"]["loop"]["count"] == 7
    assert recs[("agent.tool_calls", "c0")]["details"]["mismatch"].startswith(
        'expected call 2 convert(value=10): no call to convert')
    assert recs[("agent.steps", "c0")]["reason"] == "7 steps, over max 6"


def test_a_mixed_suite_fails_only_the_gate_it_misses(pytester: pytest.Pytester) -> None:
    runs = {f"c{i}": good(i) for i in range(10)}
    # calls in the wrong order, but an answer without loops
    runs.update({f"w{i}": traj(call("convert", KM, "6.21"), call("lookup", JAPAN, "Tokyo"),
                               answer="6.21") for i in range(10)})
    markers = ('@pytest.mark.agent("success", min_pass_rate=0.8)\n'
               '@pytest.mark.agent("tool_calls", match="in_order", min_pass_rate=0.8)')
    result = whole_run(pytester, runs, markers)
    assert result.ret == 1, result.stdout.str()
    result.stdout.fnmatch_lines_random([
        "*test_toolbox [[]agent.success[]]: 20/20 passed, 0 failed*-> PASS*",
        "*test_toolbox [[]agent.tool_calls[]]: 10/20 passed, 10 failed*-> FAIL*",
    ])
    wrong = next(r for r in read_records(pytester)
                 if r["metric"] == "agent.tool_calls" and r["case_id"] == "w0")
    assert "wrong order" in wrong["reason"] and wrong["status"] == "failed"


def test_outputs_without_a_trajectory_are_unmeasured(pytester: pytest.Pytester) -> None:
    result = whole_run(pytester, {f"c{i}": None for i in range(3)},
                       '@pytest.mark.agent("success", min_pass_rate=0.5)')
    assert result.ret != 0, result.stdout.str()
    recs = read_records(pytester)
    assert len(recs) == 3
    assert all(r["status"] == "unmeasured" and r["reason"] == NO_TRAJECTORY for r in recs)
    result.stdout.fnmatch_lines(["*agent.success*0/3 passed, 0 failed, 3 unmeasured*"])
    assert "PASS" not in result.stdout.str()


@pytest.mark.parametrize("markers, cases, message", [
    ('@pytest.mark.agent("loop")', None, "*agent('loop'): unknown check*use one of success*"),
    ('@pytest.mark.agent("loops", window=2)', None, "*window= applies to check='progress' only*"),
    ('@pytest.mark.agent("steps", maximum=3)', None, "*unknown argument 'maximum'*"),
    ('@pytest.mark.agent("steps", min_pass_rate=0.8)', None,
     "*min_pass_rate=...) on 'agent.steps', a lower-is-better value*min_score=*"),
    ('@pytest.mark.agent("tool_calls")', [{"id": "c0", "question": "q"}], "*expected_tools*"),
    ('@pytest.mark.agent("tool_calls")', [{"id": "c0", "question": "q", "expected_tools": 3}],
     "*case 'c0' (*cases.jsonl:1): field 'expected_tools' must be a list of calls*"),
])
def test_usage_and_dataset_errors_exit_10(pytester: pytest.Pytester, markers: str,
                                          cases: list[dict[str, Any]] | None, message: str) -> None:
    result = whole_run(pytester, {"c0": good(0)}, markers, cases)
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines([message])



def test_an_expected_tool_a_custom_agent_was_not_offered_is_a_harness_error(
        pytester: pytest.Pytester) -> None:
    """A typo in expected_tools ("lookpu") would fail a correct trajectory as the model's
    fault: it is one line naming the tool and the tools offered, and the run exits 10."""
    cases = [{"id": f"c{i}", "question": "q", "expected_tools": ["lookpu", "convert"]}
             for i in range(3)]
    result = whole_run(pytester, {f"c{i}": good(i) for i in range(3)}, cases=cases)
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    out = result.stdout.str()
    line = ("*case 'c0': expected_tools names tool 'lookpu', which the agent does not have "
            "(its tools: calculate, convert, lookup, send_email). Fix: did you mean 'lookup'?*")
    result.stdout.fnmatch_lines([line])
    assert said_once(result, "names tool 'lookpu'"), out  # once for the suite
    assert "calls do not match" not in out


AGENT_REPLIES = '''
import json

def reply(request):
    """Call add with the task's two numbers, then answer; a "loop" task calls add(1, 1) forever,
    a "bad" task calls add with a string."""
    msgs = request.messages
    task = next(m["content"] for m in msgs if m["role"] == "user")
    if "loop" in task:
        return json.dumps({"tool": "add", "arguments": {"a": 1, "b": 1}})
    if "bad" in task:
        return json.dumps({"tool": "add", "arguments": {"a": "one", "b": 1}})
    if msgs[-1]["role"] == "user" and msgs[-1]["content"].startswith("Result of add: "):
        return json.dumps({"answer": msgs[-1]["content"].split(": ")[1]})
    a, b = [int(w) for w in task.replace("?", "").split() if w.isdigit()]
    return json.dumps({"tool": "add", "arguments": {"a": a, "b": b}})
'''

AGENT_SUITE = '''
import pytest
from pytest_aie.agent import Agent

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

@pytest.mark.dataset("tasks.jsonl", target=Agent([add], max_steps=4, name="adder"))
@pytest.mark.agent("success")
@pytest.mark.agent("tool_calls", match="exact")
@pytest.mark.agent("arguments")
@pytest.mark.agent("loops")
@pytest.mark.agent("errors")
@pytest.mark.agent("steps", max=3)
def test_adder(case, output):
    pass
'''


def test_the_agent_loops_trajectories_on_the_scripted_engine(pytester: pytest.Pytester) -> None:
    """The checks on trajectories recorded by pytest_aie.agent.Agent itself (text protocol)."""
    expected = [{"tool": "add", "arguments": {"a": 2, "b": 3}}]
    tasks = [{"id": "ok", "question": "What is 2 plus 3?", "expected_tools": expected},
             {"id": "loop", "question": "loop on 2 and 3", "expected_tools": expected},
             {"id": "bad", "question": "bad call", "expected_tools": ["add"]}]
    pytester.makefile(".jsonl", tasks="\n".join(json.dumps(t) for t in tasks))
    pytester.makepyfile(agentfns=AGENT_REPLIES, test_suite=AGENT_SUITE)
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = agentfns:reply\naie_cache = off\n")
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=2)  # no gates: a failing check fails the case
    recs = {(r["metric"].split(".")[1], r["case_id"]): r for r in read_records(pytester)}
    ok = {check: recs[(check, "ok")] for check, case in recs if case == "ok"}
    assert all(r["status"] == "passed" for r in ok.values()), ok
    assert ok["steps"]["value"] == 2.0
    loop = {check: recs[(check, "loop")]["status"] for check, case in recs if case == "loop"}
    assert loop == {"success": "failed", "tool_calls": "failed", "arguments": "passed",
                    "loops": "failed", "errors": "passed", "steps": "failed"}
    assert recs[("loops", "loop")]["details"]["loop"]["arguments"] == {"a": 1, "b": 1}
    assert recs[("tool_calls", "loop")]["reason"] == (
        "calls do not match (exact): call 1 (step 0) add: 'a' is 1, expected 2")
    bad = {check: recs[(check, "bad")]["status"] for check, case in recs if case == "bad"}
    assert bad["arguments"] == "failed" and bad["errors"] == "failed"
    assert "invalid arguments at 'a': 'one' is not of type 'integer'" in recs[("arguments", "bad")]["reason"]
    assert recs[("errors", "bad")]["details"]["errors"][0]["kind"] == "invalid_arguments"


def agent_project(pytester: pytest.Pytester, tasks: list[dict[str, Any]], replies: str = AGENT_REPLIES,
                  suite: str = AGENT_SUITE) -> pytest.RunResult:
    pytester.makefile(".jsonl", tasks="\n".join(json.dumps(t) for t in tasks))
    pytester.makepyfile(agentfns=replies, test_suite=suite)
    pytester.makeini("[pytest]\naie_engine = scripted\naie_model = agentfns:reply\naie_cache = off\n")
    return pytester.runpytest("-p", "no:randomly")


NEVER_CALLS = '''
import json

def reply(request):
    """A model that answers at once, without calling a tool."""
    return json.dumps({"answer": "5"})
'''


def test_a_model_that_never_calls_a_tool_fails_the_model(pytester: pytest.Pytester) -> None:
    """Exit 1 (the model failed its checks), not 10 (the harness could not evaluate)."""
    tasks = [{"id": f"t{i}", "question": f"What is {i} plus 3?", "expected_tools": ["add"]}
             for i in range(3)]
    result = agent_project(pytester, tasks, NEVER_CALLS)
    assert result.ret == 1, result.stdout.str()
    result.assert_outcomes(failed=3)
    recs = {(r["metric"], r["case_id"]): r for r in read_records(pytester)}
    args = recs[("agent.arguments", "t0")]
    assert (args["status"], args["reason"]) == ("failed", "the agent never called a tool; expected add")
    assert recs[("agent.success", "t0")]["status"] == "passed"  # it did answer
    assert "harness could not evaluate" not in result.stdout.str()


def test_an_expected_tool_the_agent_does_not_have_stops_the_suite_before_it_runs(
        pytester: pytest.Pytester) -> None:
    tasks = [{"id": "ok", "question": "What is 2 plus 3?", "expected_tools": ["add"]},
             {"id": "typo", "question": "What is 4 plus 3?", "expected_tools": ["ad"]}]
    result = agent_project(pytester, tasks)
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*tasks.jsonl:2: case 'typo': expected_tools names tool 'ad', which agent 'adder' does not "
        "have (its tools: add). Fix: did you mean 'add'? name one of the agent's tools in "
        "expected_tools, or give the agent that tool"])
    out = result.stdout.str()
    assert "generating" not in out and said_once(result, "names tool 'ad'"), out


def test_a_missing_task_field_is_one_line_for_the_suite(pytester: pytest.Pytester) -> None:
    """Not one "engine failed ... check the engine or server" line per metric: one line, before
    anything runs, whose fix names Agent(task=...)."""
    tasks = [{"id": f"t{i}", "query": f"What is {i} plus 3?", "expected_tools": ["add"]}
             for i in range(3)]
    result = agent_project(pytester, tasks)
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines([
        "*tasks.jsonl:1: case 't0' has no field 'question', the agent's task (Agent(task="
        "'question'); its fields: query, expected_tools). Fix: name the field that holds the "
        "task: Agent(task='query')"])
    out = result.stdout.str()
    assert "check the engine or server" not in out and "generating" not in out, out
    assert said_once(result, "has no field 'question'"), out
