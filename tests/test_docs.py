"""Every code block of README.md and docs/**/*.md runs here, so the documentation cannot drift
from the code.

A block is named by the line just before it when that line starts with the file's name in
backticks and ends with a colon (`` `suites/capitals.jsonl`, one case per line: ``). Then:

* a Python block with a ``test_`` function is a suite: it is written to a temporary folder with
  the data files, rubrics and ``conftest.py`` blocks of its page section, and run with pytest on
  the scripted engine (:func:`docs_answers.reply` answers every prompt, judges included);
* a ``conftest.py`` block is written next to the suites of its section, which must use it;
* a data block (``json``, ``yaml``, ``csv``, ``jinja``) must be named, must parse, and must be
  used by a suite of its section;
* a shell block (``sh``, ``bash``, ``console``) is run line by line, unless it is listed in
  :data:`NOT_RUN` with the reason;
* a ``text`` block is output or a formula, never run.

The rest checks what the blocks cannot: the README's length, every relative link, the public
imports, the options table, and the facts that moved here from the README's tests.
"""

from __future__ import annotations

import ast
import configparser
import csv
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from scripted_suite import INI, read_records, write_answers

import pytest_aie
from pytest_aie.errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
README = (ROOT / "README.md").read_text(encoding="utf-8")

DATA = {"json", "yaml", "csv", "jinja", "ini"}
SHELL = {"sh", "bash", "console"}
LANGUAGES = DATA | SHELL | {"python", "text"}

#: shell blocks that cannot run inside the test suite, by page and first line, with the reason
NOT_RUN = {
    ("README.md", "make demo   # creates .venv"): "installs the project and runs the embedded "
    "model over every example suite (minutes); the CI job runs it",
    ("README.md", "pip install torch==2.13.0"): "installs packages from the network into an "
    "environment (a fresh project's, not this one)",
    ("docs/development.md", "make bench ONLY=judge_batching,report_scale"): "the benchmarks "
    "take minutes to an hour of the machine; tests/test_bench.py runs their scripts' checks",
    ("docs/development.md", ".venv/bin/pip install mutmut"): "installs mutmut from the network "
    "and mutates a clone for 6 to 20 minutes",
    ("docs/development.md", "CI=true bash .ci/run"): "the whole CI job (every test, the vLLM "
    "tier): it is what runs this test",
}


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence
    lang: str
    code: str
    name: str | None  # the file name the text gives it
    section: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def kind(self) -> str:
        if self.lang == "python":
            if self.name and Path(self.name).name == "conftest.py":
                return "conftest"
            return "suite" if re.search(r"^(async )?def test_", self.code, re.M) else "module"
        return "data" if self.lang in DATA else self.lang


_NAMED = re.compile(r"^`([\w./-]+\.\w+)`[^`]*:$")


def parse(path: Path) -> list[Block]:
    rel = path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").split("\n")
    found: list[Block] = []
    section, i = "", 0
    while i < len(lines):
        line = lines[i]
        if re.match(r"^#{1,3} ", line):
            section = line.lstrip("#").strip()
        if line.lstrip().startswith("```"):  # a block inside a list item is indented
            indent = len(line) - len(line.lstrip())
            lang = line.strip()[3:].strip()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            named = _NAMED.match(before.strip())
            code = "\n".join(x[indent:] for x in lines[i + 1:end]) + "\n"
            found.append(Block(rel, i + 1, lang, code, named[1] if named else None, section))
            i = end
        i += 1
    return found


BLOCKS = [b for page in PAGES for b in parse(page)]


def blocks_of(kind: str) -> list[Any]:
    marks = {"suite": lambda b: [pytest.mark.slow] if _heavy(b) else []}
    return [pytest.param(b, id=b.id, marks=marks.get(kind, lambda b: [])(b))
            for b in BLOCKS if b.kind == kind]


def _heavy(block: Block) -> bool:
    """Suites that load a real embedding model: run in a subprocess, marked slow."""
    return bool(re.search(r"Dense\(|similarity\(\"(cosine|bertscore)", block.code))


def _section(block: Block) -> list[Block]:
    return [b for b in BLOCKS if (b.page, b.section) == (block.page, block.section)]


# ------------------------------------------------------------------ every block is accounted for

