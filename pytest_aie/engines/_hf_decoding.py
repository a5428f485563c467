"""Decoding pieces of the ``hf`` engine: prompt encoding, left padding, end-of-sequence ids, and
the per-row logits processor (:class:`RowSampler`) and stopping criterion (:class:`RowStopper`)
that let requests with different sampling parameters (and JSON schemas, through
:mod:`._hf_grammar`) share one ``model.generate`` call.

Private to :mod:`pytest_aie.engines.hf` (whose module docstring describes how they are used);
torch is imported inside functions only, so importing this module stays light.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Sequence

from pytest_aie.engines._hf_loading import torch_module
from pytest_aie.engines._tool_calls import template_messages
from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import EngineError

if TYPE_CHECKING:
    from pytest_aie.engines._hf_grammar import RowGrammar

__all__ = ["RowSampler", "RowStopper", "encode", "eos_ids", "left_padded"]


def eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """Every end-of-sequence token id: the model's generation config's and the tokenizer's."""
    ids: set[int] = set()
    for source in (getattr(model.generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source is not None:
            ids.update(int(i) for i in source)
    return ids


def encode(tokenizer: Any, request: Request, model_ref: str) -> list[int]:
    """The prompt token ids of a request: chat messages through the chat template (generation
    prompt added, no extra special tokens; the request's tools passed to it, tool-call
    arguments as dicts), a raw prompt as the tokenizer encodes it. Never
    empty. Raises :class:`EngineError` for messages when the model has no chat template."""
    if request.messages is not None:
        if not getattr(tokenizer, "chat_template", None):
            raise EngineError(f"model {model_ref!r} has no chat template",
                              fix="give the case a prompt instead of messages, or use a chat model")
        tools = {"tools": [dict(t) for t in request.tools]} if request.tools is not None else {}
        text = tokenizer.apply_chat_template(
            template_messages(request.messages), tokenize=False, add_generation_prompt=True,
            **tools)
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    else:
        ids = list(tokenizer(request.prompt)["input_ids"])
    if not ids:  # an empty prompt: start from BOS (or EOS), as a model needs one position
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = [int(start)]
    return ids


def left_padded(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[Any, Any, int]:
    """``(input_ids, attention_mask, width)``: CPU long tensors of the prompts, left-padded
    with ``pad_id`` to the longest one's ``width``."""
    torch = torch_module()
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        if ids:
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
    return input_ids, attention, width


class RowSampler:
    """A logits processor (last in the chain) that picks each row's next token itself, then
    masks every other token so ``generate``'s greedy step takes it. Records the raw
    log-probability of each chosen token. Rows use their own CPU ``torch.Generator``.

    ``grammar``: a :class:`~pytest_aie.engines._hf_grammar.RowGrammar` for rows whose request
    has an ``output_schema``: the tokens their grammar forbids are masked before the choice
    (greedy or sampled), and the matchers advance by the chosen tokens. The recorded
    log-probabilities stay those of the model's raw distribution, before the grammar's mask."""

    def __init__(self, samplings: list[Sampling], grammar: RowGrammar | None = None) -> None:
        torch = torch_module()
        self.samplings = samplings
        self.grammar = grammar
        self.generators: list[Any] = []
        for s in samplings:
            if s.temperature > 0:
                gen = torch.Generator(device="cpu")
                gen.manual_seed(s.seed if s.seed is not None else torch.seed())
                self.generators.append(gen)
            else:
                self.generators.append(None)
        self.want_logprobs = any(s.logprobs for s in samplings)
        self.logprobs: list[list[float]] = [[] for _ in samplings]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        torch = torch_module()
        raw = scores.float()
        pick = raw
        if self.grammar is not None:
            pick = raw.clone()  # raw stays unmasked for the log-probabilities
            self.grammar.mask(pick)
        chosen = pick.argmax(dim=-1)
        sampled = [r for r, g in enumerate(self.generators) if g is not None]
        if sampled:
            rows_cpu = pick[sampled].cpu()
            for k, r in enumerate(sampled):
                s = self.samplings[r]
                probs = (rows_cpu[k] / s.temperature).softmax(-1)
                if s.top_p < 1.0:
                    sorted_p, idx = probs.sort(descending=True)
                    keep = sorted_p.cumsum(-1) - sorted_p < s.top_p  # smallest set reaching top_p
                    filtered = torch.zeros_like(probs)
                    filtered[idx[keep]] = sorted_p[keep]
                    probs = filtered
                chosen[r] = int(torch.multinomial(probs, 1, generator=self.generators[r]))
        if self.want_logprobs:
            logp = raw.log_softmax(-1).gather(-1, chosen[:, None])[:, 0].tolist()
            for r, s in enumerate(self.samplings):
                if s.logprobs:
                    self.logprobs[r].append(float(logp[r]))
        if self.grammar is not None:
            self.grammar.accept(chosen.tolist())
        out = torch.full_like(scores, -math.inf)
        out.scatter_(1, chosen[:, None], 0.0)
        return out


class RowStopper:
    """A stopping criterion that ends each row on its own terms: an end-of-sequence token, a
    stop string, or its ``max_tokens``; it keeps the row's token count, reason and text."""

    def __init__(self, tokenizer: Any, samplings: list[Sampling], prompt_width: int,
                 eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.samplings = samplings
        self.width = prompt_width
        self.eos = eos_ids
        self.tokens: list[list[int]] = [[] for _ in samplings]
        self.done: list[str | None] = [None] * len(samplings)  # "stop" | "length" | None
        self.text: list[str | None] = [None] * len(samplings)
        # A stop string ending at the newest token lies within its last len(stop) tokens
        # (every token decodes to at least one character), so only that tail is decoded.
        self.tail = [max((len(x) for x in s.stop), default=0) + 2 for s in samplings]

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        torch = torch_module()
        last = input_ids[:, -1].tolist()
        for r, token in enumerate(last):
            if self.done[r] is not None:
                continue
            s = self.samplings[r]
            if token in self.eos:
                self.done[r] = "stop"
                continue
            self.tokens[r].append(int(token))
            if s.stop:
                tail = self.tokenizer.decode(self.tokens[r][-self.tail[r]:], skip_special_tokens=True)
                if any(x in tail for x in s.stop):
                    self.done[r] = "stop"
                    self.text[r] = self._cut(r)
                    continue
            if len(self.tokens[r]) >= s.max_tokens:
                self.done[r] = "length"
        return torch.tensor([d is not None for d in self.done], dtype=torch.bool,
                            device=input_ids.device)

    def _cut(self, r: int) -> str:
        text: str = self.tokenizer.decode(self.tokens[r], skip_special_tokens=True)
        hits = [text.find(x) for x in self.samplings[r].stop if x and x in text]
        return text[:min(hits)] if hits else text

    def result(self, r: int) -> tuple[int, str, str]:
        """(completion tokens without the end-of-sequence token, finish reason, text)."""
        text = self.text[r]
        if text is None:
            text = self._cut(r)  # also catches a stop string the tail check could not see
        reason = self.done[r] or "length"
        if self.text[r] is None and text != self.tokenizer.decode(self.tokens[r], skip_special_tokens=True):
            reason = "stop"
        return len(self.tokens[r]), reason, text
