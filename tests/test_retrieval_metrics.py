"""The ``retrieval`` eval marker: each metric against hand-computed values and against ranx's own
suite means, the order taken from ranks (never scores), repeats and document-level scoring,
unmeasured cases and errors, and whole pytest runs with a batch target whose generations carry
what they retrieved.

ranx (numba) is imported once per process, before any in-process pytester run (see
``conftest.py``: modules first imported inside such a run are dropped after it)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from math import log2
from types import ModuleType
from typing import Any

import pytest
from components import need_module
from scripted_suite import read_records

from pytest_aie.dataset import Case
from pytest_aie.engines.base import Generation, Request
from pytest_aie.errors import EXIT_HARNESS_ERROR, DatasetError, UsageError
from pytest_aie.retrieval.metrics import (
    NO_RETRIEVED,
    HitRateScorer,
    RetrievalScorer,
    build_retrieval_scorer,
    doc_id,
    parse_metric,
)
from pytest_aie.scorers.base import Sample, Score
from pytest_aie.suite.markers import EVAL_MARKERS, MARKER_HELP


@pytest.fixture(scope="module", autouse=True)
def ranx() -> ModuleType:
    return need_module("ranx", install="pip install -e '.[rag]'")


def hits(*ids: str, scores: list[float] | None = None) -> list[dict[str, Any]]:
    """A ranking as a retriever returns it: best first, 1-based ranks."""
    return [{"id": i, "score": 1.0 / n if scores is None else scores[n - 1], "text": f"text of {i}",
             "rank": n} for n, i in enumerate(ids, 1)]


def sample(relevant: Any, retrieved: list[dict[str, Any]] | None, case_id: str = "c1",
           field: str = "relevant") -> Sample:
    case = Case(id=case_id, fields={"question": "q", field: relevant}, source="cases.jsonl:3")
    return Sample(case=case, request=Request(prompt="q"),
                  generation=Generation(text="", retrieved=retrieved), model="default")


def score(metric: str, relevant: Any, retrieved: list[dict[str, Any]] | None,
          **kwargs: Any) -> Score:
    return build_retrieval_scorer(metric, **kwargs).score_samples([sample(relevant, retrieved)])[0]


# ---------------------------------------------------------------------------- hand-computed values

RANKING = hits("a", "b", "c", "d", "e")  # relevant b (rank 2) and d (rank 4); z never retrieved
BINARY = ["b", "d", "z"]
GRADED = {"a": 0, "b": 3, "d": 1, "z": 2}  # a judged not relevant


@pytest.mark.parametrize("metric, relevant, expected", [
    ("recall@1", BINARY, 0.0),
    ("recall@3", BINARY, 1 / 3),
    ("recall@5", BINARY, 2 / 3),
    ("recall@10", BINARY, 2 / 3),
    ("recall", BINARY, 2 / 3),
    ("precision@3", BINARY, 1 / 3),
    ("precision@5", BINARY, 2 / 5),
    ("precision@10", BINARY, 2 / 10),  # divided by k, also when fewer than k were retrieved
    ("mrr", BINARY, 1 / 2),
    ("mrr@1", BINARY, 0.0),
    ("MRR@2", BINARY, 1 / 2),
    ("map@5", BINARY, (1 / 2 + 2 / 4) / 3),  # averaged over all 3 relevant, z counting 0
    ("map@3", BINARY, (1 / 2) / 3),
    # binary nDCG: gains 1 at ranks 2 and 4; the ideal ranking has 3 relevant at ranks 1-3
    ("ndcg@5", BINARY, (1 / log2(3) + 1 / log2(5)) / (1 + 1 / log2(3) + 1 / log2(4))),
    ("ndcg@3", BINARY, (1 / log2(3)) / (1 + 1 / log2(3) + 1 / log2(4))),
    # graded, ranx's ndcg: linear gain (Jarvelin and Kekalainen), grade / log2(rank + 1);
    # ideal order 3, 2, 1
    ("ndcg@5", GRADED, (3 / log2(3) + 1 / log2(5)) / (3 + 2 / log2(3) + 1 / log2(4))),
    ("ndcg@2", GRADED, (3 / log2(3)) / (3 + 2 / log2(3))),
    # ndcg_burges: exponential gain (2**grade - 1) / log2(rank + 1)
    ("ndcg_burges@5", GRADED, (7 / log2(3) + 1 / log2(5)) / (7 + 3 / log2(3) + 1 / log2(4))),
    # grade 0 is not relevant for the binary metrics: a at rank 1 does not count
    ("mrr", GRADED, 1 / 2),
    ("recall@5", GRADED, 2 / 3),
    ("hit_rate@1", BINARY, 0.0),
    ("hit_rate@2", BINARY, 1.0),
    ("hit_rate@1", GRADED, 0.0),
])
def test_each_metric_against_hand_computed_values(metric: str, relevant: Any,
                                                  expected: float) -> None:
    got = score(metric, relevant, RANKING)
    assert got.value == pytest.approx(expected, abs=1e-12)
    if metric.startswith("hit_rate"):
        assert got.passed is (expected == 1.0) and got.status in ("passed", "failed")
    else:
        assert got.passed is None and got.status == "scored" and "no threshold" in got.reason


def test_metric_names_binary_flags_and_thresholds() -> None:
    recall = build_retrieval_scorer("recall@3", threshold=0.5)
    assert isinstance(recall, RetrievalScorer) and not recall.binary and recall.higher_is_better
    assert recall.metric == "retrieval.recall@3" and recall.bounds == (0.0, 1.0)
    assert recall.required_fields() == ("relevant",)
    assert build_retrieval_scorer("ndcg@10", relevant="qrels").required_fields() == ("qrels",)
    assert build_retrieval_scorer().metric == "retrieval.ndcg@10"  # the marker's default
    assert build_retrieval_scorer(" NDCG@05 ", doc_level=True).metric == "retrieval.doc.ndcg@5"
    hit = build_retrieval_scorer("hit_rate@3")
    assert isinstance(hit, HitRateScorer) and hit.binary
    # a per-case threshold makes a continuous metric pass or fail case by case
    ok = score("recall@3", BINARY, RANKING, threshold=0.3)
    assert ok.passed is True and ok.reason.endswith(">= threshold 0.3")
    low = score("recall@3", BINARY, RANKING, threshold=0.5)
    assert low.passed is False and low.reason.endswith("< threshold 0.5")


# ---------------------------------------------------------------------------- against ranx itself

@pytest.mark.parametrize("metric", ["recall@3", "precision@5", "mrr", "mrr@3", "map@5", "ndcg@5",
                                    "ndcg_burges@10", "hit_rate@2"])
def test_suite_mean_equals_ranx_mean_on_a_random_suite(ranx: ModuleType, metric: str) -> None:
    """25 random graded cases (more than 10: query ids q10.. sort before q2 as text): our
    per-case values, one per sample in the suite's order, average to ranx's own mean, and
    each equals ranx's value for that query."""
    rng = random.Random(f"suite {metric}")
    docs = [f"d{i}" for i in range(30)]
    samples, qrels, run = [], {}, {}
    for q in range(25):
        ranked = rng.sample(docs, rng.randint(1, 12))
        judged = {d: rng.choice([0, 1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(2, 8))}
        judged[rng.choice(list(judged))] = 2  # at least one relevant
        samples.append(sample(judged, hits(*ranked), case_id=f"q{q}"))
        qrels[f"q{q}"] = judged
        run[f"q{q}"] = {d: 100.0 - n for n, d in enumerate(ranked)}
    scores = build_retrieval_scorer(metric).score_samples(samples)
    values = [s.value for s in scores]
    assert all(v is not None for v in values)
    qrels_x, run_x = ranx.Qrels(qrels), ranx.Run(run)
    mean = ranx.evaluate(qrels_x, run_x, metric, return_mean=True)
    assert sum(values) / len(values) == pytest.approx(mean, abs=1e-12)
    per_query = run_x.scores[metric]
    assert values == pytest.approx([per_query[f"q{q}"] for q in range(25)], abs=1e-12)
    spread = len({round(v, 9) for v in values})  # not all equal by chance
    assert spread == 2 if metric.startswith("hit_rate") else spread > 2


# ---------------------------------------------------------------------------- order, repeats, documents

def test_ranks_not_scores_define_the_order(ranx: ModuleType) -> None:
    # distances (lower is better) in rank order: the given ranks stand, not the scores
    distances = hits("b", "a", scores=[0.1, 0.9])
    assert score("mrr", ["a"], distances).value == pytest.approx(1 / 2)
    naive = ranx.evaluate(ranx.Qrels({"q": {"a": 1}}), ranx.Run({"q": {"b": 0.1, "a": 0.9}}), "mrr")
    assert naive == pytest.approx(1.0)  # ranx on the raw scores would put a first
    # tied scores: the ranks decide, for any ids
    for first, second in (("b", "a"), ("a", "b"), ("zz", "aa")):
        tied = hits(first, second, scores=[0.5, 0.5])
        assert score("mrr", [second], tied).value == pytest.approx(1 / 2)
        assert score("mrr", [first], tied).value == pytest.approx(1.0)
    # hits listed out of order: their rank fields order them; without ranks, the list order
    shuffled = [dict(h) for h in reversed(hits("x", "y", "z"))]
    assert score("mrr", ["z"], shuffled).value == pytest.approx(1 / 3)
    unranked = [{"id": h["id"], "score": 0.0} for h in shuffled]
    assert score("mrr", ["z"], unranked).value == pytest.approx(1.0)
    got = score("mrr", ["z"], shuffled)
    assert [r["id"] for r in got.details["ranked"]] == ["x", "y", "z"]


def test_a_repeated_id_counts_once_at_its_first_rank() -> None:
    ranking = hits("x", "x", "y")
    assert score("mrr", ["y"], ranking).value == pytest.approx(1 / 3)  # y keeps rank 3
    assert score("precision@2", ["x"], ranking).value == pytest.approx(1 / 2)
    assert score("recall@2", ["x", "y"], ranking).value == pytest.approx(1 / 2)
    # a repeat never earns gain again: the ideal DCG of one relevant doc is 1
    assert score("ndcg@3", ["x"], ranking).value == pytest.approx(1.0)
    rows = score("recall@3", ["x"], ranking).details["ranked"]
    assert rows == [{"rank": 1, "id": "x", "grade": 1}, {"rank": 2, "id": "x", "grade": 0,
                                                         "repeat": True},
                    {"rank": 3, "id": "y", "grade": 0}]


def test_doc_level_counts_chunks_as_their_document() -> None:
    assert [doc_id(i) for i in ("a#0", "a#12", "a", "v#x", "a#b#3", "#3")] == \
        ["a", "a", "a", "v#x", "a#b", "#3"]
    ranking = hits("a#0", "b#3", "a#1", "c#0")
    relevant = ["a", "c"]
    assert score("recall@2", relevant, ranking).value == 0.0  # chunk ids are not "a"
    assert score("recall@2", relevant, ranking, doc_level=True).value == pytest.approx(1 / 2)
    assert score("recall@4", relevant, ranking, doc_level=True).value == pytest.approx(1.0)
    assert score("mrr", ["c"], ranking, doc_level=True).value == pytest.approx(1 / 4)  # rank kept
    assert score("precision@3", relevant, ranking, doc_level=True).value == pytest.approx(1 / 3)
    assert score("recall@1", ["a#7"], ranking, doc_level=True).value == 1.0  # relevant chunks too
    got = score("recall@4", relevant, ranking, doc_level=True)
    assert got.details["ranked"][2] == {"rank": 3, "id": "a#1", "doc": "a", "grade": 0,
                                        "repeat": True}
    assert got.details["relevant"] == ["a", "a#0", "a#1", "c", "c#0"]  # what the report marks
    assert got.details["doc_level"] is True and got.details["missed"] == []


def test_details_show_the_ranking_and_what_was_missed() -> None:
    got = score("recall@3", GRADED, RANKING)
    assert got.details["ranked"] == [{"rank": 1, "id": "a", "grade": 0},
                                     {"rank": 2, "id": "b", "grade": 3},
                                     {"rank": 3, "id": "c", "grade": 0}]  # the top k only
    assert got.details["missed"] == ["z", "d"]  # best grade first
    assert got.details["relevant"] == ["b", "d", "z"] and got.details["grades"] == GRADED
    assert got.details["k"] == 3 and got.details["metric"] == "recall@3"
    assert got.reason == "recall@3 0.3333: relevant at rank 2; missed z, d; no threshold"
    miss = score("hit_rate@1", BINARY, RANKING)
    assert miss.reason.startswith("hit_rate@1 0.0000: no relevant id in the top 1")
    assert "grades" not in score("mrr", BINARY, RANKING).details  # binary relevance


# ---------------------------------------------------------------------------- never green by accident

def test_unmeasured_cases_say_why() -> None:
    scorer = build_retrieval_scorer("recall@3")
    got = scorer.score_samples([
        sample(["a"], None, "no-retrieved"),
        sample([], hits("a"), "empty-list"),
        sample({"a": 0, "b": 0}, hits("a"), "all-zero"),
        sample(["a"], [{"score": 1.0, "text": "no id"}], "no-id"),
        sample(["a"], "a, b", "not-a-list"),  # type: ignore[arg-type]
        sample(["a"], [], "found-nothing"),
        sample(["a"], hits("a", "b"), "fine"),
    ])
    assert [s.status for s in got] == ["unmeasured"] * 5 + ["scored", "scored"]
    assert got[0].reason == NO_RETRIEVED and "as_target()" in got[0].reason
    assert got[1].reason.startswith("no relevant ids") and got[2].reason.startswith("no relevant ids")
    assert "retrieved[0] has no id" in got[3].reason and "not a list" in got[4].reason
    assert got[5].value == 0.0  # retrieved nothing: a real ranking, and a bad one
    assert got[6].value == 1.0
    assert all(s.metric == "retrieval.recall@3" for s in got)


@pytest.mark.parametrize("relevant, problem", [
    ("a", "must be a list of ids or a dict of id -> grade, not str"),
    (None, "not NoneType"),
    ({"a": -1}, "gives 'a' the grade -1"),
    ({"a": 1.5}, "gives 'a' the grade 1.5"),
    ({"a": True}, "gives 'a' the grade True"),
    (["a", None], "holds None, which is not a document id"),
    ([["a"]], "holds ['a']"),
])
def test_a_malformed_relevant_field_names_the_case(relevant: Any, problem: str) -> None:
    with pytest.raises(DatasetError) as err:
        score("recall@3", relevant, hits("a"))
    assert "case 'c1' (cases.jsonl:3): field 'relevant'" in str(err.value)
    assert problem in str(err.value) and "graded" in (err.value.fix or "")


def test_whole_number_grades_and_int_ids_are_accepted() -> None:
    assert score("ndcg@2", {"a": 2.0, "b": 1}, hits("a", "b")).value == pytest.approx(1.0)
    assert score("mrr", [7], hits("3", "7")).value == pytest.approx(1 / 2)


@pytest.mark.parametrize("metric", ["foo@3", "ndcg@0", "ndcg@x", "recall@-1", "recall@", "",
                                    "ndcg@10@2", 5, None])
def test_an_unknown_metric_or_bad_k_lists_the_metrics(metric: Any) -> None:
    with pytest.raises(UsageError) as err:
        parse_metric(metric)
    assert f"retrieval({metric!r})" in str(err.value)
    for name in ("recall@k", "precision@k", "mrr", "ndcg@k", "hit_rate@k", "map@k"):
        assert name in (err.value.fix or "")


@pytest.mark.parametrize("kwargs, message", [
    ({"metric": "hit_rate@3", "threshold": 0.5}, "a hit rate is already pass/fail per case"),
    ({"threshold": 1.5}, "threshold=1.5) must be a number in [0, 1]"),
    ({"threshold": "0.5"}, "threshold='0.5') must be a number"),
    ({"relevant": ""}, "relevant='') must name a case field"),
    ({"doc_level": "yes"}, "doc_level='yes') must be True or False"),
])
def test_bad_marker_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        build_retrieval_scorer(**kwargs)


def test_the_marker_is_registered_and_importing_stays_light() -> None:
    assert "retrieval" in EVAL_MARKERS and MARKER_HELP["retrieval"].startswith("retrieval(")
    code = ("import sys, pytest_aie.plugin, pytest_aie.suite.spec; "
            "print(sorted(m for m in ('ranx', 'numba', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


# ---------------------------------------------------------------------------- whole runs

INI = "[pytest]\naie_engine = scripted\naie_model = answers.jsonl\naie_cache = off\n"

APP = """
import pytest
from pytest_aie.engines.base import Generation

RANKINGS = {rankings!r}


class Search:
    \"\"\"A tiny batch target: each case's canned ranking, best first.\"\"\"

    target_label = "tiny-search"

    def target_identity(self, model):
        return "tiny-search-v1"

    def run_cases(self, cases, model):
        out = []
        for case in cases:
            ids = RANKINGS[case.id]
            out.append(Generation(text=", ".join(ids), retrieved=[
                {{"id": i, "score": 1.0 / n, "text": "passage " + i, "rank": n}}
                for n, i in enumerate(ids, 1)]))
        return out


SEARCH = Search()


@pytest.mark.dataset("cases.jsonl", target=SEARCH)
{markers}
def test_search(case, output):
    assert output.retrieved is not None
"""


def whole_run(pytester: pytest.Pytester, rankings: dict[str, list[str]],
              markers: str, cases: list[dict[str, Any]] | None = None) -> pytest.RunResult:
    if cases is None:
        cases = [{"id": cid, "question": f"where is {cid}?", "relevant": [f"{cid}-1", f"{cid}-2"]}
                 for cid in rankings]
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(c) for c in cases), answers="")
    pytester.makeini(INI)
    pytester.makepyfile(test_app=APP.format(rankings=rankings, markers=markers))
    return pytester.runpytest("-p", "no:randomly")


