"""A missing real component skips a test on a developer's machine and fails it in CI (``CI=true``):
tests/components.py, and its use by the browser and ``transformers serve`` helpers."""

from __future__ import annotations

import sys
from pathlib import Path

import browser
import pytest
import serving
from components import in_ci, need, need_module

TESTS = Path(__file__).parent


@pytest.mark.parametrize("value, ci", [("true", True), ("1", True), ("yes", True), ("TRUE", True),
                                       ("", False), ("0", False), ("false", False), (None, False)])
def test_in_ci_reads_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str | None, ci: bool) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is ci


def test_need_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="^browser unavailable: no chromium$"):
        need("browser", "no chromium", detail="a long log")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="browser unavailable: no chromium.*CI=true") as err:
        need("browser", "no chromium", detail="the log's tail")
    assert str(err.value).endswith("\nthe log's tail")


def test_need_module_returns_the_module_or_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert need_module("json") is sys.modules["json"]
    with pytest.raises(pytest.fail.Exception, match="Python package no_such_mod_xyz unavailable: "
                                                    "cannot import no_such_mod_xyz.sub"):
        need_module("no_such_mod_xyz.sub")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="bert-score unavailable.*pip install bert-score"):
        need_module("no_such_mod_xyz", "bert-score", install="pip install bert-score")


def test_browser_that_cannot_start_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIE_CHROMIUM", str(tmp_path / "no-chromium"))  # not executable: not found
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="browser unavailable"):
        with browser.chromium_or_skip():
            pass  # pragma: no cover - never reached
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="browser unavailable"):
        with browser.chromium_or_skip():
            pass  # pragma: no cover - never reached


def test_transformers_serve_that_cannot_start_fails_in_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A "server" that exits at once: the start fails with the exit code and the log's tail.
    crash = [sys.executable, "-c", "import sys; print('boom: no model here'); sys.exit(3)"]
    monkeypatch.setattr(serving, "_transformers_cli", lambda: crash)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="transformers serve unavailable: could not start: "
                                                    "transformers serve exited with code 3") as err:
        with serving.serving_or_skip(model_dir=tmp_path, log_path=tmp_path / "server.log"):
            pass  # pragma: no cover - never reached
    assert "boom: no model here" in str(err.value)  # the log's tail comes with the failure
    monkeypatch.setenv("CI", "0")
    with pytest.raises(pytest.skip.Exception, match="transformers serve unavailable"):
        with serving.serving_or_skip(model_dir=tmp_path, log_path=tmp_path / "server2.log"):
            pass  # pragma: no cover - never reached


INNER = """
    import pytest
    from components import need, need_module

    def test_needs_a_browser():
        need("browser", "no chromium")

    def test_bare_skip():
        pytest.skip("not installed")

    def test_bare_importorskip():
        pytest.importorskip("no_such_mod_xyz")

    @pytest.mark.skipif(True, reason="marker skip")
    def test_marker_skip():
        pass

    @pytest.mark.xfail(reason="known", strict=True)
    def test_xfail_still_allowed():
        assert False

    def test_ok():
        assert need_module("json")
"""


@pytest.mark.parametrize("ci", ["true", None])
def test_no_test_skips_under_ci(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                ci: str | None) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.syspathinsert(TESTS)
    pytester.makepyfile(test_inner=INNER)
    result = pytester.runpytest("-p", "components", "-p", "no:randomly", "-rA",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning")
    if ci:  # need() fails; the hook turns the bare skips (not the xfail) into failures
        result.assert_outcomes(failed=3, errors=1, xfailed=1, passed=1)  # the marker skips at setup
        result.stdout.fnmatch_lines([
            "*browser unavailable: no chromium [[]CI=true: a missing component fails in CI*",
            "*skipped under CI=true, which must not skip: Skipped: not installed*",
            "*skipped under CI=true, which must not skip: *no_such_mod_xyz*",
            "*skipped under CI=true, which must not skip: Skipped: marker skip*",
        ])
        assert result.ret == 1
    else:
        result.assert_outcomes(skipped=4, xfailed=1, passed=1)
        assert result.ret == 0


COLLECTION = {
    "test_mod_importorskip": """
        import pytest
        pytest.importorskip("no_such_mod_xyz")

        def test_never_collected():
            pass
    """,
    "test_mod_need_module": """
        from components import need_module
        need_module("no_such_mod_abc", install="make install-vllm")

        def test_never_collected():
            pass
    """,
    "test_mod_machine": """
        import shutil
        from components import not_on_this_machine

        def test_no_gpu_path():
            not_on_this_machine("this machine has nvidia-smi")

        def test_ok():
            pass
    """,
}


@pytest.mark.parametrize("ci", ["true", None])
def test_skips_at_collection_fail_under_ci_and_declared_machine_skips_do_not(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str | None) -> None:
    # a module skipped while it is collected never reaches a test's report: the collection hook
    # must turn it into an error under CI, or its tests vanish from a green run
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    pytester.syspathinsert(TESTS)
    pytester.makepyfile(**{k: v for k, v in COLLECTION.items()})
    result = pytester.runpytest("-p", "components", "-p", "no:randomly", "-rA",
                                "--continue-on-collection-errors",
                                "-W", "ignore::pytest.PytestAssertRewriteWarning")
    out = result.stdout.str()
    if ci:
        result.assert_outcomes(errors=2, skipped=1, passed=1)
        result.stdout.fnmatch_lines([
            "*skipped under CI=true, which must not skip: *no_such_mod_xyz*",
            "*Python package no_such_mod_abc unavailable*make install-vllm*",
            "*SKIPPED*not on this machine: this machine has nvidia-smi*",
        ])
        assert result.ret != 0, out
    else:
        result.assert_outcomes(skipped=3, passed=1)
        assert result.ret == 0, out


@pytest.mark.parametrize("given, seen", [(None, "true"), ("false", "false"), ("", "")])
def test_ci_run_sets_ci_unless_the_caller_did(tmp_path: Path, given: str | None, seen: str) -> None:
    import os
    import shutil
    import subprocess

    (tmp_path / ".ci").mkdir()
    shutil.copy(TESTS.parent / ".ci" / "run", tmp_path / ".ci" / "run")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "make").write_text('#!/bin/sh\necho "make $* CI=[${CI-unset}]"\n')
    (bin_dir / "make").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    if given is not None:
        env["CI"] = given
    done = subprocess.run(["bash", str(tmp_path / ".ci" / "run")], env=env, capture_output=True,
                          text=True, check=True)
    assert done.stdout == f"make test CI=[{seen}]\n"
