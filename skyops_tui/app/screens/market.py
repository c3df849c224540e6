"""The Flex market: per node type, the bid ladder with its capacity line and clearing
price, and the price history.

Everything is read from the scheduler's in-memory grid and the runtime's price feed
once a second; nothing here changes the grid.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from rich.text import Text
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Static, Tab, Tabs

from skyops_tui.app import format as F
from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.app.widgets.chart import PriceChart
from skyops_tui.app.widgets.ladder import Ladder, LadderView, ladder_view
from skyops_tui.domain.money import fmt

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime

# Chart spans: None fits the whole recorded history.
SPANS: tuple[float | None, ...] = (None, 3600.0, 6 * 3600.0, 24 * 3600.0)
MIN_SPAN = 600.0
WIDE = 120  # at least this many columns: ladder and chart side by side


def tab_id(gpu_type: str) -> str:
    return f"type-{gpu_type}"


class MarketScreen(SkyScreen):
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
        yield Horizontal(
            VerticalScroll(Ladder(id="ladder"), id="ladder-pane"),
            Vertical(Static(id="chart-title"), PriceChart(id="chart"), id="chart-pane"),
            id="body",
        )

    def on_mount(self) -> None:
        self.query_one("#ladder-pane").focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

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

    def on_tabs_tab_activated(self, event: Tabs.TabActivated) -> None:
        if event.tab is not None and event.tab.id:
            self.gpu_type = event.tab.id.removeprefix("type-")
            self.query_one("#ladder-pane", VerticalScroll).scroll_home(animate=False)
            self.refresh_view()

    # -------------------------------------------------------------- refresh
    def _tab_label(self, gpu_type: str) -> str:
        m = self.runtime.grid.markets[gpu_type]
        return f"{gpu_type} {fmt(m.price, self.runtime.cfg.cluster.currency)}"

    def view(self) -> LadderView | None:
        if self.gpu_type is None:
            return None
        return ladder_view(self.runtime.grid, self.gpu_type)

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
