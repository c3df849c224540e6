"""Ledger screen: balances (own or all), transactions with their entries, filter."""

from __future__ import annotations

import copy

import pytest
from textual.widgets import DataTable, Static

from skyops_tui.app.screens.events import WINDOW
from skyops_tui.app.screens.ledger import LedgerScreen
from skyops_tui.demo import advance, sim_runtime
from skyops_tui.domain.config import DEMO_CONFIG, parse_config
from skyops_tui.domain.money import fmt
from skyops_tui.domain.specs import ReservationSpec
from tests.app.harness import demo_app, run_before, wait_for


def runtime(user: str, operator: bool = False):
    data = copy.deepcopy(DEMO_CONFIG)
    if operator:
        data["accounts"]["operators"] = [user]
    return sim_runtime(parse_config(data), user=user)


def rows(table: DataTable) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


async def test_user_sees_own_balance_and_transactions() -> None:
    rt = runtime("kim")
    advance(rt, 300)
    app = demo_app(runtime=rt, start_view="ledger")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LedgerScreen), "ledger screen")
        balances = app.screen.query_one("#balances", DataTable)
        await wait_for(pilot, lambda: balances.row_count == 1, "one account")
        assert rows(balances)[0] == ["user:kim", "user", fmt(rt.grid.balance("kim"))]
        feed = app.screen.query_one("#feed", DataTable)
        mine = [t for t in rt.feed.transactions if any(a == "user:kim" for a, _ in t.entries)]
        await wait_for(pilot, lambda: feed.row_count == len(mine), "kim's transactions")
        shown = rows(feed)
        assert shown[0][2] == "deposits → user:kim" and shown[0][3] == "opening balance for kim"
        usage = [r for r in shown if r[3].startswith("flex usage sweep-01")]
        assert usage and usage[0][2] == "user:kim → revenue" and usage[0][4] == "#4 sweep-01"
        assert not any("user:ana" in r[2] for r in shown)


async def test_operator_sees_every_account_and_that_they_balance() -> None:
    rt = runtime("ops", operator=True)
    app = demo_app(runtime=rt, start_view="ledger")
    async with app.run_test(size=(160, 48)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LedgerScreen), "ledger screen")
        balances = app.screen.query_one("#balances", DataTable)
        await wait_for(
            pilot, lambda: balances.row_count == len(rt.grid.balances) + 1, "all accounts + sum"
        )
        shown = rows(balances)
        accounts = [r[0] for r in shown[:-1]]
        assert set(accounts) == set(rt.grid.balances)
        assert accounts.index("user:ana") < accounts.index("held:nightly-a100")
        assert accounts.index("held:nightly-a100") < accounts.index("deposits")
        assert shown[-1] == ["sum of all accounts", "balanced ✓", fmt(0)]
        feed = app.screen.query_one("#feed", DataTable)
        await wait_for(
            pilot, lambda: feed.row_count == len(rt.feed.transactions), "every transaction"
        )


async def test_filter_transactions() -> None:
    rt = runtime("ops", operator=True)
    advance(rt, 600)
    app = demo_app(runtime=rt, start_view="ledger")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LedgerScreen), "ledger screen")
        feed = app.screen.query_one("#feed", DataTable)
        total = len(rt.feed.transactions)
        await wait_for(pilot, lambda: feed.row_count == total, "every transaction")
        await pilot.press("slash", *"prepay")
        await wait_for(pilot, lambda: feed.row_count == 1, "only the prepayment")
        assert rows(feed)[0][1] == fmt(rt.grid.reservations["nightly-a100"].prepaid)
        await pilot.press("escape")
        await wait_for(pilot, lambda: feed.row_count == total, "all again")


async def test_a_long_ledger_shows_a_page_of_the_newest_and_pages_back() -> None:
    """The table holds a page (WINDOW rows) of the newest transactions, not the whole
    feed (refilling 2,000 rows on each visit made the switch to the ledger take 400 ms
    at 512 nodes). Up on its first row shows the page before; down on that page's last
    row the page after; home the oldest page; end the newest again, following."""
    rt = runtime("ops", operator=True)
    advance(rt, 3600)
    assert len(rt.feed.transactions) > 2 * WINDOW
    app = demo_app(runtime=rt, start_view="ledger")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, LedgerScreen), "ledger screen")
        screen = app.screen
        feed = screen.query_one("#feed", DataTable)
        status = screen.query_one("#feed-status", Static)

        def page(lo: int, hi: int | None) -> list[list[str]]:
            return [[str(c) for c in screen.row(t)] for t in list(rt.feed.transactions)[lo:hi]]

        await wait_for(pilot, lambda: rows(feed) == page(-WINDOW, None), "the newest page")
        assert feed.cursor_row == WINDOW - 1, "on the newest row"
        total = len(rt.feed.transactions)
        said = f"{total - WINDOW + 1:,}–{total:,} of {total:,} transactions"
        assert said in str(status.render()) and "following new ones" in str(status.render())

        feed.move_cursor(row=0)
        await pilot.press("up")
        await wait_for(pilot, lambda: rows(feed) == page(-2 * WINDOW, -WINDOW), "the page before")
        assert feed.cursor_row == WINDOW - 1, "on the row above the one it was on"
        assert "paused" in str(status.render())
        await pilot.press("down")
        await wait_for(pilot, lambda: rows(feed) == page(-WINDOW, None), "the page after")
        assert feed.cursor_row == 0
        await pilot.press("home")
        await wait_for(pilot, lambda: rows(feed) == page(0, WINDOW), "the oldest page")
        assert feed.cursor_row == 0 and rows(feed)[0][3].startswith("opening balance")

        await pilot.press("end")
        await wait_for(pilot, lambda: rows(feed) == page(-WINDOW, None), "the newest again")
        advance(rt, 120)  # more usage charges
        await wait_for(
            pilot,
            lambda: rows(feed) == page(-WINDOW, None) and feed.cursor_row == WINDOW - 1,
            "follows the new ones, a page of them",
        )


def busy_runtime():
    """An operator's view after an hour: usage charges, a booking and an early exit."""
    rt = runtime("ops", operator=True)
    now = rt.clock.now()
    rt.scheduler.reserve(
        ReservationSpec(
            name="eval-burst", user="raj", gpu_type="H100", gpus=4, start=now + 1800, hours=6
        )
    )
    advance(rt, 2400)
    rt.scheduler.cancel_reservation("eval-burst", actor="raj")
    advance(rt, 120)
    return rt


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="ledger")
    assert snap_compare(app, terminal_size=size, run_before=run_before())


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot_filtered(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="ledger")
    assert snap_compare(app, terminal_size=size, run_before=run_before("slash", *"eval-burst"))
