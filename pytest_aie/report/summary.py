"""The terminal summary: one line per suite with its interval and verdict, repeated-sampling
figures and flaky cases, and the paired comparisons with newly failing / passing cases."""

from __future__ import annotations

from typing import Any

from pytest_aie.gates.comparisons import Comparison
from pytest_aie.gates.thresholds import row_name
from pytest_aie.results.records import SuiteRow

__all__ = ["suite_lines", "comparison_lines"]

_LIST = 10  # case ids listed per line before "... and N more"


def _ids(ids: list[str]) -> str:
    head = ", ".join(ids[:_LIST])
    return head + (f" ... and {len(ids) - _LIST} more" if len(ids) > _LIST else "")


def _fig(x: Any) -> str:
    """A latency figure: whole numbers from 100 up (never 1.23e+03), else 3 significant digits."""
    if not isinstance(x, (int, float)) or x != x:
        return "nan"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def suite_lines(rows: list[SuiteRow]) -> list[tuple[str, dict[str, bool]]]:
    out: list[tuple[str, dict[str, bool]]] = []
    for row in rows:
        name = row_name(row)
        scored = row.scored
        if scored and not row.passed and not row.failed:
            counts = f"{scored}/{row.n} scored, {row.unmeasured} unmeasured"
        else:
            counts = (f"{row.passed}/{row.n} passed, {row.failed} failed, "
                      + (f"{scored} scored, " if scored else "") + f"{row.unmeasured} unmeasured")
        if row.binary:
            est = f"pass rate {_pct(row.estimate)}"
        else:
            est = "mean score n/a" if row.estimate is None else f"mean score {row.estimate:.3f}"
        if row.interval:
            lo, hi = row.interval
            fmt = _pct if row.binary else (lambda v: f"{v:.3f}")
            est += f", {row.confidence:.0%} CI [{fmt(lo)}, {fmt(hi)}]"
        cached = f", {row.cached} cached" if row.cached else ""
        style: dict[str, bool] = {}
        verdict = ""
        if row.verdict:
            bound = "threshold" if row.higher_is_better else "ceiling"
            why = f"{bound} {row.threshold:g}" if row.threshold is not None else \
                str(row.verdict_reason or row.inconclusive_reason or "no threshold")
            verdict = f" -> {row.verdict.upper()} ({why})"
            style = {"green": row.verdict == "pass", "red": row.verdict == "fail",
                     "yellow": row.verdict == "inconclusive"}
        out.append((f"{name}: {counts} ({est}{cached}){verdict}", style))
        corpus = row.corpus
        if corpus and corpus.get("n"):
            family = row.metric.rsplit(".", 1)[-1]
            parts = [f"{k} {corpus[k]:.3f}" for k in (f"{family}.corpus", f"{family}.sentence_mean")
                     if corpus.get(k) is not None]
            out.append((f"  corpus-level over {corpus['n']} cases: {', '.join(parts)}", {}))
        if row.judge:  # an AI judge: replies read, bias, agreement, trust
            from pytest_aie.judge.summary import judge_lines

            out.extend(judge_lines(row.judge))
        if row.elo:  # a ranking of the suite's models
            from pytest_aie.judge.summary import elo_lines

            out.extend(elo_lines(row.elo))
        if row.measured:  # a latency suite: what the probe measured, per request
            from pytest_aie.latency.marker import measured_line

            out.append((f"  {measured_line(row.measured)}", {}))
        for budget, b in (row.budgets or {}).items():
            low, high = b.get("low"), b.get("high")
            ci = "" if low is None or high is None else f" [{_fig(low)}, {_fig(high)}]"
            verdict = str(b.get("verdict") or "n/a")
            out.append((f"  {budget}: {_fig(b.get('estimate'))}{ci} vs budget "
                        f"{b.get('budget')} over {b.get('n')} requests -> {verdict.upper()}",
                        {"green": verdict == "pass", "red": verdict == "fail",
                         "yellow": verdict == "inconclusive"}))
        if row.utilization:  # a latency suite's MBU and MFU, or why not
            from pytest_aie.latency.utilization import summary_line

            out.append((f"  {summary_line(row.utilization)}", {}))
        if row.must_pass_failed:
            out.append((f"  must-pass cases failed: {_ids(row.must_pass_failed)}", {"red": True}))
        sampling = row.sampling
        if sampling:
            k = sampling["k"]
            at = sampling.get("pass_at") or {1: sampling["pass_at_1"], k: sampling["pass_at_k"]}
            hat = sampling.get("pass_hat") or {k: sampling["pass_hat_k"]}
            ks = sorted(int(j) for j in at)
            pass_at = ", ".join(f"pass@{j} {_pct(at.get(j, at.get(str(j))))}" for j in ks)
            pass_hat = ", ".join(f"pass^{j} {_pct(hat.get(j, hat.get(str(j))))}"
                                 for j in sorted(int(j) for j in hat) if j > 1)
            out.append((f"  {k} samples per case: {pass_at}; {pass_hat + '; ' if pass_hat else ''}"
                        f"consistency {_pct(sampling['mean_consistency'])}", {}))
            skipped = sampling.get("skipped_at") or {}
            short = {int(j): n for j, n in skipped.items() if n}
            if short:
                out.append((f"  not in pass@k for larger k ({sampling.get('skipped_reason', '')}): "
                            + ", ".join(f"{n} case(s) at k={j}" for j, n in sorted(short.items())),
                            {"yellow": True}))
            if sampling["flaky"]:
                out.append((f"  flaky cases ({len(sampling['flaky'])}): {_ids(sampling['flaky'])}",
                            {"yellow": True}))
    return out


def comparison_lines(comparisons: list[Comparison], title: str | None = None
                     ) -> list[tuple[str, dict[str, bool]]]:
    """One line per comparison, headed by ``title`` (default: which models were compared)."""
    out: list[tuple[str, dict[str, bool]]] = []
    for comp in comparisons:
        style = {"red": comp.regressed, "green": comp.improved and comp.confirmatory}
        out.append((f"{title or comp.title}: {comp.line()}", style))
        if comp.scope == "suite":
            if comp.newly_failing:
                out.append((f"  newly failing ({len(comp.newly_failing)}): {_ids(comp.newly_failing)}",
                            {}))
            if comp.newly_passing:
                out.append((f"  newly passing ({len(comp.newly_passing)}): {_ids(comp.newly_passing)}",
                            {}))
    return out
