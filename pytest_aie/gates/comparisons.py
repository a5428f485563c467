"""Paired comparisons of a run's case records: against a stored baseline
(:func:`compare_to_baseline`) and between two models of one run (:func:`compare_models`,
base vs candidate), per suite and per tag, each a :class:`Comparison` with its paired test
(:func:`pytest_aie.stats.paired_binary_gate` / :func:`~pytest_aie.stats.paired_score_gate`),
the newly failing and newly passing cases, and the cases added and removed.

Whether a comparison is confirmatory (can fail the run, within the Holm family) and the exit
status are decided in :mod:`pytest_aie.gates.thresholds` (:func:`~pytest_aie.gates.policy.adjust`,
:func:`~pytest_aie.gates.conclusion.exit_status`), which also describes the family.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any, Iterable, Mapping

from pytest_aie.gates.policy import GatePolicy, adjust
from pytest_aie.results.records import cluster_of, group_records, several_models

__all__ = ["Comparison", "baseline_key", "compare_models", "compare_pairs", "compare_to_baseline"]


@dataclass
class Comparison:
    """A paired comparison of one suite (or one tag within it) between two runs or models.

    ``regressed`` is the final decision, after the family-wise adjustment (``gate`` keeps
    the unadjusted gate result); ``p_value`` is the gate's one-sided p-value for a drop,
    ``p_adjusted`` its Holm-adjusted value over ``family_size`` confirmatory decisions."""

    suite: str
    metric: str
    scope: str  # "suite" or "tag:NAME"
    shared: int
    added: int  # cases only in the new run
    removed: int  # cases only in the reference
    gate: dict[str, Any] | None
    regressed: bool
    improved: bool
    newly_failing: list[str] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)
    p_value: float | None = None
    p_adjusted: float | None = None
    confirmatory: bool = False
    family_size: int | None = None
    #: between two models of one run: (the reference side, the compared side); None
    #: against a stored baseline
    models: tuple[str, str] | None = None
    model: str | None = None  # the model of a multi-model suite compared with a baseline

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """A comparison as :meth:`to_dict` wrote it to the results log (``models`` a list
        there; keys it does not know are left out)."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in data.items() if k in known}
        if kept.get("models"):
            kept["models"] = (str(kept["models"][0]), str(kept["models"][1]))
        return cls(**kept)

    @property
    def title(self) -> str:
        """What was compared: ``candidate vs default``, or ``baseline`` (set by the caller)."""
        return f"{self.models[1]} vs {self.models[0]}" if self.models else "baseline"

    def line(self) -> str:
        g = self.gate or {}
        delta = g.get("delta")
        ci = f" [{g['low']:+.3f}, {g['high']:+.3f}]" if g.get("low") is not None else ""
        p = f", p={self.p_value:.3g}" if self.p_value is not None else ""
        if self.p_adjusted is not None and (self.family_size or 0) > 1:
            p += f" (Holm-adjusted {self.p_adjusted:.3g} over {self.family_size} decisions)"
        if g.get("clusters"):
            p += f", {g['clusters']} clusters"
        state = "REGRESSION" if self.regressed else "improved" if self.improved else "no significant change"
        if self.models and not self.confirmatory:
            state = "significantly worse" if g.get("regressed") else state
        where = self.suite + (f" ({self.scope})" if self.scope != "suite" else "")
        where += f" [{self.metric}]" + (f" on {self.model}" if self.model else "")
        if self.models and not self.confirmatory:
            state += " (exploratory: not gated)"
        text = (f"{where}: {state}: delta "
                f"{'n/a' if delta is None else f'{delta:+.3f}'}{ci}{p} on {self.shared} shared cases")
        if self.added or self.removed:
            text += f" ({self.added} added, {self.removed} removed since the reference)"
        return text


