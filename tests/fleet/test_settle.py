"""A leader that has just started preempts nobody until every node has reported or
`settle_s` has passed (docs/fleet.md), over real local agents: a node whose box is not
reachable yet refuses the connection, as a box still booting does."""

from __future__ import annotations

import sys
import time

from skyops_tui.domain.model import JobState, NodeStatus
from skyops_tui.domain.specs import JobSpec
from tests.waiting import until

from .localgrid import CONFIG, make_grid
from .sshd import kill_leftover_jobs

LONG = (sys.executable, "-c", "import time; time.sleep(600)")


def cluster(**kw) -> dict:
    # A node not heard from is declared unreachable after 4 x 10 s: after these tests.
    return {"cluster": {**CONFIG["cluster"], "heartbeat_timeout_s": 10, **kw}}


def flex(name: str) -> JobSpec:
    return JobSpec(name=name, user="kim", mode="flex", gpus=4, gpu_type="H100", bid=1.0, argv=LONG)


def priority(name: str) -> JobSpec:
    return JobSpec(
        name=name, user="ana", mode="priority", gpus=4, gpu_type="H100", hours=1, argv=LONG
    )


async def test_priority_starts_on_a_node_that_connects_late_and_preempts_nobody(tmp_path):
    rt, boxes = make_grid(tmp_path, cluster(settle_s=120))
    boxes["node-b"].unplugged = True
    await rt.start()
    try:
        await until(lambda: rt.grid.nodes["node-a"].status is NodeStatus.UP, "node-a up")
        f = rt.scheduler.submit(flex("sweep"))
        # Free GPUs need no settling: the Flex job starts on the only node heard from.
        await until(lambda: f.state is JobState.RUNNING, "the flex job running on node-a")
        p = rt.scheduler.submit(priority("deadline"))
        passes = rt.local.passes
        await until(lambda: rt.local.passes >= passes + 5, "five passes with the job waiting")
        assert f.state is JobState.RUNNING and p.state is JobState.QUEUED
        boxes["node-b"].unplugged = False
        await until(lambda: p.state is JobState.RUNNING, "the priority job running", 30)
        assert p.placement[0].node == "node-b"
        assert f.state is JobState.RUNNING and f.preemptions == 0 and f.runs == 1
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_a_node_that_never_answers_holds_preemption_back_only_for_settle_s(tmp_path):
    settle = 3.0
    rt, boxes = make_grid(tmp_path, cluster(settle_s=settle))
    boxes["node-b"].unplugged = True
    began = time.time()
    await rt.start()
    try:
        await until(lambda: rt.grid.nodes["node-a"].status is NodeStatus.UP, "node-a up")
        f = rt.scheduler.submit(flex("sweep"))
        await until(lambda: f.state is JobState.RUNNING, "the flex job running on node-a")
        p = rt.scheduler.submit(priority("deadline"))
        await until(lambda: p.state is JobState.RUNNING, "the priority job running", 30)
        assert p.placement[0].node == "node-a" and f.preemptions == 1
        preempted = [e.at for e in rt.feed.events if e.job == f.id and e.new == JobState.PREEMPTING]
        assert preempted and preempted[0] >= began + settle
        assert rt.grid.nodes["node-b"].status is not NodeStatus.UNREACHABLE
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
