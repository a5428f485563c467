"""Options: every ``--aie-*`` flag, its ``[tool.pytest.ini_options]`` twin, and their parsing.

Each option is one row of :data:`OPTIONS`; :func:`add_options` registers them all and
:meth:`Settings.from_config` reads them (command line first, then ini, then the default),
validating each with a message that names the option and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pytest

from pytest_aie._util.files import default_cache_dir
from pytest_aie.errors import UsageError

if TYPE_CHECKING:
    from pytest_aie.latency.utilization import UtilizationOptions

__all__ = ["CACHE_MODES", "OPTIONS", "Settings", "add_options"]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:[0-9]+)?)$")
_DTYPES = ("auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "half")


#: the choices of ``--aie-cache``
CACHE_MODES = ("on", "off", "refresh")


@dataclass(frozen=True)
class Option:
    name: str  # without the --aie- prefix
    help: str
    default: str
    metavar: str = "VALUE"
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return f"--aie-{self.name}"

    @property
    def ini(self) -> str:
        return "aie_" + self.name.replace("-", "_")

    @property
    def dest(self) -> str:
        return "aie_" + self.name.replace("-", "_")


OPTIONS: tuple[Option, ...] = (
    Option("engine", "engine: hf, vllm, openai or scripted", "hf", "NAME"),
    Option("model", "model: a Hugging Face id or folder (hf), a served model name (openai), "
           "a JSONL answers file (scripted); empty = the embedded SmolLM2-135M-Instruct", "",
           "MODEL"),
    Option("models", "extra named models, comma-separated NAME=[ENGINE:]MODEL, for the `models` "
           "fixture", "", "SPECS"),
    Option("judge", "the model that model-calling scorers (judges) use by default: "
           "[ENGINE:]MODEL, or the NAME of an --aie-models entry; empty = the embedded "
           "SmolLM2-135M-Instruct on the hf engine", "", "MODEL"),
    Option("base-url", "OpenAI-compatible server URL for the openai engine "
           "(default: $OPENAI_BASE_URL)", "", "URL"),
    Option("engine-options", "extra engine options, comma-separated KEY=VALUE (JSON values: "
           "numbers, true/false, quoted strings; anything else is a string), e.g. "
           "timeout=120,max_retries=5; they reach the engine and its cache identity", "",
           "OPTIONS"),
    Option("device", "device for in-process engines: auto, cpu, cuda, cuda:N or mps", "auto", "DEVICE"),
    Option("dtype", "weights dtype for in-process engines: auto (float32 on CPU, bfloat16 on "
           "CUDA), float32, bfloat16, float16", "auto", "DTYPE"),
    Option("batch-size", "requests per engine call (0 = the engine's preferred size)", "0", "N"),
    Option("concurrency", "parallel requests for the openai engine", "8", "N"),
    Option("max-tokens", "default max new tokens per generation", "64", "N"),
    Option("temperature", "default sampling temperature (0 = greedy)", "0", "T"),
    Option("seed", "the run's sampling seed; each case and sample gets its own seed derived from it", "0", "N"),
    Option("cache", "generation cache: on (read+write), off, refresh (write only)", "on", "MODE",
           CACHE_MODES),
    Option("cache-dir", "cache folder (default: $PYTEST_AIE_CACHE_DIR or the XDG cache "
           "~/.cache/pytest-aie)", "", "DIR"),
    Option("samples", "generate each case k times, each sample with its own seed (pass@k, flaky "
           "cases)", "1", "K"),
    Option("min-pass-rate", "default suite threshold on the pass rate (eval markers' "
           "min_pass_rate= overrides)", "", "RATE"),
    Option("min-score", "default suite threshold on the mean score (markers' min_score= "
           "overrides)", "", "SCORE"),
    Option("gate", "how a threshold is judged: interval (pass/fail/inconclusive from the "
           "confidence interval) or point (the point estimate)", "interval", "MODE",
           ("interval", "point")),
    Option("inconclusive", "what an inconclusive suite verdict does to the exit status: fail, "
           "pass or warn", "warn", "POLICY", ("fail", "pass", "warn")),
    Option("confidence", "confidence level of intervals", "0.95", "LEVEL"),
    Option("candidate", "finetune check: compare this [ENGINE:]MODEL with --aie-model (the base) "
           "on the same suites", "", "MODEL"),
    Option("candidate-adapter", "finetune check: compare the base model (--aie-model) with the "
           "same model plus this LoRA adapter folder (hf engine with peft)", "", "PATH"),
    Option("baseline", "compare the run with a saved baseline (paired tests)", "", "NAME"),
    Option("save-baseline", "save this run's per-case results as a baseline", "", "NAME"),
    Option("baseline-dir", "folder of baseline files (meant to be committed)", "aie-baselines",
           "DIR"),
    Option("regression-margin", "non-inferiority margin: drops smaller than this never fail",
           "0.02", "DELTA"),
    Option("alpha", "significance level of the regression tests", "0.05", "ALPHA"),
    Option("results", "results JSONL file, written as each case completes", "aie-results/results.jsonl",
           "PATH"),
    Option("report", "HTML report file ('none' to skip)", "aie-results/report.html", "PATH"),
    Option("accelerator", "the accelerator the model runs on, for the latency suites' MBU and "
           "MFU: h100-sxm, h100-pcie, h200, a100-40gb, a100-80gb, a100-80gb-pcie or l4 (empty: "
           "detected from torch.cuda when the engine runs on CUDA)", "", "NAME"),
    Option("cpu-bandwidth-gbs", "the CPU's peak memory bandwidth in GB/s, for MBU when the model "
           "runs on the CPU", "", "GBS"),
    Option("cpu-peak-gflops", "the CPU's peak GFLOP/s for the weights' dtype, for MFU on the "
           "CPU", "", "GFLOPS"),
    Option("model-params", "the model's parameter count (e.g. 135M, 7B) for MBU and MFU when "
           "the engine cannot count it (openai, scripted)", "", "N"),
)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("aie", "pytest-aie: evaluation of foundation-model applications")
    for opt in OPTIONS:
        group.addoption(opt.flag, dest=opt.dest, default=None, metavar=opt.metavar,
                        help=f"{opt.help} [ini: {opt.ini}; default: {opt.default or 'unset'}]")
        parser.addini(opt.ini, help=opt.help, default=opt.default)


def _raw(config: pytest.Config, opt: Option) -> str:
    value = config.getoption(opt.dest, default=None)
    if value is None:
        value = config.getini(opt.ini)
    return str(value).strip()


def _parse(opt: Option, raw: str, conv: Callable[[str], Any], what: str) -> Any:
    try:
        return conv(raw)
    except ValueError:
        raise UsageError(f"{opt.flag} (ini {opt.ini}) must be {what}, got {raw!r}",
                         fix=f"pass {opt.flag} {opt.default or what}") from None


def parse_models(raw: str, default_engine: str) -> dict[str, tuple[str, str]]:
    models: dict[str, tuple[str, str]] = {}
    for item in filter(None, (part.strip() for part in raw.replace("\n", ",").split(","))):
        name, sep, spec = item.partition("=")
        if not sep or not name.strip() or not spec.strip():
            raise UsageError(f"--aie-models entry {item!r} is not NAME=[ENGINE:]MODEL",
                             fix="write e.g. --aie-models base=hf:HuggingFaceTB/SmolLM2-135M")
        engine, colon, model = (part.strip() for part in spec.strip().partition(":"))
        # no engine prefix: a plain model id, or a path (with a colon, or a Windows drive)
        if not colon or "/" in engine or "\\" in engine or (len(engine) == 1 and engine.isalpha()):
            engine, model = default_engine, spec.strip()
        models[name.strip()] = (engine, model)
    return models


def parse_engine_options(raw: str) -> dict[str, Any]:
    """``KEY=VALUE,KEY=VALUE`` -> a dict; values parsed as JSON where they parse."""
    import json

    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in raw.replace("\n", ",").split(","))):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key.isidentifier():
            raise UsageError(f"--aie-engine-options entry {item!r} is not KEY=VALUE",
                             fix="write e.g. --aie-engine-options timeout=120,max_retries=5")
        if key in ("model", "device", "dtype", "base_url", "concurrency"):
            raise UsageError(f"--aie-engine-options sets {key!r}, which has its own option",
                             fix=f"use --aie-{key.replace('_', '-')}")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _utilization(raw: dict[str, str], by_name: dict[str, Option]) -> dict[str, Any]:
    """The MBU/MFU options: a known accelerator, positive figures, a parameter count."""
    from pytest_aie.latency.utilization import find_accelerator, parse_param_count

    out: dict[str, Any] = {"accelerator": find_accelerator(raw["accelerator"]).name
                           if raw["accelerator"] else ""}
    for n in ("cpu-bandwidth-gbs", "cpu-peak-gflops"):
        value = _parse(by_name[n], raw[n], float, "a positive number") if raw[n] else None
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError(f"{by_name[n].flag} must be a positive number, got {raw[n]!r}",
                             fix=f"pass e.g. {by_name[n].flag} 40")
        out[n.replace("-", "_")] = value
    out["model_params"] = (_parse(by_name["model-params"], raw["model-params"], parse_param_count,
                                  "a parameter count such as 135M or 7B")
                           if raw["model-params"] else None)
    return out


@dataclass(frozen=True)
class Settings:
    """The run's parsed options; plain values, so xdist can ship them."""

    engine: str = "hf"
    model: str = ""
    models: dict[str, tuple[str, str]] = field(default_factory=dict)
    engine_options: dict[str, Any] = field(default_factory=dict)
    base_url: str = ""
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 0
    concurrency: int = 8
    max_tokens: int = 64
    temperature: float = 0.0
    seed: int = 0
    cache: str = "on"
    cache_dir: str = ""
    results: str = "aie-results/results.jsonl"
    report: str = "aie-results/report.html"
    samples: int = 1
    min_pass_rate: float | None = None
    min_score: float | None = None
    gate: str = "interval"
    inconclusive: str = "warn"
    confidence: float = 0.95
    candidate: tuple[str, str] | None = None
    candidate_adapter: str = ""
    judge: str = ""  # raw: an --aie-models name or [ENGINE:]MODEL (see judge_model)
    baseline: str = ""
    save_baseline: str = ""
    baseline_dir: str = "aie-baselines"
    regression_margin: float = 0.02
    alpha: float = 0.05
    accelerator: str = ""  # a canonical name of pytest_aie.latency.utilization.ACCELERATORS
    cpu_bandwidth_gbs: float | None = None
    cpu_peak_gflops: float | None = None
    model_params: int | None = None

    def utilization_options(self) -> UtilizationOptions:
        """The latency suites' MBU and MFU options (they reach the ``latency`` marker's
        scorer through :func:`pytest_aie.suite.spec.build_suite`'s ``run_options``)."""
        from pytest_aie.latency.utilization import UtilizationOptions

        return UtilizationOptions(accelerator=self.accelerator,
                                  cpu_bandwidth_gbs=self.cpu_bandwidth_gbs,
                                  cpu_peak_gflops=self.cpu_peak_gflops,
                                  model_params=self.model_params, dtype=self.dtype)

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        raw = {opt.name: _raw(config, opt) for opt in OPTIONS}
        by_name = {opt.name: opt for opt in OPTIONS}
        for name in ("cache", "gate", "inconclusive"):
            opt = by_name[name]
            if opt.choices and raw[name] not in opt.choices:
                raise UsageError(f"{opt.flag} must be one of {', '.join(opt.choices)}, "
                                 f"got {raw[name]!r}", fix=f"pass {opt.flag} {opt.default}")
        ints = {n: _parse(by_name[n], raw[n], int, "a whole number")
                for n in ("batch-size", "concurrency", "max-tokens", "seed", "samples")}
        for n in ("concurrency", "max-tokens", "samples"):
            if ints[n] < 1:
                raise UsageError(f"{by_name[n].flag} must be at least 1, got {ints[n]}",
                                 fix=f"pass {by_name[n].flag} {by_name[n].default}")
        if ints["batch-size"] < 0:  # 0: the engine's choice
            raise UsageError(f"--aie-batch-size must be 0 (the engine's choice) or more, got "
                             f"{ints['batch-size']}", fix="pass --aie-batch-size 64, or leave it out")
        temperature = _parse(by_name["temperature"], raw["temperature"], float, "a number")
        if not 0 <= temperature <= 2:
            raise UsageError(f"--aie-temperature must be in [0, 2], got {temperature}",
                             fix="pass --aie-temperature 0 for greedy decoding")
        fractions: dict[str, float] = {}  # the default thresholds are left out when unset
        for n in ("min-pass-rate", "min-score", "confidence", "regression-margin", "alpha"):
            if raw[n] == "" and n in ("min-pass-rate", "min-score"):
                continue  # no default threshold; the others must be numbers
            if n == "min-score":  # on the metric's own scale (perplexity, milliseconds...)
                value = _parse(by_name[n], raw[n], float, "a number")
                if not math.isfinite(value):
                    raise UsageError(f"--aie-min-score must be a finite number, got {value}",
                                     fix="pass e.g. --aie-min-score 0.5")
                fractions[n] = value
                continue
            value = _parse(by_name[n], raw[n], float, "a number between 0 and 1")
            if not 0 <= value <= 1 or (n in ("confidence", "alpha") and value in (0, 1)):
                raise UsageError(f"{by_name[n].flag} must be between 0 and 1, got {value}",
                                 fix=f"pass {by_name[n].flag} {by_name[n].default or '0.8'}")
            fractions[n] = value
        candidate = None
        if raw["candidate"]:
            candidate = parse_models(f"candidate={raw['candidate']}", raw["engine"] or "hf")["candidate"]
        if raw["candidate"] and raw["candidate-adapter"]:
            raise UsageError("--aie-candidate and --aie-candidate-adapter both name a candidate",
                             fix="compare one candidate per run")
        if raw["baseline"] and raw["save-baseline"] and raw["baseline"] == raw["save-baseline"]:
            raise UsageError("--aie-baseline and --aie-save-baseline name the same baseline",
                             fix="compare first, then save under the same name in a later run")
        device = raw["device"] or "auto"
        if not _DEVICE.match(device):
            raise UsageError(f"--aie-device must be auto, cpu, cuda, cuda:N or mps, got {device!r}",
                             fix="pass --aie-device cuda for a GPU (or auto)")
        dtype = (raw["dtype"] or "auto").lower()
        if dtype not in _DTYPES:
            raise UsageError(f"--aie-dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}",
                             fix="pass --aie-dtype auto")
        utilization = _utilization(raw, by_name)
        root = Path(str(config.rootpath))
        cache_dir = raw["cache-dir"] or str(default_cache_dir())
        results = raw["results"]
        report = raw["report"]
        return cls(
            engine=raw["engine"] or "hf",
            model=raw["model"],
            models=parse_models(raw["models"], raw["engine"] or "hf"),
            engine_options=parse_engine_options(raw["engine-options"]),
            base_url=raw["base-url"],
            device=device,
            dtype=dtype,
            batch_size=ints["batch-size"],
            concurrency=ints["concurrency"],
            max_tokens=ints["max-tokens"],
            temperature=temperature,
            seed=ints["seed"],
            cache=raw["cache"],
            cache_dir=cache_dir,
            results=str(root / results) if results and results != "none" else "",
            report=str(root / report) if report and report != "none" else "",
            samples=ints["samples"],
            min_pass_rate=fractions.get("min-pass-rate"),
            min_score=fractions.get("min-score"),
            gate=raw["gate"],
            inconclusive=raw["inconclusive"],
            confidence=fractions["confidence"],
            candidate=candidate,
            candidate_adapter=str(root / raw["candidate-adapter"]) if raw["candidate-adapter"] else "",
            judge=raw["judge"],
            baseline=raw["baseline"],
            save_baseline=raw["save-baseline"],
            baseline_dir=str(root / raw["baseline-dir"]),
            regression_margin=fractions["regression-margin"],
            alpha=fractions["alpha"],
            **utilization,
        )

    def judge_model(self, spec: str | None = None) -> tuple[str, str]:
        """``(engine, model)`` of a judge: ``spec`` (a marker's ``judge_model=``), else
        ``--aie-judge``, else the embedded model on the hf engine. A name defined with
        ``--aie-models`` means that model; anything else is ``[ENGINE:]MODEL``."""
        raw = spec if spec is not None else self.judge
        if not raw or raw == "embedded":
            return "hf", ""
        if raw in self.models:
            return self.models[raw]
        return parse_models(f"judge={raw}", "hf")["judge"]

    @property
    def has_candidate(self) -> bool:
        return bool(self.candidate or self.candidate_adapter)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
