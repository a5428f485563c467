"""demo_seconds_warm: wall time of ``make demo`` with caches warm (the converted embedded model
and the generation cache). A first run warms them if needed; its time goes to stderr."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _make_demo() -> float:
    started = time.perf_counter()
    proc = subprocess.run(["make", "-s", "demo"], cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"make demo failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return took


def demo_seconds_warm() -> float:
    first = _make_demo()
    print(f"demo_time: first run {first:.1f}s (warms caches if they were cold)", file=sys.stderr)
    warm = _make_demo()
    print(f"demo_time: warm run {warm:.1f}s", file=sys.stderr)
    return warm


if __name__ == "__main__":
    print(f"demo_seconds_warm: {demo_seconds_warm():.1f}")
