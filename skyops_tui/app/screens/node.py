"""One node: its GPUs (holder job, utilisation, memory, temperature, power) and the
jobs on it. Enter or `d` on a GPU or job opens the job."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Label, Static

from ...domain.model import Job
from .. import format as F
from .. import palette
from ..keys import bindings
from ..widgets.chrome import show
from ..widgets.tables import Column, GridTable
from .base import SkyScreen
from .grid import heartbeat, telemetry


class NodeScreen(SkyScreen):
    SCOPE = "node"
    VIEW = "node"
    BINDINGS = bindings("node")
    AUTO_FOCUS = "#gpus"

    def __init__(self, runtime, node: str) -> None:
        super().__init__(runtime)
        self.node_name = node
        self.VIEW = f"node {node}"

    def compose_body(self) -> Iterable[Widget]:
        yield Static(id="node-summary", classes="summary")
        yield Label("GPUs", classes="section")
        yield GridTable(id="gpus", classes="half")
        yield Label("Jobs on this node", classes="section")
        yield GridTable(id="node-jobs", classes="half")

    def on_mount(self) -> None:
        self.refresh_view()

    def refresh_view(self) -> None:
        rt = self.runtime
        g = rt.grid
        node = g.nodes.get(self.node_name)
        if node is None:
            return
        sample = telemetry(rt, node.name)
        gt = self.query_one("#gpus", GridTable)
        paint = gt.paint
        thresholds = getattr(self.app, "thresholds", palette.DEFAULT_THRESHOLDS)
        wide = self.app.size.width >= 120
        bar_w = 10 if wide else 5

        summary = Text(no_wrap=True, overflow="ellipsis")
        summary.append(f" {node.name}", style="bold")
        summary.append(f"  {node.gpu_count} x {node.gpu_type}  ")
        summary.append_text(paint.node_status(node.status))
        if node.fake or (sample is not None and sample.fake):
            summary.append("  FAKE GPUs (simulated)", paint("tag--fake"))
        beat = heartbeat(rt, node, sample)
        if wide:
            summary.append(f"  host {node.host or '—'}")
        summary.append(f"  beat {F.duration(beat) + ' ago' if beat is not None else '—'}")
        if sample is not None and sample.note:
            summary.append(f"  {sample.note}", paint("tag--warning"))
        show(self.query_one("#node-summary", Static), summary)

        gt.set_columns(
            [
                Column("gpu", "GPU"),
                Column("held", "Held by"),
                Column("util", "Util"),
                Column("mem", "Memory"),
                Column("temp", "Temp"),
                Column("power", "Power"),
            ]
        )
        samples = {s.index: s for s in sample.gpus} if sample is not None else {}
        rows = []
        for i in range(node.gpu_count):
            kind = palette.gpu_kind(node, i, g.jobs)
            holder = node.holders[i]
            held = Text()
            held.append(f" {palette.GPU_GLYPH[kind]} ", paint(f"gpu--{kind}"))
            if holder is not None and holder in g.jobs:
                job = g.jobs[holder]
                held.append(" ")
                held.append(palette.MODE_LABEL[job.mode], paint(palette.MODE_CLASSES[job.mode]))
                held.append(f" {job.name}")
            elif node.reserved[i]:
                held.append(f" reserved {node.reserved[i]}, idle")
            else:
                held.append(f" {palette.GPU_MEANING[kind]}")
            s = samples.get(i)
            util = s.util if s else None
            mem = (
                100 * s.mem_used_mb / s.mem_total_mb
                if s and s.mem_used_mb is not None and s.mem_total_mb
                else None
            )
            mem_label = (
                f"{s.mem_used_mb / 1024:.0f}/{s.mem_total_mb / 1024:.0f}G"
                if s and s.mem_used_mb is not None and s.mem_total_mb
                else None
            )
            rows.append(
                (
                    str(i),
                    [
                        Text(str(i), justify="right"),
                        held,
                        paint.bar(util, bar_w, thresholds, "util"),
                        paint.bar(mem, bar_w, thresholds, "memory", mem_label),
                        Text(f"{s.temp_c}°C" if s and s.temp_c is not None else "N/A"),
                        Text(f"{s.power_w:.0f} W" if s and s.power_w is not None else "N/A"),
                    ],
                )
            )
        gt.show_rows(rows)

        jt = self.query_one("#node-jobs", GridTable)
        jt.set_columns(
            [
                Column("id", "ID"),
                Column("mode", "Mode"),
                Column("state", "State"),
                Column("name", "Name"),
                Column("user", "User"),
                Column("gpus", "GPUs here"),
                Column("left", "Left"),
            ]
        )
        now = rt.clock.now()
        jrows = []
        for job in self.jobs_here():
            here = [p for p in job.placement if p.node == node.name]
            idx = ",".join(str(i) for p in here for i in p.gpus)
            left, _ = F.countdown(rt, job, now)
            jrows.append(
                (
                    str(job.id),
                    [
                        Text(str(job.id), justify="right"),
                        paint.mode(job.mode),
                        paint.state(job.state),
                        job.name,
                        job.user,
                        idx,
                        left,
                    ],
                )
            )
        jt.show_rows(jrows)

    def jobs_here(self) -> list[Job]:
        g = self.runtime.grid
        node = g.nodes[self.node_name]
        ids = sorted({j for j in node.holders if j is not None})
        return [g.jobs[j] for j in ids if j in g.jobs]

    def selected_job(self) -> Job | None:
        g = self.runtime.grid
        focused = self.focused
        if isinstance(focused, GridTable) and focused.id == "node-jobs":
            key = focused.selected_key
            return g.jobs.get(int(key)) if key else None
        key = self.query_one("#gpus", GridTable).selected_key
        if key is None:
            return None
        holder = g.nodes[self.node_name].holders[int(key)]
        return g.jobs.get(holder) if holder is not None else None

    def action_describe(self) -> None:
        job = self.selected_job()
        if job is None:
            self.notify("No job on that GPU.", severity="warning")
            return
        from .job import JobScreen

        self.app.push_screen(JobScreen(self.runtime, job.id))

    def on_data_table_row_selected(self, event: GridTable.RowSelected) -> None:
        event.stop()
        self.action_describe()
