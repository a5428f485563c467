"""A judge's suite figures: parse rate, bias, agreement between judges, agreement with people.

:func:`suite_stats` summarises one suite's judgments for one model (the numbers come from
:mod:`pytest_aie.stats.agreement`); :func:`apply_trust` turns the verdicts of a judge that
agrees too little with the human labels (``min_kappa=``) into inconclusive ones.

A judge is *calibrated* only when human labels and ``min_kappa=`` vouch for it (kappa at least
``min_kappa``). Every verdict of a judge that is not is marked uncalibrated (the case's reason,
the suite's ``trust``), and such a judge must show that it tells cases apart: one that gives the
same verdict to every case of a suite (at least :data:`MIN_SIGNAL_CASES`; a constant "fail" is
as little evidence as a constant "pass"), or, on a preference rubric, whose pick flips with the
answers' order on more than :data:`MAX_FLIP_RATE` of the pairs (or that calls every pair a
tie), shows no signal: it is untrusted, so its suite is inconclusive (never green, never red;
``--aie-inconclusive fail`` makes it a failure), with a reason that names the judge.

Human labels come from a case field (``human="FIELD"``) or a file of ``id`` +
``label`` rows (``human_file=``, JSONL, CSV or YAML). A label may carry the ``output`` it was
given for: when the model's output has changed since, the label is stale and is not used
(counted, so the report can ask for relabelling).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

from pytest_aie.errors import UsageError
from pytest_aie.judge.rubrics import Rubric
from pytest_aie.scorers.base import Sample, Score

__all__ = ["MAX_FLIP_RATE", "MIN_SIGNAL_CASES", "HumanLabels", "apply_trust", "suite_stats"]

#: a suite needs this many judged cases before a constant verdict counts as no signal
MIN_SIGNAL_CASES = 5
#: a preference judge whose pick flips with the answers' order on more pairs than this shows
#: no signal (a coin flip flips on half; a judge that always picks the first shown on all)
MAX_FLIP_RATE = 0.4
#: what a user does about a judge that shows no signal (also in docs/evals/judge.md)
TODO = ("give it human labels (human= or human_file=, with min_kappa=), use a stronger judge "
        "(--aie-judge or judge_model=), or several judges (judge_model=[...])")


class HumanLabels:
    """Human labels by case id, from a case field or a file; each checked against the
    rubric's scale when read."""

    def __init__(self, field: str | None, file: str | None, base_dir: Path, rubric: Rubric
                 ) -> None:
        if field is not None and file is not None:
            raise UsageError("@pytest.mark.judge takes human= (a case field) or human_file= "
                             "(a labels file), not both", fix="keep one of them")
        self.field, self.rubric = field, rubric
        self._file: dict[str, Any] | None = None
        self.path = None if file is None else base_dir / file
        if self.path is not None:
            self._file = self._load(self.path)

    def _load(self, path: Path) -> dict[str, Any]:
        from pytest_aie.dataset import load_cases

        if not path.is_file():
            raise UsageError(f"human labels file {str(path)!r} not found",
                             fix="give human_file= a path relative to the test file")
        labels = {}
        for case in load_cases(path):
            if "label" not in case.fields:
                raise UsageError(f"{case.source}: a human label row needs a 'label' field",
                                 fix='write rows like {"id": "q1", "label": 4}')
            row = dict(case.fields)
            labels[case.id] = {"label": row["label"], "output": row.get("output")}
        return labels

    def get(self, s: Sample) -> tuple[Any, str | None]:
        """``(label on the rubric's scale, None)``, ``(None, why not used)``, or ``(None, None)``
        when the case has no label."""
        raw: Any
        if self._file is not None:
            raw = self._file.get(s.case.id)
        elif self.field is not None:
            raw = s.case.fields.get(self.field)
        else:
            return None, None
        if raw is None:
            return None, None
        output = None
        if isinstance(raw, dict):
            raw, output = raw.get("label"), raw.get("output")
        from pytest_aie.judge.verdicts import _on_scale

        label = _on_scale(raw, self.rubric)
        where = f"{self.path}" if self.path else f"field {self.field!r}"
        if label is None:
            raise UsageError(f"case {s.case.id!r}: human label {raw!r} ({where}) is not on the "
                             f"rubric {self.rubric.name!r}'s scale {list(self.rubric.scale)}",
                             fix="use one of the scale's values")
        if output is not None and " ".join(str(output).split()) != " ".join(s.text.split()):
            return None, "stale"
        return label, None


