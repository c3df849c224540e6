"""A gang (`nodes = N`) Priority job that preempted Flex jobs claims both the whole
nodes being freed and the whole nodes free already, so the preemption it waits on is
never called off under it (docs/modes.md, *Queue, backfill and claims*)."""

from __future__ import annotations

from tests.helpers import World, config


def test_a_gang_waiting_on_its_victim_beside_a_free_node_keeps_its_claim() -> None:
    """2 nodes x 4 H100, each held by a Flex job that takes 60 s to save and go after its
    checkpoint signal. The gang `boss` (2 whole nodes) preempts both at 10 s; `quick`
    ends on its own at 15 s, so its node is free while `slow` is still in its grace.
    boss must wait for slow, one preemption, no call-off, then start on both nodes. It
    used to call slow's preemption off (the free node was not counted as the gang's)
    and make it again every pass."""
    w = World(config("2x4xH100", cluster={"grace_s": 120}), stop_delay=60)
    w.flex("quick", gpus=4, bid=1.0, runtime=15)
    w.flex("slow", gpus=4, bid=1.0, runtime=10_000)
    w.advance(10)
    w.priority("boss", gpus=None, nodes=2, hours=1, runtime=600)
    w.advance(30)
    assert not any("called off" in c for c in w.causes("slow")), w.causes("slow")
    w.advance(60)
    assert w.job("slow").preemptions == 1, w.causes("slow")
    assert w.states("boss")[-1] in ("starting", "running"), w.causes("boss")
    assert len(w.job("boss").placement) == 2
    assert w.violations == []
