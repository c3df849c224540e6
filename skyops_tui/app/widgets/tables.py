"""A DataTable that knows the console's palette and can be re-filled every second
without losing the cursor, the scroll position or the sort."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import DataTable

from .. import palette


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int | None = None
    justify: str = "left"


class GridTable(DataTable):
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

    @property
    def paint(self) -> palette.Painter:
        return palette.Painter(self)

    def set_columns(self, columns: Sequence[Column]) -> None:
        cols = tuple(columns)
        if cols == self._columns_now:
            return
        self._restore_key = self.selected_key
        self.clear(columns=True)
        self._keys_now = []
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
        rows = [(k, [literal(c) for c in cells]) for k, cells in rows]
        keys = [k for k, _ in rows]
        cols = [c.key for c in self._columns_now]
        if keys == self._keys_now:
            for key, cells in rows:
                if changed is not None and key not in changed:
                    continue
                old = self.get_row(key)
                for ck, new, was in zip(cols, cells, old, strict=False):
                    if new is not was and new != was:
                        self.update_cell(key, ck, new, update_width=True)
            return
        selected = self.selected_key or self._restore_key
        self._restore_key = None
        cursor_row = self.cursor_row
        scroll = self.scroll_y
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._keys_now = keys
        if selected in keys:
            self.move_cursor(row=keys.index(selected), animate=False, scroll=False)
        elif keys:
            self.move_cursor(row=min(cursor_row, len(keys) - 1), animate=False, scroll=False)
        self.scroll_y = scroll
        self.scroll_to(y=scroll, animate=False, immediate=True)
        if keys:
            self.call_after_refresh(self._keep_cursor_visible)

    def _keep_cursor_visible(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.cursor_row, animate=False, scroll=True)


def fit_last(
    columns: Sequence[Column], rows: Sequence[tuple[str, Sequence[Any]]], width: int, gutter: int
) -> list[Column]:
    """`columns` with the last one as wide as what the others leave of `width`.

    A long last column (a node's jobs, an event's cause) would otherwise widen the table
    past the terminal and bring up a horizontal scrollbar; fixed, it ends in an ellipsis
    instead. `gutter` keeps room for a vertical scrollbar."""
    if not columns:
        return []
    widths = [cell_len(c.label) for c in columns[:-1]]
    for _, cells in rows:
        for i, cell in enumerate(cells[: len(widths)]):
            widths[i] = max(widths[i], cell_len(getattr(cell, "plain", str(cell))))
    last = columns[-1]
    room = width - sum(widths) - 2 * len(columns) - gutter  # a cell's padding: 1 each side
    return [*columns[:-1], replace(last, width=max(room, cell_len(last.label), 4))]


def literal(cell: Any) -> Any:
    """A plain string as text that is never read as markup; anything else as it is."""
    if isinstance(cell, str):
        return Text(cell)
    return cell
