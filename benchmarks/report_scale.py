"""The HTML report at scale: size, time to open and time to filter, for 1k, 10k and 100k cases.

Prints ``report_1k_mb``, ``report_10k_mb``, ``report_100k_mb`` (file size, MB = 10^6 bytes),
``report_1k_open_s``, ``report_10k_open_s``, ``report_100k_open_s`` (from navigation until the
first page of rows is shown and a click on a row opens its drill-down) and
``report_100k_filter_s`` (typing a filter term until the table shows the filtered rows), in
headless system Chromium (tests/browser.py). Rendering time goes to stderr.

The records are synthetic but shaped like a real run's (:class:`pytest_aie.results.records.CaseRecord`):
several suites, metrics and tags, outputs of a few hundred characters, a fifth of the cases
failing, judge rationales, retrieved passages, repeated samples on a few, latency timings.
:func:`synthetic_run` is also what the report's browser tests and the README screenshot use.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

WORDS = ("the model answer capital city river population because however number result "
         "agent tool search query document passage retrieved relevant summary author year "
         "first second third france paris berlin germany spain madrid italy rome water "
         "energy protein cell function value error step plan reason check correct wrong "
         "likely maybe clearly therefore report table figure method data sample test").split()
SUITES = [("suites/test_qa.py::test_capitals", ["exact.match"]),
          ("suites/test_summaries.py::test_summaries", ["similarity.rougeL", "judge.faithful"]),
          ("suites/test_rag.py::test_rag_answers", ["exact.match", "retrieval.recall_at_5"]),
          ("suites/test_agent.py::test_toolbox", ["agent.success"]),
          ("suites/test_math.py::test_arithmetic", ["exact.match"])]
TAGS = ["geo", "math", "long", "multi-hop", "safety", "easy", "hard", "rare", "numeric", "en"]
MODELS = ["default"]


def _text(rng: random.Random, words: int) -> str:
    out = " ".join(rng.choice(WORDS) for _ in range(words))
    return out[0].upper() + out[1:] + "."


def synthetic_run(n: int, seed: int = 0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A run header and about ``n`` case records (one per case and metric)."""
    from pytest_aie.results.records import FORMAT_VERSION, CaseRecord

    rng = random.Random(seed)
    header = {"type": "run", "format_version": FORMAT_VERSION,
              "started_at": "2026-11-28T14:00:00+00:00", "pytest_aie": "0.1.0",
              "python": "3.11.2", "engine": {"engine": "hf", "model": "SmolLM2-135M-Instruct"},
              "git_commit": "abc1234", "seed": 0, "argv": ["pytest", "suites"]}
    cases: list[dict[str, Any]] = []
    k = 0
    while len(cases) < n:
        suite, metrics = SUITES[k % len(SUITES)]
        prompt = f"[system] Answer briefly.\n[user] Question {k}: {_text(rng, 14)}"
        output = _text(rng, rng.randint(30, 70))
        tags = rng.sample(TAGS, rng.randint(0, 3))
        e2e = rng.lognormvariate(-1.2, 0.4)
        sampled = k % 19 == 0
        for metric in metrics:
            if len(cases) >= n:
                break
            binary = not metric.startswith(("similarity", "retrieval"))
            passed = rng.random() > 0.2
            value = float(passed) if binary else round(rng.betavariate(5, 2), 4)
            rec = CaseRecord(
                suite=suite, case_id=f"case-{k:06d}", nodeid=f"{suite}[case-{k:06d}]",
                metric=metric, model="default", status="passed" if not binary or passed else "failed",
                value=value, passed=passed if binary else None, binary=binary,
                reason="matched" if passed else f"expected {rng.choice(WORDS)!r}, got {output[:30]!r}",
                output=output, expected=rng.choice(WORDS), prompt=prompt, tags=tags,
                source=f"{suite.split('::')[0].replace('test_', '')}.jsonl:{k + 1}", engine="hf",
                model_id="SmolLM2-135M-Instruct", cached=k % 7 == 0,
                finish_reason="length" if k % 31 == 0 else "stop", prompt_tokens=40,
                completion_tokens=60,
                timings={"e2e_s": round(e2e, 4), "ttft_s": round(e2e / 5, 4), "tpot_s": 0.004,
                         "batch_size": 16})
            if binary:
                rec.status = "passed" if passed else "failed"
            else:
                rec.status, rec.passed = "scored", None
            if metric.startswith("judge"):
                rec.details = {"judgments": [
                    {"judge": "judge-model", "order": order, "value": int(passed),
                     "rationale": _text(rng, 25)} for order in ("ab", "ba")]}
            if suite.startswith("suites/test_rag"):
                rec.retrieved = [{"id": f"doc-{rng.randint(0, 9999)}", "score": round(rng.random(), 3),
                                  "text": _text(rng, 30), "rank": r + 1} for r in range(3)]
            if sampled and binary:
                rec.samples = [{"seed": s, "output": output, "passed": passed if s else not passed,
                                "value": None, "reason": "matched"} for s in range(3)]
                rec.consistency = 2 / 3
            cases.append(rec.to_dict())
        k += 1
    return header, cases + _latency_records(cases, seed)


