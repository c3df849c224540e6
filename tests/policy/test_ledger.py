"""The double-entry ledger (Grid.post and the postings of every mode)."""

from __future__ import annotations

import pytest

from skyops_tui.domain.model import DEPOSITS, REVENUE, held_account
from skyops_tui.policy.grid import Grid
from tests.helpers import HOUR, T0, HandWorld, config, micro


def test_an_unbalanced_transaction_is_refused_and_changes_nothing():
    g = Grid(config(), T0)
    g.ensure_account("alice", T0, micro(10))
    before = dict(g.balances)
    with pytest.raises(AssertionError, match="unbalanced"):
        g.post(T0, "oops", [("user:alice", -5), (REVENUE, 4)])
    assert g.balances == before


def test_zero_entries_are_dropped_and_an_empty_transaction_is_not_posted():
    g = Grid(config(), T0)
    n = len(g.transactions)
    assert g.post(T0, "nothing", [("a", 0), ("b", 0)]) is None
    assert len(g.transactions) == n
    tx = g.post(T0, "move", [("a", 5), ("b", -5), ("c", 0)])
    assert tx is not None and tx.entries == [("a", 5), ("b", -5)]


def test_an_account_opens_with_its_configured_balance_from_deposits():
    cfg = config(accounts={"default_balance": 100, "users": [{"name": "vip", "balance": 5000}]})
    g = Grid(cfg, T0)
    g.ensure_account("vip", T0)
    g.ensure_account("joe", T0)
    assert g.balance("vip") == micro(5000) and g.balance("joe") == micro(100)
    assert g.balances[DEPOSITS] == -micro(5100)
    assert [t.reason for t in g.transactions] == [
        "opening balance for vip",
        "opening balance for joe",
    ]
    g.ensure_account("joe", T0)  # opening twice changes nothing
    assert g.balance("joe") == micro(100)


def test_a_deposit_moves_money_from_deposits_to_the_user():
    g = Grid(config(), T0)
    g.deposit("alice", micro(3), T0, "top-up")
    assert g.transactions[-1].reason == "top-up"
    assert sum(g.balances.values()) == 0


def test_usage_moves_money_from_the_user_to_revenue_and_names_the_job():
    w = HandWorld()
    w.priority("p", gpus=2, hours=1)
    w.at(0)
    w.run()
    w.at(HOUR)
    w.stopped("p")
    usage = [t for t in w.transactions if t.job == w.job("p").id]
    assert usage
    for tx in usage:
        assert {a for a, _ in tx.entries} == {"user:alice", REVENUE}
        assert tx.reason.startswith("priority usage p: ")
    assert sum(-v for t in usage for a, v in t.entries if a == "user:alice") == micro(5)


def test_a_reservation_moves_through_its_held_account_to_revenue_and_refunds():
    w = HandWorld(config("8xA100"))
    w.account("team", micro(100))
    res = w.reserve("r", gpus=4, start=T0 + HOUR, hours=2, repeat="daily", count=2, gpu_type="A100")
    assert res.prepaid == micro(25.6)  # 16 GPU-h x 1.60, under the first tier
    assert w.grid.balances[held_account("r")] == micro(25.6)
    w.at(HOUR)
    w.at(3 * HOUR)  # window 1 recognised: 12.80
    assert w.grid.balances[REVENUE] == micro(12.8)
    w.at(24 * HOUR)
    w.do(lambda g, t: g.cancel_reservation("r", t))
    # the unused window is refunded at 0.5; its other half is revenue
    assert w.grid.balance("team") == micro(100 - 25.6 + 6.4)
    assert w.grid.balances[REVENUE] == micro(12.8 + 6.4)
    assert w.grid.balances[held_account("r")] == 0
    refund = [t for t in w.transactions if t.reason.startswith("early exit refund r")]
    assert len(refund) == 1 and refund[0].reservation == "r"


def test_the_ledger_sums_to_zero_after_a_busy_hour():
    w = HandWorld(config("2x8xH100"))
    w.reserve("r", gpus=4, start=T0, hours=1)
    w.commit("c", "r", gpus=4)
    w.flex("f", gpus=8, bid=1.2)
    w.priority("p", gpus=4, hours=1)
    for t in range(0, 4000, 300):
        w.at(t)
        w.run()
    assert sum(w.grid.balances.values()) == 0
    assert all(tx.balanced for tx in w.transactions)
    assert w.violations == []
