"""The modes keep their promises under contention (issue 17): Priority before Flex, a
blocked head that neither blocks the queue nor starves, claims honoured within a pass.
Each test is one story, its expected outcome written from docs/modes.md."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyops_tui.domain.config import load_config
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState, NodeStatus
from skyops_tui.policy import actions as A
from skyops_tui.sim.simulator import EPOCH, simulate
from skyops_tui.sim.trace import parse_lines, read_trace
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_priority_first_trace_serves_priority_before_flex_without_churn() -> None:
    """examples/priority-first.jsonl: `big` (4 GPUs) heads the queue and holds the node
    where s2-s5 end soonest; w0 and w1 start on the other node as s0 and s1 end; the
    Flex jobs get nothing a Priority job could use, so nothing is preempted."""
    result = simulate(
        read_trace(EXAMPLES / "priority-first.jsonl"),
        load_config(EXAMPLES / "priority-first.toml"),
    )
    g = result.grid
    s = result.summary
    assert s["violations"] == [] and result.refused == [] and s["unfinished"] == 0

    def start(name: str) -> float:
        return g.job_by_ref(name).first_started_at - EPOCH

    assert s["preemptions"] == 0  # was 6,181
    assert start("big") == 901  # when the last of s2-s5 ends on its node
    assert (start("w0"), start("w1")) == (601, 661)  # backfilled beside big's node
    assert start("w2") == 1501  # as big ends: before any Flex job
    flex = [j for j in g.jobs.values() if j.name.startswith("f")]
    assert min(j.first_started_at - EPOCH for j in flex) == 1501
    assert all(j.preemptions == 0 and j.state is JobState.SUCCEEDED for j in flex)


def test_a_claimed_gpu_is_not_given_to_a_lower_bid_in_the_same_pass() -> None:
    """Story 4: `big` preempts s1 counting on the GPU s2 just freed; s3 (a lower bid)
    must not be placed on it, and s1 does not come back before big has run."""
    w = HandWorld(config("2xH100", types={"H100": 3.0}, cluster={"grace_s": 10}))
    w.flex("s1", gpus=1, bid=1.2)
    w.flex("s2", gpus=1, bid=1.2)
    w.at(0)
    w.run()
    w.flex("s3", gpus=1, bid=1.1)
    w.at(400)
    w.exited("s2", 0)
    w.flex("big", gpus=2, bid=3.0)
    acts = w.at(400)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.Preempt)] == ["s1"]
    assert w.state("s3") is JobState.QUEUED
    w.at(405)
    assert w.state("s3") is JobState.QUEUED  # still kept for big during s1's grace
    w.stopped("s1")
    w.at(410)
    assert w.state("big") is JobState.STARTING
    assert w.state("s1") is JobState.PAUSED
    assert len(w.acted(A.Preempt)) == 1
    assert w.violations == []


def test_a_priority_job_waiting_on_a_grace_takes_a_gpu_that_frees_elsewhere() -> None:
    w = HandWorld(config("2x4xH100", cluster={"grace_s": 120}))
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    acts = w.at(10)
    assert [w.grid.jobs[x.job].name for x in acts if isinstance(x, A.Preempt)] == ["f"]
    w.at(30)
    w.exited("a", 0)  # a's node frees while f is still in its grace
    w.at(31)
    assert w.state("p") is JobState.STARTING
    assert w.gpus_of("p") == {("h100-1", i) for i in range(4)}  # a's, not f's
    assert w.violations == []


def test_a_blocked_head_keeps_its_node_and_later_jobs_backfill() -> None:
    """The oldest Priority job that cannot fit holds the node where it can start
    soonest; a later job starts on another node, or on the head's kept GPUs if its
    booking ends before the head could start; no Flex job gets the kept GPUs."""
    w = HandWorld(config("2x4xH100"))
    w.priority("long", gpus=1, hours=5)
    w.priority("soon", gpus=2, hours=1)
    w.priority("other", gpus=3, hours=1)
    w.at(0)
    w.run()
    assert {w.job(n).placement[0].node for n in ("long", "soon")} == {"h100-1"}
    assert w.job("other").placement[0].node == "h100-2"
    w.priority("head", gpus=4, hours=1)  # h100-2 is all its own at 1 h, h100-1 at 5 h
    w.priority("small", gpus=1, hours=1)
    w.priority("quick", gpus=1, hours=0.25)
    w.flex("f", gpus=1, bid=2.5)
    w.at(10)
    assert w.state("head") is JobState.QUEUED
    assert w.gpus_of("small") <= {("h100-1", i) for i in range(4)}  # elsewhere
    assert w.gpus_of("quick") <= {("h100-2", i) for i in range(4)}  # ends before 1 h
    assert w.state("f") is JobState.QUEUED
    w.run()
    w.at(HOUR + 5)
    for n in ("soon", "other", "quick"):
        if w.state(n) is not JobState.SUCCEEDED:
            w.exited(n, 0)
    w.at(HOUR + 6)
    assert w.gpus_of("head") == {("h100-2", i) for i in range(4)}
    assert w.violations == []


def test_a_large_flex_bid_is_not_starved_by_smaller_ones() -> None:
    """A 4-GPU bid waits behind four 1-GPU jobs of the same bid; smaller jobs keep
    arriving. It holds the node: each GPU that frees is kept for it, and it starts as
    the last of the four ends, not after the stream of small jobs."""
    w = World(config("4xH100"), stop_delay=5)
    for i, rt in enumerate((100, 200, 300, 400)):
        w.flex(f"a{i}", gpus=1, bid=1.0, runtime=rt)
    w.advance(10)
    w.flex("large", gpus=4, bid=1.0, runtime=600)
    w.advance(10)
    for i in range(8):
        w.flex(f"b{i}", gpus=1, bid=1.0, runtime=1000)
    w.advance(500)
    assert w.job("large").first_started_at == T0 + 400
    assert all(w.state(f"b{i}") is JobState.QUEUED for i in range(8))
    assert w.violations == []


def test_a_flex_job_on_a_lost_node_resumes_from_its_checkpoints() -> None:
    """Story 8: simulated agents save a checkpoint every `checkpoint_every` as real ones
    do, so a job whose node is lost resumes elsewhere from its last one."""
    w = World(config("2x4xH100"), stop_delay=5)
    w.sim.attach(w.grid)
    w.flex("f", gpus=4, bid=1.0, runtime=1000, checkpoint_every=100)
    w.advance(650)
    node = w.job("f").placement[0].node
    w.node(node, NodeStatus.UNREACHABLE, "heartbeat lost")
    w.advance(1)
    assert w.state("f") is JobState.RUNNING and w.job("f").placement[0].node != node
    assert w.job("f").work_done == 600  # six checkpoints kept, 50 s lost
    w.advance(1000)
    assert w.state("f") is JobState.SUCCEEDED
    assert w.job("f").ended_at == T0 + 650 + 400  # resumed at once on the other node


def test_a_priority_job_queued_behind_a_window_starts_when_it_closes() -> None:
    """Story 7: the simulator runs a pass when a window closes, as production does
    within a tick: the job waiting for the window's GPUs starts then, not hours later."""
    cfg = config("4xH100")
    lines = [
        {"name": "r", "kind": "reservation", "user": "team", "gpu_type": "H100", "gpus": 4,
         "hours": 1, "start": 0, "submit": 0},
        {"name": "p", "mode": "priority", "user": "prod", "gpus": 4, "hours": 1,
         "runtime": 600, "submit": 10},
    ]  # fmt: skip
    result = simulate(parse_lines((json.dumps(x) for x in lines), "story-7"), cfg)
    p = result.grid.job_by_ref("p")
    assert p.state is JobState.SUCCEEDED
    assert p.first_started_at == EPOCH + 3600
    assert result.summary["violations"] == []


