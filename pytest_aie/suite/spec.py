"""Suites: what the ``dataset`` marker and an eval marker say about one test function.

A suite is one test function parametrized over a dataset's cases. Its :class:`SuiteSpec` holds
the cases, how each case becomes a request (template, system prompt, sampling, model) and the
scorer built from the eval marker. Marker arguments are validated here: an unknown argument
is a :class:`~pytest_aie.errors.UsageError` naming the valid ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from pytest_aie.dataset import Case, build_request, load_cases, template_fields
from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import UsageError
from pytest_aie.scorers.base import Scorer
from pytest_aie.suite.markers import EVAL_MARKERS, accepted_kwargs, run_kwargs

__all__ = ["Eval", "SuiteSpec", "build_suite"]

_SAMPLING_ARGS = ("max_tokens", "temperature", "top_p", "stop", "seed")
_TARGET_ARGS = ("target", "target_batch", "target_concurrency", "target_cache", "target_id")
_DATASET_ARGS = ("prompt", "system", "chat", "model", "models", "variants", "reference",
                 *_SAMPLING_ARGS, *_TARGET_ARGS)
#: What a variant of ``variants={...}`` may change about the suite's requests.
_VARIANT_ARGS = ("prompt", "system", "model", *_SAMPLING_ARGS)
#: Accepted by every eval marker: the suite's statistical gate and repeated sampling.
GATE_ARGS = ("min_pass_rate", "min_score", "must_pass", "samples")


@dataclass
class Eval:
    """One eval marker on a suite: its scorer (one metric) and that metric's own gate."""

    marker: str
    scorer: Scorer
    gate: dict[str, float] = field(default_factory=dict)  # min_pass_rate / min_score
    must_pass: tuple[str, ...] = ()  # case ids that fail their test even under a threshold


@dataclass
class SuiteSpec:
    """One suite: a test function, its cases, and how they are generated and scored."""

    suite: str
    cases: list[Case]
    prompt: str | None = None
    system: str | None = None
    chat: bool = True
    model: str | None = None  # a name from the `models` fixture; None = the session model
    models: list[str] = field(default_factory=list)  # several models: each case for each
    reference: str | None = None  # one of `models` (or `variants`): compared against, not gated
    #: prompt/system/sampling/model variants of the suite, by name: each is a "model" of the
    #: suite (its own test items, records and comparisons), on one engine
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    sampling: dict[str, Any] = field(default_factory=dict)  # overrides of the run defaults
    evals: list[Eval] = field(default_factory=list)  # one per eval marker, each its own metric
    samples: int = 0  # 0: the run's --aie-samples
    #: the user's application under test instead of a bare model (see pytest_aie.suite.target)
    target: Any = None
    target_options: dict[str, Any] = field(default_factory=dict)
    #: True: the test body computes each case's output and hands it over with ``evaluate``
    body: bool = False

    @property
    def target_name(self) -> str | None:
        """The target's model name in the run (``target:module.function``)."""
        if self.target is None:
            return None
        from pytest_aie.suite.target import target_label

        return f"target:{target_label(self.target)}"

    @property
    def scorer(self) -> Scorer | None:
        """The first eval's scorer (None: a dataset-only test, nothing scored)."""
        return self.evals[0].scorer if self.evals else None

    def model_of(self, name: str) -> str:
        """The run's model behind one of the suite's model names (a variant's model)."""
        if name in self.variants:
            return str(self.variants[name].get("model") or self.model or "default")
        return name

    def request_for(self, case: Case, defaults: Sampling, variant: str | None = None) -> Request:
        if variant is not None and variant in self.variants:
            over = self.variants[variant]
            sampling = {**self.sampling, **{k: over[k] for k in _SAMPLING_ARGS if k in over}}
            if isinstance(sampling.get("stop"), str):
                sampling["stop"] = (sampling["stop"],)
            params = Sampling.from_dict({**_sampling_dict(defaults), **sampling})
            return build_request(case, prompt=over.get("prompt", self.prompt),
                                 system=over.get("system", self.system), chat=self.chat,
                                 sampling=params)
        params = Sampling.from_dict({**_sampling_dict(defaults), **self.sampling})
        no_prompt = self.prompt is None and case.prompt is None and "messages" not in case.fields
        if self.target is not None or (self.body and no_prompt):
            from pytest_aie.suite.target import target_request

            return target_request(dict(case.fields), params)
        return build_request(case, prompt=self.prompt, system=self.system, chat=self.chat,
                             sampling=params)


