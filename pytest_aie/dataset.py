"""Datasets: eval cases loaded from JSONL, CSV or YAML files next to the test file.

A case is one row. Recognised fields (all others are kept and usable in prompt templates):

``id``        readable, unique case id (default: the row's line number, ``line-7``)
``prompt``    the prompt text; or ``input`` (same meaning); or ``messages`` (chat list)
``expected``  the reference answer (a string, a number, or a list: any of them counts)
``tags``      a list, or a comma-separated string, of tags for grouping

Bad data raises :class:`~pytest_aie.errors.DatasetError` naming the file and line.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from pytest_aie.engines.base import Request, Sampling
from pytest_aie.errors import DatasetError

__all__ = ["Case", "load_cases", "build_request"]

_ID_SAFE = re.compile(r"[^A-Za-z0-9_.:+-]+")
_TEMPLATE_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Case:
    """One eval case: its id, its fields, where it came from, and its tags."""

    id: str
    fields: Mapping[str, Any]
    source: str = ""  # "path:line"
    tags: tuple[str, ...] = ()
    suite: str = ""  # set by the plugin: the test function's node id without parameters

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


def _fail(path: Path, line: int | None, problem: str, fix: str) -> DatasetError:
    where = f"{path}:{line}" if line else str(path)
    return DatasetError(f"{where}: {problem}", fix=fix)


def _rows(path: Path) -> list[tuple[int, Any]]:
    """(line number, row) pairs; raises DatasetError on unreadable or empty files."""
    if not path.is_file():
        raise _fail(path, None, "dataset file not found", "check the path given to "
                    "@pytest.mark.dataset (it is relative to the test file)")
    text = path.read_text(encoding="utf-8-sig")  # spreadsheets write a byte order mark
    suffix = path.suffix.lower()
    rows: list[tuple[int, Any]] = []
    if suffix in (".jsonl", ".ndjson"):
        # split on "\n" only: str.splitlines() also splits on U+2028, U+0085 and form feeds,
        # which JSON writers leave raw inside strings
        for no, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                rows.append((no, json.loads(line)))
            except json.JSONDecodeError as exc:
                raise _fail(path, no, f"invalid JSON ({exc.msg} at column {exc.colno})",
                            "write one JSON object per line") from None
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))  # keeps newlines in cells
        for row in reader:
            if None in row:
                raise _fail(path, reader.line_num, "row has more cells than the header",
                            "quote cells that contain commas")
            rows.append((reader.line_num, dict(row)))
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise _fail(path, line, f"invalid YAML ({getattr(exc, 'problem', exc)})",
                        "fix the YAML syntax") from None
        if isinstance(data, dict) and "cases" in data:
            data = data["cases"]
        if data is None:
            data = []
        if not isinstance(data, list):
            raise _fail(path, None, "YAML dataset must be a list of cases (or a mapping "
                        "with a 'cases' list)", "put the cases in a top-level list")
        lines = _yaml_item_lines(yaml.compose(text, Loader=yaml.SafeLoader))
        rows = [(lines[i] if i < len(lines) else None, row) for i, row in enumerate(data)]
    else:
        raise _fail(path, None, f"unsupported dataset format {suffix!r}",
                    "use a .jsonl, .csv, .yaml or .yml file")
    if not rows:
        raise _fail(path, None, "dataset is empty", "add at least one case")
    return rows


def _yaml_item_lines(node: Any) -> list[int]:
    """Line numbers of the cases (the items of the top-level or ``cases`` list)."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == "cases"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]


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
            raise _fail(path, line, f"a case must be an object with fields, got "
                        f"{type(row).__name__}", "write each case as a mapping of fields")
        has_input = any(k in row for k in ("prompt", "input", "messages"))
        missing = [f for f in require if f not in row and not (f == "prompt" and has_input)]
        if not has_input and "prompt" in require:
            missing = [m for m in missing if m != "prompt"] + ["prompt (or input/messages)"]
        if missing:
            raise _fail(path, line, f"case is missing field(s): {', '.join(missing)}",
                        "add the field to every case, or change the marker's template")
        raw_id = row.get("id")
        case_id = _ID_SAFE.sub("-", str(raw_id)).strip("-") if raw_id is not None else ""
        case_id = case_id or f"line-{line}"  # no id, or none of its characters are usable
        if case_id in seen:
            raise _fail(path, line, f"duplicate case id {case_id!r} (first on line "
                        f"{seen[case_id]})", "give every case a unique id")
        seen[case_id] = line
        try:
            tags = _tags(row.get("tags"))
        except TypeError as exc:
            raise _fail(path, line, str(exc), "write tags as a list") from None
        if "messages" in row and not (isinstance(row["messages"], list) and all(
                isinstance(m, dict) and "role" in m and "content" in m for m in row["messages"])):
            raise _fail(path, line, "'messages' must be a list of {role, content} objects",
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
