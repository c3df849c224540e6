"""The Flex market: per node type, the bid ladder with its capacity line and clearing
price, and the price history.

Everything is read from the scheduler's in-memory grid and the runtime's price feed
once a second. The only change made here is `b`, a bid's new price, through the same
dialog as the job list: on one's own bid, or any bid for an operator (whom the grid
lets act on every job); anyone else is told whose bid it is, with no dialog.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.style import Style
from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, Tab, Tabs

from skyops_tui.app import format as F
from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.app.screens.job_actions import JobActions
from skyops_tui.app.widgets.chart import PriceChart
from skyops_tui.app.widgets.chrome import show
from skyops_tui.app.widgets.ladder import Ladder, LadderView, ladder_view
from skyops_tui.domain.model import Job
from skyops_tui.domain.money import fmt

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime

# Chart spans: None fits the whole recorded history.
SPANS: tuple[float | None, ...] = (None, 3600.0, 6 * 3600.0, 24 * 3600.0)
MIN_SPAN = 600.0
WIDE = 120  # at least this many columns: ladder and chart side by side


def tab_id(gpu_type: str) -> str:
    return f"type-{gpu_type}"


class MarketScreen(JobActions, SkyScreen):
    """Bid ladder and price history of one node type at a time (left/right switch)."""

    CSS_PATH = "market.tcss"
    SCOPE = "market"
    VIEW = "market"
    BINDINGS = bindings("market")

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, id="market")
        types = list(runtime.grid.markets)
        self.gpu_type: str | None = types[0] if types else None
        self.span_index = 0

    def compose_body(self) -> Iterable[Widget]:
        markets = self.runtime.grid.markets
        yield Tabs(*(Tab(self._tab_label(t), id=tab_id(t)) for t in markets), id="types")
        yield Static(id="summary")
        yield Static(id="legend")
        yield Horizontal(
            VerticalScroll(Ladder(id="ladder"), id="ladder-pane"),
            Vertical(Static(id="chart-title"), PriceChart(id="chart"), id="chart-pane"),
            id="body",
        )

    def on_mount(self) -> None:
        self.query_one("#ladder-pane").focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.redraw_if_stale()

    def on_resize(self) -> None:
        self.set_class(self.size.width < WIDE, "-narrow")

    # -------------------------------------------------------------- actions
    def action_next_type(self) -> None:
        self.query_one(Tabs).action_next_tab()

    def action_previous_type(self) -> None:
        self.query_one(Tabs).action_previous_tab()

    def action_span(self) -> None:
        self.span_index = (self.span_index + 1) % len(SPANS)
        self.refresh_view()

    def action_cursor_down(self) -> None:
        self._move(1)

    def action_cursor_up(self) -> None:
        self._move(-1)

    def _move(self, delta: int) -> None:
        ladder = self.query_one(Ladder)
        ladder.move(delta)
        pane = self.query_one("#ladder-pane", VerticalScroll)
        line = ladder.cursor_line()
        if line < pane.scroll_y + 1:
            pane.scroll_to(y=max(0, line - 1), animate=False)
        elif line >= pane.scroll_y + pane.scrollable_content_region.height:
            pane.scroll_to(y=line - pane.scrollable_content_region.height + 1, animate=False)

    def selected_job(self) -> Job | None:
        rung = self.query_one(Ladder).selected
        return self.runtime.grid.jobs.get(rung.job) if rung is not None else None

    def action_bid(self) -> None:
        rung = self.query_one(Ladder).selected
        if rung is not None and not rung.mine and not self.runtime.is_operator:
            self.notify(
                f"{rung.name} is {rung.user}'s bid: you ({self.runtime.user}) can change "
                "only your own (▶).",
                title="Not your bid",
                severity="warning",
            )
            return
        super().action_bid()

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            gpu_type = event.tab.id.removeprefix("type-")
            if gpu_type == self.gpu_type:  # the first tab, activated as the tabs mount
                self.redraw_if_stale()
                return
            self.gpu_type = gpu_type
            self.query_one("#ladder-pane", VerticalScroll).scroll_home(animate=False)
            self.refresh_view()

    # -------------------------------------------------------------- refresh
    def _tab_label(self, gpu_type: str) -> str:
        m = self.runtime.grid.markets[gpu_type]
        return f"{gpu_type} {fmt(m.price, self.runtime.cfg.cluster.currency)}"

    def view(self) -> LadderView | None:
        if self.gpu_type is None:
            return None
        return ladder_view(self.runtime.grid, self.gpu_type, self.runtime.user)

    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        for t in self.runtime.grid.markets:
            tab = self.query_one(f"#{tab_id(t)}", Tab)
            label = self._tab_label(t)
            if str(tab.label) != label:
                tab.label = label
        v = self.view()
        if v is None:
            self.query_one("#summary", Static).update("No node types configured.")
            return
        self.query_one(Ladder).show(v)
        self.query_one("#summary", Static).update(self._summary(v))
        show(self.query_one("#legend", Static), self._legend(v))
        self._chart(v)

    def _summary(self, v: LadderView) -> Text:
        """One line, most important first: a narrow terminal crops the end (floor and
        standard rate, which the chart's axis also shows)."""
        cur = self.runtime.cfg.cluster.currency
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f"clearing {fmt(v.price, cur)}/GPU-h", "bold")
        t.append(f" · Flex may use {v.capacity} of {v.gpus} GPUs, holds {v.in_use}")
        t.append(f" · {v.running} running, {v.waiting} waiting")
        t.append(f" · floor {fmt(v.floor, cur)} · standard {fmt(v.rate, cur)}")
        return t

    def _legend(self, v: LadderView) -> Text:
        """What the ladder's marks and colours mean, in words, wrapped between items
        (never inside one) to the screen's width."""
        ladder = self.query_one(Ladder)

        def style(name: str) -> Style:
            return ladder.get_component_rich_style(f"ladder--{name}", partial=True)

        cur = self.runtime.cfg.cluster.currency
        items = [
            Text.assemble(
                ("┃", style("price")),
                f" clearing {fmt(v.price, cur)} on each bar (bar: bid of standard "
                f"{fmt(v.rate, cur)})",
            ),
            Text.assemble(("▶", style("own")), " your bid"),
            *(
                Text.assemble(("■", style(name)), f" {name}")
                for name in ("running", "waiting", "paused", "preempting", "stopping")
            ),
        ]
        width = max(self.app.size.width - 2, 20)  # known from the first refresh on
        out = Text(no_wrap=True, overflow="ellipsis")
        line = 0
        for item in items:
            if line and line + 2 + item.cell_len > width:
                out.append("\n")
                line = 0
            elif line:
                out.append("  ")
                line += 2
            out.append_text(item)
            line += item.cell_len
        return out

    def _chart(self, v: LadderView) -> None:
        now = self.runtime.clock.now()
        points = list(self.runtime.feed.prices.get(v.gpu_type, ()))
        span = SPANS[self.span_index]
        if span is None:
            first = points[0][0] if points else now
            span = max(now - first, MIN_SPAN)
            label = "all"
        else:
            label = F.duration(span)
        t0 = now - span
        self.query_one(PriceChart).show(points, t0, now, v.floor, v.rate)
        self.query_one("#chart-title", Static).update(
            f"{v.gpu_type} clearing price, last {F.duration(span)} ({label}; z: span)"
        )
