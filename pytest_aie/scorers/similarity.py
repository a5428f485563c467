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
* **No threshold.** Without a per-case ``threshold`` a measured case has ``passed=True`` and
  its reason says "no threshold": the value is recorded for reports and suite-level gates
  (``min_score``) but no single case can fail.
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

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

from pytest_aie.errors import UsageError, require
from pytest_aie.scorers.base import Score, Scorer

if TYPE_CHECKING:
    from pytest_aie.dataset import Case

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

AGGREGATES = ("max", "best", "mean")
ROUGE_VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


# --------------------------------------------------------------------------- references


@dataclass(frozen=True)
class _Refs:
    """The references of one case, or why there are none usable."""

    texts: tuple[str, ...] = ()
    problem: str | None = None


def extract_references(case: "Case", field: str | None = None) -> _Refs:
    """The reference texts of ``case``.

    With ``field`` given, that field is read; otherwise ``references`` when the case has it,
    else ``expected``. A string is one reference; a list or tuple is several. Non-string or
    empty (blank) references make the case unmeasurable, with the problem named.
    """
    if field is None:
        field = "references" if case.get("references") is not None else "expected"
    raw = case.get(field)
    if raw is None:
        return _Refs(problem=f"case has no reference (field {field!r} is missing)")
    items = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    if not items:
        return _Refs(problem=f"case's reference list {field!r} is empty")
    for i, item in enumerate(items):
        where = f"reference {field!r}" + (f"[{i}]" if isinstance(raw, (list, tuple)) else "")
        if not isinstance(item, str):
            return _Refs(problem=f"{where} is a {type(item).__name__}, not a string")
        if not item.strip():
            return _Refs(problem=f"{where} is empty")
    return _Refs(texts=tuple(items))


def _output_problem(output: Any) -> str | None:
    if not isinstance(output, str):
        return f"output is a {type(output).__name__}, not a string"
    if not output.strip():
        return "output is empty"
    return None


# --------------------------------------------------------------------------- base class


