"""The frame around every screen: top bar, demo banner, status line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.text import Text
from textual.css.scalar import Unit
from textual.widget import Widget
from textual.widgets import Static

from .. import format as F
from .. import palette
from ..keys import display, keys_for

if TYPE_CHECKING:
    from ...runtime import Runtime


def show(widget: Static, content, display: bool | None = None) -> None:
    """Update a Static only when its content (or display) changes: every update costs a
    layout pass, and views are redrawn every second."""
    if display is not None and widget.display != display:
        widget.display = display
    if getattr(widget, "_skyops_shown", None) != content or not isinstance(content, Text | str):
        widget._skyops_shown = content  # type: ignore[attr-defined]
        widget.update(content, layout=not same_size(widget, content))


def same_size(widget: Static, content) -> bool:
    """Whether `content` takes the room the widget has now, so the screen needs no new
    layout: a fixed height (the top bar, the status line), or as many lines as it shows
    now, each narrower than the widget (nothing wraps)."""
    styles = widget.styles
    if styles.width is not None and styles.width.is_auto:
        return False
    height = styles.height
    if height is not None and height.unit is Unit.CELLS:
        return True
    width = widget.content_region.width
    if not isinstance(content, Text | str) or not width:
        return False
    lines = str(content).split("\n")
    if any(cell_len(line) > width for line in lines):
        return False
    return len(lines) == widget.content_region.height


DEMO_TEXT = "Demo grid: simulated GPUs. Point it at your cluster with `skyops --config FILE`."
DEMO_SHORT = "Demo grid: simulated GPUs. Your cluster: skyops --config FILE"


class Swatch(Widget):
    """Never shown: declares the palette's component classes once per screen, so
    every widget on it can ask for a colour by name (see palette.Painter)."""

    COMPONENT_CLASSES = palette.COMPONENT_CLASSES
    DEFAULT_CSS = "Swatch { display: none; }"


class TopBar(Static):
    """Cluster, who is at the keyboard (operator or not), the grid's clock, the view."""

    def __init__(self, runtime: Runtime, view: str = "", **kw) -> None:
        super().__init__(**kw)
        self.runtime = runtime
        self.view = view

    def on_mount(self) -> None:
        self.update_bar()

    def update_bar(self) -> None:
        rt = self.runtime
        p = palette.Painter(self)
        role = "operator" if rt.is_operator else "user"
        wide = self.size.width >= 100 or self.size.width == 0
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" Skyops ", p("topbar--title"))
        t.append(f" {rt.cfg.cluster.name} ")
        if self.view:
            t.append(f"› {self.view} ", p("topbar--view"))
        t.append(f" {rt.user}", style="bold")
        t.append(f" ({role})", p("tag--muted"))
        if rt.readonly:
            t.append("  READ-ONLY", p("tag--warning"))
        if getattr(rt, "store", None) is not None:  # consoles sharing a state file
            leads = getattr(rt, "leader", True)
            t.append(
                "  LEADER" if leads else "  FOLLOWER",
                p("state--running" if leads else "tag--warning"),
            )
        now = rt.clock.now()
        when = F.stamp(now) + " UTC" if wide else F.clock(now) + "Z"
        room = self.size.width - t.cell_len - len(when) - 4
        nav = self.nav(p, room)
        if nav.cell_len:
            t.append("  ")
            t.append_text(nav)
        pad = max(1, self.size.width - t.cell_len - len(when) - 1)
        t.append(" " * pad)
        t.append(when + " ")
        show(self, t)

    def on_resize(self) -> None:
        self.update_bar()

    def nav(self, p: palette.Painter, room: int) -> Text:
        """The views and their keys, the current one marked: as many as fit in `room`."""
        overrides = getattr(self.app, "keymap_overrides", {}) or {}
        t = Text()
        current = getattr(self.app, "current_mode", "")
        for k in keys_for("app"):
            if not k.action.startswith("view("):
                continue
            view = k.action[len("view('") : -2]
            key = display(overrides.get(k.id, k.keys)).split(" / ")[0]
            style = p("topbar--view") if view == current else p("tag--muted")
            if t.cell_len + len(key) + len(k.description) + 2 > room:
                break
            t.append(f" {key}", p("tag--key"))
            t.append(f" {k.description}", style)
        return t


class DemoBanner(Static):
    """Says the grid is a demo, in one line however narrow: on 80x24 every row counts."""

    def __init__(self, **kw) -> None:
        super().__init__(Text(DEMO_TEXT), **kw)

    def on_resize(self) -> None:
        fits = self.size.width >= len(DEMO_TEXT) + 2
        self.update(Text(DEMO_TEXT if fits else DEMO_SHORT, no_wrap=True, overflow="ellipsis"))


class StatusLine(Static):
    """Long work and the scheduler's health: executor notes, pass errors, job counts."""

    def __init__(self, runtime: Runtime, **kw) -> None:
        super().__init__(**kw)
        self.runtime = runtime
        self.note = ""

    def on_mount(self) -> None:
        self.update_line()

    def update_line(self) -> None:
        rt = self.runtime
        p = palette.Painter(self)
        counts: dict[str, int] = {}
        for job in rt.grid.jobs.values():
            counts[str(job.state)] = counts.get(str(job.state), 0) + 1
        t = Text(no_wrap=True, overflow="ellipsis")
        note = self.note or getattr(self.app, "status_note", "") or executor_note(rt)
        if note:
            t.append(f" {note} ", p("tag--warning"))
        if not getattr(rt, "leader", True):
            t.append(
                " following the leading console: commands go to its socket ", p("tag--warning")
            )
        fault = getattr(rt, "store_fault", None)
        if fault:
            t.append(f" {fault} ", p("tag--error"))
        errors = getattr(rt.scheduler, "errors", None)
        if errors:
            t.append(f" {errors[-1]} ", p("tag--error"))
        parts = []
        for state in ("running", "starting", "preempting", "queued", "paused"):
            n = counts.get(state, 0)
            if n:
                parts.append(f"{n} {state}")
        down = sum(1 for n in rt.grid.nodes.values() if n.status != "up")
        gpus = sum(n.gpu_count for n in rt.grid.nodes.values())
        busy = sum(1 for n in rt.grid.nodes.values() for h in n.holders if h is not None)
        t.append(f" jobs: {', '.join(parts) or 'none active'}")
        t.append(f"  ·  GPUs {busy}/{gpus} busy")
        if down:
            t.append(f"  ·  {down} node(s) not up", p("tag--warning"))
        show(self, t)


def executor_note(rt: Runtime) -> str:
    """What the executor says it is busy with (e.g. 'reconnecting to h100-b...'), if it says."""
    return rt.executor.status_line()
