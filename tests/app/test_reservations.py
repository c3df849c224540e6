"""Reservations screen: the timeline, booking through the form with its live quote,
cancelling with the refund shown first, refusals, and snapshots."""

from __future__ import annotations

import copy
import re

import pytest
from textual.widgets import DataTable, Input, Static

from skyops_tui.app.screens.dialogs import ConfirmDialog
from skyops_tui.app.screens.reservations import (
    ReservationForm,
    ReservationsScreen,
    parse_start,
)
from skyops_tui.app.widgets.timeline import Timeline, fit
from skyops_tui.demo import advance, sim_runtime
from skyops_tui.domain.config import DEMO_CONFIG, parse_config
from skyops_tui.domain.money import fmt
from skyops_tui.domain.specs import ReservationSpec
from tests.app.harness import demo_app, run_before, toasts, wait_for


def runtime(user: str = "team", operator: bool = False):
    data = copy.deepcopy(DEMO_CONFIG)
    if operator:
        data["accounts"]["operators"] = [user]
    return sim_runtime(parse_config(data), user=user)


def app_on(rt):
    return demo_app(runtime=rt, start_view="reservations")


def table_rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_timeline_shows_windows_and_now() -> None:
    rt = runtime()
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        tl = app.screen.query_one(Timeline)
        lines = [tl.render_line(y).text for y in range(tl.size.height)]
        lane = next(line for line in lines if "nightly-a100" in line)
        # 4-hour daily windows: one block per day, every day shown.
        days = sum(1 for part in lane.split() if "█" in part or "▌" in part or "▐" in part)
        assert days >= 7, lane
        header = next(line for line in lines if line.startswith("A100"))
        assert "│" in header, "a line marks now"
        table = app.screen.query_one("#res-table", DataTable)
        row = table_rows(table)[0]
        assert row[0] == "nightly-a100" and row[1] == "team"
        assert "1/30" in row[3] and "29 left" in row[3]


def blocks(line: str) -> int:
    """How many windows a timeline lane shows: runs of block characters."""
    return len(re.findall("[█▌▐]+", line))


async def test_pan_through_all_thirty_windows() -> None:
    rt = runtime()
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        tl = app.screen.query_one(Timeline)

        def lane() -> str:
            lines = [tl.render_line(y).text for y in range(tl.size.height)]
            return next(line for line in lines if "nightly-a100" in line)

        days = fit(tl.content_size.width)[0]
        assert blocks(lane()) == days, "one window a day from today"
        seen = 0
        for _ in range(0, 30, days):
            seen += blocks(lane())
            await pilot.press(*["right_square_bracket"] * days)
            await pilot.pause()
        assert seen == 30
        await pilot.press("t")
        await wait_for(pilot, lambda: blocks(lane()) == days, "t goes back to today")


async def test_book_through_the_form_quotes_then_prepays() -> None:
    rt = runtime(user="team")
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("a")
        form = await wait_for(
            pilot,
            lambda: app.screen if isinstance(app.screen, ReservationForm) else None,
            "the booking form opens",
        )
        await pilot.press(*"nightly-b")
        await pilot.press("tab")  # owner is fixed for a user: focus goes to the type
        assert app.focused.id == "res-type"
        await pilot.press("enter", "down", "enter")  # H100 -> A100
        await pilot.press("tab", "4")  # GPUs
        await pilot.press("tab", *"2026-11-26 02:00")  # start, UTC
        await pilot.press("tab", "4")  # hours
        await pilot.press("tab", "enter", "down", "enter")  # repeat: daily
        await pilot.press("tab", *"30")  # count
        spec = ReservationSpec(
            name="nightly-b",
            user="team",
            gpu_type="A100",
            gpus=4,
            start=parse_start("2026-11-26 02:00"),
            hours=4,
            repeat="daily",
            count=30,
        )
        q = rt.grid.quote(spec)
        assert q.discount_bp == 3000
        quote = form.query_one("#res-quote", Static)
        await wait_for(
            pilot,
            lambda: f"prepay {fmt(q.price)}" in str(quote.render()),
            "the quote shows the prepayment",
        )
        text = str(quote.render())
        assert "Discount 30%" in text
        assert "480 GPU-h" in text and "30 windows" in text
        assert "Early exit refunds 50%" in text
        assert "room for every window" in text
        assert "nightly-b" not in rt.grid.reservations, "nothing is booked before confirming"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "nightly-b" in rt.grid.reservations, "booked")
        res = rt.grid.reservations["nightly-b"]
        assert res.prepaid == q.price and len(res.windows) == 30
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "form closed")
        table = app.screen.query_one("#res-table", DataTable)
        await wait_for(pilot, lambda: any(r[0] == "nightly-b" for r in table_rows(table)), "listed")
        # The prepayment is in the ledger.
        await pilot.press("L")
        await wait_for(pilot, lambda: app.screen.id == "ledger", "ledger shown")
        feed = app.screen.query_one("#feed", DataTable)
        row = await wait_for(
            pilot,
            lambda: next((r for r in table_rows(feed) if "prepay nightly-b" in r[3]), None),
            "the prepayment transaction in the ledger",
        )
        assert row[1] == fmt(q.price)
        assert row[2] == "user:team → held:nightly-b"


