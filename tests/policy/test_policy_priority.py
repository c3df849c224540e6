"""Priority mode (docs/modes.md, Priority): exclusive GPUs now, at the standard rate."""

from __future__ import annotations

import pytest

from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState, NodeStatus
from skyops_tui.policy import actions as A
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

RATE = micro(2.5)  # H100 standard rate per GPU-hour


def test_priority_job_holds_its_gpus_exclusively():
    w = HandWorld()
    w.priority("p", gpus=4)
    w.at(0)
    w.run()
    w.flex("big", gpus=8, bid=2.5)
    w.flex("small", gpus=4, bid=0.8)
    for t in (10, 400, 1800):
        w.at(t)
        w.run()
        assert w.state("p") is JobState.RUNNING
        assert w.state("big") is JobState.QUEUED  # would need the priority job's GPUs
    assert w.state("small") is JobState.RUNNING
    assert w.gpus_of("p").isdisjoint(w.gpus_of("small"))
    assert not w.acted(A.Preempt, "p") and not w.acted(A.Stop, "p")
    assert w.violations == []


def test_priority_fixed_hours_books_start_plus_hours():
    w = HandWorld()
    w.priority("p", gpus=2, hours=3)
    w.at(5)
    w.run()
    assert w.job("p").end_at == T0 + 5 + 3 * HOUR


def test_priority_hourly_is_renewed_each_hour_until_stopped():
    w = World()
    w.priority("p", gpus=1, hourly=True, runtime=10 * HOUR)
    w.run_until(T0 + 3.5 * HOUR)
    job = w.job("p")
    assert job.state is JobState.RUNNING
    assert len(w.acted(A.Renew, "p")) == 3
    assert job.end_at == job.first_started_at + 4 * HOUR
    assert not w.acted(A.Warn, "p")  # a booking that will renew is not warned about
    w.do(lambda g, t: g.cancel("p", t))
    w.advance(60)
    assert w.state("p") is JobState.CANCELLED
    assert w.violations == []


def test_priority_is_billed_per_second_at_the_standard_rate():
    w = HandWorld()
    w.priority("p", gpus=4, hours=2)
    w.at(0)
    w.run()
    w.at(1234)
    w.exited("p", 0)
    # 4 GPUs x 2.50/GPU-h x 1234 s, floored to a micro-unit
    assert w.job("p").charged == 4 * RATE * 1234 // 3600 == 3_427_777
    usage = [tx for tx in w.transactions if tx.job == w.job("p").id]
    assert sum(-a for tx in usage for acct, a in tx.entries if acct == "user:alice") == 3_427_777
    assert all(tx.balanced for tx in usage)


def test_priority_billing_is_settled_every_interval_without_drift():
    w = HandWorld()
    w.priority("p", gpus=3, hours=2)
    w.at(0)
    w.run()
    for t in range(61, 4000, 61):
        w.at(t)
    w.at(4000)
    w.exited("p", 0)
    assert w.job("p").charged == 3 * RATE * 4000 // 3600


def test_priority_billing_never_runs_past_end_at():
    w = HandWorld(config(cluster={"stop_grace_s": 30}))
    w.priority("p", gpus=4, hours=1)
    w.at(0)
    w.run()
    acts = w.at(HOUR)
    stop = [a for a in acts if isinstance(a, A.Stop)]
    assert stop and stop[0].outcome is JobState.EXPIRED
    w.at(HOUR + 29)  # the process takes its SIGTERM grace to go
    w.stopped("p")
    assert w.state("p") is JobState.EXPIRED
    assert w.job("p").charged == 4 * RATE  # exactly one hour, not a second more


def test_priority_early_exit_releases_the_gpus_and_stops_billing():
    w = HandWorld()
    w.priority("p", gpus=8, hours=4)
    w.at(0)
    w.run()
    w.at(600)
    w.exited("p", 0)
    assert w.state("p") is JobState.SUCCEEDED
    assert w.grid.nodes["h100-1"].holders == [None] * 8
    paid = w.job("p").charged
    assert paid == 8 * RATE * 600 // 3600
    w.flex("next", gpus=8, bid=1)
    w.at(700)
    assert w.state("next") is JobState.STARTING
    w.at(3 * HOUR)
    assert w.job("p").charged == paid


def test_priority_starts_at_once_on_free_gpus():
    w = HandWorld(config("2x8xH100"))
    w.priority("p", gpus=8)
    acts = w.at(0)
    assert [type(a) for a in acts if not isinstance(a, A.SetPrice)] == [A.Start]
    assert w.state("p") is JobState.STARTING