def _sampling_dict(s: Sampling) -> dict[str, Any]:
    return {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_tokens,
            "stop": s.stop, "seed": s.seed, "logprobs": s.logprobs}


def _check_kwargs(marker: str, kwargs: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [k for k in kwargs if k not in allowed]
    if unknown:
        raise UsageError(f"@pytest.mark.{marker} got unknown argument {unknown[0]!r}",
                         fix=f"use only {', '.join(allowed)}")


def build_suite(suite: str, dataset: tuple[tuple[Any, ...], Mapping[str, Any]],
                evals: list[tuple[str, tuple[Any, ...], Mapping[str, Any]]],
                test_dir: Path, engine: Callable[[str | None], Any] | None = None,
                body: bool = False, run_options: Mapping[str, Any] | None = None) -> SuiteSpec:
    """Build and validate a suite from its ``dataset`` marker and eval markers. ``body``: the
    test body hands each case's output over itself (the ``evaluate`` fixture).
    ``run_options``: the run's options for the factories that name them
    (:data:`pytest_aie.suite.markers.RUN_OPTIONS`)."""
    args, kwargs = dataset
    if len(args) != 1:
        raise UsageError("@pytest.mark.dataset takes exactly one path",
                         fix='write @pytest.mark.dataset("cases.jsonl", ...)')
    _check_kwargs("dataset", kwargs, _DATASET_ARGS)
    built: list[Eval] = []
    samples_by: dict[str, int] = {}
    for marker, eargs, ekwargs in evals:
        entry = EVAL_MARKERS[marker]
        ekwargs = dict(ekwargs)
        gate, must_pass, samples_k = _gate_args(marker, ekwargs)
        if samples_k:
            samples_by[marker] = samples_k
        allowed = accepted_kwargs(entry)
        if allowed is not None:
            _check_kwargs(marker, ekwargs, allowed + GATE_ARGS)
        try:
            listed = kwargs.get("models")
            model_name = kwargs.get("model") or (listed[0] if isinstance(listed, (list, tuple))
                                                 and listed else None)
            get_engine: Callable[[], Any] = _no_engine
            if engine is not None:
                get_engine = functools.partial(engine, model_name)
            scorer = entry.factory(*eargs, base_dir=test_dir, engine=get_engine, **ekwargs,
                                   **run_kwargs(entry, run_options or {}))
        except TypeError as exc:
            raise UsageError(f"bad arguments to @pytest.mark.{marker}: {exc}",
                             fix=f"see `pytest --markers` for the signature of {marker}") from None
        if "min_pass_rate" in gate and not scorer.binary and not scorer.higher_is_better:
            raise UsageError(f"@pytest.mark.{marker}(min_pass_rate=...) on {scorer.metric!r}, "
                             "a lower-is-better value with no pass rate",
                             fix="gate its suite mean with min_score= (a ceiling), and per case "
                                 "with the marker's own limit")
        if any(e.scorer.metric == scorer.metric for e in built):
            raise UsageError(f"two eval markers on one test measure the same metric "
                             f"{scorer.metric!r}", fix="keep one of them, or give them different "
                             "kinds or metrics")
        built.append(Eval(marker, scorer, gate, must_pass))
    if len(set(samples_by.values())) > 1:
        raise UsageError("the eval markers of one test ask for different samples= "
                         f"({', '.join(f'{m}: {k}' for m, k in samples_by.items())})",
                         fix="the samples are generated once and shared by every eval: give "
                             "one samples= value")
    samples = next(iter(samples_by.values()), 0)
    prompt = kwargs.get("prompt")
    required = list(template_fields(prompt))
    target = kwargs.get("target")
    if target is not None and not callable(target) and not hasattr(target, "run_cases"):
        raise UsageError(f"@pytest.mark.dataset(target={target!r}) is not callable",
                         fix="pass your application's function: target=answer (not answer())")
    stray = [k for k in _TARGET_ARGS[1:] if k in kwargs and target is None]
    if stray:
        raise UsageError(f"@pytest.mark.dataset({stray[0]}=...) needs target=",
                         fix="pass target=your_function, or drop the target_* arguments")
    conc = kwargs.get("target_concurrency", 8)
    if isinstance(conc, bool) or not isinstance(conc, int) or conc < 1:
        raise UsageError(f"@pytest.mark.dataset(target_concurrency={conc!r}) must be a whole "
                         "number >= 1", fix="write e.g. target_concurrency=8")
    variants = _variants_args(kwargs, target, body)
    models, reference = _models_args(kwargs, target, body, variants)
    for over in variants.values():
        required.extend(template_fields(over.get("prompt")))
    if prompt is None and target is None and not body and \
            not (variants and all(v.get("prompt") for v in variants.values())):
        required.append("prompt")
    for ev in built:
        required.extend(ev.scorer.required_fields())
    path = test_dir / str(args[0])
    cases = load_cases(path, require=tuple(required))
    cases = [Case(id=c.id, fields=c.fields, source=c.source, tags=c.tags, suite=suite) for c in cases]
    check_suite = getattr(target, "check_suite", None)
    if callable(check_suite):  # a batch target's own checks (an Agent's tasks and tool names)
        check_suite(cases, [ev.scorer for ev in built], dict(kwargs))
    sampling = {k: kwargs[k] for k in _SAMPLING_ARGS if kwargs.get(k) is not None}
    if "stop" in sampling and isinstance(sampling["stop"], str):
        sampling["stop"] = (sampling["stop"],)
    try:
        Sampling.from_dict(sampling)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"bad sampling argument to @pytest.mark.dataset: {exc}",
                         fix="see `pytest --markers`") from None
    ids = {case.id for case in cases}
    for ev in built:
        unknown = [c for c in ev.must_pass if c not in ids]
        if unknown:
            raise UsageError(f"@pytest.mark.{ev.marker} must_pass names unknown case "
                             f"{unknown[0]!r}", fix=f"use case ids from {path.name}")
    return SuiteSpec(suite=suite, cases=cases, prompt=prompt, system=kwargs.get("system"),
                     chat=bool(kwargs.get("chat", True)), model=kwargs.get("model"),
                     models=models, reference=reference, variants=variants,
                     sampling=sampling, evals=built, samples=samples, target=target,
                     target_options={k: kwargs[k] for k in _TARGET_ARGS[1:] if k in kwargs},
                     body=body)


