"""LoRA adapters for the ``hf`` engine: pinned references (``"path@<sha256>"``), the content
hash of an adapter folder, loading adapters into the one base model with peft, and switching
the active adapter around a forward pass or a ``generate`` call.

Private to :mod:`pytest_aie.engines.hf`, whose module docstring describes the behaviour;
:class:`AdapterMixin` is one of :class:`~pytest_aie.engines.hf.HFEngine`'s bases, and
:func:`split_adapter` is re-exported there. peft is imported inside methods only.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from pytest_aie.errors import EngineError, require

__all__ = ["FIX_ADAPTER", "AdapterMixin", "adapter_revision", "split_adapter"]

FIX_ADAPTER = (
    "give the request's adapter as the folder of a PEFT LoRA adapter trained on this base model "
    "(adapter_config.json and adapter_model.safetensors, as written by peft's save_pretrained)"
)
#: ``path@<64 hex digits>``: an adapter reference pinned to the folder's content hash.
_PINNED = re.compile(r"^(?P<path>.+)@(?P<rev>[0-9a-f]{64})$")


def _peft() -> ModuleType:
    return require("peft", "hf", "LoRA adapters")


def split_adapter(ref: str) -> tuple[str, str | None]:
    """``"path@<sha256>"`` -> ``(path, sha256)``; a plain ``"path"`` -> ``(path, None)``."""
    pinned = _PINNED.match(ref)
    return (pinned["path"], pinned["rev"]) if pinned else (ref, None)


def adapter_revision(path: str | os.PathLike[str]) -> str:
    """The sha256 content hash of a PEFT LoRA adapter folder (every non-hidden file by name
    and contents; file hashes are cached by size and mtime). Does not load any model."""
    from pytest_aie.engines.embedded import folder_revision

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise EngineError(f"LoRA adapter folder {str(path)!r} does not exist", fix=FIX_ADAPTER)
    if not (folder / "adapter_config.json").is_file():
        raise EngineError(f"LoRA adapter folder {str(path)!r} has no adapter_config.json",
                          fix=FIX_ADAPTER)
    return folder_revision(folder)


class AdapterMixin:
    """The adapter half of :class:`~pytest_aie.engines.hf.HFEngine`. It uses the engine's
    ``model_ref``, ``_device``, ``_model``/``_tokenizer`` (dropped when a first adapter fails
    half-way into the base model), ``_peft_model`` (the PeftModel wrapping the base model once an
    adapter is loaded) and ``_adapters`` (``Request.adapter`` reference -> peft adapter name)."""

    model_ref: str
    _device: str | None
    _model: Any
    _tokenizer: Any
    _peft_model: Any
    _adapters: dict[str, str]

    def adapter_revision(self, path: str | os.PathLike[str]) -> str:
        return adapter_revision(path)

    def resolve_adapter(self, ref: str) -> str:
        """``"path@<sha256 of the folder now>"``, for ``Request.adapter``: the cache key then
        changes whenever the adapter's files do. ``ref`` is a folder path, or an already pinned
        reference (re-pinned to the folder's current contents). The path is kept as given."""
        path, _ = split_adapter(ref)
        return f"{path}@{self.adapter_revision(path)}"

    def _adapter_name(self, model: Any, ref: str) -> str:
        """The peft adapter name for a ``Request.adapter`` reference, loading it on first use."""
        name = self._adapters.get(ref)
        if name is not None:
            return name
        path, pinned = split_adapter(ref)
        revision = self.adapter_revision(path)
        if pinned is not None and pinned != revision:
            raise EngineError(
                f"LoRA adapter folder {path!r} changed after its requests were made "
                f"(sha256 {revision[:12]}, requests pinned {pinned[:12]})",
                fix="do not rewrite an adapter folder during a run; rerun to use its new weights")
        name = f"aie_{revision[:16]}"  # content-addressed: one copy per distinct adapter
        if self._peft_model is None or name not in self._peft_model.peft_config:
            self._load_adapter(model, str(Path(path).expanduser()), name)
        self._adapters[ref] = name
        return name

    def _load_adapter(self, model: Any, folder: str, name: str) -> None:
        peft = _peft()
        try:
            if self._peft_model is None:
                self._peft_model = peft.PeftModel.from_pretrained(
                    model, folder, adapter_name=name, torch_device=self._device or "cpu")
            else:
                self._peft_model.load_adapter(folder, adapter_name=name,
                                              torch_device=self._device or "cpu")
        except Exception as exc:  # peft raises ValueError, KeyError, RuntimeError, OSError, ...
            if self._peft_model is None:  # the base model may hold half-injected layers: reload it
                self._model = self._tokenizer = None
            elif name in self._peft_model.peft_config:
                with contextlib.suppress(Exception):
                    self._peft_model.delete_adapter(name)
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise EngineError(f"cannot load LoRA adapter {folder!r} into {self.model_ref!r}: {detail}",
                              fix=FIX_ADAPTER) from exc
        model.eval()

    @contextlib.contextmanager
    def _adapter_active(self, model: Any, ref: str | None) -> Iterator[None]:
        """Within the block, ``model`` (the transformers model, LoRA layers injected in place)
        runs with adapter ``ref`` active, or with every adapter switched off for ``None``."""
        if ref:
            name = self._adapter_name(model, ref)  # loads it first: self._peft_model exists after
            self._peft_model.set_adapter(name)
            yield
        elif self._peft_model is not None:
            with self._peft_model.disable_adapter():
                yield
        else:
            yield