def test_priority_preempts_lowest_bid_flex_first_and_starts_when_it_stopped():
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.flex("cheap", gpus=4, bid=0.8)
    w.flex("dear", gpus=4, bid=1.2)
    w.at(0)
    w.run()
    cheap_gpus = w.gpus_of("cheap")
    w.priority("p", gpus=4)
    acts = w.at(10)
    assert [a.job for a in acts if isinstance(a, A.Preempt)] == [w.job("cheap").id]
    assert w.state("p") is JobState.QUEUED
    assert w.state("cheap") is JobState.PREEMPTING
    w.at(60)  # still in its grace: nothing more is preempted
    assert not w.acted(A.Preempt, "dear")
    w.at(130)
    w.stopped("cheap")
    assert w.state("cheap") is JobState.PAUSED
    w.at(131)
    assert w.state("p") is JobState.STARTING
    assert w.gpus_of("p") == cheap_gpus
    assert w.state("dear") is JobState.RUNNING


def test_priority_preempts_several_flex_jobs_when_one_is_not_enough():
    w = HandWorld()
    for i, bid in enumerate((0.9, 0.8, 1.5, 1.0)):
        w.flex(f"f{i}", gpus=2, bid=bid)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    acts = w.at(10)
    victims = {w.grid.jobs[a.job].name for a in acts if isinstance(a, A.Preempt)}
    assert victims == {"f1", "f0"}  # the two lowest bids


def test_priority_never_displaces_another_priority_job():
    w = HandWorld()
    w.priority("first", gpus=8, hours=2)
    w.at(0)
    w.run()
    w.priority("second", gpus=1)
    for t in (10, 600, 3600):
        w.at(t)
        assert w.state("second") is JobState.QUEUED
    assert w.state("first") is JobState.RUNNING
    assert not w.acted(A.Preempt) and not w.acted(A.Stop)


def test_priority_never_displaces_a_commit_job_or_its_window():
    w = HandWorld()
    w.reserve("r", gpus=6, start=T0, hours=4)
    w.commit("c", "r", gpus=6)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    for t in (10, 600, 3600):
        w.at(t)
        assert w.state("p") is JobState.QUEUED
    assert w.state("c") is JobState.RUNNING
    assert not w.acted(A.Preempt) and not w.acted(A.Stop)
    # p heads the queue and holds the two unreserved GPUs until the window closes (4 h):
    # a booking that ends before then delays nobody and backfills them; a longer one waits.
    w.priority("long", gpus=2, hours=4)
    w.priority("fits", gpus=2)
    w.at(3700)
    assert w.state("long") is JobState.QUEUED
    assert w.state("fits") is JobState.STARTING


def test_priority_queue_is_fifo_per_node_type_with_a_visible_position():
    w = HandWorld(config("8xH100,8xA100"))
    w.priority("running", gpus=4, gpu_type="H100")
    w.at(0)
    w.run()
    w.priority("big", gpus=8, gpu_type="H100")
    w.priority("small", gpus=2, gpu_type="H100")
    w.priority("other", gpus=2, gpu_type="A100")
    w.at(10)
    # `small` would fit on the 4 free H100s, but `big` came first and waits for them.
    assert w.state("big") is JobState.QUEUED
    assert w.state("small") is JobState.QUEUED
    assert w.state("other") is JobState.STARTING  # another node type is not blocked
    queue = [w.grid.jobs[jid].name for _, jid in w.grid.priority_queue]
    assert queue == ["big", "small"]  # position 1 and 2
    w.run()
    w.at(100)
    w.exited("running", 0)
    w.at(101)
    assert w.state("big") is JobState.STARTING
    assert [w.grid.jobs[jid].name for _, jid in w.grid.priority_queue] == ["small"]


def test_a_priority_job_that_cannot_fit_yet_is_never_dropped():
    w = World()
    w.priority("hog", gpus=8, hours=1, runtime=HOUR)
    w.priority("waiter", gpus=8, hours=1, runtime=600)
    w.run_until(T0 + 2 * HOUR)
    assert w.state("hog") is JobState.SUCCEEDED
    assert w.state("waiter") is JobState.SUCCEEDED
    assert w.job("waiter").first_started_at >= w.job("hog").ended_at


def test_priority_auto_renew_extends_when_nothing_is_due():
    w = World()
    w.priority("p", gpus=4, hours=1, auto_renew=True, renew_hours=2, runtime=2 * HOUR)
    w.run_until(T0 + 1.5 * HOUR)
    job = w.job("p")
    assert job.state is JobState.RUNNING
    assert job.end_at == job.first_started_at + 3 * HOUR
    renew = w.acted(A.Renew, "p")
    assert len(renew) == 1 and renew[0].cause == "auto-renewed"
    assert [e for e in w.events_of("p", "renewed")]