def _variants_args(kwargs: Mapping[str, Any], target: Any, body: bool) -> dict[str, dict[str, Any]]:
    """Validate ``variants=`` of the dataset marker: ``{name: {prompt/system/sampling/model}}``."""
    variants = kwargs.get("variants")
    if variants is None:
        return {}
    example = "variants={'terse': {'system': 'Answer in five words.'}, 'plain': {}}"
    if not isinstance(variants, dict) or len(variants) < 2:
        raise UsageError(f"@pytest.mark.dataset(variants={variants!r}) must name at least two "
                         "variants", fix=f"write e.g. {example}")
    for name, over in variants.items():
        if not isinstance(name, str) or not name or not isinstance(over, dict):
            raise UsageError(f"@pytest.mark.dataset(variants=...): variant {name!r} must be a "
                             "name with a dict of settings", fix=f"write e.g. {example}")
        unknown = [k for k in over if k not in _VARIANT_ARGS]
        if unknown:
            raise UsageError(f"@pytest.mark.dataset(variants=...): variant {name!r} sets "
                             f"unknown {unknown[0]!r}", fix=f"use only {', '.join(_VARIANT_ARGS)}")
        try:
            Sampling.from_dict({k: (tuple(v) if k == "stop" and not isinstance(v, str) else v)
                                for k, v in over.items() if k in _SAMPLING_ARGS})
        except (ValueError, TypeError) as exc:
            raise UsageError(f"@pytest.mark.dataset(variants=...): variant {name!r}: {exc}",
                             fix="see `pytest --markers`") from None
    for other in ("models", "target"):
        if kwargs.get(other) is not None:
            raise UsageError(f"@pytest.mark.dataset takes variants= or {other}=, not both",
                             fix="give each variant its model: variants={'a': {'model': 'x'}}"
                             if other == "models" else "evaluate a target in its own test")
    if body:
        raise UsageError("@pytest.mark.dataset(variants=...) on a test that computes its own "
                         "output (`evaluate`)", fix="drop variants=, or take `output` instead")
    return {str(k): dict(v) for k, v in variants.items()}


