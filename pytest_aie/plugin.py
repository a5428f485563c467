"""The pytest entry point: every hook and option of pytest-aie lives here (the fixtures are in
:mod:`pytest_aie.fixtures`, registered from ``pytest_configure``).

Flow of a run:

1. ``pytest_configure`` parses the options into :class:`~pytest_aie.settings.Settings` and puts
   one :class:`~pytest_aie.session.AieSession` in ``config.stash``.
2. ``pytest_generate_tests`` reads a test's ``dataset`` and eval markers, loads and validates
   the cases, and parametrizes its ``case`` argument.
3. The first case that needs an output triggers whole-suite batched generation and scoring.
4. After each case's test body, its score decides pass/fail and its record travels with the
   test report (so xdist workers send it to the controller) into the results log.
5. ``pytest_sessionfinish`` writes the HTML report and sets the exit status; the terminal
   summary (``terminal.py``) prints one line per suite.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Generator

import pytest

from pytest_aie import fixtures
from pytest_aie.dataset import Case
from pytest_aie.errors import EXIT_HARNESS_ERROR, AieError, UsageError
from pytest_aie.results.log import ResultsLog, claim_outputs, run_header
from pytest_aie.session import (
    _SELECTED_KEY,
    SESSION_KEY,
    AieSession,
    HarnessFailure,
    aie_session,
    ensure_generated,
    progress_printer,
)
from pytest_aie.settings import Settings, add_options
from pytest_aie.suite.markers import EVAL_MARKERS, MARKER_HELP, registered, restore
from pytest_aie.suite.spec import build_suite
from pytest_aie.terminal import RECORD_ATTR, failing, failure_line, final_words, write_summary

_RUN_DIR_KEY = pytest.StashKey[str]()  # xdist controller: the run store's folder
_REPORT_KEY = pytest.StashKey[str]()  # the HTML report written
_HARNESS_PROP = "aie_harness_error"
_RECORD_KEY = pytest.StashKey[Any]()
_MARKERS_KEY = pytest.StashKey[dict[str, Any]]()  # users' eval markers before the run


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``--aie-*`` options and their ini twins."""
    add_options(parser)





