"""The grid: one row per node, GPU cells coloured by what holds them, load bars from
telemetry. Enter or `d` on a node opens its detail."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Label, Static

from ...domain.model import Node, NodeStatus
from ...domain.telemetry import NodeSample
from .. import format as F
from .. import palette
from ..keys import bindings
from ..widgets.chrome import show
from ..widgets.tables import Column, GridTable, cell_width, fit_last
from .base import SkyScreen

WIDE = 120  # from this many columns the grid shows wide GPU cells and more columns
ROOMY = 160  # from this many, full-length load bars (shorter ones leave Jobs room at 120)


def telemetry(runtime, node: str) -> NodeSample | None:
    """The node's last sample (a cached read, never I/O): the executor's, or on a
    follower the leader's, as its watch stream brought it."""
    try:
        return runtime.sample(node)
    except Exception:
        return None


def node_load(sample: NodeSample | None) -> tuple[float | None, float | None, str]:
    """Mean utilisation %, memory used %, and 'used/total G' over a node's GPUs."""
    if sample is None or not sample.gpus:
        return None, None, ""
    utils = [g.util for g in sample.gpus if g.util is not None]
    used = [g.mem_used_mb for g in sample.gpus if g.mem_used_mb is not None]
    total = [g.mem_total_mb for g in sample.gpus if g.mem_total_mb is not None]
    util = sum(utils) / len(utils) if utils else None
    mem = 100 * sum(used) / sum(total) if used and total and sum(total) else None
    label = f"{sum(used) / 1024:.0f}/{sum(total) / 1024:.0f}G" if used and total else ""
    return util, mem, label


def node_heat(sample: NodeSample | None) -> tuple[int | None, float | None]:
    """The hottest GPU's temperature (the one that throttles first) and the node's total
    power draw, as nvitop shows beside utilisation and memory."""
    if sample is None or not sample.gpus:
        return None, None
    temps = [g.temp_c for g in sample.gpus if g.temp_c is not None]
    watts = [g.power_w for g in sample.gpus if g.power_w is not None]
    return (max(temps) if temps else None), (sum(watts) if watts else None)


HOT_C, BURNING_C = 80, 90  # amber from 80 °C, red from 90 °C (GPUs throttle near 85-90)


def heat_cells(
    paint: palette.Painter, temp: int | None, watts: float | None, wide: bool
) -> list[Text]:
    if temp is None:
        hot = Text("N/A" if wide else "—", style=paint("tag--muted"))
    else:
        style = "tag--error" if temp >= BURNING_C else "tag--warning" if temp >= HOT_C else ""
        hot = Text(f"{temp}°C" if wide else f"{temp}°", style=paint(style) if style else "")
    if watts is None:
        power = Text("N/A" if wide else "—", style=paint("tag--muted"))
    elif watts >= 10_000:
        power = Text(f"{watts / 1000:.1f}kW")
    else:
        power = Text(f"{watts:.0f}W")
    return [hot, power]


def job_spans(paint: palette.Painter, node: Node, jobs) -> Text:
    """Which job holds which GPUs, in cell order ('0-3 train-llm  4-7 sweep-01'), the
    indices coloured as the job's cells are: read beside the cells, not a sorted list."""
    spans: list[tuple[int, int, int]] = []  # (job id, first, last)
    for i, holder in enumerate(node.holders):
        if holder is None or holder not in jobs:
            continue
        if spans and spans[-1][0] == holder and spans[-1][2] == i - 1:
            spans[-1] = (holder, spans[-1][1], i)
        else:
            spans.append((holder, i, i))
    t = Text(no_wrap=True, overflow="ellipsis")
    for k, (holder, first, last) in enumerate(spans):
        job = jobs[holder]
        if k:
            t.append("  ")
        t.append(
            str(first) if first == last else f"{first}-{last}", paint(f"gpu--{job.mode.value}")
        )
        t.append(f" {job.name}")
    return t


def heartbeat(runtime, node: Node, sample: NodeSample | None) -> float | None:
    seen = node.last_heartbeat
    if seen is None and sample is not None:
        seen = sample.at
    return None if seen is None else max(0.0, runtime.clock.now() - seen)


def gpu_cells(paint: palette.Painter, node: Node, jobs, wide: bool) -> Text:
    t = Text(no_wrap=True)
    for i in range(node.gpu_count):
        kind = palette.gpu_kind(node, i, jobs)
        glyph = palette.GPU_GLYPH[kind]
        t.append(f" {glyph}" if wide else glyph, paint(f"gpu--{kind}"))
    if wide:
        t.append(" ")
    return t


def legend(paint: palette.Painter, short: bool = False) -> Text:
    names = {
        "priority": "Priority",
        "commit": "Commit",
        "flex": "Flex",
        "free": "free",
        "reserved": "reserved idle",
        "down": "down",
    }
    if short:
        names["reserved"] = "reserved"
    t = Text(no_wrap=True, overflow="ellipsis")
    for kind in palette.GPU_KINDS:
        t.append(f" {palette.GPU_GLYPH[kind]} ", paint(f"gpu--{kind}"))
        t.append(f" {names[kind]}" + (" " if short else "  "))
    return t