def _plain(obj: Any) -> Any:
    """A stats result as JSON-ready data (dataclasses to dicts, NaN to None)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _plain(obj.item())
    return obj


def _nearest(value: Any, rubric: Rubric) -> Any:
    """A combined judge value as a label of the scale (a mean score rounds half up)."""
    if rubric.output == "score" and isinstance(value, (int, float)):
        return min(rubric.scale, key=lambda v: (abs(v - value), -v))
    return value


class Panel(Protocol):
    """What the figures here read of a judge scorer
    (:class:`~pytest_aie.judge.scorer.JudgeScorer`): its rubric, judges and how they combine,
    which were constrained, the human labels and the trust settings."""

    @property
    def rubric(self) -> Rubric: ...
    @property
    def judges(self) -> list[str]: ...
    @property
    def combine(self) -> str: ...
    @property
    def constrained(self) -> dict[str, bool]: ...
    @property
    def human(self) -> HumanLabels: ...
    @property
    def min_kappa(self) -> float | None: ...
    @property
    def kappa_weights(self) -> Any: ...


def suite_stats(scorer: Panel, samples: Sequence[Sample], scores: Sequence[Score]
                ) -> dict[str, Any]:
    """Everything the summary and the report show about one suite's judge, for one model."""
    from pytest_aie.stats import agreement

    rubric = scorer.rubric
    judgments = [j for sc in scores for j in sc.details.get("judgments", [])]
    readable = [j for j in judgments if j["value"] is not None]
    unreadable = [{"case_id": s.case.id, "judge": j["judge"], "order": j["order"],
                   "error": j["error"], "raw": j["raw"]}
                  for s, sc in zip(samples, scores) for j in sc.details.get("judgments", [])
                  if j["value"] is None]
    stats: dict[str, Any] = {
        "rubric": rubric.name, "rubric_path": rubric.path, "output": rubric.output,
        "scale": list(rubric.scale), "judges": list(scorer.judges), "combine": scorer.combine,
        "constrained": {j: bool(scorer.constrained.get(j)) for j in scorer.judges},
        "judgments": len(judgments), "readable": len(readable),
        "repaired": sum(1 for j in judgments if j["repaired"]),
        "parse_rate": len(readable) / len(judgments) if judgments else None,
        "unreadable": unreadable[:50], "unreadable_count": len(unreadable),
        "unjudged": sum(1 for sc in scores if not sc.details.get("judgments")),
    }
    injected = [s.case.id for s, sc in zip(samples, scores) if sc.details.get("injection")]
    stats["injection_cases"] = injected
    if rubric.output == "preference":
        stats["position"] = _position(scorer, scores, agreement)
    else:
        pairs = [(sc.value, len(s.text)) for s, sc in zip(samples, scores) if sc.value is not None]
        stats["length_bias"] = _plain(agreement.length_bias([p[0] for p in pairs],
                                                            [p[1] for p in pairs]))
    if len(scorer.judges) > 1:
        stats["agreement"] = _judges_agreement(scorer, scores, agreement)
    stats["human"] = _human(scorer, samples, scores, agreement)
    stats["trust"] = _trust(scorer, stats["human"])
    stats["trust"] = _signal_check(scorer, scores, stats)
    return stats


def _position(scorer: Panel, scores: Sequence[Score], agreement: Any) -> dict[str, Any]:
    """Per judge: how often its two orders disagree, and how often it picks the first shown."""
    from pytest_aie.judge.verdicts import unswapped

    out = {}
    for judge in scorer.judges:
        first, swapped = [], []
        for sc in scores:
            pair = [j for j in sc.details.get("judgments", []) if j["judge"] == judge]
            ab = next((j["value"] for j in pair if j["order"] == "AB"), None)
            ba = next((j["value"] for j in pair if j["order"] == "BA"), None)
            if ab is not None and ba is not None:
                first.append(ab)
                swapped.append(unswapped(ba))
        out[judge] = _plain(agreement.flip_rate(first, swapped))
    return out


def _judges_agreement(scorer: Panel, scores: Sequence[Score], agreement: Any
                      ) -> dict[str, Any]:
    ratings: list[list[Any]] = []
    for judge in scorer.judges:
        row = []
        for sc in scores:
            if scorer.rubric.output == "preference":
                row.append(_judge_winner(sc, judge))
            else:
                row.append(next((j["value"] for j in sc.details.get("judgments", [])
                                 if j["judge"] == judge), None))
        ratings.append(row)
    level: Literal["ordinal", "nominal"] = "ordinal" if scorer.rubric.ordinal else "nominal"
    try:
        alpha = agreement.krippendorff_alpha(ratings, level=level,
                                             categories=list(scorer.rubric.scale))
    except ValueError as exc:  # too few ratings to compute it
        return {"level": level, "alpha": None, "reason": str(exc)}
    return {"level": level, **_as_dict(_plain(alpha), "alpha")}