def _latency_records(cases: list[dict[str, Any]], seed: int, most: int = 40) -> list[dict[str, Any]]:
    """A latency suite over the capitals suite's first ``most`` cases: the probe's figures, as
    its scorer keeps them in each record's details (a generator of its own, so the other
    records stay as they were)."""
    from pytest_aie.results.records import CaseRecord

    rng = random.Random(seed + 1)
    out = []
    for case in [c for c in cases if c["suite"] == SUITES[0][0]][:most]:
        ttft = round(rng.lognormvariate(-3.0, 0.3) * 1000, 2)
        gaps = [round(rng.uniform(3.0, 6.0), 2) for _ in range(59)]
        total = round(ttft + sum(gaps), 2)
        suite = "suites/test_speed.py::test_latency"
        out.append(CaseRecord(
            suite=suite, case_id=case["case_id"], nodeid=f"{suite}[{case['case_id']}]",
            metric="latency.e2e_ms", model="default", status="scored", value=total, passed=None,
            binary=False, higher_is_better=False, reason=f"e2e {total:.1f} ms",
            output=case["output"], prompt=case["prompt"], engine="hf",
            model_id="SmolLM2-135M-Instruct", completion_tokens=60,
            details={"ttft_ms": ttft, "tpot_ms": (total - ttft) / 59, "e2e_ms": total,
                     "output_tokens": 60, "tokens_per_s": 60 / (total / 1000), "itl_ms": gaps,
                     "method": "stream", "error": None, "concurrency": 1}).to_dict())
    return out


#: in the page: type ``term`` into the filter box (an input event, as a keystroke sends),
#: resolve with the milliseconds until the case count changes (the filtered rows are shown)
_TYPE_AND_WAIT = """async (term) => {
  const box = document.getElementById('aie-filter'), count = document.getElementById('aie-count');
  const t0 = performance.now();
  return await new Promise(done => {
    const seen = new MutationObserver(() => { seen.disconnect(); done(performance.now() - t0); });
    seen.observe(count, {childList: true, characterData: true, subtree: true});
    box.value = term;
    box.dispatchEvent(new Event('input', {bubbles: true}));
  });
}"""


def _measure(path: Path, filter_term: str | None) -> tuple[float, float | None]:
    """Seconds from navigation until the first page of rows is shown and a click on a row
    has opened its drill-down; and, with ``filter_term``, seconds from typing it (once the
    page has built its search index in the background) until the filtered rows are shown."""
    sys.path.insert(0, str(ROOT / "tests"))
    from browser import chromium_or_skip  # type: ignore[import-not-found]

    with chromium_or_skip() as browser:
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        page = context.new_page()
        started = time.perf_counter()
        page.goto(path.resolve().as_uri(), wait_until="commit", timeout=120_000)
        page.wait_for_selector("tr.case-row", timeout=120_000)
        page.locator("tr.case-row").first.click()
        page.wait_for_selector("tr.detail-row.ready", timeout=120_000)
        opened = time.perf_counter() - started
        filtered = None
        if filter_term is not None:
            page.wait_for_selector("body[data-search-ready]", timeout=120_000)
            print(f"report_scale: search index built {time.perf_counter() - started:.2f}s "
                  "after navigation", file=sys.stderr)
            filtered = page.evaluate(_TYPE_AND_WAIT, filter_term) / 1000
            print(f"report_scale: filter {filter_term!r}: {page.inner_text('#aie-count')}",
                  file=sys.stderr)
        context.close()
    return opened, filtered


def main() -> None:
    from pytest_aie.report.html import render_html

    with tempfile.TemporaryDirectory() as tmp:
        for n, label in ((1_000, "1k"), (10_000, "10k"), (100_000, "100k")):
            header, cases = synthetic_run(n)
            started = time.perf_counter()
            path = render_html(header, cases, None, Path(tmp) / f"report_{label}.html")
            print(f"report_scale: rendered {n} cases in {time.perf_counter() - started:.1f}s",
                  file=sys.stderr)
            size = path.stat().st_size / 1e6
            opened, filtered = _measure(path, "multi-hop paris" if n == 100_000 else None)
            print(f"report_{label}_mb: {size:.2f}", flush=True)
            print(f"report_{label}_open_s: {opened:.2f}", flush=True)
            if filtered is not None:
                print(f"report_{label}_filter_s: {filtered:.3f}", flush=True)


if __name__ == "__main__":
    main()
