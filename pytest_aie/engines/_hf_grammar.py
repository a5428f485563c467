"""JSON-schema constrained decoding for the ``hf`` engine, with ``xgrammar`` (the grammar
library vLLM uses for its structured outputs).

* :class:`Grammars` (one per engine and loaded tokenizer): the tokenizer's vocabulary is
  compiled once into an ``xgrammar.TokenizerInfo`` (with the engine's end-of-sequence ids as the
  grammar's stop tokens), and each distinct schema is compiled once into a grammar, cached under
  its canonical JSON text.
* :class:`RowGrammar` (one per micro-batch): a ``GrammarMatcher`` for each row whose request has
  an ``output_schema`` and ``None`` for the others, so one ``model.generate`` call can mix
  requests with different schemas and without one. Before each token choice, :meth:`RowGrammar.mask`
  sets the logits of every token that the row's grammar does not allow next to ``-inf``
  (unconstrained rows are left untouched); after it, :meth:`RowGrammar.accept` advances the
  matchers by the chosen tokens. Once a row's JSON is complete, only the end-of-sequence tokens
  are allowed, so the row ends with ``finish_reason="stop"``.

The JSON is written without free whitespace (``any_whitespace=False``): one space after ``,`` and
``:`` and none elsewhere, the form ``json.dumps`` writes. vLLM lets the model put any whitespace
between tokens; a small model given that freedom can spend its whole token budget on newlines.
Properties come in the schema's order, and ``strict_mode`` (xgrammar's default, also vLLM's)
allows no property and no array item that the schema does not name, even where the schema
itself would (output that is stricter than the schema still validates against it).

What xgrammar 0.2 enforces: types, ``enum``/``const``, ``required``, ``properties``,
``additionalProperties``, ``patternProperties``, ``propertyNames``, ``minProperties``/
``maxProperties``, ``items``/``prefixItems``, ``minItems``/``maxItems``, ``minLength``/
``maxLength`` (counted in characters; a string with either allows no escape sequence at all,
so it can hold no ``"``, backslash or newline), ``pattern``, common ``format`` values
(``date``, ``date-time``, ``email``, ``uri`` ...), ``minimum``/``maximum`` and the exclusive
bounds, ``multipleOf``, ``anyOf``, ``$ref``/``$defs``. What it does NOT enforce (the output may
violate them): ``uniqueItems``, ``contains``, ``not``, ``if``/``then``/``else``,
``dependentRequired``/``dependentSchemas``, the exclusivity of ``oneOf`` (read as ``anyOf``), and
keywords that ``allOf`` adds to a sibling schema. Callers that need those should validate the
output (``jsonschema``) as well.

A row that reaches its ``max_tokens`` inside the JSON stops there: its text is truncated JSON
with ``finish_reason="length"``; nothing closes it for the model. When the schema bounds every
string, array and integer (``maxLength``, ``maxItems``, ``minimum``/``maximum``) and has no free
number, the JSON has a greatest length, and a ``max_tokens`` of at least that many UTF-8 bytes
always ends in complete JSON (each token writes at least one byte). A stop string of the
request still ends the row where it appears, inside the JSON too.

``xgrammar`` is imported on first use only; without it, a request with a schema is an
:class:`~pytest_aie.errors.EngineError` naming ``pip install xgrammar``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import threading
from types import ModuleType
from typing import Any, Sequence

from pytest_aie.engines._hf_loading import torch_module
from pytest_aie.errors import EngineError

__all__ = ["FIX_XGRAMMAR", "Grammars", "RowGrammar", "apply_bitmask_torch", "have_xgrammar",
           "xgrammar_module"]

FIX_XGRAMMAR = "pip install xgrammar (it comes with pip install 'pytest-aie[hf]')"
_FIX_SCHEMA = ("give output_schema a valid JSON schema that xgrammar supports "
               "(see pytest_aie.engines._hf_grammar)")
#: xgrammar's C++ errors start with a timestamp and a source location: ``[08:52:30] x.cc:4944: ``.
_CPP_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")


def have_xgrammar() -> bool:
    """Whether ``xgrammar`` is installed (checked without importing it: it pulls in torch)."""
    return importlib.util.find_spec("xgrammar") is not None


def xgrammar_module() -> ModuleType:
    """``xgrammar``, or an :class:`EngineError` naming ``pip install xgrammar``."""
    try:
        import xgrammar
    except ImportError as exc:  # not installed, or a broken binary extension
        raise EngineError(
            "the hf engine needs the Python package 'xgrammar' to constrain output to a JSON "
            f"schema, and it cannot be imported ({exc})", fix=FIX_XGRAMMAR) from None
    return xgrammar


def schema_key(schema: dict[str, Any]) -> str:
    """The canonical JSON text of a schema: the compiled-grammar cache key."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _short(schema_text: str, limit: int = 120) -> str:
    return schema_text if len(schema_text) <= limit else schema_text[:limit - 3] + "..."


