"""The agent runtime (``pytest_aie.agent``) on the scripted engine: tool schemas from type hints,
the text protocol's reply parser, the batched loop in each failure mode (wrong tool, bad
arguments, a loop, the step and time budgets, a tool that raises, a state-changing tool refused,
an unknown tool, an unreadable reply), lockstep batching (one engine call per step for all
agents), native tool calling, the Recorder for users' own agents, and a whole pytest run with an
Agent as a dataset's target whose trajectories land in the results log.

Scripted models here are functions of the request: they read the conversation so far (the task,
how many replies the model already gave, the last tool result) and answer as a model would.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, Callable, Literal, Optional, Sequence

import pytest
from scripted_suite import read_records, write_jsonl

from pytest_aie.agent import Agent, Recorder, Step, Tool, ToolCallError, Trajectory, as_tools, tool
from pytest_aie.agent.protocol import UNPARSEABLE_FEEDBACK, parse_reply, text_system_prompt
from pytest_aie.engines._tool_calls import parse_tool_calls
from pytest_aie.engines.base import Capability, Generation, Request
from pytest_aie.engines.scripted import ScriptedEngine
from pytest_aie.errors import EXIT_HARNESS_ERROR, DatasetError, UsageError
from pytest_aie.run.model import Model
from pytest_aie.suite.target import TargetEngine, target_request

# ---------------------------------------------------------------------------- tools used below

CALLED: list[tuple[str, dict[str, Any]]] = []


def add(a: int, b: int) -> int:
    """Add two whole numbers.

    Args:
        a: the first number
        b: the second number
    """
    CALLED.append(("add", {"a": a, "b": b}))
    return a + b


def convert(value: float, to_unit: Literal["km", "mi"] = "km") -> float:
    """Convert a distance."""
    CALLED.append(("convert", {"value": value, "to_unit": to_unit}))
    return round(value * (1.609344 if to_unit == "km" else 0.621371), 2)


def divide(a: float, b: float) -> float:
    """Divide a by b."""
    CALLED.append(("divide", {"a": a, "b": b}))
    return a / b


@tool(changes_state=True)
def send_email(to: str, body: str) -> str:
    """Send an email."""
    CALLED.append(("send_email", {"to": to, "body": body}))
    return f"sent to {to}"


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    CALLED.clear()


def replies(script: dict[str, Sequence[str]]) -> Callable[[Request], str]:
    """A scripted model: for each task (the first user message), its replies in order; the last
    one repeats."""
    def answer(request: Request) -> str:
        assert request.messages is not None
        task = next(m["content"] for m in request.messages if m["role"] == "user")
        done = sum(m["role"] == "assistant" for m in request.messages)
        said = script[task]
        return said[min(done, len(said) - 1)]

    return answer


def model_on(script: Callable[[Request], str] | dict[str, Sequence[str]],
             engine: type[ScriptedEngine] = ScriptedEngine) -> Model:
    fn = replies(script) if isinstance(script, dict) else script
    return Model("default", "scripted", "", engine_obj=engine(fn), progress=lambda _m: None)


def call(name: str, **arguments: Any) -> str:
    return json.dumps({"tool": name, "arguments": arguments})


def answer(text: str) -> str:
    return json.dumps({"answer": text})


def last_request(model: Model, task: str) -> Request:
    """The last request the model saw for ``task`` (recorded by a wrapping script)."""
    return model.seen[task][-1]  # type: ignore[attr-defined, no-any-return]


def recording(script: dict[str, Sequence[str]]) -> Model:
    """A scripted model that also keeps every request it was sent, by task."""
    inner = replies(script)
    seen: dict[str, list[Request]] = {}

    def fn(request: Request) -> str:
        assert request.messages is not None
        task = next(m["content"] for m in request.messages if m["role"] == "user")
        seen.setdefault(task, []).append(request)
        return inner(request)

    model = model_on(fn)
    model.seen = seen  # type: ignore[attr-defined]
    return model


# ---------------------------------------------------------------------------- schemas


def test_schema_from_type_hints_and_docstrings() -> None:
    def search(query: str, k: int = 5, fields: list[str] | None = None,
               weights: dict[str, float] = {}, mode: Literal["bm25", "dense"] = "bm25",  # noqa: B006
               exact: Optional[bool] = None,  # noqa: UP045 - the typing spelling too
               ids: tuple[int, ...] = ()) -> list[str]:
        """Search the corpus.

        Returns ranked ids.

        Args:
            query: what to look for,
                in plain words
            k (int): how many hits
            mode: which retriever

        Returns:
            the ids
        """
        return []

    schema = Tool.from_function(search).schema()
    assert schema["type"] == "function"
    fn = schema["function"]
    assert fn["name"] == "search"
    assert fn["description"] == "Search the corpus. Returns ranked ids."
    params = fn["parameters"]
    assert params["required"] == ["query"]
    assert params["additionalProperties"] is False
    props = params["properties"]
    assert props["query"] == {"type": "string", "description": "what to look for, in plain words"}
    assert props["k"] == {"type": "integer", "description": "how many hits", "default": 5}
    assert props["fields"] == {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                         {"type": "null"}], "default": None}
    assert props["weights"] == {"type": "object", "additionalProperties": {"type": "number"},
                                "default": {}}
    assert props["mode"] == {"enum": ["bm25", "dense"], "type": "string",
                             "description": "which retriever", "default": "bm25"}
    assert props["exact"] == {"anyOf": [{"type": "boolean"}, {"type": "null"}], "default": None}
    assert props["ids"] == {"type": "array", "items": {"type": "integer"}, "default": []}


def test_numpy_docstring_and_the_decorator() -> None:
    @tool(name="lookup_fact", description="Look a fact up.", changes_state=True)
    def lookup(country: str, field: Literal["capital", "currency"]) -> str:
        """Ignored summary.

        Parameters
        ----------
        country : str
            the country's name
        field : str
            which fact

        Returns
        -------
        str
        """
        return f"{country}:{field}"

    assert isinstance(lookup, Tool)
    assert lookup("Japan", "capital") == "Japan:capital"  # still callable like the function
    assert lookup.name == "lookup_fact" and lookup.changes_state
    fn = lookup.schema()["function"]
    assert fn["description"] == "Look a fact up."
    assert fn["parameters"]["properties"]["country"]["description"] == "the country's name"
    assert fn["parameters"]["properties"]["field"]["description"] == "which fact"
    tools = as_tools([add, lookup])  # plain functions and Tools mix
    assert [t.name for t in tools] == ["add", "lookup_fact"]
    assert tools[0].validate({"a": 1, "b": 2}) is None
    assert "'b' is a required property" in (tools[0].validate({"a": 1}) or "")
    assert "not of type 'integer'" in (tools[0].validate({"a": 1, "b": "2"}) or "")
    assert "must be a JSON object" in (tools[0].validate("1, 2") or "")


def _no_hint(x) -> None:  # type: ignore[no-untyped-def]
    pass


def _a_set(x: set[int]) -> None:
    pass


def _star(*xs: int) -> None:
    pass


def _pair(x: tuple[int, str]) -> None:
    pass


@pytest.mark.parametrize("fn, message", [
    (_no_hint, "parameter 'x' has no type annotation"),
    (_a_set, "has no JSON schema"),
    (_star, "*args and **kwargs"),
    (_pair, "fixed-length tuple"),
])
def test_unsupported_annotations_are_usage_errors(fn: Callable[..., Any], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("*", r"\*")):
        Tool.from_function(fn)


@pytest.mark.parametrize("keyword, fix", [
    ("prompt", "Fix: write Agent(task='question'): the case field that holds each task"),
    ("timeout", "Fix: write Agent(max_seconds=...)"),
    ("max_step", "Fix: write Agent(max_steps=...)"),
    ("colour", "Fix: Agent takes tools=, system=, task=, max_steps="),
])
def test_an_unknown_agent_keyword_is_one_error_naming_the_parameter(keyword: str, fix: str) -> None:
    with pytest.raises(UsageError) as info:
        Agent([add], **{keyword: "x"})
    assert str(info.value).startswith(f"Agent(...) got unknown keyword {keyword}='x'. {fix}")


def test_duplicate_names_and_a_bare_function_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="two tools are named 'add'"):
        as_tools([add, tool(convert, name="add")])
    with pytest.raises(UsageError, match="must be a list"):
        Agent(add)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- the text protocol


@pytest.mark.parametrize("text, kind, tool_name, arguments, final", [
    ('{"tool": "add", "arguments": {"a": 1, "b": 2}}', "call", "add", {"a": 1, "b": 2}, None),
    ('I will add them. {"tool": "add", "arguments": {"a": 1, "b": 2}} Then answer.', "call",
     "add", {"a": 1, "b": 2}, None),
    ('Sure:\n```json\n{"answer": "3"}\n```\nHope that helps {"tool": "x"}', "answer", None, None,
     "3"),
    ('```\n{"tool": "add", "arguments": "{\\"a\\": 1, \\"b\\": 2}"}\n```', "call", "add",
     {"a": 1, "b": 2}, None),
    ('{"name": "add", "arguments": {"a": 1}}', "call", "add", {"a": 1}, None),
    ('{"tool": "add"}', "call", "add", {}, None),
    ('{"tool": "add", "arguments": "one and two"}', "call", "add", "one and two", None),
    ('{"answer": 391}', "answer", None, None, "391"),
    ('{"tool": "add", "arguments": {"a": 1, "b": 2}', "call", "add", {"a": 1, "b": 2}, None),
    ('{"answer": "The capital is Tok', "answer", None, None, "The capital is Tok"),
    ('{"thought": "hmm"} then {"answer": "4"} and {"answer": "5"}', "answer", None, None, "4"),
    ("The answer is 4.", "unparseable", None, None, None),
    ('{"tool": add, arguments: {a: 1}}', "unparseable", None, None, None),
    ('{"result": 4}', "unparseable", None, None, None),
    ("", "unparseable", None, None, None),
])
def test_text_protocol_parser(text: str, kind: str, tool_name: str | None, arguments: Any,
                              final: str | None) -> None:
    reply = parse_reply(text)
    assert (reply.kind, reply.tool, reply.arguments, reply.answer) == (kind, tool_name, arguments,
                                                                       final)
    assert reply.raw == text


def test_text_system_prompt_lists_tools_and_the_format() -> None:
    prompt = text_system_prompt([t.schema() for t in as_tools([add, convert])], "Be brief.")
    assert prompt.startswith("Be brief.\n\n")
    assert "- add: Add two whole numbers." in prompt
    props = Tool.from_function(add).parameters["properties"]
    assert f"  arguments: {json.dumps(props)}; required: a, b\n" in prompt
    convert_props = json.dumps(Tool.from_function(convert).parameters["properties"])
    assert f"  arguments: {convert_props}; required: value\n" in prompt  # to_unit has a default
    assert '{"tool": "<tool name>", "arguments":' in prompt and '{"answer":' in prompt


# ---------------------------------------------------------------------------- the loop


def test_a_successful_run_records_every_step() -> None:
    task = "What is 2 plus 3?"
    model = recording({task: [call("add", a=2, b=3), answer("5")]})
    traj = Agent([add, convert], system="Be brief.").run(model, [task])[0]
    assert traj.stopped == "answer" and traj.answer == "5" and traj.error is None
    assert traj.protocol == "text"
    assert [(s.index, s.tool, s.arguments, s.result, s.error) for s in traj.steps] == [
        (0, "add", {"a": 2, "b": 3}, "5", None), (1, None, None, None, None)]
    assert traj.steps[0].output == call("add", a=2, b=3)
    assert CALLED == [("add", {"a": 2, "b": 3})]
    # the model saw the system prompt with the tools, then its call and the result
    msgs = last_request(model, task).messages
    assert msgs is not None
    assert msgs[0]["role"] == "system" and msgs[0]["content"].startswith("Be brief.")
    assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user"]
    assert msgs[-1]["content"] == "Result of add: 5"
    # tokens per step from the generations (the scripted engine counts words), totals summed
    assert traj.steps[1].completion_tokens == 2
    assert traj.completion_tokens == sum(s.completion_tokens or 0 for s in traj.steps) == 9
    assert traj.seconds == pytest.approx(sum(s.seconds for s in traj.steps))


def test_wrong_tool_is_recorded_as_called() -> None:
    task = "What is 2 plus 3?"
    model = recording({task: [call("convert", value=2), answer("3.22")]})
    traj = Agent([add, convert]).run(model, [task])[0]
    assert [s.tool for s in traj.steps] == ["convert", None]
    assert traj.steps[0].result == "3.22" and traj.steps[0].error is None
    assert traj.answer == "3.22" and CALLED == [("convert", {"value": 2, "to_unit": "km"})]


@pytest.mark.parametrize("arguments, error", [
    ({"a": "two", "b": 3}, "invalid arguments at 'a': 'two' is not of type 'integer'"),
    ({"a": 2}, "invalid arguments: 'b' is a required property"),
    ({"a": 2, "b": 3, "c": 4}, "Additional properties are not allowed ('c' was unexpected)"),
    ("2 and 3", "arguments must be a JSON object, got '2 and 3'"),
])
def test_bad_arguments_are_not_called_and_fed_back(arguments: Any, error: str) -> None:
    task = "What is 2 plus 3?"
    first = json.dumps({"tool": "add", "arguments": arguments})
    model = recording({task: [first, call("add", a=2, b=3), answer("5")]})
    traj = Agent([add]).run(model, [task])[0]
    bad = traj.steps[0]
    assert bad.tool == "add" and bad.arguments == arguments and bad.result is None
    assert bad.error is not None and error in bad.error
    assert CALLED == [("add", {"a": 2, "b": 3})]  # only the good call ran
    fed_back = model.seen[task][1].messages[-1]["content"]  # type: ignore[attr-defined]
    assert fed_back.startswith("Error from add: ") and error in fed_back
    assert traj.stopped == "answer" and traj.answer == "5"


def test_a_loop_runs_into_the_step_budget() -> None:
    task = "What is 2 plus 3?"
    model = recording({task: [call("add", a=2, b=3)]})  # the same call, forever
    traj = Agent([add], max_steps=4).run(model, [task])[0]
    assert traj.stopped == "max_steps" and traj.answer is None
    assert traj.error == "no answer after 4 steps (max_steps=4)"
    assert len(traj.steps) == 4
    assert {(s.tool, json.dumps(s.arguments)) for s in traj.steps} == {("add", '{"a": 2, "b": 3}')}
    assert len(CALLED) == 4
    gen = traj.to_generation()
    assert gen.text == "" and gen.finish_reason == "error" and gen.error is None  # measured


def test_step_budget_with_different_calls() -> None:
    task = "Count up."
    model = recording({task: [call("add", a=i, b=1) for i in range(10)]})
    traj = Agent([add], max_steps=3).run(model, [task])[0]
    assert traj.stopped == "max_steps"
    assert [s.result for s in traj.steps] == ["1", "2", "3"]


class FakeClock:
    """The agent loop's clock, advanced only by the tools below: steps' seconds are exact,
    however loaded the machine."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_time_budget_stops_an_agent_with_a_slow_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_aie.agent import loop

    clock = FakeClock()
    monkeypatch.setattr(loop, "_clock", clock)

    def slow(seconds: float) -> str:
        """Take ``seconds`` of the agent's time."""
        clock.now += seconds
        return "done"

    # (fake seconds: the tool is given the time left, 40 s of real time at the second call,
    # and returns at once)
    task = "Wait a lot."
    model = recording({task: [call("slow", seconds=60)]})
    traj = Agent([slow], max_seconds=100, max_steps=50).run(model, [task])[0]
    assert traj.stopped == "max_seconds"
    assert traj.error == "no answer after 120.00 s (max_seconds=100)"
    assert len(traj.steps) == 2  # 60 s after the first step, 120 s after the second
    assert [s.seconds for s in traj.steps] == [60.0, 60.0]
    assert [s.result for s in traj.steps] == ["done", "done"]


