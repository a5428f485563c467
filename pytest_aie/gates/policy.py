"""The run-wide gate policy (:class:`GatePolicy`, from a run's settings by :func:`gate_policy`)
and the family-wise adjustment (:func:`adjust`: Holm over every confirmatory decision of a run,
suite thresholds and paired comparisons together)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Protocol, Sequence

from pytest_aie.results.records import SuiteRow

__all__ = ["VERDICTS", "Decision", "GatePolicy", "adjust", "gate_policy"]

VERDICTS = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class GatePolicy:
    """Run-wide gate settings (options ``--aie-gate``, ``--aie-inconclusive``, ...)."""

    mode: Literal["interval", "point"] = "interval"  # three-way, or the point estimate
    inconclusive: str = "warn"  # what an inconclusive verdict does: fail, pass, warn
    confidence: float = 0.95
    margin: float = 0.02
    alpha: float = 0.05


class Decision(Protocol):
    """A paired comparison as :func:`adjust` reads and sets it
    (:class:`~pytest_aie.gates.comparisons.Comparison`)."""

    gate: dict[str, Any] | None
    regressed: bool
    p_value: float | None
    p_adjusted: float | None
    confirmatory: bool
    family_size: int | None


def gate_policy(settings: Mapping[str, Any]) -> GatePolicy:
    """The :class:`~pytest_aie.gates.policy.GatePolicy` of a run's settings (a
    :class:`~pytest_aie.settings.Settings` as a dict, e.g. the results log header's)."""
    defaults = GatePolicy()
    return GatePolicy(mode="point" if settings.get("gate") == "point" else "interval",
                      inconclusive=str(settings.get("inconclusive") or defaults.inconclusive),
                      confidence=float(settings.get("confidence") or defaults.confidence),
                      margin=float(settings.get("regression_margin", defaults.margin)),
                      alpha=float(settings.get("alpha") or defaults.alpha))


def adjust(rows: Sequence[SuiteRow], comparisons: Sequence[Decision], policy: GatePolicy) -> int:
    """Holm's adjustment over every confirmatory decision of ``rows`` and ``comparisons``
    (see the module docstring); sets ``p_adjusted``, ``family_size`` and the final
    ``verdict`` / ``regressed`` in place and returns the family's size. Idempotent: it
    starts from the unadjusted ``interval_verdict`` and ``gate["regressed"]``.

    A threshold verdict is decided at one-sided level ``(1 - confidence) / 2`` and a
    regression at ``alpha``; p-values enter the family as ``p * alpha / level`` so that a
    family of one decides exactly as the decision alone."""
    from pytest_aie.stats import holm

    alpha = policy.alpha
    members: list[tuple[float, SuiteRow | Decision]] = []
    for row in rows:
        if row.confirmatory and row.p_value is not None and row.p_level is not None:
            members.append((min(1.0, row.p_value * alpha / row.p_level), row))
    for comp in comparisons:
        if comp.confirmatory and comp.p_value is not None:
            members.append((comp.p_value, comp))
    adjusted = holm([p for p, _ in members])
    m = len(members)
    for p_adj, (_, item) in zip(adjusted, members):
        item.p_adjusted, item.family_size = p_adj, m
        if isinstance(item, SuiteRow):
            if item.interval_verdict == "fail":
                item.verdict = "fail" if p_adj < alpha else "inconclusive"
        else:  # a comparison
            item.regressed = bool(item.gate and item.gate["regressed"]) and p_adj < alpha
    return m
