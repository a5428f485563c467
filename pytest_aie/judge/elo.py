"""The ``elo`` eval marker: rank the models (or variants) of a suite from pairwise battles.

``@pytest.mark.elo(expect=["terse > plain"])`` on a suite with ``models=[...]`` or
``variants={...}``: each battle is one case's two outputs judged by the pairwise rubric
(``preference`` by default) in both orders, orders that disagree a tie. Battles can also
come from a file of human preferences (``battles="prefs.jsonl"``: ``case``, ``model_a``,
``model_b``, ``winner`` = ``a``/``b``/``tie`` or a model name), alone (``judge=False``) or with
the judge's.

Ratings (:mod:`pytest_aie.stats.ratings`): a Bradley-Terry fit on the Elo scale with bootstrap
intervals (the ranking), online Elo as the book defines it (K=32, 1000; the match order is
the order battles were judged, by option averaged over shuffled orders), the win-rate
matrix, and significant cycles. ``expect=`` gates are decided by the exact sign test on the
decisive battles between their two models (pass, fail, inconclusive with the reason); when the
judge's position flips or too few decisive battles show that the battles cannot rank
(:func:`~pytest_aie.stats.ranking.ranking_signal`), the leaderboard says "no signal", places
nobody, and every expectation is inconclusive.

Without ``budget=`` every pair meets on every case (a round robin). With it, battles run in
rounds (the pipeline's follow-up rounds: batched, cached, once per run under xdist): each
round goes to the pairs whose order is least certain (:func:`~pytest_aie.stats.ranking.schedule`),
until the ranking is stable or ``budget`` battles are spent.
"""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path
from typing import Any, ClassVar, Sequence

from pytest_aie.engines.base import Generation, Request
from pytest_aie.errors import UsageError
from pytest_aie.judge.rubrics import load_rubric
from pytest_aie.judge.scorer import JudgeScorer, _asked
from pytest_aie.judge.verdicts import pair_winner, read_reply, unswapped
from pytest_aie.scorers.base import Sample, Score

__all__ = ["EloScorer", "build_elo"]

_OUTCOME = {"A": "a", "B": "b", "tie": "tie"}


