#!/usr/bin/env bash
# scripts/gpu_check.sh: run the vllm engine end to end on this machine's GPU and print its
# throughput, TTFT, TPOT, MBU and MFU.
#
# For a user with an NVIDIA GPU and `pip install vllm` (plus pytest-aie in the same Python):
#
#     scripts/gpu_check.sh [extra pytest options...]
#
# It checks nvidia-smi, torch.cuda and vllm, writes a small suite to a temporary folder (32
# capital-city prompts, `@pytest.mark.exact("contains")` and `@pytest.mark.latency(...)`), runs
# it with `--aie-engine vllm`, and prints the figures from the results log. Without a GPU or
# without vllm it stops with one line and exit status 2; a run that cannot finish exits 1.
#
# Environment:
#   PYTHON                       the Python with pytest-aie and vllm (default: python3)
#   AIE_GPU_CHECK_MODEL          --aie-model (default: the embedded SmolLM2-135M-Instruct)
#   AIE_GPU_CHECK_CASES          how many of the 32 prompts to run (default 32)
#   AIE_GPU_CHECK_MAX_TOKENS     max_tokens per answer (default 32)
#   AIE_GPU_CHECK_ENGINE_OPTIONS --aie-engine-options (e.g. gpu_memory_utilization=0.5)
#   AIE_ACCELERATOR              --aie-accelerator (default: detected from torch.cuda)
#   AIE_CPU_BANDWIDTH_GBS        --aie-cpu-bandwidth-gbs (for the hf override below)
#   AIE_GPU_CHECK_ENGINE=hf      run the same suite on the hf engine and skip the GPU and
#                                vllm checks: exercises the script on a machine without a GPU
#   AIE_GPU_CHECK_KEEP=1         keep the temporary folder (its path is printed)
set -uo pipefail

PY=${PYTHON:-python3}
ENGINE=${AIE_GPU_CHECK_ENGINE:-vllm}
CASES=${AIE_GPU_CHECK_CASES:-32}
MAX_TOKENS=${AIE_GPU_CHECK_MAX_TOKENS:-32}

die() { echo "gpu_check: $1" >&2; exit "${2:-2}"; }

case "$ENGINE" in
  vllm | hf) ;;
  *) die "AIE_GPU_CHECK_ENGINE must be vllm or hf, got '$ENGINE'" ;;
esac
[[ "$CASES" =~ ^[0-9]+$ ]] && (( CASES >= 2 && CASES <= 32 )) \
  || die "AIE_GPU_CHECK_CASES must be a whole number from 2 to 32, got '$CASES'"
[[ "$MAX_TOKENS" =~ ^[0-9]+$ ]] && (( MAX_TOKENS >= 2 )) \
  || die "AIE_GPU_CHECK_MAX_TOKENS must be a whole number >= 2, got '$MAX_TOKENS'"
command -v "$PY" >/dev/null 2>&1 || die "no Python: '$PY' is not on PATH (set PYTHON=...)"
case "$PY" in  # an absolute path: the suite runs from its temporary folder
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
  *) PY=$(command -v "$PY") ;;
esac

if [ "$ENGINE" = vllm ]; then
  command -v nvidia-smi >/dev/null 2>&1 \
    || die "no GPU: nvidia-smi is not installed (this check needs an NVIDIA GPU and its driver)"
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)
  [ -n "$GPU" ] || die "no GPU: nvidia-smi lists no GPU ($(nvidia-smi -L 2>&1 | head -n 1))"
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1 \
    || die "no GPU for torch: '$PY' cannot import torch or torch.cuda.is_available() is False (a CPU-only torch?)"
  "$PY" -c "import vllm" >/dev/null 2>&1 \
    || die "no vllm: '$PY' cannot import vllm (pip install vllm, or pytest-aie[vllm])"
  echo "gpu_check: $GPU, vllm $("$PY" -c 'import vllm; print(vllm.__version__)' 2>/dev/null)"
else
  echo "gpu_check: AIE_GPU_CHECK_ENGINE=hf: the GPU and vllm checks are skipped"
fi
"$PY" -c "import pytest_aie" >/dev/null 2>&1 \
  || die "no pytest-aie: '$PY' cannot import pytest_aie (pip install pytest-aie)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/aie-gpu-check.XXXXXX") || die "cannot make a temporary folder"
if [ "${AIE_GPU_CHECK_KEEP:-0}" = 1 ]; then
  echo "gpu_check: keeping $WORK"
else
  trap 'rm -rf "$WORK"' EXIT
fi

"$PY" - "$WORK" "$CASES" "$MAX_TOKENS" <<'EOF' || die "cannot write the suite" 1
import json, sys
from pathlib import Path

work, n, max_tokens = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
capitals = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Germany", "Berlin"),
            ("Spain", "Madrid"), ("Egypt", "Cairo"), ("Russia", "Moscow"), ("Greece", "Athens"),
            ("Portugal", "Lisbon"), ("Norway", "Oslo"), ("Austria", "Vienna"),
            ("Ireland", "Dublin"), ("Poland", "Warsaw"), ("Peru", "Lima"),
            ("Thailand", "Bangkok"), ("Kenya", "Nairobi")]