@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Note the eval markers users' plugins have registered before this run's conftests load:
    :func:`pytest_unconfigure` forgets the ones the run adds (two runs in one process)."""
    early_config.stash[_MARKERS_KEY] = registered()


def pytest_unconfigure(config: pytest.Config) -> None:
    before = config.stash.get(_MARKERS_KEY, None)
    if before is not None:
        restore(before)


def pytest_configure(config: pytest.Config) -> None:
    """Register markers; parse settings; create the run's session (and, on the controller,
    the results log)."""
    for text in MARKER_HELP.values():
        config.addinivalue_line("markers", text)
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "pytest_aie.fixtures")
    try:
        settings = Settings.from_config(config)
    except AieError as exc:
        raise pytest.UsageError(exc.line()) from None
    workerinput = getattr(config, "workerinput", None)
    run_dir = None
    if workerinput is not None and workerinput.get("aie_run_dir"):
        run_dir = Path(workerinput["aie_run_dir"])
    aie = AieSession(settings=settings, rootdir=Path(str(config.rootpath)),
                     is_worker=workerinput is not None, run_dir=run_dir,
                     progress=progress_printer(config))
    config.stash[SESSION_KEY] = aie
    if settings.engine_options:
        from pytest_aie.engines import check_engine_options

        try:  # a typo in an engine option is found now, not after collection
            check_engine_options(settings.engine, list(settings.engine_options))
        except AieError as exc:
            pytest.exit(exc.line(), returncode=EXIT_HARNESS_ERROR)
    if workerinput is None and settings.baseline and not config.option.collectonly:
        from pytest_aie.gates.baseline import baseline_path, load_baseline

        try:  # before any generation: a missing baseline is found now, not after the run
            aie.baseline_data = load_baseline(baseline_path(settings.baseline_dir, settings.baseline))
        except AieError as exc:
            pytest.exit(exc.line(), returncode=EXIT_HARNESS_ERROR)
    if workerinput is None and settings.results and not config.option.collectonly:
        header = run_header(settings=settings.to_dict(), rootdir=config.rootpath,
                            argv=list(config.invocation_params.args))
        aie.log = ResultsLog(settings.results, header)
    if workerinput is None:
        config.pluginmanager.register(_Collector(aie), "aie-collector")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist controller: give the workers a folder for the run's shared generation store."""
    config = node.config
    run_dir = config.stash.get(_RUN_DIR_KEY, None)
    if run_dir is None:
        run_dir = config.stash[_RUN_DIR_KEY] = tempfile.mkdtemp(prefix="pytest-aie-run-")
    node.workerinput["aie_run_dir"] = run_dir


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``case`` from the ``dataset`` marker; build and validate the suite."""
    marker = metafunc.definition.get_closest_marker("dataset")
    evals = [(m.name, m.args, m.kwargs) for m in metafunc.definition.iter_markers()
             if m.name in EVAL_MARKERS]
    aie = aie_session(metafunc.config)
    name = metafunc.function.__name__
    if marker is None and not evals:
        typo = _misspelt_marker(metafunc)
        if typo is not None:
            _collection_error(aie, typo)
        return
    suite = metafunc.definition.nodeid
    try:
        typo = _misspelt_marker(metafunc)
        if typo is not None:
            raise typo
        if marker is None:
            raise UsageError(f"@pytest.mark.{evals[0][0]} needs cases",
                             fix=f'add @pytest.mark.dataset("cases.jsonl") to {name}')
        if "case" not in metafunc.fixturenames:
            raise UsageError(f"{name} has @pytest.mark.dataset but no `case` argument",
                             fix="add `case` to its parameters")
        spec = build_suite(suite, (marker.args, marker.kwargs), evals,
                           Path(str(metafunc.definition.path)).parent,
                           engine=lambda name: aie.model(
                               name or ("candidate" if aie.settings.has_candidate else None)).engine,
                           body="evaluate" in metafunc.fixturenames,
                           run_options={"utilization": aie.settings.utilization_options()})
        if spec.body and "output" in metafunc.fixturenames:
            raise UsageError(f"{name} takes both `output` (the model's generation) and "
                             "`evaluate` (its own output)",
                             fix="take `output` to evaluate the model, or `evaluate` to hand "
                                 "over what the test body computed")
        items = aie.add_suite(spec)
    except AieError as exc:
        _collection_error(aie, exc)
    metafunc.parametrize("case", [c for c, _ in items], ids=[i for _, i in items])


def _collection_error(aie: AieSession, exc: AieError) -> None:
    """Stop collecting this test with one line; the run exits 10 (pytest prints the line
    itself, so the summary does not repeat it)."""
    aie.harness_errors.append(exc.line())
    aie.shown_errors.add(exc.line())
    raise pytest.Collector.CollectError(exc.line()) from None


def _registered_markers(config: pytest.Config) -> set[str]:
    names = set()
    for line in config.getini("markers"):
        names.add(line.split(":", 1)[0].split("(", 1)[0].strip())
    return names


def _misspelt_marker(metafunc: pytest.Metafunc) -> UsageError | None:
    """A marker on this test that is not registered but is one edit away from one of ours
    (``exactt``, ``datset``): an eval that would silently score nothing."""
    import difflib

    ours = ["dataset", *EVAL_MARKERS]
    known = _registered_markers(metafunc.config)
    for m in metafunc.definition.iter_markers():
        if m.name in known or m.name in ours:
            continue
        name = m.name.lower()
        close = difflib.get_close_matches(name, ours, n=1, cutoff=0.75) or \
            [o for o in ours if name.startswith(o) or name.endswith(o)][:1]
        if close:
            return UsageError(f"{metafunc.definition.nodeid}: unknown marker "
                              f"@pytest.mark.{m.name}", fix=f"did you mean @pytest.mark.{close[0]}?")
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Map each case item to its suite, case and model."""
    aie = aie_session(config)
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or not isinstance(callspec.params.get("case"), Case):
            continue
        case = callspec.params["case"]
        if case.suite in aie.suites:
            aie.add_run(item.nodeid, case)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Remember the selected case items: they are generated together."""
    aie = aie_session(session.config)
    session.config.stash[_SELECTED_KEY] = [i.nodeid for i in session.items if i.nodeid in aie.runs]
    if session.config.stash[_SELECTED_KEY]:
        _claim_outputs(session.config)


_CLAIMED_KEY = pytest.StashKey[bool]()


def _claim_outputs(config: pytest.Config) -> None:
    """Before any generation (once, on the controller): every output of the run can be
    written, and no other run writes the same results log; else one line and exit 10."""
    aie = config.stash.get(SESSION_KEY, None)
    if aie is None or aie.is_worker or config.option.collectonly or config.stash.get(_CLAIMED_KEY, False):
        return
    config.stash[_CLAIMED_KEY] = True
    s = aie.settings
    try:
        claim_outputs(aie.log, report=s.report, cache_dir=s.cache_dir if s.cache != "off" else "")
    except AieError as exc:
        pytest.exit(exc.line(), returncode=EXIT_HARNESS_ERROR)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """The xdist controller collects nothing, so it cannot tell whether evals will run: it
    claims the run's outputs before its workers start."""
    if session.config.pluginmanager.getplugin("dsession") is not None:
        _claim_outputs(session.config)





