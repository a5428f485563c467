"""Tools for agents: plain typed Python functions turned into JSON tool schemas.

Any function with type hints on its parameters is a tool::

    def convert(value: float, unit: Literal["km", "mi"] = "km") -> float:
        '''Convert a distance.

        Args:
            value: the distance
            unit: the unit it is in
        '''

Its name is the function's name, its description the docstring's text before the sections, and
its ``parameters`` a JSON schema built from the hints: ``str``, ``int``, ``float``, ``bool``,
``list[X]`` (and ``tuple[X, ...]``), ``dict[str, X]``, ``Literal[...]``, ``Optional[X]`` /
``X | None``, and ``Any``; a parameter with a default is not required (the default is in the
schema). Parameter descriptions come from a Google-style ``Args:`` section or a numpy-style
``Parameters`` section. The :func:`tool` decorator names a tool, describes it, or marks it as one
that changes state (``changes_state=True``: refused in eval runs unless the agent allows it).
"""

from __future__ import annotations

import collections.abc
import contextvars
import inspect
import json
import re
import threading
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, Union, overload

from pytest_aie.errors import UsageError

__all__ = ["Tool", "ToolTimeout", "as_tools", "call_within", "tool"]

_SIMPLE: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns?|Raises|Yields|Examples?|"
                      r"Notes?|See Also|References)\s*:?\s*$")