phrasings = ["What is the capital of {}? Answer in one sentence.",
             "Name the capital city of {} and say one thing about it."]
cases = [{"id": f"{country.lower()}-{k}", "prompt": p.format(country), "expected": city}
         for k, p in enumerate(phrasings) for country, city in capitals][:n]
(work / "cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
(work / "test_gpu_check.py").write_text(f'''import pytest


@pytest.mark.dataset("cases.jsonl", max_tokens={max_tokens}, chat=True)
@pytest.mark.exact("contains", normalize="case")
@pytest.mark.latency(e2e_p95_ms=600000, warmup=2, concurrency=1)
def test_gpu_check(case, output):
    pass
''')
(work / "pytest.ini").write_text("[pytest]\n")
EOF

ARGS=(-p no:randomly -p no:cacheprovider -q --aie-engine "$ENGINE" --aie-cache off
      --aie-results "$WORK/results.jsonl" --aie-report none)
[ -n "${AIE_GPU_CHECK_MODEL:-}" ] && ARGS+=(--aie-model "$AIE_GPU_CHECK_MODEL")
[ -n "${AIE_GPU_CHECK_ENGINE_OPTIONS:-}" ] && ARGS+=(--aie-engine-options "$AIE_GPU_CHECK_ENGINE_OPTIONS")
[ -n "${AIE_ACCELERATOR:-}" ] && ARGS+=(--aie-accelerator "$AIE_ACCELERATOR")
[ -n "${AIE_CPU_BANDWIDTH_GBS:-}" ] && ARGS+=(--aie-cpu-bandwidth-gbs "$AIE_CPU_BANDWIDTH_GBS")

echo "gpu_check: running $CASES cases on the $ENGINE engine (max_tokens=$MAX_TOKENS) in $WORK"
START=$(date +%s)
(cd "$WORK" && "$PY" -m pytest "${ARGS[@]}" "$@") >"$WORK/pytest.log" 2>&1
RC=$?
echo "gpu_check: pytest exited $RC after $(( $(date +%s) - START )) s"
# 0: every answer right; 1: some answers wrong (the timings still count); else the run broke
if [ "$RC" -ne 0 ] && [ "$RC" -ne 1 ]; then
  tail -n 15 "$WORK/pytest.log" >&2
  die "the suite did not run (pytest exit $RC; its output is above)" 1
fi
grep -E "^  e2e_p95_ms" "$WORK/pytest.log" || true

"$PY" - "$WORK/results.jsonl" <<'EOF' || die "cannot read the results log" 1
import json, statistics, sys

from pytest_aie.latency.utilization import summary_line

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
records = [r for r in map(json.loads, lines[1:]) if r.get("type") == "case"]
exact = [r for r in records if r["metric"].startswith("exact")]
latency = [r for r in records if r["metric"] == "latency.e2e_ms" and r["status"] == "scored"]
if not exact or not latency:
    sys.exit("gpu_check: the results log has no exact or no latency records")
passed = sum(1 for r in exact if r["status"] == "passed")
# whole-suite generation: the records' timings; one engine call (vllm) shares one wall time,
# several batches (hf) each have their own
timed = [r for r in exact if (r.get("timings") or {}).get("e2e_s")]
tokens = sum(r.get("completion_tokens") or 0 for r in timed)
if timed and all((r["timings"].get("batch_size") or 0) == len(timed) for r in timed):
    wall = max(r["timings"]["e2e_s"] for r in timed)
else:
    wall = sum({(r["timings"].get("batch_size"), round(r["timings"]["e2e_s"], 6)): r["timings"]["e2e_s"]
                for r in timed}.values())
d = [r["details"] for r in latency]


def pct(values, q):
    values = sorted(v for v in values if v is not None)
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 \
        else (values[0] if values else float("nan"))


print(f"engine:      {exact[0].get('engine')} {exact[0].get('model_id')}")
print(f"answers:     {passed}/{len(exact)} contain the expected city")
if wall:
    print(f"throughput:  {tokens / wall:.1f} output tokens/s over the whole-suite generation "
          f"({tokens} tokens in {wall:.2f} s)")
else:
    print("throughput:  unmeasured (the engine reported no timings)")
print(f"probe:       {len(d)} requests one at a time; output tokens/s per request, median "
      f"{statistics.median(x['tokens_per_s'] for x in d if x['tokens_per_s']):.1f}")
print(f"TTFT:        p50 {pct([x['ttft_ms'] for x in d], 50):.1f} ms, "
      f"p95 {pct([x['ttft_ms'] for x in d], 95):.1f} ms")
print(f"TPOT:        p50 {pct([x['tpot_ms'] for x in d], 50):.2f} ms, "
      f"p95 {pct([x['tpot_ms'] for x in d], 95):.2f} ms")
print(f"e2e:         p50 {pct([x['e2e_ms'] for x in d], 50):.1f} ms")
util = d[0].get("utilization")
print(summary_line(util) if util else "MBU unmeasured: the latency records carry no utilization")
EOF
