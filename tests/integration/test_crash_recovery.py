"""Crash recovery: the console killed with SIGKILL while it runs real jobs, restarted,
and nothing lost, run twice, double-booked or charged wrongly (benchmarks/crash_harness.py
at CI size), plus the bugs that harness found, each pinned by a focused test."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import pytest

from benchmarks.crash_harness import Run, run_harness
from skyops_agent import protocol
from skyops_agent.jobs import JobRunner
from skyops_tui.clock import SystemClock
from skyops_tui.demo import demo_argv
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.fleet.link import LocalTransport
from skyops_tui.runtime import Runtime
from skyops_tui.store.db import Store
from tests.fleet.localgrid import CONFIG, make_runtime, up
from tests.fleet.sshd import kill_leftover_jobs
from tests.waiting import until

ONE_NODE = {"nodes": [{"name": "node-a", "fake_gpus": "4xH100-80GB", "local": True}]}


@pytest.mark.integration
def test_console_killed_at_random_points_loses_nothing(tmp_path):
    run = Run(tmp_path / "crash", jobs=60, kills=3, seed=7, timeout_s=150)
    result = run_harness(run)
    assert result["violations"] == [], "\n".join(result["violations"][:20])
    figures = result["figures"]
    assert figures["by_state"] == {"succeeded": 60}
    assert len(result["kill_points"]) == 3
    assert all(p["console_led"] for p in result["kill_points"]), result["kill_points"]
    assert figures["console_starts"] == 4
    assert figures["ledger_sum"] == 0
    # Every kill compared the bills then stored with the per-second oracle, running jobs
    # included (a mismatch is a violation above).
    checks = figures["oracle_checked_at_kills"]
    assert len(checks) == 3 and all(c["jobs"] for c in checks), checks
    assert sum(c["holding"] for c in checks) > 0, checks


@pytest.mark.integration
def test_the_database_locked_past_the_lease_loses_nothing(tmp_path):
    """Another process holds the file exclusively (a backup tool's BEGIN EXCLUSIVE)
    for longer than the lease, twice, besides a SIGKILL: the console pauses, says so
    once per fault, takes up again, and the checks of the harness all hold."""
    run = Run(tmp_path / "locks", jobs=40, kills=1, seed=3, timeout_s=150, locks=2)
    result = run_harness(run)
    assert result["violations"] == [], "\n".join(result["violations"][:20])
    figures = result["figures"]
    assert figures["by_state"] == {"succeeded": 40} and figures["ledger_sum"] == 0
    assert [p["held_s"] >= run.lock_s for p in result["lock_points"]] == [True, True]
    # One line per fault and one at its end, never one per retry. (A lock that falls
    # while the killed console restarts only delays its start: nothing to log.)
    assert 1 <= figures["faults_logged"] <= 2
    log = (tmp_path / "locks" / "console.log").read_text()
    assert log.count("state database available again") == figures["faults_logged"]


@pytest.mark.integration
def test_a_full_disk_loses_nothing(tmp_path):
    """The state database's file system fills up twice (a tmpfs in a mount namespace of
    the harness's own, filled by a filler file, then freed) besides a SIGKILL: nothing
    a client was told was accepted is lost, nothing refused is applied, every job ends
    once, the ledger balances, and a command during a fault exits 4 with one line."""
    import json
    import subprocess

    harness = Path(__file__).resolve().parents[2] / "benchmarks" / "crash_harness.py"
    args = ["--jobs", "40", "--kills", "1", "--disk-full", "2", "--full-s", "3"]
    r = subprocess.run(
        [sys.executable, str(harness), *args, "--seed", "5", "--workdir", str(tmp_path / "full")],
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert r.stdout.startswith("{"), r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["violations"] == [], "\n".join(result["violations"][:20])
    figures = result["figures"]
    assert figures["by_state"] == {"succeeded": 40} and figures["ledger_sum"] == 0
    assert figures["disk_faults"] == 2 and figures["billed_after_exit_s"] == 0.0
    assert r.returncode == 0
    assert "Traceback" not in (tmp_path / "full" / "console.log").read_text()


async def drive(rt, predicate, what: str, timeout: float = 20.0) -> None:
    """Run scheduling passes by hand until `predicate` holds; fail saying what never did."""

    def stepped() -> bool:
        if predicate():
            return True
        rt.engine.step(time.time())
        return False

    await until(stepped, what, timeout)


async def agent_jobs(rt, node: str) -> dict[str, dict]:
    link = rt.executor.links[node].link
    reply = await link.request(protocol.JOBS)
    return {r["job_id"]: r for r in reply["jobs"]}


async def test_a_run_preempted_before_its_start_was_reported_is_not_taken_for_the_next(tmp_path):
    """Found by the crash harness: a Flex job preempted while still `starting` kept its
    run count, so its next run reused the agent id of the one before; the agent said
    "exists", the console took that for a start, and the job sat `running` (and billed)
    with no process. Runs are now numbered when the start is decided."""
    rt = make_runtime(tmp_path, ONE_NODE)
    await rt.start()
    try:
        await until(lambda: rt.executor.links["node-a"].ready, "the agent connected")
        await up(rt)
        await rt.local.stop()  # passes by hand: the preempt must come before the report
        await drive(rt, lambda: not rt.engine.pending, "the connect reports absorbed")
        flex = rt.local.submit(
            JobSpec(
                name="sweep",
                user="kim",
                mode="flex",
                gpus=4,
                gpu_type="H100",
                bid=1.0,
                argv=demo_argv(100_000, 0.05),
            )
        )
        rt.engine.step(time.time())
        assert flex.state is JobState.STARTING
        boss = rt.local.submit(
            JobSpec(
                name="boss",
                user="ana",
                mode="priority",
                gpus=4,
                gpu_type="H100",
                hours=1,
                argv=(sys.executable, "-c", "import time; time.sleep(600)"),
            )
        )
        rt.engine.step(time.time())  # no report absorbed yet: the flex job is preempted
        assert flex.state is JobState.PREEMPTING
        await drive(rt, lambda: boss.state is JobState.RUNNING, "the priority job running")
        assert flex.state is JobState.PAUSED
        rt.local.cancel("boss")
        await drive(
            rt, lambda: flex.state is JobState.RUNNING, "the flex job resumed after the boss"
        )
        assert flex.runs == 2
        records = await agent_jobs(rt, "node-a")
        current = records.get(rt.executor.aid(flex, 2, 0))
        assert current is not None, sorted(records)
        assert current["state"] == "running", current
        assert records[rt.executor.aid(flex, 1, 0)]["state"] == "exited"
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)  # the resumed run outlives the console, by design


def console(tmp) -> Runtime:
    """A console on the store and agents in `tmp`: a new one picks up where the last left."""
    cfg = parse_config({**CONFIG, **ONE_NODE}, "test config")
    transports = {
        n.name: LocalTransport(n.name, str(tmp / n.name), n.fake_gpus) for n in cfg.all_nodes()
    }
    ex = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, store=Store(tmp / "state.db"), user="ops")


async def test_a_job_that_ended_while_the_console_was_down_is_billed_until_it_ended(tmp_path):
    """Found by the crash harness: a console back from a crash billed the jobs it
    thought running through its whole outage, before their agents said they had ended
    long ago. It now bills up to the end the agent recorded."""
    first = console(tmp_path)
    await first.start()
    try:
        await until(lambda: first.executor.links["node-a"].ready, "the agent connected")
        job = first.scheduler.submit(
            JobSpec(
                name="short",
                user="ana",
                mode="priority",
                gpus=4,
                gpu_type="H100",
                hours=1,
                argv=("sleep", "0.5"),
            )
        )
        await until(lambda: job.state is JobState.RUNNING, "the job running")
        started = job.started_at
    finally:
        await first.stop()  # the console goes away; the job runs on under its shim
        first.store.close()
    runner = JobRunner(str(tmp_path / "node-a"))
    aid = first.executor.aid(job, 1, 0)

    def ended_a_while_ago():
        rec = runner.record(aid)
        return rec["state"] == "exited" and time.time() - rec["ended_at"] > 1.5 and rec

    rec = await until(ended_a_while_ago, "the job ended 1.5 s before the console is back")
    second = console(tmp_path)
    await second.start()
    try:
        again = second.grid.jobs[job.id]
        await until(lambda: again.state is JobState.SUCCEEDED, "the job seen to succeed")
        rate = second.grid.markets["H100"].rate
        exact = int(4 * rate * (rec["ended_at"] - started) / 3600)
        assert exact - 3 <= again.charged <= exact + 1, (again.charged, exact)
        outage = int(4 * rate * (again.ended_at - started) / 3600)
        assert outage - again.charged > 1000  # 1.5 s x 4 GPUs would have been ~4,000
    finally:
        await second.stop()
        second.store.close()


async def test_the_scheduler_stops_even_when_told_to_as_it_wakes():
    """Found by the node-loss tests: on Python 3.11, asyncio.wait_for swallowed a cancel
    that arrived as the scheduler woke, so `stop` (a console quitting, a leader
    demoted) waited forever."""
    from skyops_tui.demo import sim_runtime

    rt = sim_runtime(seeded=False)
    for _ in range(20):
        rt.local.start()
        await asyncio.sleep(0)
        rt.local.poke()
        await asyncio.sleep(0)  # the wake-up is delivered; the loop has not run yet
        stopping = asyncio.ensure_future(rt.local.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, "the scheduler never stopped"


async def test_a_stop_decided_while_the_start_is_on_its_way_stops_the_process(tmp_path):
    """Found by the crash harness at full scale: a Flex job resuming on another node
    first copies its checkpoint over; preempted meanwhile, its stop reached the agent
    before its start, found nothing, and the start then left a process running that
    the console thought paused (and gave its GPUs to the next job). A stop now waits
    for the start it follows."""
    rt = make_runtime(tmp_path)
    await rt.start()
    try:
        await until(
            lambda: all(link.ready for link in rt.executor.links.values()), "agents connected"
        )
        await up(rt)
        await rt.local.stop()
        await drive(rt, lambda: not rt.engine.pending, "the connect reports absorbed")

        def spec(name, mode, **kw):
            argv = demo_argv(100_000, 0.05)
            return JobSpec(name=name, mode=mode, gpus=4, gpu_type="H100", argv=argv, **kw)

        flex = rt.local.submit(spec("sweep", "flex", user="kim", bid=1.0))
        await drive(rt, lambda: flex.state is JobState.RUNNING, "the flex job running")
        blocker = rt.local.submit(spec("blocker", "flex", user="kim", bid=2.5))
        await drive(rt, lambda: blocker.state is JobState.RUNNING, "the other node busy")
        first = flex.placement[0].node
        boss = rt.local.submit(spec("boss", "priority", user="ana", hours=1))
        await drive(rt, lambda: boss.state is JobState.RUNNING, "the flex job displaced")
        assert flex.state is JobState.PAUSED
        # Its checkpoint copy takes a while (a busy source agent, a large checkpoint).
        copying = asyncio.Event()
        copy = rt.executor._follow_checkpoint

        async def slow_copy(job: int, target: str) -> None:
            await copying.wait()
            await copy(job, target)

        rt.executor._follow_checkpoint = slow_copy
        rt.local.cancel("blocker")
        await drive(rt, lambda: flex.state is JobState.STARTING, "the flex job resuming elsewhere")
        assert flex.placement[0].node != first
        rt.local.submit(spec("boss2", "priority", user="ana", hours=1))
        rt.engine.step(time.time())  # while its checkpoint is copied: preempted again
        assert flex.state is JobState.PREEMPTING
        for _ in range(5):  # a few passes while the copy is held: room for a stop to overtake
            rt.engine.step(time.time())
            await asyncio.sleep(0.05)
        copying.set()
        await drive(rt, lambda: flex.state is JobState.PAUSED, "the flex job paused again")
        await until(lambda: not rt.executor.busy(), "the start and the stop done")
        other = "node-b" if first == "node-a" else "node-a"

        async def nothing_of_it_runs() -> bool:
            records = await agent_jobs(rt, other)
            mine = [
                r
                for r in records.values()
                if (o := rt.executor.ours(r["job_id"])) and o[1].id == flex.id
            ]
            return all(r["state"] == "exited" for r in mine)

        await until(nothing_of_it_runs, f"no process of the paused flex job left on {other}")
        records = await agent_jobs(rt, other)
        assert rt.executor.aid(flex, flex.runs, 0) not in records or (
            records[rt.executor.aid(flex, flex.runs, 0)]["state"] == "exited"
        )
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
