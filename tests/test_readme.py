"""The README's examples and the parameters they need, checked against the code: every Python
block parses and its pytest_aie imports exist, the "Write an eval suite" example runs as
written, a list in ``expected`` means what the README says, and the paths and fields the
retrieval example relies on (corpus and label paths, ``as_target``'s ``query``) behave as
documented."""

from __future__ import annotations

import ast
import importlib
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from scripted_suite import INI, read_records, write_answers

from pytest_aie.errors import UsageError

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.M | re.S)


def section(title: str) -> str:
    return README.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_python_block_parses_and_its_pytest_aie_imports_exist() -> None:
    found = blocks("python")
    assert len(found) >= 10
    imported = 0
    for code in found:
        tree = ast.parse(code)  # a SyntaxError names the block's line
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_aie"):
                module = importlib.import_module(node.module or "")
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
                    imported += 1
    assert imported >= 8


def test_the_readme_says_where_generation_is_imported_from() -> None:
    # a RAG target returns a Generation: the README names the import, and it is the class the
    # pipeline accepts from a target
    from pytest_aie.engines.base import Generation

    line = "from pytest_aie.engines.base import Generation"
    assert line in README
    code = next(b for b in blocks("python") if line in b)
    namespace: dict[str, Any] = {}
    exec(compile(line, "README", "exec"), namespace)  # noqa: S102 - the README's own line
    assert namespace["Generation"] is Generation
    assert "Generation" in code.split(line, 1)[1]  # used by the example below the import


# --------------------------------------------------------------- a list in expected

def test_one_meaning_for_a_list_in_expected_stated_once() -> None:
    from pytest_aie.scorers.exact import ALTERNATIVES, KINDS

    assert "a list: any of them counts" in section("### Datasets")
    kinds = README.split("Exact eval kinds (", 1)[1].split("\n\n", 1)[0]
    # the exact kinds paragraph refers to the dataset table instead of giving its own meaning
    assert "any of them counts" not in kinds and "(every expected string" not in kinds
    assert "`contains_all`" in kinds and set(KINDS) >= set(ALTERNATIVES) | {"contains_all"}
    for kind in KINDS:
        assert f"`{kind}`" in kinds, kind


def _capitals(pytester: pytest.Pytester, kind: str, answers: dict[str, str]) -> list[dict[str, Any]]:
    """The README's capitals example, written as the README shows it, with ``kind`` in place of
    its any_of; returns the case records."""
    suite = section("## Write an eval suite")
    (data,) = blocks("json", suite)[:1]
    test = blocks("python", suite)[0]
    assert '@pytest.mark.exact("any_of"' in test
    pytester.makefile(".jsonl", capitals=data)
    pytester.makepyfile(test_capitals=test.replace('exact("any_of"', f'exact("{kind}"'))
    write_answers(pytester, {f"What is the capital of {c}? Answer with the city name only.": a
                             for c, a in answers.items()})
    pytester.makeini(textwrap.dedent(INI))
    pytester.runpytest_inprocess("-p", "no:randomly")
    return sorted(read_records(pytester), key=lambda r: r["case_id"])


@pytest.mark.parametrize("kind, india_passes", [("any_of", True), ("contains", True),
                                                ("match", False), ("contains_all", False)])
def test_the_capitals_example_reads_a_list_as_alternatives(
        pytester: pytest.Pytester, kind: str, india_passes: bool) -> None:
    # India's expected is ["New Delhi", "Delhi"]; "It is Delhi." holds the second only: enough
    # for the kinds that look for one alternative in the answer, not for match (the whole answer
    # equals neither) nor for contains_all (it needs "New Delhi" too)
    records = _capitals(pytester, kind, {"France": "Paris", "India": "It is Delhi."})
    assert {r["case_id"]: r["passed"] for r in records} == {"france": True,
                                                           "india": india_passes}, records