def rankings_with(full: int, half: int) -> dict[str, list[str]]:
    """``full`` cases with both relevant ids in the top 3 (recall@3 1.0, relevant at rank 1),
    ``half`` with one of them at rank 2 (0.5, and no hit at rank 1)."""
    out = {f"c{i}": [f"c{i}-1", "noise", f"c{i}-2"] for i in range(full)}
    out.update({f"h{i}": ["noise", f"h{i}-1", "other"] for i in range(half)})
    return out


def test_a_retriever_target_passing_and_failing_its_gates(pytester: pytest.Pytester) -> None:
    markers = ('@pytest.mark.retrieval("recall@3", min_score=0.5)\n'
               '@pytest.mark.retrieval("hit_rate@1", min_pass_rate=0.5)')
    good = whole_run(pytester, rankings_with(12, 4), markers)
    assert good.ret == 0, good.stdout.str()
    good.stdout.fnmatch_lines([
        "*test_search [[]retrieval.hit_rate@1[]]: 12/16 passed, 4 failed*-> PASS*",
        "*test_search [[]retrieval.recall@3[]]: *mean score 0.875*-> PASS (threshold 0.5)",
    ])
    recs = [r for r in read_records(pytester) if r["metric"] == "retrieval.recall@3"]
    assert len(recs) == 16 and all(r["binary"] is False for r in recs)
    h0 = next(r for r in recs if r["case_id"] == "h0")
    assert h0["value"] == 0.5 and h0["details"]["missed"] == ["h0-2"]
    assert h0["retrieved"][1]["id"] == "h0-1" and h0["details"]["relevant"] == ["h0-1", "h0-2"]
    assert "relevant at rank 2; missed h0-2" in h0["reason"]
    nothing = {f"z{i}": ["noise"] for i in range(12)}  # no relevant id retrieved: 0.0
    bad = whole_run(pytester, {**rankings_with(0, 4), **nothing}, markers)
    assert bad.ret == 1, bad.stdout.str()
    bad.stdout.fnmatch_lines([
        "*test_search [[]retrieval.hit_rate@1[]]: 0/16 passed, 16 failed*-> FAIL (threshold 0.5)",
        "*test_search [[]retrieval.recall@3[]]: *mean score 0.125*-> FAIL (threshold 0.5)",
        "*GATE FAILED: 2 suite gate(s) failed*",
    ])