def test_every_block_has_a_known_language_and_named_data() -> None:
    assert len(BLOCKS) >= 30
    for b in BLOCKS:
        assert b.lang in LANGUAGES, f"{b.id}: a ```{b.lang} block: give it one of {sorted(LANGUAGES)}"
        if b.kind in ("data", "conftest", "module"):
            assert b.name, (f"{b.id}: a {b.lang} block needs its file name in backticks on the "
                            "line before it (`name.jsonl`:), so the suites that read it find it")
        if b.lang == "python" and b.name and b.name != "conftest.py":
            # run in process, a block's module would be taken for this folder's module
            assert not (ROOT / "tests" / Path(b.name).name).exists(), (
                f"{b.id}: {b.name} has the name of a module of tests/: name it otherwise")


def test_every_shell_block_is_run_or_listed_with_its_reason() -> None:
    listed = {(b.page, first_line(b)) for b in BLOCKS if b.kind in SHELL}
    assert set(NOT_RUN) <= listed, f"listed but no such block: {set(NOT_RUN) - listed}"


def first_line(block: Block) -> str:
    line = block.code.split("\n", 1)[0]
    return next((key for page, key in NOT_RUN if page == block.page and line.startswith(key)), line)


# ------------------------------------------------------------------ suites on the scripted engine

ANSWERS = '''
import json
import re


def reply(request):
    """Every prompt's answer: a judge's JSON verdict for judge requests, a text-protocol answer
    for agents, else the prompt's last word and a number."""
    text = request.prompt if request.prompt is not None else request.messages[-1]["content"]
    system = "" if request.prompt is not None else request.messages[0]["content"]
    if "<<<ANSWER" in text or "judge" in system.lower():
        answers = dict(re.findall(r"<<<ANSWER ?(A|B)? [0-9a-f]+>>>\\n(.*?)\\n<<<END", text, re.S))
        good = len(text) % 2 == 0
        winner = ("A" if len(answers.get("A", "")) >= len(answers.get("B", "")) else "B")
        return json.dumps({"rationale": "scripted", "verdict": "pass" if good else "fail",
                           "score": 3 if good else 1, "winner": winner})  # the longer answer
    if text.rstrip().endswith("yes/no"):
        return "yes" if len(text) % 2 == 0 else "no"
    if "To call a tool:" in system:  # the agent's text protocol: look it up, then answer
        if any(m["role"] == "assistant" for m in request.messages):
            return json.dumps({"answer": request.messages[-1]["content"]})
        field = "currency" if "currency" in text else "capital"
        return json.dumps({"tool": "lookup", "arguments": {"country": "Japan", "field": field}})
    words = re.findall(r"\\w+", text)
    return f"{words[-1] if words else 'ok'}. Answer: 42" + (f" ({system})" if system else "")
'''


def _write_section(pytester: pytest.Pytester, block: Block) -> Path:
    """The section's named files, the answers module and the ini; returns the suite's path."""
    for other in _section(block):
        if other.name and other.kind in ("data", "conftest", "module", "suite"):
            path = pytester.path / other.name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(other.code, encoding="utf-8")
    if block.name:
        return pytester.path / block.name
    folder = pytester.path
    for data in re.findall(r"dataset\(\s*\"([^\"]+)\"", block.code):
        match = [b.name for b in _section(block) if b.name and b.name.endswith(data)]
        if match:
            folder = pytester.path / match[0][: len(match[0]) - len(data)]
    path = folder / f"test_block_{block.line}.py"
    path.write_text(block.code, encoding="utf-8")
    return path


def _ini(pytester: pytest.Pytester, block: Block) -> None:
    """The section's own pytest.ini, else the scripted engine answering with docs_answers."""
    (pytester.path / "docs_answers.py").write_text(ANSWERS, encoding="utf-8")
    pytester.syspathinsert()
    if any(b.name == "pytest.ini" for b in _section(block)):
        return
    pytester.makeini(textwrap.dedent("""
        [pytest]
        aie_engine = scripted
        aie_model = docs_answers:reply
        aie_judge = scripted:docs_answers:reply
        aie_cache = off
    """))


