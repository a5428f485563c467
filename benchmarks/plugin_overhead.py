"""plugin_overhead_ratio: 10,000 exact-match cases through pytest-aie on the scripted engine,
wall time divided by a plain parametrized pytest test doing the same comparison.

Both runs are fresh pytest processes on generated files, alternated and repeated; the figure
is the ratio of the median wall times. The pytest-aie run includes everything a user pays for:
dataset loading, whole-suite batched generation, scoring, the results log and the HTML report.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AIE_TEST = '''
import pytest

@pytest.mark.dataset("cases.jsonl")
@pytest.mark.exact("match", normalize="all")
def test_exact(case):
    """The exact marker scores the case's output after the body."""
'''

PLAIN_TEST = '''
import json, re, string
from pathlib import Path
import pytest

_PUNCT = str.maketrans("", "", string.punctuation)
_ARTICLES = re.compile(r"\\b(a|an|the)\\b", re.IGNORECASE)
HERE = Path(__file__).parent
ANSWERS = {row["prompt"]: row["answer"] for row in map(json.loads, (HERE / "answers.jsonl").open())}
CASES = [json.loads(line) for line in (HERE / "cases.jsonl").open()]

def norm(text):
    text = _ARTICLES.sub(" ", text.casefold().translate(_PUNCT))
    return " ".join(text.split())

@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_exact(case):
    assert norm(ANSWERS[case["prompt"]]) == norm(case["expected"])
'''


def _write(folder: Path, n: int, test: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "cases.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"id": f"c{i}", "prompt": f"question {i}?",
                                 "expected": f"Answer {i}"}) + "\n")
    with (folder / "answers.jsonl").open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"prompt": f"question {i}?", "answer": f"answer {i}."}) + "\n")
    (folder / "test_suite.py").write_text(test)
    (folder / "pytest.ini").write_text("[pytest]\naie_engine = scripted\naie_model = answers.jsonl\n"
                                       "aie_cache = off\n")


def _run(folder: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:randomly", str(folder)], cwd=folder, capture_output=True,
                          text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark run failed in {folder}:\n{proc.stdout[-2000:]}")
    return took


def plugin_overhead_ratio(n: int = 10_000, repeats: int = 3) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        aie, plain = Path(tmp) / "aie", Path(tmp) / "plain"
        _write(aie, n, AIE_TEST)
        _write(plain, n, PLAIN_TEST)
        aie_times, plain_times = [], []
        for i in range(repeats):
            plain_times.append(_run(plain))
            aie_times.append(_run(aie))
            print(f"plugin_overhead: round {i + 1}/{repeats}: plain {plain_times[-1]:.2f}s, "
                  f"pytest-aie {aie_times[-1]:.2f}s", file=sys.stderr)
        return statistics.median(aie_times) / statistics.median(plain_times)


if __name__ == "__main__":
    print(f"plugin_overhead_ratio: {plugin_overhead_ratio():.3f}")
