"""Scoring text with the ``hf`` engine: :meth:`ScoringMixin.score_text`, the per-token
log-probabilities that perplexity and the judges' answer scores read.

Private to :mod:`pytest_aie.engines.hf` (a mixin of :class:`~pytest_aie.engines.hf.HFEngine`, which
provides ``_load``, ``_adapter_active``, ``_device`` and ``batch_size``); torch is imported
inside the method.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_aie.engines._hf_loading import torch_module
from pytest_aie.engines.base import scoring_rows

__all__ = ["ScoringMixin"]

#: Most tokens of logits that :meth:`ScoringMixin.score_text` materialises in one forward pass.
_SCORE_TOKEN_BUDGET = 4096


class ScoringMixin:
    """``score_text`` for :class:`~pytest_aie.engines.hf.HFEngine`."""

    batch_size: int
    _device: str | None

    if TYPE_CHECKING:  # provided by HFEngine and AdapterMixin (declared here for mypy only)
        def _load(self) -> tuple[Any, Any]: ...

        def _adapter_active(self, model: Any, ref: str | None) -> Any: ...

    def score_text(self, texts: list[str], contexts: list[str] | None = None, *,
                   adapter: str | None = None) -> list[list[float]]:
        """Per-token log-probabilities (natural log) of each text under the model.

        With a context, ``text`` is scored after ``context`` (tokenized separately and joined, so
        the text's tokens are the same with or without a context). Without one, the text is
        scored after the tokenizer's BOS token when it has one; else its first token has no
        condition and is left out. Batched with right padding (causal attention never looks at
        the padding after a row), in batches capped by tokens. Empty texts give ``[]``.
        ``adapter``: score under that LoRA adapter (a ``Request.adapter`` reference); by default
        under the base model, with any loaded adapters switched off.
        """
        if contexts is not None and len(contexts) != len(texts):
            raise ValueError(f"score_text got {len(texts)} texts but {len(contexts)} contexts")
        model, tokenizer = self._load()
        torch = torch_module()
        rows = scoring_rows(tokenizer, texts, contexts)
        results: list[list[float]] = [[] for _ in texts]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
        pad_id = int(tokenizer.pad_token_id)
        device = self._device or "cpu"
        batch: list[int] = []

        def flush() -> None:
            if not batch:
                return
            width = max(len(rows[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for r, i in enumerate(batch):
                seq = rows[i][0]
                ids[r, :len(seq)] = torch.tensor(seq, dtype=torch.long)
                mask[r, :len(seq)] = 1
            with torch.inference_mode(), self._adapter_active(model, adapter):
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
            for r, i in enumerate(batch):
                seq, first = rows[i]
                if first >= len(seq):
                    continue
                pred = logits[r, first - 1:len(seq) - 1].float().log_softmax(-1)
                target = ids[r, first:len(seq)].to(pred.device)
                results[i] = pred.gather(-1, target[:, None])[:, 0].tolist()
            batch.clear()

        for i in order:
            width = len(rows[i][0])
            if batch and ((len(batch) + 1) * width > _SCORE_TOKEN_BUDGET or len(batch) >= self.batch_size):
                flush()
            batch.append(i)
        flush()
        return results