def _judge_winner(sc: Score, judge: str) -> Any:
    from pytest_aie.judge.verdicts import pair_winner

    pair = [j for j in sc.details.get("judgments", []) if j["judge"] == judge]
    ab = next((j["value"] for j in pair if j["order"] == "AB"), None)
    ba = next((j["value"] for j in pair if j["order"] == "BA"), None)
    return pair_winner(ab, ba)


def _as_dict(value: Any, key: str) -> dict[str, Any]:
    return value if isinstance(value, dict) else {key: value}


def _human(scorer: Panel, samples: Sequence[Sample], scores: Sequence[Score],
           agreement: Any) -> dict[str, Any]:
    rubric = scorer.rubric
    judge, human, stale, unjudged = [], [], [], []
    for s, sc in zip(samples, scores):
        label, why = scorer.human.get(s)
        if why == "stale":
            stale.append(s.case.id)
            continue
        if label is None:
            continue
        sc.details["human"] = label
        value = sc.details.get("judge_label")
        if sc.value is None or value is None:
            unjudged.append(s.case.id)
            continue
        judge.append(_nearest(value, rubric))
        human.append(label)
    out: dict[str, Any] = {"labels": len(judge) + len(stale) + len(unjudged), "used": len(judge),
                           "stale": stale, "unjudged": unjudged}
    if not judge:
        return out
    if len(set(map(str, judge))) == 1:  # kappa is 0 with a zero-width interval: say why
        out["constant_judge"] = judge[0]
    weights = scorer.kappa_weights if rubric.ordinal else None
    out["kappa"] = _plain(agreement.cohen_kappa(judge, human, categories=list(rubric.scale),
                                                weights=weights))
    out["kappa_weights"] = weights
    if rubric.output == "verdict":
        out["rates"] = _plain(agreement.detection_rates(judge, human, positive=rubric.passing))
    return out


def _trust(scorer: Panel, human: dict[str, Any]) -> dict[str, Any]:
    """Trusted, untrusted (with why), or not checked (no ``min_kappa=``)."""
    if scorer.min_kappa is None:
        return {"checked": False, "untrusted": False, "reason": "no min_kappa= given"}
    kappa = (human.get("kappa") or {}).get("kappa")
    if not human.get("used"):
        why = "no human labels to calibrate against" + (
            f" ({len(human['stale'])} are stale: the outputs changed since labelling)"
            if human.get("stale") else "")
    elif kappa is None:
        why = (f"Cohen's kappa is undefined on {human['used']} labels: "
               f"{(human.get('kappa') or {}).get('reason') or 'no variation'}")
    elif kappa < scorer.min_kappa:
        why = f"Cohen's kappa {kappa:.2f} with the human labels is below min_kappa {scorer.min_kappa:g}"
    else:
        return {"checked": True, "untrusted": False, "calibrated": True,
                "reason": f"kappa {kappa:.2f} >= min_kappa {scorer.min_kappa:g}"}
    return {"checked": True, "untrusted": True, "reason": why}


def _uncalibrated(scorer: Panel, human: dict[str, Any]) -> str:
    """Why the judge's verdicts are not calibrated against people (its trust was not checked
    with ``min_kappa=``, or the check failed)."""
    if not human.get("used"):
        return "no human labels" + (f" ({len(human['stale'])} stale)" if human.get("stale") else "")
    kappa = (human.get("kappa") or {}).get("kappa")
    shown = "undefined" if kappa is None else f"{kappa:.2f}"
    if scorer.min_kappa is None:
        return f"Cohen's kappa {shown} on {human['used']} human labels, but no min_kappa= to gate on"
    return f"Cohen's kappa {shown} on {human['used']} human labels, below min_kappa {scorer.min_kappa:g}"


