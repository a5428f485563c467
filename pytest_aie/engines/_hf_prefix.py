"""Prefix caching for the ``hf`` engine: the key/value cache of a prompt's shared beginning
(an agent's or a judge's system prompt with its tool list or rubric, a few-shot preamble) is
computed once and reused, within a micro-batch and across calls.

Prefill is compute-bound on a CPU: 16 prompts of 340 tokens take 16 times as long as one, so a
batch of agents that all start with the same 320-token system prompt spends most of a step
re-reading it. With this cache:

* **Within a micro-batch**, the rows' longest common prefix, rounded down to a multiple of
  ``block`` tokens and at least ``min_tokens`` long (and leaving every row at least one token of
  its own), is run through the model once, with batch size 1; its cache is repeated across the
  rows. Each row is laid out as ``prefix + padding + its own suffix``: the padding sits in the
  middle, masked out, and the position ids (taken from the attention mask's running count) stay
  those of the unpadded prompt, so each row sees exactly the tokens it would see alone.
* **Across calls**, computed prefixes are kept in a small least-recently-used store, keyed by
  the token ids (and the LoRA adapter that was active), bounded by ``max_bytes`` of cache
  tensors. A prefix that extends a stored one is computed from it: only the new tokens run. A
  single request uses the store too (its own prompt, rounded down to a block), so one agent run
  at a time reuses its system prompt as vLLM's automatic prefix caching would: both sides of a
  batching comparison get the same cache.

Greedy results are the same as without the cache up to float round-off (the prefix's attention
is computed with batch size 1 rather than inside the batch; ``tests/test_engine_hf.py`` compares
them). Models whose cache is not a plain full-attention ``DynamicCache`` (sliding-window or
recurrent layers) are left alone: :meth:`PrefixCache.usable` says no, and they run as before.

Private to :mod:`pytest_aie.engines.hf`; torch and transformers are imported inside functions.
"""

from __future__ import annotations

import copy
import os
from collections import OrderedDict
from typing import Any, Sequence

from pytest_aie.engines._hf_loading import torch_module, transformers_module

__all__ = ["PrefixCache", "plain_cache", "prefix_layout"]


def _common_length(prompts: Sequence[Sequence[int]]) -> int:
    """Length of the longest common prefix of the prompts (of the prompt itself, for one)."""
    return len(os.path.commonprefix([list(p) for p in prompts]))


def plain_cache(model: Any) -> bool:
    """Whether the model's key/value cache is a plain full-attention ``DynamicCache`` (no
    sliding-window or recurrent layers): one whose rows and prefixes can be cut and copied."""
    try:
        cache = transformers_module().DynamicCache(config=model.config)
        layers = list(getattr(cache, "layers", None) or ())
    except Exception:  # an architecture DynamicCache cannot describe
        return False
    return bool(layers) and all(type(layer).__name__ == "DynamicLayer"
                                and not getattr(layer, "is_sliding", False) for layer in layers)


def prefix_layout(prompts: Sequence[Sequence[int]], prefix: int, pad_id: int) -> tuple[Any, Any, int]:
    """``(input_ids, attention_mask, width)`` for rows that share their first ``prefix`` tokens:
    each row is the prefix, then padding (masked out), then the row's own tokens, right-aligned."""
    torch = torch_module()
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    shared = torch.tensor(list(prompts[0][:prefix]), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, :prefix] = shared
        attention[row, :prefix] = 1
        own = list(ids[prefix:])
        input_ids[row, width - len(own):] = torch.tensor(own, dtype=torch.long)
        attention[row, width - len(own):] = 1
    return input_ids, attention, width


class PrefixCache:
    """The stored prefixes of one loaded model (see the module docstring). ``max_bytes``: the
    most cache-tensor bytes kept (0 turns caching off); ``block``: prefixes are cut at multiples
    of this many tokens (so the prompts of different calls meet on the same keys);
    ``min_tokens``: shorter prefixes are not worth a cache. ``stats`` counts what was reused
    (``hits``, ``reused_tokens``) and what was computed (``computed_tokens``)."""

    def __init__(self, max_bytes: int, *, block: int = 32, min_tokens: int = 64) -> None:
        self.max_bytes = max(0, int(max_bytes))
        self.block = max(1, int(block))
        self.min_tokens = max(1, int(min_tokens))
        self._entries: OrderedDict[tuple[str, tuple[int, ...]], tuple[Any, int]] = OrderedDict()
        self._usable: bool | None = None
        self.stats = {"hits": 0, "reused_tokens": 0, "computed_tokens": 0}

    def clear(self) -> None:
        self._entries.clear()
        self._usable = None

    def usable(self, model: Any) -> bool:
        """Whether caching is on and the model's cache is a plain one (checked once)."""
        if self.max_bytes <= 0:
            return False
        if self._usable is None:
            self._usable = plain_cache(model)
        return self._usable

    def length(self, prompts: Sequence[Sequence[int]]) -> int:
        """How many leading tokens of these prompts to take from the cache: their common
        prefix, leaving each row one token of its own, cut to a block; 0 when too short."""
        limit = min(_common_length(prompts), min(len(p) for p in prompts) - 1)
        length = limit - limit % self.block
        return length if length >= self.min_tokens else 0

    def expanded(self, model: Any, scope: str, ids: Sequence[int], rows: int) -> Any:
        """A fresh cache of ``ids`` (the prefix) for ``rows`` rows, ready to hand to
        ``model.generate`` as ``past_key_values`` (the stored entry itself is never modified)."""
        cache = copy.deepcopy(self._get(model, scope, tuple(ids)))
        if rows > 1:
            cache.batch_repeat_interleave(rows)
        return cache

    def _get(self, model: Any, scope: str, ids: tuple[int, ...]) -> Any:
        key = (scope, ids)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            self.stats["hits"] += 1
            self.stats["reused_tokens"] += len(ids)
            return found[0]
        base_len, base = 0, None
        for (entry_scope, entry_ids), (entry, _size) in self._entries.items():
            if (entry_scope == scope and base_len < len(entry_ids) < len(ids)
                    and ids[:len(entry_ids)] == entry_ids):
                base_len, base = len(entry_ids), entry
        if base is not None:
            self._entries.move_to_end((scope, ids[:base_len]))
            self.stats["reused_tokens"] += base_len
        cache = copy.deepcopy(base) if base is not None else \
            transformers_module().DynamicCache(config=model.config)
        self._run(model, cache, ids[base_len:])
        self.stats["computed_tokens"] += len(ids) - base_len
        size = _nbytes(cache)
        if size <= self.max_bytes:
            self._entries[key] = (cache, size)
            while sum(s for _c, s in self._entries.values()) > self.max_bytes:
                self._entries.popitem(last=False)
        return cache

    @staticmethod
    def _run(model: Any, cache: Any, ids: Sequence[int]) -> None:
        """Append ``ids`` to ``cache`` (batch size 1), computing logits for the last token only."""
        from pytest_aie.engines._hf_loop import forward

        torch = torch_module()
        device = next(model.parameters()).device
        with torch.inference_mode():
            forward(model, cache, input_ids=torch.tensor([list(ids)], dtype=torch.long, device=device))


def _nbytes(cache: Any) -> int:
    total = 0
    for layer in getattr(cache, "layers", ()):
        for name in ("keys", "values"):
            tensor = getattr(layer, name, None)
            if tensor is not None and hasattr(tensor, "nbytes"):
                total += int(tensor.nbytes)
    return total
