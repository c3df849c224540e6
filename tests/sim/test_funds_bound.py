"""Funding's shortcut (policy/funding.py, `funds_may_run_low`): funds are judged ample
from the lowest balance as last counted, less everything debited since, instead of a
walk of every account twice a pass. With CHECK_LOW on, every such verdict is counted
again from the balances, at every pass of whole traces in which accounts fall from
ample to short; a verdict the count disagrees with fails."""

from __future__ import annotations

import pytest

from skyops_tui.policy import funding

from .test_simulator import CONFIG, NODE_TROUBLE, mixed_trace, run


@pytest.fixture
def checked(monkeypatch):
    """The check on, and how often the kept bound stood in for a count (`kept`), and
    how often a count found an account running low (`low`)."""
    monkeypatch.setattr(funding, "CHECK_LOW", True)
    counts = {"kept": 0, "low": 0}
    judge = funding.funds_may_run_low

    def counted(grid, horizon_h=24.0):
        before = grid.ledger.low_mark
        low = judge(grid, horizon_h)
        counts["kept"] += before is not None and grid.ledger.low_mark is before
        counts["low"] += low
        return low

    monkeypatch.setattr(funding, "funds_may_run_low", counted)
    return counts


def test_funds_kept_as_ample_are_what_a_count_of_every_account_finds(checked):
    # The whole grid for a day costs 2,880 at its top rate: accounts of 3,000 start
    # ample and fall short as they are billed (Flex, Priority, a reservation's prepay,
    # refunds and credits), and a restart reloads the balances.
    for balance, seed in ((3_000, 5), (3_200, 11), (50_000, 7)):
        cfg = {**CONFIG, "simulation": {"initial_balance": balance}}
        result = run(mixed_trace(300, seed=seed) + NODE_TROUBLE, cfg)
        assert result.summary["violations"] == []
    # The bound stood in many times, and counts found accounts both ample and short.
    assert checked["kept"] > 1000 and checked["low"] > 100, checked
