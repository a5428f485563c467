"""Inline SVG charts for the report, built on the server: no script draws them, and every
text in them is escaped (:class:`markupsafe.Markup` formatting). Each chart carries its numbers
in ``<title>`` elements, and the page shows the same numbers in a table next to it."""

from __future__ import annotations

from typing import Any, Sequence

from markupsafe import Markup

__all__ = ["bins", "histogram", "interval_bar", "whiskers"]

_W = 140  # width of a suite row's bar


def _x(value: float, lo: float, hi: float, width: float, pad: float = 4) -> float:
    span = hi - lo or 1.0
    return round(pad + (min(max(value, lo), hi) - lo) / span * (width - 2 * pad), 1)


def interval_bar(estimate: float | None, low: float | None, high: float | None,
                 threshold: float | None, *, lo: float = 0.0, hi: float = 1.0,
                 label: str = "") -> Markup:
    """A suite's estimate (dot) and interval (bar) on ``[lo, hi]``, the threshold a red line."""
    parts = [Markup('<svg class="bar" width="{}" height="18" viewBox="0 0 {} 18" role="img">'
                    '<title>{}</title>').format(_W, _W, label),
             Markup('<line x1="4" y1="9" x2="{}" y2="9" class="axis"/>').format(_W - 4)]
    if low is not None and high is not None:
        x1, x2 = _x(low, lo, hi, _W), _x(high, lo, hi, _W)
        parts.append(Markup('<rect x="{}" y="4" width="{}" height="10" rx="2" class="ci"/>')
                     .format(x1, round(max(x2 - x1, 1.5), 1)))
    if estimate is not None:
        parts.append(Markup('<circle cx="{}" cy="9" r="3.5" class="est"/>')
                     .format(_x(estimate, lo, hi, _W)))
    if threshold is not None:
        x = _x(threshold, lo, hi, _W)
        parts.append(Markup('<line x1="{}" y1="1" x2="{}" y2="17" class="threshold"/>').format(x, x))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def histogram(counts: Sequence[int], edges: Sequence[float], *, label: str,
              unit: str = "", width: int = 320, height: int = 110) -> Markup:
    """Bars of ``counts`` between ``edges`` (``len(edges) == len(counts) + 1``), each with a
    ``<title>`` giving its range and count; the axis ends are labelled."""
    top = max(counts) if counts else 0
    n = max(len(counts), 1)
    plot_h = height - 18
    bar_w = (width - 8) / n
    parts = [Markup('<svg class="hist" width="{}" height="{}" viewBox="0 0 {} {}" role="img">'
                    '<title>{}</title>').format(width, height, width, height, label)]
    for i, count in enumerate(counts):
        h = 0 if not top else round(count / top * (plot_h - 4), 1)
        parts.append(Markup('<rect x="{}" y="{}" width="{}" height="{}" class="bin">'
                            '<title>{}–{}{}: {}</title></rect>')
                     .format(round(4 + i * bar_w + 0.5, 1), round(plot_h - h, 1),
                             round(max(bar_w - 1, 0.5), 1), h, _fmt(edges[i]), _fmt(edges[i + 1]),
                             unit, count))
    parts.append(Markup('<line x1="4" y1="{}" x2="{}" y2="{}" class="axis"/>')
                 .format(plot_h, width - 4, plot_h))
    if edges:
        parts.append(Markup('<text x="4" y="{}" class="tick">{}{}</text>'
                            '<text x="{}" y="{}" class="tick" text-anchor="end">{}{}</text>')
                     .format(height - 4, _fmt(edges[0]), unit, width - 4, height - 4,
                             _fmt(edges[-1]), unit))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


def whiskers(ranking: Sequence[dict[str, Any]], *, width: int = 420) -> Markup:
    """An Elo leaderboard: one row per model, its rating a dot, its interval a whisker."""
    values = [v for r in ranking for v in (r.get("rating"), r.get("low"), r.get("high"))
              if isinstance(v, (int, float))]
    if not values:
        return Markup("")
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.08, 10)
    lo, hi = lo - pad, hi + pad
    label_w, row_h = 130, 22
    plot_w = width - label_w
    height = row_h * len(ranking) + 20
    parts = [Markup('<svg class="whiskers" width="{}" height="{}" viewBox="0 0 {} {}" role="img">'
                    '<title>Ratings (Bradley-Terry, Elo scale) with intervals</title>')
             .format(width, height, width, height)]
    for i, r in enumerate(ranking):
        y = 12 + i * row_h
        interval = ""
        if isinstance(r.get("low"), (int, float)) and isinstance(r.get("high"), (int, float)):
            x1 = label_w + _x(r["low"], lo, hi, plot_w)
            x2 = label_w + _x(r["high"], lo, hi, plot_w)
            interval = f" [{r['low']:.0f}, {r['high']:.0f}]"
            parts.append(Markup('<line x1="{}" y1="{}" x2="{}" y2="{}" class="whisker"/>'
                                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="whisker"/>'
                                '<line x1="{}" y1="{}" x2="{}" y2="{}" class="whisker"/>')
                         .format(x1, y, x2, y, x1, y - 5, x1, y + 5, x2, y - 5, x2, y + 5))
        parts.append(Markup('<text x="{}" y="{}" class="label" text-anchor="end">{}</text>')
                     .format(label_w - 8, y + 4, _short(str(r.get("model")))))
        if isinstance(r.get("rating"), (int, float)):
            parts.append(Markup('<circle cx="{}" cy="{}" r="4" class="est"><title>{}: {}{}'
                                '</title></circle>')
                         .format(label_w + _x(r["rating"], lo, hi, plot_w), y, r.get("model"),
                                 f"{r['rating']:.0f}", interval))
    parts.append(Markup('<text x="{}" y="{}" class="tick">{}</text>'
                        '<text x="{}" y="{}" class="tick" text-anchor="end">{}</text></svg>')
                 .format(label_w, height - 2, f"{lo:.0f}", width - 4, height - 2, f"{hi:.0f}"))
    return Markup("").join(parts)


def _short(text: str, limit: int = 18) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _fmt(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def bins(values: Sequence[float], count: int = 10, *, log: bool = False
         ) -> tuple[list[int], list[float]]:
    """Counts in ``count`` equal bins (``log``: equal on a log scale) and their edges; scores
    within [0, 1] get the bins of [0, 1]."""
    import numpy as np

    lo, hi = min(values), max(values)
    if log:
        edges = np.geomspace(lo, hi if hi > lo else lo * 10, count + 1)
    else:
        if lo >= 0 and hi <= 1:
            lo, hi = 0.0, 1.0
        edges = np.linspace(lo, hi if hi > lo else lo + 1, count + 1)
    counts, _ = np.histogram(values, bins=edges)
    return [int(c) for c in counts], [float(e) for e in edges]