def test_priority_auto_renew_expires_when_a_commit_window_is_due():
    w = HandWorld()
    w.priority("p", gpus=8, hours=1, auto_renew=True)
    w.at(0)
    w.run()
    w.reserve("r", gpus=4, start=T0 + HOUR, hours=2)
    warn = [a for a in w.at(HOUR - 600) if isinstance(a, A.Warn)]
    assert warn and "renewal will be refused" in warn[0].note and "(r)" in warn[0].note
    acts = w.at(HOUR)
    stop = [a for a in acts if isinstance(a, A.Stop)]
    assert stop and stop[0].outcome is JobState.EXPIRED
    assert "renewal refused" in stop[0].cause and "Commit window (r)" in stop[0].cause
    w.at(HOUR + 20)
    w.stopped("p")
    assert w.state("p") is JobState.EXPIRED
    assert w.job("p").charged == 8 * RATE


def test_priority_auto_renew_expires_when_the_account_cannot_pay():
    w = HandWorld(balance=micro(15))  # the first hour costs 10
    w.priority("p", gpus=4, hours=1, auto_renew=True)
    w.at(0)
    w.run()
    acts = w.at(HOUR)
    stop = [a for a in acts if isinstance(a, A.Stop)]
    assert stop and stop[0].outcome is JobState.EXPIRED
    assert "cannot pay" in stop[0].cause
    w.at(HOUR + 5)
    w.stopped("p")
    assert w.grid.balance("alice") == micro(5)


def test_manual_extend_moves_the_end_and_is_billed():
    w = HandWorld()
    w.priority("p", gpus=1, hours=1)
    w.at(0)
    w.run()
    w.do(lambda g, t: g.extend("p", 2, t))
    assert w.job("p").end_at == T0 + 3 * HOUR
    w.at(2.5 * HOUR)
    assert w.state("p") is JobState.RUNNING
    w.exited("p", 0)
    assert w.job("p").charged == RATE * 5 // 2


def test_manual_extend_is_refused_with_the_reason():
    w = HandWorld()
    w.priority("p", gpus=8, hours=1)
    w.at(0)
    w.run()
    w.reserve("r", gpus=8, start=T0 + HOUR, hours=1)
    with pytest.raises(Refused, match=r"cannot extend p: a Commit window \(r\) is due"):
        w.do(lambda g, t: g.extend("p", 1, t))
    assert w.job("p").end_at == T0 + HOUR
    w.flex("f", gpus=1)
    with pytest.raises(Refused, match="only priority bookings extend"):
        w.do(lambda g, t: g.extend("f", 1, t))


def test_manual_extend_is_refused_when_the_account_cannot_pay():
    w = HandWorld(balance=micro(3))
    w.priority("p", gpus=1, hours=1)
    w.at(0)
    w.run()
    with pytest.raises(Refused, match="cannot pay"):
        w.do(lambda g, t: g.extend("p", 1, t))


def test_priority_warns_at_ten_and_one_minute_before_expiry_once_each():
    w = World()
    w.priority("p", gpus=1, hours=1, runtime=5 * HOUR)
    w.run_until(T0 + 2 * HOUR)
    warns = w.acted(A.Warn, "p")
    assert [round(a.seconds_left) for a in warns] == [600, 60]
    causes = [e.cause for e in w.events_of("p", "warning")]
    assert causes == ["booking expires in 10 min", "booking expires in 1 min"]
    stop = w.acted(A.Stop, "p")
    assert len(stop) == 1 and stop[0].outcome is JobState.EXPIRED
    assert w.state("p") is JobState.EXPIRED


def test_priority_node_loss_fails_the_job_and_stops_charging():
    w = HandWorld(config("2x8xH100"))
    w.priority("p", gpus=8, hours=2)
    w.at(0)
    w.run()
    node = next(iter(w.gpus_of("p")))[0]
    w.at(1800)
    w.node(node, NodeStatus.UNREACHABLE, "heartbeat lost")
    job = w.job("p")
    assert job.state is JobState.FAILED
    assert w.events_of("p", "state")[-1].cause == f"failed (node {node} lost)"
    assert job.charged == 8 * RATE // 2
    w.at(3 * HOUR)
    assert w.job("p").charged == 8 * RATE // 2


def test_priority_gang_losing_one_node_is_not_charged_after_the_loss():
    w = HandWorld(config("2x8xH100"))
    w.submit("p", "priority", nodes=2, hours=2)
    w.at(0)
    w.run()
    w.at(600)
    w.node("h100-1", NodeStatus.UNREACHABLE)
    w.at(700)  # the healthy half takes a while to stop
    w.stopped("p")
    job = w.job("p")
    assert job.state is JobState.FAILED
    assert job.charged == 16 * RATE * 600 // 3600
    assert any("node h100-1 lost" in c for c in w.causes("p"))