def test_a_flex_gang_beside_idle_reserved_gpus_starts_after_one_preemption() -> None:
    """Story 2: a gang counts idle reserved GPUs (lent to Flex) as placement does, so
    its one preemption of l1 and l2 is followed by its start, not by a livelock."""
    w = World(config("2x4xH100", types={"H100": 3.0}), stop_delay=5)
    w.reserve("r", gpus=2, start=T0 + 30, hours=3)
    w.flex("l1", gpus=2, bid=1.2, runtime=20000)
    w.flex("l2", gpus=4, bid=1.2, runtime=20000)
    w.advance(400)
    w.flex("g", nodes=2, bid=3.0, runtime=600)
    w.advance(60)
    assert w.state("g") is JobState.RUNNING
    assert len(w.acted(A.Preempt)) == 2
    w.advance(1200)
    assert len(w.acted(A.Preempt)) == 2
    assert w.violations == []


def test_an_unfunded_waiting_priority_job_does_not_block_a_renewal() -> None:
    """Story 5: a Priority job waiting only for money holds nobody up (docs/modes.md,
    *Admission*), so an hourly booking beside it is renewed and keeps its GPUs."""
    w = HandWorld(config("4xH100,1xL40S"))
    w.account("poor", micro(3))
    w.priority("h", gpus=4, hourly=True)
    w.priority("l", gpus=1, hours=10, user="poor", gpu_type="L40S")
    w.at(0)
    w.run()
    w.priority("q", gpus=1, hours=1, user="poor", gpu_type="H100")  # 2.50 of 3.00: admitted
    w.at(10)
    assert w.state("q") is JobState.QUEUED
    w.at(HOUR - 600)  # l has cost 0.75 by now: q's first hour can no longer be funded
    acts = w.at(HOUR)
    assert [a.cause for a in acts if isinstance(a, A.Renew)] == ["auto-renewed"]
    assert not w.acted(A.Stop, "h") and not w.acted(A.Warn, "h")
    assert w.state("h") is JobState.RUNNING and w.job("h").end_at == T0 + 2 * HOUR
    assert w.state("q") is JobState.QUEUED
    assert w.violations == []