@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """Run the body, then score the case on every eval marker: its records ride on the
    report. A case fails when any metric fails it: an ungated metric (or a must-pass case)
    fails the test with the scorers' one-line reasons; a metric whose suite gate decides
    leaves the case xfailed."""
    aie = aie_session(item.config)
    run = aie.runs.get(item.nodeid)
    if run is None or not run.spec.evals:
        return (yield)
    if not run.spec.body:
        ensure_generated(item)
    try:
        result = yield
        if run.spec.body:
            if item.nodeid not in aie.submitted:
                pytest.fail(f"pytest-aie: {item.nodeid} did not hand its output over: call "
                            "evaluate(output) in the test body", pytrace=False)
            aie.score_body(item.nodeid, aie.submitted.pop(item.nodeid))
    except BaseException as exc:
        if isinstance(exc, (pytest.skip.Exception, KeyboardInterrupt)):
            raise
        item.stash[_RECORD_KEY] = aie.case_records(item.nodeid,
                                                   failure=f"{type(exc).__name__}: {exc}")
        _junit_properties(item, item.stash[_RECORD_KEY])
        raise
    records = aie.case_records(item.nodeid)
    item.stash[_RECORD_KEY] = records
    _junit_properties(item, records)
    bad = failing(records)
    if bad:
        message = failure_line(bad, 300, 160)
        if all(r["gate"] and not r["must_pass"] for r in bad):
            # The suite's statistical gate decides; the case shows as xfailed, not as a failure.
            gate = ", ".join(f"{k}={v:g}" for k, v in bad[0]["gate"].items())
            pytest.xfail(f"{message} (left to the suite gate {gate})")
        pytest.fail(message, pytrace=False)
    untrusted = next((r["details"]["untrusted"] for r in records
                      if (r.get("details") or {}).get("untrusted")), None)
    if untrusted:  # the judge's verdict on this case decides nothing
        pytest.skip(f"pytest-aie: verdict inconclusive: judge untrusted ({untrusted})")
    return result


def _junit_properties(item: pytest.Item, records: list[dict[str, Any]]) -> None:
    """Under ``--junitxml``: the case's figures as its ``<testcase>`` properties."""
    if records and getattr(item.config.option, "xmlpath", None):
        from pytest_aie.report.junit import case_properties

        item.user_properties.extend(case_properties(records))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """Attach the case record to the call report; shorten harness errors to one line."""
    report = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, HarnessFailure):
        # The engine could not be created or reached: its suites' other cases are skipped.
        line = str(excinfo.value)
        report.longrepr = line
        report.user_properties.append((_HARNESS_PROP, line))
    elif excinfo is not None and isinstance(excinfo.value, AieError):
        report.longrepr = excinfo.value.line()  # one line, no traceback
    if call.when == "call":
        records = item.stash.get(_RECORD_KEY, None)
        if records:
            setattr(report, RECORD_ATTR, records)
    return report


class _Collector:
    """Controller (or the only process): logs case records as their reports arrive."""

    def __init__(self, aie: AieSession) -> None:
        self.aie = aie

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for record in getattr(report, RECORD_ATTR, None) or ():
            self.aie.add_record(record)
        for name, value in report.user_properties:
            if name != _HARNESS_PROP:
                continue
            line = str(value)
            if line not in self.aie.harness_errors:
                self.aie.harness_errors.append(line)
            self.aie.shown_errors.add(line)  # pytest prints the test's error itself


_HIDDEN_KEY = pytest.StashKey[list[pytest.TestReport]]()