_GOOGLE_ARG = re.compile(r"^\s*\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ARG = re.compile(r"^(\w+)\s*(?::.*)?$")


def _json_type(annotation: Any, where: str) -> dict[str, Any]:
    """The JSON schema of one annotation; UsageError for what JSON cannot carry."""
    if annotation is Any:
        return {}
    if annotation in _SIMPLE:
        return {"type": _SIMPLE[annotation]}
    if annotation is list or annotation is tuple:
        return {"type": "array"}
    if annotation is dict:
        return {"type": "object"}
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        values = list(args)
        if not all(isinstance(v, (str, int, float, bool)) or v is None for v in values):
            raise UsageError(f"{where}: Literal values must be str, int, float, bool or None",
                             fix="use Literal of plain values, e.g. Literal['km', 'mi']")
        kinds = {_SIMPLE[type(v)] for v in values if v is not None}
        schema: dict[str, Any] = {"enum": values}
        if len(kinds) == 1 and None not in values:
            schema["type"] = kinds.pop()
        return schema
    if origin is Union or origin is types.UnionType:
        members = [a for a in args if a is not type(None)]
        parts = [_json_type(a, where) for a in members]
        if len(args) > len(members):
            parts.append({"type": "null"})
        return parts[0] if len(parts) == 1 else {"anyOf": parts}
    if origin in (list, tuple, collections.abc.Sequence):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise UsageError(f"{where}: fixed-length tuple {annotation!r} has no JSON schema here",
                             fix="annotate it as list[X] or tuple[X, ...]")
        return {"type": "array", "items": _json_type(args[0], where)} if args else {"type": "array"}
    if origin is dict:
        if args and args[0] is not str:
            raise UsageError(f"{where}: JSON object keys are strings, got {annotation!r}",
                             fix="annotate it as dict[str, X]")
        if args and args[1] is not Any:
            return {"type": "object", "additionalProperties": _json_type(args[1], where)}
        return {"type": "object"}
    raise UsageError(f"{where}: type {annotation!r} has no JSON schema",
                     fix="annotate tool parameters with str, int, float, bool, list[...], "
                         "dict[str, ...], Literal[...] or Optional[...]")


def _doc_parts(doc: str) -> tuple[str, dict[str, str]]:
    """(the description before the first section, parameter name -> description)."""
    lines = doc.splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    i = 0
    while i < len(lines) and _SECTION.match(lines[i]) is None:
        description.append(lines[i])
        i += 1
    while i < len(lines):
        header = _SECTION.match(lines[i])
        if header is None:
            i += 1
            continue
        name = header.group(1)
        numpy = i + 1 < len(lines) and set(lines[i + 1].strip()) == {"-"}
        i += 2 if numpy else 1
        body: list[str] = []
        while i < len(lines) and not (_SECTION.match(lines[i]) is not None
                                      and not lines[i].startswith((" ", "\t"))):
            body.append(lines[i])
            i += 1
        if name in ("Args", "Arguments", "Parameters", "Params"):
            params.update(_numpy_params(body) if numpy else _google_params(body))
    return " ".join(" ".join(description).split()), params


def _google_params(body: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    indents = [len(x) - len(x.lstrip()) for x in body if x.strip()]
    base = min(indents) if indents else 0
    current = None
    for line in body:
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        match = _GOOGLE_ARG.match(line)
        if indent == base and match:
            current = match.group(1)
            out[current] = match.group(2).strip()
        elif current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out


def _numpy_params(body: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    current = None
    for line in body:
        if not line.strip():
            continue
        match = _NUMPY_ARG.match(line)
        if not line.startswith((" ", "\t")) and match:
            current = match.group(1)
            out[current] = ""
        elif current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out


def _parameters(fn: Callable[..., Any], name: str, docs: dict[str, str]) -> dict[str, Any]:
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:  # noqa: BLE001 - a NameError in a string annotation, for one
        raise UsageError(f"tool {name!r}: cannot read its type hints ({exc})",
                         fix="import every type its annotations name") from None
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in inspect.signature(fn).parameters.values():
        where = f"tool {name!r}, parameter {param.name!r}"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise UsageError(f"{where}: *args and **kwargs have no JSON schema",
                             fix="give the tool named, typed parameters")
        if param.kind is param.POSITIONAL_ONLY:
            raise UsageError(f"{where}: positional-only parameters cannot be called by name",
                             fix="drop the / from the tool's signature")
        if param.name not in hints:
            raise UsageError(f"{where} has no type annotation",
                             fix=f"annotate it, e.g. {param.name}: str")
        schema = _json_type(hints[param.name], where)
        if docs.get(param.name):
            schema["description"] = docs[param.name]
        if param.default is param.empty:
            required.append(param.name)
        else:
            try:  # as JSON has it (a tuple default is a list)
                schema["default"] = json.loads(json.dumps(param.default))
            except (TypeError, ValueError):
                pass
        properties[param.name] = schema
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "additionalProperties": False}
    if required:
        out["required"] = required
    return out


@dataclass
class Tool:
    """A function the agent may call, with its JSON schema. Calling the Tool calls the function."""

    fn: Callable[..., Any]
    name: str
    description: str
    parameters: dict[str, Any]
    changes_state: bool = False
    _validator: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_function(cls, fn: Callable[..., Any], *, name: str | None = None,
                      description: str | None = None, changes_state: bool = False) -> Tool:
        if not callable(fn):
            raise UsageError(f"tool {fn!r} is not callable", fix="pass a function")
        tool_name = name or getattr(fn, "__name__", None) or type(fn).__name__
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,63}", tool_name):
            raise UsageError(f"tool name {tool_name!r} is not a valid function name",
                             fix="name tools with letters, digits, _ and - (up to 64)")
        summary, docs = _doc_parts(inspect.getdoc(fn) or "")
        return cls(fn=fn, name=tool_name, description=description or summary,
                   parameters=_parameters(fn, tool_name, docs), changes_state=changes_state)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def schema(self) -> dict[str, Any]:
        """The OpenAI tool schema: ``{"type": "function", "function": {...}}``."""
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}

    def validate(self, arguments: Any) -> str | None:
        """Why ``arguments`` do not fit the tool's schema (None when they do)."""
        if not isinstance(arguments, dict):
            return f"arguments must be a JSON object, got {_show(arguments)}"
        if self._validator is None:
            self._validator = schema_validator(self.parameters, f"tool {self.name!r}")
        return arguments_problem(self._validator, arguments)

    def call(self, arguments: dict[str, Any]) -> Any:
        """Call the function with keyword ``arguments`` (not validated here)."""
        return self.fn(**arguments)

    def digest(self) -> str:
        """A digest of the function's code (what the tool's results depend on)."""
        from pytest_aie._util.digest import code_digest

        return code_digest(self.fn)


