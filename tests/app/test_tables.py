"""GridTable's in-place updates: what is drawn is what the table holds.

`show_rows` puts changed cells straight into DataTable's data and redraws only their
rows (no `update_cell`, which marks every visible row stale), and keeps each column as
wide as its widest cell without re-measuring the column. These check the drawn lines,
not only the data, on rows on screen and off it, so a Textual bump that changes its
caches fails here."""

from __future__ import annotations

from rich.text import Text
from textual.app import App, ComposeResult

from skyops_tui.app.widgets.tables import Column, GridTable, cell_width
from tests.app.harness import wait_for

COLUMNS = [Column("name", "Name"), Column("value", "Value")]
ROWS = 60  # more than the 12 lines shown


def rows(values: dict[int, str]) -> list[tuple[str, list]]:
    return [(f"r{i}", [Text(f"row-{i:02d}"), Text(values.get(i, "a"))]) for i in range(ROWS)]


class TableApp(App):
    CSS = "GridTable { height: 12; }"

    def compose(self) -> ComposeResult:
        yield GridTable(id="t")


def drawn(table: GridTable) -> list[str]:
    """The table's lines as rendered now (header first)."""
    return [table.render_line(y).text for y in range(table.size.height)]


def line_of(table: GridTable, name: str) -> str:
    return next(line for line in drawn(table) if name in line)


async def shown(app: TableApp, pilot) -> GridTable:  # noqa: ANN001
    """The app's table with its columns and every row shown once, as drawn."""
    table = app.query_one(GridTable)
    table.set_columns(COLUMNS)
    table.show_rows(rows({}))
    await pilot.pause()
    return table


async def test_changed_rows_are_drawn_on_screen_and_when_scrolled_into_view():
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = await shown(app, pilot)
        assert line_of(table, "row-01").split() == ["row-01", "a"]
        assert all("row-50" not in line for line in drawn(table))  # off screen

        # One row on screen and one off it change; only those are handed over.
        table.show_rows(rows({1: "b", 50: "c"}), changed={"r1", "r50"})
        await pilot.pause()
        assert line_of(table, "row-01").split() == ["row-01", "b"]
        assert line_of(table, "row-02").split() == ["row-02", "a"]
        assert [str(c) for c in table.get_row("r50")] == ["row-50", "c"]

        table.move_cursor(row=50)
        await wait_for(pilot, lambda: any("row-50" in s for s in drawn(table)), "row 50 drawn")
        assert line_of(table, "row-50").split() == ["row-50", "c"]

        # Changed while off screen after having been drawn: its old drawing is not reused.
        table.move_cursor(row=0)
        await wait_for(pilot, lambda: table.scroll_y == 0, "back at the top")
        table.show_rows(rows({1: "b", 50: "d"}), changed={"r50"})
        await pilot.pause()
        table.move_cursor(row=50)
        await wait_for(pilot, lambda: any("row-50" in s for s in drawn(table)), "row 50 again")
        assert line_of(table, "row-50").split() == ["row-50", "d"]


async def test_columns_grow_and_shrink_with_their_widest_cell():
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = await shown(app, pilot)
        value = table.columns[table.ordered_columns[1].key]
        assert value.content_width == cell_width(Text("Value"))

        table.show_rows(rows({55: "x" * 20}), changed={"r55"})  # off screen, wider
        await pilot.pause()
        assert value.content_width == 20

        table.show_rows(rows({55: "y" * 8}), changed={"r55"})  # the widest shrinks
        await pilot.pause()
        assert value.content_width == 8

        table.show_rows(rows({}), changed={"r55"})
        await pilot.pause()
        assert value.content_width == cell_width(Text("Value"))