def test_a_blocking_tool_is_abandoned_at_max_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool that never returns (here: until the test lets it) ends the run at max_seconds
    with a timeout error on its step; the run does not wait for it. (The loop's clock stands
    still, so the tool is given exactly max_seconds of real time, whatever the model took.)"""
    import threading

    from pytest_aie.agent import loop

    monkeypatch.setattr(loop, "_clock", FakeClock())

    release, returned = threading.Event(), threading.Event()

    def hang() -> str:
        """Block."""
        release.wait(60)
        returned.set()
        return "too late"

    task = "Hang."
    model = recording({task: [call("hang"), answer("never")]})
    try:
        traj = Agent([hang], max_seconds=0.2, max_steps=5).run(model, [task])[0]
        assert not returned.is_set()  # the run came back while the tool was still blocked
    finally:
        release.set()
    assert traj.stopped == "max_seconds" and traj.answer is None
    (step,) = traj.steps
    assert step.tool == "hang" and step.result is None
    assert step.error == ("timed out: hang did not return within the 0.20 s left "
                          "(max_seconds=0.2); the call was abandoned")
    assert traj.error is not None and traj.error.endswith(
        "(max_seconds=0.2): hang was still running and was abandoned")
    assert len(model.seen[task]) == 1  # type: ignore[attr-defined]  # no second step


def test_tools_run_in_the_callers_context_and_their_errors_come_back() -> None:
    import contextvars

    user: contextvars.ContextVar[str] = contextvars.ContextVar("user", default="nobody")
    user.set("alice")

    def whoami() -> str:
        """Who is asking."""
        return user.get()

    task = "Who?"
    model = recording({task: [call("whoami"), call("divide", a=1, b=0), answer("alice")]})
    traj = Agent([whoami, divide]).run(model, [task])[0]
    assert [s.result for s in traj.steps] == ["alice", None, None]
    assert traj.steps[1].error == "ZeroDivisionError: division by zero"


def test_a_tool_that_raises_is_recorded_and_fed_back() -> None:
    task = "What is 1 divided by 0?"
    model = recording({task: [call("divide", a=1, b=0), answer("undefined")]})
    traj = Agent([divide]).run(model, [task])[0]
    assert traj.steps[0].error == "ZeroDivisionError: division by zero"
    assert traj.steps[0].result is None
    fed_back = model.seen[task][1].messages[-1]["content"]  # type: ignore[attr-defined]
    assert fed_back == "Error from divide: ZeroDivisionError: division by zero"
    assert traj.stopped == "answer" and traj.answer == "undefined"


@pytest.mark.parametrize("allowed", [False, True])
def test_state_changing_tool_refused_unless_allowed(allowed: bool) -> None:
    task = "Email bob."
    model = recording({task: [call("send_email", to="bob@example.com", body="hi"), answer("ok")]})
    traj = Agent([add, send_email], allow_state_changes=allowed).run(model, [task])[0]
    assert traj.state_changing == ["send_email"]
    step = traj.steps[0]
    fed_back = model.seen[task][1].messages[-1]["content"]  # type: ignore[attr-defined]
    if allowed:
        assert not step.refused and step.error is None and step.result == "sent to bob@example.com"
        assert CALLED == [("send_email", {"to": "bob@example.com", "body": "hi"})]
        assert fed_back == "Result of send_email: sent to bob@example.com"
    else:
        assert step.refused and step.result is None and CALLED == []
        assert step.error is not None and step.error.startswith("refused: send_email changes state")
        assert fed_back == f"Error from send_email: {step.error}"
    assert traj.to_dict()["steps"][0]["refused"] is (not allowed)


def test_unknown_tool_is_a_step_with_an_error() -> None:
    task = "What is 6 times 7?"
    model = recording({task: [call("multiply", a=6, b=7), answer("42")]})
    traj = Agent([add, convert]).run(model, [task])[0]
    step = traj.steps[0]
    assert step.tool == "multiply" and step.arguments == {"a": 6, "b": 7}
    assert step.error == "unknown tool 'multiply'; the tools are: add, convert"
    assert CALLED == [] and traj.answer == "42"


def test_unparseable_reply_is_told_once() -> None:
    fixed, hopeless = "Fix it.", "Never."
    model = recording({fixed: ["The answer is 5.", answer("5")],
                       hopeless: ["The answer is 5.", "Still 5, I said."]})
    recovered, gave_up = Agent([add]).run(model, [fixed, hopeless])
    assert recovered.stopped == "answer" and recovered.answer == "5"
    assert recovered.steps[0].error is not None and "unparseable reply" in recovered.steps[0].error
    assert recovered.steps[0].tool is None and recovered.steps[0].output == "The answer is 5."
    told = model.seen[fixed][1].messages  # type: ignore[attr-defined]
    assert told[-1] == {"role": "user", "content": UNPARSEABLE_FEEDBACK}
    assert gave_up.stopped == "error" and len(gave_up.steps) == 2
    assert gave_up.error == "unparseable reply again after being told the format"
    assert gave_up.answer is None


def test_a_model_failure_leaves_the_case_unmeasured() -> None:
    engine = ScriptedEngine({}, strict=True)  # no answer for anything: a per-request error
    model = Model("default", "scripted", "", engine_obj=engine, progress=lambda _m: None)
    traj = Agent([add]).run(model, ["anything"])[0]
    assert traj.stopped == "error" and traj.failure is not None
    assert traj.steps[0].error is not None and traj.steps[0].error.startswith("the model failed")
    gen = traj.to_generation()
    assert gen.error == traj.failure and gen.trajectory is not None


def test_agents_advance_in_lockstep_one_engine_call_per_step() -> None:
    # task i needs i tool calls, then answers: 1..5 calls, 2..6 steps
    script = {f"task {i}": [call("add", a=k, b=1) for k in range(i)] + [answer(str(i))]
              for i in range(1, 6)}
    model = model_on(script)
    trajs = Agent([add], max_steps=10).run(model, list(script))
    assert [len(t.steps) for t in trajs] == [2, 3, 4, 5, 6]
    assert all(t.stopped == "answer" for t in trajs)
    engine = model.engine
    assert isinstance(engine, ScriptedEngine)
    # one generate call per step, all unfinished agents in it: steps = the longest trajectory
    assert engine.calls == [5, 5, 4, 3, 2, 1]
    assert Agent([add]).run(model, []) == [] and len(engine.calls) == 6  # nothing to send
    assert sum(len(t.steps) for t in trajs) == 20
    # a batched step's seconds: that engine call's wall time, the same for every agent in it
    # (plus each agent's own tool time: here none)
    both = Agent([add]).run(model_on({"a": [answer("1")], "b": [answer("2")]}), ["a", "b"])
    assert both[0].steps[0].seconds == both[1].steps[0].seconds > 0


# ---------------------------------------------------------------------------- native tool calls


class NativeScripted(ScriptedEngine):
    """A scripted engine with native tool calling: calls parsed from the text like ``hf``'s."""

    capabilities = ScriptedEngine.capabilities | {Capability.TOOLS}

    def generate(self, requests: Sequence[Request]) -> list[Generation]:
        out = super().generate(requests)
        for req, gen in zip(requests, out):
            gen.text, gen.tool_calls = parse_tool_calls(gen.text, req.tools)
        return out