def test_auto_renew_counts_windows_already_open_when_another_is_due():
    w = HandWorld(config("2x8xH100"))
    w.reserve("open", gpus=8, start=T0, hours=4)  # holds one node all along
    w.priority("p", gpus=8, hours=1, auto_renew=True)
    w.at(0)
    w.run()
    w.reserve("due", gpus=8, start=T0 + HOUR, hours=1)  # needs p's node at its end
    acts = w.at(HOUR)
    stop = [a for a in acts if isinstance(a, A.Stop)]
    assert stop and "Commit window (due)" in stop[0].cause
    assert not [a for a in acts if isinstance(a, A.Renew)]


def test_priority_is_not_placed_on_gpus_a_commit_window_needs_before_it_ends():
    w = HandWorld()
    w.reserve("r", gpus=6, start=T0 + HOUR, hours=2)
    w.priority("long", gpus=4, hours=2)  # would overlap the window: only 2 GPUs left
    w.at(0)
    assert w.state("long") is JobState.QUEUED
    w.do(lambda g, t: g.cancel("long", t))
    w.priority("brief", gpus=4, hours=0.5)  # ends before the window opens
    w.at(1)
    assert w.state("brief") is JobState.STARTING
    w.run()
    w.priority("two", gpus=2, hours=2)  # fits next to the window
    w.at(2)
    assert w.state("two") is JobState.STARTING


def test_two_priority_jobs_in_one_pass_do_not_crowd_out_a_commit_window():
    w = HandWorld()
    w.reserve("r", gpus=6, start=T0 + 1800, hours=2)
    w.priority("a", gpus=2, hours=1)
    w.priority("b", gpus=2, hours=1)
    w.at(0)
    assert w.state("a") is JobState.STARTING
    assert w.state("b") is JobState.QUEUED  # 2 + 2 + 6 would not fit on 8 GPUs


def test_an_auto_renew_booking_is_warned_that_it_will_renew():
    w = World()
    w.priority("p", gpus=4, hours=3, auto_renew=True, renew_hours=2, runtime=10 * HOUR)
    w.run_until(T0 + 3 * HOUR + 60)
    assert [e.cause for e in w.events_of("p", "warning")] == [
        "booking expires in 10 min; it will be renewed for 2 h",
        "booking expires in 1 min; it will be renewed for 2 h",
    ]
    assert w.state("p") is JobState.RUNNING
    assert w.job("p").end_at == w.job("p").first_started_at + 5 * HOUR


def test_a_leader_still_hearing_from_its_nodes_preempts_no_flex_job_for_priority():
    # Until grid.preempt_from, a node not heard from yet may have the free GPUs.
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.grid.preempt_from = T0 + 30
    w.flex("f", gpus=6, bid=0.8)
    w.at(0)
    w.run()
    w.priority("small", gpus=2)
    w.priority("p", gpus=4)
    w.at(10)
    assert w.state("small") is JobState.STARTING  # free GPUs need no waiting
    assert w.state("p") is JobState.QUEUED
    assert w.state("f") is JobState.RUNNING and not w.acted(A.Preempt)
    acts = w.at(30)
    assert [a.job for a in acts if isinstance(a, A.Preempt)] == [w.job("f").id]


def test_extend_is_refused_when_it_would_split_a_window_across_nodes():
    """Counting GPUs, 8 - 2 - 2 leaves the 4 a window needs; but they would be 2 + 2 on
    two nodes, where the owner's 4-GPU job never fits: the extension is refused, as is
    auto-renewal. Without it the window has p's node whole."""
    w = HandWorld(config("2x4xH100"))
    w.priority("p", gpus=2, hours=1, auto_renew=True)
    w.priority("x", gpus=2, hours=0.25)
    w.priority("q", gpus=2, hours=3)
    w.at(0)
    w.run()
    assert w.job("p").placement[0].node != w.job("q").placement[0].node
    w.at(600)
    w.exited("x", 0)
    w.reserve("r", gpus=4, start=T0 + 1.5 * HOUR, hours=1)
    with pytest.raises(Refused, match=r"cannot extend p: a Commit window \(r\) is due"):
        w.do(lambda g, t: g.extend("p", 1, t))
    w.do(lambda g, t: g.extend("q", 1, t))  # q's node is not the one r needs
    acts = w.at(HOUR)
    stop = [a for a in acts if isinstance(a, A.Stop)]
    assert stop and "Commit window (r)" in stop[0].cause
    w.stopped("p")
    w.at(1.5 * HOUR)
    held = w.grid.reservations["r"].held
    assert len(held) == 4 and len({n for n, _ in held}) == 1
