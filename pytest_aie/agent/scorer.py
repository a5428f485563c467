"""The ``agent`` eval marker: checks on each case's agent trajectory, one metric per marker.

::

    @pytest.mark.dataset("tasks.jsonl", target=Agent([calculate, lookup]))
    @pytest.mark.exact("contains", min_pass_rate=0.5)            # is the answer right?
    @pytest.mark.agent("success", min_pass_rate=0.8)             # did it answer in budget?
    @pytest.mark.agent("tool_calls", match="in_order", min_pass_rate=0.7)
    @pytest.mark.agent("loops", repeats=3, min_pass_rate=0.9)
    @pytest.mark.agent("steps", max=6, min_score=4)
    def test_agent(case, output): ...

Each case's trajectory is ``Generation.trajectory`` (from ``target=Agent(...)``, or a target
returning a :class:`~pytest_aie.agent.Trajectory`). The checks (:mod:`pytest_aie.agent.checks`):

* pass/fail per case, the suite's figure a pass rate gated by ``min_pass_rate=``:
  ``success`` (the agent gave a non-empty answer within its budgets: ``stopped == "answer"``),
  ``tool_calls`` (its calls match the case's ``expected`` field, default ``expected_tools``,
  under ``match=`` ``exact`` / ``in_order`` / ``subset``), ``arguments`` (every call's arguments
  are valid against its tool's JSON schema; a run without calls fails, a model failure, unless
  the case's expected calls are an empty list), ``loops``
  (passes when no call is repeated ``repeats`` times), ``progress`` (passes unless the run's last
  ``window`` steps made no progress) and ``errors`` (no tool call failed: raised, refused,
  unknown tool or invalid arguments);
* counts, lower is better, the suite's figure a mean gated by ``min_score=`` as a ceiling:
  ``steps`` and ``tokens`` (prompt + completion), with ``max=`` a per-case ceiling.

Whether the answer is *right* is left to the other markers (``exact``, ``judge``) on the
agent's answer text, which is the output. Never green by accident: an output without a
trajectory, or with a malformed one, is unmeasured with the reason; a case without the
``expected`` field fails when the dataset loads (``tool_calls``); an expected call of a tool the
agent does not have is one :class:`~pytest_aie.errors.UsageError` for the suite (when it is built
for ``target=Agent(...)``, else when the first trajectory listing its tools is scored); a bad
check or option is one :class:`~pytest_aie.errors.UsageError` listing the options.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from pytest_aie.agent import checks, config
from pytest_aie.errors import DatasetError, UsageError, whole_number
from pytest_aie.scorers.base import EvalMarker, Sample, Score, Scorer

if TYPE_CHECKING:
    from pytest_aie.dataset import Case

__all__ = ["CHECKS", "MARKER", "NO_TRAJECTORY", "AgentCountScorer", "AgentScorer", "build_agent_scorer"]

BINARY_CHECKS = ("success", "tool_calls", "arguments", "loops", "progress", "errors")
COUNT_CHECKS = ("steps", "tokens")
CHECKS = BINARY_CHECKS + COUNT_CHECKS
#: which options each check takes (every other option is a UsageError for it)
_OPTIONS = {"tool_calls": ("expected", "match", "tolerance"), "loops": ("repeats",),
            "progress": ("window",), "steps": ("max",), "tokens": ("max",)}
NO_TRAJECTORY = ("the output carries no agent trajectory: use target=Agent(...) "
                 "(pytest_aie.agent), or return a Trajectory (pytest_aie.agent.Recorder's "
                 "finish(), or Generation(trajectory=...)) from your target")
_LISTED = 5  # items named in a reason at most


def _calls_text(calls: Sequence[Mapping[str, Any]]) -> str:
    shown = ", ".join(checks.show_call(c["tool"], c.get("arguments")) for c in calls[:_LISTED])
    return shown + (f" (+{len(calls) - _LISTED} more)" if len(calls) > _LISTED else "")


def _at(item: Mapping[str, Any]) -> str:
    return f"step {item['index']} {checks.show_call(item['tool'], item.get('arguments'))}"


class AgentScorer(Scorer):
    """One pass/fail agent check per case (see the module docstring)."""

    marker: ClassVar[str] = "agent"
    binary: ClassVar[bool] = True

    def __init__(self, check: str, *, expected: str = "expected_tools", match: str = "in_order",
                 repeats: int = 3, window: int = 3, tolerance: float = 1e-6) -> None:
        self.check, self.field, self.match = check, expected, match
        self.repeats, self.window, self.tolerance = repeats, window, tolerance

    @property
    def metric(self) -> str:
        return f"agent.{self.check}"

    def required_fields(self) -> tuple[str, ...]:
        return (self.field,) if self.check == "tool_calls" else ()

    def score(self, output: str, case: Case) -> Score:
        raise TypeError("the agent scorer reads the generation's trajectory: the harness scores "
                        "it through score_samples(), not score()")

    def score_samples(self, samples: Sequence[Sample]) -> list[Score]:
        out = []
        for sample in samples:
            traj: Any = sample.generation.trajectory
            if traj is not None and not isinstance(traj, Mapping) and hasattr(traj, "to_dict"):
                traj = traj.to_dict()  # a Trajectory object where its dict was expected
            if traj is None:
                out.append(Score.unmeasured(self.metric, NO_TRAJECTORY))
                continue
            expected = self._expected(sample.case) if self.check == "tool_calls" else None
            if self.check == "arguments":
                expected = self._expected_if_given(sample.case)
            if expected is not None and isinstance(traj, Mapping):
                self._check_offered(sample.case, traj, expected)
            try:
                out.append(self._score(traj, expected))
            except ValueError as exc:
                out.append(Score.unmeasured(self.metric, f"malformed trajectory: {exc}"))
        return out

    def _expected(self, case: Case) -> list[dict[str, Any]]:
        try:
            return checks.expected_calls(case.get(self.field))
        except ValueError as exc:
            where = f"case {case.id!r}" + (f" ({case.source})" if case.source else "")
            raise DatasetError(f"{where}: field {self.field!r} {exc}",
                               fix=f'write "{self.field}": ["lookup", {{"tool": "convert", '
                                   '"arguments": {"to_unit": "km"}}]') from None

    def _expected_if_given(self, case: Case) -> list[dict[str, Any]] | None:
        """The case's expected calls when its field holds a readable list, else None."""
        if case.get(self.field) is None:
            return None
        try:
            return checks.expected_calls(case.get(self.field))
        except ValueError:
            return None

    def expected_tool_names(self, case: Case) -> list[str]:
        """The tool names the case's expected calls name (``tool_calls`` only; else none),
        for the check against the agent's tools when the suite is built."""
        if self.check != "tool_calls":
            return []
        return [c["tool"] for c in self._expected(case)]

    def _check_offered(self, case: Case, traj: Mapping[str, Any],
                       expected: list[dict[str, Any]]) -> None:
        """An expected call of a tool the trajectory's agent was not offered is a typo in the
        dataset, not a model failure: one UsageError (unchecked when the trajectory lists no
        tools)."""
        offered = sorted(checks.offered_tools(traj))
        if not offered:
            return
        unknown = [c["tool"] for c in expected if c["tool"] not in offered]
        if unknown:
            raise config.unknown_tool(case, self.field, unknown[0], offered)

    def _base(self, traj: Mapping[str, Any]) -> dict[str, Any]:
        return {"check": self.check, "stopped": traj.get("stopped"),
                "steps": checks.steps(traj)}

    def _result(self, ok: bool, reason: str, traj: Mapping[str, Any], **details: Any) -> Score:
        return Score(self.metric, 1.0 if ok else 0.0, ok, reason, {**self._base(traj), **details})

    def _score(self, traj: Mapping[str, Any], expected: list[dict[str, Any]] | None) -> Score:
        base = self._base(traj)  # validates the steps first
        n = base["steps"]
        if self.check == "success":
            stopped = traj.get("stopped")
            answer = traj.get("answer")
            if stopped == "answer" and isinstance(answer, str) and not answer.strip():
                return self._result(False, f"empty answer after {n} step{'s' * (n != 1)}: "
                                           "the agent stopped without saying anything", traj,
                                    error="empty answer")
            if stopped == "answer" and answer is not None:
                return self._result(True, f"answered after {n} step{'s' * (n != 1)}", traj)
            why = traj.get("error") or "no answer"
            return self._result(False, f"no answer: stopped at {stopped} ({why})", traj,
                                error=traj.get("error"))
        calls = checks.tool_sequence(traj)
        if self.check == "tool_calls":
            assert expected is not None
            got = checks.match_calls(calls, expected, self.match, tolerance=self.tolerance)
            details = {"match": self.match, "expected": expected, "calls": calls,
                       "pairs": list(got.pairs)}
            if got.matched:
                return self._result(True, f"calls match the expected ({self.match}): "
                                          f"{_calls_text(calls) or 'no calls'}", traj, **details)
            return self._result(False, f"calls do not match ({self.match}): {got.mismatch}",
                                traj, mismatch=got.mismatch, **details)
        if self.check == "arguments":
            if not calls:  # the model's doing: a failure, not an unmeasured case
                if expected == []:
                    return self._result(True, "no calls expected and none made", traj,
                                        invalid=[])
                wanted = ", ".join(dict.fromkeys(c["tool"] for c in expected or ()))
                return self._result(False, "the agent never called a tool"
                                    + (f"; expected {wanted}" if wanted else ""), traj,
                                    invalid=[])
            bad = checks.invalid_arguments(traj)
            if not bad:
                return self._result(True, f"all {len(calls)} calls have valid arguments", traj,
                                    invalid=[])
            first = bad[0]
            return self._result(False, f"{len(bad)} of {len(calls)} calls have invalid "
                                       f"arguments; {_at(first)}: {first['error']}", traj,
                                invalid=bad)
        if self.check == "loops":
            loop = checks.find_loops(traj, self.repeats)
            if loop is None:
                return self._result(True, f"no call made {self.repeats} times", traj, loop=None,
                                    repeats=self.repeats)
            return self._result(False, f"loop: {checks.show_call(loop['tool'], loop['arguments'])} "
                                       f"made {loop['count']} times (steps "
                                       f"{', '.join(map(str, loop['indices']))})", traj,
                                loop=loop, repeats=self.repeats)
        if self.check == "progress":
            stuck = checks.no_progress(traj, self.window)
            if stuck is None:
                return self._result(True, f"progress within the last {self.window} steps"
                                    if n >= self.window else f"{n} steps, fewer than "
                                    f"window={self.window}", traj, stuck=None, window=self.window)
            whys = "; ".join(f"step {s['index']}: {s['why']}" for s in stuck["steps"][:_LISTED])
            return self._result(False, f"no progress in the last {self.window} steps: {whys}",
                                traj, stuck=stuck, window=self.window)
        assert self.check == "errors"
        errors = checks.tool_errors(traj)
        if not errors:
            return self._result(True, f"no tool call failed ({len(calls)} calls)", traj,
                                errors=[])
        first = errors[0]
        kinds = ", ".join(sorted({e["kind"] for e in errors}))
        return self._result(False, f"{len(errors)} of {len(calls)} tool calls failed ({kinds}); "
                                   f"{_at(first)} {first['kind']}: {first['error']}", traj,
                            errors=errors)