def _judge_names(scorer: Panel, judgments: Sequence[dict[str, Any]]) -> str:
    """The suite's judges as ``name (engine:model)``, for the lines that name them."""
    models: dict[str, str] = {}
    for j in judgments:
        if j.get("model"):
            engine, _, model = str(j["model"]).partition(":")
            if Path(model).is_absolute():  # a local folder: its name says enough
                model = Path(model).name
            models.setdefault(j["judge"], f"{engine}:{model}")
    return ", ".join(f"{name!r} ({models[name]})" if name in models else repr(name)
                     for name in scorer.judges)


def _no_signal(scorer: Panel, scores: Sequence[Score], stats: dict[str, Any]) -> str | None:
    """Why the judge shows no ability to tell cases apart on this suite, or None: human labels
    (at least :data:`MIN_SIGNAL_CASES`) it agrees with no better than chance (kappa <= 0, with
    or without ``min_kappa=``), the same verdict for every case (at least
    :data:`MIN_SIGNAL_CASES` judged), or, for a preference
    rubric, a position-flip rate above :data:`MAX_FLIP_RATE` (or every pair a tie)."""
    labels = [sc.details.get("judge_label") for sc in scores
              if sc.value is not None and sc.details.get("judge_label") is not None]
    human = stats.get("human") or {}
    kappa = (human.get("kappa") or {}).get("kappa")
    if (human.get("used") or 0) >= MIN_SIGNAL_CASES and kappa is not None and kappa <= 0:
        return (f"its verdicts agree with the {human['used']} human labels no better than chance "
                f"(Cohen's kappa {kappa:.2f})")
    if scorer.rubric.output == "preference":
        for judge, p in (stats.get("position") or {}).items():
            rate = p.get("flip_rate")
            if (p.get("n") or 0) >= MIN_SIGNAL_CASES and rate is not None and rate > MAX_FLIP_RATE:
                who = "its" if len(scorer.judges) == 1 else f"{judge}'s"
                return (f"the order of the answers flips {who} pick in {rate:.0%} of {p['n']} pairs "
                        f"(more than {MAX_FLIP_RATE:.0%}: it reads position, not content)")
        if len(labels) >= MIN_SIGNAL_CASES and set(map(str, labels)) == {"tie"}:
            return f"every one of {len(labels)} pairs is a tie"
        return None
    if len(labels) >= MIN_SIGNAL_CASES and len(set(map(str, labels))) == 1:
        shown = labels[0] if isinstance(labels[0], str) else _fmt_number(labels[0])
        return f"it said {shown!r} to all {len(labels)} cases"
    return None


def _fmt_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def _signal_check(scorer: Panel, scores: Sequence[Score], stats: dict[str, Any]
                  ) -> dict[str, Any]:
    """``stats["trust"]`` completed: ``calibrated`` and, when not, ``uncalibrated`` (why); a
    judge that is not calibrated and shows no signal (:func:`_no_signal`) is untrusted, with
    the reason naming it and ``todo`` saying what to do."""
    trust = dict(stats["trust"])
    trust["calibrated"] = bool(trust.get("calibrated"))
    if trust["calibrated"]:
        return trust
    judgments = [j for sc in scores for j in sc.details.get("judgments", [])]
    names = _judge_names(scorer, judgments)
    trust["uncalibrated"] = _uncalibrated(scorer, stats["human"])
    trust["judge"] = names
    why = _no_signal(scorer, scores, stats)
    if why is not None:
        trust["no_signal"] = why
        if not trust.get("untrusted"):  # a failed min_kappa keeps its own reason first
            trust.update(untrusted=True,
                         reason=f"no signal from judge {names}: {why}, and it is not calibrated "
                                f"({trust['uncalibrated']})")
        trust["todo"] = TODO
    return trust


def apply_trust(scorer: Panel, samples: Sequence[Sample], scores: list[Score],
                stats: dict[tuple[str, str], dict[str, Any]]) -> None:
    """An untrusted judge's verdicts are inconclusive: each case keeps the judge's score for
    display, loses its pass/fail, and says why. An uncalibrated judge's verdicts stand, marked
    as such (``details["uncalibrated"]`` and the reason)."""
    for s, sc in zip(samples, scores):
        trust = (stats.get((s.case.suite, s.model)) or {}).get("trust") or {}
        if trust.get("untrusted"):
            sc.details["untrusted"] = trust["reason"]
            if sc.value is not None:
                sc.passed = None
                sc.reason = f"judge untrusted ({trust['reason']}); it said: {sc.reason}"
        elif trust.get("uncalibrated"):
            sc.details["uncalibrated"] = trust["uncalibrated"]
            if sc.value is not None:
                sc.reason = f"uncalibrated judge: {sc.reason}"
