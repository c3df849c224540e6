"""One job: its fields, cost over all runs, preemptions and work lost, its event
history, and the log tail (`l`; `s` switches stdout/stderr; a failed job opens on its
stderr), read by the executor in a worker. The last checkpoint is the newest file in
the job's checkpoint folder (docs/fleet.md), read again while the detail is open."""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.widget import Widget
from textual.widgets import Label, Log, Static

from ...domain.model import Job, JobState, Mode
from .. import format as F
from .. import palette
from ..keys import bindings
from ..widgets.tables import Column, GridTable
from .base import SkyScreen
from .job_actions import JobActions

LOG_LINES = 200
LOG_FOLLOW_S = 3.0
LOCK = "(mode locked)"  # beside the mode: a job's mode is locked at creation; M says why


class JobScreen(JobActions, SkyScreen):
    SCOPE = "job"
    VIEW = "job"
    BINDINGS = bindings("job")
    AUTO_FOCUS = "#job-events"

    def __init__(self, runtime, job_id: int, logs: bool = False) -> None:
        super().__init__(runtime)
        self.job_id = job_id
        self.want_logs = logs
        self.log_lines: list[str] = []
        self.log_read_at = 0.0
        self.stream = "stdout"
        self.checkpoint_seen: float | None = None  # read from the folder while open
        self.checkpoint_read_at = 0.0
        job = runtime.grid.jobs.get(job_id)
        self.VIEW = f"job {job.name}" if job else f"job #{job_id}"

    @property
    def job(self) -> Job | None:
        return self.runtime.grid.jobs.get(self.job_id)

    def selected_job(self) -> Job | None:
        return self.job

    def compose_body(self) -> Iterable[Widget]:
        yield Static(id="job-fields", classes="summary")
        yield Label("Events", classes="section", id="events-label")
        yield GridTable(id="job-events")
        yield Label("", classes="section", id="log-label")
        yield Log(id="job-log", max_lines=LOG_LINES, auto_scroll=True)

    def on_mount(self) -> None:
        self.query_one("#job-log", Log).display = False
        self.query_one("#log-label", Label).display = False
        job = self.job
        if job is not None and job.state is JobState.FAILED:
            self.stream = "stderr"  # where a failed run said why
            self.want_logs = True
        self.refresh_view()
        if self.want_logs:
            self.action_logs()

    def refresh_view(self) -> None:
        job = self.job
        panel = next(self.query("#job-fields").results(Static), None)
        if job is None or panel is None:  # no job, or the screen is closing
            return
        panel.update(self.fields(job))
        self.show_events(job)
        self.follow_logs()
        self.follow_checkpoint(job)

    def fields(self, job: Job) -> Group:
        rt = self.runtime
        paint = self.query_one("#job-events", GridTable).paint
        cur = rt.cfg.cluster.currency
        now = rt.clock.now()
        wide = self.app.size.width >= 120
        rows: list[tuple[str, Text | str]] = []
        title = Text()
        title.append(job.name, style="bold")
        title.append(f" #{job.id}  ")
        title.append_text(paint.mode(job.mode))
        title.append(f" {LOCK}", paint("tag--muted"))
        title.append("  ")
        title.append_text(paint.state(job.state))
        if job.stop_reason and job.holding:
            title.append(f" (stopping: {job.stop_reason})", paint("tag--warning"))
        title.append(f"  {job.user}")
        rows.append(("job", title))
        where = ", ".join(f"{p.node}[{','.join(map(str, p.gpus))}]" for p in job.placement)
        gpus = f"{job.nodes} whole node(s)" if job.nodes else f"{job.gpus} GPU(s)"
        rows.append(
            ("asks", f"{gpus} of {job.gpu_type or 'any type'}" + (f" on {where}" if where else ""))
        )
        rows.append(("price", F.price(rt, job)))
        cost = F.money(job.charged, cur)
        if job.mode is Mode.COMMIT:
            cost = f"prepaid with reservation {job.reservation}"
        rows.append(("cost so far", f"{cost} over {job.runs} run(s)"))
        left, _ = F.countdown(rt, job, now)
        long: list[tuple[str, Text | str]] = []  # each on a line of its own
        if job.mode is Mode.PRIORITY:
            ends = _short(job.end_at, now) if job.end_at else "when it starts"
            renew = f", auto-renew {job.renew_hours:g} h" if job.auto_renew else ""
            book = "hourly" if job.hourly else f"{job.hours:g} h" if job.hours else "—"
            long.append(("booking", f"{book}{renew}; ends {ends}" + (f" ({left})" if left else "")))
            q = F.queue(rt, job)
            if q:
                rows.append(("queue", f"{q} in the Priority queue"))
        elif job.mode is Mode.COMMIT:
            rows.append(("window", f"{job.reservation}: {left or '—'}"))
        else:
            rank = F.flex_rank(rt, job)
            market = job.market or job.gpu_type or "any"
            rows.append(("market", market + (f", waiting bid #{rank}" if rank else "")))
        if job.mode is Mode.FLEX or job.preemptions:
            seen = [t for t in (job.last_checkpoint_at, self.checkpoint_seen) if t is not None]
            ck = _short(max(seen), now) if seen else "none yet"
            long.append(
                (
                    "preemptions",
                    f"{job.preemptions}; work lost {F.work_lost(job)}; last checkpoint {ck}",
                )
            )
        times = f"submitted {_short(job.submitted_at, now)}"
        if job.started_at is not None and job.holding:
            ago = F.duration(now - job.started_at)
            times += f"; this run started {_short(job.started_at, now)} ({ago} ago)"
        if job.ended_at is not None:
            times += f"; ended {_short(job.ended_at, now)}"
            if job.exit_code is not None:
                times += f", exit {job.exit_code}"
        long.append(("times", times))
        why = self.end_reason(job)
        if why:
            long.append(("ended", why))
        long.append(("command", shlex.join(job.argv) if job.argv else "—"))
        return Group(*field_lines(rows, long, paint, wide))

    def end_reason(self, job: Job) -> Text | None:
        """Why the job ended (or last stopped): the cause of its last state change."""
        if not (job.finished or job.state is JobState.PAUSED):
            return None
        for e in reversed(self.runtime.feed.events):
            if e.job == job.id and e.kind == "state" and e.cause:
                style = "tag--error" if job.state is JobState.FAILED else ""
                return Text(f"{job.state}: {e.cause}", style=self.paint(style) if style else "")
        return None

    def follow_checkpoint(self, job: Job) -> None:
        if job.holding and time.monotonic() - self.checkpoint_read_at >= LOG_FOLLOW_S:
            self.checkpoint_read_at = time.monotonic()
            self.read_checkpoint()

    @work(exclusive=True, group="checkpoint")
    async def read_checkpoint(self) -> None:
        job = self.job
        if job is None:
            return
        try:
            at = await self.runtime.executor.last_checkpoint(job)
        except Exception:  # an unreachable node: the stored time stands
            return
        if at is not None and at != self.checkpoint_seen:
            self.checkpoint_seen = at
            self.refresh_view()

    def show_events(self, job: Job) -> None:
        table = self.query_one("#job-events", GridTable)
        table.set_columns(
            [
                Column("at", "Time (UTC)"),
                Column("kind", "Event"),
                Column("change", "State"),
                Column("cause", "Cause"),
            ]
        )
        paint = table.paint
        events = [e for e in self.runtime.feed.events if e.job == job.id]
        rows = []
        for k, e in enumerate(reversed(events)):
            change = Text()
            if e.kind == "state" and e.old and e.new:
                change.append(e.old, paint(palette.state_class(e.old)))
                change.append(" → ")
                change.append(e.new, paint(palette.state_class(e.new)))
            rows.append(
                (
                    f"{len(events) - k}",
                    [
                        F.stamp(e.at)[5:],
                        e.kind,
                        change,
                        Text(e.cause, no_wrap=True, overflow="ellipsis"),
                    ],
                )
            )
        table.show_rows(rows)

    # Logs -----------------------------------------------------------------
    def action_logs(self) -> None:
        log = self.query_one("#job-log", Log)
        log.display = True
        label = self.query_one("#log-label", Label)
        other = "stdout" if self.stream == "stderr" else "stderr"
        label.update(f"{self.stream} tail (follows; l: read now, s: {other})")
        label.display = True
        self.add_class("-logs")
        self.load_logs()

    def action_stream(self) -> None:
        """Switch the log panel between stdout and stderr (opening it if closed)."""
        self.stream = "stdout" if self.stream == "stderr" else "stderr"
        self.log_lines = []
        self.action_logs()

    def _log_panel(self) -> Log | None:
        """The log panel, or None once the screen is closing (its widgets removed): a
        read of the tail that was under way when the screen closed lands in nothing."""
        found = self.query("#job-log").results(Log)
        return next(found, None)

    @work(exclusive=True, group="logs")
    async def load_logs(self) -> None:
        """Read the tail through the executor (SSH for a real node): never on the UI's
        own time. Rewrites the panel only when the tail changed, and keeps it at the end."""
        job = self.job
        log = self._log_panel()
        if job is None or log is None:
            return
        self.log_read_at = time.monotonic()
        if not self.log_lines:
            self._show_log(log, [f"reading the log of {job.name}..."])
        try:
            lines = await self.runtime.executor.logs(job, self.stream, LOG_LINES)
        except Exception as e:  # an unreachable node must not crash the console
            lines, failed = [f"could not read the log: {e}"], True
        else:
            lines, failed = list(lines) or [f"({self.stream} is empty)"], False
        if not log.is_attached:  # the screen closed while the tail was read
            return
        self._show_log(log, lines)
        if not failed:
            log.scroll_end(animate=False)

    def _show_log(self, log: Log, lines: list[str]) -> None:
        if lines == self.log_lines:
            return
        self.log_lines = lines
        log.clear()
        log.write_lines(lines)
        self.call_after_refresh(log.scroll_end, animate=False)

    def follow_logs(self) -> None:
        """While the log panel is open, read the tail again every few seconds."""
        log = self._log_panel()
        if log is not None and log.display and time.monotonic() - self.log_read_at >= LOG_FOLLOW_S:
            self.load_logs()


def field_lines(rows, long, paint, wide: bool) -> list:
    """The title on its own line, short fields two to a line when wide, then the
    long ones (booking, preemptions, times, command) a line each."""
    head, body = rows[0], rows[1:]
    pairs = 2 if wide else 1
    t = Table.grid(padding=(0, 1), expand=True)
    for _ in range(pairs):
        t.add_column(style=paint("tag--key"), no_wrap=True, justify="right", min_width=11)
        t.add_column(ratio=1, overflow="ellipsis", no_wrap=True)
    for i in range(0, len(body), pairs):
        cells: list = []
        for k, v in body[i : i + pairs]:
            cells += [k, v]
        cells += [""] * (2 * pairs - len(cells))
        t.add_row(*cells)
    out: list = [Text(" ").append_text(head[1]), t]
    for k, v in long:
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append(f"{k:>11} ", paint("tag--key"))
        line.append_text(v if isinstance(v, Text) else Text(v))
        out.append(line)
    return out


def _short(t: float, now: float) -> str:
    """HH:MM:SS UTC today, else the date too."""
    full = F.stamp(t)
    return (full[11:] if full[:10] == F.stamp(now)[:10] else full) + " UTC"
