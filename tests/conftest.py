"""Shared test setup: offline model hubs, a hypothesis profile for CI, and no skips in CI.

Under ``CI=true`` a test whose real component (browser, ``transformers serve``, a model, an
optional package) cannot start fails instead of skipping: see :mod:`components` (tests/components.py).
"""

from __future__ import annotations

import importlib.util
import os

from components import (  # noqa: F401  (the hooks: no skips in CI, at collection or in a test)
    in_ci,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the runs inside our tests must not append their summaries to our own CI job's summary
os.environ.pop("GITHUB_STEP_SUMMARY", None)

try:
    from hypothesis import HealthCheck, settings

    settings.register_profile("ci", deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", deadline=None)
    settings.load_profile("ci" if in_ci() else "dev")
except ImportError:  # pragma: no cover
    pass

# numpy (and scipy, built on it) cannot be imported twice in one process, and pytester's
# in-process runs drop modules first imported inside them: import them once up front.
import numpy  # noqa: E402,F401
import scipy.stats  # noqa: E402,F401

# tests/vllm run in their own environment with vllm installed (`make test-vllm`); elsewhere
# they are not collected at all (rather than skipped). Not under CI: there a run that reaches
# tests/vllm without vllm fails at their collection (`make test` runs them in .venv-vllm and
# leaves them out of the main run with --ignore).
collect_ignore = [] if importlib.util.find_spec("vllm") or in_ci() else ["vllm"]
