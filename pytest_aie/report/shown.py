"""Text as the report shows it: invisible and direction-changing characters made visible,
long values cut, numbers formatted, and JSON safe to embed in a ``<script>`` element."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pytest_aie._util.text import visible

__all__ = ["MAX_NAME_CHARS", "clip", "dumps", "finite", "is_number", "name", "number", "percent",
           "preview", "script_json", "shown"]

#: Longest name, id, tag or metadata value kept in the report.
MAX_NAME_CHARS = 1_000

_MAY_NEED_MARKS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff"
    "\ud800-\udfff\ue000-\uf8ff\U000f0000-\U0010ffff]")


def finite(value: Any) -> Any:
    """``value`` with non-finite floats (NaN, inf) replaced by strings JSON can carry."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _visible(text: str) -> str:
    """``text`` as the page shows it: invisible and direction-changing characters and lone
    surrogates written as ``<U+XXXX>`` (newlines, tabs and CR LF line ends kept)."""
    if not _MAY_NEED_MARKS.search(text):  # the common case, without a pass per character
        return text
    return "\r\n".join(visible(part, keep_newlines=True) for part in text.split("\r\n"))


def clip(text: Any, limit: int | None) -> Any:
    """``text`` cut to ``limit`` characters, with a note saying how much was cut."""
    if not isinstance(text, str) or limit is None or len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [report cut {len(text) - limit} more characters]"


def shown(value: Any, limit: int | None) -> Any:
    """``value`` as the report shows it: strings made visible and cut to ``limit``; a
    structure (an expected dict or list) keeps its shape, unless its JSON text is longer
    than ``limit``, when it becomes that text, cut."""
    if isinstance(value, str):
        if (limit is None or len(value) <= limit) and not _MAY_NEED_MARKS.search(value):
            return value  # the common case, without two more calls per field of each case
        return clip(_visible(value), limit)
    if isinstance(value, (dict, list, tuple)):
        if limit is not None:
            text = json.dumps(finite(value), ensure_ascii=False, indent=2, default=str)
            if len(text) > limit:
                return clip(_visible(text), limit)
        return _deep_visible(value)
    return value


def name(value: Any) -> Any:
    """A name, id or tag as shown (visible, at most :data:`MAX_NAME_CHARS`)."""
    return shown(value, MAX_NAME_CHARS)


def preview(value: Any, limit: int) -> str:
    """One line of at most ``limit`` characters: whitespace runs become one space."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(finite(value), ensure_ascii=False,
                                                           default=str)
    text = " ".join(text[:limit * 4].split())
    text = _visible(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _deep_visible(value: Any) -> Any:
    if isinstance(value, str):
        return _visible(value)
    if isinstance(value, dict):
        return {_visible(str(k)): _deep_visible(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_deep_visible(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON that ``JSON.parse`` reads: non-finite numbers become strings."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                          default=str)
    except ValueError:  # NaN/inf somewhere in arbitrary "expected" data
        return json.dumps(finite(value), ensure_ascii=False, allow_nan=False,
                          separators=(",", ":"), default=str)


def script_json(value: Any) -> str:
    """JSON safe to place inside ``<script type="application/json">``.

    ``<`` ``>`` ``&`` become ``\\u003c`` etc., so no string can close the tag or open a comment;
    U+2028/U+2029 are escaped too. ``JSON.parse`` gives back the original strings.
    """
    text = dumps(value)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def percent(value: Any) -> str:
    return f"{100 * value:.1f}%" if is_number(value) else "—"


def number(value: Any) -> str:
    return f"{value:.3g}" if is_number(value) else ""
