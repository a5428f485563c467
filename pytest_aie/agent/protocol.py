"""How an agent talks to its model: the text protocol, and the native tool-calling messages.

**Text protocol** (engines without :attr:`~pytest_aie.engines.base.Capability.TOOLS`). The system
prompt (:func:`text_system_prompt`) lists the tools, each with its name, description, the JSON
schemas of its arguments and which are required, and asks for exactly one JSON object per reply::

    {"tool": "calculate", "arguments": {"expression": "17 * 23"}}     a tool call
    {"answer": "391"}                                                  the final answer

The tool's result comes back as a user message (``Result of calculate: 391``, or the error).
Replies are read leniently by :func:`parse_reply`: the first JSON object in a ```json code fence
or anywhere in the prose counts, one cut off at the end (``max_tokens``) is closed, ``name`` is
taken for ``tool``, and arguments written as a JSON string are decoded. A reply with no such
object is *unparseable*: it is a step with an error, and the model is told so once
(:data:`UNPARSEABLE_FEEDBACK`); a second unparseable reply in a row ends the run
(``stopped: "error"``).

**Constrained replies.** Where the engine can constrain its output to a JSON schema
(:attr:`~pytest_aie.engines.base.Capability.SCHEMA`: hf with xgrammar, vLLM, OpenAI-compatible
servers with ``response_format``), each reply of the text protocol is constrained to
:func:`reply_schema`: one of the tool calls, its arguments valid against the tool's schema, or the
answer. A small model then always replies in the protocol (its choices are still its own: the
wrong tool, the wrong values, an answer without a call). ``Agent(constrained=False)`` turns it off.
``Agent(tool_choice="required")`` (as in the OpenAI API) makes the first reply a tool call: the
model is told so (:data:`REQUIRED_NOTE`, on every protocol), and a constrained first reply has no
answer option.

**Native tool calling**: the request carries the tool schemas (``Request.tools``), the model's
calls come back in ``Generation.tool_calls``; the conversation goes on with the assistant message
holding the calls (:func:`assistant_call_message`) and one ``{"role": "tool", "tool_call_id": ...,
"content": result}`` message per call (:func:`tool_message`). A reply without calls is the final
answer.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

__all__ = ["REQUIRED_NOTE", "Reply", "UNPARSEABLE_FEEDBACK", "assistant_call_message", "parse_reply",
           "reply_schema", "result_message", "text_system_prompt", "tool_message"]

#: the longest final answer a constrained reply may write (characters)
ANSWER_CHARS = 200


#: the longest string argument a constrained reply may write (characters), where the tool's
#: schema sets no limit: an unbounded string lets a small model ramble until max_tokens cuts
#: the reply (and its JSON) off
ARGUMENT_CHARS = 60


def _capped(schema: Any) -> Any:
    """A copy of a parameters schema with :data:`ARGUMENT_CHARS` on every unbounded string."""
    if isinstance(schema, list):
        return [_capped(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _capped(v) for k, v in schema.items()}
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out \
            and "const" not in out:
        out["maxLength"] = ARGUMENT_CHARS
    return out


#: what the model is told when ``Agent(tool_choice="required")``
REQUIRED_NOTE = "Call a tool first: do not answer before you have a tool's result."


def reply_schema(tools: Sequence[dict[str, Any]], *, answer: bool = True) -> dict[str, Any]:
    """The JSON schema of one text-protocol reply: a call of one of ``tools`` (OpenAI schemas)
    with arguments valid against its parameters, or (``answer=True``) ``{"answer": "..."}``."""
    options: list[dict[str, Any]] = []
    for schema in tools:
        fn = schema["function"]
        params = _capped(fn.get("parameters") or {"type": "object", "properties": {}})
        options.append({"type": "object",
                        "properties": {"tool": {"const": fn["name"]}, "arguments": params},
                        "required": ["tool", "arguments"], "additionalProperties": False})
    if answer:
        options.append({"type": "object",
                        "properties": {"answer": {"type": "string", "maxLength": ANSWER_CHARS}},
                        "required": ["answer"], "additionalProperties": False})
    return {"anyOf": options}

PROTOCOL_VERSION = "4"  # bump when the prompt or the messages below change (it is in the cache key)

_INSTRUCTIONS = """\
You can use tools to answer. The tools:

{tools}

