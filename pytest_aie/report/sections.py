"""The server-rendered sections of the report, as display rows for the template: run metadata,
the suite table (with each metric's interval against its threshold and its change against the
baseline or the other model), the comparisons, the baseline diff, per-tag breakdowns, score and
latency histograms, and Elo leaderboards. Every string is made visible and cut
(:mod:`pytest_aie.report.shown`); the template escapes it."""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from typing import Any, Iterable, Mapping, Sequence

from pytest_aie._util.redact import scrub, scrub_argv
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.report.charts import bins, histogram, interval_bar, whiskers
from pytest_aie.report.shown import (
    MAX_NAME_CHARS,
    is_number,
    name,
    number,
    percent,
    shown,
)
from pytest_aie.results.records import SuiteRow, status_of

__all__ = ["change_rows", "comparison_rows", "elo_boards", "engine_of", "latency",
           "metadata", "score_histograms", "summary_rows", "tag_breakdown"]

_COUNTS = ("n", "passed", "failed", "scored", "unmeasured")
#: baseline diff rows shown per kind (newly failing, newly passing); the rest are counted
MAX_CHANGES = 500
#: rows of the per-tag table (the most frequent tags; the case table filters by any tag)
MAX_TAG_ROWS = 300
#: characters of an old or new output shown in the baseline diff
CHANGE_TEXT_CHARS = 2_000


def engine_of(header: Mapping[str, Any]) -> Mapping[str, Any]:
    """The header's engine block (engine, model, revision, options), or an empty one."""
    engine = header.get("engine")
    return engine if isinstance(engine, Mapping) else {}


def metadata(header: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) pairs for the run metadata block, in display order, present values only
    (credentials scrubbed, even from a log written before pytest-aie scrubbed them)."""
    header = scrub(dict(header))
    engine = engine_of(header)
    argv = header.get("argv")
    pairs: list[tuple[str, Any]] = [
        ("Started", header.get("started_at")),
        ("Engine", engine.get("engine")),
        ("Model", engine.get("model")),
        ("Revision", engine.get("revision")),
        ("Git commit", header.get("git_commit") or "not recorded"),
        ("Seed", header.get("seed")),
        ("pytest-aie", header.get("pytest_aie")),
        ("Python", header.get("python")),
        ("Platform", header.get("platform")),
        ("Command", shlex.join(str(a) for a in scrub_argv(argv)) if isinstance(argv, list) else argv),
    ]
    for key, value in engine.items():
        if key not in ("engine", "model", "revision") and value not in (None, ""):
            pairs.append((f"Engine {key}", value))
    versions = header.get("versions")
    if isinstance(versions, Mapping) and versions:
        pairs.append(("Versions", ", ".join(f"{k} {v}" for k, v in versions.items())))
    return [(label, shown(value if isinstance(value, str) else json.dumps(value, default=str),
                          2 * MAX_NAME_CHARS))
            for label, value in pairs if value is not None and value != ""]


def _signed(value: Any, binary: bool) -> str:
    if not is_number(value):
        return "n/a"
    return f"{100 * value:+.1f} pt" if binary else f"{value:+.3g}"


def _state(c: Comparison) -> str:
    if c.regressed:
        return "regressed"
    if c.improved:
        return "improved"
    if c.models and not c.confirmatory and (c.gate or {}).get("regressed"):
        return "worse (exploratory)"
    return "no significant change"


def _against(c: Comparison) -> str:
    return f"vs {c.models[0]}" if c.models else "vs baseline"


def comparison_rows(comparisons: Sequence[Comparison] | None,
                    binary: Mapping[tuple[str, str], bool] | None = None) -> list[dict[str, Any]]:
    """One display row per comparison (suite or tag scope): delta with its interval,
    p-values, the decision, and the case counts."""
    rows = []
    for c in comparisons or ():
        gate = c.gate or {}
        is_binary = (binary or {}).get((str(c.suite), str(c.metric)), True)
        ci = ""
        if is_number(gate.get("low")) and is_number(gate.get("high")):
            ci = f"[{_signed(gate['low'], is_binary)}, {_signed(gate['high'], is_binary)}]"
        models = c.models
        rows.append({
            "suite": name(c.suite), "metric": name(c.metric),
            "scope": name(c.scope or "suite"),
            "against": name(f"{models[1]} vs {models[0]}" if models else
                            "baseline" + (f" ({c.model})" if c.model else "")),
            "delta": _signed(gate.get("delta"), is_binary), "interval": ci,
            "p": number(c.p_value) or "—", "p_adjusted": number(c.p_adjusted) or "—",
            "family": c.family_size or "", "confirmatory": bool(c.confirmatory),
            "state": _state(c), "shared": c.shared, "added": c.added,
            "removed": c.removed,
            "newly_failing": len(c.newly_failing or ()),
            "newly_passing": len(c.newly_passing or ()),
        })
    return rows


def _change_for(row: SuiteRow, comparisons: Sequence[Comparison]) -> Comparison | None:
    """The suite-scope comparison for a summary row: against the baseline (for its model), or
    between two models with this row's model on the compared side."""
    model = str(row.model or "default")
    fallback = None
    for c in comparisons:
        if (c.scope or "suite") != "suite" or c.suite != row.suite or c.metric != row.metric:
            continue
        if c.models:
            if str(c.models[1]) == model:
                fallback = fallback or c
        elif c.model in (None, model):
            return c
    return fallback


