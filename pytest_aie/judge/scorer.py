"""The ``judge`` eval marker: AI-as-a-judge on a rubric, for a whole suite at once.

``@pytest.mark.judge("correctness", judge_model=None, min_pass_rate=0.8)`` asks one or more
judge models to grade every case's output on a rubric (:mod:`pytest_aie.judge.rubrics`). The
judge's requests go through the pipeline like the model's own (batched, de-duplicated, cached,
once per run under xdist). Each reply is read (:mod:`pytest_aie.judge.verdicts`): constrained to
the rubric's JSON schema where the judge's engine can, else read leniently with one repair
request; what cannot be read is unmeasured, with the raw reply kept.

Bias controls: a preference rubric is asked in both orders (A/B and B/A; orders that disagree
count as a tie) and the suite reports the judge's position-flip rate; every rubric reports the
correlation of scores with answer length; several judges are combined (``combine="mean"`` or
``"majority"``) with their agreement (Krippendorff's alpha). Human labels (a case field, or a
file) calibrate the judge: Cohen's kappa with its interval, and a ``min_kappa=`` below which the
judge is untrusted and its verdicts inconclusive (:mod:`pytest_aie.judge.calibration`).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

from pytest_aie.engines.base import Capability, Generation, Request, Sampling
from pytest_aie.errors import UsageError
from pytest_aie.judge.injection import injection_attempts
from pytest_aie.judge.rubrics import SYSTEM, Rubric, load_rubric
from pytest_aie.judge.verdicts import Reading, pair_winner, read_reply, repair_request
from pytest_aie.scorers.base import ModelScorer, Sample, Score

__all__ = ["JudgeScorer", "build_judge"]

Call = tuple[str, str | None, Request]  # (judge model, order "AB"/"BA" or None, request)
_WIN = {"A": 1.0, "tie": 0.5, "B": 0.0}


class JudgeScorer(ModelScorer):
    """One rubric, one or more judges; see the module docstring."""

    marker: ClassVar[str] = "judge"
    binary: ClassVar[bool] = False
    rounds: ClassVar[int] = 1  # one repair round for unreadable replies

    def __init__(self, rubric: Rubric, *, base_dir: Path, judge_model: str | Sequence[str] | None,
                 combine: str | None = None, against: str | None = None, human: str | None = None,
                 human_file: str | None = None, min_kappa: float | None = None,
                 kappa_weights: str | None = "quadratic", threshold: float | None = None,
                 max_tokens: int = 256) -> None:
        from pytest_aie.judge.calibration import HumanLabels

        self.rubric = rubric
        if judge_model is None:
            self.judges = ["judge"]
        elif isinstance(judge_model, str):
            self.judges = [f"judge:{judge_model}"]
        else:
            self.judges = [f"judge:{j}" for j in judge_model]
        super().__init__(None)
        self.model_name = self.judges[0]
        default = "mean" if rubric.output == "score" else "majority"
        self.combine = combine or default
        self.against = against
        self.threshold = threshold
        self.max_tokens = max_tokens
        self.min_kappa = min_kappa
        self.kappa_weights = kappa_weights if rubric.ordinal else None
        self.human = HumanLabels(human, human_file, base_dir, rubric)
        self._constrained: dict[str, bool] = {}
        self._stats: dict[tuple[str, str], dict[str, Any]] = {}

    # --- declarations -------------------------------------------------------------------
    @property
    def constrained(self) -> dict[str, bool]:
        """Per judge: were its replies constrained to the rubric's JSON schema?"""
        return self._constrained

    @property
    def metric(self) -> str:
        return f"judge.{self.rubric.name}"

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        if self.rubric.output == "score":
            return float(self.rubric.scale[0]), float(self.rubric.scale[-1])
        return 0.0, 1.0

    def required_fields(self) -> tuple[str, ...]:
        return self.rubric.case_fields

    def bind(self, supports: Callable[[str, str], bool]) -> None:
        self._constrained = {j: supports(j, Capability.SCHEMA) for j in self.judges}

    # --- requests -----------------------------------------------------------------------
    def _request(self, judge: str, variables: dict[str, Any], case_id: str) -> Request:
        text = self.rubric.render(variables, case_id)
        return Request(messages=({"role": "system", "content": SYSTEM},
                                 {"role": "user", "content": text}),
                       sampling=Sampling(temperature=0.0, max_tokens=self.max_tokens, seed=0),
                       output_schema=self.rubric.schema() if self._constrained.get(judge) else None)

    def _other(self, s: Sample) -> tuple[str | None, str]:
        """The answer a preference rubric compares this sample's output with, or why none."""
        against = self.against
        if against is None:
            others = [m for m in s.generations if m != s.model]
            if len(others) == 1:
                against = others[0]
            elif "expected" in s.case.fields:
                against = "expected"
            else:
                return None, ("nothing to compare with: pass against='MODEL' (a model of the "
                              "suite) or against='FIELD' (a case field)")
        if against in s.generations:
            if against == s.model:
                return None, f"{against} is the model the others are compared against"
            return s.generations[against].text, against
        if against in s.case.fields:
            return str(s.case.fields[against]), against
        return None, (f"against={against!r} is neither a model of this suite nor a field of "
                      f"case {s.case.id!r}")

    def _calls(self, s: Sample) -> list[Call] | str:
        """The judge requests for one sample, or why it cannot be judged."""
        fields = dict(s.case.fields)
        variables = {**fields, "case": fields, "input": _asked(s), "output": s.text}
        retrieved = s.generation.retrieved
        if retrieved is not None:  # a RAG target: judge against what it retrieved
            variables["retrieved"] = retrieved
            variables.setdefault("context", "\n\n".join(
                f"[{h.get('id')}] {h.get('text', '')}" for h in retrieved))
        if self.rubric.output != "preference":
            return [(j, None, self._request(j, variables, s.case.id)) for j in self.judges]
        other, label = self._other(s)
        if other is None:
            return label
        calls: list[Call] = []
        for j in self.judges:
            for order, (a, b) in (("AB", (s.text, other)), ("BA", (other, s.text))):
                calls.append((j, order, self._request(j, {**variables, "answer_a": a,
                                                          "answer_b": b}, s.case.id)))
        return calls

    def plan(self, samples: Sequence[Sample]) -> list[list[Request | tuple[str, Request]]]:
        plans: list[list[Request | tuple[str, Request]]] = []
        for s in samples:
            calls = self._calls(s)
            plans.append([] if isinstance(calls, str) else [(j, r) for j, _, r in calls])
        return plans

    def follow_up(self, samples: Sequence[Sample], results: Sequence[Sequence[Generation]]
                  ) -> list[list[Request | tuple[str, Request]]]:
        """One repair request for each reply that could not be read."""
        out: list[list[Request | tuple[str, Request]]] = []
        for s, gens in zip(samples, results):
            calls = self._calls(s)
            extra: list[Request | tuple[str, Request]] = []
            if not isinstance(calls, str):
                for (j, _, req), gen in zip(calls, gens):
                    reading = read_reply(gen, self.rubric)
                    if reading.value is None and gen.error is None:
                        extra.append((j, repair_request(req, gen, reading.error or "", self.rubric)))
            out.append(extra)
        return out

    # --- scores -------------------------------------------------------------------------
    def score_results(self, samples: Sequence[Sample],
                      results: Sequence[Sequence[Generation]]) -> list[Score]:
        from pytest_aie.judge.calibration import apply_trust, suite_stats

        scores = [self._score_one(s, list(gens)) for s, gens in zip(samples, results)]
        by_key: dict[tuple[str, str], list[int]] = {}
        for i, s in enumerate(samples):
            if s.index == 0:
                by_key.setdefault((s.case.suite, s.model), []).append(i)
        for key, idx in by_key.items():
            stats = suite_stats(self, [samples[i] for i in idx], [scores[i] for i in idx])
            self._stats[key] = stats
        apply_trust(self, samples, scores, self._stats)
        return scores

    def suite_aggregate(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        if not samples:
            return None
        stats = self._stats.get((samples[0].case.suite, samples[0].model))
        return None if stats is None else {"judge": stats}

    def _score_one(self, s: Sample, gens: list[Generation]) -> Score:
        calls = self._calls(s)
        if isinstance(calls, str):
            return Score.unmeasured(self.metric, calls, rubric=self.rubric.name)
        repairs = iter(gens[len(calls):])
        judgments = []
        for (judge, order, _), gen in zip(calls, gens):
            reading, repaired, raw = read_reply(gen, self.rubric), False, gen.text
            if reading.value is None and gen.error is None:
                again = next(repairs, None)
                if again is not None:
                    second = read_reply(again, self.rubric)
                    if second.value is not None:
                        reading, repaired = second, True
                    else:
                        reading = Reading(None, "", f"{reading.error}; after one repair "
                                                    f"request: {second.error}")
                        raw = f"{gen.text}\n--- repair reply ---\n{again.text}"
            judgments.append({
                "judge": judge, "model": f"{gen.engine}:{gen.model}" if gen.engine else None,
                "order": order, "value": reading.value,
                "rationale": reading.rationale[:500], "error": reading.error,
                "constrained": bool(self._constrained.get(judge)), "repaired": repaired,
                "raw": None if reading.value is not None else raw[:1000], "cached": gen.cached})
        details: dict[str, Any] = {"rubric": self.rubric.name, "judgments": judgments,
                                   "length": len(s.text)}
        flags = injection_attempts(s.text)
        if flags:
            details["injection"] = flags
        if self.rubric.output == "preference":
            return self._preference(judgments, details)
        return self._pointwise(judgments, details)

    def _pointwise(self, judgments: list[dict[str, Any]], details: dict[str, Any]) -> Score:
        values = [j["value"] for j in judgments if j["value"] is not None]
        if not values:
            return _unreadable(self.metric, judgments, details)
        combined = _combine(values, self.combine, numeric=self.rubric.output == "score")
        details["judge_label"] = combined
        if combined is None:
            return Score(self.metric, None, None, f"the judges split {dict(Counter(values))}: no "
                         "majority", details)
        if self.rubric.output == "verdict":
            passed = combined == self.rubric.passing
            value = float(passed) if isinstance(combined, str) else float(combined)
            label = combined if isinstance(combined, str) else f"{combined:.2f} pass share"
        else:
            value, label = float(combined), _fmt(combined)
            line = self.threshold if self.threshold is not None else self.rubric.passing
            passed = None if line is None else value >= line
        return Score(self.metric, value, passed, _reason(label, judgments), details)

    def _preference(self, judgments: list[dict[str, Any]], details: dict[str, Any]) -> Score:
        per_judge: dict[str, list[dict[str, Any]]] = {}
        for j in judgments:
            per_judge.setdefault(j["judge"], []).append(j)
        winners = []
        for pair in per_judge.values():
            ab = next(j for j in pair if j["order"] == "AB")
            ba = next(j for j in pair if j["order"] == "BA")
            winner = pair_winner(ab["value"], ba["value"])
            if winner is not None:
                winners.append(winner)
        details["winners"] = winners
        if not winners:
            return _unreadable(self.metric, judgments, details)
        if self.combine == "majority":
            top = _combine(winners, "majority", numeric=False)
            if top is None:
                return Score(self.metric, None, None, f"the judges split {dict(Counter(winners))}:"
                             " no majority", details)
            value = _WIN[top]
        else:
            value = sum(_WIN[w] for w in winners) / len(winners)
        details["judge_label"] = {1.0: "A", 0.0: "B"}.get(value, "tie")
        word = {1.0: "preferred", 0.0: "not preferred", 0.5: "tie"}.get(value, f"{value:.2f}")
        passed = None if self.threshold is None else value >= self.threshold
        return Score(self.metric, value, passed, _reason(word, judgments), details)


def _combine(values: list[Any], how: str, numeric: bool) -> Any:
    """The judges' combined value: the mean of numbers, else the strict majority (labels have
    no mean); None when no value has a strict majority."""
    if how == "mean" and numeric:
        return sum(values) / len(values)
    top, count = Counter(values).most_common(1)[0]
    return top if count * 2 > len(values) else None


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _reason(label: str, judgments: list[dict[str, Any]]) -> str:
    first = next(j for j in judgments if j["value"] is not None)
    why = " ".join(first["rationale"].split())[:200] or "(no rationale)"
    who = first["judge"] if len({j["judge"] for j in judgments}) == 1 else \
        f"{len({j['judge'] for j in judgments})} judges, first {first['judge']}"
    return f"{label} ({who}): {why}"


def _unreadable(metric: str, judgments: list[dict[str, Any]], details: dict[str, Any]) -> Score:
    first = judgments[0]
    raw = " ".join((first.get("raw") or "").split())[:120]
    return Score(metric, None, None, f"unmeasured: the judge's reply could not be read "
                 f"({first['error']}): {raw!r}", details)


def _asked(s: Sample) -> str:
    """What the model under test was asked: the last user message, or the prompt."""
    if s.request.messages:
        users = [m["content"] for m in s.request.messages if m["role"] == "user"]
        if users:
            return str(users[-1])
    if s.request.prompt is not None:
        return s.request.prompt
    return s.case.prompt or ""


def build_judge(rubric: str = "helpfulness", *, base_dir: Path, engine: Any = None,
                judge_model: str | Sequence[str] | None = None, combine: str | None = None,
                against: str | None = None, human: str | None = None, human_file: str | None = None,
                min_kappa: float | None = None, kappa_weights: str | None = "quadratic",
                threshold: float | None = None, max_tokens: int = 256) -> JudgeScorer:
    """The ``judge`` marker's factory; every argument is checked here, with the fix."""
    loaded = load_rubric(rubric, base_dir)
    if judge_model is not None and not isinstance(judge_model, str) and (
            not isinstance(judge_model, (list, tuple)) or not judge_model
            or not all(isinstance(j, str) and j for j in judge_model)):
        raise UsageError(f"@pytest.mark.judge(judge_model={judge_model!r}) must be a model or a "
                         "list of models", fix="write judge_model='hf:MODEL' or "
                         "judge_model=['a', 'b'] (--aie-models names or ENGINE:MODEL)")
    if combine not in (None, "mean", "majority"):
        raise UsageError(f"@pytest.mark.judge(combine={combine!r}) is not a way to combine "
                         "judges", fix="use combine='mean' or combine='majority'")
    if min_kappa is not None and (isinstance(min_kappa, bool) or not isinstance(min_kappa, (int, float))
                                  or not -1 <= min_kappa <= 1):
        raise UsageError(f"@pytest.mark.judge(min_kappa={min_kappa!r}) must be a kappa in [-1, 1]",
                         fix="write e.g. min_kappa=0.6")
    if kappa_weights not in (None, "linear", "quadratic"):
        raise UsageError(f"@pytest.mark.judge(kappa_weights={kappa_weights!r}) is not a weighting",
                         fix="use 'quadratic', 'linear' or None")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not math.isfinite(threshold)):
        raise UsageError(f"@pytest.mark.judge(threshold={threshold!r}) must be a number",
                         fix="write e.g. threshold=4")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 16:
        raise UsageError(f"@pytest.mark.judge(max_tokens={max_tokens!r}) must be a whole number "
                         ">= 16", fix="write e.g. max_tokens=320 (room for the rationale)")
    cls = VerdictJudge if loaded.output == "verdict" else JudgeScorer
    return cls(loaded, base_dir=base_dir, judge_model=judge_model, combine=combine,
               against=against, human=human, human_file=human_file, min_kappa=min_kappa,
               kappa_weights=kappa_weights, threshold=threshold, max_tokens=max_tokens)


class VerdictJudge(JudgeScorer):
    """A pass/fail rubric: the suite's figure is a pass rate."""

    binary: ClassVar[bool] = True