def test_a_renewal_ignores_priority_jobs_that_end_before_the_window() -> None:
    """Story 6: the window (2 GPUs at 1.75 h) is due after `o` (2 GPUs) has ended, so
    renewing the hourly 2-GPU booking leaves the window its room: it is renewed."""
    w = HandWorld(config("4xH100"))
    w.priority("h", gpus=2, hourly=True)
    w.priority("o", gpus=2, hours=1.5)
    w.at(0)
    w.run()
    w.reserve("r", gpus=2, start=T0 + 1.75 * HOUR, hours=1)
    acts = w.at(HOUR)
    assert [a.cause for a in acts if isinstance(a, A.Renew)] == ["auto-renewed"]
    assert not w.acted(A.Stop, "h")
    w.do(lambda g, t: g.extend("h", 1, t))  # an extension is judged the same way
    assert w.job("h").end_at == T0 + 3 * HOUR
    w.at(1.5 * HOUR)
    w.exited("o", 0)
    w.at(1.75 * HOUR)
    assert len(w.grid.reservations["r"].held) == 2
    assert w.state("h") is JobState.RUNNING
    assert w.violations == []


def test_a_priority_claim_made_before_a_window_keeps_its_admitted_end() -> None:
    """Story 3: `p` (4 GPUs, 1 h) is admitted at 1 s, ending at 3,601 s, before the
    window due at 3,605 s, and preempts `f`. When f has stopped (11 s) p starts with
    the end it was admitted with; it is not judged again as 11 s + 1 h (which would
    overlap the window) and dropped while f resumes."""
    w = HandWorld(config("4xH100", cluster={"grace_s": 10}))
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.reserve("r", gpus=4, start=T0 + 3605, hours=1)
    w.priority("p", gpus=4, hours=1)
    acts = w.at(1)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.Preempt)] == ["f"]
    assert w.job("p").end_at == T0 + 3601
    w.at(11)
    w.stopped("f")
    w.at(11)
    assert w.state("p") is JobState.STARTING and w.state("f") is JobState.PAUSED
    w.run()
    assert w.job("p").end_at == T0 + 3601  # booked from its admission, not its start
    assert w.job("p").first_started_at == T0 + 11
    acts = w.at(3601)
    assert [a.outcome for a in acts if isinstance(a, A.Stop)] == [JobState.EXPIRED]
    w.stopped("p")
    w.at(3605)
    assert len(w.grid.reservations["r"].held) == 4
    assert w.violations == []