def test_outputs_without_retrieved_passages_are_unmeasured(pytester: pytest.Pytester) -> None:
    pytester.makefile(".jsonl", cases="\n".join(json.dumps(
        {"id": f"c{i}", "question": "q", "relevant": ["a"]}) for i in range(3)), answers="")
    pytester.makeini(INI)
    pytester.makepyfile(test_app=textwrap.dedent("""
        import pytest

        def plain(case):
            return "a, b"

        @pytest.mark.dataset("cases.jsonl", target=plain)
        @pytest.mark.retrieval("recall@3", min_score=0.5)
        def test_search(case, output):
            pass
    """))
    result = pytester.runpytest("-p", "no:randomly")
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()  # a suite measuring nothing
    result.stdout.fnmatch_lines(["*[[]retrieval.recall@3[]]: none of 3 cases was measured (the "
                                 "output carries no retrieved passages: use target=*"])
    assert all(r["status"] == "unmeasured" and r["reason"] == NO_RETRIEVED
               for r in read_records(pytester))


@pytest.mark.parametrize("markers, cases, message", [
    ('@pytest.mark.retrieval("recall@three")', None,
     "*retrieval('recall@three'): unknown metric*recall@k, precision@k*"),
    ('@pytest.mark.retrieval("recall@3", relevnt="x")', None, "*unknown argument 'relevnt'*"),
    ('@pytest.mark.retrieval("recall@3")', [{"id": "c0", "question": "q"}], "*relevant*"),
    ('@pytest.mark.retrieval("recall@3")', [{"id": "c0", "question": "q", "relevant": "c0-1"}],
     "*case 'c0' (*cases.jsonl:1): field 'relevant' must be a list of ids*"),
])
def test_usage_and_dataset_errors_exit_10(pytester: pytest.Pytester, markers: str,
                                          cases: list[dict[str, Any]] | None, message: str) -> None:
    result = whole_run(pytester, {"c0": ["c0-1"]}, markers, cases)
    assert result.ret == EXIT_HARNESS_ERROR, result.stdout.str()
    result.stdout.fnmatch_lines([message])