def test_native_protocol_sends_tools_and_tool_messages() -> None:
    seen: list[Request] = []

    def fn(request: Request) -> str:
        seen.append(request)
        assert request.messages is not None
        if request.messages[-1]["role"] == "tool":
            return "The sum is " + request.messages[-1]["content"]
        return ('<tool_call>{"name": "add", "arguments": {"a": 2, "b": 3}}</tool_call>'
                '<tool_call>{"name": "add", "arguments": {"a": "x"}}</tool_call>')

    model = model_on(fn, NativeScripted)
    traj = Agent([add, send_email], system="Be brief.").run(model, ["What is 2 plus 3?"])[0]
    assert traj.protocol == "native"
    assert seen[0].tools == tuple(t.schema() for t in as_tools([add, send_email]))
    assert seen[0].messages is not None and seen[0].messages[0] == {"role": "system",
                                                                   "content": "Be brief."}
    # two calls in one reply: two steps; the second's arguments fail the schema
    assert [(s.tool, s.arguments, s.result) for s in traj.steps] == [
        ("add", {"a": 2, "b": 3}, "5"), ("add", {"a": "x"}, None), (None, None, None)]
    assert traj.steps[1].error is not None and "'b' is a required property" in traj.steps[1].error
    assert traj.steps[1].completion_tokens is None  # the reply's tokens are on its first step
    assert traj.stopped == "answer"
    msgs = seen[1].messages
    assert msgs is not None
    assistant, first, second = msgs[-3:]
    assert assistant["role"] == "assistant"
    calls = assistant["tool_calls"]  # type: ignore[typeddict-item]
    assert [c["function"]["arguments"] for c in calls] == ['{"a": 2, "b": 3}', '{"a": "x"}']
    assert first["role"] == "tool" and first["tool_call_id"] == calls[0]["id"]
    assert first["content"] == "5" and second["content"].startswith("Error: invalid arguments")
    # the final reply has no calls: its text is the answer
    assert traj.answer == "The sum is " + second["content"]