class ToolTimeout(Exception):
    """A tool call that did not return within the time it was given (see :func:`call_within`)."""


def call_within(tool: Tool, arguments: dict[str, Any], seconds: float) -> Any:
    """``tool.call(arguments)`` in a worker thread, waiting at most ``seconds``: its result, or
    its exception re-raised, or :class:`ToolTimeout` when it has not returned by then.

    A Python thread cannot be killed: a tool that blocks (a socket without a timeout, a lock,
    ``input()``) runs on in the background after the timeout, as a daemon thread that does not
    keep the process alive, and whatever it does later is not recorded. The tool runs in a copy
    of the caller's context (``contextvars``), not on the main thread: an object that must stay
    on the thread that created it (an ``sqlite3`` connection, for one) needs
    ``check_same_thread=False`` or to be opened inside the tool."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = tool.call(arguments)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,),
                              name=f"aie-tool-{tool.name}", daemon=True)
    worker.start()
    worker.join(max(seconds, 0.0))
    if worker.is_alive():
        raise ToolTimeout(f"{tool.name} did not return within {max(seconds, 0.0):.2f} s")
    if "error" in box:
        raise box["error"]
    return box.get("result")


def schema_validator(schema: Mapping[str, Any], what: str) -> Any:
    """A jsonschema validator for a tool's parameters (the draft its ``$schema`` names, else
    2020-12); :class:`ValueError` naming ``what`` when the schema itself is not valid."""
    import jsonschema

    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(dict(schema))
    except jsonschema.SchemaError as exc:
        raise ValueError(f"{what}: its parameters are not a valid JSON Schema: {exc.message}") from None
    return cls(dict(schema))


def arguments_problem(validator: Any, arguments: Mapping[str, Any]) -> str | None:
    """Why ``arguments`` fail the validator's schema (jsonschema's best match, and where in the
    arguments), or None when they fit."""
    import jsonschema

    error = jsonschema.exceptions.best_match(validator.iter_errors(dict(arguments)))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"invalid arguments{f' at {where!r}' if where else ''}: {error.message}"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@overload
def tool(fn: Callable[..., Any], *, name: str | None = ..., description: str | None = ...,
         changes_state: bool = ...) -> Tool: ...


@overload
def tool(fn: None = ..., *, name: str | None = ..., description: str | None = ...,
         changes_state: bool = ...) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None,
         description: str | None = None, changes_state: bool = False
         ) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a function a :class:`Tool`: ``@tool``, or ``@tool(name=..., description=...,
    changes_state=True)``. The result can still be called like the function."""
    def make(f: Callable[..., Any]) -> Tool:
        return Tool.from_function(f, name=name, description=description,
                                  changes_state=changes_state)

    return make(fn) if fn is not None else make


def as_tools(items: Iterable[Tool | Callable[..., Any]]) -> list[Tool]:
    """Tools from a list of :class:`Tool`\\ s and plain typed functions; names must be unique."""
    if isinstance(items, (Tool, str)) or callable(items):
        raise UsageError("tools must be a list of functions or Tools",
                         fix="write tools=[my_tool], not tools=my_tool")
    out: list[Tool] = []
    seen: set[str] = set()
    for item in items:
        t = item if isinstance(item, Tool) else Tool.from_function(item)
        if t.name in seen:
            raise UsageError(f"two tools are named {t.name!r}",
                             fix="rename one with @tool(name=...)")
        seen.add(t.name)
        out.append(t)
    return out