class EloScorer(JudgeScorer):
    """Pairwise battles between a suite's models; see the module docstring."""

    marker: ClassVar[str] = "elo"
    binary: ClassVar[bool] = False
    rounds: ClassVar[int] = 50  # adaptive rounds at most (the budget usually ends them first)

    def __init__(self, *args: Any, expect: Sequence[str] = (), battles_file: Path | None = None,
                 judge: bool = True, budget: int | None = None, round_size: int | None = None,
                 k: float = 32.0, initial: float = 1000.0, shuffles: int = 0,
                 anchor: str | None = None, bootstrap: int = 1000, seed: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expect = list(expect)
        self.battles_file, self.use_judge = battles_file, judge
        self.budget, self.round_size = budget, round_size
        self.k, self.initial, self.shuffles, self.anchor = k, initial, shuffles, anchor
        self.bootstrap, self.seed = bootstrap, seed
        self._reset()

    @property
    def metric(self) -> str:
        return f"elo.{self.rubric.name}"

    def _reset(self) -> None:
        self._models: list[str] = []
        self._by_case: dict[str, dict[str, int]] = {}  # case id -> model -> sample index
        self._planned: dict[int, list[tuple[str, str, str]]] = {}  # sample -> (x, y, order)
        self._read: dict[int, int] = {}  # sample -> results read so far
        self._pending: dict[tuple[int, str, str], dict[str, str | None]] = {}
        self._battles: list[Any] = []  # Battle, in the order judged
        self._unread = 0
        self._fits: list[Any] = []
        self._round = 0
        self._stop = ""
        self._flips: list[tuple[str, str]] = []  # (first order, swapped order) per battle
        self._human_count = 0
        self._summary: dict[str, Any] | None = None

    # --- planning -----------------------------------------------------------------------
    def plan(self, samples: Sequence[Sample]) -> list[list[Request | tuple[str, Request]]]:
        self._reset()
        for i, s in enumerate(samples):
            if s.index == 0:
                self._by_case.setdefault(s.case.id, {})[s.model] = i
                if s.model not in self._models:
                    self._models.append(s.model)
        self._battles.extend(self._human_battles())
        if len(self._models) < 2:
            raise UsageError(f"@pytest.mark.elo needs a suite of two or more models; this one "
                             f"has {self._models}", fix="add models=[...] or variants={...} to "
                                                        "the dataset marker")
        if not self.use_judge:
            return [[] for _ in samples]
        pairs = list(itertools.combinations(self._models, 2))
        if self.budget is None:  # a round robin: every pair on every case
            todo = [(x, y, c) for c in self._by_case for x, y in pairs]
        else:
            from pytest_aie.stats.ranking import schedule

            todo = [(p.model_a, p.model_b, str(p.case)) for p in schedule(
                self._models, self._battles, None, self._first_round(len(pairs)),
                cases=list(self._by_case), seed=self.seed)]
        return self._requests(samples, todo)

    def _first_round(self, n_pairs: int) -> int:
        size = self.round_size or max(2 * n_pairs, 16)
        return min(size, self.budget or size)

    def _requests(self, samples: Sequence[Sample], todo: list[tuple[str, str, str]]
                  ) -> list[list[Request | tuple[str, Request]]]:
        out: list[list[Request | tuple[str, Request]]] = [[] for _ in samples]
        judge = self.judges[0]
        for x, y, case in todo:
            row = self._by_case.get(case, {})
            if x not in row or y not in row:
                continue  # one of the two has no output for this case (its generation failed)
            sx, sy = samples[row[x]], samples[row[y]]
            fields = dict(sx.case.fields)
            base = {**fields, "case": fields, "input": _asked(sx), "output": sx.text}
            for order, (a, b) in (("AB", (sx.text, sy.text)), ("BA", (sy.text, sx.text))):
                req = self._request(judge, {**base, "answer_a": a, "answer_b": b}, case)
                out[row[x]].append((judge, req))
                self._planned.setdefault(row[x], []).append((x, y, order))
        self._round += 1
        return out

    def follow_up(self, samples: Sequence[Sample], results: Sequence[Sequence[Generation]]
                  ) -> list[list[Request | tuple[str, Request]]]:
        """The next round of battles, where the ranking is least certain (with ``budget=``)."""
        self._absorb(samples, results)
        if self.budget is None or not self.use_judge:
            return [[] for _ in samples]
        from pytest_aie.stats.ranking import ranking_stable, schedule
        from pytest_aie.stats.ratings import bradley_terry

        fit = bradley_terry(self._battles, models=self._models, n_boot=min(self.bootstrap, 200),
                            seed=self.seed + self._round)
        self._fits.append(fit)
        spent = self._judged()
        state = ranking_stable(self._fits, spent=spent, budget=self.budget)
        if state.stable:
            self._stop = state.reason
            return [[] for _ in samples]
        size = min(self.round_size or max(2 * len(self._models), 16), self.budget - spent)
        todo = [(p.model_a, p.model_b, str(p.case)) for p in schedule(
            self._models, self._battles, fit, size, cases=list(self._by_case),
            seed=self.seed + self._round)]
        if not todo:
            self._stop = "every pair has met on every case the schedule wanted"
            return [[] for _ in samples]
        return self._requests(samples, todo)

    def _judged(self) -> int:
        """Battles the judge has decided so far (the budget counts these)."""
        return len(self._battles) - self._human_count + self._unread

    def _absorb(self, samples: Sequence[Sample], results: Sequence[Sequence[Generation]]) -> None:
        """Turn the replies not read yet into battles (both orders of a pair read together)."""
        from pytest_aie.stats.ratings import Battle

        for s, gens in enumerate(results):
            start = self._read.get(s, 0)
            planned = self._planned.get(s, [])
            for j in range(start, min(len(gens), len(planned))):
                x, y, order = planned[j]
                reading = read_reply(gens[j], self.rubric)
                key = (s, x, y)
                slot = self._pending.setdefault(key, {})
                slot[order] = None if reading.value is None else str(reading.value)
                if len(slot) == 2:
                    del self._pending[key]
                    ab, ba = slot["AB"], slot["BA"]
                    winner = pair_winner(ab, ba)
                    if ab is None or ba is None or winner is None:
                        self._unread += 1
                        continue
                    self._battles.append(Battle(x, y, _OUTCOME[winner],  # type: ignore[arg-type]
                                                samples[s].case.id))
                    self._flips.append((ab, unswapped(ba)))
            self._read[s] = len(gens)

    # --- human battles ------------------------------------------------------------------
    def _human_battles(self) -> list[Any]:
        from pytest_aie.stats.ratings import Battle

        if self.battles_file is None:
            return []
        path = self.battles_file
        if not path.is_file():
            raise UsageError(f"battles file {str(path)!r} not found",
                             fix="give battles= a path relative to the test file")
        if path.suffix == ".csv":
            with path.open(newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        else:
            rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
        out = []
        for n, row in enumerate(rows, 1):
            missing = [k for k in ("model_a", "model_b", "winner") if not row.get(k)]
            if missing:
                raise UsageError(f"{path}:{n}: a battle needs {missing[0]!r}",
                                 fix='write lines like {"case": "q1", "model_a": "a", '
                                     '"model_b": "b", "winner": "a"}')
            a, b, w = str(row["model_a"]), str(row["model_b"]), str(row["winner"])
            unknown = [m for m in (a, b) if m not in self._models]
            if unknown:
                raise UsageError(f"{path}:{n}: model {unknown[0]!r} is not a model of this "
                                 f"suite", fix=f"use one of {self._models}")
            outcome = {"a": "a", "b": "b", "tie": "tie", a: "a", b: "b"}.get(w)
            if outcome is None:
                raise UsageError(f"{path}:{n}: winner {w!r} is not a, b, tie or one of the two "
                                 "models", fix="write winner: a, b or tie")
            out.append(Battle(a, b, outcome, str(row.get("case") or "") or None))  # type: ignore[arg-type]
        self._human_count = len(out)
        return out

    # --- scores -------------------------------------------------------------------------
    def score_results(self, samples: Sequence[Sample],
                      results: Sequence[Sequence[Generation]]) -> list[Score]:
        self._absorb(samples, results)
        scores = []
        for s in samples:
            mine = [b for b in self._battles if b.case == s.case.id
                    and s.model in (b.model_a, b.model_b)] if s.index == 0 else []
            if not mine:
                scores.append(Score.unmeasured(self.metric, "no battle on this case",
                                               rubric=self.rubric.name))
                continue
            ties = sum(b.outcome == "tie" for b in mine)
            wins = sum(b.outcome != "tie" and (b.outcome == "a") == (b.model_a == s.model)
                       for b in mine)
            opponents = [b.model_b if b.model_a == s.model else b.model_a for b in mine]
            scores.append(Score(self.metric, (wins + ties / 2) / len(mine), None,
                                f"{wins} won, {len(mine) - wins - ties} lost, {ties} tied of "
                                f"{len(mine)} battle{'' if len(mine) == 1 else 's'} (vs "
                                f"{', '.join(opponents)}; a tie counts half)",
                                {"battles": [{"a": b.model_a, "b": b.model_b,
                                              "outcome": b.outcome} for b in mine]}))
        self._summary = self._ranking()
        board = [{"model": r["model"], "rating": r["rating"], "low": r["low"], "high": r["high"]}
                 for r in self._summary.get("ranking") or ()]
        for sc in scores:  # the ranking goes into the results log with every case record
            if sc.value is not None and board:
                sc.details["ranking"] = board
                if self._summary.get("expect"):
                    sc.details["expect"] = [{"expect": g["expect"], "verdict": g["verdict"]}
                                            for g in self._summary["expect"]]
        return scores

    def suite_aggregate(self, samples: Sequence[Sample]) -> dict[str, Any] | None:
        if not samples or not self._models or samples[0].model != self._models[0]:
            return None  # the ranking rides on the suite's first model's row
        return None if self._summary is None else {"elo": self._summary}

    def _ranking(self) -> dict[str, Any]:
        from pytest_aie.stats import pairs, ranking, ratings

        bs = self._battles
        out: dict[str, Any] = {"models": list(self._models), "battles": len(bs),
                               "human_battles": self._human_count,
                               "judge_battles": len(bs) - self._human_count,
                               "unreadable_battles": self._unread, "rounds": self._round,
                               "stop": self._stop or ("round robin" if self.budget is None
                                                      else "rounds ran out")}
        n_pairs = len(self._models) * (len(self._models) - 1) // 2
        out["round_robin_battles"] = n_pairs * len(self._by_case)
        out["judge_calls"] = 2 * (len(bs) - self._human_count + self._unread)
        if self._flips:
            flips = ratings_flip(self._flips)
            out["flip_rate"] = flips
        if not bs:
            out["reason"] = "no battle could be judged"
            return out
        fit = ratings.bradley_terry(bs, models=self._models, anchor=self.anchor,
                                    n_boot=self.bootstrap, seed=self.seed)
        out["ranking"] = [{"model": m, "rating": fit.ratings[m],
                           "low": fit.intervals.get(m, (None, None))[0],
                           "high": fit.intervals.get(m, (None, None))[1],
                           "battles": fit.battles.get(m, 0)} for m in fit.ranking()]
        pairs_met = [fit.record(a, b) for a, b in itertools.combinations(self._models, 2)]
        out["evidence"] = {  # what the signal and the expectations are decided on
            "decisive": [w + lo for w, lo, _ in pairs_met], "battles": len(bs),
            "flips": sum(a != b for a, b in self._flips),
            "flip_pairs": sum(not a == b == "tie" for a, b in self._flips)}
        out["unbounded"] = list(fit.unbounded)
        online = ratings.online_elo(bs, k=self.k, initial=self.initial, models=self._models,
                                    shuffles=self.shuffles, seed=self.seed)
        out["online"] = {"ratings": online.ratings, "k": self.k, "initial": self.initial,
                         "shuffles": self.shuffles}
        out["win_matrix"] = [{"model": r.model, "opponent": r.opponent, "wins": r.wins,
                              "losses": r.losses, "ties": r.ties, "win_rate": r.win_rate}
                             for r in pairs.win_matrix(bs, models=self._models).values()]
        out["cycles"] = [list(c.models) for c in pairs.find_cycles(bs, models=self._models)]
        out["expect"] = [{"expect": v.expectation.text, "verdict": v.verdict,
                          "difference": v.difference, "low": v.low, "high": v.high,
                          "left": v.expectation.left, "right": v.expectation.right,
                          "margin": v.expectation.margin, "wins": v.test.wins,
                          "losses": v.test.losses, "ties": v.test.ties,
                          "p_value": v.test.p_pass, "p_fail": v.test.p_fail,
                          "reason": v.reason}
                         for v in ranking.expect(fit, self.expect)] if self.expect else []
        return decide(out, (1 - fit.confidence) / 2)


def decide(elo: dict[str, Any], level: float) -> dict[str, Any]:
    """The ranking's verdicts at one-sided ``level``, from the counts it carries (a copy): the
    signal (:func:`~pytest_aie.stats.ranking.ranking_signal`; without one the leaderboard
    orders nothing, each place ``None``, and every expectation is inconclusive) and each
    expectation's sign test (:func:`~pytest_aie.stats.ranking.sign_test`). The gates call it
    again at the run's ``--aie-confidence``."""
    from pytest_aie.stats.ranking import ranking_signal, sign_test

    out = dict(elo)
    evidence = out.get("evidence")
    if not isinstance(evidence, dict) or not out.get("ranking"):
        return out
    why = ranking_signal(evidence["decisive"], evidence["battles"], flips=evidence["flips"],
                         flip_pairs=evidence["flip_pairs"], level=level)
    out["level"] = level
    out["no_signal"] = why
    board = out["ranking"]
    if why is not None:  # listed in the suite's order, placed nowhere
        order = {m: i for i, m in enumerate(out.get("models") or ())}
        board = sorted(board, key=lambda r: order.get(r["model"], len(order)))
    out["ranking"] = [dict(r, rank=None if why else place) for place, r in enumerate(board, 1)]
    gates = []
    for g in out.get("expect") or ():
        test = sign_test(g["wins"], g["losses"], g["ties"], margin=g["margin"], level=level,
                         left=g["left"], right=g["right"])
        g = dict(g, verdict=test.verdict, p_value=test.p_pass, p_fail=test.p_fail,
                 reason=test.reason)
        if why is not None:
            g.update(verdict="inconclusive", reason=f"no signal: {why} ({test.reason})")
        gates.append(g)
    out["expect"] = gates
    return out


def ratings_flip(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    from pytest_aie.judge.calibration import _plain
    from pytest_aie.stats.agreement import flip_rate

    return dict(_plain(flip_rate([a for a, _ in pairs], [b for _, b in pairs])))


def build_elo(rubric: str = "preference", *, base_dir: Path, engine: Any = None,
              judge_model: str | None = None, expect: str | Sequence[str] = (),
              battles: str | None = None, judge: bool = True, budget: int | None = None,
              round_size: int | None = None, k: float = 32.0, initial: float = 1000.0,
              shuffles: int = 0, anchor: str | None = None, bootstrap: int = 1000,
              seed: int = 0, max_tokens: int = 256) -> EloScorer:
    """The ``elo`` marker's factory; arguments are checked here."""
    from pytest_aie.stats.ranking import parse_expectation

    loaded = load_rubric(rubric, base_dir)
    if loaded.output != "preference":
        raise UsageError(f"@pytest.mark.elo(rubric={rubric!r}) is a {loaded.output} rubric",
                         fix="use a preference rubric (output: preference), e.g. 'preference'")
    if judge_model is not None and not isinstance(judge_model, str):
        raise UsageError("@pytest.mark.elo takes one judge_model", fix="write judge_model='NAME'")
    items = [expect] if isinstance(expect, str) else list(expect)
    for text in items:
        parse_expectation(text)  # a malformed expectation fails at collection
    for name, value, low in (("budget", budget, 1), ("round_size", round_size, 1),
                             ("shuffles", shuffles, 0), ("bootstrap", bootstrap, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise UsageError(f"@pytest.mark.elo({name}={value!r}) must be a whole number >= {low}",
                             fix=f"write e.g. {name}={max(low, 100 if name == 'budget' else 10)}")
    if not judge and battles is None:
        raise UsageError("@pytest.mark.elo(judge=False) needs battles= (a file of human "
                         "preferences)", fix="give battles='prefs.jsonl', or drop judge=False")
    return EloScorer(loaded, base_dir=base_dir, judge_model=judge_model, max_tokens=max_tokens,
                     expect=items, battles_file=None if battles is None else base_dir / battles,
                     judge=judge, budget=budget, round_size=round_size, k=k, initial=initial,
                     shuffles=shuffles, anchor=anchor, bootstrap=bootstrap, seed=seed)