def test_protocol_choice() -> None:
    task = "What is 2 plus 3?"
    text_model = model_on({task: [answer("5")]})
    with pytest.raises(UsageError, match="has no native tool calling"):
        Agent([add], protocol="native").run(text_model, [task])
    native = model_on({task: [answer("5")]}, NativeScripted)
    traj = Agent([add], protocol="text").run(native, [task])[0]
    assert traj.protocol == "text" and traj.answer == "5"


class NoSchemaScripted(ScriptedEngine):
    """A scripted engine without constrained decoding."""

    capabilities = ScriptedEngine.capabilities - {Capability.SCHEMA}


def test_text_replies_are_constrained_to_the_protocol_where_the_engine_can() -> None:
    """On an engine with constrained decoding every text-protocol request carries the reply
    schema: a call of one of the tools with schema-valid arguments, or the answer."""
    import jsonschema

    from pytest_aie.agent.protocol import reply_schema

    task = "What is 2 plus 3?"
    model = recording({task: [call("add", a=2, b=3), answer("5")]})
    Agent([add, send_email]).run(model, [task])
    requests = model.seen[task]  # type: ignore[attr-defined]
    schema = requests[0].output_schema
    assert schema == reply_schema([t.schema() for t in as_tools([add, send_email])])
    assert all(r.output_schema == schema for r in requests)
    jsonschema.validate({"tool": "add", "arguments": {"a": 2, "b": 3}}, schema)
    jsonschema.validate({"answer": "5"}, schema)
    # unbounded strings are capped, so a rambling argument cannot run into max_tokens
    jsonschema.validate({"tool": "send_email", "arguments": {"to": "a@b", "body": "x" * 60}}, schema)
    for bad in ({"tool": "send_email", "arguments": {"to": "a@b", "body": "x" * 61}},
                {"tool": "add", "arguments": {"a": "two", "b": 3}}, {"tool": "nope", "arguments": {}},
                {"answer": "5", "tool": "add"}, {"tool": "add"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    # tool_choice="required": the first reply must be a call (no answer option), later ones not
    forced = recording({task: [call("add", a=2, b=3), answer("5")]})
    Agent([add], tool_choice="required").run(forced, [task])
    first, second = forced.seen[task]  # type: ignore[attr-defined]
    assert first.output_schema == reply_schema([as_tools([add])[0].schema()], answer=False)
    assert second.output_schema == reply_schema([as_tools([add])[0].schema()])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"answer": "5"}, first.output_schema)
    assert "Call a tool first" in first.messages[0]["content"]  # type: ignore[index]
    plain = recording({task: [answer("5")]})
    Agent([add], constrained=False).run(plain, [task])
    assert plain.seen[task][0].output_schema is None  # type: ignore[attr-defined]
    native = model_on({task: [answer("5")]}, NativeScripted)
    with pytest.raises(UsageError, match="constrained=True but engine"):
        Agent([add], constrained=True).run(model_on({task: [answer("5")]}, NoSchemaScripted), [task])
    assert Agent([add]).run(native, [task])[0].protocol == "native"


