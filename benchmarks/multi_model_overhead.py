"""multi_model_overhead_ratio: a three-model scripted suite of 3,000 exact-match cases
(``models=["a", "b", "c"]``: 9,000 test items, a record per case and model, a paired comparison
per pair of models), wall time of one pytest process, divided by the sum of three single-model
runs of the same cases (one pytest process per model, ``aie_engine = scripted`` and
``aie_model`` that model's answers).

Every run is a fresh pytest process on generated files, cache off, results log and HTML report
on (the defaults a user gets). The four runs are alternated and repeated; the figure is the
median three-model time over the median of the rounds' single-model sums.

The models' answers differ a little (each misses a different 5% of the cases), so the gates
and the paired comparisons have discordant pairs to work on; the exact marker has a suite gate
(``min_pass_rate=0.5``), so a missed case is left to the gate (xfailed) and every run exits 0.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plugin_overhead import _run, _write  # noqa: E402

MODELS = ("a", "b", "c")

TEST = '''
import pytest

@pytest.mark.dataset("cases.jsonl"{models})
@pytest.mark.exact("match", normalize="all", min_pass_rate=0.5)
def test_exact(case):
    """The exact marker scores each model's output after the body."""
'''


def _answers(folder: Path, n: int) -> None:
    """One answers file per model: model ``k`` misses the cases with ``i % 20 == k``."""
    for k, name in enumerate(MODELS):
        with (folder / f"{name}.jsonl").open("w") as fh:
            for i in range(n):
                answer = f"answer {i}." if i % 20 != k else f"not {i}"
                fh.write(json.dumps({"prompt": f"question {i}?", "answer": answer}) + "\n")


def _suite(folder: Path, n: int, ini: str, models: str = "") -> None:
    """``plugin_overhead``'s cases and test file, the models' answers and this run's ini."""
    _write(folder, n, TEST.format(models=models))
    (folder / "answers.jsonl").unlink()  # plugin_overhead's single answer file: unused here
    _answers(folder, n)
    (folder / "pytest.ini").write_text(f"[pytest]\n{ini}aie_cache = off\n")


def multi_model_overhead_ratio(n: int = 3_000, repeats: int = 3) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        multi = Path(tmp) / "multi"
        spec = ",".join(f"{m}=scripted:{m}.jsonl" for m in MODELS)
        _suite(multi, n, f"aie_models = {spec}\n", models=f", models={list(MODELS)!r}")
        singles = {m: Path(tmp) / f"single_{m}" for m in MODELS}
        for m, folder in singles.items():
            _suite(folder, n, f"aie_engine = scripted\naie_model = {m}.jsonl\n")
        multi_times: list[float] = []
        single_sums: list[float] = []
        for i in range(repeats):
            took = {m: _run(folder) for m, folder in singles.items()}
            multi_times.append(_run(multi))
            single_sums.append(sum(took.values()))
            print(f"multi_model_overhead: round {i + 1}/{repeats}: three models in one run "
                  f"{multi_times[-1]:.2f}s; one run per model "
                  + ", ".join(f"{m} {t:.2f}s" for m, t in took.items())
                  + f" (sum {single_sums[-1]:.2f}s)", file=sys.stderr, flush=True)
        return statistics.median(multi_times) / statistics.median(single_sums)


if __name__ == "__main__":
    print(f"multi_model_overhead_ratio: {multi_model_overhead_ratio():.3f}")
