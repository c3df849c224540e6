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
from textual.binding import Binding
from textual.events import Key
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.domain.model import Event

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime


def when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M:%S")


def matches(words: Sequence[str], row: Sequence[Any]) -> bool:
    """Every word of the filter appears somewhere in the row (case-insensitive)."""
    if not words:
        return True
    hay = " ".join(c.plain if isinstance(c, Text) else str(c) for c in row).lower()
    return all(w in hay for w in words)


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

    def visible(self, item: Any) -> bool:
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
        table: DataTable = DataTable(id="feed", cursor_type="row", zebra_stripes=True)
        for key, label in self.COLUMNS:
            table.add_column(label, key=key)
        yield table
        yield Static(id="feed-status")

    def on_mount(self) -> None:
        self.query_one("#feed", DataTable).focus()
        self.refresh_view()

    def on_screen_resume(self) -> None:
        self.refresh_view()

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
        rows = [r for r in (self.row(i) for i in new if self.visible(i)) if matches(self.words, r)]
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
        rows = [self.row(i) for i in feed if self.visible(i)]
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
        table = self.query_one("#feed", DataTable)
        return table.row_count == 0 or table.cursor_row >= table.row_count - 1

    def follow(self) -> None:
        table = self.query_one("#feed", DataTable)
        if table.row_count:
            table.move_cursor(row=table.row_count - 1, animate=False)
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

    def on_key(self, event: Key) -> None:
        if event.key == "escape" and (self.words or self.query_one("#filter").display):
            event.stop()
            event.prevent_default()
            self.action_clear_filter()

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
    BINDINGS = [
        Binding("slash", "filter", "Filter", id="events.filter"),
        Binding("end,G", "follow", "Follow", id="events.follow"),
    ]
    COLUMNS = (
        ("at", "Time (UTC)"),
        ("kind", "Kind"),
        ("subject", "Job / reservation / node"),
        ("change", "State"),
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
        change = ""
        if e.old and e.new:
            change = f"{e.old} → {e.new}"
        elif e.new:
            change = f"→ {e.new}"
        return (when(e.at), e.kind, self.subject(e), change, e.cause, e.user or "")