def test_a_booking_that_would_split_a_window_goes_elsewhere_and_the_owner_runs() -> None:
    """Story 1: window R (4 H100 at 3,600 s, 1 h) is planned on the node that can hold
    it whole (docs/modes.md, *Window placement*); p2 (2 GPUs, 2 h) would leave R only
    2 + 2 GPUs on two nodes, so it may not use that node's free GPUs: it preempts the
    Flex job on the other node instead. R opens on one node and the owner's 4-GPU job
    c runs in it (it used to be held 2 + 2, and c ended failed, 'no windows left')."""
    w = World(config("2x4xH100", cluster={"grace_s": 60}), stop_delay=5)
    w.reserve("R", gpus=4, start=T0 + HOUR, hours=1)
    w.priority("p0", gpus=4, hours=0.5, runtime=HOUR)
    w.advance(1)
    w.priority("p1", gpus=2, hours=2, runtime=3 * HOUR)
    w.advance(1)
    w.flex("f", gpus=2, bid=1.0, runtime=10 * HOUR)
    w.advance(1898)
    w.priority("p2", gpus=2, hours=2, runtime=3 * HOUR)
    w.advance(60)
    p1_node = w.job("p1").placement[0].node
    assert w.state("p2") is JobState.RUNNING
    assert w.job("p2").placement[0].node == p1_node  # beside p1, where f was
    w.advance(1540)
    w.commit("c", "R", gpus=4, runtime=HOUR)
    w.advance(200)
    held = w.grid.reservations["R"].held
    assert len({n for n, _ in held}) == 1 and len(held) == 4
    assert w.state("c") is JobState.RUNNING and w.gpus_of("c") == set(held)
    w.advance(HOUR)
    assert w.state("c") is JobState.SUCCEEDED or w.state("c") is JobState.EXPIRED
    assert w.violations == []


def test_a_window_is_not_sold_on_gpus_a_priority_claim_holds() -> None:
    """docs/modes.md, *Capacity calendar* and *Claims are honoured*: p (7 GPUs) has
    preempted f and claimed n1's GPUs, booked for 15 min. A window of 2 GPUs from now
    could then only be held 1 + 1 (n0 beside p0, n1 beside p's claim), where its
    owner's 2-GPU jobs never fit: it is refused, naming why; one of 1 GPU fits and is
    sold. p starts on n1 as soon as f has stopped. (Before: the window was accepted,
    opened on GPUs p had claimed, and p waited hours while f resumed there.)"""
    w = HandWorld(config([("n0", "2xH100"), ("n1", "8xH100")], cluster={"grace_s": 10}))
    w.priority("p0", gpus=1, hours=0.25)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    assert w.job("p0").placement[0].node == "n0" and w.job("f").placement[0].node == "n1"
    w.priority("p", gpus=7, hours=0.25)
    acts = w.at(1)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.Preempt)] == ["f"]
    with pytest.raises(Refused, match=r"could only be held as 1 \+ 1 GPUs, 2 asked"):
        w.reserve("two", gpus=2, start=w.now, hours=0.5)
    assert "two" not in w.grid.reservations
    w.reserve("one", gpus=1, start=w.now, hours=0.5)
    w.at(2)
    assert len(w.grid.reservations["one"].held) == 1
    w.at(11)
    w.stopped("f")
    w.at(11)
    assert w.state("p") is JobState.STARTING and w.state("f") is JobState.PAUSED
    assert w.job("p").placement[0].node == "n1" and len(w.gpus_of("p")) == 7
    assert w.violations == []
