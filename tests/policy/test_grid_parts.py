"""The grid's parts seen from outside: the outbox a persister drains, the snapshot dry
runs use, and the caches the grid keeps for funding and the simulator."""

from __future__ import annotations

import copy
from typing import Any

from skyops_tui.domain.model import Mode
from skyops_tui.domain.specs import JobSpec, ReservationSpec
from skyops_tui.policy.grid import Grid
from skyops_tui.policy.planner import plan
from skyops_tui.policy.quotes import dry_run
from tests.helpers import HOUR, RICH, T0, config


def busy_grid() -> Grid:
    """Two jobs running on one H100 node, one Flex job waiting, a reservation."""
    g = Grid(config("2x8xH100"), T0)
    for user in ("alice", "bob"):
        g.ensure_account(user, T0, RICH)
    g.submit(JobSpec(name="p1", user="alice", mode=Mode.PRIORITY, gpus=8, hours=2.0), T0)
    g.submit(JobSpec(name="f1", user="bob", mode=Mode.FLEX, gpus=8, bid=1.0), T0)
    for a in plan(g, T0):
        g.apply(a, T0)
    for job in list(g.jobs.values()):
        g.started(job.id, T0)
    g.submit(JobSpec(name="f2", user="bob", mode=Mode.FLEX, gpus=4, bid=1.5), T0)
    spec = ReservationSpec(
        name="r1", user="alice", gpu_type="H100", gpus=4, start=T0 + 86400, hours=4
    )
    g.reserve(spec, T0)
    return g


def fingerprint(g: Grid) -> Any:
    """Everything a dry run could change, copied."""
    return copy.deepcopy(
        (
            g.jobs,
            g.job_names,
            g.reservations,
            g.balances,
            g.nodes,
            {t: (m.price, m.price_at, m.starts, m.levels) for t, m in g.markets.items()},
            [getattr(g.index, k) for k in g.index.__slots__],
            [getattr(g.outbox, k) for k in g.outbox.__slots__],
            (g.next_job_id, g.next_res_id, g.next_seq),
        )
    )


def test_drain_hands_over_the_records_and_clears_the_dirty_marks():
    g = busy_grid()
    assert g.dirty_jobs and g.dirty_nodes and g.dirty_reservations
    events, txs, prices = g.events, g.transactions, g.prices
    assert events and txs
    assert g.drain() == (events, txs, prices)
    assert (g.events, g.transactions, g.prices) == ([], [], [])
    assert not g.dirty_jobs and not g.dirty_nodes and not g.dirty_reservations
    assert events  # the lists handed over are the caller's now, not emptied


def test_taking_the_records_alone_keeps_the_dirty_marks_for_a_later_write():
    g = busy_grid()
    dirty = set(g.dirty_jobs), set(g.dirty_nodes), set(g.dirty_reservations)
    events, _, _ = g.outbox.take_records()
    assert events and not g.events
    assert (g.dirty_jobs, g.dirty_nodes, g.dirty_reservations) == dirty


def test_a_dry_run_on_the_snapshot_changes_nothing_in_the_grid():
    g = busy_grid()
    before = fingerprint(g)
    shadow = g.snapshot()
    assert shadow.cfg is g.cfg
    shadow.submit(JobSpec(name="p2", user="alice", mode=Mode.PRIORITY, gpus=8, hours=1.0), T0 + 60)
    shadow.change_bid("f2", 2.0, T0 + 60)
    shadow.cancel_reservation("r1", T0 + 60)
    for a in plan(shadow, T0 + 60):
        shadow.apply(a, T0 + 60)
    shadow.exited(g.job_by_ref("p1").id, 0, T0 + HOUR)
    shadow.drain()
    assert "p2" in shadow.job_names and shadow.job_by_ref("p1").finished
    assert fingerprint(g) == before
    outcome = dry_run(
        g, JobSpec(name="p3", user="bob", mode=Mode.PRIORITY, gpus=8, hours=1.0), T0, None
    )
    assert outcome.preempts or outcome.starts_on or outcome.waits
    assert fingerprint(g) == before


def test_the_user_accounts_are_listed_again_when_one_opens():
    g = Grid(config(), T0)
    g.ensure_account("alice", T0, RICH)
    assert g.user_accounts() == ["user:alice"]
    g.ensure_account("bob", T0, 0)
    g.deposit("carol", 5, T0)
    assert g.user_accounts() == ["user:alice", "user:bob", "user:carol"]


def test_the_live_reservations_follow_new_and_finished_ones():
    g = busy_grid()
    assert [r.name for r in g.live_reservations()] == ["r1"]
    spec = ReservationSpec(
        name="r2", user="bob", gpu_type="H100", gpus=2, start=T0 + 2 * 86400, hours=1
    )
    g.reserve(spec, T0)
    assert [r.name for r in g.live_reservations()] == ["r1", "r2"]
    g.cancel_reservation("r1", T0)
    assert [r.name for r in g.live_reservations()] == ["r2"]
