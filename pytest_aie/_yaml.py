"""YAML datasets: safe loading with a limit on alias expansion, and the cases' line numbers.

YAML aliases (``*name``) repeat an anchored value (``&name``). Nested aliases multiply: a
418-byte file can expand into millions of nodes ("billion laughs"), and every copy would be
written to the results log and the report. The composed node graph (aliases still shared)
is measured *before* any Python object is built: what the aliases add beyond the nodes and
text written in the file may be at most :data:`ALIAS_NODES` nodes plus ten times the nodes
written, and :data:`ALIAS_CHARS` characters plus ten times the file's length. Ordinary use,
one context or a mapping of defaults shared by every case, stays far below that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_aie.errors import DatasetError

__all__ = ["ALIAS_CHARS", "ALIAS_NODES", "load_yaml"]

#: Nodes that aliases may add beyond those written in the file (plus 10 per node written).
ALIAS_NODES = 100_000
#: Characters that aliases may add beyond the file's text (plus 10 per character of it).
ALIAS_CHARS = 10_000_000
_FACTOR = 10
_FIX_ALIASES = ("write the repeated values out, or nest aliases less deeply (an alias should "
                "repeat a value, not multiply it)")


def _error(path: Path, line: int | None, problem: str, fix: str) -> DatasetError:
    where = f"{path}:{line}" if line else str(path)
    return DatasetError(f"{where}: {problem}", fix=fix)


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
        raise _error(path, line, f"invalid YAML ({getattr(exc, 'problem', None) or exc})",
                     "fix the YAML syntax") from None
    except RecursionError:
        raise _error(path, None, "YAML is nested too deeply to load",
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
            raise _error(path, node.start_mark.line + 1, "YAML alias refers to itself (a "
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
        raise _error(path, None, f"YAML aliases expand to more than {node_limit:,} nodes "
                     f"({nodes:,} from {written_nodes:,} written in the file)", _FIX_ALIASES)
    if chars > char_limit:
        raise _error(path, None, f"YAML aliases expand to more than {char_limit:,} characters "
                     f"({chars:,} from {written_chars:,} written in the file)", _FIX_ALIASES)


def _item_lines(node: Any) -> list[int]:
    import yaml

    if isinstance(node, yaml.MappingNode):
        node = next((v for k, v in node.value
                     if isinstance(k, yaml.ScalarNode) and k.value == "cases"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    return [item.start_mark.line + 1 for item in node.value]