def _ci_outputs(config: pytest.Config, aie: AieSession, status: int) -> None:
    """Controller, at session end: the suite figures as ``--junitxml`` properties of the
    test suite, and the Markdown summary appended to ``$GITHUB_STEP_SUMMARY`` when set (a
    summary that cannot be written is a warning line, never a failed run)."""
    if not aie.records:
        return
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is not None:
        from pytest_aie.report.junit import suite_properties

        for name, value in suite_properties(aie.suite_rows, status):
            xml.add_global_property(name, value)
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        from pytest_aie.report.markdown import append_step_summary, markdown_summary

        text = markdown_summary(
            aie.suite_rows, aie.baseline_comparisons + aie.model_comparisons, aie.changes,
            exit_status=status, notes=aie.notes, harness_errors=aie.harness_errors,
            baseline=aie.settings.baseline, report=config.stash.get(_REPORT_KEY, None),
            results=str(aie.log.path) if aie.log is not None else None)
        warning = append_step_summary(text)
        if warning:
            aie.notes.append(warning)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> Generator[None, None, None]:
    """Keep the terminal proportional: failing eval cases leave pytest's FAILURES section
    and short summary (no tracebacks, no 1 MB values); pytest-aie lists them one line each
    (up to a limit, then a count and where the rest is). They still count in the final line."""
    stats = terminalreporter.stats
    failed = stats.get("failed", [])
    hidden = [r for r in failed if getattr(r, RECORD_ATTR, None) is not None]
    config.stash[_HIDDEN_KEY] = hidden
    if hidden:
        keep = [r for r in failed if getattr(r, RECORD_ATTR, None) is None]
        if keep:
            stats["failed"] = keep
        else:
            del stats["failed"]
    try:
        result = yield
    finally:
        if hidden:
            stats["failed"] = [*stats.get("failed", []), *hidden]
    aie = config.stash.get(SESSION_KEY, None)
    if aie is not None and not aie.is_worker:
        write_summary(terminalreporter, aie, hidden, config.get_verbosity(),
                      config.stash.get(_REPORT_KEY, None))
    return result


def _write_report(config: pytest.Config, aie: AieSession, status: int) -> None:
    """The HTML report; for a run that could not start (harness errors, no case evaluated), a
    page saying so in place of the previous run's report (see :mod:`pytest_aie.report.not_run`)."""
    if not aie.settings.report:
        return
    if aie.log is not None and aie.records:
        from pytest_aie.report.html import render_html

        path = render_html(aie.log.header, aie.records, aie.suite_rows, Path(aie.settings.report),
                           comparisons=aie.baseline_comparisons + aie.model_comparisons,
                           changes=aie.changes if aie.settings.baseline else None,
                           exit_status=status, notes=aie.harness_errors + aie.notes)
        config.stash[_REPORT_KEY] = str(path)
    elif aie.harness_errors and not aie.records and not config.option.collectonly:
        from pytest_aie.report.not_run import write_not_started

        header = aie.log.header if aie.log is not None else {
            "argv": list(config.invocation_params.args)}
        aie.notes.append(write_not_started(aie.settings.report, header, aie.harness_errors,
                                           EXIT_HARNESS_ERROR))


@pytest.hookimpl(tryfirst=True)  # before junitxml writes its file
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Controller: gate the suites, compare, write the report and baseline, the results
    log's conclusion, the CI outputs; set the exit status. Every process: close engines."""
    config = session.config
    aie = config.stash.get(SESSION_KEY, None)
    if aie is None:
        return
    try:
        if not aie.is_worker:
            try:
                run_dir = config.stash.get(_RUN_DIR_KEY, None)  # the workers' shared store
                session.exitstatus = aie.conclude(int(session.exitstatus),
                                                  Path(run_dir) if run_dir else None)
            except AieError as exc:
                aie.harness_errors.append(exc.line())
            status = EXIT_HARNESS_ERROR if aie.harness_errors else int(session.exitstatus)
            aie.write_conclusion(status)
            try:
                _write_report(config, aie, status)
            except OSError as exc:  # checked before generating; the disk may still fill up
                aie.harness_errors.append(f"pytest-aie: report {aie.settings.report} could not "
                                          f"be written ({exc.strerror or exc})")
                status = EXIT_HARNESS_ERROR
            _ci_outputs(config, aie, status)
    finally:
        aie.close()
        run_dir = config.stash.get(_RUN_DIR_KEY, None)
        if run_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    if aie.harness_errors and not aie.is_worker:
        session.exitstatus = EXIT_HARNESS_ERROR
    if not aie.is_worker:
        final_words(session, aie)
