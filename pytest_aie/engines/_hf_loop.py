"""The ``hf`` engine's own decoding loop, in which finished rows leave the batch.

``model.generate`` keeps every row of a batch to the end: a row that finished at its 20th token
still runs through the model, as padding, until the longest row reaches its end, and on a CPU a
decoding step costs roughly in proportion to the rows it carries. :func:`decode` is the same
greedy-over-processed-scores loop as ``generate`` (the per-row choice is made by the engine's
:class:`~pytest_aie.engines._hf_decoding.RowSampler`, which ``generate`` only ever asks for
an argmax of), with the same order of steps: scores, token choice, padding for finished rows,
stopping criteria. The difference: once a row is finished, its entries leave the key/value cache
(``DynamicCache.batch_select_indices``) and the attention mask, so later steps carry only the
rows still running. The per-row sampler and stopper still see the whole batch (finished rows get
zero scores and padding), as they do under ``generate``.

Used for models whose cache is a plain full-attention ``DynamicCache``
(:func:`~pytest_aie.engines._hf_prefix.plain_cache`); others keep ``model.generate``. Private to
:mod:`pytest_aie.engines.hf`; torch is imported inside functions.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from pytest_aie.engines._hf_loading import torch_module, transformers_module

__all__ = ["decode", "forward"]


@functools.cache
def _forward_params(cls: Any) -> frozenset[str]:
    """The parameter names of a model class's ``forward`` (read once per class, not per step)."""
    return frozenset(inspect.signature(cls.forward).parameters)


def forward(model: Any, cache: Any, **inputs: Any) -> Any:
    """One forward pass that appends to ``cache`` and computes the last position's logits only.
    The cache goes in as ``cache`` (transformers 5) or ``past_key_values`` (older releases, and
    model classes that still name it so)."""
    params = _forward_params(model.__class__)
    inputs["cache" if "cache" in params else "past_key_values"] = cache
    if "logits_to_keep" in params:
        inputs["logits_to_keep"] = 1
    return model(**inputs, use_cache=True)


def decode(model: Any, input_ids: Any, attention_mask: Any, *, past_key_values: Any = None,
           logits_processor: Any, stopping_criteria: Any, max_new_tokens: int,
           pad_token_id: int) -> Any:
    """Generate up to ``max_new_tokens`` tokens for each row of ``input_ids`` (left-padded, or
    laid out by :func:`~pytest_aie.engines._hf_prefix.prefix_layout` with ``past_key_values``
    holding the shared prefix) and return the sequences, prompt included, as ``generate`` does.
    Run it under ``torch.inference_mode()``."""
    torch = torch_module()
    rows = int(input_ids.shape[0])
    device = input_ids.device
    cache = past_key_values if past_key_values is not None else \
        transformers_module().DynamicCache(config=model.config)
    positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    start = cache.get_seq_length()
    out = forward(model, cache, input_ids=input_ids[:, start:], attention_mask=attention_mask,
                  position_ids=positions[:, start:])
    next_position = positions[:, -1] + 1
    sequences = input_ids
    mask = attention_mask  # the running rows' mask
    active = torch.arange(rows, device=device)  # the running rows, as indices into the batch
    unfinished = torch.ones(rows, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        logits = out.logits[:, -1].float()
        if len(active) < rows:
            full = torch.zeros((rows, logits.shape[-1]), dtype=logits.dtype, device=device)
            full[active] = logits
            logits = full
        scores = logits_processor(sequences, logits)
        tokens = torch.where(unfinished, scores.argmax(-1), torch.tensor(pad_token_id, device=device))
        sequences = torch.cat([sequences, tokens[:, None]], dim=-1)
        unfinished = unfinished & ~stopping_criteria(sequences, scores)
        if not bool(unfinished.any()):
            break
        still = unfinished[active]  # which of the running rows run on
        if not bool(still.all()):
            keep = still.nonzero().flatten()
            cache.batch_select_indices(keep)
            mask = mask[keep]
            active = active[keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
        out = forward(model, cache, input_ids=tokens[active][:, None], attention_mask=mask,
                      position_ids=next_position[active][:, None])
        next_position = next_position + 1
    return sequences