# ---------------------------------------------------------------------------- formats, targets


def test_trajectory_dict_round_trip_and_generation() -> None:
    traj = Trajectory(task="t", protocol="text", tools=[Tool.from_function(add).schema()],
                      steps=[Step(0, "out", "add", {"a": 1, "b": 2}, "3", None, False, 5, 6, 0.5),
                             Step(1, "fin", prompt_tokens=7, completion_tokens=1, seconds=0.25)],
                      answer="3", stopped="answer")
    data = traj.to_dict()
    assert list(data) == ["task", "protocol", "tools", "state_changing", "steps", "answer",
                          "stopped", "error", "prompt_tokens", "completion_tokens", "seconds"]
    assert list(data["steps"][0]) == ["index", "output", "tool", "arguments", "result", "error",
                                      "refused", "prompt_tokens", "completion_tokens", "seconds"]
    assert (data["prompt_tokens"], data["completion_tokens"], data["seconds"]) == (12, 7, 0.75)
    assert json.loads(json.dumps(data)) == data
    assert Trajectory.from_dict(data).to_dict() == data
    gen = traj.to_generation(model="m")
    assert (gen.text, gen.finish_reason, gen.engine, gen.model, gen.error) == (
        "3", "stop", "agent", "m", None)
    assert (gen.prompt_tokens, gen.completion_tokens, gen.trajectory) == (12, 7, data)


