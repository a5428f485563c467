"""Reading data files row by row (datasets and corpora): UTF-8 text, JSONL and CSV rows with
their line numbers, errors that name the file and line, and YAML.

YAML datasets: safe loading with a limit on alias expansion, and the cases' line numbers.

YAML aliases (``*name``) repeat an anchored value (``&name``). Nested aliases multiply: a
418-byte file can expand into millions of nodes ("billion laughs"), and every copy would be
written to the results log and the report. The composed node graph (aliases still shared)
is measured *before* any Python object is built: what the aliases add beyond the nodes and
text written in the file may be at most :data:`ALIAS_NODES` nodes plus ten times the nodes
written, and :data:`ALIAS_CHARS` characters plus ten times the file's length. Ordinary use,
one context or a mapping of defaults shared by every case, stays far below that.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from pathlib import Path
from typing import Any

from pytest_aie.errors import DatasetError

__all__ = ["ALIAS_CHARS", "ALIAS_NODES", "csv_rows", "jsonl_rows", "load_yaml", "read_text", "row_error"]

#: Nodes that aliases may add beyond those written in the file (plus 10 per node written).
ALIAS_NODES = 100_000
#: Characters that aliases may add beyond the file's text (plus 10 per character of it).
ALIAS_CHARS = 10_000_000
_FACTOR = 10
_FIX_ALIASES = ("write the repeated values out, or nest aliases less deeply (an alias should "
                "repeat a value, not multiply it)")


def row_error(path: Path, line: int | None, problem: str, fix: str) -> DatasetError:
    """A data-file error naming the file and, where known, the line."""
    where = f"{path}:{line}" if line else str(path)
    return DatasetError(f"{where}: {problem}", fix=fix)


def read_text(path: Path) -> str:
    """The file's text; a file that is not UTF-8 is an error naming the line and the byte."""
    raw = path.read_bytes()
    bom = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0  # spreadsheets write one
    try:
        return raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = bom + exc.start
        raise row_error(path, raw.count(b"\n", 0, offset) + 1,
                    f"not UTF-8 text (byte 0x{raw[offset]:02x} at byte offset {offset})",
                    "save the file as UTF-8 (spreadsheets: 'CSV UTF-8'; editors: "
                    "'save with encoding UTF-8')") from None


def jsonl_rows(path: Path, text: str) -> list[tuple[int | None, Any]]:
    """(line number, value) per non-blank line of a JSONL file (datasets and corpora)."""
    rows: list[tuple[int | None, Any]] = []
    # split on "\n" only: str.splitlines() also splits on U+2028, U+0085 and form feeds,
    # which JSON writers leave raw inside strings
    for no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((no, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise row_error(path, no, f"invalid JSON ({exc.msg} at column {exc.colno})",
                        "write one JSON object per line") from None
        except RecursionError:
            raise row_error(path, no, "JSON is nested too deeply to load",
                        "flatten the nested fields") from None
    return rows


def csv_rows(path: Path, text: str) -> list[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))  # keeps newlines in cells
    fix = "give every row as many cells as the header, and quote cells that contain commas"
    header = reader.fieldnames or []
    doubled = sorted({h for h in header if header.count(h) > 1})
    if doubled:
        raise row_error(path, 1, f"header names column {doubled[0]!r} more than once",
                    "give every column its own name")
    rows: list[tuple[int, Any]] = []
    for row in reader:
        if None in row:
            raise row_error(path, reader.line_num, f"row has more cells than the header "
                        f"({len(header) + len(row[None])} for {len(header)} columns)", fix)
        missing = [k for k, v in row.items() if v is None]  # DictReader's filler
        if missing:
            raise row_error(path, reader.line_num, f"row has fewer cells than the header "
                        f"({len(header) - len(missing)} for {len(header)} columns; no "
                        f"{', '.join(missing)})", fix)
        rows.append((reader.line_num, dict(row)))
    return rows


def load_yaml(path: Path, text: str) -> tuple[Any, list[int]]:
    """The document in ``text`` and the line numbers of its cases (the items of the
    top-level list, or of the top-level mapping's ``cases`` list)."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, []
        _check_aliases(path, node, len(text))
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise row_error(path, line, f"invalid YAML ({getattr(exc, 'problem', None) or exc})",
                     "fix the YAML syntax") from None
    except RecursionError:
        raise row_error(path, None, "YAML is nested too deeply to load",
                     "flatten the cases' fields") from None
    finally:
        loader.dispose()
    return data, _item_lines(node)


def _check_aliases(path: Path, root: Any, text_chars: int) -> None:
    """Refuse a document whose aliases expand past the limits, or that contains itself."""
    import yaml

    expanded: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, characters) expanded
    active: set[int] = set()
    written_chars = 0  # characters of the distinct scalars (each alias shares its anchor's)

    def size(node: Any) -> tuple[int, int]:
        nonlocal written_chars
        key = id(node)
        if key in expanded:
            return expanded[key]
        if key in active:
            raise row_error(path, node.start_mark.line + 1, "YAML alias refers to itself (a "
                         "value that contains its own anchor)", "remove the recursive alias")
        active.add(key)
        nodes, chars = 1, 0
        if isinstance(node, yaml.ScalarNode):
            chars = len(node.value)
            written_chars += chars
        else:
            children = (node.value if isinstance(node, yaml.SequenceNode)
                        else [n for pair in node.value for n in pair])
            for child in children:
                n, c = size(child)
                nodes += n
                chars += c
        active.discard(key)
        expanded[key] = (nodes, chars)
        return nodes, chars

    nodes, chars = size(root)
    written_nodes = len(expanded)  # distinct nodes: each alias shares its anchor's node
    node_limit = written_nodes + ALIAS_NODES + _FACTOR * written_nodes
    char_limit = written_chars + ALIAS_CHARS + _FACTOR * text_chars
    if nodes > node_limit:
        raise row_error(path, None, f"YAML aliases expand to more than {node_limit:,} nodes "
                     f"({nodes:,} from {written_nodes:,} written in the file)", _FIX_ALIASES)
    if chars > char_limit:
        raise row_error(path, None, f"YAML aliases expand to more than {char_limit:,} characters "
                     f"({chars:,} from {written_chars:,} written in the file)", _FIX_ALIASES)


def _item_lines(node: Any) -> list[int]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == "cases"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]