def _models_args(kwargs: Mapping[str, Any], target: Any, body: bool,
                 variants: Mapping[str, Any] | None = None) -> tuple[list[str], str | None]:
    """Validate ``models=`` and ``reference=`` of the dataset marker."""
    models = kwargs.get("models")
    reference = kwargs.get("reference")
    if variants:
        if reference is not None and reference not in variants:
            raise UsageError(f"@pytest.mark.dataset(reference={reference!r}) must be one of "
                             f"variants {list(variants)!r}", fix="name the variant the others "
                                                                 "are compared against")
        return [], reference
    if models is None:
        if reference is not None:
            raise UsageError("@pytest.mark.dataset(reference=...) needs models=",
                             fix="write models=['base', 'candidate'], reference='base'")
        return [], None
    if isinstance(models, str) or not isinstance(models, (list, tuple)) or not models \
            or not all(isinstance(m, str) and m for m in models):
        raise UsageError(f"@pytest.mark.dataset(models={models!r}) must be a list of model "
                         "names", fix="write e.g. models=['base', 'candidate']")
    dupes = sorted({m for m in models if list(models).count(m) > 1})
    if dupes:
        raise UsageError(f"@pytest.mark.dataset(models=...) names {dupes[0]!r} twice",
                         fix="name each model once")
    for other in ("model", "target"):
        if kwargs.get(other) is not None:
            raise UsageError(f"@pytest.mark.dataset takes {other}= or models=, not both",
                             fix=f"put the model in models=[...] and drop {other}="
                             if other == "model" else "evaluate a target in its own test")
    if body:
        raise UsageError("@pytest.mark.dataset(models=...) on a test that computes its own "
                         "output (`evaluate`)", fix="drop models=, or take `output` instead")
    if reference is not None and (reference not in models or len(models) < 2):
        raise UsageError(f"@pytest.mark.dataset(reference={reference!r}) must be one of "
                         f"models={list(models)!r}, with at least one other model",
                         fix="name the model the others are compared against")
    return list(models), reference


def _no_engine() -> Any:
    raise UsageError("this eval needs an engine, and none is configured",
                     fix="run it under pytest with pytest-aie")


def _gate_args(marker: str, kwargs: dict[str, Any]) -> tuple[dict[str, float], tuple[str, ...], int]:
    """Pop and validate the gate arguments shared by every eval marker."""
    gate = {}
    for name in ("min_pass_rate", "min_score"):
        value = kwargs.pop(name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UsageError(f"@pytest.mark.{marker}({name}={value!r}) must be a number",
                             fix=f"write e.g. {name}=0.8")
        if name == "min_pass_rate" and not 0 <= value <= 1:
            raise UsageError(f"@pytest.mark.{marker}(min_pass_rate={value!r}) must be a rate "
                             "in [0, 1]", fix="write e.g. min_pass_rate=0.8")
        # min_score is on the metric's own scale: 0-1 for most, unbounded for perplexity,
        # TER or a latency in milliseconds (a ceiling for lower-is-better metrics)
        gate[name] = float(value)
    must_pass = kwargs.pop("must_pass", ()) or ()
    if isinstance(must_pass, str):
        must_pass = (must_pass,)
    samples = kwargs.pop("samples", 0) or 0
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise UsageError(f"@pytest.mark.{marker}(samples={samples!r}) must be a whole number >= 1",
                         fix="write e.g. samples=5")
    return gate, tuple(str(c) for c in must_pass), samples
