"""Native tool calling, the engine side: tool calls read out of generated text, and chat
messages put into the shape a chat template (or an OpenAI-compatible API) wants.

Engines that render a chat template themselves (``hf``, ``vllm``'s offline ``LLM.chat``) get
back plain text, so they parse the calls out of it with :func:`parse_tool_calls`:

* Hermes / Qwen style blocks, one per call, anywhere in the text::

      <tool_call>
      {"name": "get_weather", "arguments": {"city": "Paris"}}
      </tool_call>

  (an unclosed last block, cut by ``max_tokens`` or a stop token, counts too);
* a reply that is nothing but a JSON object (or a list of them, optionally in a ```json fence)
  shaped like a call: ``{"name": ..., "arguments": {...}}``, Llama 3.1's ``{"name": ...,
  "parameters": {...}}``, or the OpenAI ``{"type": "function", "function": {"name": ...,
  "arguments": ...}}``. Such an object counts only when its keys are a call's keys and nothing
  else, and, when the request offered tools, when it names one of them: an answer that happens
  to be JSON (or a model echoing a tool's schema back) is not taken for a call.

Each call is ``{"id": str, "name": str, "arguments": dict | str}``: ``arguments`` JSON-decoded
(also when the model wrote them as a JSON string), or the raw text when it is not a JSON object,
so an agent can record the invalid arguments. A block whose JSON is broken still gives a call,
its name found in the text (``""`` when none) and its arguments raw. Ids are derived from the
text (``call_<hash>_<n>``), so a cached generation and a fresh one agree.

:func:`template_messages` puts the conversation into the shape chat templates expect (tool-call
arguments as dicts); :func:`api_messages` into the OpenAI API's (arguments as JSON strings).
:func:`template_uses_tools` tells whether a tokenizer's chat template renders ``tools`` at all.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable, Sequence

__all__ = ["api_messages", "call_from_api", "decode_arguments", "parse_tool_calls",
           "template_messages", "template_uses_tools", "tool_names"]

_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"([^"\\]*)"')
_ARGUMENTS = re.compile(r'"(?:arguments|parameters)"\s*:\s*')
_CALL_KEYS = {"name", "arguments", "parameters", "type", "id"}


def tool_names(tools: Iterable[dict[str, Any]] | None) -> set[str] | None:
    """The function names of OpenAI-format tool schemas (``None`` for no tools)."""
    if tools is None:
        return None
    names = set()
    for tool in tools:
        fn = tool.get("function", tool)
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            names.add(fn["name"])
    return names


def decode_arguments(raw: Any) -> dict[str, Any] | str:
    """Tool-call arguments as a dict: a dict as it is, a JSON string of an object decoded; the
    raw text otherwise (broken JSON, or JSON that is not an object)."""
    if isinstance(raw, dict):
        return raw
    if raw is None:
        return {}
    if not isinstance(raw, str):
        return json.dumps(raw)
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        return raw
    return value if isinstance(value, dict) else raw


def call_from_api(call_id: str | None, name: str | None, arguments: str | None,
                  index: int) -> dict[str, Any]:
    """One call of an OpenAI ``message.tool_calls`` list in our shape."""
    return {"id": call_id or f"call_{index}", "name": name or "",
            "arguments": decode_arguments(arguments)}


def _call_id(text: str, index: int) -> str:
    return f"call_{hashlib.sha256(text.encode()).hexdigest()[:8]}_{index}"


def _as_call(value: Any, names: set[str] | None, *, strict: bool = True
             ) -> tuple[str, Any] | None:
    """``(name, raw arguments)`` when ``value`` is a call object, else None. ``strict`` (a
    bare JSON reply): only a call's keys, arguments present, and a name among ``names``;
    else (inside a ``<tool_call>`` block) any object with a name."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("function"), dict) and (
            not strict or set(value) <= {"type", "function", "id"}):
        inner = value["function"]  # the OpenAI shape
        if strict and (not set(inner) <= {"name", "arguments"} or "arguments" not in inner):
            return None
        value = inner
    name = value.get("name")
    if not isinstance(name, str):
        return None
    if strict and (not set(value) <= _CALL_KEYS
                   or ("arguments" not in value and "parameters" not in value)
                   or (names is not None and name not in names)):
        return None
    return name, value.get("arguments", value.get("parameters"))