@pytest.mark.parametrize("block", blocks_of("suite"))
def test_suite_block_runs(block: Block, pytester: pytest.Pytester,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_AIE_CACHE_DIR", str(pytester.path / "cache"))
    path = _write_section(pytester, block)
    _ini(pytester, block)
    args = ("-p", "no:randomly", "-p", "no:cacheprovider", str(path))
    result = (pytester.runpytest_subprocess(*args) if _heavy(block)  # torch: not in process
              else pytester.runpytest_inprocess(*args))
    out = result.stdout.str()
    assert result.ret in (0, 1), f"{block.id}: exit {result.ret}\n{out[-3000:]}"
    assert "error" not in result.parseoutcomes() and "errors" not in result.parseoutcomes(), out
    # cases may fail their evals (the scripted answers are not all right), never the checks the
    # block's own test bodies make
    assert not re.search(r"AssertionError|^E\s+assert", out, re.M), out[-3000:]
    records = read_records(pytester)
    assert records, f"{block.id}: no case was scored\n{out[-3000:]}"
    suites = {r["suite"].split("::")[-1] for r in records}
    defined = set(re.findall(r"^(?:async )?def (test_\w+)", block.code, re.M))
    evals = {name for name in defined
             if re.search(rf"@pytest\.mark\.(exact|similarity|judge|elo|retrieval|agent|latency|"
                          rf"within_budget|graded)\b[^\n]*\n(?:@[^\n]*\n|\s[^\n]*\n)*(?:async )?def {name}\b",
                          block.code)}
    assert evals <= suites, f"{block.id}: no records for {evals - suites}\n{out[-3000:]}"


@pytest.mark.parametrize("block", blocks_of("data"))
def test_data_block_parses_and_a_suite_reads_it(block: Block) -> None:
    assert block.name is not None
    suffix = Path(block.name).suffix
    if suffix == ".jsonl":
        for line in block.code.splitlines():
            assert isinstance(json.loads(line), dict), line
    elif suffix == ".json":
        json.loads(block.code)
    elif suffix in (".yaml", ".yml"):
        yaml.safe_load(block.code)
    elif suffix == ".ini":
        configparser.ConfigParser().read_string(block.code)
    elif suffix == ".csv":
        rows = list(csv.reader(io.StringIO(block.code)))
        assert len({len(row) for row in rows}) == 1, rows
    users = [b for b in _section(block) if b.kind in ("suite", "conftest", "module")
             and Path(block.name).stem.split(".")[0] in b.code]
    assert users, f"{block.id}: no suite of the section {block.section!r} reads {block.name}"


@pytest.mark.parametrize("block", blocks_of("conftest") + blocks_of("module"))
def test_support_block_is_used_by_a_suite_of_its_section(block: Block) -> None:
    ast.parse(block.code)
    assert any(b.kind == "suite" for b in _section(block)), (
        f"{block.id}: {block.name} is run with the suites of its section, and it has none")


# ------------------------------------------------------------------ shell blocks

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder after a run of the README's example on the scripted engine (its results log
    and report), with the repository's scripts/: where the shell blocks run."""
    folder = tmp_path_factory.mktemp("run")
    example = [b for b in BLOCKS if b.page == "README.md" and b.name]
    for b in example:
        (folder / b.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / b.name).write_text(b.code, encoding="utf-8")
    (folder / "docs_answers.py").write_text(ANSWERS, encoding="utf-8")
    (folder / "pytest.ini").write_text(textwrap.dedent("""
        [pytest]
        aie_engine = scripted
        aie_model = docs_answers:reply
        aie_cache = off
    """), encoding="utf-8")
    (folder / "scripts").symlink_to(ROOT / "scripts")
    _shell("pytest -p no:randomly suites/test_capitals.py", folder)
    assert (folder / "aie-results" / "results.jsonl").exists()
    return folder


def _shell(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
               PYTHONPATH=os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")])),
               PYTEST_AIE_CACHE_DIR=str(cwd / "cache"))
    env.pop("GITHUB_STEP_SUMMARY", None)
    run = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=300)
    out = run.stdout + run.stderr
    # 1: evals failed (the scripted answers are not all right); anything else is a problem
    assert run.returncode in (0, 1) and "Traceback" not in out and "INTERNALERROR" not in out, (
        f"{command}: exit {run.returncode}\n{out[-3000:]}")
    return run


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in BLOCKS if b.kind in SHELL])
def test_shell_block_runs(block: Block, request: pytest.FixtureRequest) -> None:
    key = (block.page, first_line(block))
    if key in NOT_RUN:
        assert NOT_RUN[key], key
        return
    folder = request.getfixturevalue("finished_run")
    for line in block.code.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            _shell(line, folder)
            for path in re.findall(r"aie-results/[\w.]+", line):  # what it reads or writes
                assert (folder / path).is_file(), f"{block.id}: {line}: no {path} after it"


