"""Reference-based similarity scorers: ROUGE, BLEU, chrF, TER (lexical), and the factory
behind ``@pytest.mark.similarity``.

Every scorer here compares an output with one or more *references* taken from the case
(``case.expected`` by default, which may be a string or a list of strings; a case may also
carry a ``references`` list) and returns a :class:`~pytest_aie.scorers.base.Score` per case.

Conventions, shared with :mod:`pytest_aie.scorers.embedding` and
:mod:`pytest_aie.scorers.perplexity`:

* **Scale.** Every value is on a 0-1 scale. sacrebleu's BLEU, chrF and TER (0-100) are
  divided by 100; sacrebleu's own number is kept in ``details["sacrebleu"]``. Thresholds are
  therefore given on the 0-1 scale too (``threshold=0.3`` for BLEU 30); a threshold above 1
  for BLEU, chrF, ROUGE, cosine or BERTScore is a usage error. TER can exceed 1 (more edits
  than reference words), so its thresholds may too.
* **Direction.** Most metrics are higher-is-better: a case passes when ``value >= threshold``.
  TER, perplexity and bits-per-byte are lower-is-better: a case passes when
  ``value <= threshold`` (the threshold is a ceiling). ``Score.details["higher_is_better"]``
  says which.
* **No threshold.** Without a per-case ``threshold`` a measured case is *scored*
  (``passed=None``, ``status == "scored"``) and its reason says "no threshold": the value is
  recorded for reports and suite-level gates (``min_score``) but no single case passes or
  fails on its own.
* **Several references.** ``aggregate="max"`` (alias ``"best"``, the default) keeps the best
  reference's value (the highest, or the lowest for lower-is-better metrics);
  ``aggregate="mean"`` averages over references. Per-reference values are kept in
  ``details["per_reference"]``.
* **Bad input** (empty or non-string output or reference, no reference at all) gives an
  unmeasured score naming the problem; nothing is raised and the other cases are scored.
* **Suite gate.** ``min_score`` is carried for the plugin: :meth:`ReferenceScorer.suite_check`
  compares the mean of the measured values with it (direction-aware).
"""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pytest_aie.errors import UsageError, require
from pytest_aie.scorers.base import Sample, Scorer
from pytest_aie.scorers.reference import (
    AGGREGATES,
    ReferenceScorer,
    _output_problem,
    extract_references,
)

if TYPE_CHECKING:
    pass

__all__ = [
    "AGGREGATES",
    "ROUGE_VARIANTS",
    "SIMILARITY_METRICS",
    "BleuScorer",
    "ChrfScorer",
    "ReferenceScorer",
    "RougeScorer",
    "TerScorer",
    "build_similarity_scorer",
    "corpus_scores",
    "extract_references",
]

ROUGE_VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


# --------------------------------------------------------------------------- ROUGE


class RougeScorer(ReferenceScorer):
    """ROUGE-1/2/L/Lsum F-measure (rouge-score). ``stem`` applies the Porter stemmer.

    ``rougeLsum`` splits texts into sentences on newlines (rouge-score's convention).
    ``details`` holds precision, recall and fmeasure of the chosen reference.
    """

    def __init__(self, variant: str = "rougeL", *, stem: bool = False, **common: Any) -> None:
        if variant not in ROUGE_VARIANTS:
            raise UsageError(f"unknown ROUGE variant {variant!r}",
                             fix=f"use one of {', '.join(ROUGE_VARIANTS)}")
        self.name = variant
        super().__init__(**common)
        require("rouge_score", "similarity", "the ROUGE metric")
        from rouge_score import rouge_scorer

        self.variant = variant
        self.stem = bool(stem)
        self._scorer = rouge_scorer.RougeScorer([variant], use_stemmer=self.stem)

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for output, ref in pairs:
            s = self._scorer.score(ref, output)[self.variant]  # (target, prediction)
            out.append((float(s.fmeasure), {"precision": float(s.precision),
                                             "recall": float(s.recall),
                                             "fmeasure": float(s.fmeasure)}))
        return out


# --------------------------------------------------------------------------- sacrebleu


