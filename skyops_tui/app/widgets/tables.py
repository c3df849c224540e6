"""A DataTable that knows the console's palette and can be re-filled every second
without losing the cursor, the scroll position or the sort."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import zip_longest
from typing import Any, TypeVar

from rich.cells import cell_len
from rich.text import Text
from textual.cache import LRUCache
from textual.widgets import DataTable
from textual.widgets._data_table import Row
from textual.widgets.data_table import ColumnKey, DuplicateKey, RowKey

from .. import palette


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None
    justify: str = "left"


class MeasuredTable(DataTable):
    """A DataTable that measures its new rows' text cells itself.

    Textual measures each cell of a new row through the console (`__rich_measure__`,
    whose console options ask the OS for the terminal's size three times a cell):
    at 512 nodes, the job list's 1,124 rows took 150 ms to measure on its first visit.
    A `Text` cell's width is its widest line's cell length either way (`cell_width`);
    anything else, a row with a label or an automatic height, is left to Textual."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        columns = self.ordered_columns
        widths = [c.content_width for c in columns]
        rest: list[RowKey] = []
        locations, rows, data = self._row_locations, self.rows, self._data
        for row_key in new_rows:
            if locations.get(row_key) is None:  # removed since it was added
                continue
            row = rows.get(row_key)
            cells = data.get(row_key)
            if row is None or cells is None or row.label is not None or row.auto_height:
                rest.append(row_key)
                continue
            known = self._known_widths(row_key.value)
            if known is None or len(known) != len(columns):
                measured = [cells.get(c.key) for c in columns]
                if not all(type(cell) is Text for cell in measured):
                    rest.append(row_key)
                    continue
                known = [cell_width(cell) for cell in measured]
            for i, w in enumerate(known):
                if w > widths[i]:
                    widths[i] = w
        for column, width in zip(columns, widths, strict=True):
            column.content_width = width
        super()._update_dimensions(rest)  # the others, then the virtual size

    def _known_widths(self, key: str | None) -> list[int] | None:
        """A row's cell widths when the table already measured them (`cell_width`)."""
        return None

    def add_line_rows(self, rows: Iterable[tuple[str | None, Sequence[Any]]]) -> None:
        """`add_row(*cells, key=key)` for each row (one line high, no label), in one
        go. Textual's `add_row` sorts the columns and checks the cursor again for every
        row, about 50 us a row: the job list's first fill at 512 nodes is 1,124 rows.
        The same data goes in, and the same checks run once at the end."""
        keys = [c.key for c in self.ordered_columns]
        locations, data, meta, new = self._row_locations, self._data, self.rows, self._new_rows
        was_empty = not meta
        index = start = len(meta)
        for key, cells in rows:
            row_key = RowKey(key)
            if row_key in locations:
                raise DuplicateKey(f"The row key {row_key!r} already exists.")
            if len(cells) > len(keys):
                raise ValueError("More values provided than there are columns.")
            locations[row_key] = index
            index += 1
            data[row_key] = dict(zip_longest(keys, cells))
            meta[row_key] = Row(row_key, 1)
            new.add(row_key)
        if index == start:
            return
        self._require_update_dimensions = True
        self.cursor_coordinate = self.cursor_coordinate
        if was_empty and meta and self.columns and self.show_cursor and self.cursor_type != "none":
            self._highlight_cursor()
        self._update_count += 1
        self.check_idle()


class GridTable(MeasuredTable):
    """DataTable with a palette painter and `show_rows`, which diffs."""

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("cursor_type", "row")
        kw.setdefault("zebra_stripes", False)
        # The cursor row keeps its cells' colours (load bars, states, modes).
        kw.setdefault("cursor_foreground_priority", "renderable")
        super().__init__(**kw)
        self._columns_now: tuple[Column, ...] = ()
        self._keys_now: list[str] = []
        self._restore_key: str | None = None
        self._widths: dict[str, list[int]] = {}  # each row's cell widths, as measured
        # Each row's cells as show_rows got them (callers hand over new lists, never
        # change one they have handed over), for tables shown whole each time. A table
        # told which rows changed reads those back from the table instead: keeping them
        # there brought on full collections at 512 nodes (grid_refresh's frame p99
        # 13 -> 27 ms CPU), and reading a few rows back costs little.
        self._given: dict[str, Sequence[Any]] = {}

    @property
    def paint(self) -> palette.Painter:
        return palette.Painter(self)

    def _known_widths(self, key: str | None) -> list[int] | None:
        return self._widths.get(key) if key is not None else None

    def set_columns(self, columns: Sequence[Column]) -> None:
        cols = tuple(columns)
        if cols == self._columns_now:
            return
        self._restore_key = self.selected_key
        self.clear(columns=True)
        self._keys_now = []
        self._widths = {}
        self._given = {}
        for c in cols:
            self.add_column(c.label, key=c.key, width=c.width)
        self._columns_now = cols

    @property
    def selected_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            row_key, _ = self.coordinate_to_cell_key(self.cursor_coordinate)
        except Exception:
            return None
        return row_key.value

    def show_rows(
        self, rows: Sequence[tuple[str, Sequence[Any]]], changed: set[str] | None = None
    ) -> None:
        """Show `rows` (key, cells) in this order. Same keys in the same order: cells
        are updated in place (only the rows in `changed`, when the caller knows which);
        otherwise the table is re-filled and the cursor follows the row it was on."""
        # Cells hold names, commands and reasons people typed: plain strings are shown
        # literally (a user named "[/x]" is text, not markup).
        keys = [k for k, _ in rows]
        cols = [c.key for c in self._columns_now]
        if keys == self._keys_now:
            # Compared with the cells as given last time, not the table's (DataTable's
            # get_row rebuilds a row's list, and every string would become a Text to
            # compare): on a big job list that was most of a refresh.
            given = self._given
            touched: set[int] = set()
            dirty: dict[str, list[tuple[str, Any]]] = {}
            for key, cells in rows:
                if changed is not None and key not in changed:
                    continue
                old = given.get(key) if changed is None else None
                if old is None:  # the table holds them as Text: compare likewise
                    old = self.get_row(key)
                    cells = [literal(c) for c in cells]
                puts = []
                for i, (ck, new, was) in enumerate(zip(cols, cells, old, strict=False)):
                    if new is not was and new != was:
                        puts.append((ck, literal(new)))
                        touched.add(i)
                if puts:
                    dirty[key] = puts
                    if changed is None:
                        given[key] = cells
                    self._widths[key] = [cell_width(literal(c)) for c in cells]
            if dirty:
                self._put_cells(dirty)
            if touched:
                self._fit_widths(touched)
            return
        self._given = dict(rows) if changed is None else {}
        rows = [(k, [literal(c) for c in cells]) for k, cells in rows]
        selected = self.selected_key or self._restore_key
        self._restore_key = None
        cursor_row = self.cursor_row
        scroll = self.scroll_y
        self.clear()
        self.add_line_rows(rows)
        self._keys_now = keys
        self._widths = {k: [cell_width(c) for c in cells] for k, cells in rows}
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False, scroll=False)
        elif keys:
            self.move_cursor(row=min(cursor_row, len(keys) - 1), animate=False, scroll=False)
        self.scroll_y = scroll
        self.scroll_to(y=scroll, animate=False, immediate=True)
        if keys:
            self.call_after_refresh(self._keep_cursor_visible)

    def _put_cells(self, dirty: dict[str, list[tuple[str, Any]]]) -> None:
        """Put new values in cells and redraw only their rows.

        `update_cell` marks the whole table stale (every cache entry carries Textual's
        update count), so one changed row, even off screen, re-renders every visible
        row. Here the new values go into the table's data, only the changed rows'
        entries leave its render caches, and only their lines are refreshed: a row off
        screen costs nothing until it is scrolled into view, where it renders from the
        data. Reaches into DataTable's internals (textual is pinned; a bump is checked
        by tests/app/test_tables.py and the snapshots)."""
        data = self._data
        for key, puts in dirty.items():
            row = data[RowKey(key)]
            for ck, value in puts:
                row[ColumnKey(ck)] = value
        stale = {RowKey(k) for k in dirty}
        cells = {(RowKey(k), ColumnKey(ck)) for k, puts in dirty.items() for ck, _ in puts}
        indexes = {self._row_locations.get(k) for k in stale}
        top = self.header_height if self.show_header else 0
        ys = {top + y for y, (key, _) in enumerate(self._y_offsets) if key in stale}
        _discard(self._row_render_cache, lambda k: k[0] in stale)
        # A row's other cells keep their drawing: on the job list a refresh changes a
        # cell or two of a row (time left, price), and drawing a cell is most of a frame.
        _discard(self._cell_render_cache, lambda k: k[0] in stale and (k[0], k[1]) in cells)
        _discard(self._row_renderable_cache, lambda k: k[1] in indexes)
        _discard(self._line_cache, lambda k: k[0] in ys)
        if len(self._y_offsets) == self.row_count:  # one line a row: index is line
            first = round(self.scroll_y)
            indexes = {
                i for i in indexes if i is not None and first <= i <= first + self.size.height
            }
        for i in indexes:
            if i is not None:
                self.refresh_row(i)  # finding a row's region walks the rows above it

    def _fit_widths(self, touched: set[int]) -> None:
        """Columns as wide as their widest cell, as `update_width=True` on every updated
        cell would leave them, without its cost: Textual re-measures a whole column
        (every row, each cell asking the OS for the terminal size) whenever an updated
        cell is narrower than the column. Widths are kept per row, so a column is
        handed to Textual to re-measure only when its widest cell really changed."""
        widths = self._widths
        for i in touched:
            spec = self._columns_now[i]
            if spec.width is not None:  # a fixed width: content does not move it
                continue
            column = self.columns.get(ColumnKey(spec.key))
            if column is None or not widths:
                continue
            widest = max(w[i] if i < len(w) else 0 for w in widths.values())
            if max(widest, cell_len(column.label.plain)) == column.content_width:
                continue
            widest_key = next(k for k, w in widths.items() if i < len(w) and w[i] == widest)
            # Textual measures it: wider, the column takes its width; narrower than the
            # column, it re-measures the column (the widest cell shrank).
            value = self.get_cell(widest_key, spec.key)
            self.update_cell(widest_key, spec.key, value, update_width=True)

    def _keep_cursor_visible(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.cursor_row, animate=False, scroll=True)