# ------------------------------------------------------------------ the pages themselves

def test_the_readme_is_at_most_250_lines() -> None:
    assert len(README.splitlines()) <= 250


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    out = set()
    for heading in re.findall(r"^#+ (.*)$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        out.add(slug)
    return out


def test_every_relative_link_points_to_a_file_and_anchor_that_exist() -> None:
    checked = 0
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            assert path.exists(), f"{page.relative_to(ROOT)}: link to missing {target}"
            if anchor:
                assert anchor in _anchors(path), f"{page.relative_to(ROOT)}: no #{anchor} in {file}"
            checked += 1
    assert checked >= 30


def test_the_pages_import_only_the_public_face() -> None:
    """README and docs import from ``pytest_aie`` itself, and every name they import is in
    its ``__all__``."""
    imported = set()
    for b in BLOCKS:
        if b.lang != "python":
            continue
        for node in ast.walk(ast.parse(b.code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_aie"):
                assert node.module == "pytest_aie", f"{b.id}: import from {node.module}: use " \
                    "`from pytest_aie import ...`"
                imported |= {a.name for a in node.names}
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("pytest_aie") for a in node.names), b.id
    assert imported <= set(pytest_aie.__all__), imported - set(pytest_aie.__all__)
    assert len(imported) >= 8
    for page in PAGES:  # inline mentions of deep paths too
        text = page.read_text(encoding="utf-8")
        deep = re.findall(r"from pytest_aie\.[\w.]+ import", text)
        assert not deep, f"{page.relative_to(ROOT)}: {deep}"


def test_the_options_table_is_generated_from_the_option_definitions() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import options_table
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    page = (ROOT / "docs" / "options.md").read_text(encoding="utf-8")
    assert options_table.current(page) == options_table.render(), (
        "docs/options.md's options table differs from pytest_aie.settings.OPTIONS: "
        "regenerate it with `.venv/bin/python scripts/options_table.py`")
    from pytest_aie.settings import OPTIONS

    for opt in OPTIONS:
        assert f"`{opt.flag} {opt.metavar}`" in page and f"`{opt.ini}`" in page, opt.name


# ------------------------------------------------------------------ facts the pages state

def page(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """The text under a heading line ``title``, up to the next heading of level 1 or 2."""
    return text.split(f"\n{title}\n", 1)[1].split("\n## ", 1)[0].split("\n# ", 1)[0]


def test_a_rag_target_returns_the_generation_the_pipeline_accepts() -> None:
    # a RAG target returns a Generation: the page names the import, and it is the class the
    # pipeline accepts from a target
    from pytest_aie.engines.base import Generation

    text = page("docs/evals/retrieval.md")
    line = "from pytest_aie import BM25, Generation"
    code = next(b.code for b in BLOCKS if b.page == "docs/evals/retrieval.md" and line in b.code)
    namespace: dict[str, Any] = {}
    exec(compile(line, "docs/evals/retrieval.md", "exec"), namespace)  # noqa: S102 - its own line
    assert namespace["Generation"] is Generation
    assert "Generation(" in code.split(line, 1)[1] and "as a `Generation`" in text


def test_one_meaning_for_a_list_in_expected_stated_once() -> None:
    from pytest_aie.scorers.exact import ALTERNATIVES, KINDS

    assert "a list: any of them counts" in section(page("docs/suites.md"), "## Datasets")
    kinds = page("docs/evals/exact.md").split("Exact eval kinds (", 1)[1].split("\n\n", 1)[0]
    # the exact kinds paragraph refers to the dataset table instead of giving its own meaning
    assert "any of them counts" not in kinds and "(every expected string" not in kinds
    assert "`contains_all`" in kinds and set(KINDS) >= set(ALTERNATIVES) | {"contains_all"}
    for kind in KINDS:
        assert f"`{kind}`" in kinds, kind


def _capitals(pytester: pytest.Pytester, kind: str, answers: dict[str, str]) -> list[dict[str, Any]]:
    """The README's capitals example, written as the README shows it, with ``kind`` in place of
    its any_of; returns the case records."""
    (data,) = [b for b in BLOCKS if b.page == "README.md" and b.name == "suites/capitals.jsonl"]
    (test,) = [b for b in BLOCKS if b.page == "README.md" and b.name == "suites/test_capitals.py"]
    assert '@pytest.mark.exact("any_of"' in test.code
    pytester.makefile(".jsonl", capitals=data.code)
    pytester.makepyfile(test_capitals=test.code.replace('exact("any_of"', f'exact("{kind}"'))
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


RAG_TEST = '''
import pytest

from pytest_aie import BM25, Generation

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
    result = pytester.runpytest_inprocess("-p", "no:randomly", "suites/test_rag_doc.py")
    assert result.ret == 0, result.stdout.str()
    records = read_records(pytester)
    assert len(records) == 6 and all(r["passed"] for r in records), records
    assert 'query="question"' in page("docs/evals/retrieval.md")


def test_as_target_without_the_query_field_names_the_parameter() -> None:
    from pytest_aie import BM25, Case

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
    paths = page("docs/suites.md").split("**Relative paths.**", 1)[1].split("\n\n", 1)[0]
    for name in ("dataset", "schema=", "human_file=", "corpus="):
        assert name in paths, name


def test_every_path_the_pages_name_exists() -> None:
    """A file or folder of the repository named in backticks (`suites/test_rag.py`,
    `pytest_aie/records.py`) exists, so a moved module cannot leave the text behind."""
    tops = ("suites/", "tests/", "benchmarks/", "scripts/", "pytest_aie/", "judges/", "reports/",
            "docs/", ".ci/")
    named = 0
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
        examples = {b.name for b in BLOCKS if b.page == page.relative_to(ROOT).as_posix()}
        for path in re.findall(r"`([\w./-]+)`", text):
            if path in examples:  # a file the page's own example writes
                continue
            if path.startswith(tops) and not re.search(r"[*<]|[A-Z]{3,}", path):  # not NAME.j2
                assert (ROOT / path).exists(), f"{page.relative_to(ROOT)}: no {path}"
                named += 1
    assert named >= 20


#: markers registered by pytest itself and by the other plugins installed here
OTHER_MARKERS = {"slow", "hypothesis", "anyio", "pytester_example_path", "filterwarnings", "skip",
                 "skipif", "xfail", "parametrize", "usefixtures", "tryfirst", "trylast",
                 "xdist_group", "asyncio", "timeout", "flaky"}


def test_every_marker_has_its_line_in_the_readme_and_its_row_on_the_suites_page(
        pytestconfig: pytest.Config) -> None:
    registered = {re.split(r"[(:]", line, maxsplit=1)[0].strip()
                  for line in pytestconfig.getini("markers")}
    readme = set(re.findall(r"^\| \[`(\w+)`\]\(docs/", section(README, "## Markers"), re.M))
    suites = set(re.findall(r"^\| `@pytest\.mark\.(\w+)\(", page("docs/suites.md"), re.M))
    assert readme == suites, (readme, suites)
    assert readme <= registered, readme - registered
    assert registered - readme <= OTHER_MARKERS, (
        f"markers without a line in the README and a row on docs/suites.md: "
        f"{registered - readme - OTHER_MARKERS}")


def test_the_paths_in_commands_not_run_exist() -> None:
    """The commands that cannot run here still name real files (mutmut's module list)."""
    for b in BLOCKS:
        if b.kind in SHELL:
            for path in re.findall(r"(?:pytest_aie|tests|benchmarks|scripts)/[\w/]+\.py", b.code):
                assert (ROOT / path).exists(), f"{b.id}: no {path}"


def test_every_dotted_name_the_pages_give_resolves() -> None:
    """`pytest_aie.stats.minimum_detectable_drop` and the like name something that exists."""
    import importlib

    names = {n for p in PAGES for n in re.findall(r"`(pytest_aie(?:\.\w+)+)`",
                                                  p.read_text(encoding="utf-8"))}
    assert names
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                obj: Any = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for attr in parts[cut:]:
            assert hasattr(obj, attr), f"{name}: no {attr}"
            obj = getattr(obj, attr)


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / target.split("#")[0]).resolve()
              for target in re.findall(r"\]\((docs/[^)\s]+)\)", README)}
    pages = {p.resolve() for p in PAGES if p.name != "README.md"}
    assert pages <= linked, sorted(str(p.relative_to(ROOT)) for p in pages - linked)