class ReferenceScorer(Scorer):
    """Base for scorers that compare an output with the case's reference(s).

    Subclasses set :attr:`name` and :attr:`higher_is_better` and implement
    :meth:`_pair_values` (a batch of ``(output, reference)`` pairs in, one value and details
    dict per pair out). This class handles references, bad input, aggregation over several
    references, thresholds and reasons.
    """

    marker: ClassVar[str] = "similarity"
    #: Metric name inside the marker, e.g. ``"bleu"``; the result's metric is ``similarity.<name>``.
    name: str = ""
    higher_is_better: ClassVar[bool] = True
    #: Largest sensible threshold (values are on a 0-1 scale); None: unbounded.
    max_threshold: ClassVar[float | None] = 1.0

    def __init__(self, *, threshold: float | None = None, min_score: float | None = None,
                 references: str | None = None, aggregate: str = "max") -> None:
        for label, value in (("threshold", threshold), ("min_score", min_score)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise UsageError(f"similarity {self.name!r}: {label}={value!r} is not a number",
                                 fix=f"give {label} as a number such as 0.5")
            if self.max_threshold is not None and not 0.0 <= value <= self.max_threshold:
                raise UsageError(
                    f"similarity {self.name!r}: {label}={value!r} is outside "
                    f"[0, {self.max_threshold:g}] (values are on a 0-1 scale)",
                    fix=f"give {label} on the 0-1 scale, e.g. 0.3 rather than 30")
        if aggregate not in AGGREGATES:
            raise UsageError(f"similarity {self.name!r}: unknown aggregate={aggregate!r}",
                             fix=f"use one of {', '.join(AGGREGATES)}")
        if references is not None and not isinstance(references, str):
            raise UsageError(f"similarity {self.name!r}: references={references!r} must be "
                             "a field name", fix="pass the name of the case field, e.g. "
                             "references='expected'")
        self.threshold = None if threshold is None else float(threshold)
        self.min_score = None if min_score is None else float(min_score)
        self.references = references
        self.aggregate = "max" if aggregate == "best" else aggregate

    # ----------------------------------------------------------------- to implement

    def _pair_values(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, dict[str, Any]]]:
        """One ``(value, details)`` per ``(output, reference)`` pair."""
        raise NotImplementedError

    # ----------------------------------------------------------------- the interface

    @property
    def metric(self) -> str:
        return f"similarity.{self.name}"

    def score(self, output: str, case: "Case") -> Score:
        return self.score_batch([output], [case])[0]

    def score_batch(self, outputs: Sequence[str], cases: Sequence["Case"]) -> list[Score]:
        """Score a suite: all valid pairs are handed to :meth:`_pair_values` in one call."""
        if len(outputs) != len(cases):
            raise ValueError(f"{len(outputs)} outputs for {len(cases)} cases")
        results: list[Score | None] = [None] * len(cases)
        pairs: list[tuple[str, str]] = []
        spans: list[tuple[int, int, int]] = []  # (case index, first pair, pair count)
        for i, (output, case) in enumerate(zip(outputs, cases)):
            problem = _output_problem(output)
            refs = extract_references(case, self.references)
            problem = problem or refs.problem
            if problem:
                results[i] = Score.unmeasured(self.metric, problem)
                continue
            spans.append((i, len(pairs), len(refs.texts)))
            pairs.extend((output, ref) for ref in refs.texts)
        if pairs:
            try:
                values = self._pair_values(pairs)
            except Exception as exc:  # noqa: BLE001 - a failing metric must not lose the suite
                why = f"{type(exc).__name__}: {exc}"
                for i, _, _ in spans:
                    results[i] = Score.unmeasured(self.metric, f"could not compute: {why}")
                return [r for r in results if r is not None]
            for i, start, count in spans:
                results[i] = self._combine(values[start:start + count])
        return [r for r in results if r is not None]

    def _combine(self, per_ref: Sequence[tuple[float, dict[str, Any]]]) -> Score:
        vals = [v for v, _ in per_ref]
        bad = [v for v in vals if not math.isfinite(v)]
        if bad:
            return Score.unmeasured(self.metric, f"metric gave a non-finite value {bad[0]}")
        if self.aggregate == "mean":
            value, best = statistics.fmean(vals), None
        else:
            pick = max if self.higher_is_better else min
            best = pick(range(len(vals)), key=vals.__getitem__)
            value = vals[best]
        details: dict[str, Any] = {"higher_is_better": self.higher_is_better,
                                   "threshold": self.threshold}
        if len(per_ref) > 1:
            details["aggregate"] = "best" if best is not None else "mean"
            details["per_reference"] = vals
            if best is not None:
                details["best_reference"] = best
        chosen = per_ref[best if best is not None else 0][1]
        if len(per_ref) == 1 or best is not None:
            details.update(chosen)
        return Score(metric=self.metric, value=value, passed=self._passes(value),
                     reason=self._reason(value, len(vals)), details=details)

    def _passes(self, value: float) -> bool:
        if self.threshold is None:
            return True
        return value >= self.threshold if self.higher_is_better else value <= self.threshold

    def _reason(self, value: float, n_refs: int) -> str:
        of = "" if n_refs == 1 else f" ({'best' if self.aggregate == 'max' else 'mean'} of " \
                                    f"{n_refs} references)"
        if self.threshold is None:
            return f"{self.name} {value:.4f}{of}; no threshold"
        op = (">=" if self._passes(value) else "<") if self.higher_is_better else \
            ("<=" if self._passes(value) else ">")
        return f"{self.name} {value:.4f}{of} {op} threshold {self.threshold:g}"

    def suite_check(self, scores: Sequence[Score]) -> tuple[bool | None, str]:
        """The suite-level gate: is the mean measured value at least ``min_score`` (at most,
        for lower-is-better metrics)? ``(None, reason)`` without ``min_score`` or values."""
        vals = [s.value for s in scores if s.measured and s.value is not None]
        if self.min_score is None:
            return None, "no min_score"
        if not vals:
            return None, "no measured case"
        mean = statistics.fmean(vals)
        ok = mean >= self.min_score if self.higher_is_better else mean <= self.min_score
        op = (">=" if ok else "<") if self.higher_is_better else ("<=" if ok else ">")
        return ok, f"mean {self.name} {mean:.4f} over {len(vals)} cases {op} {self.min_score:g}"


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
        from sacrebleu.metrics import BLEU

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
        from sacrebleu.metrics import CHRF

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
        from sacrebleu.metrics import TER

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
