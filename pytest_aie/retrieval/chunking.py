"""Chunking: cut documents into passages before indexing them.

* :func:`chunk_fixed`: windows of ``size`` words (or characters) that overlap by ``overlap``;
  the last window ends at the document's end (no window lies inside the one before it).
* :func:`chunk_sentences`: groups of ``max_sentences`` sentences (``overlap`` sentences shared
  between neighbours), sentences found by :func:`split_sentences`.

Chunk ``n`` (from 0) of document ``doc`` has the id ``"doc#n"``; its metadata is the
document's, plus ``parent`` (the document's id) and ``start``/``end`` (the chunk's character
offsets in the document's text). A chunk's text is a slice of the document's text, its
whitespace kept. A document with no words gives no chunks.
"""

from __future__ import annotations

import re
from typing import Any

from pytest_aie.errors import UsageError, whole_number
from pytest_aie.retrieval.documents import Document, to_documents

__all__ = ["chunk_fixed", "chunk_sentences", "split_sentences"]

_WORD = re.compile(r"\S+")
#: a sentence's end: terminal punctuation, closing quotes or brackets, then whitespace
_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)")
_PARAGRAPH = re.compile(r"\n[ \t\r\f\v]*\n")
#: words that end in a period without ending a sentence (compared without the period)
ABBREVIATIONS = frozenset({
    "Mr", "Mrs", "Ms", "Dr", "Prof", "Sr", "Jr", "St", "Mt", "vs", "cf", "e.g", "i.e", "eg",
    "ie", "Fig", "Figs", "No", "Nos", "Vol", "approx", "Inc", "Ltd", "Co", "Corp", "Gen",
    "Col", "Capt", "Lt", "Sgt", "Rev", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep",
    "Sept", "Oct", "Nov", "Dec",
})


def _whole(name: str, value: Any, minimum: int) -> int:
    return whole_number(name, value, least=minimum)


def _check_overlap(overlap: Any, size: int, size_name: str) -> int:
    checked = _whole("overlap", overlap, 0)
    if checked >= size:
        raise UsageError(f"overlap={checked} must be smaller than {size_name}={size}",
                         fix=f"pass an overlap below {size} (e.g. {size // 4})")
    return checked


def _chunk(doc: Document, n: int, start: int, end: int) -> Document:
    return Document(id=f"{doc.id}#{n}", text=doc.text[start:end],
                    metadata={**doc.metadata, "parent": doc.id, "start": start, "end": end})


def _windows(spans: list[tuple[int, int]], size: int, overlap: int) -> list[tuple[int, int]]:
    """Character ranges covering ``size`` consecutive spans at a time, ``overlap`` shared."""
    out = []
    step = size - overlap
    for first in range(0, len(spans), step):
        last = min(first + size, len(spans)) - 1
        out.append((spans[first][0], spans[last][1]))
        if last == len(spans) - 1:
            break
    return out


def chunk_fixed(documents: Any, size: int = 200, overlap: int = 50,
                unit: str = "words") -> list[Document]:
    """Fixed-size chunks: ``size`` words (``unit="words"``, words split on whitespace) or
    characters (``unit="chars"``) each, consecutive chunks sharing ``overlap`` of them."""
    size = _whole("size", size, 1)
    overlap = _check_overlap(overlap, size, "size")
    if unit not in ("words", "chars"):
        raise UsageError(f"unit={unit!r} is not a chunking unit", fix="use 'words' or 'chars'")
    chunks: list[Document] = []
    for doc in to_documents(documents):
        if unit == "words":
            spans = [m.span() for m in _WORD.finditer(doc.text)]
        else:
            spans = [(i, i + 1) for i in range(len(doc.text))] if doc.text.strip() else []
        for n, (start, end) in enumerate(_windows(spans, size, overlap)):
            chunks.append(_chunk(doc, n, start, end))
    return chunks


def _ends_sentence(text: str, match: re.Match[str]) -> bool:
    after = text[match.end():].lstrip()
    if not after or after[0].islower():
        return False
    if match.group().rstrip("\"'\u201d\u2019)]") != ".":
        return True  # "!", "?", "..." end a sentence before a capital
    word = text[:match.start()].rsplit(None, 1)[-1] if text[:match.start()].strip() else ""
    word = word.lstrip("(\"'\u201c\u2018[")
    # an abbreviation, an initial, or a word with periods inside ("U.S.", "e.g.")
    return not (word in ABBREVIATIONS or (len(word) == 1 and word.isupper()) or "." in word)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """The sentences of ``text`` as ``(start, end)`` character offsets.

    The rule: a sentence ends at ``.``, ``!``, ``?`` or ``…`` (repeated or not, followed by any
    closing quotes or brackets) when whitespace and then a character that is not a lowercase
    letter follow, except for a period after a common abbreviation (:data:`ABBREVIATIONS`:
    ``Dr.``, ``Fig.`` ...), a single capital letter (an initial: ``J. R. R.``) or a word with
    periods inside (``U.S.``, ``e.g.``).
    A blank line always ends a sentence. No language model: decimals (``3.5``) stay whole;
    an abbreviation missing from the list before a capital letter ends a sentence, and a
    sentence ending in ``U.S.`` runs on into the next.
    """
    cuts = {m.end() for m in _END.finditer(text) if _ends_sentence(text, m)}
    cuts |= {m.start() for m in _PARAGRAPH.finditer(text)}
    spans = []
    start = 0
    for cut in sorted(cuts) + [len(text)]:
        piece = text[start:cut]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            spans.append((start + lead, start + len(piece.rstrip())))
        start = cut
    return spans


def chunk_sentences(documents: Any, max_sentences: int = 3, overlap: int = 0
                    ) -> list[Document]:
    """Chunks of up to ``max_sentences`` consecutive sentences (:func:`split_sentences`),
    consecutive chunks sharing ``overlap`` sentences."""
    max_sentences = _whole("max_sentences", max_sentences, 1)
    overlap = _check_overlap(overlap, max_sentences, "max_sentences")
    chunks: list[Document] = []
    for doc in to_documents(documents):
        spans = split_sentences(doc.text)
        for n, (start, end) in enumerate(_windows(spans, max_sentences, overlap)):
            chunks.append(_chunk(doc, n, start, end))
    return chunks