def test_target_identity_and_run_cases() -> None:
    from pytest_aie.dataset import Case

    script = {"What is 2 plus 3?": [call("add", a=2, b=3), answer("5")]}
    model = model_on(script)
    agent = Agent([add], name="adder")
    assert agent.target_label == "agent:adder"
    base = agent.target_identity(model)
    assert agent.target_identity(model) == base
    assert Agent([add], name="other").target_identity(model) == base  # the name is only a label
    assert Agent([add], max_steps=3).target_identity(model) != base
    assert Agent([add], system="Be brief.").target_identity(model) != base
    assert Agent([tool(add, changes_state=True)]).target_identity(model) != base
    assert Agent([tool(divide, name="add")]).target_identity(model) != base  # other code
    other = Model("default", "scripted", "", engine_obj=ScriptedEngine({"x": "y"}))
    assert agent.target_identity(other) != base  # another model
    cases = [Case("c0", {"question": "What is 2 plus 3?"}), Case("c1", {"prompt": "no question"})]
    (ok,) = agent.run_cases(cases[:1], model)
    assert ok.text == "5" and ok.error is None and ok.trajectory is not None
    assert ok.trajectory["task"] == "What is 2 plus 3?"
    # a case without the task is the suite's configuration error, not the case's failure
    with pytest.raises(DatasetError, match="case 'c1' has no field 'question'.*Agent\\(task='prompt'\\)"):
        agent.run_cases(cases, model)
    by_fn = Agent([add], task=lambda case: case["prompt"].upper())
    assert by_fn.task_text(cases[1]) == "NO QUESTION"


# ---------------------------------------------------------------------------- the Recorder


