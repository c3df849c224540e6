"""A day-by-day timeline of Commit windows: a row per reservation, grouped by node type.

Each cell covers an equal slice of a UTC day; a cell shows a full block when a window
covers it, a half block when a window covers only its left or right half. The column
holding the current time is marked all the way down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from skyops_tui.domain.model import Reservation

DAY = 86400.0
LABEL = 20


def day_start(t: float) -> float:
    return t - t % DAY


@dataclass(frozen=True, slots=True)
class Lane:
    name: str
    user: str
    gpus: int
    windows: tuple[tuple[float, float], ...]
    cancelled_at: float | None
    own: bool


@dataclass(frozen=True, slots=True)
class Group:
    gpu_type: str
    capacity: int
    lanes: tuple[Lane, ...]


def lanes_by_type(
    reservations: Iterable[Reservation], capacity: dict[str, int], user: str
) -> tuple[Group, ...]:
    groups: dict[str, list[Lane]] = {t: [] for t in capacity}
    for r in sorted(reservations, key=lambda r: (r.windows[0][0] if r.windows else 0, r.name)):
        lane = Lane(r.name, r.user, r.gpus, tuple(r.windows), r.cancelled_at, r.user == user)
        groups.setdefault(r.gpu_type, []).append(lane)
    return tuple(Group(t, capacity.get(t, 0), tuple(ls)) for t, ls in groups.items())


def fit(width: int) -> tuple[int, int]:
    """(days, cells per day) that fit `width` columns: 2-hour cells where a week fits."""
    room = max(width - LABEL - 1, 8)
    if room // 12 >= 7:
        return room // 12, 12
    return max(room // 8, 1), 8


def cell_marks(
    windows: Iterable[tuple[float, float]], t0: float, cells: int, cell_s: float
) -> list[tuple[str, int]]:
    """For each cell: ("", -1) when empty, else ("full" | "left" | "right", window index),
    by which half of the cell windows cover (at least half of that half)."""
    left = [0.0] * cells
    right = [0.0] * cells
    which = [-1] * cells
    half = cell_s / 2
    for i, (s, e) in enumerate(windows):
        if e <= t0 or s >= t0 + cells * cell_s:
            continue
        first = max(int((s - t0) // cell_s), 0)
        last = min(int((e - t0) // cell_s), cells - 1)
        for c in range(first, last + 1):
            a = t0 + c * cell_s
            left[c] += max(0.0, min(e, a + half) - max(s, a))
            right[c] += max(0.0, min(e, a + cell_s) - max(s, a + half))
            which[c] = i
    out = []
    for lo, hi, i in zip(left, right, which, strict=True):
        lf, hf = lo >= half / 2, hi >= half / 2
        mark = "full" if lf and hf else "left" if lf else "right" if hf else ""
        out.append((mark, i if mark else -1))
    return out


class Timeline(Widget):
    """Draws the Commit windows of every reservation from `start` for as many days as fit."""

    COMPONENT_CLASSES = {
        "timeline--axis",
        "timeline--type",
        "timeline--label",
        "timeline--own",
        "timeline--past",
        "timeline--active",
        "timeline--future",
        "timeline--cancelled",
        "timeline--now",
        "timeline--grid",
    }

    DEFAULT_CSS = """
    Timeline { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.groups: tuple[Group, ...] = ()
        self.now = 0.0
        self.start = 0.0

    def show(self, groups: tuple[Group, ...], now: float, start: float) -> None:
        if (groups, now, start) != (self.groups, self.now, self.start):
            resized = sum(len(g.lanes) + 1 for g in groups) != sum(
                len(g.lanes) + 1 for g in self.groups
            )
            self.groups, self.now, self.start = groups, now, start
            self.refresh(layout=resized)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 2 + sum(1 + max(len(g.lanes), 1) for g in self.groups)

    def render(self) -> Text:
        width = self.content_size.width
        days, per_day = fit(width)
        cell_s = DAY / per_day
        cells = days * per_day
        st = {
            name: self.get_component_rich_style(f"timeline--{name}", partial=True)
            for name in (
                "axis",
                "type",
                "label",
                "own",
                "past",
                "active",
                "future",
                "cancelled",
                "now",
                "grid",
            )
        }
        now_cell = int((self.now - self.start) // cell_s)
        text = Text(no_wrap=True, overflow="crop")
        end = self.start + days * DAY - 1
        text.append(
            f"{datetime.fromtimestamp(self.start, UTC):%a %d %b} – "
            f"{datetime.fromtimestamp(end, UTC):%a %d %b}  ",
            st["axis"],
        )
        for glyph, name, label in (
            ("█", "active", "in window"),
            ("█", "future", "upcoming"),
            ("█", "past", "past"),
            ("╌", "cancelled", "cancelled"),
            ("│", "now", "now"),
        ):
            text.append(glyph, st[name])
            text.append(f" {label}  ", st["axis"])
        text.append("\n")
        # Axis: a label per day, the "now" marker in its column.
        axis = [" "] * cells
        for d in range(days):
            label = datetime.fromtimestamp(self.start + d * DAY, UTC).strftime("%a %d")
            if per_day < len(label) + 1:
                label = label[4:]
            for k, ch in enumerate(label[: per_day - 1]):
                axis[d * per_day + k] = ch
        text.append(f"{'UTC':<{LABEL}} ", st["axis"])
        for c, ch in enumerate(axis):
            if c == now_cell and ch == " ":
                text.append("▼", st["now"])
            else:
                text.append(ch, st["now"] if c == now_cell else st["axis"])
        text.append("\n")
        for g in self.groups:
            text.append(f"{g.gpu_type} · {g.capacity} GPUs"[:LABEL].ljust(LABEL + 1), st["type"])
            for c in range(cells):
                ch = "│" if c == now_cell else ("┊" if c % per_day == 0 else "─")
                text.append(ch, st["now"] if c == now_cell else st["grid"])
            text.append("\n")
            if not g.lanes:
                text.append("  (no reservations)\n", st["grid"])
            for lane in g.lanes:
                label = f"{lane.name} {lane.gpus}×"
                if len(label) > LABEL - 2:
                    label = lane.name[: LABEL - 3 - len(f" {lane.gpus}×")] + f"… {lane.gpus}×"
                text.append("  " + label.ljust(LABEL - 1), st["own"] if lane.own else st["label"])
                marks = cell_marks(lane.windows, self.start, cells, cell_s)
                for c, (mark, i) in enumerate(marks):
                    a = self.start + c * cell_s
                    if not mark:
                        if c == now_cell:
                            text.append("│", st["now"])
                        else:
                            text.append("┊" if c % per_day == 0 else " ", st["grid"])
                        continue
                    ch = {"full": "█", "left": "▌", "right": "▐"}[mark]
                    ws, we = lane.windows[i]
                    if lane.cancelled_at is not None and a + cell_s / 2 > lane.cancelled_at:
                        style, ch = st["cancelled"], "╌"
                    elif ws <= self.now < we:
                        style = st["now"] if c == now_cell else st["active"]
                    elif we <= self.now:
                        style = st["past"]
                    else:
                        style = st["future"]
                    text.append(ch, style)
                text.append("\n")
        text.rstrip()
        return text
