"""Two state databases driving the same box over OpenSSH's sshd, and a restored copy of
one: each grid's agent records are scoped by its grid id (and each job's submission
tag), so no grid stops or adopts a job it did not start (docs/security.md)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from skyops_agent import protocol
from skyops_tui.cli.nodes import check_nodes
from skyops_tui.clock import SystemClock
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import Job, JobState
from skyops_tui.domain.specs import JobSpec
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.runtime import Runtime
from skyops_tui.store.db import Store
from tests.waiting import until

from .sshd import Box, kill_leftover_jobs

SLEEP = ("/bin/sleep", "300")


def ignore(msg: dict) -> None:
    pass


def console(box: Box, db: Path) -> Runtime:
    node = box.node("box-a", fake_gpus="4xH100-80GB")
    cfg = parse_config(
        {
            "cluster": {"tick_s": 0.2, "stop_grace_s": 1, "unix_users": {"*": box.user}},
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [node.model_dump(exclude_none=True)],
            "accounts": {"default_balance": 5000, "operators": ["ops"]},
        },
        "two grids test config",
    )
    transports = {"box-a": box.transport(cfg.all_nodes()[0])}
    ex = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, store=Store(db), user="ops")


async def up(rt: Runtime) -> None:
    await rt.start()
    # A restored copy holds its original's lease: it leads once that has run out.
    await until(lambda: rt.executor.links.get("box-a"), "this console leading", timeout=60)
    link = rt.executor.links["box-a"]
    await until(lambda: link.status.value == "up", f"box-a up ({link.error})")


async def run(rt: Runtime, name: str) -> Job:
    job = rt.scheduler.submit(
        JobSpec(name=name, user="ana", mode="priority", gpus=1, gpu_type="H100", hours=1,
                argv=SLEEP)
    )  # fmt: skip
    await until(lambda: job.state is JobState.RUNNING, f"{name} running ({job.state})")
    return job


async def records(box: Box) -> dict[str, dict]:
    link = await box.transport().connect(ignore)
    try:
        jobs = (await link.request(protocol.JOBS))["jobs"]
    finally:
        await link.close()
    return {j["job_id"]: j for j in jobs}


async def test_two_grids_and_a_restored_copy_leave_each_others_jobs_alone(openssh_box, tmp_path):
    box = openssh_box
    a = console(box, tmp_path / "a.db")
    b = c = None
    try:
        await up(a)
        a1 = await run(a, "a1")
        # A backup taken now knows a1 only.
        with sqlite3.connect(tmp_path / "a.db") as src, sqlite3.connect(tmp_path / "c.db") as dst:
            src.backup(dst)
        a2 = await run(a, "a2")
        a1_id, a2_id = a.executor.aid(a1, 1, 0), a.executor.aid(a2, 1, 0)
        a_grid = a.executor.grid_id

        b = console(box, tmp_path / "b.db")
        await up(b)
        assert b.executor.grid_id != a_grid
        b1 = await run(b, "b1")  # numbered 1 in its grid too
        assert b1.id == a1.id and b.executor.aid(b1, 1, 0) != a1_id
        on_box = await records(box)
        assert {on_box[i]["state"] for i in (a1_id, a2_id)} == {"running"}, on_box
        assert b.executor.other_grids["box-a"] == [a_grid]
        b1_id = b.executor.aid(b1, 1, 0)
        checked = await check_nodes(
            a.cfg, box.known_hosts(), box.ssh_config, timeout_s=20, grid_id=a_grid
        )
        assert checked[0].other_grids == [b.executor.grid_id]
        assert any("another grid also uses this box" in n for n in checked[0].notes)
        for rt in (a, b):  # both consoles go; their jobs run on under their shims
            await rt.stop()
            rt.store.close()
        a = b = None

        c = console(box, tmp_path / "c.db")
        await up(c)
        assert c.executor.grid_id == a_grid
        c1 = c.grid.jobs[a1.id]
        await until(lambda: c1.state is JobState.RUNNING, "the restored copy keeps a1 running")
        c2 = await run(c, "c2")  # the number a2 had: a job of its own, not a2
        assert c2.id == a2.id and c.executor.aid(c2, 1, 0) != a2_id
        on_box = await records(box)
        states = {i: on_box[i]["state"] for i in (a1_id, a2_id, b1_id)}
        assert set(states.values()) == {"running"}, states
        assert on_box[c.executor.aid(c2, 1, 0)]["state"] == "running"
    finally:
        for rt in (a, b, c):
            if rt is not None:
                await rt.stop()
                rt.store.close()
        kill_leftover_jobs(box.files)
