"""Corpora: documents loaded from JSONL, CSV, YAML or JSON files, and their content digest.

Each row is one document with an ``id`` (unique) and a ``text``; every other field is kept as
the document's metadata. A JSON file holds a list of documents (or ``{"documents": [...]}``),
a YAML file likewise. Bad data raises :class:`~pytest_aie.errors.DatasetError` naming the file
and line::

    docs = load_corpus("docs.jsonl")
    corpus_digest(docs)   # changes when any id or text changes, or the order does
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_aie._util.rows import csv_rows, jsonl_rows, load_yaml, read_text, row_error
from pytest_aie.errors import DatasetError
from pytest_aie.retrieval.documents import Document, digest

__all__ = ["corpus_digest", "load_corpus"]

_FORMATS = (".jsonl", ".ndjson", ".csv", ".yaml", ".yml", ".json")
_FIX_FIELDS = "give every document an 'id' and a 'text' field"


def _json_rows(path: Path, text: str) -> list[tuple[int | None, Any]]:
    """The items of a top-level JSON list with their line numbers (or of a mapping's
    ``documents`` list, without)."""
    decoder = json.JSONDecoder()

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    def invalid(exc: json.JSONDecodeError) -> DatasetError:
        return row_error(path, exc.lineno, f"invalid JSON ({exc.msg} at column {exc.colno})",
                     "write a JSON list of documents")

    start = skip(0)
    if not text.startswith("[", start):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise invalid(exc) from None
        if isinstance(data, Mapping) and isinstance(data.get("documents"), list):
            return [(None, row) for row in data["documents"]]
        raise row_error(path, None, "a JSON corpus must be a list of documents (or a mapping with "
                    "a 'documents' list)", "put the documents in a top-level list")
    rows: list[tuple[int | None, Any]] = []
    i = skip(start + 1)
    while i < len(text) and text[i] != "]":
        try:
            row, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError as exc:
            raise invalid(exc) from None
        rows.append((text.count("\n", 0, i) + 1, row))
        i = skip(end)
        if i < len(text) and text[i] == ",":
            i = skip(i + 1)
        elif i >= len(text) or text[i] != "]":
            raise row_error(path, text.count("\n", 0, i) + 1, "invalid JSON (expected ',' or ']' "
                        "after a document)", "write a JSON list of documents")
    if i >= len(text) or skip(i + 1) != len(text):
        raise row_error(path, text.count("\n", 0, min(i, len(text))) + 1,
                    "invalid JSON (the list is not closed, or text follows it)",
                    "write one JSON list of documents")
    return rows


def _yaml_rows(path: Path, text: str) -> list[tuple[int | None, Any]]:

    data, lines = load_yaml(path, text)
    if isinstance(data, Mapping) and isinstance(data.get("documents"), list):
        return [(None, row) for row in data["documents"]]
    if data is None:
        return []
    if not isinstance(data, list):
        raise row_error(path, None, "a YAML corpus must be a list of documents (or a mapping "
                    "with a 'documents' list)", "put the documents in a top-level list")
    return [(lines[i] if i < len(lines) else None, row) for i, row in enumerate(data)]


def _rows(path: Path) -> list[tuple[int | None, Any]]:

    if not path.is_file():
        raise row_error(path, None, "corpus file not found",
                    "check the corpus path (a relative path is found next to the file that "
                    "made the retriever, else in the working directory)")
    suffix = path.suffix.lower()
    if suffix not in _FORMATS:
        raise row_error(path, None, f"unsupported corpus format {suffix!r}",
                    "use a .jsonl, .csv, .yaml, .yml or .json file")
    text = read_text(path)
    if suffix in (".jsonl", ".ndjson"):
        return jsonl_rows(path, text)
    if suffix == ".csv":
        return list(csv_rows(path, text))
    if suffix == ".json":
        return _json_rows(path, text)
    return _yaml_rows(path, text)


def load_corpus(path: str | Path, *, id_field: str = "id", text_field: str = "text"
                ) -> list[Document]:
    """The documents of a corpus file (``id_field``/``text_field`` name other columns).

    Every document needs a unique id (a string or a whole number) and a text (a string);
    its other fields become its metadata. Raises DatasetError naming the file and line."""
    path = Path(path)
    docs: list[Document] = []
    lines: dict[str, int | None] = {}
    for position, (line, row) in enumerate(_rows(path)):
        where = line if line is not None else None
        label = "" if line is not None else f"document {position + 1}: "
        if not isinstance(row, Mapping):
            raise row_error(path, where, f"{label}a document must be a mapping with "
                        f"{id_field!r} and {text_field!r}, got {type(row).__name__}", _FIX_FIELDS)
        for name in (id_field, text_field):
            if row.get(name) is None:
                raise row_error(path, where, f"{label}document has no {name!r} field", _FIX_FIELDS)
            if row[name] == "":
                raise row_error(path, where, f"{label}document's {name!r} field is empty",
                            _FIX_FIELDS)
        raw_id, text = row[id_field], row[text_field]
        if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
            raise row_error(path, where, f"{label}{id_field!r} must be a string or a whole number, "
                        f"got {type(raw_id).__name__}", "write the id as a string")
        if not isinstance(text, str):
            raise row_error(path, where, f"{label}{text_field!r} must be a string, got "
                        f"{type(text).__name__}", "write the document's text as a string")
        doc_id = str(raw_id)
        if doc_id in lines:
            first = lines[doc_id]
            raise row_error(path, where, f"{label}document id {doc_id!r} appears more than once"
                        + (f" (first on line {first})" if first else ""),
                        "give every document its own id")
        lines[doc_id] = line
        metadata = {k: v for k, v in row.items() if k not in (id_field, text_field)}
        docs.append(Document(id=doc_id, text=text, metadata=metadata))
    if not docs:
        raise row_error(path, None, "the corpus is empty", "add at least one document")
    return docs


def corpus_digest(documents: Sequence[Document]) -> str:
    """A sha256 of the documents' ids and texts, in order (metadata is not part of it: no
    retriever reads it). Indexes are cached under it."""
    return digest([[doc.id, doc.text] for doc in documents])