class AgentCountScorer(AgentScorer):
    """``steps`` or ``tokens`` per case: a count, lower is better; ``max`` makes each case pass
    or fail on its own, else the case is scored and the suite's ``min_score`` ceiling decides."""

    binary: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = False

    def __init__(self, check: str, *, max: float | None = None) -> None:
        super().__init__(check)
        self.max = max

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return (0.0, None)

    def _score(self, traj: Mapping[str, Any], expected: list[dict[str, Any]] | None) -> Score:
        base = self._base(traj)
        if self.check == "steps":
            value = base["steps"]
            what = f"{value} step{'s' * (value != 1)}"
            extra: dict[str, Any] = {}
        else:
            used = checks.tokens(traj)
            if used is None:
                return Score.unmeasured(self.metric, "the trajectory reports no token counts "
                                                     "(record prompt_tokens and completion_tokens "
                                                     "in its steps)", **base)
            value = used["total"]
            what = f"{value} tokens ({used['prompt']} prompt + {used['completion']} completion)"
            extra = {"tokens": used}
        if self.max is None:
            return Score(self.metric, float(value), None, f"{what}; no max", {**base, **extra})
        ok = value <= self.max
        return Score(self.metric, float(value), ok,
                     f"{what}, {'within' if ok else 'over'} max {self.max:g}",
                     {**base, **extra, "max": self.max})