async def test_new_rows_are_measured_without_asking_the_terminal():
    """A table filled with 1,000 rows is as wide as Textual's own measure makes it (a
    column fits its widest cell, wide characters counted twice), and filling it asks
    the console for the terminal's size not once (three system calls a cell, 150 ms
    for the job list's first visit at 512 nodes)."""
    from rich.console import Console
    from textual.render import measure

    asked = 0
    size = Console.size

    class Counting(Console):
        @property
        def size(self):  # type: ignore[override]
            nonlocal asked
            asked += 1
            return size.fget(self)

    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = app.query_one(GridTable)
        table.set_columns(COLUMNS)
        await pilot.pause()
        many = [(f"r{i}", [Text(f"row-{i:04d}"), Text("x" * (i % 17))]) for i in range(1000)]
        many[500] = ("r500", [Text("行" * 9), Text("two\nlines, the longer")])
        app.console.__class__ = Counting
        try:
            table.show_rows(many)
            await wait_for(pilot, lambda: not table._require_update_dimensions, "measured")
            await pilot.pause()
        finally:
            app.console.__class__ = Console
        assert asked == 0
        for i, key in enumerate(("name", "value")):
            want = max(measure(app.console, cells[i], 1) for _, cells in many)
            assert (
                table.columns[key].content_width
                == want
                == max(cell_width(cells[i]) for _, cells in many)
            )
        assert table.columns["name"].content_width == 18  # nine wide characters


async def test_a_changed_cell_is_drawn_again_and_its_neighbours_are_not():
    """One cell of a row on screen changes: that cell is drawn anew (and shows the new
    value); the row's other cells are drawn from what was drawn before (drawing cells
    was most of the job list's frame at 512 nodes, where a refresh changes one or two
    cells of a row: time left, price)."""
    app = TableApp()
    async with app.run_test(size=(60, 20)) as pilot:
        table = await shown(app, pilot)
        assert line_of(table, "row-03").split() == ["row-03", "a"]
        drawn_cells: list[str] = []
        console = app.console
        render_lines = console.render_lines

        def counting(*args, **kw):  # what a cell's drawing goes through (Rich)
            lines = render_lines(*args, **kw)
            drawn_cells.append("".join(s.text for s in lines[0]).strip() if lines else "")
            return lines

        console.render_lines = counting
        table.show_rows(rows({3: "b"}), changed={"r3"})
        await pilot.pause()
        assert line_of(table, "row-03").split() == ["row-03", "b"]
        del console.render_lines
        assert "b" in drawn_cells and "row-03" not in drawn_cells, drawn_cells


class TwoTables(App):
    CSS = "GridTable { height: 12; }"

    def __init__(self) -> None:
        super().__init__()
        self.highlighted: list[str] = []

    def compose(self) -> ComposeResult:
        yield GridTable(id="one")
        yield GridTable(id="bulk")

    def on_data_table_row_highlighted(self, event: GridTable.RowHighlighted) -> None:
        self.highlighted.append(event.data_table.id or "")


async def test_rows_added_in_one_go_are_the_rows_added_one_by_one():
    """`add_line_rows` (the job list's first fill, the feed tables' pages) holds and
    draws what `add_row` for each row would, highlights the first row as it does, and
    refuses a key already there."""
    import pytest
    from textual.widgets.data_table import DuplicateKey

    app = TwoTables()
    async with app.run_test(size=(60, 30)) as pilot:
        one, bulk = app.query_one("#one", GridTable), app.query_one("#bulk", GridTable)
        for table in (one, bulk):
            for c in COLUMNS:
                table.add_column(c.label, key=c.key)
        given = rows({7: "wider value"})
        given[3] = ("r3", [Text("row-03")])  # a short row: the rest is empty
        for key, cells in given:
            one.add_row(*cells, key=key)
        bulk.add_line_rows(given)
        await wait_for(pilot, lambda: app.highlighted.count("bulk") == 1, "first row lit")
        await pilot.pause()
        assert bulk.row_count == one.row_count == ROWS
        assert [bulk.get_row_at(i) for i in range(ROWS)] == [one.get_row_at(i) for i in range(ROWS)]
        assert bulk.get_row("r7") == one.get_row("r7")
        assert [c.content_width for c in bulk.ordered_columns] == [
            c.content_width for c in one.ordered_columns
        ]
        assert drawn(bulk) == drawn(one)
        assert app.highlighted.count("one") == 1
        with pytest.raises(DuplicateKey):
            bulk.add_line_rows([("r5", [Text("again")])])
