"""The audit log: every job, reservation and node transition with its cause.

`FeedScreen` is the part the ledger shares: a table fed from one of the runtime's
recent-history deques, filtered with `/` (esc leaves the filter), and following new
rows while the cursor is on the last one. The table holds a window of at most `WINDOW`
rows: the newest ones while following, an older page after pgup (or up) on its first
row; a screenful of 2,000 rows nobody scrolls to cost a second of drawing at 512 nodes
(docs/console.md, "Event and ledger tables").
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static

from skyops_tui.app.keys import bindings
from skyops_tui.app.screens.base import SkyScreen
from skyops_tui.app.widgets.tables import MeasuredTable, literal
from skyops_tui.domain.model import Event

if TYPE_CHECKING:
    from skyops_tui.runtime import Runtime

WINDOW = 100  # rows a feed's table holds: a page
PAUSED_MAX = 2 * WINDOW  # a paused table grows to this; later rows are only counted


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


@dataclass(slots=True)
class Entry:
    """A feed item this user sees (and the filter keeps), numbered in the order the
    screen took it in; its row is drawn the first time it is needed."""

    seq: int
    item: Any
    row: tuple | None = None


def _seq(e: Entry) -> int:
    return e.seq


class FeedTable(MeasuredTable):
    """A log table: home goes to the oldest row, end (or G) to the newest and follows;
    up or pgup on the first row shows the page before, down or pgdn on the last row of
    an older page the page after."""

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

    def show_oldest(self) -> None:
        if self.row_count:
            self.move_cursor(row=0, animate=False)
            self.call_after_refresh(self.scroll_home, animate=False, x_axis=False, immediate=True)

    @property
    def feed_screen(self) -> FeedScreen | None:
        screen = self.screen
        return screen if isinstance(screen, FeedScreen) else None

    def action_cursor_up(self) -> None:
        if not (self.cursor_row == 0 and (s := self.feed_screen) and s.older()):
            super().action_cursor_up()

    def action_page_up(self) -> None:
        if not (self.cursor_row == 0 and (s := self.feed_screen) and s.older()):
            super().action_page_up()

    def action_cursor_down(self) -> None:
        if not (self.at_newest and (s := self.feed_screen) and s.newer()):
            super().action_cursor_down()

    def action_page_down(self) -> None:
        if not (self.at_newest and (s := self.feed_screen) and s.newer()):
            super().action_page_down()

    def action_scroll_top(self) -> None:
        if (s := self.feed_screen) is not None:
            s.oldest()
            return
        super().action_scroll_top()

    def action_scroll_bottom(self) -> None:
        if (s := self.feed_screen) is not None:
            s.action_follow()
            return
        super().action_scroll_bottom()

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
        self._newest: object | None = None  # the newest feed item taken in
        self._seq = 0  # its number
        # What this user sees and the filter keeps, oldest first, of the feed as it is.
        self._sel: list[Entry] = []
        # The table shows entries numbered first..last, all there were when it was
        # filled or appended to; live: the newest page, which new entries join.
        self._first = 0
        self._last = 0
        self._live = True
        self._missed = 0  # entries that came while the user was scrolled up

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

    # what the feed holds -----------------------------------------------------
    def _take_in(self) -> int:
        """Number and select the feed's new items; forget those it no longer holds.
        Returns how many were selected."""
        feed = self.feed()
        sel = self._sel
        if not feed:
            sel.clear()
            self._newest = None
            return 0
        if feed[-1] is self._newest:
            return 0
        new: list[Any] = []
        for item in reversed(feed):
            if item is self._newest:
                break
            new.append(item)
        else:  # the feed moved past everything taken in before (or was reloaded)
            sel.clear()
        new.reverse()
        seq, before, words = self._seq, len(sel), self.words
        for item in new:
            seq += 1
            if not self.listed(item):
                continue
            e = Entry(seq, item)
            if words:
                e.row = self._cells(item)
                if not matches(words, e.row):
                    continue
            sel.append(e)
        taken = len(sel) - before
        self._seq, self._newest = seq, feed[-1]
        oldest = seq - len(feed) + 1
        if sel and sel[0].seq < oldest:
            del sel[: bisect_left(sel, oldest, key=_seq)]
        return taken

    def _cells(self, item: Any) -> tuple:
        # Names, causes and reasons are typed by people: text, never markup.
        return tuple(literal(c) for c in self.row(item))

    def _row(self, e: Entry) -> tuple:
        if e.row is None:
            e.row = self._cells(e.item)
        return e.row

    def _fill(self, lo: int, hi: int) -> None:
        """Show the selected entries lo..hi-1 (a page) in the table, in place of what
        it showed."""
        table = self.query_one("#feed", FeedTable)
        table.clear()
        page = self._sel[lo:hi]
        table.add_line_rows((None, self._row(e)) for e in page)
        if page:
            self._first, self._last = page[0].seq, page[-1].seq
        else:  # nothing to show: everything taken in later is new
            self._first = self._last = self._seq
        self._live = hi >= len(self._sel)

    def _append(self, entries: Sequence[Entry]) -> None:
        table = self.query_one("#feed", FeedTable)
        table.add_line_rows((None, self._row(e)) for e in entries)
        if entries:
            if not table.row_count - len(entries):
                self._first = entries[0].seq
            self._last = entries[-1].seq

    def _after_shown(self) -> int:
        """Index in `_sel` of the first entry newer than the table's newest row."""
        return bisect_right(self._sel, self._last, key=_seq)

    # refresh -----------------------------------------------------------------
    def refresh_view(self) -> None:
        if not self.is_mounted:
            return
        self.refresh_extra()
        taken = self._take_in()
        if not taken and self._after_shown() >= len(self._sel):
            self._status()
            return
        table = self.query_one("#feed", FeedTable)
        if self._live and table.at_newest:
            new = self._sel[self._after_shown() :]
            if table.row_count + len(new) <= WINDOW:
                self._append(new)
            else:
                self._fill(max(0, len(self._sel) - WINDOW), len(self._sel))
            self.follow()
        else:
            if self._live:  # scrolled up on the newest page: rows join below, to a point
                i = self._after_shown()
                room = max(0, PAUSED_MAX - table.row_count)
                self._append(self._sel[i : i + room])
            self._missed += taken
        self._status()

    def refresh_extra(self) -> None:
        """Redraw what sits beside the table (cheap)."""

    def rebuild(self) -> None:
        """Select again from the whole feed (the filter changed) and show the newest."""
        self._sel.clear()
        self._newest = None
        self._take_in()
        self._fill(max(0, len(self._sel) - WINDOW), len(self._sel))
        self.follow()
        self._status()

    @property
    def following(self) -> bool:
        return self._live and self.query_one("#feed", FeedTable).at_newest

    def follow(self) -> None:
        self.query_one("#feed", FeedTable).show_newest()
        self._missed = 0

    # pages -------------------------------------------------------------------
    def older(self) -> bool:
        """Show the page before the table's first row, cursor on its newest row.
        False when there is none (the feed holds nothing older)."""
        lo = bisect_left(self._sel, self._first, key=_seq)
        if lo == 0:
            return False
        self._fill(max(0, lo - WINDOW), lo)
        self.query_one("#feed", FeedTable).show_newest()
        self._status()
        return True

    def newer(self) -> bool:
        """Show the page after the table's last row, cursor on its oldest row."""
        hi = self._after_shown()
        if hi >= len(self._sel):
            return False
        self._fill(hi, min(len(self._sel), hi + WINDOW))
        self.query_one("#feed", FeedTable).show_oldest()
        if self._live:
            self._missed = 0
        self._status()
        return True

    def oldest(self) -> None:
        """The oldest page the feed holds, cursor on its first row."""
        self._take_in()
        table = self.query_one("#feed", FeedTable)
        if self._first > (self._sel[0].seq if self._sel else self._seq):
            self._fill(0, min(len(self._sel), WINDOW))
        table.show_oldest()
        self._status()

    def _status(self) -> None:
        table = self.query_one("#feed", FeedTable)
        total = len(self._sel)
        lo = bisect_left(self._sel, self._first, key=_seq)
        hi = self._after_shown()
        t = Text()
        if lo == 0 and hi >= total:
            t.append(f"{table.row_count:,} {self.NOUN}")
        else:
            t.append(f"{lo + 1:,}–{max(hi, lo + 1):,} of {total:,} {self.NOUN}")
        if self.words:
            t.append(f" matching “{' '.join(self.words)}”", "bold")
            t.append(" · esc clears")
        else:
            t.append(" · / filters")
        if lo > 0:
            t.append(" · pgup older")
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
        """The newest page, cursor on the newest row, following new ones."""
        self._take_in()
        total = len(self._sel)
        table = self.query_one("#feed", FeedTable)
        newest = self._sel[-1].seq if self._sel else self._last
        if not self._live or self._last < newest or table.row_count > WINDOW:
            self._fill(max(0, total - WINDOW), total)
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
