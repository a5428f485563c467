"""The per-case drill-down of the HTML report as plain text: a judge's judgments, an elo
suite's ranking, what a RAG target retrieved, an agent's trajectory step by step.

Plain text on purpose: the report shows it with ``textContent`` (model output is untrusted),
and the same text reads well in a results log viewer or a terminal.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

__all__ = ["judgments_text", "passages_text", "ranking_text", "samples_text", "trajectory_text"]

#: how much of a passage, a tool result or a model reply one line of the drill-down shows
SNIPPET_CHARS = 400


def _snippet(value: Any, limit: int = SNIPPET_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False,
                                                           default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def judgments_text(details: Mapping[str, Any]) -> str:
    """A judge's judgments of one case: who, in which order, what, and why."""
    lines = []
    for j in details.get("judgments") or ():
        order = f" ({j['order']})" if j.get("order") else ""
        if j.get("value") is None:
            lines.append(f"{j.get('judge')}{order}: unreadable ({j.get('error')}): {j.get('raw')!r}")
        else:
            fixed = ", after a repair request" if j.get("repaired") else ""
            lines.append(f"{j.get('judge')}{order}: {j['value']}{fixed}: {j.get('rationale')}")
    if details.get("human") is not None:
        lines.append(f"human label: {details['human']}")
    if details.get("untrusted"):
        lines.append(f"judge untrusted: {details['untrusted']}")
    return "\n".join(lines)


def ranking_text(details: Mapping[str, Any]) -> str:
    """An elo suite's ranking, best first, and its ``expect=`` verdicts."""
    return "\n".join(
        f"{n}. {r['model']}: {r['rating']:.0f}"
        + ("" if r.get("low") is None else f" [{r['low']:.0f}, {r['high']:.0f}]")
        for n, r in enumerate(details["ranking"], 1)) + "".join(
        f"\nexpect {g['expect']}: {g['verdict']}" for g in details.get("expect") or ())


def passages_text(retrieved: Sequence[Mapping[str, Any]],
                  relevant: Sequence[str] | Mapping[str, Any] | None = None) -> str:
    """What was retrieved, best first: rank, id, score, and the passage; ``relevant`` marks
    the relevant ones (a retrieval marker's details)."""
    marks = set(relevant or ())
    lines = []
    for n, hit in enumerate(retrieved, 1):
        rank = hit.get("rank", n)
        score = hit.get("score")
        shown = f"{score:.3f}" if isinstance(score, (int, float)) else "-"
        mark = " [relevant]" if str(hit.get("id")) in marks else ""
        lines.append(f"{rank}. {hit.get('id')} ({shown}){mark}: {_snippet(hit.get('text', ''))}")
    return "\n".join(lines)


def samples_text(samples: Sequence[Mapping[str, Any]]) -> str:
    """Repeated sampling: each sample's seed, outcome, score and reason, then its output."""
    lines = []
    for n, sample in enumerate(samples, 1):
        passed = sample.get("passed")
        outcome = "passed" if passed is True else "failed" if passed is False else "scored"
        value = sample.get("value")
        score = f" {value:.3g}" if isinstance(value, (int, float)) else ""
        lines.append(f"sample {n} (seed {sample.get('seed')}): {outcome}{score}: "
                     f"{_snippet(sample.get('reason') or '')}")
        lines.append(f"  output: {_snippet(sample.get('output') or '')}")
    return "\n".join(lines)


def trajectory_text(trajectory: Mapping[str, Any]) -> str:
    """An agent's run step by step: the model's reply, the tool call with its arguments,
    the result or the error, tokens and time; then how it stopped."""
    lines = [f"task: {_snippet(trajectory.get('task', ''))}"]
    if trajectory.get("protocol"):
        lines[0] += f"  (tool protocol: {trajectory['protocol']})"
    for step in trajectory.get("steps") or ():
        head = f"step {int(step.get('index', 0)) + 1}"
        cost = []
        if step.get("completion_tokens") is not None:
            cost.append(f"{step.get('prompt_tokens') or 0}+{step['completion_tokens']} tokens")
        if isinstance(step.get("seconds"), (int, float)):
            cost.append(f"{step['seconds']:.2f}s")
        if cost:
            head += f" ({', '.join(cost)})"
        lines.append(head + ":")
        if step.get("tool"):
            lines.append(f"  call {step['tool']}({_snippet(step.get('arguments'))})")
        elif step.get("output"):
            lines.append(f"  reply: {_snippet(step['output'])}")
        if step.get("refused"):
            lines.append("  REFUSED: the tool changes state and this is an eval run")
        if step.get("error"):
            lines.append(f"  error: {_snippet(step['error'])}")
        elif step.get("result") is not None:
            lines.append(f"  result: {_snippet(step['result'])}")
    stopped = trajectory.get("stopped")
    if stopped == "answer":
        lines.append(f"answer: {_snippet(trajectory.get('answer') or '')}")
    else:
        lines.append(f"stopped: {stopped}" + (f" ({trajectory['error']})"
                                               if trajectory.get("error") else ""))
    return "\n".join(lines)
