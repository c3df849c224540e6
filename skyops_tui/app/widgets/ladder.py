"""The Flex bid ladder of one node type: who bids what, who runs, where the price clears.

`ladder_view(grid, gpu_type)` reads the grid into plain data (testable without a
terminal); `Ladder` draws it. Bids are stacked highest first (then by submission, as
the market ranks them); a running tally of GPUs shows where the Flex capacity runs
out, and a bar per bid, scaled to the standard rate, carries a vertical mark (┃) at
the clearing price. The console user's own bids are marked (▶) and a cursor picks a
bid for `b` (change bid) on the market screen.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

from skyops_tui.domain.model import Job, JobState, Mode
from skyops_tui.domain.money import fmt
from skyops_tui.policy.grid import Grid

BAR = " ▏▎▍▌▋▊▉█"


@dataclass(frozen=True, slots=True)
class Rung:
    job: int
    name: str
    user: str
    bid: int
    gpus: int
    state: str  # running, starting, preempting, stopping, queued, paused
    any_type: bool  # the job names no gpu_type and bids in every market
    mine: bool = False  # the console's user submitted it

    @property
    def holding(self) -> bool:
        return self.state in ("running", "starting", "preempting", "stopping")


@dataclass(frozen=True, slots=True)
class LadderView:
    gpu_type: str
    rate: int
    floor: int
    price: int
    gpus: int  # GPUs of this type on schedulable nodes
    capacity: int  # GPUs Flex may use now: not held by Priority or Commit
    in_use: int  # GPUs Flex jobs hold now
    rungs: tuple[Rung, ...]

    @property
    def running(self) -> int:
        return sum(1 for r in self.rungs if r.holding)

    @property
    def waiting(self) -> int:
        return sum(1 for r in self.rungs if not r.holding)


def _rung(job: Job, gpus: int, user: str | None) -> Rung:
    if job.state is JobState.PREEMPTING:
        state = "preempting"
    elif job.state in (JobState.RUNNING, JobState.STARTING) and job.stop_reason:
        state = "stopping"
    else:
        state = str(job.state)
    return Rung(
        job.id, job.name, job.user, job.bid, gpus, state, job.gpu_type is None, job.user == user
    )


def ladder_view(grid: Grid, gpu_type: str, user: str | None = None) -> LadderView:
    """The market of `gpu_type` as plain data; `user`'s own bids are marked `mine`."""
    market = grid.markets[gpu_type]
    nodes = [n for n in grid.by_type.get(gpu_type, []) if n.schedulable]
    smallest = min((n.gpu_count for n in nodes), default=0)
    capacity = in_use = 0
    held: dict[int, int] = {}
    for node in nodes:
        for h in node.holders:
            if h is None:
                capacity += 1
            elif grid.jobs[h].mode is Mode.FLEX:
                capacity += 1
                in_use += 1
                held[h] = held.get(h, 0) + 1
    rungs = [_rung(grid.jobs[j], n, user) for j, n in held.items()]
    for key in (gpu_type, None):
        for _, _, jid in grid.flex_book.get(key, []):
            job = grid.jobs[jid]
            rungs.append(_rung(job, job.gpus or job.nodes * smallest, user))
    rungs.sort(key=lambda r: (-r.bid, grid.jobs[r.job].seq))
    return LadderView(
        gpu_type,
        market.rate,
        market.floor,
        market.price,
        sum(n.gpu_count for n in nodes),
        capacity,
        in_use,
        tuple(rungs),
    )


def _bar(value: int, scale: int, width: int) -> str:
    """A left-aligned bar of `width` cells, filled value/scale, in eighths."""
    eighths = max(0, min(width * 8, round(value * width * 8 / scale))) if scale else 0
    full, part = divmod(eighths, 8)
    return ("█" * full + (BAR[part] if part else "")).ljust(width)