def test_contains_all_is_the_explicit_way_to_need_every_string(pytester: pytest.Pytester) -> None:
    records = _capitals(pytester, "contains_all", {"France": "Paris", "India": "New Delhi"})
    assert {r["case_id"]: r["passed"] for r in records} == {"france": True, "india": True}


# --------------------------------------------------------------- paths and fields

RAG_TEST = '''
import pytest

from pytest_aie.engines.base import Generation
from pytest_aie.retrieval import BM25

SEARCH = BM25(corpus="rag/corpus.jsonl")


def answer(case):
    hits = SEARCH.search([case["ask"]], k=1)[0]
    return Generation(text=hits[0].text, retrieved=[hit.to_dict() for hit in hits])


@pytest.mark.dataset("rag/questions.jsonl", target=SEARCH.as_target(k=1, query="ask"))
@pytest.mark.retrieval("hit_rate@1")
def test_search(case, output):
    pass


@pytest.mark.dataset("rag/questions.jsonl", target=answer)
@pytest.mark.retrieval("hit_rate@1")
@pytest.mark.exact("contains", field="answer")
def test_answer(case, output):
    pass
'''


def test_corpus_and_dataset_paths_are_next_to_the_test_file_and_query_names_the_field(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    # run from the project root, the suite in suites/: every relative path is found next to the
    # test file, and the cases' query field is "ask", not the default "question"
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(pytester.path / "cache"))
    rag = pytester.path / "suites" / "rag"
    rag.mkdir(parents=True)
    (rag / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"id": "eiffel", "text": "The Eiffel Tower stands in Paris."},
        {"id": "everest", "text": "Mount Everest is 8849 metres tall."}]))
    (rag / "questions.jsonl").write_text("\n".join(json.dumps(c) for c in [
        {"id": "q1", "ask": "Eiffel Tower city", "relevant": ["eiffel"], "answer": "Paris"},
        {"id": "q2", "ask": "Everest metres", "relevant": ["everest"], "answer": "8849"}]))
    (pytester.path / "suites" / "test_rag_doc.py").write_text(RAG_TEST)
    write_answers(pytester, {})
    pytester.makeini(textwrap.dedent(INI))
    result = pytester.runpytest_subprocess("-p", "no:randomly", "suites/test_rag_doc.py")
    assert result.ret == 0, result.stdout.str()
    records = read_records(pytester)
    assert len(records) == 6 and all(r["passed"] for r in records), records


def test_as_target_without_the_query_field_names_the_parameter() -> None:
    from pytest_aie.dataset import Case
    from pytest_aie.retrieval import BM25

    target = BM25(corpus=["red apples"], cache_dir=False).as_target(k=1)  # query="question"
    (out,) = target.run_cases([Case(id="c", fields={"ask": "apples"})])
    assert out.finish_reason == "error" and "has no 'question' field" in (out.error or "")
    assert "as_target(query=...)" in (out.error or "")


def _judge(base_dir: Path, human_file: str) -> Any:
    from pytest_aie.judge.scorer import build_judge

    return build_judge("correctness", base_dir=base_dir, human_file=human_file)


def test_a_human_labels_file_is_found_next_to_the_test_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "labels.jsonl").write_text('{"id": "c1", "label": "pass"}\n')
    (tmp_path / "cwd_labels.jsonl").write_text('{"id": "c1", "label": "fail"}\n')
    monkeypatch.chdir(tmp_path)  # the working directory is not the test file's folder
    judge = _judge(suites, "labels.jsonl")
    assert judge.human.path == suites / "labels.jsonl"
    assert judge.human._file == {"c1": {"label": "pass", "output": None}}
    with pytest.raises(UsageError, match=re.escape(str(suites / "cwd_labels.jsonl"))):
        _judge(suites, "cwd_labels.jsonl")  # in the working directory only: not found
    paths = README.split("**Relative paths.**", 1)[1].split("\n\n", 1)[0]
    for name in ("dataset", "schema=", "human_file=", "corpus="):
        assert name in paths, name
