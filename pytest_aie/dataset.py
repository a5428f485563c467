"""Datasets: eval cases loaded from JSONL, CSV or YAML files next to the test file.

A case is one row. Recognised fields (all others are kept and usable in prompt templates):

``id``        readable, unique case id (default: the row's line number, ``line-7``); letters
              and digits of any script are kept, other characters become ``-``
``prompt``    the prompt text; or ``input`` (same meaning); or ``messages`` (chat list)
``expected``  the reference answer (a string, a number, or a list: any of them counts)
``tags``      a list, or a comma-separated string, of tags for grouping

Bad data raises :class:`~pytest_aie.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pytest_aie._util.rows import csv_rows, jsonl_rows, load_yaml, read_text, row_error
from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import DatasetError

__all__ = ["Case", "load_cases", "build_request"]

_ID_PUNCT = "_.:+-"
_ID_SEPARATORS = re.compile(r"\0+|:{2,}")
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Case:
    """One eval case: its id, its fields, where it came from, and its tags."""

    id: str
    fields: Mapping[str, Any]
    source: str = ""  # "path:line"
    tags: tuple[str, ...] = ()
    suite: str = ""  # set by the plugin: the test function's node id without parameters
    model: str = ""  # set by the plugin: the model this test item evaluates (several-model suites)

    @property
    def expected(self) -> Any:
        return self.fields.get("expected")

    @property
    def prompt(self) -> str | None:
        value = self.fields.get("prompt", self.fields.get("input"))
        return None if value is None else str(value)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.fields.get(key, default)


def _rows(path: Path) -> list[tuple[int | None, Any]]:
    """(line number or None where unknown, row) pairs; raises DatasetError on unreadable or empty files."""
    if not path.is_file():
        raise row_error(path, None, "dataset file not found", "check the path given to "
                    "@pytest.mark.dataset (it is relative to the test file)")
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".csv", ".yaml", ".yml"):
        raise row_error(path, None, f"unsupported dataset format {suffix!r}",
                    "use a .jsonl, .csv, .yaml or .yml file")
    text = read_text(path)
    rows: list[tuple[int | None, Any]] = []
    if suffix in (".jsonl", ".ndjson"):
        rows = jsonl_rows(path, text)
    elif suffix == ".csv":
        rows = list(csv_rows(path, text))
    else:
        data, lines = load_yaml(path, text)
        if isinstance(data, dict) and "cases" in data:
            data = data["cases"]
        if data is None:
            data = []
        if not isinstance(data, list):
            raise row_error(path, None, "YAML dataset must be a list of cases (or a mapping "
                        "with a 'cases' list)", "put the cases in a top-level list")
        rows = [(lines[i] if i < len(lines) else None, row) for i, row in enumerate(data)]
    if not rows:
        raise row_error(path, None, "dataset is empty", "add at least one case")
    return rows


def _case_id(raw: Any) -> str:
    """A readable id that is safe in a pytest node id and a terminal: letters, marks and
    digits of any script, and ``_ . : + -``; every run of other characters (spaces, ``/``,
    brackets, ``::``, control and invisible characters) becomes one ``-``."""
    text = unicodedata.normalize("NFC", str(raw))
    kept = "".join(c if c in _ID_PUNCT or unicodedata.category(c)[0] in "LMN" else "\0"
                   for c in text)
    return unicodedata.normalize("NFC", _ID_SEPARATORS.sub("-", kept).strip("-"))


def _tags(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        return tuple(t.strip() for t in value.split(",") if t.strip())
    if isinstance(value, (list, tuple)):
        return tuple(str(t) for t in value)
    raise TypeError(f"tags must be a list or a comma-separated string, got {value!r}")


def load_cases(path: str | Path, *, require: tuple[str, ...] = ()) -> list[Case]:
    """Load the cases of one dataset file.

    ``require`` names fields every case must have (the marker's template fields and the
    scorer's expected field); a case without one is an error naming its line.
    """
    path = Path(path)
    cases: list[Case] = []
    seen: dict[str, int | None] = {}
    for line, row in _rows(path):
        if not isinstance(row, dict):
            raise row_error(path, line, f"a case must be an object with fields, got "
                        f"{type(row).__name__}", "write each case as a mapping of fields")
        has_input = any(k in row for k in ("prompt", "input", "messages"))
        missing = [f for f in require if f not in row and not (f == "prompt" and has_input)]
        if not has_input and "prompt" in require:
            missing = [m for m in missing if m != "prompt"] + ["prompt (or input/messages)"]
        if missing:
            raise row_error(path, line, f"case is missing field(s): {', '.join(missing)}",
                        "add the field to every case, or change the marker's template")
        raw_id = row.get("id")
        case_id = _case_id(raw_id) if raw_id is not None else ""
        case_id = case_id or f"line-{line}"  # no id, or none of its characters are usable
        if case_id in seen:
            raise row_error(path, line, f"duplicate case id {case_id!r} (first on line "
                        f"{seen[case_id]})", "give every case a unique id")
        seen[case_id] = line
        try:
            tags = _tags(row.get("tags"))
        except TypeError as exc:
            raise row_error(path, line, str(exc), "write tags as a list") from None
        if "messages" in row and not (isinstance(row["messages"], list) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in row["messages"])):
            raise row_error(path, line, "'messages' must be a list of {role, content} objects",
                        "fix the case's messages")
        cases.append(Case(id=case_id, fields=row, source=f"{path}:{line}", tags=tags))
    return cases


def template_fields(template: str | None) -> tuple[str, ...]:
    return tuple(_TEMPLATE_FIELD.findall(template or ""))


def _render(template: str, case: Case) -> str:
    try:
        return _TEMPLATE_FIELD.sub(lambda m: str(case.fields[m.group(1)]), template)
    except KeyError as exc:  # pragma: no cover - load_cases checks required fields
        raise DatasetError(f"{case.source}: case has no field {exc.args[0]!r}",
                           fix="add the field or change the prompt template") from None


def build_request(case: Case, *, prompt: str | None = None, system: str | None = None,
                  chat: bool = True, sampling: Sampling = Sampling(),
                  adapter: str | None = None) -> Request:
    """The request a case sends to the model.

    ``prompt`` is an optional template (``"Q: {question}"``) over the case's fields; without
    it the case's own ``prompt``/``input``/``messages`` is used. With ``chat`` (the default)
    the text is sent as a user message (plus ``system``); otherwise as a raw prompt.
    """
    if prompt is not None:
        text: str | None = _render(prompt, case)
        messages = None
    elif "messages" in case.fields:
        text, messages = None, [dict(m) for m in case.fields["messages"]]
    else:
        text, messages = case.prompt, None
    if messages is None:
        assert text is not None
        if not chat:
            return Request(prompt=text, sampling=sampling, adapter=adapter)
        messages = [{"role": "user", "content": text}]
    if system and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": system}, *messages]
    return Request(messages=tuple(messages), sampling=sampling, adapter=adapter)
