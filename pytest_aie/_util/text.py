"""Text shown to people: long values shortened, invisible and direction-changing characters
made visible. Used for terminal lines, test failure messages and the report.

Nothing here changes what is *stored*: the results log keeps the model's text as it came
(with lone surrogates escaped so that it can be written as UTF-8 at all).
"""

from __future__ import annotations

import unicodedata

__all__ = ["oneline", "shorten", "visible", "show"]

#: Characters that change how the text around them reads without being seen: bidirectional
#: overrides and isolates, zero-width characters, the byte order mark.
_INVISIBLE = {0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
              0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF}


def visible(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control, bidi-override, zero-width and surrogate characters written as
    ``<U+202E>`` (tabs and, with ``keep_newlines``, newlines stay as they are)."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\t" or (keep_newlines and ch == "\n"):
            out.append(ch)
        elif code in _INVISIBLE or unicodedata.category(ch) in ("Cc", "Cs", "Co"):
            out.append(f"<U+{code:04X}>")
        else:
            out.append(ch)
    return "".join(out)


def shorten(text: str, limit: int = 200) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    head = max(1, limit - 40)
    return f"{text[:head]}... [{len(text) - head:,} more characters]"


def show(value: object, limit: int = 200) -> str:
    """One line for a terminal or a failure message: text quoted as Python's ``repr`` writes
    it (newlines as ``\\n``; control, bidi-override, zero-width and surrogate characters as
    ``\\u202e``-style escapes), its first ``limit`` characters and a count of the rest."""
    if not isinstance(value, str):
        return shorten(repr(value), limit)
    text = repr(value[:limit])
    if len(value) > limit:
        text += f"... [{len(value) - limit:,} more characters]"
    return text


def oneline(text: object, limit: int = 300) -> str:
    """Our own message text (a reason, an error) on one line: newlines as ``\\n``, invisible
    characters visible, cut to about ``limit`` characters."""
    return shorten(visible(str(text).replace("\r\n", "\n").replace("\n", "\\n")), limit)