def colour_legend(paint: palette.Painter, thresholds: palette.LoadThresholds) -> Text:
    """The colours that are not GPU cells: load levels (with the operator's thresholds)
    and the preempting state, each named, so no colour has to be guessed."""
    low, high = thresholds.util
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(" load ")
    for level, name in (
        ("light", f"light <{low}%"),
        ("moderate", "moderate"),
        ("heavy", f"heavy ≥{high}%"),
    ):
        t.append("██", paint(f"load--{level}"))
        t.append(f" {name}  ")
    t.append("preempting", paint("state--preempting"))
    return t


class GridScreen(SkyScreen):
    SCOPE = "grid"
    VIEW = "grid"
    BINDINGS = bindings("grid")
    AUTO_FOCUS = "#nodes"

    def compose_body(self) -> Iterable[Widget]:
        yield Static(id="legend", classes="legend")
        yield GridTable(id="nodes")
        yield Static(id="markets", classes="summary")
        yield Label("Recent events", classes="section", id="recent-label")
        recent = GridTable(id="recent", cursor_type="none")
        recent.can_focus = False
        yield recent

    _row_cache: dict[str, tuple[tuple, list, list[int]]]  # node: (what it shows, cells, widths)
    _load_cache: dict[str, tuple[object, tuple]]  # node: (its GPU samples, load and heat)

    def on_mount(self) -> None:
        self._row_cache = {}
        self._load_cache = {}
        self.redraw()

    def on_resize(self) -> None:
        self._row_cache = {}
        self.refresh_view()

    @property
    def wide(self) -> bool:
        return self.app.size.width >= WIDE

    def columns(self) -> list[Column]:
        if self.wide:
            return [
                Column("node", "Node"),
                Column("type", "Type"),
                Column("gpus", "GPUs"),
                Column("util", "Utilisation"),
                Column("mem", "Memory"),
                Column("temp", "Temp", justify="right"),
                Column("power", "Power", justify="right"),
                Column("state", "State"),
                Column("beat", "Beat", justify="right"),
                Column("jobs", "Jobs"),
            ]
        return [
            Column("node", "Node"),
            Column("gpus", "GPUs"),
            Column("util", "Util"),
            Column("mem", "Mem"),
            Column("temp", "°C", justify="right"),
            Column("power", "Pwr", justify="right"),
            Column("state", "State"),
            Column("beat", "Beat"),
        ]

    def refresh_view(self) -> None:
        table = self.query_one("#nodes", GridTable)
        wide = self.wide
        paint = table.paint
        g = self.runtime.grid
        thresholds = getattr(self.app, "thresholds", palette.DEFAULT_THRESHOLDS)
        rows = []
        widths = []
        changed: set[str] = set()
        cache = self._row_cache
        loads = self._load_cache
        beat_at = 8 if wide else 7  # name, [type], GPUs, util, mem, temp, power, state, beat
        for node in g.nodes.values():
            sample = telemetry(self.runtime, node.name)
            gpus = sample.gpus if sample is not None else None
            seen = loads.get(node.name)
            if seen is not None and seen[0] is gpus and gpus is not None:
                util, mem, mem_label, temp, watts = seen[1]
            else:  # a new sample: samples are frozen, so the same GPUs give the same load
                util, mem, mem_label = node_load(sample)
                temp, watts = node_heat(sample)
                loads[node.name] = (gpus, (util, mem, mem_label, temp, watts))
            if node.status is NodeStatus.UNREACHABLE:
                util = mem = temp = watts = None
            beat = heartbeat(self.runtime, node, sample)
            fake = node.fake or (sample is not None and sample.fake)
            # A row is rebuilt only when something it shows changed: most nodes do not
            # change between two refreshes, and building cells is the cost of a refresh.
            bar_w = (10 if self.app.size.width >= ROOMY else 6) if wide else 5
            key = (
                wide,
                bar_w,
                node.status,
                node.drained,
                tuple(node.holders),
                tuple(node.reserved),
                util,
                mem,
                mem_label,
                temp,
                watts,
                fake,
                id(thresholds),
            )
            beat_text = F.duration(beat) if beat is not None else "—"
            hit = cache.get(node.name)
            if hit is not None and hit[0] == key:
                cells, row_widths = hit[1], hit[2]
                if cells[beat_at].plain != beat_text:  # the heartbeat ticks on its own
                    cells = list(cells)
                    cells[beat_at] = Text(beat_text, justify="right")
                    row_widths = list(row_widths)
                    row_widths[beat_at] = cell_width(cells[beat_at])
                    cache[node.name] = (key, cells, row_widths)
                    changed.add(node.name)
                rows.append((node.name, cells))
                widths.append(row_widths)
                continue
            name = Text(node.name, style="bold")
            state = paint.node_status(node.status)
            if node.drained is not None:  # an operator's drain: nothing new goes here
                state.append(" drained", paint("node--degraded"))
            cells = [name]  # typed where a cached row is reused, above
            if wide:
                kind = Text(node.gpu_type)
                if fake:
                    kind.append(" FAKE", paint("tag--fake"))
                cells.append(kind)
            else:
                if fake:
                    name.append("*", paint("tag--fake"))
            cells.append(gpu_cells(paint, node, g.jobs, wide))
            cells.append(paint.bar(util, bar_w, thresholds, "util"))
            cells.append(
                paint.bar(
                    mem,
                    bar_w,
                    thresholds,
                    "memory",
                    mem_label if wide and mem is not None else None,
                )
            )
            cells.extend(heat_cells(paint, temp, watts, wide))
            cells.append(state)
            cells.append(Text(beat_text, justify="right"))
            if wide:
                cells.append(job_spans(paint, node, g.jobs))
            row_widths = [cell_width(c) for c in cells]
            cache[node.name] = (key, cells, row_widths)
            changed.add(node.name)
            rows.append((node.name, cells))
            widths.append(row_widths)
        columns = self.columns()
        if wide:  # the Jobs column takes what is left, so the table fits the terminal
            gutter = table.styles.scrollbar_size_vertical
            columns = fit_last(columns, rows, self.app.size.width, gutter, widths)
        table.set_columns(columns)
        table.show_rows(rows, changed)
        show(self.query_one("#legend", Static), self._legend(paint, wide))
        show(self.query_one("#markets", Static), self._markets(paint, wide))
        self._recent(paint)

    def _recent(self, paint: palette.Painter) -> None:
        """The latest events of the whole grid, newest first (fills a tall screen)."""
        table = self.query_one("#recent", GridTable)
        room = max(self.app.size.height, 10)
        feed = self.runtime.feed.events
        # The same newest event, count and terminal: the same rows (most refreshes).
        shown = (feed[-1] if feed else None, len(feed), room, self.app.size, self.app.theme)
        if shown == getattr(self, "_recent_shown", None):
            return
        self._recent_shown = shown
        g = self.runtime.grid
        events = list(feed)[-max(room, 1) :]
        rows = []
        for k, e in enumerate(reversed(events)):
            job = g.jobs.get(e.job) if e.job is not None else None
            what = job.name if job else (e.reservation or e.node or e.user or "")
            change = Text()
            if e.old and e.new:
                change.append(e.old, paint(palette.state_class(e.old)))
                change.append(" → ")
                change.append(e.new, paint(palette.state_class(e.new)))
            else:
                change.append(e.kind, paint("tag--muted"))
            rows.append(
                (
                    str(len(events) - k),
                    [F.clock(e.at), what, change, Text(e.cause, no_wrap=True, overflow="ellipsis")],
                )
            )
        columns = [
            Column("at", "Time"),
            Column("what", "What"),
            Column("change", "Change"),
            Column("cause", "Cause"),
        ]
        table.set_columns(fit_last(columns, rows, self.app.size.width, 0))
        table.show_rows(rows)

    def _legend(self, paint: palette.Painter, wide: bool) -> Text:
        """What each colour means: one line when the terminal is wide enough, else two."""
        t = legend(paint, short=not wide)
        if not wide and any(n.fake for n in self.runtime.grid.nodes.values()):
            t.append("* FAKE", paint("tag--fake"))
        thresholds = getattr(self.app, "thresholds", palette.DEFAULT_THRESHOLDS)
        colours = colour_legend(paint, thresholds)
        gap = Text("│", paint("tag--muted"))
        if t.cell_len + gap.cell_len + colours.cell_len <= self.app.size.width:
            return Text.assemble(t, gap, colours, no_wrap=True, overflow="ellipsis")
        t.rstrip()
        return Text.assemble(t, "\n", colours, no_wrap=True, overflow="ellipsis")

    def _markets(self, paint: palette.Painter, wide: bool) -> Text:
        g = self.runtime.grid
        cur = self.runtime.cfg.cluster.currency
        t = Text()
        for k, (name, m) in enumerate(g.markets.items()):
            nodes = g.by_type.get(name, [])
            total = sum(n.gpu_count for n in nodes)
            busy = sum(1 for n in nodes for h in n.holders if h is not None)
            waiting = len(g.flex_book.get(name, []))
            if k:
                t.append("\n")
            t.append(f" {name:<5}", style="bold")
            t.append(f" {busy:>2}/{total:<2} busy  ")
            t.append("flex ")
            t.append(F.rate(m.price, cur), paint("mode--flex"))
            if wide:
                t.append(f"  (floor {F.rate(m.floor, cur)}, standard {F.rate(m.rate, cur)})")
                t.append(f"  {waiting} bid(s) waiting" if waiting else "")
            else:
                t.append(f"/{F.rate(m.rate, cur)} std")
                t.append(f"  {waiting} waiting" if waiting else "")
        return t

    def selected_node(self) -> Node | None:
        key = self.query_one("#nodes", GridTable).selected_key
        return self.runtime.grid.nodes.get(key) if key else None

    def action_describe(self) -> None:
        node = self.selected_node()
        if node is None:
            return
        from .node import NodeScreen

        self.app.push_screen(NodeScreen(self.runtime, node.name))

    def on_data_table_row_selected(self, event: GridTable.RowSelected) -> None:
        event.stop()
        self.action_describe()
