"""The order invariant (policy/invariants.py) on the stories behind the violations of
the 100k benchmark trace (jobs j0048563 and j0002967, docs/benchmarks.md): a Flex job
outbid on a lent reserved GPU resumes there because a Priority head keeps the free GPU
its outbidder counted on, or a window's owner claims the idle reserved ones. Priority
and Commit before Flex: that is not a wasted preemption to flag."""

from __future__ import annotations

from skyops_tui.domain.model import JobState, Placement
from skyops_tui.policy import actions as A
from skyops_tui.policy.invariants import check_order
from tests.helpers import T0, HandWorld, config


def outbid_then_head() -> HandWorld:
    """h100-1 is pinned; on h100-2 `b1` holds GPUs 0-1 for 1 h, an idle window holds
    GPU 2, which Flex `v` (0.92) borrows. `f2` (2 GPUs, 0.98) outbids v at 10 s, counting
    on GPU 3 beside it; Priority `h` (2 GPUs) comes at 11 s: it can start only as b1
    ends, on h100-2, and keeps GPU 3 for itself meanwhile."""
    w = HandWorld(config("2x4xH100", cluster={"grace_s": 5}, pricing={"min_slice_s": 0}))
    w.priority("pin", gpus=4, hours=5)
    w.priority("b1", gpus=2, hours=1)
    w.at(0)
    w.run()
    w.reserve("r", gpus=1, start=T0 + 1, hours=3)
    w.flex("x", gpus=1, bid=0.8)
    w.at(1)
    w.run()
    w.flex("v", gpus=1, bid=0.92)
    w.at(2)
    w.run()
    assert w.gpus_of("v") == {("h100-2", 2)} and w.grid.nodes["h100-2"].reserved[2] == "r"
    w.exited("x", 0)
    w.flex("f2", gpus=2, bid=0.98)
    assert [w.grid.jobs[a.job].name for a in w.at(10) if isinstance(a, A.Preempt)] == ["v"]
    w.priority("h", gpus=2, hours=1)
    w.at(11)
    w.stopped("v")
    return w


def test_a_victim_back_on_its_lent_gpu_beside_a_gpu_kept_for_priority_is_no_violation():
    w = outbid_then_head()
    acts = w.at(15)
    assert [a.placement for a in acts if isinstance(a, A.Start)] == [(Placement("h100-2", (2,)),)]
    assert w.state("f2") is JobState.QUEUED and w.state("h") is JobState.QUEUED
    assert w.grid.nodes["h100-2"].holders[3] is None  # kept for h, which Flex may not use
    assert w.violations == []


def test_the_same_resume_is_flagged_when_no_priority_job_waits():
    """Without h, f2 fits on GPUs 2-3: v resuming on GPU 2 is a wasted preemption."""
    w = outbid_then_head()
    w.do(lambda g, t: g.cancel("h", t))
    v = w.job("v")
    start = A.Start(v.id, (Placement("h100-2", (2,)),), "H100", resume=True)
    w.grid.apply(start, w.now)
    found = check_order(w.grid, [start], w.now)
    assert found == ["flex job v resumed on its GPUs while f2, which preempted it, still waits"]


def test_a_victim_back_on_its_lent_gpu_beside_gpus_a_commit_owner_claims_is_no_violation():
    """Found by the rerun of the 100k trace (job j0002967): windows r1 (1 GPU) and r2
    (3 GPUs) hold h100-2; Flex v borrows r1's GPU, w one of r2's. `f2` (3 GPUs) outbids
    v counting on r2's two idle GPUs; then r2's owner job `c` (3 GPUs) comes, reclaims
    w's GPU and claims the idle ones. v resumes on r1's GPU: Commit before Flex."""
    w = HandWorld(config("2x4xH100", cluster={"grace_s": 5}, pricing={"min_slice_s": 0}))
    w.priority("pin", gpus=4, hours=5)
    w.at(0)
    w.run()
    w.reserve("r1", gpus=1, start=T0 + 1, hours=3)
    w.reserve("r2", gpus=3, start=T0 + 1, hours=3)
    w.at(1)
    w.flex("v", gpus=1, bid=0.8)
    w.at(2)
    w.run()
    w.flex("w", gpus=1, bid=0.9)
    w.at(3)
    w.run()
    node = w.grid.nodes["h100-2"]
    assert w.gpus_of("v") == {("h100-2", 0)} and node.reserved[0] == "r1"
    w.flex("f2", gpus=3, bid=2.0)
    assert [w.grid.jobs[a.job].name for a in w.at(10) if isinstance(a, A.Preempt)] == ["v"]
    w.commit("c", "r2", gpus=3)
    assert [w.grid.jobs[a.job].name for a in w.at(11) if isinstance(a, A.Preempt)] == ["w"]
    w.stopped("v")
    acts = w.at(15)
    assert [a.placement for a in acts if isinstance(a, A.Start)] == [(Placement("h100-2", (0,)),)]
    assert w.state("f2") is JobState.QUEUED
    assert w.violations == []