def layout(v: LadderView) -> list[tuple[str, Rung | str, int | None]]:
    """The ladder's lines in order: ("rung", Rung, tally), ("price", label, None),
    ("capacity", label, None) or ("empty", text, None).

    The tally counts, from the top, the GPUs of the bids that fit: running bids hold
    theirs, waiting bids take what is left in bid order, and a bid too big for what is
    left is skipped (tally None) because a smaller one below may still run. The
    capacity line goes under the last bid that fits. The clearing-price line goes above
    the first bid that does not pay it: one under the price, or one at the price that
    waits (the highest waiting bid sets the price)."""
    free = v.capacity - sum(r.gpus for r in v.rungs if r.holding)
    tallies: list[int | None] = []
    tally = 0
    for r in v.rungs:
        if r.holding or r.gpus <= free:
            if not r.holding:
                free -= r.gpus
            tally += r.gpus
            tallies.append(tally)
        else:
            tallies.append(None)
    n = len(v.rungs)
    cap_at = max((i + 1 for i, t in enumerate(tallies) if t is not None), default=0)
    price_at = next(
        (
            i
            for i, r in enumerate(v.rungs)
            if r.bid < v.price or (r.bid == v.price and not r.holding)
        ),
        n,
    )
    price_label = f"clearing {fmt(v.price)}/GPU-h"
    cap_label = f"Flex capacity {v.capacity} GPUs, {max(v.capacity - tally, 0)} free"
    out: list[tuple[str, Rung | str, int | None]] = []
    for i in range(n + 1):
        if i == price_at and i == cap_at:
            out.append(("price", f"{price_label} ── {cap_label}", None))
        elif i == price_at:
            out.append(("price", price_label, None))
        elif i == cap_at:
            out.append(("capacity", cap_label, None))
        if i < n:
            out.append(("rung", v.rungs[i], tallies[i]))
    if not v.rungs:
        out.append(("empty", "no Flex bids on this type", 0))
    return out


@dataclass(slots=True)
class _Frame:
    """What drawing a view at a width needs, worked out once per change: every line of
    a ladder is drawn from it, and only the lines on screen are drawn."""

    view: LadderView
    cursor: int | None
    width: int
    lines: list[tuple[str, Rung | str, int | None]]
    notes: list[str]
    name_w: int
    bar_w: int
    price_col: int
    styles: dict[str, Style]

    @property
    def height(self) -> int:
        return 1 + len(self.lines) + len(self.notes)


