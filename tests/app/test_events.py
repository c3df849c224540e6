"""Events screen: the audit log, its filter and how it follows new events."""

from __future__ import annotations

import pytest
from textual.widgets import DataTable, Input, Static

from skyops_tui.app.screens.events import EventsScreen, matches, when
from skyops_tui.demo import advance, sim_runtime
from skyops_tui.domain.specs import JobSpec
from tests.app.harness import demo_app, run_before, wait_for


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def test_filter_words_must_all_match() -> None:
    row = ("09:00:00", "#4 sweep-01", "running → preempting", "outbid by tiny-sweep", "kim")
    assert matches((), row)
    assert matches(("sweep-01", "outbid"), row)
    assert matches(("KIM".lower(),), row)
    assert not matches(("sweep-01", "priority"), row)


def test_time_shows_the_date_only_for_other_days() -> None:
    now = 1_795_597_200.0  # 2026-11-25 09:00 UTC
    assert when(now - 60, now) == "08:59:00"
    assert when(now - 86400, now) == "11-24 09:00:00"


async def test_lists_every_event_with_its_change_and_cause() -> None:
    rt = sim_runtime()
    app = demo_app(runtime=rt, start_view="events")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "events screen")
        table = app.screen.query_one("#feed", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(rt.feed.events), "all events")
        shown = rows(table)
        assert ["09:00:00", "#4 sweep-01", "starting → running", "process started", "kim"] in shown
        assert any(r[1] == "nightly-a100" and r[2] == "window" for r in shown)
        assert table.cursor_row == table.row_count - 1, "starts on the newest"


async def test_filter_with_slash_and_leave_with_escape() -> None:
    rt = sim_runtime()
    app = demo_app(runtime=rt, start_view="events")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "events screen")
        table = app.screen.query_one("#feed", DataTable)
        total = len(rt.feed.events)
        await wait_for(pilot, lambda: table.row_count == total, "all events")
        await pilot.press("slash")
        filt = app.screen.query_one("#filter", Input)
        assert filt.display and app.focused is filt
        await pilot.press(*"sweep-01")
        want = sum(1 for e in rt.feed.events if e.job == 4)
        await wait_for(pilot, lambda: table.row_count == want, "only sweep-01's events")
        assert all("sweep-01" in r[1] for r in rows(table))
        status = app.screen.query_one("#feed-status", Static)
        assert "matching “sweep-01”" in str(status.render())
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is table and table.row_count == want
        await pilot.press("escape")
        await wait_for(pilot, lambda: table.row_count == total, "filter cleared")
        assert not filt.display and filt.value == ""
        assert isinstance(app.screen, EventsScreen)
        # esc straight from the filter box leaves it too.
        await pilot.press("slash", *"window", "escape")
        await wait_for(pilot, lambda: table.row_count == total and not filt.display, "left")
        assert app.focused is table


async def test_follows_new_events_unless_scrolled() -> None:
    rt = sim_runtime()
    app = demo_app(runtime=rt, start_view="events")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, EventsScreen), "events screen")
        table = app.screen.query_one("#feed", DataTable)
        await wait_for(pilot, lambda: table.row_count == len(rt.feed.events), "all events")
        spec = JobSpec(name="late-1", user="kim", mode="flex", gpus=1, gpu_type="L40S", bid=0.5)
        rt.scheduler.submit(spec)
        await wait_for(
            pilot,
            lambda: "late-1" in rows(table)[table.cursor_row][1],
            "the cursor follows to the new event",
        )
        await pilot.press("home")
        await wait_for(pilot, lambda: table.cursor_row == 0, "scrolled to the top")
        n = table.row_count
        rt.scheduler.submit(spec.model_copy(update={"name": "late-2"}))
        await wait_for(pilot, lambda: table.row_count > n, "new rows still arrive")
        assert table.cursor_row == 0, "does not jump while the user reads older events"
        status = app.screen.query_one("#feed-status", Static)
        await wait_for(pilot, lambda: "new below" in str(status.render()), "says more came")
        await pilot.press("end")
        await wait_for(pilot, lambda: table.cursor_row == table.row_count - 1, "end follows again")


def busy_runtime():
    rt = sim_runtime()
    advance(rt, 600)
    rt.scheduler.change_bid("tiny-sweep", 1.10)
    advance(rt, 900)
    rt.scheduler.submit(
        JobSpec(
            name="deadline-run",
            user="ana",
            mode="priority",
            gpus=8,
            gpu_type="H100",
            hours=1,
            runtime=3000,
        )
    )
    advance(rt, 600)
    return rt


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="events")
    assert snap_compare(app, terminal_size=size, run_before=run_before())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_filtered(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="events")
    assert snap_compare(app, terminal_size=size, run_before=run_before("slash", *"preempt"))