def test_recorder_records_a_custom_agents_calls() -> None:
    rec = Recorder([add, divide, send_email], task="2 + 3, then / 0")
    wrapped = {f.__name__: f for f in rec.tools}
    assert wrapped["add"].__doc__ == add.__doc__
    rec.output("I add first", prompt_tokens=10, completion_tokens=3)
    assert wrapped["add"](2, b=3) == 5  # positional arguments by the parameters' order
    with pytest.raises(ZeroDivisionError):
        rec.call("divide", a=1, b=0)
    with pytest.raises(ToolCallError, match="unknown tool 'multiply'"):
        rec.call("multiply", a=1, b=2)
    with pytest.raises(ToolCallError, match="invalid arguments"):
        wrapped["add"](a="x", b=1)
    with pytest.raises(ToolCallError, match="refused: send_email changes state"):
        wrapped["send_email"](to="a@b.c", body="hi")
    traj = rec.finish("5")
    assert traj.protocol == "custom" and traj.stopped == "answer" and traj.answer == "5"
    assert traj.state_changing == ["send_email"]
    assert [(s.index, s.tool, s.arguments, s.result, s.refused) for s in traj.steps] == [
        (0, "add", {"a": 2, "b": 3}, "5", False),
        (1, "divide", {"a": 1, "b": 0}, None, False),
        (2, "multiply", {"a": 1, "b": 2}, None, False),
        (3, "add", {"a": "x", "b": 1}, None, False),
        (4, "send_email", {"to": "a@b.c", "body": "hi"}, None, True),
        (5, None, None, None, False)]
    assert traj.steps[0].output == "I add first" and traj.steps[0].completion_tokens == 3
    assert traj.steps[1].error == "ZeroDivisionError: division by zero"
    assert [c[0] for c in CALLED] == ["add", "divide"]  # the refused and invalid never ran
    assert all(s.seconds >= 0 for s in traj.steps)
    none = Recorder([add]).finish(None)
    assert none.stopped == "error" and none.error == "the agent gave no answer"


def test_a_target_returning_a_trajectory() -> None:
    def my_agent(case: Any) -> Trajectory:
        rec = Recorder([add], task=case["question"])
        return rec.finish(str(rec.call("add", a=2, b=3)))

    engine = TargetEngine(my_agent)
    request = target_request({"question": "2+3?"}, model_on({}).defaults)
    engine.bind({request.key(): {"question": "2+3?"}})
    gen = engine.generate([request])[0]
    assert gen.error is None and gen.text == "5"
    assert gen.trajectory is not None and gen.trajectory["protocol"] == "custom"
    assert [s["tool"] for s in gen.trajectory["steps"]] == ["add", None]


# ---------------------------------------------------------------------------- a whole run

AGENTFNS = '''
import json

def reply(request):
    """Call add with the two numbers of the task, then answer with the result."""
    msgs = request.messages
    task = next(m["content"] for m in msgs if m["role"] == "user")
    if "loop" in task:
        return json.dumps({"tool": "add", "arguments": {"a": 1, "b": 1}})
    if msgs[-1]["role"] == "user" and msgs[-1]["content"].startswith("Result of add: "):
        return json.dumps({"answer": msgs[-1]["content"].split(": ")[1]})
    a, b = [int(w) for w in task.replace("?", "").split() if w.isdigit()]
    return "Let me compute. " + json.dumps({"tool": "add", "arguments": {"a": a, "b": b}})
'''

AGENT_TEST = '''
import pytest
from pytest_aie.agent import Agent

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

def again(a: int, b: int) -> int:
    """Add two numbers (and forget the result)."""
    return a + b

AGENT = Agent([add, again], max_steps=3, name="adder")

@pytest.mark.dataset("tasks.jsonl", target=AGENT)
@pytest.mark.exact()
def test_agent(case, output):
    assert output.trajectory is not None
'''


def scripted_agent_project(pytester: pytest.Pytester, **test_files: str) -> None:
    """The test files, the scripted agent's replies (``agentfns.reply``) and an ini that runs
    them on the scripted engine, uncached."""
    pytester.makepyfile(agentfns=AGENTFNS, **test_files)
    pytester.makeini(textwrap.dedent("""
        [pytest]
        aie_engine = scripted
        aie_model = agentfns:reply
        aie_cache = off
    """))


def test_agent_as_a_dataset_target_in_a_pytest_run(pytester: pytest.Pytester) -> None:
    tasks = [{"id": "t1", "question": "What is 2 plus 3?", "expected": "5"},
             {"id": "t2", "question": "What is 10 plus 7?", "expected": "17"},
             {"id": "t3", "question": "loop on 1 and 1", "expected": "2"}]
    write_jsonl(pytester, "tasks", tasks)
    scripted_agent_project(pytester, test_suite=AGENT_TEST)
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=1)
    records = {r["case_id"]: r for r in read_records(pytester)}
    assert set(records) == {"t1", "t2", "t3"}
    t1 = records["t1"]["trajectory"]
    assert t1["protocol"] == "text" and t1["stopped"] == "answer" and t1["answer"] == "5"
    assert [s["tool"] for s in t1["steps"]] == ["add", None]
    assert t1["steps"][0]["arguments"] == {"a": 2, "b": 3} and t1["steps"][0]["result"] == "5"
    assert records["t1"]["output"] == "5" and records["t1"]["passed"]
    t3 = records["t3"]["trajectory"]
    assert t3["stopped"] == "max_steps" and len(t3["steps"]) == 3 and not records["t3"]["passed"]
    assert [t["name"] for t in [s["function"] for s in t1["tools"]]] == ["add", "again"]