def summary_rows(summary: Sequence[SuiteRow],
                 tallies: Mapping[tuple[str, str, str], Mapping[str, Any]] | None = None,
                 comparisons: Sequence[Comparison] | None = None,
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Display rows for the suite table, and the totals. ``tallies`` (from
    :func:`basic_summary` of the cases shown) supplies the counts and pass rate, so the table
    agrees with the case rows whatever the summary counted; verdicts, intervals, thresholds and
    mean scores come from ``summary``; the change from ``comparisons``."""
    rows = []
    totals: dict[str, Any] = {k: 0 for k in _COUNTS}
    models: dict[tuple[str, str], set[str]] = {}
    for item in summary:
        models.setdefault((str(item.suite), str(item.metric or "")),
                          set()).add(str(item.model or "default"))
    for item in summary:
        suite, metric = str(item.suite), str(item.metric or "")
        model = str(item.model or "default")
        counted = (tallies or {}).get((suite, metric, model))
        if counted is None and item.model is None:  # a summary that does not name models
            same = [t for k, t in (tallies or {}).items() if k[:2] == (suite, metric)]
            counted = same[0] if len(same) == 1 else None
        counted = counted or {k: getattr(item, k) for k in (*_COUNTS, "mean_score")}
        if len(models[(suite, metric)]) > 1:  # a suite gated on several models: one row each
            metric = f"{metric} · {model}"
        binary = item.binary is not False
        fmt = percent if binary else number  # pass rate or score
        interval = item.interval
        low = high = None
        interval_text = ""
        if isinstance(interval, (list, tuple)) and len(interval) == 2:
            low, high = interval
            interval_text = f"{fmt(low)} – {fmt(high)}"
        threshold = item.threshold
        verdict = item.verdict
        row: dict[str, Any] = {
            "suite": name(suite), "metric": name(metric),
            **{k: int(counted.get(k) or 0) for k in _COUNTS},
            "mean_score": number(item.mean_score if item.mean_score is not None
                                 else counted.get("mean_score")),
            "interval": interval_text,
            "threshold": (("≤ " if item.higher_is_better is False else "≥ ")
                          + fmt(threshold)) if is_number(threshold) else "",
            "verdict": name(str(verdict)) if verdict else "",
            "reason": name(item.inconclusive_reason) if item.inconclusive_reason else "",
            "uncalibrated": "",
        }
        trust = (item.judge or {}).get("trust") or {}
        if trust.get("uncalibrated"):  # an AI judge nobody checked: marked on the verdict
            row["uncalibrated"] = name(f"uncalibrated judge: {trust['uncalibrated']}")
            row["reason"] = row["reason"] or row["uncalibrated"]
        judged = row["passed"] + row["failed"]
        row["pass_rate"] = percent(row["passed"] / judged) if judged else "—"
        estimate = item.estimate
        if not is_number(estimate):
            estimate = (row["passed"] / judged if judged else None) if binary else \
                item.mean_score
        candidates: tuple[Any, ...] = (estimate, low, high, threshold)
        values = [float(v) for v in candidates if is_number(v)]
        if values:
            lo, hi = (0.0, 1.0) if binary or (min(values) >= 0 and max(values) <= 1) else \
                (min(values) - 0.05 * abs(min(values)), max(values) + 0.05 * abs(max(values)))
            label = (f"estimate {fmt(estimate)}, interval {interval_text or 'none'}, "
                     f"threshold {row['threshold'] or 'none'}")
            row["bar"] = interval_bar(estimate if is_number(estimate) else None,
                                      low if is_number(low) else None,
                                      high if is_number(high) else None,
                                      threshold if is_number(threshold) else None,
                                      lo=lo, hi=hi, label=label)
        change = _change_for(item, comparisons or ())
        if change is not None:
            gate = change.gate or {}
            row["change"] = {"delta": _signed(gate.get("delta"), binary), "against": _against(change),
                             "p": number(change.p_adjusted if change.p_adjusted
                                         is not None else change.p_value),
                             "state": _state(change)}
        for key in _COUNTS:
            totals[key] += row[key]
        rows.append(row)
    judged = totals["passed"] + totals["failed"]
    totals["pass_rate"] = percent(totals["passed"] / judged) if judged else "—"
    return rows, totals


def change_rows(changes: Sequence[Mapping[str, Any]] | None,
                ) -> dict[str, Any]:
    """The baseline diff: newly failing and newly passing cases, old and new side by side
    (at most :data:`MAX_CHANGES` of each kind; ``hidden`` counts the rest)."""
    out: dict[str, Any] = {"newly_failing": [], "newly_passing": [], "hidden": 0, "total": 0}
    for ch in changes or ():
        kind = ch.get("change")
        if kind not in ("newly_failing", "newly_passing"):
            continue
        out["total"] += 1
        if len(out[kind]) >= MAX_CHANGES:
            out["hidden"] += 1
            continue

        def side(s: Any) -> dict[str, Any]:
            s = s if isinstance(s, Mapping) else {}
            output = s.get("output")
            return {"status": name(str(s.get("status") or "—")),
                    "value": number(s.get("value")) or "—",
                    "output": shown(output, CHANGE_TEXT_CHARS) if output is not None else None}

        out[kind].append({"suite": name(ch.get("suite")), "metric": name(ch.get("metric")),
                          "model": name(ch.get("model")) if ch.get("model") not in (None, "default")
                          else "", "case_id": name(ch.get("case_id")),
                          "old": side(ch.get("old")), "new": side(ch.get("new"))})
    return out


def tag_breakdown(cases: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Pass rate (and mean score) per tag per suite and metric, for tags that some case
    carries: ``rows``, the :data:`MAX_TAG_ROWS` most frequent in suite order, and ``hidden``,
    how many rarer ones are left out (a run that tags each case uniquely)."""
    counts: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for case in cases:
        tags = case.get("tags")
        if not tags:
            continue
        st = status_of(case)
        value: Any = case.get("value")
        for tag in tags:
            c = counts[(str(case.get("suite", "")), str(case.get("metric") or ""), str(tag))]
            c[0] += 1
            c[1] += st == "passed"
            c[2] += st == "failed"
            if is_number(value):
                c[3] += 1
                c[4] += value
    rows = []
    kept = sorted(counts, key=lambda k: -counts[k][0])[:MAX_TAG_ROWS]
    for suite, metric, tag in sorted(kept):
        n, passed, failed, valued, total = counts[(suite, metric, tag)]
        rate = passed / (passed + failed) if passed + failed else None
        rows.append({"suite": name(suite), "metric": name(metric), "tag": name(tag), "n": int(n),
                     "passed": int(passed), "failed": int(failed), "pass_rate": percent(rate),
                     "width": 0 if rate is None else round(100 * rate, 1),
                     "mean": number(total / valued) if valued else "—"})
    return {"rows": rows, "hidden": len(counts) - len(kept)}


def score_histograms(cases: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A histogram of the scores of each suite and metric that has graded scores (a metric
    whose values are all 0 or 1 is a pass rate, shown in the suite table)."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for case in cases:
        v: Any = case.get("value")
        if is_number(v):
            values[(str(case.get("suite", "")), str(case.get("metric") or ""))].append(float(v))
    out = []
    for (suite, metric), vs in values.items():
        if all(v in (0.0, 1.0) for v in vs):
            continue
        counts, edges = bins(vs)
        out.append({"suite": name(suite), "metric": name(metric), "n": len(vs),
                    "svg": histogram(counts, edges, label=f"{name(metric)} scores in {name(suite)}"),
                    "bins": [(f"{edges[i]:.3g}–{edges[i + 1]:.3g}", c) for i, c in enumerate(counts)]})
    return out


def latency(cases: Iterable[Mapping[str, Any]],
            summary: Sequence[SuiteRow] | None = None) -> dict[str, Any]:
    """The latency section: the probe's per-request figures, the budgets with their verdicts
    and MBU/MFU (:func:`pytest_aie.report.latency.latency_section`)."""
    from pytest_aie.report.latency import latency_section

    return latency_section(cases, summary)


def _whole(value: Any) -> str:
    return f"{value:.0f}" if is_number(value) else "—"


def elo_boards(summary: Sequence[SuiteRow]) -> list[dict[str, Any]]:
    """Each elo suite's leaderboard (ratings with intervals) and win-rate matrix."""
    boards = []
    for row in summary:
        elo = row.elo
        if not isinstance(elo, Mapping) or not elo.get("ranking"):
            continue
        ranking = [dict(r, model=name(str(r.get("model")))) for r in elo["ranking"]]
        online = (elo.get("online") or {}).get("ratings") or {}
        online = {name(str(k)): v for k, v in online.items()}
        models = [str(r.get("model")) for r in ranking]
        cells: dict[tuple[str, str], Mapping[str, Any]] = {
            (name(str(w.get("model"))), name(str(w.get("opponent")))): w
            for w in elo.get("win_matrix") or ()}
        matrix = []
        for m in models:
            line: list[dict[str, Any] | None] = []
            for o in models:
                w = cells.get((m, o))
                if m == o or w is None:
                    line.append(None)
                else:
                    rate: Any = w.get("win_rate")
                    line.append({"rate": percent(rate), "record": f"{w.get('wins')}-{w.get('losses')}-"
                                 f"{w.get('ties')}", "hue": round(120 * rate) if is_number(rate) else 60})
            matrix.append((m, line))
        silent = elo.get("no_signal")
        boards.append({
            "suite": name(row.suite), "metric": name(row.metric),
            "battles": elo.get("battles"), "svg": whiskers(ranking),
            "no_signal": name(str(silent)) if silent else "",
            "ranking": [{"rank": "" if silent else r.get("rank", place),
                         "model": r.get("model"), "rating": _whole(r.get("rating")),
                         "interval": (f"[{r['low']:.0f}, {r['high']:.0f}]"
                                      if is_number(r.get("low")) and is_number(r.get("high")) else "—"),
                         "battles": r.get("battles", ""),
                         "online": _whole(online.get(r.get("model")))}
                        for place, r in enumerate(ranking, 1)],
            "models": models, "matrix": matrix,
            "expect": [{"expect": name(g.get("expect")), "verdict": name(g.get("verdict")),
                        "reason": name(str(g.get("reason") or ""))}
                       for g in elo.get("expect") or ()],
        })
    return boards
