"""One vLLM OpenAI server for the whole vLLM tier.

``python -m vllm.entrypoints.openai.api_server`` on the embedded SmolLM2-135M (float32, eager),
started once, at its first use, and shared by the modules that talk to it (the judge, schema and
server tests): each start costs 30-45 s of a 2-core machine. The tool-calling tests serve another
model and start their own.
"""

from __future__ import annotations

from typing import Iterator

import pytest
from serving import ServerInfo, serving_or_skip


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """vLLM's own server for the session (fails under CI when it cannot start)."""
    from pytest_aie.engines.embedded import default_model_dir

    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with serving_or_skip(model_dir=default_model_dir(), log_path=log, kind="vllm",
                         threads=None) as info:
        print(f"\n[vllm-server] {info.base_url} ready in {info.startup_s:.1f}s; log {log}")
        yield info


@pytest.fixture(scope="session")
def openai_server_info(vllm_server: ServerInfo) -> ServerInfo:
    """The same server under the name the imported tests of ``test_engine_openai`` and
    ``test_latency`` ask for."""
    return vllm_server
