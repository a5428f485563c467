"""The eval-marker table: built downward from the families' plain data, and users' markers
forgotten when the run that registered them ends."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pytest_aie.suite.markers import BUILTIN, EVAL_MARKERS, MARKER_HELP, registered


def test_the_table_lists_every_built_in_marker_once() -> None:
    names = [m.name for m in BUILTIN]
    assert names == ["similarity", "exact", "judge", "elo", "agent", "latency", "retrieval"]
    assert list(MARKER_HELP)[:len(names) + 1] == ["dataset", *names]
    for m in BUILTIN:
        assert EVAL_MARKERS[m.name] is m and m.help.startswith(f"{m.name}(")


def test_importing_a_family_registers_nothing() -> None:
    code = textwrap.dedent("""
        import pytest_aie.latency.marker, pytest_aie.agent.scorer, pytest_aie.retrieval.metrics
        import sys
        print("pytest_aie.suite.markers" in sys.modules, "pytest_aie.suite.spec" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_a_runs_registered_marker_does_not_outlive_the_run(pytester: pytest.Pytester) -> None:
    pytester.makeconftest("""
        from pytest_aie import register_eval_marker
        register_eval_marker("mine", lambda *a, base_dir, engine, **kw: None, "mine(): mine")
    """)
    pytester.makepyfile("def test_nothing():\n    pass\n")
    before = registered()
    result = pytester.runpytest_inprocess("-p", "no:randomly", "--markers")
    assert "@pytest.mark.mine(): mine" in result.stdout.str()
    assert "mine" not in EVAL_MARKERS and registered() == before


def test_utilization_options_reach_the_latency_scorer_by_argument(tmp_path) -> None:
    """No module state: the run's MBU/MFU options travel from the settings to the latency
    marker's scorer as a run option of build_suite."""
    import pytest_aie.latency.utilization as utilization
    from pytest_aie.latency.utilization import UtilizationOptions
    from pytest_aie.settings import Settings
    from pytest_aie.suite.spec import build_suite

    assert not hasattr(utilization, "configure") and not hasattr(utilization, "_options")
    opts = Settings(accelerator="h100-sxm", model_params=7, dtype="bf16").utilization_options()
    assert opts == UtilizationOptions(accelerator="h100-sxm", model_params=7, dtype="bf16")
    (tmp_path / "cases.jsonl").write_text('{"id": "a", "prompt": "q"}\n')

    def scorer(run_options: dict[str, object] | None) -> object:
        spec = build_suite("s", (("cases.jsonl",), {}), [("latency", (), {"e2e_p95_ms": 100})],
                           tmp_path, run_options=run_options)
        return spec.evals[0].scorer

    assert scorer({"utilization": opts}).utilization_options == opts  # type: ignore[attr-defined]
    assert scorer(None).utilization_options == UtilizationOptions()  # type: ignore[attr-defined]