def compare_pairs(suite: str, metric: str, scope: str, binary: bool,
                  reference: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]],
                  policy: GatePolicy, higher_is_better: bool = True) -> Comparison:
    """Paired gate on the cases both sides share: McNemar-based for pass/fail, sign-flip
    permutation test for scores; regression needs significance *and* a drop beyond the
    margin. Cases sharing a declared ``group`` (the current run's, else the reference's)
    are tested cluster by cluster. The result is unadjusted until :func:`~pytest_aie.gates.policy.adjust`."""
    from pytest_aie.stats import paired_binary_gate, paired_score_gate

    shared = [c for c in current if c in reference]  # in run order
    added = len(set(current) - set(reference))
    removed = len(set(reference) - set(current))
    if not shared:
        return Comparison(suite, metric, scope, 0, added, removed, None, False, False)
    groups = [cluster_of(current[c]) or cluster_of(reference[c]) for c in shared]
    if binary:
        res = paired_binary_gate([reference[c].get("passed") for c in shared],
                                 [current[c].get("passed") for c in shared],
                                 margin=policy.margin, alpha=policy.alpha, groups=groups)
    else:  # lower-is-better scores are compared on the negated scale: a rise is a drop
        sign = 1.0 if higher_is_better else -1.0

        def vals(side: dict[str, dict[str, Any]]) -> list[float | None]:
            return [None if side[c].get("value") is None else sign * side[c]["value"] for c in shared]

        res = paired_score_gate(vals(reference), vals(current), margin=policy.margin,
                                alpha=policy.alpha, groups=groups)
    failing = [c for c in shared if reference[c].get("passed") is True
               and current[c].get("passed") is False]
    passing = [c for c in shared if reference[c].get("passed") is False
               and current[c].get("passed") is True]
    return Comparison(suite, metric, scope, len(shared), added, removed, res.to_dict(),
                      res.regressed, res.improved, failing, passing, p_value=res.p_value,
                      confirmatory=res.p_value is not None)


def baseline_key(suite: str, metric: str, model: str, several: bool) -> str:
    """A suite's key in a baseline file: ``suite::metric``, plus ``::model`` in a suite that
    gates several models."""
    return f"{suite}::{metric}" + (f"::{model}" if several else "")


def compare_to_baseline(records: Iterable[dict[str, Any]], baseline: dict[str, Any],
                        policy: GatePolicy) -> list[Comparison]:
    """Each suite (each gated model of it) of this run against the same in a stored baseline."""
    out = []
    suites = baseline.get("suites", {})
    groups = group_records(records)
    several = several_models(groups)
    for (suite, metric, model), recs in groups.items():
        ref = suites.get(baseline_key(suite, metric, model, (suite, metric) in several))
        if ref is None:
            continue
        binary = all(r.get("binary", True) for r in recs)
        higher = all(r.get("higher_is_better", True) for r in recs)
        current = {r["case_id"]: r for r in recs}
        comp = compare_pairs(suite, metric, "suite", binary, ref["cases"], current, policy, higher)
        comp.model = model if (suite, metric) in several else None
        out.append(comp)
    adjust([], out, policy)
    return out


def compare_models(records: Iterable[dict[str, Any]], policy: GatePolicy) -> list[Comparison]:
    """Paired comparisons between the models of each suite, on the cases they share.

    Each gated model against the suite's reference model (``reference=``, or the base in a
    finetune check) is confirmatory, per suite and per tag: a significant drop is a
    regression (exit 11). Every other pair of a suite's models is compared the same way,
    per suite, as exploratory figures (shown, never failing the run)."""
    groups = group_records(records, gated=None)
    by_suite: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(dict)
    references: dict[tuple[str, str], str] = {}
    for (suite, metric, model), recs in groups.items():
        by_suite[(suite, metric)][model] = recs
        if not recs[0].get("gated", True):
            references[(suite, metric)] = model
    out = []
    for (suite, metric), models in sorted(by_suite.items()):
        ref_model = references.get((suite, metric))
        names = sorted(models, key=lambda m: (m != ref_model, m))
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                if a != ref_model and ref_model is not None and b == ref_model:
                    continue  # pragma: no cover - the reference sorts first
                confirm = a == ref_model
                out.extend(_compare_two(suite, metric, a, b, models[a], models[b], policy,
                                        tags=confirm, confirmatory=confirm))
    adjust([], out, policy)
    return out


def _compare_two(suite: str, metric: str, a: str, b: str, ref_recs: list[dict[str, Any]],
                 cur_recs: list[dict[str, Any]], policy: GatePolicy, *, tags: bool,
                 confirmatory: bool) -> list[Comparison]:
    binary = all(r.get("binary", True) for r in cur_recs)
    higher = all(r.get("higher_is_better", True) for r in cur_recs)
    ref = {r["case_id"]: r for r in ref_recs}
    cur = {r["case_id"]: r for r in cur_recs}
    scopes: list[tuple[str, set[str] | None]] = [("suite", None)]
    if tags:
        for tag in sorted({t for r in cur_recs if r["case_id"] in ref for t in r.get("tags") or ()}):
            scopes.append((f"tag:{tag}", {r["case_id"] for r in cur_recs
                                          if tag in (r.get("tags") or ())}))
    out = []
    for scope, ids in scopes:
        comp = compare_pairs(suite, metric, scope, binary,
                             ref if ids is None else {c: ref[c] for c in ref if c in ids},
                             cur if ids is None else {c: cur[c] for c in cur if c in ids},
                             policy, higher)  # in run order, not a set's
        comp.models = (a, b)
        if not confirmatory:  # figures only: never a regression of the run
            comp.confirmatory, comp.regressed = False, False
        out.append(comp)
    return out
