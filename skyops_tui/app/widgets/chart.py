"""A step chart of a market's clearing price, drawn with Unicode eighth blocks.

textual-plotext is not a dependency: a price history is a step function sampled into
one column per time bucket, which a few block characters show well enough.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from datetime import UTC, datetime

from rich.text import Text
from textual.widget import Widget

from skyops_tui.domain.money import fmt

EIGHTHS = " ▁▂▃▄▅▆▇█"


def hhmm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%H:%M")


def sample(
    points: Sequence[tuple[float, int]], t0: float, t1: float, cols: int
) -> list[int | None]:
    """The highest price in force during each of `cols` equal buckets of [t0, t1].

    `points` are (time, price) changes in time order; before the first one the price is
    unknown (None)."""
    if cols <= 0:
        return []
    times = [p[0] for p in points]
    width = (t1 - t0) / cols
    out: list[int | None] = []
    for c in range(cols):
        a = t0 + c * width
        i = bisect.bisect_right(times, a)  # points[:i] are in force by `a`
        j = bisect.bisect_left(times, a + width) if c < cols - 1 else bisect.bisect_right(times, t1)
        values = [points[i - 1][1]] if i > 0 else []
        values.extend(p for _, p in points[i:j])
        out.append(max(values) if values else None)
    return out


class PriceChart(Widget):
    """Clearing price over time, up to the standard rate; the y axis marks the standard
    rate, the floor and the latest price."""

    COMPONENT_CLASSES = {
        "chart--bar",
        "chart--axis",
        "chart--floor",
        "chart--label",
    }

    DEFAULT_CSS = """
    PriceChart { height: 8; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._points: list[tuple[float, int]] = []
        self._t0 = 0.0
        self._t1 = 0.0
        self._floor = 0
        self._rate = 1

    def show(
        self, points: Sequence[tuple[float, int]], t0: float, t1: float, floor: int, rate: int
    ) -> None:
        new = (list(points), t0, t1, floor, rate)
        if new != (self._points, self._t0, self._t1, self._floor, self._rate):
            self._points, self._t0, self._t1, self._floor, self._rate = new
            self.refresh()

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if width < 12 or height < 3:
            return Text("")
        bar = self.get_component_rich_style("chart--bar", partial=True)
        axis = self.get_component_rich_style("chart--axis", partial=True)
        floor_style = self.get_component_rich_style("chart--floor", partial=True)
        label = self.get_component_rich_style("chart--label", partial=True)
        top = max(self._rate, max((p for _, p in self._points), default=0), 1)
        rows = height - 1
        # Prices never go under the floor: start the scale one row below it, so a price
        # at the floor is a one-row bar and the rows above show how far it rose.
        lo = max(0.0, self._floor - (top - self._floor) / max(rows - 1, 1))
        span = max(top - lo, 1)
        gutter = max(len(fmt(top)), len(fmt(self._floor))) + 1
        cols = width - gutter - 1
        values = sample(self._points, self._t0, self._t1, cols)
        eighths = [None if v is None else round((v - lo) * rows * 8 / span) for v in values]

        def row_of(value: float) -> int:  # from the bottom
            return min(rows - 1, max(0, int((value - lo) * rows / span - 1e-9)))

        labels = {rows - 1: (fmt(top), label), row_of(self._floor): (fmt(self._floor), floor_style)}
        last = next((v for v in reversed(values) if v is not None), None)
        if last is not None:
            labels.setdefault(row_of(last), (fmt(last), bar))
        text = Text(no_wrap=True, overflow="crop")
        for r in range(rows - 1, -1, -1):
            if r in labels:
                value, style = labels[r]
                text.append(f"{value:>{gutter - 1}} ", style)
                text.append("┤", axis)
            else:
                text.append(" " * gutter)
                text.append("│", axis)
            for e in eighths:
                fill = -1 if e is None else e - r * 8
                if fill >= 8:
                    text.append("█", bar)
                elif fill > 0:
                    text.append(EIGHTHS[fill], bar)
                else:
                    text.append(" ")
            text.append("\n")
        left, right = hhmm(self._t0), hhmm(self._t1)
        mid = cols - len(left) - len(right)
        text.append(" " * gutter + "└", axis)
        if mid > 0:
            text.append(left + "─" * mid + right, axis)
        return text
