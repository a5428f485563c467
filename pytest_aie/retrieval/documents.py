"""The data of retrieval: a corpus's :class:`Document`, a retrieved :class:`Hit`,
:func:`to_documents` (documents from objects, strings or mappings) and the :func:`digest` of a
JSON-able value (what identifies a corpus or an index)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from pytest_aie.errors import UsageError

__all__ = ["Document", "Hit", "digest", "to_documents"]


@dataclass(frozen=True)
class Document:
    """One passage of a corpus: a unique ``id``, its ``text`` and free ``metadata``."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Hit:
    """One retrieved document: its ``id``, ``score`` (higher is better), ``text`` and
    1-based ``rank``."""

    id: str
    score: float
    text: str
    rank: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "score": self.score, "text": self.text, "rank": self.rank}


def _document(item: Any, position: int) -> Document:
    if isinstance(item, Document):
        return item
    if isinstance(item, str):
        return Document(id=str(position), text=item)
    if isinstance(item, Mapping):
        missing = [name for name in ("id", "text") if item.get(name) is None]
        if missing:
            raise UsageError(f"document {position} has no {' or '.join(missing)!r} field",
                             fix="give every document an 'id' and a 'text'")
        if not isinstance(item["text"], str):
            raise UsageError(f"document {item['id']!r} has a {type(item['text']).__name__} "
                             "as its text", fix="give every document's 'text' as a string")
        extra = {k: v for k, v in item.items() if k not in ("id", "text", "metadata")}
        nested = item.get("metadata")
        metadata = {**nested, **extra} if isinstance(nested, Mapping) else \
            {**extra, **({"metadata": nested} if nested is not None else {})}
        return Document(id=str(item["id"]), text=item["text"], metadata=metadata)
    raise UsageError(f"document {position} is a {type(item).__name__}",
                     fix="pass Documents, strings, or mappings with 'id' and 'text'")


def to_documents(items: Any) -> list[Document]:
    """Documents from :class:`Document` objects, strings (their id is their position) or
    mappings with ``id`` and ``text`` (their other keys become metadata). Ids must be unique
    and there must be at least one document."""
    if isinstance(items, (str, bytes, Path)) or not isinstance(items, Sequence):
        raise UsageError(f"documents must be a list, got {type(items).__name__}",
                         fix="pass a list of documents, or corpus='docs.jsonl' for a file")
    docs = [_document(item, i) for i, item in enumerate(items)]
    if not docs:
        raise UsageError("the corpus has no documents", fix="index at least one document")
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise UsageError(f"document id {doc.id!r} appears more than once",
                             fix="give every document its own id")
        seen.add(doc.id)
    return docs


def digest(value: Any) -> str:
    """A sha256 of a JSON-able value (keys sorted)."""
    blob = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()