class _SacreScorer(ReferenceScorer):
    """Sentence-level sacrebleu metric, one reference at a time, divided by 100.

    The metric object is built once (as ``sacrebleu.sentence_bleu`` etc. would build it on
    every call), so values equal those functions' results.
    """

    def __init__(self, **common: Any) -> None:
        super().__init__(**common)
        require("sacrebleu", "similarity", f"the {self.name} metric")
        self._metric: Any = None

    def _make(self) -> Any:
        raise NotImplementedError

    def suite_aggregate(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        """Corpus-level BLEU, chrF and TER of the suite with their sentence means
        (:func:`corpus_scores`); cases without usable references are left out."""
        outputs, refs = [], []
        for s in samples:
            found = extract_references(s.case, self.references)
            if found.problem is None:
                outputs.append(s.text)
                refs.append(list(found.texts))
        result = corpus_scores(outputs, refs)
        return {k: v for k, v in result.items() if k != "signatures"}

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        if self._metric is None:
            self._metric = self._make()
        out: list[tuple[float, dict[str, Any]]] = []
        for output, ref in pairs:
            res = self._metric.sentence_score(output, [ref])
            value = res.score / 100.0
            if self.max_threshold is not None:  # BLEU of identical texts is 1 + 4e-16
                value = min(value, 1.0)
            out.append((value, {"sacrebleu": res.score}))
        sig = str(self._metric.get_signature())  # known once a score was computed
        for _, details in out:
            details["signature"] = sig
        return out


class BleuScorer(_SacreScorer):
    """Sentence BLEU as ``sacrebleu.sentence_bleu`` computes it (effective order, exp
    smoothing by default), 0-1 scale."""

    name = "bleu"

    def __init__(self, *, tokenize: str | None = None, lowercase: bool = False,
                 smooth_method: str = "exp", **common: Any) -> None:
        super().__init__(**common)
        self.tokenize, self.lowercase, self.smooth_method = tokenize, bool(lowercase), smooth_method
        self._metric = self._make()  # bad options fail at build time

    def _make(self) -> Any:
        from sacrebleu.metrics.bleu import BLEU

        try:
            return BLEU(tokenize=self.tokenize, lowercase=self.lowercase,
                        smooth_method=self.smooth_method, effective_order=True)
        except Exception as exc:  # noqa: BLE001 - sacrebleu raises assorted errors
            raise UsageError(f"similarity 'bleu': bad option ({exc})",
                             fix="see sacrebleu's BLEU options (tokenize, smooth_method)") from None


class ChrfScorer(_SacreScorer):
    """Sentence chrF (``sacrebleu.sentence_chrf``), 0-1 scale; ``word_order=2`` is chrF++."""

    name = "chrf"

    def __init__(self, *, word_order: int = 0, lowercase: bool = False, **common: Any) -> None:
        if word_order == 2:
            self.name = "chrf++"
        super().__init__(**common)
        self.word_order, self.lowercase = int(word_order), bool(lowercase)
        self._metric = self._make()

    def _make(self) -> Any:
        from sacrebleu.metrics.chrf import CHRF

        return CHRF(word_order=self.word_order, lowercase=self.lowercase)


class TerScorer(_SacreScorer):
    """Sentence TER (``sacrebleu.sentence_ter``) as a fraction: edits per reference word.

    Lower is better: a case passes when ``value <= threshold``. Values may exceed 1.
    """

    name = "ter"
    higher_is_better = False
    max_threshold = None

    def __init__(self, *, case_sensitive: bool = False, **common: Any) -> None:
        super().__init__(**common)
        self.case_sensitive = bool(case_sensitive)
        self._metric = self._make()

    def _make(self) -> Any:
        from sacrebleu.metrics.ter import TER

        return TER(case_sensitive=self.case_sensitive)


def corpus_scores(outputs: Sequence[str], references: Sequence[str | Sequence[str]], *,
                  tokenize: str | None = None, lowercase: bool = False) -> dict[str, Any]:
    """Corpus-level and mean sentence-level BLEU, chrF and TER of a suite, on the 0-1 scale.

    ``references[i]`` is the reference of ``outputs[i]``, or a list of references (any
    number per case). Corpus BLEU pools n-gram counts and lengths over the whole suite, so it
    is *not* the mean of sentence BLEU: both are returned, as ``bleu.corpus`` and
    ``bleu.sentence_mean`` (likewise ``chrf.*`` and ``ter.*``; TER is lower-is-better).
    Pairs with an empty or non-string output or reference are left out and counted in
    ``skipped``; ``n`` is the number of pairs used. With no usable pair the values are None.
    """
    sacrebleu = require("sacrebleu", "similarity", "corpus BLEU/chrF/TER")
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs for {len(references)} references")
    hyps: list[str] = []
    refsets: list[list[str]] = []
    for out, refs in zip(outputs, references):
        ref_list = [refs] if isinstance(refs, str) else list(refs)
        if _output_problem(out) is None and ref_list and all(
                isinstance(r, str) and r.strip() for r in ref_list):
            hyps.append(out)
            refsets.append(ref_list)
    result: dict[str, Any] = {"n": len(hyps), "skipped": len(outputs) - len(hyps)}
    names = ("bleu.corpus", "bleu.sentence_mean", "chrf.corpus", "chrf.sentence_mean",
             "ter.corpus", "ter.sentence_mean")
    if not hyps:
        result.update(dict.fromkeys(names))
        return result
    width = max(len(r) for r in refsets)
    # sacrebleu takes reference *streams*; None pads cases with fewer references.
    streams = [[r[k] if k < len(r) else None for r in refsets] for k in range(width)]
    bleu_opts: dict[str, Any] = {"lowercase": lowercase}
    if tokenize is not None:
        bleu_opts["tokenize"] = tokenize
    bleu = sacrebleu.metrics.BLEU(**bleu_opts)
    sent_bleu = sacrebleu.metrics.BLEU(effective_order=True, **bleu_opts)
    chrf = sacrebleu.metrics.CHRF(lowercase=lowercase)
    ter = sacrebleu.metrics.TER(case_sensitive=not lowercase)
    result["bleu.corpus"] = bleu.corpus_score(hyps, streams).score / 100.0
    result["chrf.corpus"] = chrf.corpus_score(hyps, streams).score / 100.0
    result["ter.corpus"] = ter.corpus_score(hyps, streams).score / 100.0
    result["bleu.sentence_mean"] = statistics.fmean(
        sent_bleu.sentence_score(h, r).score for h, r in zip(hyps, refsets)) / 100.0
    result["chrf.sentence_mean"] = statistics.fmean(
        chrf.sentence_score(h, r).score for h, r in zip(hyps, refsets)) / 100.0
    result["ter.sentence_mean"] = statistics.fmean(
        ter.sentence_score(h, r).score for h, r in zip(hyps, refsets)) / 100.0
    result["signatures"] = {"bleu": str(bleu.get_signature()),
                            "chrf": str(chrf.get_signature()), "ter": str(ter.get_signature())}
    return result


# --------------------------------------------------------------------------- factory

_COMMON = ("threshold", "min_score", "references", "aggregate")

#: metric name -> (allowed keywords beyond the common ones, builder). Builders import lazily.
SIMILARITY_METRICS: dict[str, tuple[tuple[str, ...], Callable[..., Scorer]]] = {}


def _register(names: Sequence[str], keywords: Sequence[str],
              builder: Callable[..., Scorer]) -> None:
    for n in names:
        SIMILARITY_METRICS[n] = (tuple(keywords), builder)


def _embedding(metric: str, **kw: Any) -> Scorer:
    from pytest_aie.scorers.embedding import EmbeddingScorer

    return EmbeddingScorer(**kw)


def _bertscore(metric: str, **kw: Any) -> Scorer:
    from pytest_aie.scorers.embedding import BERTScoreScorer

    if metric != "bertscore":
        kw.setdefault("component", metric.split("_", 1)[1])
    return BERTScoreScorer(**kw)


def _perplexity(metric: str, **kw: Any) -> Scorer:
    from pytest_aie.scorers.perplexity import PerplexityScorer

    if kw.get("engine") is None:
        raise UsageError(f"similarity {metric!r} needs an engine to score the reference",
                         fix="pass engine=<an Engine with Capability.SCORE>")
    return PerplexityScorer(kind=metric, **kw)


def _rouge(metric: str, **kw: Any) -> Scorer:
    variant = kw.pop("variant", None) or (metric if metric != "rouge" else "rougeL")
    return RougeScorer(variant, **kw)


_register(["cosine", "embedding"], ["model", "device", "batch_size"], _embedding)
_register(["rouge", *ROUGE_VARIANTS], ["variant", "stem"], _rouge)
_register(["bleu"], ["tokenize", "lowercase", "smooth_method"], lambda m, **kw: BleuScorer(**kw))
_register(["chrf"], ["word_order", "lowercase"], lambda m, **kw: ChrfScorer(**kw))
_register(["ter"], ["case_sensitive"], lambda m, **kw: TerScorer(**kw))
_register(["bertscore", "bertscore_precision", "bertscore_recall", "bertscore_f1"],
          ["model", "device", "batch_size", "layer", "component"], _bertscore)
_register(["perplexity", "bits_per_byte"], ["engine", "context"], _perplexity)


def build_similarity_scorer(metric: str, **kwargs: Any) -> Scorer:
    """Build the scorer for ``@pytest.mark.similarity(metric, **kwargs)``.

    Common keywords: ``threshold`` (per case), ``min_score`` (suite mean, for the plugin's
    gate), ``references`` (the case field holding the reference(s)), ``aggregate``
    (``"max"``/``"best"`` or ``"mean"`` over several references). Metric keywords:
    ``cosine``: model, device, batch_size; ``rouge``/``rouge1``/``rouge2``/``rougeL``/
    ``rougeLsum``: variant, stem; ``bleu``: tokenize, lowercase, smooth_method; ``chrf``:
    word_order, lowercase; ``ter``: case_sensitive; ``bertscore`` (and ``bertscore_f1`` etc.):
    model, device, batch_size, layer, component; ``perplexity``/``bits_per_byte``: engine,
    context.

    Raises :class:`~pytest_aie.errors.UsageError` for an unknown metric or keyword (naming
    the valid ones) and :class:`~pytest_aie.errors.MissingDependency` /
    :class:`~pytest_aie.errors.EngineError` when a library or model is missing.
    """
    if metric not in SIMILARITY_METRICS:
        raise UsageError(f"unknown similarity metric {metric!r}",
                         fix=f"use one of {', '.join(SIMILARITY_METRICS)}")
    extra, builder = SIMILARITY_METRICS[metric]
    allowed = (*_COMMON, *extra)
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise UsageError(f"similarity {metric!r} does not take keyword(s) {', '.join(unknown)}",
                         fix=f"use only {', '.join(allowed)}")
    return builder(metric, **kwargs)
