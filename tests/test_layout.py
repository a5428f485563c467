"""The package's layout tells the run: every module of ``pytest_aie`` imports only modules of
its own package or of a stage below it, no two modules import each other (directly or round a
circle), the top level holds the pytest face and entry points only, and every package's
``__init__`` says what the package is. Imports are read with ``ast`` wherever they stand
(module level, inside functions, under ``TYPE_CHECKING``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "pytest_aie"

#: The stages, lowest first: a unit (a top-level module, or a package) may import units of
#: lower stages only. Units of one stage do not import each other.
STAGES: list[set[str]] = [
    {"errors", "_version"},  # what everything may raise; the version
    {"_util"},  # files, scrubbing, text, data-file rows, code digests
    {"stats"},  # the numerics
    {"results"},  # the record types and the results log
    {"engines"},  # generating: the engine interface, the engines, the embedded model
    {"dataset"},  # cases: the vocabulary of what is evaluated
    {"scorers"},  # the scorer interface and the plain scorers
    {"judge", "latency", "agent", "retrieval"},  # the eval families
    {"settings"},  # the run's options
    {"suite"},  # what a test declares: the marker table, suite specs, targets
    {"run"},  # generating and scoring a run
    {"gates"},  # deciding the run
    {"report"},  # what is shown about a run
    {"session"},  # one run's state
    {"fixtures", "terminal", "rebuild"},  # the fixtures, the terminal, the report command
    {"plugin", "__main__"},  # pytest's entry point; python -m pytest_aie
    {"__init__"},  # the public face (its imports are lazy)
]
#: The one circle left on purpose: one engine split into three files for size, tied by
#: type-only imports of the engine class.
ALLOWED_CIRCLES = [{"pytest_aie.engines.openai", "pytest_aie.engines._openai_call",
                    "pytest_aie.engines._openai_score"}]
MAX_TOP_LEVEL = 12


def _name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(name: str) -> str:
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str) -> set[str]:
    """The package's modules that ``module`` imports."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {_resolve(a.name) for a in node.names if a.name.split(".")[0] == "pytest_aie"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "pytest_aie":
                continue
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add(full if full in MODULES else _resolve(base))
    out.discard(module)
    return out


GRAPH = {m: imports(m) for m in MODULES}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def stage(module: str) -> int:
    found = [i for i, units in enumerate(STAGES) if unit(module) in units]
    assert found, f"{unit(module)} ({module}) is in no stage of tests/test_layout.py: add it"
    return found[0]


def test_every_unit_has_a_stage() -> None:
    for module in MODULES:
        stage(module)


def test_no_module_imports_a_stage_above_its_own() -> None:
    upward = [f"{m} (stage {stage(m)}) imports {t} (stage {stage(t)})"
              for m, targets in GRAPH.items() for t in sorted(targets)
              if unit(t) != unit(m) and stage(t) >= stage(m)]
    assert upward == []


def _circles() -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    circles = [sorted(c) for c in _circles() if c not in ALLOWED_CIRCLES]
    assert circles == []


def test_the_circle_finder_finds_a_circle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(GRAPH, "pytest_aie.errors", {"pytest_aie.dataset"})  # errors -> dataset -> errors
    assert any({"pytest_aie.errors", "pytest_aie.dataset"} <= c for c in _circles())


def test_the_top_level_holds_the_pytest_face_and_entry_points_only() -> None:
    top = sorted(p.name for p in ROOT.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


@pytest.mark.parametrize("package", sorted(p.parent.name for p in ROOT.glob("*/__init__.py")))
def test_every_package_says_what_it_is(package: str) -> None:
    tree = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree)
    assert doc and len(doc) > 40 and "TODO" not in doc, package


def test_pyproject_lists_every_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((ROOT.parent / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(config["tool"]["setuptools"]["packages"])
    assert {f"pytest_aie.{p.parent.name}" for p in ROOT.glob("*/__init__.py")} <= listed