Reply with exactly one JSON object and nothing else. To call a tool:
{{"tool": "<tool name>", "arguments": {{"<parameter>": <value>, ...}}}}
When you know the final answer:
{{"answer": "<the final answer>"}}
After each tool call you get its result; then reply again with one JSON object."""

UNPARSEABLE_FEEDBACK = ('Your reply was not one JSON object. Reply with exactly one JSON object: '
                        '{"tool": "<tool name>", "arguments": {...}} to call a tool, or '
                        '{"answer": "<the final answer>"}.')

_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def text_system_prompt(tools: Sequence[dict[str, Any]], system: str | None = None) -> str:
    """The system prompt of the text protocol: the user's ``system`` text, then the tools (OpenAI
    schemas) and the reply format."""
    lines = []
    for schema in tools:
        fn = schema["function"]
        params = fn.get("parameters") or {}
        # the JSON schemas of the arguments (the object wrapper around them is left out: short
        # prompts cost less prefill on every step), then which are required
        required = params.get("required") or []
        lines.append(f"- {fn['name']}: {fn.get('description') or '(no description)'}\n"
                     f"  arguments: {json.dumps(params.get('properties') or {}, ensure_ascii=False)}"
                     + (f"; required: {', '.join(required)}" if required else ""))
    body = _INSTRUCTIONS.format(tools="\n".join(lines))
    return f"{system.strip()}\n\n{body}" if system else body


@dataclass(frozen=True)
class Reply:
    """One reply read by :func:`parse_reply`."""

    kind: Literal["call", "answer", "unparseable"]
    raw: str
    tool: str | None = None
    arguments: dict[str, Any] | str | None = None  # str: not a JSON object
    answer: str | None = None


def _objects(text: str) -> Any:
    """The JSON objects in ``text``, in order: fenced blocks first, then from each ``{``; an object
    cut off at the end is closed with the braces (and quote) it lacks."""
    decoder = json.JSONDecoder()
    for block in _FENCE.findall(text):
        try:
            value = json.loads(block.strip())
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value
    start = text.find("{")
    while start != -1:
        try:
            value, _end = decoder.raw_decode(text, start)
        except ValueError:
            value = _closed(text[start:])
        if isinstance(value, dict):
            yield value
        start = text.find("{", start + 1)


def _closed(fragment: str) -> Any:
    """A JSON object cut off at its end, closed: ``{"answer": "39`` -> ``{"answer": "39"}``."""
    fragment = fragment.rstrip().rstrip("`").rstrip()
    depth, in_string, escaped = 0, False, False
    for ch in fragment:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    if depth <= 0 or depth > 4:
        return None
    closing = ('"' if in_string else "")
    # close the open brackets innermost first, guessing braces (calls nest objects, not lists)
    for suffix in (closing + "}" * depth, closing + "]" + "}" * (depth - 1)):
        try:
            return json.loads(fragment + suffix)
        except ValueError:
            continue
    return None


def _arguments(value: Any) -> dict[str, Any] | str:
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return decoded if isinstance(decoded, dict) else value
    return json.dumps(value)


def parse_reply(text: str) -> Reply:
    """A text-protocol reply: a tool call, the final answer, or unparseable."""
    for obj in _objects(text):
        name = obj.get("tool", obj.get("name"))
        if isinstance(name, str) and ("tool" in obj or "arguments" in obj):
            return Reply("call", text, tool=name,
                         arguments=_arguments(obj.get("arguments", obj.get("parameters"))))
        if "answer" in obj:
            answer = obj["answer"]
            return Reply("answer", text,
                         answer=answer if isinstance(answer, str) else json.dumps(answer))
    return Reply("unparseable", text)


def result_message(tool: str, result: str | None, error: str | None) -> dict[str, str]:
    """The text protocol's message after a call: its result, or why it failed."""
    if error is not None:
        return {"role": "user", "content": f"Error from {tool}: {error}"}
    return {"role": "user", "content": f"Result of {tool}: {result}"}


def assistant_call_message(text: str, calls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The native protocol's assistant message holding the model's tool calls (arguments as JSON
    text, raw text kept as it came)."""
    return {"role": "assistant", "content": text or "", "tool_calls": [
        {"id": c["id"], "type": "function",
         "function": {"name": c["name"],
                      "arguments": c["arguments"] if isinstance(c["arguments"], str)
                      else json.dumps(c["arguments"], ensure_ascii=False)}}
        for c in calls]}


def tool_message(call: dict[str, Any], result: str | None, error: str | None) -> dict[str, str]:
    """The native protocol's reply to one call: its result, or the error."""
    return {"role": "tool", "tool_call_id": str(call["id"]), "name": str(call["name"]),
            "content": f"Error: {error}" if error is not None else str(result)}