def _usage(check: Any, problem: str, fix: str) -> UsageError:
    return UsageError(f"@pytest.mark.agent({check!r}): {problem}", fix=fix)


def _whole(check: str, name: str, value: Any, least: int) -> int:
    return whole_number(name, value, least=least, example=max(least, 3),
                        where=f"@pytest.mark.agent({check!r}): ")


def build_agent_scorer(check: Any = "success", *, expected: str | None = None,
                       match: str | None = None, repeats: int | None = None,
                       window: int | None = None, max: float | None = None,
                       tolerance: float | None = None) -> AgentScorer:
    """The scorer of ``@pytest.mark.agent(check, ...)``; a bad check or option (also an option
    that the check does not take) is one :class:`UsageError` listing the options."""
    if not isinstance(check, str) or check not in CHECKS:
        raise UsageError(f"@pytest.mark.agent({check!r}): unknown check",
                         fix=f"use one of {', '.join(CHECKS)}")
    given = {k: v for k, v in (("expected", expected), ("match", match), ("repeats", repeats),
                               ("window", window), ("max", max), ("tolerance", tolerance))
             if v is not None}
    allowed = _OPTIONS.get(check, ())
    for name in given:
        if name not in allowed:
            takers = [c for c, opts in _OPTIONS.items() if name in opts]
            raise _usage(check, f"{name}= applies to check={' or '.join(map(repr, takers))} only",
                         f"drop {name}=; check={check!r} takes "
                         + (", ".join(f"{o}=" for o in allowed) or "no options")
                         + " (and min_pass_rate=, min_score=, must_pass=, samples=)")
    if check in COUNT_CHECKS:
        if max is not None and (isinstance(max, bool) or not isinstance(max, (int, float))
                                or not math.isfinite(max) or max < (1 if check == "steps" else 0)):
            raise _usage(check, f"max={max!r} must be a number >= "
                                f"{1 if check == 'steps' else 0}",
                         f"write e.g. max={6 if check == 'steps' else 4000}")
        return AgentCountScorer(check, max=None if max is None else float(max))
    if expected is not None and (not isinstance(expected, str) or not expected):
        raise _usage(check, f"expected={expected!r} must name a case field",
                     'write e.g. expected="expected_tools"')
    if match is not None and match not in checks.MODES:
        raise _usage(check, f"match={match!r} is not a match mode",
                     f"use match= one of {', '.join(map(repr, checks.MODES))}")
    if tolerance is not None and (isinstance(tolerance, bool)
                                  or not isinstance(tolerance, (int, float))
                                  or not math.isfinite(tolerance) or tolerance < 0):
        raise _usage(check, f"tolerance={tolerance!r} must be a number >= 0",
                     "write e.g. tolerance=1e-6")
    return AgentScorer(check, expected=expected or "expected_tools", match=match or "in_order",
                       repeats=_whole(check, "repeats", 3 if repeats is None else repeats, 2),
                       window=_whole(check, "window", 3 if window is None else window, 1),
                       tolerance=1e-6 if tolerance is None else float(tolerance))