async def test_form_shows_capacity_refusal_and_keeps_nothing() -> None:
    rt = runtime(user="team")
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("a")
        form = await wait_for(
            pilot,
            lambda: app.screen if isinstance(app.screen, ReservationForm) else None,
            "form",
        )
        await pilot.press(*"too-big", "tab", "enter", "down", "enter", "tab", "8")
        # Starts at the next hour, inside the open 4-GPU nightly-a100 window.
        quote = form.query_one("#res-quote", Static)
        await wait_for(
            pilot, lambda: "no room on A100" in str(quote.render()), "capacity refusal shown"
        )
        before = (dict(rt.grid.balances), len(rt.feed.transactions))
        await pilot.press("ctrl+s")
        error = form.query_one("#res-error", Static)
        await wait_for(pilot, lambda: "Refused: no room" in str(error.render()), "refused")
        assert isinstance(app.screen, ReservationForm), "the form stays open"
        assert "too-big" not in rt.grid.reservations
        assert (dict(rt.grid.balances), len(rt.feed.transactions)) == before
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "closed")


async def test_bad_start_is_explained() -> None:
    rt = runtime(user="team")
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("a")
        form = await wait_for(
            pilot, lambda: app.screen if isinstance(app.screen, ReservationForm) else None, "form"
        )
        await pilot.press(*"x", "tab", "tab", "tab", *"tomorrow")
        assert app.focused.id == "res-start"
        quote = form.query_one("#res-quote", Static)
        await wait_for(pilot, lambda: "YYYY-MM-DD HH:MM" in str(quote.render()), "format explained")


async def test_cancel_shows_refund_before_confirming_then_ledger() -> None:
    rt = runtime(user="team")
    advance(rt, 3600)  # an hour into the first window
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        unused, downtime = rt.grid.refund_preview("nightly-a100", rt.clock.now())
        assert unused > 0
        await pilot.press("ctrl+d")
        dialog = await wait_for(
            pilot,
            lambda: app.screen if isinstance(app.screen, ConfirmDialog) else None,
            "the confirmation opens",
        )
        body = str(dialog.query_one(".dialog-body", Static).render())
        assert f"(× 0.5): {fmt(unused)}" in body
        assert f"Downtime credit: {fmt(downtime)}" in body
        assert f"Back to team: {fmt(unused + downtime)}" in body
        assert app.focused.id == "cancel", "Cancel is focused first"
        assert rt.grid.reservations["nightly-a100"].cancelled_at is None
        await pilot.press("tab", "enter")
        await wait_for(
            pilot,
            lambda: rt.grid.reservations["nightly-a100"].cancelled_at is not None,
            "cancelled after confirming",
        )
        res = rt.grid.reservations["nightly-a100"]
        assert res.refunded == unused and res.credited == downtime
        table = app.screen.query_one("#res-table", DataTable)
        await wait_for(
            pilot, lambda: table_rows(table)[0][4].startswith("cancelled"), "listed as cancelled"
        )
        await pilot.press("L")
        await wait_for(pilot, lambda: app.screen.id == "ledger", "ledger shown")
        feed = app.screen.query_one("#feed", DataTable)
        row = await wait_for(
            pilot,
            lambda: next(
                (r for r in table_rows(feed) if "early exit refund nightly-a100" in r[3]), None
            ),
            "the refund transaction in the ledger",
        )
        assert row[1] == fmt(unused)
        assert row[2] == "held:nightly-a100 → user:team"


