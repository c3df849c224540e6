"""A pass's Settle actions are billed in one go (`Grid.settle_all`, which the engine
calls for them): every posting, balance and job total must come out exactly as
`settle` makes them one job at a time, for every kind of run a pass settles (a bill
that differed by how it was reached would break 'billing never depends on when it
ran', docs/modes.md *Billing*)."""

from __future__ import annotations

from skyops_tui.domain.model import JobState
from skyops_tui.policy.grid import Grid
from tests.helpers import T0, HandWorld, config

FIELDS = ("run_acc", "run_charged", "billed_from", "charged", "refunded")


def _both(w: HandWorld, t: float) -> Grid:
    """Settle every holding job at T0 + t on two copies of the grid, one with
    `settle_all`, one job by job with `settle`; they must agree. Returns the first."""
    now = T0 + t
    together, one_by_one = w.grid.snapshot(), w.grid.snapshot()
    ids = sorted(together.holding)
    together.settle_all(ids, now)
    for jid in ids:
        one_by_one.settle(one_by_one.jobs[jid], now)
    assert [repr(x) for x in together.transactions] == [repr(x) for x in one_by_one.transactions]
    assert together.balances == one_by_one.balances
    for jid in ids:
        a, b = together.jobs[jid], one_by_one.jobs[jid]
        assert [getattr(a, f) for f in FIELDS] == [getattr(b, f) for f in FIELDS], a.name
    return together


def test_settling_a_pass_in_one_go_bills_as_settling_each_job():
    w = HandWorld(config(nodes="4x8xH100"))
    w.flex("plain", gpus=2, bid=1.0)
    w.flex("rebid", gpus=1, bid=1.2)
    w.flex("gang", nodes=1, bid=0.9)
    w.priority("booked", gpus=2, hours=1)
    w.priority("hourly", gpus=1, hourly=True)
    w.at(0)
    w.run()
    w.at(10)  # billed at 10 s: the spans below start there
    w.flex("waits", nodes=3, bid=0.95)  # waits, so the clearing price moves mid-span
    w.at(300)
    assert w.state("waits") is JobState.QUEUED and w.price() > w.grid.markets["H100"].floor
    w.do(lambda g, t: g.change_bid("rebid", 1.5, t))  # a bid changed mid-span
    grid = _both(w, 1800)
    assert len(grid.transactions) >= 5  # every run was billed something
    _both(w, 10)  # billed up to now already: nothing due
    _both(w, 4000)  # "booked" ended at 3,610 s: billed only to its end
    w.at(4000)
    _both(w, 4000)  # settled at this very instant: nothing more
    _both(w, 4001.5)  # a fraction of a second's charge