class Ladder(Widget):
    """Draws a `LadderView`. Height follows the number of rungs, for a scrolling parent.

    It draws line by line (`render_line`): a ladder of thousands of bids is as tall as
    they are, and drawing it whole for each cursor move (the whole text, then a strip
    for each line) cost 130 ms at 512 nodes; only the lines the pane shows are drawn."""

    COMPONENT_CLASSES = {
        "ladder--header",
        "ladder--running",
        "ladder--waiting",
        "ladder--paused",
        "ladder--stopping",
        "ladder--preempting",
        "ladder--price",
        "ladder--capacity",
        "ladder--dim",
        "ladder--own",
        "ladder--cursor",
    }

    DEFAULT_CSS = """
    Ladder { height: auto; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.view: LadderView | None = None
        self.cursor: int | None = None  # the job id of the picked bid: it follows the job
        self._frame: _Frame | None = None

    def show(self, view: LadderView) -> None:
        if view != self.view:
            self.view = view
            ids = [r.job for r in view.rungs]
            if self.cursor not in ids:  # first the user's own bid, else the top one
                self.cursor = next((r.job for r in view.rungs if r.mine), ids[0] if ids else None)
            self._frame = None
            self.refresh(layout=True)

    @property
    def selected(self) -> Rung | None:
        v = self.view
        return next((r for r in v.rungs if r.job == self.cursor), None) if v else None

    def move(self, delta: int) -> None:
        v = self.view
        if v is None or not v.rungs:
            return
        ids = [r.job for r in v.rungs]
        at = ids.index(self.cursor) if self.cursor in ids else 0
        self.cursor = ids[max(0, min(len(ids) - 1, at + delta))]
        self._frame = None
        self.refresh()

    def notify_style_update(self) -> None:
        self._frame = None  # the component styles may have changed (a theme)
        super().notify_style_update()

    def cursor_line(self) -> int:
        """The line the picked bid is drawn on (under the header), for scrolling to it."""
        if self.view is None:
            return 0
        for y, (_, item, _) in enumerate(self.frame().lines):
            if isinstance(item, Rung) and item.job == self.cursor:  # a "rung" line
                return y + 1
        return 0

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self.view is None:
            return 1
        return self.frame().height

    def _style(self, rung: Rung, styles: dict[str, Style]) -> Style:
        name = {
            "running": "running",
            "starting": "running",
            "preempting": "preempting",
            "stopping": "stopping",
            "paused": "paused",
        }.get(rung.state, "waiting")
        return styles[name]

    def frame(self) -> _Frame:
        """The current view's drawing parts, kept until the view, the cursor, the width
        or the styles change."""
        v = self.view
        assert v is not None
        width = max(self.content_size.width, 40)
        f = self._frame
        if f is not None and f.view is v and f.cursor == self.cursor and f.width == width:
            return f
        styles = {
            name: self.get_component_rich_style(f"ladder--{name}", partial=True)
            for name in (c.removeprefix("ladder--") for c in self.COMPONENT_CLASSES)
        }
        # columns: mark 1, bid 7, bar, GPUs 5, cum 5, job, user 8, state 10
        name_w = max((len(r.name) + (1 if r.any_type else 0) for r in v.rungs), default=3)
        name_w = min(max(name_w, 3), 20)
        fixed = 1 + 8 + 1 + 5 + 6 + 2 + name_w + 1 + 8 + 11
        bar_w = max(6, min(40, width - fixed))
        price_col = min(bar_w - 1, round(v.price * bar_w / v.rate)) if v.rate else 0
        lines = layout(v)
        notes = []
        if any(cum is None for kind, _, cum in lines if kind == "rung"):
            notes.append("— too big for the GPUs left: smaller bids below may run first")
        if any(r.any_type for r in v.rungs):
            notes.append("* names no GPU type: bids in every market")
        f = _Frame(v, self.cursor, width, lines, notes, name_w, bar_w, price_col, styles)
        self._frame = f
        return f

    def line(self, y: int) -> Text:
        """Line `y` of the drawing (0 is the header), without its newline."""
        f = self.frame()
        width, st = f.width, f.styles
        text = Text(no_wrap=True, overflow="crop")
        if y == 0:
            text.append(
                f" {'bid':>7}  {_fit('of standard', f.bar_w)}{'GPUs':>5}{'total':>6}  "
                f"{'job':<{f.name_w}} {'user':<8} state",
                st["header"],
            )
        elif y <= len(f.lines):
            kind, item, cum = f.lines[y - 1]
            if isinstance(item, Rung):  # kind "rung"; the other lines carry their label
                self._rung_line(text, f, item, cum)
            elif kind in ("price", "capacity"):
                body = f"── {item} "
                rule = body + "─" * max(0, width - len(body) - 1)
                text.append(rule[: width - 1], st[kind])
            else:  # "empty"
                text.append(f"  {item}", st["dim"])
        elif y <= f.height - 1:
            text.append(f"  {f.notes[y - 1 - len(f.lines)]}", st["dim"])
        if y == f.height - 1:
            text.rstrip()  # as the whole drawing's end was
        return text

    def _rung_line(self, text: Text, f: _Frame, r: Rung, cum: int | None) -> None:
        v, st, width = f.view, f.styles, f.width
        style = self._style(r, st) + (st["own"] if r.mine else Style())
        picked = st["cursor"] if r.job == self.cursor else Style()
        style += picked
        bar = _bar(r.bid, v.rate, f.bar_w)
        text.append("▶" if r.mine else " ", style)
        text.append(f"{fmt(r.bid):>7}  ", style)
        text.append(bar[: f.price_col], style)
        # The clearing price, on every bar: past the end of a low bid's bar, and
        # through a high one's, so each bid reads against it.
        text.append("┃", st["price"] + picked)
        text.append(bar[f.price_col + 1 :], style)
        name = r.name + ("*" if r.any_type else "")
        if len(name) > f.name_w:
            name = name[: f.name_w - 1] + "…"
        text.append(f"{r.gpus:>5}", style)
        text.append(f"{'—' if cum is None else cum:>6}  ", st["dim"] + picked)
        text.append(f"{name:<{f.name_w}} {r.user[:8]:<8} {r.state}", style)
        if r.job == self.cursor:  # the cursor spans the row, as a table's does
            text.append(" " * max(0, width - 1 - len(text)), style)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.view is None or y >= self.frame().height:
            return Strip.blank(width, self.visual_style.rich_style)
        visual = visualize(self, self.line(y), markup=False)
        return Visual.to_strips(self, visual, width, 1, self.visual_style)[0]

    def render(self) -> Text:
        """The whole drawing as one text (what the screen shows, line by line)."""
        if self.view is None:
            return Text("")
        return Text("\n", no_wrap=True, overflow="crop").join(
            self.line(y) for y in range(self.frame().height)
        )


def _fit(label: str, width: int) -> str:
    """A header exactly `width` wide: cut rather than push the columns after it."""
    return label[:width].ljust(width)