async def test_cancel_escape_keeps_the_reservation() -> None:
    rt = runtime(user="team")
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await pilot.press("enter")  # on Cancel
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "closed")
        assert rt.grid.reservations["nightly-a100"].cancelled_at is None


async def test_cancel_someone_elses_is_refused_with_the_reason() -> None:
    rt = runtime(user="kim")
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("ctrl+d")
        await wait_for(
            pilot,
            lambda: any("kim may not cancel reservation nightly-a100" in m for m in toasts(app)),
            "the refusal is shown",
        )
        assert not isinstance(app.screen, ConfirmDialog)
        assert rt.grid.reservations["nightly-a100"].cancelled_at is None


async def test_operator_may_book_for_another_user() -> None:
    rt = runtime(user="ops", operator=True)
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationForm), "form")
        await pilot.press(*"lee-l40s", "tab", "ctrl+a", "ctrl+k", *"lee")
        assert app.focused.id == "res-owner"
        await pilot.press("tab", "enter", "down", "down", "enter")  # L40S
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "lee-l40s" in rt.grid.reservations, "booked")
        assert rt.grid.reservations["lee-l40s"].user == "lee"


async def test_read_only_console_books_and_cancels_nothing() -> None:
    rt = runtime(user="team")
    rt.readonly = True
    app = app_on(rt)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationsScreen), "reservations")
        await pilot.press("a", "ctrl+d")
        await wait_for(
            pilot,
            lambda: sum("Read-only" in m for m in toasts(app)) == 2,
            "both refused as read-only",
        )
        assert isinstance(app.screen, ReservationsScreen), "no form, no confirmation"
        assert rt.grid.reservations["nightly-a100"].cancelled_at is None


def busy_runtime():
    """Reservations of several owners and types, one of them cancelled."""
    rt = runtime(user="ops", operator=True)
    now = rt.clock.now()
    sched = rt.scheduler
    sched.reserve(
        ReservationSpec(
            name="render-weekly",
            user="lee",
            gpu_type="L40S",
            gpus=2,
            start=now + 14 * 3600,
            hours=10,
            repeat="weekly",
            count=4,
        )
    )
    sched.reserve(
        ReservationSpec(
            name="eval-burst", user="raj", gpu_type="H100", gpus=4, start=now + 30 * 3600, hours=6
        )
    )
    sched.reserve(
        ReservationSpec(
            name="h100-morning",
            user="ana",
            gpu_type="H100",
            gpus=8,
            start=now + 22 * 3600,
            hours=3,
            repeat="daily",
            count=5,
        )
    )
    advance(rt, 1800)
    sched.cancel_reservation("eval-burst")
    advance(rt, 600)
    return rt


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="reservations")
    assert snap_compare(app, terminal_size=size, run_before=run_before())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_form(snap_compare, size) -> None:
    app = demo_app(runtime=runtime(user="team"), start_view="reservations")

    async def fill(pilot) -> None:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ReservationForm), "form")
        await pilot.press(*"nightly-b", "tab", "enter", "down", "enter", "tab", "4")
        await pilot.press("tab", *"2026-11-26 02:00", "tab", "tab", "enter", "down", "enter")
        await pilot.press("tab", *"30")
        await wait_for(pilot, lambda: isinstance(app.focused, Input), "count focused")

    assert snap_compare(app, terminal_size=size, run_before=run_before(fill))