def _block_calls(body: str) -> list[tuple[str, Any]]:
    """The calls of one ``<tool_call>`` block: its JSON object (or list of objects); else,
    for broken JSON, the name found in it and the raw arguments text."""
    body = body.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        value = None
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, None, strict=False) for item in items]
    if value is not None and calls and all(c is not None for c in calls):
        return [c for c in calls if c is not None]
    name = _NAME.search(body)
    args = _ARGUMENTS.search(body)
    raw = body
    if args is not None:  # the text after "arguments":, less the brace closing the call
        raw = body[args.end():].rstrip()
        if raw.endswith("}") and raw.count("}") > raw.count("{"):
            raw = raw[:-1].rstrip()
    return [(name.group(1) if name else "", raw)]


def parse_tool_calls(text: str, tools: Sequence[dict[str, Any]] | None = None
                     ) -> tuple[str, list[dict[str, Any]] | None]:
    """``(content, calls)``: the text with the tool-call blocks taken out (stripped), and the
    calls in order, or ``None`` when the text holds none (see the module docstring)."""
    found: list[tuple[str, Any]] = []
    content = text
    if "<tool_call>" in text:
        for match in _BLOCK.finditer(text):
            found.extend(_block_calls(match.group(1)))
        content = _BLOCK.sub("", text).strip()
    else:
        stripped = text.strip()
        fenced = _FENCE.match(stripped)
        candidate = fenced.group(1) if fenced else stripped
        if candidate[:1] in ("{", "["):
            try:
                value = json.loads(candidate)
            except ValueError:
                value = None
            items = value if isinstance(value, list) else [value]
            names = tool_names(tools)
            calls = [_as_call(item, names) for item in items]
            if value is not None and calls and all(c is not None for c in calls):
                found = [c for c in calls if c is not None]
                content = ""
    if not found:
        return text, None
    return content, [{"id": _call_id(text, i), "name": name, "arguments": decode_arguments(args)}
                     for i, (name, args) in enumerate(found)]


def _calls_with(calls: Any, convert: Any) -> Any:
    if not isinstance(calls, list):
        return calls
    out = []
    for call in calls:
        if isinstance(call, dict) and isinstance(call.get("function"), dict):
            fn = dict(call["function"])
            fn["arguments"] = convert(fn.get("arguments"))
            call = {**call, "function": fn}
        out.append(call)
    return out


def template_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for a chat template: an assistant message's ``tool_calls`` keep the OpenAI
    shape (``{"id", "type", "function": {"name", "arguments"}}``) with the arguments decoded to
    a dict (what tool-use templates expect; raw text that is not a JSON object stays text);
    ``content`` ``None`` becomes ``""``."""
    out = []
    for message in messages:
        m = dict(message)
        if m.get("content") is None:
            m["content"] = ""
        if "tool_calls" in m:
            m["tool_calls"] = _calls_with(m["tool_calls"], decode_arguments)
        out.append(m)
    return out


def _encode_arguments(args: Any) -> Any:
    return args if isinstance(args, str) else json.dumps({} if args is None else args)


def api_messages(messages: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Messages for an OpenAI-compatible API: tool-call arguments as JSON strings."""
    out = []
    for message in messages:
        m = dict(message)
        if "tool_calls" in m:
            m["tool_calls"] = _calls_with(m["tool_calls"], _encode_arguments)
        out.append(m)
    return out


def template_uses_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template (its tool-use template when it has several)
    renders a ``tools`` list; False without a chat template."""
    probe = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    try:
        source = tokenizer.get_chat_template(tools=probe)
    except (ValueError, AttributeError, TypeError):
        source = getattr(tokenizer, "chat_template", None)
    if isinstance(source, dict):  # several named templates, and no chooser
        source = source.get("tool_use") or source.get("default")
    return isinstance(source, str) and re.search(r"\btools\b", source) is not None
