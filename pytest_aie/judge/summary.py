"""The judge's lines under its suite in the terminal summary (and the Markdown summary)."""

from __future__ import annotations

from typing import Any

__all__ = ["elo_lines", "judge_lines"]

Line = tuple[str, dict[str, bool]]


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{x:.0%}"


def _ci(d: dict[str, Any], fmt: str = ".2f") -> str:
    low, high = d.get("low"), d.get("high")
    return "" if low is None or high is None else f" [{low:{fmt}}, {high:{fmt}}]"


def judge_lines(j: dict[str, Any]) -> list[Line]:
    """What a suite's judge did: replies read, bias figures, agreement, trust."""
    out: list[Line] = []
    constrained = [name for name, on in (j.get("constrained") or {}).items() if on]
    how = ("constrained decoding" if len(constrained) == len(j.get("judges") or [])
           else "parsed, one repair request" if not constrained
           else f"constrained on {', '.join(constrained)}")
    repaired = f", {j['repaired']} after a repair request" if j.get("repaired") else ""
    out.append((f"  judge {j['rubric']} ({', '.join(j.get('judges') or [])}; {how}): "
                f"{j['readable']}/{j['judgments']} replies read ({_pct(j.get('parse_rate'))})"
                f"{repaired}, {j['unreadable_count']} unmeasured",
                {"yellow": bool(j.get("unreadable_count"))}))
    for u in (j.get("unreadable") or [])[:3]:
        raw = " ".join((u.get("raw") or "").split())[:80]
        out.append((f"    unreadable {u['case_id']} ({u['judge']}): {u['error']}: {raw!r}",
                    {"yellow": True}))
    for judge, p in (j.get("position") or {}).items():
        if p.get("n"):
            out.append((f"  position bias ({judge}): order flips the winner in "
                        f"{_pct(p.get('flip_rate'))}{_ci(p, '.0%')} of {p['n']} pairs; picks the "
                        f"first shown {_pct(p.get('first_position_rate'))}",
                        {"yellow": (p.get("flip_rate") or 0) > 0.2}))
    lb = j.get("length_bias")
    if lb:
        if lb.get("rho") is None:
            out.append((f"  length bias: not measured ({lb.get('reason') or 'too few scores'})", {}))
        else:
            out.append((f"  length bias: Spearman rho {lb['rho']:+.2f} between score and answer "
                        f"length (p={lb['p_value']:.2g}, n={lb['n']})", {}))
    ag = j.get("agreement")
    if ag:
        alpha = ag.get("alpha")
        text = "n/a" if alpha is None else f"{alpha:.2f}"
        out.append((f"  judges agree: Krippendorff's alpha {text} ({ag.get('level')})", {}))
    human = j.get("human") or {}
    if human.get("labels"):
        k = human.get("kappa") or {}
        kappa = "undefined" if k.get("kappa") is None else f"{k['kappa']:.2f}{_ci(k)}"
        weights = f", {human['kappa_weights']} weights" if human.get("kappa_weights") else ""
        extra = "".join(f", {len(human[key])} {key}" for key in ("stale", "unjudged")
                        if human.get(key))
        rates = human.get("rates") or {}
        tpr = f"; true-positive rate {_pct(rates.get('tpr'))}, true-negative rate " \
              f"{_pct(rates.get('tnr'))}" if rates else ""
        same = f" (the judge said {human['constant_judge']!r} to every labelled case)" \
            if "constant_judge" in human else ""
        out.append((f"  human labels: {human['used']} used{extra}; Cohen's kappa "
                    f"{kappa}{weights}{same}{tpr}", {}))
    trust = j.get("trust") or {}
    if trust.get("untrusted"):
        out.append((f"  judge untrusted: {trust['reason']}: its verdicts are inconclusive",
                    {"yellow": True}))
        if trust.get("todo"):
            out.append((f"    to decide with a judge: {trust['todo']}", {"yellow": True}))
    elif trust.get("uncalibrated"):
        out.append((f"  judge uncalibrated ({trust['uncalibrated']}): its verdicts are not checked "
                    "against people (human labels with min_kappa= calibrate it)", {"yellow": True}))
    if j.get("injection_cases"):
        ids = j["injection_cases"]
        out.append((f"  answers that try to instruct the judge ({len(ids)}): "
                    f"{', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}", {"yellow": True}))
    return out


def elo_lines(e: dict[str, Any]) -> list[Line]:
    """A ranking: Bradley-Terry ratings with intervals, online Elo, cycles, expect= gates."""
    out: list[Line] = []
    judged = f"{e.get('judge_battles', 0)} judged" + (
        f" + {e['human_battles']} human" if e.get("human_battles") else "")
    calls = f"; {e['judge_calls']} judge calls" if e.get("judge_calls") else ""
    rr = e.get("round_robin_battles")
    if rr and e.get("judge_battles") is not None and e.get("stop") != "round robin":
        calls += f" ({e['judge_battles'] / rr:.0%} of a round robin's {rr} battles, " \
                 f"{e.get('rounds')} rounds: {e.get('stop')})"
    out.append((f"  ranking from {e.get('battles', 0)} battles ({judged}; "
                f"{e.get('unreadable_battles', 0)} unreadable){calls}", {}))
    if not e.get("ranking"):
        out.append((f"  no ranking: {e.get('reason', 'no battles')}", {"yellow": True}))
        return out
    online = (e.get("online") or {}).get("ratings") or {}
    if e.get("no_signal"):  # the leaderboard orders nothing
        out.append((f"  no signal, no ranking: {e['no_signal']}", {"yellow": True}))
    for place, r in enumerate(e["ranking"], 1):
        ci = "" if r.get("low") is None else f" [{r['low']:.0f}, {r['high']:.0f}]"
        elo = f", online Elo {online[r['model']]:.0f}" if r["model"] in online else ""
        at = "-" if e.get("no_signal") else r.get("rank", place)
        out.append((f"    {at}. {r['model']}: {r['rating']:.0f}{ci} (Bradley-Terry, "
                    f"{r.get('battles', 0)} battles{elo})", {}))
    matrix = e.get("win_matrix") or []
    if matrix:  # each pair once, from the first model's side: wins + ties/2 over battles
        seen, cells = set(), []
        for r in matrix:
            key = frozenset((r["model"], r["opponent"]))
            if key not in seen:
                seen.add(key)
                cells.append(f"{r['model']} vs {r['opponent']} {r['win_rate']:.0%} "
                             f"({r['wins']}-{r['losses']}-{r['ties']})")
        out.append((f"  win rates (wins-losses-ties): {'; '.join(cells)}", {}))
    flips = e.get("flip_rate") or {}
    if flips.get("n"):
        out.append((f"  position bias: order flips the winner in {flips['flip_rate']:.0%} of "
                    f"{flips['n']} battles", {"yellow": flips["flip_rate"] > 0.2}))
    for cycle in e.get("cycles") or ():
        out.append((f"  intransitive: {' > '.join([*cycle, cycle[0]])} (each significant)",
                    {"yellow": True}))
    for g in e.get("expect") or ():
        ci = "" if g.get("low") is None else f", interval [{g['low']:+.0f}, {g['high']:+.0f}]"
        why = f" ({g['reason']})" if g.get("reason") else ""
        out.append((f"  expect {g['expect']}: difference {g['difference']:+.0f}{ci} -> "
                    f"{g['verdict'].upper()}{why}", {"green": g["verdict"] == "pass",
                                                 "red": g["verdict"] == "fail",
                                                 "yellow": g["verdict"] == "inconclusive"}))
    return out