_K = TypeVar("_K")
_V = TypeVar("_V")


def _discard(cache: LRUCache[_K, _V], gone: Callable[[_K], bool]) -> None:
    """Drop a render cache's entries whose key `gone` picks (one cache, typed by its key)."""
    for k in [k for k in cache.keys() if gone(k)]:
        cache.discard(k)


def fit_last(
    columns: Sequence[Column],
    rows: Sequence[tuple[str, Sequence[Any]]],
    width: int,
    gutter: int,
    widths: Iterable[Sequence[int]] | None = None,
) -> list[Column]:
    """`columns` with the last one as wide as what the others leave of `width`.

    A long last column (a node's jobs, an event's cause) would otherwise widen the table
    past the terminal and bring up a horizontal scrollbar; fixed, it ends in an ellipsis
    instead. `gutter` keeps room for a vertical scrollbar. `widths`, each row's cell
    widths when the caller keeps them (`cell_width`), saves measuring every cell."""
    if not columns:
        return []
    n = len(columns) - 1
    need = [cell_len(c.label) for c in columns[:-1]]
    if widths is None:
        widths = [[cell_width(c) for c in cells[:n]] for _, cells in rows]
    table = list(widths)
    for i in range(n):
        widest = max((w[i] for w in table if i < len(w)), default=0)
        need[i] = max(need[i], widest)
    last = columns[-1]
    room = width - sum(need) - 2 * len(columns) - gutter  # a cell's padding: 1 each side
    return [*columns[:-1], replace(last, width=max(room, cell_len(last.label), 4))]


def cell_width(cell: Any) -> int:
    """The width a table column needs for `cell` (its widest line), as Textual
    measures it."""
    if isinstance(cell, Text):
        return max(map(cell_len, cell.plain.splitlines()), default=0)
    return cell_len(str(cell))


def literal(cell: Any) -> Any:
    """A plain string as text that is never read as markup; anything else as it is."""
    if isinstance(cell, str):
        return Text(cell)
    return cell
