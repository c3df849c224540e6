"""The same workload and plans on the Slurm backend and on the SSH fleet's agents (local
agents over pipes) give the same outcomes and the same bills, within the timing
differences docs/slurm.md documents ("Timing differences against the fleet")."""

from __future__ import annotations

import json

from skyops_tui.clock import SystemClock
from skyops_tui.control import commands
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import JobState
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.fleet.link import LocalTransport
from skyops_tui.plan.schema import parse_plan_text
from skyops_tui.runtime import Runtime
from skyops_tui.store.db import Store
from tests.waiting import until

from ..fleet.localgrid import log_contains as fleet_log_contains
from ..fleet.localgrid import up as fleet_up
from .harness import config, console, log_contains, priority, train, up

RATE = 2.5  # per GPU-hour, the harness's H100
POLL_S = 0.2  # the harness's [backend] poll_s
BIDS = {"sweep": 1.0, "tail": 1.2}

PLAN = """
[[jobs]]
name = "prod"
user = "ana"
mode = "priority"
command = ["sleep", "3"]
gpus = 2
hours = 1

[[jobs]]
name = "sweep"
user = "kim"
mode = "flex"
command = {sweep}
gpus = 6
bid = 1.0
"""

TAIL = """
[[jobs]]
name = "tail"
user = "kim"
mode = "flex"
command = ["sleep", "2"]
gpus = 2
bid = 1.2
"""


def fleet_console(tmp, slurm) -> Runtime:
    """The harness's cluster settings, one node of 8 GPUs run by a local agent."""
    data = config(slurm, tmp, "parity", nodes=1)
    del data["backend"]
    data["nodes"] = [{"name": "n1", "fake_gpus": "8xH100-80GB", "local": True}]
    cfg = parse_config(data, "test config")
    transports = {"n1": LocalTransport("n1", str(tmp / "n1"), "8xH100-80GB")}
    ex = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, store=Store(tmp / "state.db"), user="ops")


def plan_payload(text: str) -> dict:
    plan = parse_plan_text(text, "plan.toml")
    return {"plan": plan.payload(), "source": "plan.toml"}


def shape(answer: dict) -> dict:
    """A plan answer without what differs between two consoles (job ids)."""
    items = [{k: v for k, v in i.items() if k != "id"} for i in answer.get("items", [])]
    return {**answer, "items": items}


async def workload(rt: Runtime, logs) -> dict:
    """Two Priority and two Flex jobs on one 8-GPU node, from two plans and one
    submission: the Priority `boss` preempts the Flex `sweep`, which checkpoints,
    waits and resumes; a second plan adds a Flex job while the first runs on."""
    sweep_argv = json.dumps(list(train(steps=60, step_s=0.05, every=5)))
    first = plan_payload(PLAN.format(sweep=sweep_argv))
    second = plan_payload(PLAN.format(sweep=sweep_argv) + TAIL)
    out: dict = {"plans": []}

    def apply(payload: dict, dry_run: bool) -> None:
        answer = commands.run(
            rt.engine, "apply_plan", {**payload, "dry_run": dry_run}, "ops", rt.clock.now()
        )
        out["plans"].append(shape(answer))

    apply(first, dry_run=True)
    apply(first, dry_run=False)
    jobs = {n: rt.grid.jobs[rt.grid.job_names[n]] for n in ("prod", "sweep")}
    prod, sweep = jobs["prod"], jobs["sweep"]
    await until(
        lambda: prod.state is JobState.RUNNING and sweep.state is JobState.RUNNING, "both run", 30
    )
    apply(first, dry_run=False)  # unchanged: nothing new submitted
    await logs(rt, sweep, "step 15/")
    jobs["boss"] = boss = rt.scheduler.submit(priority("boss", ("sleep", "2"), gpus=4))
    await until(lambda: sweep.state is JobState.PAUSED, "sweep preempted", 30)
    await logs(rt, sweep, "on SIGUSR1; exiting")
    await until(lambda: boss.state is JobState.SUCCEEDED, "boss done", 30)
    await until(lambda: prod.state is JobState.SUCCEEDED, "prod done", 30)
    await until(lambda: sweep.state is JobState.RUNNING and sweep.runs == 2, "resumed", 30)
    apply(second, dry_run=True)
    apply(second, dry_run=False)
    jobs["tail"] = tail = rt.grid.jobs[rt.grid.job_names["tail"]]
    await until(
        lambda: sweep.state is JobState.SUCCEEDED and tail.state is JobState.SUCCEEDED,
        "sweep and tail done",
        60,
    )
    await logs(rt, sweep, "resumed from step")
    out["jobs"] = {
        n: {
            "state": j.state.value,
            "runs": j.runs,
            "preemptions": j.preemptions,
            "gpus": j.gpus,
            "charged": j.charged,
        }
        for n, j in jobs.items()
    }
    return out


async def run_on(rt: Runtime, is_up, logs) -> dict:
    await rt.start()
    try:
        await is_up(rt)
        return await workload(rt, logs)
    finally:
        await rt.stop()
        rt.store.close()


async def test_same_workload_and_plans_same_outcomes_and_bills_on_slurm_and_fleet(
    clean_slurm, tmp_path
):
    """Each job ends the same way with the same number of runs, each plan gets the same
    answer (items, changes, counts, status), and each job's bill differs by at most
    the documented tolerance: (poll_s + 1 s) per run, in GPU-seconds at the job's
    price (Slurm's start is seen at the next poll; its end is recorded in whole
    seconds)."""
    (tmp_path / "slurm").mkdir()
    (tmp_path / "fleet").mkdir()
    on_slurm = await run_on(
        console(clean_slurm, tmp_path / "slurm", "parity", nodes=1), up, log_contains
    )
    on_fleet = await run_on(
        fleet_console(tmp_path / "fleet", clean_slurm), fleet_up, fleet_log_contains
    )
    assert on_slurm["plans"] == on_fleet["plans"]
    assert [p["status"] for p in on_slurm["plans"]] == [
        "planned",
        "applied",
        "unchanged",
        "planned",
        "applied",
    ]
    for name, s in on_slurm["jobs"].items():
        f = on_fleet["jobs"][name]
        assert {k: s[k] for k in ("state", "runs", "preemptions")} == {
            k: f[k] for k in ("state", "runs", "preemptions")
        }, name
        assert s["charged"] > 0, name
    assert on_slurm["jobs"]["sweep"]["runs"] == 2
    for name, s in on_slurm["jobs"].items():
        f = on_fleet["jobs"][name]
        price = BIDS.get(name, RATE)  # a Flex job pays min(clearing price, bid)
        tolerance = int(s["runs"] * (POLL_S + 1.0) * s["gpus"] * price * 1_000_000 / 3600)
        assert abs(s["charged"] - f["charged"]) <= tolerance, (name, s, f, tolerance)
