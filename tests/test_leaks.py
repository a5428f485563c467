"""Credentials a server or proxy quotes back in its errors reach no output of a run: a real
loopback HTTP server (``http.server`` on 127.0.0.1) answers every request with an error that
echoes the request's path (with ``?api_key=``) and its Authorization header (the base URL's
password as Basic-auth base64); the whole run's results log, HTML report, junit XML, step
summary and terminal are searched for every form of every credential."""

from __future__ import annotations

import base64

import pytest
from components import need_module
from scripted_suite import eval_test, write_scripted_suite
from test_engine_openai import PASSWORD, QUERY_SECRET, SECRET, FakeServer, credential_url, echoing

from pytest_aie.errors import EXIT_HARNESS_ERROR


@pytest.mark.parametrize("status", [400, 401])  # a per-case error; a refusal that stops the run
def test_server_quoted_credentials_reach_no_output(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    need_module("openai")
    ref: list[FakeServer] = []
    with FakeServer(echoing(ref, status=status)) as srv:
        ref.append(srv)
        cases = [{"id": f"c{i}", "prompt": f"q{i}", "expected": "a"} for i in range(3)]
        write_scripted_suite(pytester, cases, {}, eval_test("exact(min_pass_rate=0.5)"))
        summary = pytester.path / "summary.md"
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
        monkeypatch.setenv("AIE_LEAK_KEY", SECRET)
        result = pytester.runpytest_subprocess(
            "-p", "no:randomly", "-vv", "--junitxml=junit.xml", "--aie-engine", "openai",
            "--aie-model", "m", "--aie-base-url", credential_url(srv),
            "--aie-engine-options", "api_key_env=AIE_LEAK_KEY", "--aie-engine-options",
            "max_retries=0")
        quoted = [r["path"] for r in srv.posts()]
    assert result.ret == EXIT_HARNESS_ERROR
    assert quoted and all(f"api_key={QUERY_SECRET}" in p for p in quoted)  # the server had them
    basic = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    outputs = {"terminal": result.stdout.str() + result.stderr.str()}
    for path in [*(pytester.path / "aie-results").iterdir(), pytester.path / "junit.xml", summary]:
        if path.is_file():
            outputs[path.name] = path.read_text(encoding="utf-8")
    written = {"terminal", "report.html", "junit.xml"}  # a refusal: no case, no log or summary
    assert written | ({"results.jsonl", "summary.md"} if status == 400 else set()) <= set(outputs)
    assert "Basic ***" in outputs["terminal"]  # the server's error is shown, redacted
    for name, text in outputs.items():
        for secret in (PASSWORD, basic, basic.rstrip("="), QUERY_SECRET, SECRET):
            assert secret not in text, f"{secret!r} in {name}"
