"""A leader that has just started preempts nobody until its nodes have reported
(`grid.preempt_from`, set by the fleet executor from `[cluster] settle_s`): no Commit
reclaim and no outbid either. The simulator's grid is settled from the start."""

from __future__ import annotations

from skyops_tui.domain.model import JobState
from skyops_tui.policy import actions as A
from tests.helpers import T0, HandWorld, config


def test_commit_reclaims_lent_gpus_only_once_settled():
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.grid.preempt_from = T0 + 700
    w.reserve("r", gpus=4, start=T0, hours=4)
    w.at(0)
    w.flex("f", gpus=8, bid=0.8)  # borrows the idle reserved GPUs
    w.at(1)
    w.run()
    w.commit("c", "r", gpus=4)
    w.at(600)
    assert w.state("c") is JobState.QUEUED and not w.acted(A.Preempt)
    acts = w.at(700)
    pre = [a for a in acts if isinstance(a, A.Preempt)]
    assert [a.job for a in pre] == [w.job("f").id]
    assert "reclaimed for Commit job c" in pre[0].cause


def test_a_window_opening_while_settling_holds_free_gpus_and_takes_lent_ones_later():
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.grid.preempt_from = T0 + 100
    w.flex("f", gpus=6, bid=0.8)
    w.at(0)
    w.run()
    w.reserve("r", gpus=4, start=T0 + 10, hours=4)
    w.at(10)
    res = w.grid.reservations["r"]
    assert len(res.held) == 2 and res.missing == 2  # only the free ones
    assert not w.acted(A.Preempt)
    w.at(100)
    # The window now holds two of f's GPUs too, lent to f: with no owner job waiting, a
    # reclaim would give nobody anything (docs/modes.md, *During a window*).
    assert len(res.held) == 4
    assert not w.acted(A.Preempt) and w.state("f") is JobState.RUNNING


def test_a_higher_bid_displaces_nobody_while_settling():
    w = HandWorld(config(pricing={"min_slice_s": 0}))
    w.grid.preempt_from = T0 + 50
    w.flex("run", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.flex("higher", gpus=8, bid=2.0)
    w.at(10)
    assert not w.acted(A.Preempt)
    acts = w.at(50)
    assert [a.cause for a in acts if isinstance(a, A.Preempt)] == ["outbid by higher"]


def test_a_fresh_grid_is_settled():
    w = HandWorld(config(pricing={"min_slice_s": 0}))
    w.flex("run", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.flex("higher", gpus=8, bid=2.0)
    assert [a.cause for a in w.at(1) if isinstance(a, A.Preempt)] == ["outbid by higher"]
