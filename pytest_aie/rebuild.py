"""``python -m pytest_aie report RESULTS... -o report.html``: the full report, gates and
comparisons included, rebuilt from one or more results logs.

* **One complete log** (it ends with its ``conclusion`` record): the run's own rows,
  comparisons, baseline diff, exit status and notes, as the run concluded.
* **A log without a conclusion** (the run crashed or was killed): the rows are recomputed
  with :func:`~pytest_aie.gates.thresholds.evaluate_suites` from its case records and its header's gate
  settings, the comparisons between models from the records; what cannot be recomputed is
  said on stderr (suite-level figures that were never written: corpus scores, latency
  budgets, Elo ratings, judge calibration; pytest's own outcome of tests without evals).
* **Several logs** (one run split across machines: pytest-xdist hosts, sharded CI): the case
  records are merged, then gated as one run. Logs that cannot be merged are refused with one
  line: different gate settings, the same suite run with different models or options, the
  same case with different results in two logs.
* ``--baseline NAME_OR_PATH`` recomputes the comparison with a stored baseline and the
  baseline diff over the (merged) cases.

The exit status is the one the run would have had from these gates: 0, 1 (a failed gate, a
must-pass case or an ungated case that failed), 10 (a harness problem: engine errors or a
suite with nothing measured), 11 (a regression); 2 when it rebuilt nothing (bad arguments,
a log that cannot be read, logs that cannot be merged), with one line saying why.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from pytest_aie.errors import EXIT_HARNESS_ERROR, AieError, UsageError
from pytest_aie.gates.comparisons import Comparison
from pytest_aie.gates.conclusion import ConclusionRecord
from pytest_aie.results.records import SuiteRow

__all__ = ["Rebuilt", "load_log", "main", "rebuild"]

#: Metrics whose suite figures are computed at session end from every case at once.
_AGGREGATED = ("latency.", "elo.", "judge.", "similarity.bleu", "similarity.chrf",
               "similarity.ter")
#: Settings that must agree between logs holding the same suite.
_MODEL_SETTINGS = ("engine", "model", "models", "engine_options", "dtype", "max_tokens",
                   "temperature", "seed", "samples", "candidate", "candidate_adapter", "judge")
_POLICY_SETTINGS = ("gate", "inconclusive", "confidence", "regression_margin", "alpha")


@dataclass
class Log:
    path: Path
    header: dict[str, Any]
    cases: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    conclusion: ConclusionRecord | None


def load_log(path: str | Path) -> Log:
    """A results log with its ``change`` records and its ``conclusion`` (None after a crash)."""
    from pytest_aie.results.log import load_results

    other: list[dict[str, Any]] = []
    header, cases = load_results(path, other=other)
    changes = [{k: v for k, v in r.items() if k != "type"} for r in other if r.get("type") == "change"]
    conclusion = next((r for r in reversed(other) if r.get("type") == "conclusion"), None)
    return Log(Path(path), header, cases, changes,
               None if conclusion is None else ConclusionRecord.from_json(conclusion))


@dataclass
class Rebuilt:
    """What the report is rendered from, and what could not be recomputed (``messages``)."""

    header: dict[str, Any]
    cases: list[dict[str, Any]]
    rows: list[SuiteRow]
    comparisons: list[Comparison]
    changes: list[dict[str, Any]]
    exit_status: int
    notes: list[str]
    harness_errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    baseline: str | None = None


def _settings(log: Log) -> dict[str, Any]:
    settings = log.header.get("settings")
    return settings if isinstance(settings, dict) else {}


def _differs(a: Log, b: Log, keys: Sequence[str]) -> str | None:
    sa, sb = _settings(a), _settings(b)
    for key in keys:
        if sa.get(key) != sb.get(key):
            return f"{key} {sa.get(key)!r} vs {sb.get(key)!r}"
    return None


def _check_mergeable(logs: list[Log]) -> None:
    """Raise :class:`UsageError` (one line: the problem and the fix) unless the logs are
    shares of one run."""
    first = logs[0]
    for log in logs[1:]:
        diff = _differs(first, log, _POLICY_SETTINGS)
        if diff:
            raise UsageError(f"results logs {first.path} and {log.path} use different gate "
                             f"settings ({diff})",
                             fix="merge logs of runs made with the same --aie-gate, "
                                 "--aie-inconclusive, --aie-confidence, --aie-alpha and "
                                 "--aie-regression-margin, or rebuild each log on its own")
    suites: dict[str, Log] = {}
    models: dict[tuple[str, str], tuple[str, Log]] = {}
    for log in logs:
        for suite in sorted({c["suite"] for c in log.cases}):
            other = suites.setdefault(suite, log)
            diff = None if other is log else _differs(other, log, _MODEL_SETTINGS)
            if diff:
                raise UsageError(f"results logs {other.path} and {log.path} both hold suite "
                                 f"{suite} but ran it with different settings ({diff})",
                                 fix="merge only logs of one run split across machines (the "
                                     "same command and options, each with its share of the "
                                     "cases), or rebuild each log on its own")
        for case in log.cases:
            key = (case["suite"], str(case.get("model") or "default"))
            seen = models.setdefault(key, (str(case.get("model_id") or ""), log))
            if seen[0] != str(case.get("model_id") or "") and seen[1] is not log:
                raise UsageError(f"results logs {seen[1].path} and {log.path} evaluated suite "
                                 f"{key[0]} with different models for {key[1]!r} "
                                 f"({seen[0]!r} vs {case.get('model_id')!r})",
                                 fix="merge only logs of one run split across machines, or "
                                     "rebuild each log on its own")


def _merge_cases(logs: list[Log]) -> list[dict[str, Any]]:
    """Every log's case records, each case once (the same case in two logs must have the
    same result), ordered by suite, metric, model and the case's place in its dataset, as a
    single run orders them."""
    from pytest_aie.results.records import status_of

    kept: dict[tuple[str, str, str, str], tuple[dict[str, Any], Path]] = {}
    for log in logs:
        for case in log.cases:
            key = (case["suite"], case["metric"], str(case.get("model") or "default"),
                   str(case["case_id"]))
            seen = kept.get(key)
            if seen is None:
                kept[key] = (case, log.path)
                continue
            old = seen[0]
            if (status_of(old), old.get("value")) != (status_of(case), case.get("value")):
                raise UsageError(
                    f"case {key[3]} of {key[0]} [{key[1]}] is in both {seen[1]} and {log.path} "
                    f"with different results ({status_of(old)} {old.get('value')!r} vs "
                    f"{status_of(case)} {case.get('value')!r})",
                    fix="merge logs of disjoint shares of the cases (one log per machine or "
                        "shard of one run), or rebuild each log on its own")

    def place(item: tuple[tuple[str, str, str, str], tuple[dict[str, Any], Path]]) -> tuple[Any, ...]:
        key, (case, _) = item
        source = str(case.get("source") or "")
        path, _, line = source.rpartition(":")
        return (*key[:3], path, int(line) if line.isdigit() else 0)

    return [case for _, (case, _) in sorted(kept.items(), key=place)]


def _fails_its_test(case: dict[str, Any]) -> bool:
    """A case whose own test failed, as the plugin decides it: a failed or unmeasured record
    of an ungated metric or of a must-pass case (a gated one is left to the suite gate)."""
    from pytest_aie.results.records import status_of

    return status_of(case) in ("failed", "unmeasured") and \
        (not case.get("gate") or bool(case.get("must_pass")))


def _load_baseline(spec: str, logs: list[Log]) -> tuple[str, dict[str, Any]]:
    from pytest_aie.gates.baseline import baseline_path, load_baseline

    path = Path(spec)
    if not (path.suffix == ".json" or path.is_file()):
        folder = _settings(logs[0]).get("baseline_dir") or "aie-baselines"
        path = baseline_path(folder, spec)
    return path.stem, load_baseline(path)


def rebuild(paths: Sequence[str | Path], *, baseline: str | None = None) -> Rebuilt:
    """The report's content from results logs (see the module docstring). Raises
    :class:`~pytest_aie.errors.AieError` for logs that cannot be read or merged."""
    logs = [load_log(p) for p in paths]
    if len(logs) == 1 and logs[0].conclusion is not None and baseline is None \
            and not logs[0].conclusion.cut:
        log, c = logs[0], logs[0].conclusion
        return Rebuilt(log.header, log.cases, c.rows, c.comparisons, log.changes, c.exit_status,
                       c.notes, c.harness_errors, baseline=c.baseline)
    _check_mergeable(logs)
    return _recompute(logs, baseline)


def _recompute(logs: list[Log], baseline: str | None) -> Rebuilt:
    from pytest_aie.gates.conclusion import conclude
    from pytest_aie.gates.policy import gate_policy

    messages: list[str] = []
    cases = _merge_cases(logs)
    policy = gate_policy(_settings(logs[0]))
    aggregates: dict[tuple[str, str, str], Any] = {}
    owners: set[tuple[str, str, str]] = set()
    statuses: list[int] = []
    harness: list[str] = []
    for log in logs:
        if log.conclusion is None:
            statuses.append(1 if any(_fails_its_test(c) for c in log.cases) else 0)
            missing = sorted({f"{c['suite']} [{c['metric']}]" for c in log.cases
                              if str(c["metric"]).startswith(_AGGREGATED)})
            version = log.header.get("format_version")
            why = "the run stopped before its end" if not isinstance(version, int) or version >= 3 \
                else f"results format {version} kept none"
            messages.append(
                f"{log.path}: no conclusion record ({why}): rows "
                "recomputed from its case records and its settings; pytest's own outcome of "
                "tests without evals is not in the log"
                + (f"; suite-level figures never written, not recomputed: {', '.join(missing)}"
                   if missing else ""))
            continue
        statuses.append(log.conclusion.pytest_status)
        harness += [h for h in log.conclusion.harness_errors if h not in harness]
        for key, value in log.conclusion.aggregates.items():
            aggregates[key] = value
            owners.add(key)
    if len(logs) > 1:  # a figure computed on one log's share of a split suite is not the suite's
        held = [{(c["suite"], c["metric"], str(c.get("model") or "default")) for c in log.cases}
                for log in logs]
        for key in owners:
            if sum(key in keys for keys in held) > 1:
                del aggregates[key]
                messages.append(f"{key[0]} [{key[1]}]: its suite-level figures were computed on "
                                f"each log's share of the cases and cannot be combined; its row "
                                f"is recomputed from the case records only")
    name, data = _load_baseline(baseline, logs) if baseline is not None else (None, None)
    if baseline is None:
        earlier = sorted({str(_settings(log).get("baseline")) for log in logs
                          if _settings(log).get("baseline")})
        if earlier:
            messages.append(f"the run compared with baseline {', '.join(earlier)}: pass "
                            f"--baseline {earlier[0]} to recompute that comparison over these "
                            "cases (left out)")
    base = next((s for s in statuses if s not in (0, 5)), 0)
    c = conclude(cases, policy, aggregates=aggregates, status=base, harness_errors=harness,
                 baseline=None if name is None or data is None else (name, data))
    messages += c.missing
    rows, comparisons, changes = c.rows, c.comparisons, c.changes
    status, notes, harness = c.exit_status, c.notes, c.harness_errors
    if harness:
        status = EXIT_HARNESS_ERROR
    header = dict(logs[0].header)
    if len(logs) > 1:
        header["merged_from"] = [str(log.path) for log in logs]
    return Rebuilt(header, cases, rows, comparisons, changes, status, notes, harness, messages, name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_aie report",
        description="Rebuild the HTML report, gates and comparisons included, from one or more "
                    "results logs (after a crash, or to merge a run split across machines). "
                    "Exits with the status the run would have had: 0, 1, 10 or 11.")
    parser.add_argument("results", nargs="+", help="results logs (results.jsonl)")
    parser.add_argument("-o", "--output", default=None,
                        help="the HTML report to write (default: next to the first log)")
    parser.add_argument("--baseline", default=None, metavar="NAME_OR_PATH",
                        help="compare with a stored baseline (a name in the run's baseline "
                             "folder, or a .json path)")
    parser.add_argument("--summary", action="store_true",
                        help="print the Markdown summary (as written to $GITHUB_STEP_SUMMARY)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The ``report`` command; returns the exit status."""
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    target = Path(args.output) if args.output else Path(args.results[0]).with_suffix(".html")
    try:
        from pytest_aie.results.log import check_writable

        check_writable(target, "report", "-o/--output")  # before any work: one line, exit 2
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = rebuild(args.results, baseline=args.baseline)
        for w in caught:
            print(f"pytest-aie: {w.message}", file=sys.stderr)
        from pytest_aie.report.html import render_html

        path = render_html(result.header, result.cases, result.rows, target,
                           comparisons=result.comparisons,
                           changes=result.changes if result.baseline else None,
                           exit_status=result.exit_status,
                           notes=result.harness_errors + result.notes)
    except AieError as exc:  # a log that cannot be read, logs that cannot be merged
        print(exc.line(), file=sys.stderr)
        return 2
    for line in result.messages:
        print(f"pytest-aie: {line}", file=sys.stderr)
    for line in result.harness_errors + result.notes:
        print(line, file=sys.stderr)
    if args.summary:
        from pytest_aie.report.markdown import markdown_summary

        print(markdown_summary(result.rows, result.comparisons, result.changes,
                               exit_status=result.exit_status, notes=result.notes,
                               harness_errors=result.harness_errors, baseline=result.baseline,
                               report=str(path), results=", ".join(args.results)), end="")
    print(f"pytest-aie report: {path} (exit status {result.exit_status})", file=sys.stderr)
    return result.exit_status

