"""``make bench``: run every benchmark, one ``name: value`` line per figure on stdout, printed
as soon as the benchmark measures it; progress and details go to stderr. Each benchmark runs in
its own process. ``make bench ONLY=judge_batching,report_scale`` (``--only``) runs a subset,
named as in :data:`BENCHMARKS` without ``.py``."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
FIGURE = re.compile(r"^[a-z][a-z0-9_]*: -?[0-9.]+(e-?[0-9]+)?$")
BENCHMARKS = [
    "suite_throughput.py",      # suite_throughput_ratio
    "plugin_overhead.py",       # plugin_overhead_ratio
    "multi_model_overhead.py",  # multi_model_overhead_ratio
    "embedding_throughput.py",  # embedding_throughput_ratio
    "demo_time.py",             # demo_seconds_warm
    "gate_simulations.py",      # aa_rate_clustered, aa_rate_tags, aa_rate_score_n8, power_5pt_n1000
    "aa_embedded.py",           # aa_rate_embedded, aa_embedded_mean_pass_rate (about 20 minutes)
    "latency_probe.py",         # hf_ttft_ms, hf_tpot_ms, probe_ttft_overhead_ratio
    "judge_batching.py",        # judge_batching_speedup (about 8 minutes)
    "elo_scheduling.py",        # elo_calls_ratio, elo_scheduled_agreement (2-4 minutes)
    "elo_verdicts.py",          # elo_aa_false_fail_rate, elo_aa_false_fail_upper, elo_power_70, ...
    "retrieval.py",             # bm25_qps_10k, dense_qps_10k, dense_index_10k_s, hnsw_recall_at_10
    "agent_batching.py",        # agent_step_batching_speedup
    "report_scale.py",          # report_{1k,10k,100k}_mb, report_{1k,10k,100k}_open_s, report_100k_filter_s
    "vllm_throughput.py",       # vllm_suite_throughput_ratio, vllm_vs_hf_throughput (.venv-vllm)
]
#: benchmarks that run in vLLM's own environment (`make install-vllm`)
VLLM_PYTHON = HERE.parent / ".venv-vllm" / "bin" / "python"


def selected(only: str | None) -> list[str]:
    """The benchmarks to run, in :data:`BENCHMARKS` order; an unknown name is one line."""
    if not only:
        return list(BENCHMARKS)
    names = [n.strip().removesuffix(".py") for n in only.split(",") if n.strip()]
    known = [b.removesuffix(".py") for b in BENCHMARKS]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        print(f"bench: unknown benchmark {unknown[0] if unknown else only!r}. Fix: ONLY= "
              f"takes a comma-separated list of {', '.join(known)}", file=sys.stderr)
        raise SystemExit(2)
    return [b for b in BENCHMARKS if b.removesuffix(".py") in names]


def run_one(python: str, script: Path) -> int:
    """Run one benchmark unbuffered, passing each figure line to stdout the moment it comes."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([python, "-u", str(script)], stdout=subprocess.PIPE, text=True,
                          env=env) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.rstrip("\n")
            if FIGURE.match(line):
                print(line, flush=True)
            else:
                print(line, file=sys.stderr, flush=True)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=os.environ.get("ONLY") or None,
                    help="comma-separated benchmarks (default: all)")
    args = ap.parse_args(argv)
    failed = 0
    for name in selected(args.only):
        print(f"bench: running {name}", file=sys.stderr, flush=True)
        python = str(VLLM_PYTHON) if name.startswith("vllm_") else sys.executable
        if name.startswith("vllm_") and not VLLM_PYTHON.exists():
            failed += 1
            print(f"bench: {name} needs {VLLM_PYTHON} (make install-vllm)", file=sys.stderr)
            continue
        code = run_one(python, HERE / name)
        if code != 0:
            failed += 1
            print(f"bench: {name} failed with exit code {code}", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
