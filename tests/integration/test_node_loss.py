"""A GPU box that drops off the network, per mode (docs/modes.md), over real local agents.

The box "goes away" by killing its agent and refusing to reconnect (the transport fails
to connect) until the node is unreachable (4 x heartbeat_timeout_s without a word); its
jobs' processes keep running, as on a box that is only cut off. Then:
Priority ends `failed (node lost)`, billed up to the last word from the node; Commit
moves to spare GPUs of the same type, or is credited for the downtime when there are
none; Flex pauses and resumes elsewhere from its checkpoint. When the box comes back,
what still runs there is stopped. A link that flaps never starts anything twice.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from skyops_agent import protocol
from skyops_tui.clock import SystemClock
from skyops_tui.demo import demo_argv
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import JobState, NodeStatus
from skyops_tui.domain.specs import JobSpec, ReservationSpec
from skyops_tui.fleet.executor import FleetExecutor, agent_id
from skyops_tui.fleet.link import LocalTransport
from skyops_tui.runtime import Runtime
from tests.fleet.localgrid import CONFIG, Box, log_contains
from tests.fleet.sshd import kill_leftover_jobs
from tests.waiting import until

HEARTBEAT_S = 1.0  # unreachable after 4 s of silence
LONG = (sys.executable, "-c", "import time; time.sleep(600)")


def grid(tmp: Path, nodes: int = 2, **cluster) -> tuple[Runtime, dict[str, Box]]:
    data = {
        **CONFIG,
        "cluster": {
            **CONFIG["cluster"],
            "heartbeat_timeout_s": HEARTBEAT_S,
            "billing_interval_s": 0.5,
            **cluster,
        },
        "nodes": [
            {"name": f"node-{c}", "fake_gpus": "4xH100-80GB", "local": True} for c in "abc"[:nodes]
        ],
    }
    cfg = parse_config(data, "test config")
    boxes = {
        n.name: Box(LocalTransport(n.name, str(tmp / n.name), n.fake_gpus)) for n in cfg.all_nodes()
    }
    ex = FleetExecutor(cfg, dict(boxes), SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, user="ops"), boxes


async def ready(rt: Runtime) -> None:
    await until(
        lambda: (
            all(link.ready for link in rt.executor.links.values())
            and all(n.status is NodeStatus.UP for n in rt.grid.nodes.values())
        ),
        "every node connected and up",
    )


def job(name: str, mode: str, argv=LONG, gpus: int = 4, **kw) -> JobSpec:
    user = {"priority": "ana", "commit": "team", "flex": "kim"}[mode]
    extra = {"priority": {"hours": 1}, "flex": {"bid": 1.0}, "commit": {}}[mode]
    return JobSpec(
        name=name,
        user=user,
        mode=mode,
        gpus=gpus,
        gpu_type="H100",
        argv=tuple(argv),
        **{**extra, **kw},
    )


async def unplug(rt: Runtime, boxes: dict[str, Box], node: str) -> float:
    """Cut the box off; return the time of the cut. Waits until the grid sees it lost."""
    boxes[node].unplugged = True
    cut = time.time()
    boxes[node].kill_agent()
    await until(
        lambda: rt.grid.nodes[node].status is NodeStatus.UNREACHABLE,
        f"{node} unreachable",
        timeout=4 * HEARTBEAT_S + 15,
    )
    return cut


async def agent_records(rt: Runtime, node: str) -> dict[str, dict]:
    link = rt.executor.links[node].link
    assert link is not None
    return {r["job_id"]: r for r in (await link.request(protocol.JOBS))["jobs"]}


def usage(rt: Runtime, job) -> list:
    return [t for t in rt.feed.transactions if t.job == job.id and "usage" in t.reason]


async def test_priority_on_a_lost_node_fails_and_is_not_billed_after_the_loss(tmp_path):
    rt, boxes = grid(tmp_path)
    await rt.start()
    try:
        await ready(rt)
        p = rt.scheduler.submit(job("deadline", "priority"))
        await until(lambda: p.state is JobState.RUNNING, "the priority job running")
        node = p.placement[0].node
        started = p.started_at
        await until(lambda: usage(rt, p), "a first usage charge")
        cut = await unplug(rt, boxes, node)
        lost_at = time.time()
        assert p.state is JobState.FAILED
        events = [e.cause for e in rt.feed.events if e.job == p.id]
        assert any("node" in c and "lost" in c for c in events), events
        rate = rt.grid.markets["H100"].rate
        upto_cut = int(4 * rate * (cut - started) / 3600)
        assert p.charged <= upto_cut + 1, (p.charged, upto_cut)
        assert all(t.at <= lost_at for t in usage(rt, p))
        charged = p.charged
        # Nothing is billed later either, and nothing of it is started anew.
        other = rt.scheduler.submit(job("after", "priority", gpus=1))
        await until(lambda: other.state is JobState.RUNNING, "another job placed")
        assert p.charged == charged and p.runs == 1

        # The box comes back: the process still running there is stopped, not adopted.
        boxes[node].unplugged = False
        await until(lambda: rt.grid.nodes[node].status is NodeStatus.UP, f"{node} back")
        aid = agent_id(p.id, 1, 0)
        await until(
            lambda: agent_records(rt, node),
            f"{node}'s agent answering",
        )

        async def stopped() -> bool:
            return (await agent_records(rt, node))[aid]["state"] == "exited"

        await until(stopped, "the orphaned priority process stopped on the returned box")
        assert p.state is JobState.FAILED and p.charged == charged
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_commit_moves_to_spare_gpus_of_the_same_type(tmp_path):
    rt, boxes = grid(tmp_path)
    await rt.start()
    try:
        await ready(rt)
        rt.scheduler.reserve(
            ReservationSpec(
                name="nightly", user="team", gpu_type="H100", gpus=2, start=time.time(), hours=1
            )
        )
        c = rt.scheduler.submit(job("train", "commit", gpus=2, reservation="nightly"))
        await until(lambda: c.state is JobState.RUNNING, "the commit job running")
        lost = c.placement[0].node
        await unplug(rt, boxes, lost)
        res = rt.grid.reservations["nightly"]
        await until(
            lambda: c.state is JobState.RUNNING and c.runs == 2,
            "the commit job running again on spare GPUs",
        )
        assert c.placement[0].node != lost
        assert all(n != lost for n, _ in res.held) and len(res.held) == 2
        assert res.missing == 0
        assert c.preemptions == 0  # moved, never preempted
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_commit_with_no_spare_gpus_is_credited_for_the_downtime(tmp_path):
    rt, boxes = grid(tmp_path)
    await rt.start()
    try:
        await ready(rt)
        res = rt.scheduler.reserve(
            ReservationSpec(
                name="nightly", user="team", gpu_type="H100", gpus=4, start=time.time(), hours=1
            )
        )
        c = rt.scheduler.submit(job("train", "commit", reservation="nightly"))
        await until(lambda: c.state is JobState.RUNNING, "the commit job running")
        lost = c.placement[0].node
        # The other box is all Priority: nothing to move to.
        p = rt.scheduler.submit(job("busy", "priority"))
        await until(lambda: p.state is JobState.RUNNING, "the other box busy")
        await unplug(rt, boxes, lost)
        await until(lambda: c.state is JobState.QUEUED, "the commit job waiting for GPUs")
        assert res.missing == 4
        unused, downtime = rt.grid.refund_preview("nightly", time.time())
        await until(
            lambda: rt.grid.refund_preview("nightly", time.time())[1] > downtime,
            "downtime credit growing while the GPUs are gone",
        )
        # Back: the job restarts on its own GPUs, and cancelling credits the downtime.
        boxes[lost].unplugged = False
        await until(lambda: c.state is JobState.RUNNING and c.runs == 2, "the job back")
        before = rt.grid.balance("team")
        rt.scheduler.cancel_reservation("nightly")
        credits = [
            t for t in rt.feed.transactions if t.reservation == "nightly" and "downtime" in t.reason
        ]
        assert credits and sum(a for acct, a in credits[-1].entries if acct == "user:team") > 0
        assert rt.grid.balance("team") > before
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_flex_on_a_lost_node_pauses_and_resumes_elsewhere_from_its_checkpoint(tmp_path):
    shared = tmp_path / "shared"
    rt, boxes = grid(tmp_path, shared_checkpoint_path=str(shared))
    await rt.start()
    try:
        await ready(rt)
        f = rt.scheduler.submit(job("sweep", "flex", argv=(*demo_argv(100_000, 0.05)[:-1], "5")))
        await until(lambda: f.state is JobState.RUNNING, "the flex job running")
        lost = f.placement[0].node
        await log_contains(rt, f, "checkpoint saved at step 10")
        await unplug(rt, boxes, lost)
        assert f.preemptions == 1
        await until(
            lambda: f.state is JobState.RUNNING and f.runs == 2, "the flex job resumed elsewhere"
        )
        assert f.placement[0].node != lost
        text = await log_contains(rt, f, "resumed from step")
        step = int(text.split("resumed from step")[1].split()[0].strip(".,:"))
        assert step >= 10
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_a_flapping_link_never_starts_a_job_twice(tmp_path):
    rt, boxes = grid(tmp_path, nodes=1)
    await rt.start()
    try:
        await ready(rt)
        box = boxes["node-a"]
        link = rt.executor.links["node-a"]
        first = rt.scheduler.submit(job("steady", "priority", gpus=1))
        await until(lambda: first.state is JobState.RUNNING, "the first job running")
        jobs = [first]
        for k in range(5):
            connects = box.connects
            box.kill_agent()
            # Submitted while the link is down or coming back: started once, by whichever
            # of the dispatch and the reconcile gets there.
            jobs.append(rt.scheduler.submit(job(f"flap{k}", "flex", gpus=1, bid=2.0)))
            await until(lambda c=connects: box.connects > c and link.ready, "reconnected")
        await until(
            lambda: all(j.state is JobState.RUNNING for j in jobs[:4]),
            "every job placed running through the flaps",
        )
        assert rt.grid.nodes["node-a"].status is not NodeStatus.UNREACHABLE
        records = await agent_records(rt, "node-a")
        for j in jobs:
            mine = [r for r in records.values() if r["job_id"].startswith(f"j{j.id}-")]
            assert j.runs <= 1 and len(mine) <= 1, (j.name, j.runs, mine)
            if j.state is JobState.RUNNING:
                assert [r["state"] for r in mine] == ["running"], (j.name, mine)
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


NOTES_SIGNALS = """
import os, signal, sys, time
def note(sig, _):
    with open(sys.argv[1], "a") as f:
        f.write(os.environ["SKYOPS_JOB_ID"] + " " + signal.Signals(sig).name + "\\n")
    if sig == signal.SIGTERM:
        sys.exit(0)
