"""The audit log: every job, reservation and node transition with its cause.

`FeedScreen` is the part the ledger shares: a table fed from one of the runtime's
recent-history deques, appended to (not rebuilt) once a second, filtered with `/`
(esc leaves the filter), and following new rows while the cursor is on the last one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.domain.model import Event

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime


def when(t: float, now: float) -> str:
    """'HH:MM:SS' for today (UTC), 'MM-DD HH:MM:SS' for other days."""
    d = datetime.fromtimestamp(t, UTC)
    if d.date() == datetime.fromtimestamp(now, UTC).date():
        return d.strftime("%H:%M:%S")
    return d.strftime("%m-%d %H:%M:%S")


def matches(words: Sequence[str], row: Sequence[Any]) -> bool:
    """Every word of the filter appears somewhere in the row (case-insensitive)."""
    if not words:
        return True
    hay = " ".join(c.plain if isinstance(c, Text) else str(c) for c in row).lower()
    return all(w in hay for w in words)


class FeedTable(DataTable):
    """A log table: home goes to the oldest row, end (or G) to the newest and follows."""

    BINDINGS = bindings("feed")

    @property
    def at_newest(self) -> bool:
        return self.row_count == 0 or self.cursor_row >= self.row_count - 1

    def show_newest(self) -> None:
        """Cursor on the newest row, scrolled into view once the layout has settled
        (rows added before the table is sized would otherwise stay out of sight)."""
        if self.row_count:
            self.move_cursor(row=self.row_count - 1, animate=False)
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False, immediate=True)

    def on_resize(self) -> None:
        if self.row_count and self.at_newest:
            self.show_newest()

    def watch_show_horizontal_scrollbar(self, shown: bool) -> None:
        # A horizontal scrollbar takes the bottom line: keep the newest row above it.
        if self.row_count and self.at_newest:
            self.show_newest()


class FeedScreen(SkyScreen):
    """A table of one feed (events or transactions). Subclasses give the columns,
    the feed, which items this user sees and how an item reads as a row."""

    COLUMNS: tuple[tuple[str, str], ...] = ()
    NOUN = "rows"
    FILTER_HINT = "filter: words that must all appear"

    def __init__(self, runtime: Runtime, **kw: Any) -> None:
        super().__init__(runtime, **kw)
        self.words: tuple[str, ...] = ()
        self._last: object | None = None  # the newest feed item already considered
        self._shown = 0
        self._missed = 0  # rows added below while the user was scrolled up

    # subclass hooks --------------------------------------------------------
    def feed(self) -> Sequence[Any]:
        raise NotImplementedError

    def listed(self, item: Any) -> bool:
        """Whether the feed lists `item` (named apart from DOMNode.visible, a property)."""
        return True

    def row(self, item: Any) -> tuple:
        raise NotImplementedError

    def compose_feed(self) -> Iterable[Widget]:
        """Widgets above the table (the ledger's balances)."""
        return ()

    # composition -----------------------------------------------------------
    def compose_body(self) -> Iterable[Widget]:
        yield from self.compose_feed()
        filt = Input(placeholder=self.FILTER_HINT, id="filter", compact=True)
        filt.display = False
        yield filt
        table = FeedTable(id="feed", cursor_type="row", zebra_stripes=True)
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static(id="feed-status")

    def on_mount(self) -> None:
        self.query_one("#feed", DataTable).focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.redraw_if_stale()

    # refresh -----------------------------------------------------------------
    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        self.refresh_extra()
        feed = self.feed()
        table = self.query_one("#feed", DataTable)
        if not feed or feed[-1] is self._last:
            self._status()
            return
        new: list[Any] = []
        for item in reversed(feed):
            if item is self._last:
                break
            new.append(item)
        else:
            if self._last is not None:  # it fell off the feed: start again
                self.rebuild()
                return
        new.reverse()
        self._last = feed[-1]
        following = self.following
        rows = [r for r in (self.row(i) for i in new if self.listed(i)) if matches(self.words, r)]
        for r in rows:
            table.add_row(*r)
        self._shown += len(rows)
        if following:
            self.follow()
        else:
            self._missed += len(rows)
        self._status()

    def refresh_extra(self) -> None:
        """Redraw what sits beside the table (cheap)."""

    def rebuild(self) -> None:
        table = self.query_one("#feed", DataTable)
        table.clear()
        feed = self.feed()
        rows = [self.row(i) for i in feed if self.listed(i)]
        rows = [r for r in rows if matches(self.words, r)]
        for r in rows:
            table.add_row(*r)
        self._last = feed[-1] if feed else None
        self._shown = len(rows)
        self._missed = 0
        self.follow()
        self._status()

    @property
    def following(self) -> bool:
        return self.query_one("#feed", FeedTable).at_newest

    def follow(self) -> None:
        self.query_one("#feed", FeedTable).show_newest()
        self._missed = 0

    def _status(self) -> None:
        t = Text()
        t.append(f"{self._shown} {self.NOUN}")
        if self.words:
            t.append(f" matching “{' '.join(self.words)}”", "bold")
            t.append(" · esc clears")
        else:
            t.append(" · / filters")
        if self.following:
            t.append(" · following new ones")
        else:
            t.append(" · paused" + (f", {self._missed} new below" if self._missed else ""), "bold")
            t.append(" · end follows")
        self.query_one("#feed-status", Static).update(t)

    # filter ------------------------------------------------------------------
    def action_filter(self) -> None:
        filt = self.query_one("#filter", Input)
        filt.display = True
        filt.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        event.stop()
        words = tuple(event.value.lower().split())
        if words != self.words:
            self.words = words
            self.rebuild()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "filter":
            return
        event.stop()
        if not event.value.strip():
            event.input.display = False
        self.query_one("#feed", DataTable).focus()

    def action_back(self) -> None:
        """esc leaves the filter first, then goes back."""
        if self.words or self.query_one("#filter").display:
            self.action_clear_filter()
            return
        super().action_back()

    def action_clear_filter(self) -> None:
        filt = self.query_one("#filter", Input)
        filt.value = ""
        filt.display = False
        if self.words:
            self.words = ()
            self.rebuild()
        self.query_one("#feed", DataTable).focus()

    def action_follow(self) -> None:
        self.follow()
        self._status()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.following:
            self._missed = 0
        self._status()


class EventsScreen(FeedScreen):
    """Time, kind, what it concerns, old → new state, cause, whose."""

    CSS_PATH = "events.tcss"
    SCOPE = "events"
    VIEW = "events"
    NOUN = "events"
    FILTER_HINT = (
        "filter events: e.g. sweep-01, preempt, nightly-a100, h100-b (all words must match)"
    )
    BINDINGS = bindings("events")
    COLUMNS = (
        ("at", "Time (UTC)"),
        ("subject", "Subject"),
        ("what", "What"),
        ("cause", "Cause"),
        ("user", "User"),
    )

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime, id="events")

    def feed(self) -> Sequence[Event]:
        return self.runtime.feed.events

    def subject(self, e: Event) -> str:
        parts = []
        if e.job is not None:
            job = self.runtime.grid.jobs.get(e.job)
            parts.append(f"#{e.job} {job.name}" if job is not None else f"#{e.job}")
        if e.reservation:
            parts.append(e.reservation)
        if e.node:
            parts.append(e.node)
        return " · ".join(parts) or "—"

    def row(self, e: Event) -> tuple:
        """A state change reads 'old → new'; any other kind names itself ('bid', 'window')."""
        if e.kind == "state" and e.old and e.new:
            what = f"{e.old} → {e.new}"
        elif e.kind == "submitted" and e.new:
            what = f"submitted → {e.new}"
        else:
            what = e.kind
        return (when(e.at, self.runtime.clock.now()), self.subject(e), what, e.cause, e.user or "")