@pytest.mark.parametrize("argument, fix", [
    ('prompt="Q: {question}"', "*dataset(prompt=...) is not used by a target=Agent(...) suite. "
                               "Fix: drop prompt=; the agent's task is the case field "
                               "Agent(task='question') names*"),
    ("max_tokens=64", "*dataset(max_tokens=...) is not used by a target=Agent(...) suite. "
                      "Fix: drop it and write target=Agent(..., max_tokens=...)"),
])
def test_a_dataset_argument_an_agent_target_ignores_is_an_error(pytester: pytest.Pytester,
                                                                argument: str, fix: str) -> None:
    write_jsonl(pytester, "tasks", [{"id": "t1", "question": "What is 2 plus 3?", "expected": "5"}])
    test = AGENT_TEST.replace('target=AGENT)', f'target=AGENT, {argument})')
    assert test != AGENT_TEST
    scripted_agent_project(pytester, test_suite=test)
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines([fix])


FIXTURES_TEST = '''
import json
import pytest

def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b

@pytest.mark.dataset("tasks.jsonl")
@pytest.mark.agent("tool_calls", match="exact")
@pytest.mark.exact()
def test_in_the_body(case, agent, evaluate):
    evaluate(agent([add], max_steps=3).run(case["question"]))

def test_retriever_fixture(retriever, tmp_path):
    search = retriever("bm25", corpus="docs.jsonl")
    assert retriever("bm25", corpus="docs.jsonl") is search      # one per arguments
    hits = search.search(["where is the eiffel tower", "nile river"], k=2)
    assert [h[0].id for h in hits] == ["eiffel", "nile"]
    with pytest.raises(Exception, match="has no option 'k9'"):
        retriever("bm25", corpus="docs.jsonl", k9=1)
    # a list corpus is keyed by its content: an equal list shares the retriever, a changed
    # one (even the same list object, mutated) gets its own
    docs = [{"id": "a", "text": "apples are red"}, {"id": "b", "text": "bananas are yellow"}]
    first = retriever("bm25", corpus=docs)
    assert retriever("bm25", corpus=[dict(d) for d in docs]) is first
    docs[1] = {"id": "b", "text": "blueberries are blue"}
    second = retriever("bm25", corpus=docs)
    assert second is not first
    assert second.search(["blue berries"], k=1)[0][0].text == "blueberries are blue"
'''


def test_the_agent_and_retriever_fixtures(pytester: pytest.Pytester) -> None:
    """``agent(tools).run(task)`` in a test body, handed to the markers with ``evaluate``;
    ``retriever(kind, corpus=)`` built once per arguments, the corpus found next to the test."""
    tasks = [{"id": "t1", "question": "What is 2 plus 3?", "expected": "5",
              "expected_tools": ["add"]},
             {"id": "t2", "question": "What is 10 plus 7?", "expected": "17",
              "expected_tools": ["add"]}]
    write_jsonl(pytester, "tasks", tasks)
    write_jsonl(pytester, "docs", [
        {"id": "eiffel", "text": "The Eiffel Tower is in Paris."},
        {"id": "nile", "text": "The Nile is a river in Africa."},
        {"id": "bees", "text": "Bees make honey."}])
    scripted_agent_project(pytester, test_fixtures=FIXTURES_TEST)
    result = pytester.runpytest_subprocess("-p", "no:randomly",
                                           f"--aie-cache-dir={pytester.path / 'cache'}")
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=3)
    records = read_records(pytester)
    calls = [r for r in records if r["metric"] == "agent.tool_calls"]
    assert [r["status"] for r in calls] == ["passed", "passed"]
    assert all(r["trajectory"]["steps"][0]["tool"] == "add" for r in calls)
    assert sorted(r["output"] for r in records if r["metric"] == "exact.match") == ["17", "5"]


def test_the_docs_agents_example_runs_and_documents_task() -> None:
    """The agents page's example defines the agent it describes: task= names the case field,
    system= the system prompt; prompt= is an error that names task=."""
    import re
    from pathlib import Path

    from pytest_aie.dataset import Case

    section = (Path(__file__).resolve().parents[1] / "docs" / "evals" / "agents.md").read_text(
        encoding="utf-8")
    (code,) = re.findall(r"^```python\n(.*?)^```", section, re.M | re.S)
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/evals/agents.md", "exec"), namespace)  # noqa: S102 - the page's own
    agent = namespace["AGENT"]
    assert isinstance(agent, Agent) and [t.name for t in agent.tools] == ["lookup", "send_email"]
    assert agent.task_text(Case("c0", {"question": "Capital of Japan?"})) == "Capital of Japan?"
    assert agent.system == "Answer in one sentence." and agent.tools[1].changes_state
    assert namespace["lookup"]("Japan", "capital") == "Tokyo"
    assert "task=" in section and "There is no `prompt=`" in section
    with pytest.raises(UsageError, match=r"unknown keyword prompt=.*Agent\(task='question'\)"):
        Agent(agent.tools, prompt="{question}")