class Grammars:
    """The compiled grammars of one tokenizer: its vocabulary compiled once, each distinct
    schema once (thread-safe). ``vocab_size``: the width of the model's logits (may exceed
    the tokenizer's length); ``stop_ids``: the token ids that end a row."""

    def __init__(self, tokenizer: Any, vocab_size: int, stop_ids: Sequence[int],
                 threads: int | None = None) -> None:
        xgr = xgrammar_module()
        self.vocab_size = int(vocab_size)
        info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=self.vocab_size,
                                                  stop_token_ids=sorted(int(i) for i in stop_ids))
        self._compiler = xgr.GrammarCompiler(info, max_threads=max(1, threads or os.cpu_count() or 1))
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def compiled(self, schema: dict[str, Any]) -> Any:
        """The compiled grammar of ``schema`` (compiled on first use), or an
        :class:`EngineError` naming the schema when it is invalid or xgrammar refuses it."""
        key = schema_key(schema)
        with self._lock:
            grammar = self._compiled.get(key)
            if grammar is None:
                grammar = self._compile(schema, key)
                self._compiled[key] = grammar
        return grammar

    def _compile(self, schema: dict[str, Any], key: str) -> Any:
        import jsonschema

        if not isinstance(schema, dict):
            raise EngineError(f"output_schema must be a JSON object (a dict), got "
                              f"{type(schema).__name__}", fix=_FIX_SCHEMA)
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise EngineError(f"output_schema {_short(key)} is not a valid JSON schema: "
                              f"{exc.message}", fix=_FIX_SCHEMA) from None
        try:
            return self._compiler.compile_json_schema(key, any_whitespace=False, strict_mode=True)
        except (RuntimeError, ValueError) as exc:
            detail = _CPP_PREFIX.sub("", str(exc).strip().splitlines()[0] if str(exc).strip() else "")
            raise EngineError(f"xgrammar cannot compile output_schema {_short(key)}: "
                              f"{detail or type(exc).__name__}", fix=_FIX_SCHEMA) from None


class RowGrammar:
    """The grammar state of one micro-batch: a matcher per constrained row, ``None`` for rows
    without a schema. ``finished``: the stopper's per-row finish reasons (a row that already
    finished gets padding from ``generate``, so its matcher is left alone)."""

    def __init__(self, grammars: Grammars, schemas: Sequence[dict[str, Any] | None],
                 finished: Sequence[str | None] | None = None) -> None:
        self._xgr = xgrammar_module()
        self.vocab_size = grammars.vocab_size
        self.matchers: list[Any] = [
            None if s is None else self._xgr.GrammarMatcher(grammars.compiled(s)) for s in schemas
        ]
        self.finished = finished
        self._bitmask = self._xgr.allocate_token_bitmask(len(schemas), self.vocab_size)

    def _active(self) -> list[int]:
        return [r for r, m in enumerate(self.matchers)
                if m is not None and not m.is_terminated()
                and (self.finished is None or self.finished[r] is None)]

    def mask(self, logits: Any) -> None:
        """Set, in place, the float32 ``logits`` of every token a constrained row may not take
        next to ``-inf``; other rows are untouched."""
        rows = self._active()
        if not rows:
            return
        for r in rows:
            self.matchers[r].fill_next_token_bitmask(self._bitmask, r)
        if logits.device.type == "cpu":
            self._xgr.apply_token_bitmask_inplace(logits, self._bitmask, indices=rows)
        else:  # unpacked in plain torch on the logits' device: no kernel to compile (triton)
            apply_bitmask_torch(logits, self._bitmask, rows)

    def accept(self, chosen: Sequence[int]) -> None:
        """Advance each active constrained row's matcher by its chosen token."""
        for r in self._active():
            token = int(chosen[r])
            if not self.matchers[r].accept_token(token):
                raise RuntimeError(f"the JSON grammar refused token {token} of row {r}")


def apply_bitmask_torch(logits: Any, bitmask: Any, rows: Sequence[int]) -> None:
    """xgrammar's ``apply_token_bitmask_inplace`` in plain torch, on the logits' device: bit
    ``j % 32`` of ``bitmask[r, j // 32]`` set means token ``j`` is allowed in row ``r``; every
    other token of the listed ``rows`` gets ``-inf``."""
    torch = torch_module()
    words = bitmask[list(rows)].to(logits.device, non_blocking=True)
    shifts = torch.arange(32, device=logits.device, dtype=words.dtype)
    allowed = ((words[:, :, None] >> shifts) & 1).flatten(1)[:, :logits.shape[-1]].bool()
    index = torch.tensor(list(rows), device=logits.device)
    logits[index] = logits[index].masked_fill(~allowed, float("-inf"))
