"""The job list: every job in every mode, sortable (`s`, `S`, or click a header),
filterable (`/`, esc leaves), with prices, countdowns and queue places, redrawn every
second without losing the cursor."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Input, Static

from ...domain.model import TERMINAL, Job, JobState, Mode
from ...policy.pricing import effective_rate_per_gpu_hour
from .. import format as F
from ..keys import bindings
from ..widgets.chrome import show
from ..widgets.tables import Column, GridTable
from .base import SkyScreen
from .job_actions import JobActions

WIDE = 110

STATE_ORDER = {
    s: i
    for i, s in enumerate(
        [
            JobState.RUNNING,
            JobState.STARTING,
            JobState.PREEMPTING,
            JobState.QUEUED,
            JobState.PAUSED,
            JobState.SUCCEEDED,
            JobState.FAILED,
            JobState.CANCELLED,
            JobState.EXPIRED,
        ]
    )
}
MODE_ORDER = {Mode.PRIORITY: 0, Mode.COMMIT: 1, Mode.FLEX: 2}


def job_fields(job: Job) -> dict[str, str]:
    return {
        "name": job.name.lower(),
        "user": job.user.lower(),
        "mode": str(job.mode),
        "state": str(job.state),
        "node": F.placement(job).lower(),
        "type": (job.market or job.gpu_type or "").lower(),
    }


def matches(job: Job, text: str) -> bool:
    """Every word must match: `flex`, `ana`, `state:paused`, `mode:priority`..."""
    fields = job_fields(job)
    for word in text.lower().split():
        key, sep, value = word.partition(":")
        if sep and key in fields:
            if value not in fields[key]:
                return False
        elif not any(word in v for v in fields.values()):
            return False
    return True


class JobsScreen(JobActions, SkyScreen):
    SCOPE = "jobs"
    VIEW = "jobs"
    BINDINGS = bindings("jobs")
    AUTO_FOCUS = "#jobs"

    SORTS: dict[str, Callable[[Any, Job, float], Any]] = {
        "id": lambda rt, j, now: j.id,
        "mode": lambda rt, j, now: MODE_ORDER[j.mode],
        "state": lambda rt, j, now: STATE_ORDER[j.state],
        "name": lambda rt, j, now: j.name,
        "user": lambda rt, j, now: j.user,
        "gpus": lambda rt, j, now: j.gpu_total or j.gpus,
        "node": lambda rt, j, now: F.placement(j),
        "price": lambda rt, j, now: _price_key(rt, j),
        "left": lambda rt, j, now: _left_key(rt, j, now),
        "queue": lambda rt, j, now: _queue_key(rt, j),
    }

    def __init__(self, runtime, **kw: Any) -> None:
        super().__init__(runtime, **kw)
        self.sort_key = "id"
        self.sort_reverse = False
        self.filter_text = ""
        self.hide_ended = False
        self._drawn_wide: bool | None = None
        self._row_cache: dict[int, tuple[tuple, list[Any]]] = {}  # job: (what it shows, cells)

    def compose_body(self) -> Iterable[Widget]:
        yield Input(
            placeholder="filter: name, user, mode, state (mode:flex state:paused)",
            id="filter",
            compact=True,
        )
        yield Static(id="jobs-info", classes="info")
        yield GridTable(id="jobs")

    def on_mount(self) -> None:
        self.query_one("#filter", Input).display = False
        self.redraw()

    def on_resize(self) -> None:
        if self.wide != self._drawn_wide:  # the columns follow the width, nothing else
            self.refresh_view()

    @property
    def wide(self) -> bool:
        return self.app.size.width >= WIDE

    def columns(self) -> list[Column]:
        """The columns for this width, the sorted one marked ▲ or ▼."""
        mark = " ▼" if self.sort_reverse else " ▲"
        return [
            Column(c.key, c.label + mark) if c.key == self.sort_key else c
            for c in self.plain_columns()
        ]

    def plain_columns(self) -> list[Column]:
        if self.wide:
            cols = [
                Column("id", "ID"),
                Column("mode", "Mode"),
                Column("state", "State"),
                Column("name", "Name"),
                Column("user", "User"),
                Column("gpus", "GPUs"),
                Column("node", "Node"),
                Column("price", "Price /GPU-h"),
                Column("left", "Time left"),
                Column("queue", "Queue"),
            ]
        else:
            cols = [
                Column("mode", "Mode"),
                Column("state", "State"),
                Column("name", "Name"),
                Column("user", "User"),
                Column("gpus", "GPU"),
                Column("price", "Price"),
                Column("left", "Left"),
                Column("queue", "Q"),
            ]
        return cols

    def visible_jobs(self) -> list[Job]:
        rt = self.runtime
        now = rt.clock.now()
        jobs = [
            j
            for j in rt.grid.jobs.values()
            if (not self.hide_ended or j.state not in TERMINAL)
            and (not self.filter_text or matches(j, self.filter_text))
        ]
        key = self.SORTS.get(self.sort_key, self.SORTS["id"])
        jobs.sort(key=lambda j: j.id)
        jobs.sort(
            key=lambda j: _none_last(key(rt, j, now), self.sort_reverse), reverse=self.sort_reverse
        )
        return jobs

    def refresh_view(self) -> None:
        rt = self.runtime
        table = self.query_one("#jobs", GridTable)
        wide = self._drawn_wide = self.wide
        cols = self.columns()
        table.set_columns(cols)
        paint = table.paint
        now = rt.clock.now()
        jobs = self.visible_jobs()
        rows = []
        # A row's cells are built again only when what it shows changed: most jobs do
        # not change between two refreshes, and building cells is most of a refresh.
        # The same cells (same objects) then cost the table nothing to compare.
        theme = self.app.theme
        cache, self._row_cache = self._row_cache, {}
        for job in jobs:
            left, secs = F.countdown(rt, job, now)
            style = F.left_style(secs)
            gpus, node = F.gpus(job), F.placement(job)
            price, queue = F.price(rt, job, compact=not wide), F.queue(rt, job)
            key: tuple = (wide, theme, job.mode, job.state, job.name, job.user, gpus, node)
            key += (price, left, style, queue)
            hit = cache.get(job.id)
            if hit is not None and hit[0] == key:
                row = hit[1]
            else:
                ended = job.state in TERMINAL
                cells = {
                    "id": Text(str(job.id), justify="right"),
                    "mode": paint.mode(job.mode, short=not wide),
                    "state": paint.state(job.state),
                    "name": Text(job.name, style=paint("state--ended") if ended else ""),
                    "user": job.user,
                    "gpus": Text(gpus, justify="right"),
                    "node": node,
                    "price": price,
                    "left": Text(left, style=paint(style) if style else ""),
                    "queue": queue,
                }
                row = [cells[c.key] for c in cols]
            self._row_cache[job.id] = (key, row)
            rows.append((str(job.id), row))
        table.show_rows(rows)
        total = len(rt.grid.jobs)
        info = Text(no_wrap=True, overflow="ellipsis")
        info.append(f" {len(jobs)} of {total} jobs", style="bold")
        info.append(f"  sort: {self.sort_key}{' (reversed)' if self.sort_reverse else ''}")
        if self.filter_text:
            info.append(f"  filter: {self.filter_text}", paint("tag--warning"))
        if self.hide_ended:
            info.append("  active only (a: show all)")
        show(self.query_one("#jobs-info", Static), info)

    def selected_job(self) -> Job | None:
        key = self.query_one("#jobs", GridTable).selected_key
        return self.runtime.grid.jobs.get(int(key)) if key else None

    # Actions ---------------------------------------------------------------
    def action_describe(self, logs: bool = False) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("No job selected.", severity="warning")
            return
        from .job import JobScreen

        self.app.push_screen(JobScreen(self.runtime, job.id, logs=logs))

    def action_logs(self) -> None:
        self.action_describe(logs=True)

    def on_data_table_row_selected(self, event: GridTable.RowSelected) -> None:
        event.stop()
        self.action_describe()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def close_filter(self, clear: bool) -> None:
        box = self.query_one("#filter", Input)
        if clear:
            box.value = ""
            self.filter_text = ""
        box.display = bool(self.filter_text)
        self.query_one("#jobs", GridTable).focus()
        self.refresh_view()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.filter_text = event.value.strip()
            self.refresh_view()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            event.stop()
            self.close_filter(clear=False)

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if self.filter_text or box.has_focus:
            self.close_filter(clear=True)
            return
        super().action_back()

    def action_sort(self, key: str | None = None) -> None:
        keys = [c.key for c in self.plain_columns()]
        if key is None:
            i = keys.index(self.sort_key) if self.sort_key in keys else -1
            key = keys[(i + 1) % len(keys)]
        elif key == self.sort_key:
            self.sort_reverse = not self.sort_reverse  # a column's key again reverses
        else:
            self.sort_reverse = False
        self.sort_key = key
        self.refresh_view()

    def action_reverse(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self.refresh_view()

    def action_cursor_down(self) -> None:
        self.query_one("#jobs", GridTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one("#jobs", GridTable).action_cursor_up()

    def action_toggle_ended(self) -> None:
        self.hide_ended = not self.hide_ended
        self.refresh_view()

    def on_data_table_header_selected(self, event: GridTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value or "id"
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False
        self.refresh_view()


def _none_last(value: Any, reverse: bool) -> tuple:
    missing = value is None or value == ""
    # None sorts after everything whichever way the list is ordered.
    return (missing != reverse, value if not missing else 0)


def _price_key(rt, job: Job) -> int:
    g = rt.grid
    if job.mode is Mode.FLEX:
        return job.bid
    if job.mode is Mode.COMMIT:
        res = g.reservations.get(job.reservation or "")
        return effective_rate_per_gpu_hour(res) if res else 0
    m = g.markets.get(job.market or job.gpu_type or "")
    return m.rate if m else 0


def _left_key(rt, job: Job, now: float) -> float | None:
    return F.countdown(rt, job, now)[1]


def _queue_key(rt, job: Job) -> int | None:
    if job.mode is Mode.PRIORITY and job.state is JobState.QUEUED:
        return rt.queue_position(job)
    if job.mode is Mode.FLEX and job.state in (JobState.QUEUED, JobState.PAUSED):
        return F.flex_rank(rt, job)
    return None
