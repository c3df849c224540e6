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
    """Clearing price over time, on a scale from 0 to the standard rate."""

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
        gutter = max(len(fmt(top)), len(fmt(self._floor))) + 1
        cols = width - gutter - 1
        rows = height - 1
        values = sample(self._points, self._t0, self._t1, cols)
        eighths = [None if v is None else round(v * rows * 8 / top) for v in values]
        floor_row = min(rows - 1, int(self._floor * rows / top))  # from the bottom
        text = Text(no_wrap=True, overflow="crop")
        for r in range(rows - 1, -1, -1):
            if r == rows - 1:
                text.append(f"{fmt(top):>{gutter - 1}} ", label)
            elif r == floor_row:
                text.append(f"{fmt(self._floor):>{gutter - 1}} ", floor_style)
            else:
                text.append(" " * gutter)
            text.append("┤" if r in (rows - 1, floor_row) else "│", axis)
            for e in eighths:
                if e is None:
                    text.append(" ")
                    continue
                fill = e - r * 8
                if fill >= 8:
                    text.append("█", bar)
                elif fill > 0:
                    text.append(EIGHTHS[fill], bar)
                elif r == floor_row:
                    text.append("┄", floor_style)
                else:
                    text.append(" ")
            text.append("\n")
        left, right = hhmm(self._t0), hhmm(self._t1)
        mid = cols - len(left) - len(right)
        text.append(" " * gutter + "└", axis)
        if mid > 0:
            text.append(left + "─" * mid + right, axis)
        return text