def _agent(check: Any = "success", *, base_dir: Any, engine: Any, expected: str | None = None,
           match: str | None = None, repeats: int | None = None, window: int | None = None,
           max: float | None = None, tolerance: float | None = None) -> Scorer:
    return build_agent_scorer(check, expected=expected, match=match, repeats=repeats,
                              window=window, max=max, tolerance=tolerance)


#: the ``agent`` eval marker (listed in :mod:`pytest_aie.suite.markers`)
MARKER = EvalMarker(
    "agent", _agent,
    "agent(check='success', *, expected='expected_tools', match='in_order', repeats=3, "
    "window=3, max=None, tolerance=1e-6, min_pass_rate=None, min_score=None, must_pass=()): "
    "check each case's agent trajectory (target=Agent(...), or a target returning a "
    "Trajectory), one metric per marker (agent.CHECK; stack several markers). Pass/fail "
    "checks, gated by min_pass_rate: success (an answer within the budgets), tool_calls "
    "(the calls match the case's expected field: tool names or {'tool', 'arguments'} with "
    "the arguments a subset, numbers within tolerance; match='exact', 'in_order' or "
    "'subset'), arguments (valid against each tool's JSON schema), loops (no call with the "
    "same arguments made repeats times), progress (not stuck: the last window steps "
    "without a new result), errors (no tool call raised, was refused or failed). Counts, "
    "lower is better: steps, tokens; max= is a per-case ceiling, min_score= the ceiling "
    "on the suite's mean. Whether the answer is right is for exact/judge markers on the "
    "agent's answer text. No trajectory: unmeasured.")
