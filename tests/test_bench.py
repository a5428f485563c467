"""``make bench``'s runner (benchmarks/run.py) and the results-log reading of
benchmarks/aa_embedded.py: without a model, on hand-made inputs."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_aa_embedded_counts_only_case_records_of_a_format_3_log(tmp_path: Path) -> None:
    # a format-3 log: the run header, the cases, then one change record per case (which names
    # the case too) and the conclusion; counting every record with a case_id gave 5 cases here
    rows = [{"type": "run", "format_version": 3},
            {"type": "case", "case_id": "a", "status": "passed", "passed": True},
            {"type": "case", "case_id": "b", "status": "failed", "passed": False},
            {"type": "case", "case_id": "c", "status": "passed", "passed": True},
            {"type": "change", "case_id": "a", "status": "passed", "passed": True},
            {"type": "change", "case_id": "b", "status": "passed", "passed": True},
            {"type": "conclusion", "exit_status": 0}]
    log = tmp_path / "results.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert load("aa_embedded").pass_count(log) == (2, 3)


def test_only_selects_benchmarks_in_run_order_and_refuses_unknown_names(
        capsys: pytest.CaptureFixture[str]) -> None:
    run = load("run")
    assert run.selected("report_scale,judge_batching") == ["judge_batching.py", "report_scale.py"]
    assert run.selected(" judge_batching.py ") == ["judge_batching.py"]
    assert run.selected(None) == run.BENCHMARKS
    with pytest.raises(SystemExit) as info:
        run.selected("judge_batching,nope")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown benchmark 'nope'" in err and "report_scale" in err


def test_every_figure_is_printed_as_soon_as_it_is_measured(tmp_path: Path) -> None:
    # the fake benchmark prints one figure, then waits for the test to have seen it before it
    # prints the next: a runner that holds the figures until the benchmark ends never shows the
    # first, and the benchmark gives up after 60 s and says so
    go = tmp_path / "go"
    (tmp_path / "fake.py").write_text(textwrap.dedent(f"""
        import pathlib, sys, time
        print("fake_first: 1.5")
        print("some detail")
        deadline = time.monotonic() + 60
        while not pathlib.Path({str(go)!r}).exists():
            if time.monotonic() > deadline:
                print("fake_first_was_held: 1")
                sys.exit(3)
            time.sleep(0.05)
        print("fake_second: 2")
    """))
    driver = textwrap.dedent(f"""
        import importlib.util, pathlib, sys
        spec = importlib.util.spec_from_file_location("r", {str(BENCH / "run.py")!r})
        run = importlib.util.module_from_spec(spec); spec.loader.exec_module(run)
        run.HERE = pathlib.Path({str(tmp_path)!r})
        run.BENCHMARKS = ["fake.py"]
        sys.exit(run.main(["--only", "fake"]))
    """)
    with subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        go.touch()
        rest, err = proc.communicate(timeout=120)
    assert first == "fake_first: 1.5\n", err
    assert rest == "fake_second: 2\n" and "some detail" in err
    assert proc.returncode == 0


def test_every_figure_the_docs_quote_is_printed_by_a_benchmark_make_bench_runs() -> None:
    import re

    development = (BENCH.parent / "docs" / "development.md").read_text(encoding="utf-8")
    section = development.split("\n## Benchmarks\n", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| (`[^|]*) \|", section, re.M)
    table = {name for cell in first_cells for name in re.findall(r"`([a-z0-9_]+)`", cell)}
    quoted = set(re.findall(r"`([a-z][a-z0-9_]*)` \**\[?[-0-9.]", section.split("**As printed.**")[1]))
    run = load("run")
    code = "\n".join((BENCH / script).read_text(encoding="utf-8") for script in run.BENCHMARKS)
    # a figure's name is in the code of a benchmark make bench runs (report_scale builds its
    # names from the sizes: report_{label}_mb)
    printed = {name for name in quoted if re.search(rf"\b{name}\b", code)
               or re.fullmatch(r"report_(1k|10k|100k)_(mb|open_s|filter_s)", name)}
    assert len(quoted) >= 20
    assert quoted <= printed, quoted - printed
    described = table | {"elo_aa_false_fail_upper", "elo_power_70_battles_for_0_8"}
    assert quoted <= described, quoted - described