signal.signal(signal.SIGUSR1, note)
signal.signal(signal.SIGTERM, note)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


async def test_a_flex_run_left_on_a_box_that_comes_back_gets_its_checkpoint_signal(tmp_path):
    marker = tmp_path / "signals.txt"
    rt, boxes = grid(tmp_path)
    await rt.start()
    try:
        await ready(rt)
        f = rt.scheduler.submit(
            job("sweep", "flex", argv=(sys.executable, "-c", NOTES_SIGNALS, str(marker)))
        )
        await until(lambda: f.state is JobState.RUNNING, "the flex job running")
        lost = f.placement[0].node
        await log_contains(rt, f, "ready")
        await unplug(rt, boxes, lost)
        await until(
            lambda: f.state is JobState.RUNNING and f.runs == 2, "the flex job resumed elsewhere"
        )
        assert f.placement[0].node != lost
        boxes[lost].unplugged = False
        orphan = agent_id(f.id, 1, 0)

        def signals(aid: str) -> list[str]:
            lines = marker.read_text().splitlines() if marker.exists() else []
            return [line.split()[1] for line in lines if line.split()[0] == aid]

        await until(lambda: "SIGTERM" in signals(orphan), "the orphaned run terminated", timeout=30)
        # Checkpoint signal, grace (2 s), then SIGTERM: as a preemption, not a kill.
        assert signals(orphan) == ["SIGUSR1", "SIGTERM"]
        assert signals(agent_id(f.id, 2, 0)) == []
        assert f.state is JobState.RUNNING and f.runs == 2

        async def exited() -> bool:
            return (await agent_records(rt, lost))[orphan]["state"] == "exited"

        await until(exited, "the orphaned run's record closed on the returned box")
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
