"""The scenario suite of the SSH fleet, on a real localhost Slurm (8 nodes x 8 GRES
GPUs): Skyops decides, Slurm runs."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime

from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec, ReservationSpec
from tests.waiting import until

from .harness import JumpClock, console, flex, log_contains, priority, train, up


def slurm_state(slurm, job_id: str) -> str:
    return slurm.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", check=False).strip()


async def test_priority_preempts_flex_which_checkpoints_and_resumes(clean_slurm, tmp_path):
    """One node: a Flex job fills it; a Priority job preempts it. The Flex job gets its
    checkpoint signal and saves within grace, is requeued and held in Slurm, and when
    the Priority job ends it resumes (the same Slurm job, released) from its step."""
    rt = console(clean_slurm, tmp_path, "preempt", nodes=1)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(flex("sweep", 8, 1.0, train()))
        await until(lambda: job.state is JobState.RUNNING, "flex job running")
        sid = rt.executor.runs[job.id].slurm_id
        assert slurm_state(clean_slurm, sid) == "RUNNING"
        await log_contains(rt, job, "step 12/")
        boss = rt.scheduler.submit(priority("deadline", ("sleep", "3"), gpus=4))
        await until(lambda: job.state is JobState.PAUSED, "flex job paused", 30)
        text = await log_contains(rt, job, "on SIGUSR1; exiting")
        saved = int(re.search(r"checkpoint saved at step (\d+) on SIGUSR1", text).group(1))
        assert saved >= 12
        info = clean_slurm.run("scontrol", "show", "job", "-o", sid)
        assert "Restarts=1" in info and "JobState=PENDING" in info
        await until(lambda: boss.state is JobState.RUNNING, "priority job running", 30)
        await until(lambda: boss.state is JobState.SUCCEEDED, "priority job done", 30)
        await until(lambda: job.state is JobState.RUNNING and job.runs == 2, "resumed", 30)
        assert rt.executor.runs[job.id].slurm_id == sid  # the same Slurm job, released
        text = await log_contains(rt, job, f"resumed from step {saved}")
        assert "SKYOPS_RESUME=1" in text
    finally:
        await rt.stop()
        rt.store.close()


async def test_commit_window_lends_to_flex_reclaims_and_refunds_early_exit(clean_slurm, tmp_path):
    """A Commit window on n1 becomes a Slurm reservation (IGNORE_JOBS,FLEX) on n1. A
    Flex job borrows the idle reserved GPUs (inside the reservation, so Slurm lets it);
    the owner's Commit job reclaims them (Flex checkpoints and pauses); cancelling the
    reservation early stops the Commit job, deletes the Slurm reservation and refunds."""
    rt = console(clean_slurm, tmp_path, "commit", nodes=1)
    await rt.start()
    try:
        await up(rt)
        res = rt.scheduler.reserve(
            ReservationSpec(
                name="nightly", user="team", gpu_type="H100", gpus=8, start=time.time() + 1, hours=2
            )
        )
        await until(lambda: res.active_window == 0, "window open")
        name = "skyops.commit.nightly"
        await until(lambda: name in rt.executor.reservations, "Slurm reservation made")
        info = clean_slurm.run("scontrol", "show", "reservation", "-o", name)
        assert "Nodes=n1" in info and "IGNORE_JOBS" in info and "FLEX" in info
        lent = rt.scheduler.submit(flex("borrow", 8, 1.0, train()))
        await until(lambda: lent.state is JobState.RUNNING, "flex runs on lent GPUs", 30)
        sid = rt.executor.runs[lent.id].slurm_id
        assert f"Reservation={name}" in clean_slurm.run("scontrol", "show", "job", "-o", sid)
        await log_contains(rt, lent, "step 5/")
        own = rt.scheduler.submit(
            JobSpec(
                name="own",
                user="team",
                mode="commit",
                gpus=8,
                reservation="nightly",
                argv=("sleep", "300"),
            )
        )
        await until(lambda: lent.state is JobState.PAUSED, "flex reclaimed", 30)
        await log_contains(rt, lent, "on SIGUSR1; exiting")
        await until(lambda: own.state is JobState.RUNNING, "commit job running", 30)
        osid = rt.executor.runs[own.id].slurm_id
        assert f"Reservation={name}" in clean_slurm.run("scontrol", "show", "job", "-o", osid)
        paid = res.prepaid
        rt.scheduler.cancel_reservation("nightly")
        await until(lambda: own.state.value in ("cancelled", "expired"), "commit job stopped")
        await until(lambda: name not in rt.executor.reservations, "Slurm reservation gone")

        def ended() -> bool:
            out = clean_slurm.run("scontrol", "show", "reservation", "-o", name, check=False)
            return not out.strip() or "State=INACTIVE" in out

        await until(ended, "the Slurm reservation deleted or ended")
        assert 0 < res.refunded < paid
        # The borrowed GPUs are free again: the Flex job resumes from its checkpoint.
        await until(lambda: lent.state is JobState.RUNNING and lent.runs == 2, "resumed", 30)
        await log_contains(rt, lent, "resumed from step")
    finally:
        await rt.stop()
        rt.store.close()


def time_limit(slurm, job_id: str) -> str:
    return slurm.run("squeue", "-h", "-j", job_id, "-o", "%l", check=False).strip()


async def test_priority_booking_renewed_and_extended_moves_slurm_time_limit(clean_slurm, tmp_path):
    """A Priority job's --time is its booking; an auto-renewal and a manual extension
    move Slurm's TimeLimit with the booking, so Slurm never kills a renewed job."""
    rt = console(clean_slurm, tmp_path, "renew", nodes=1)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(
            priority(
                "train", ("sleep", "600"), gpus=2, hours=0.004, auto_renew=True, renew_hours=0.5
            )
        )
        await until(lambda: job.state is JobState.RUNNING, "priority job running", 30)
        sid = rt.executor.runs[job.id].slurm_id
        assert time_limit(clean_slurm, sid) == "1:00"  # 14.4 s booked + stop grace
        first_end = job.end_at
        await until(lambda: job.end_at > first_end + 1000, "booking renewed", 40)
        await until(lambda: time_limit(clean_slurm, sid) == "31:00", "limit renewed")
        rt.scheduler.extend("train", 1)
        await until(lambda: time_limit(clean_slurm, sid) == "1:31:00", "limit extended")
        assert job.state is JobState.RUNNING
        assert slurm_state(clean_slurm, sid) == "RUNNING"
    finally:
        await rt.stop()
        rt.store.close()


async def test_lost_node_fails_priority_and_pauses_flex_then_flex_resumes(clean_slurm, tmp_path):
    """A slurmd killed: Slurm marks its node down, Skyops ends the Priority job on it
    (failed, node lost) and pauses the Flex one, which resumes on another node."""
    rt = console(clean_slurm, tmp_path, "lost", nodes=2)
    await rt.start()
    try:
        await up(rt)
        boss = rt.scheduler.submit(priority("boss", ("sleep", "600"), gpus=4))
        await until(lambda: boss.state is JobState.RUNNING, "priority running", 30)
        node = boss.placement[0].node
        other = "n2" if node == "n1" else "n1"
        fx = rt.scheduler.submit(flex("fx", 4, 1.0, train()))
        await until(lambda: fx.state is JobState.RUNNING, "flex running", 30)
        assert fx.placement[0].node == node  # the planner packs the node first
        await log_contains(rt, fx, "checkpoint saved at step 5")
        clean_slurm.kill_node(node)
        await until(lambda: boss.state is JobState.FAILED, "priority failed", 60)
        causes = [e.cause for e in rt.feed.events if e.job == boss.id]
        assert any(f"node {node} lost" in c for c in causes), causes
        await until(
            lambda: fx.state is JobState.RUNNING and fx.runs == 2, "flex resumed elsewhere", 60
        )
        assert fx.placement[0].node == other
        await log_contains(rt, fx, "resumed from step")
    finally:
        await rt.stop()
        rt.store.close()


def our_slurm_jobs(slurm, prefix: str) -> list[str]:
    out = slurm.run("squeue", "-h", "-o", "%i %j %T", check=False)
    return [line for line in out.splitlines() if line.split()[1].startswith(prefix)]


async def test_console_restart_finds_running_jobs_and_bills_what_ended_meanwhile(
    clean_slurm, tmp_path
):
    """The console stops; Slurm runs on. A new console on the same state database finds
    the long job still running (not submitted again) and the short one ended while
    nobody watched, billed up to its real end as Slurm recorded it."""
    rt = console(clean_slurm, tmp_path, "restart", nodes=1)
    await rt.start()
    await up(rt)
    long = rt.scheduler.submit(priority("long", ("sleep", "600"), gpus=2))
    short = rt.scheduler.submit(priority("short", ("sleep", "3"), gpus=1))
    await until(
        lambda: long.state is JobState.RUNNING and short.state is JobState.RUNNING, "running", 30
    )
    long_sid = rt.executor.runs[long.id].slurm_id
    short_sid = rt.executor.runs[short.id].slurm_id
    await rt.stop()
    rt.store.close()
    await until(lambda: slurm_state(clean_slurm, short_sid) == "COMPLETED", "short ended", 30)
    ended = time.time()
    while time.time() < ended + 3:  # the console stays down a while after the end
        await asyncio.sleep(0.1)
    rt = console(clean_slurm, tmp_path, "restart", nodes=1)
    await rt.start()
    try:
        long, short = rt.grid.jobs[long.id], rt.grid.jobs[short.id]
        await until(lambda: short.state is JobState.SUCCEEDED, "short found ended", 30)
        # 1 GPU at 2.50/h for about 3 s; billing to the restart would be 6 s or more.
        assert short.charged < 2_500_000 * 5 // 3600, short.charged
        assert long.state is JobState.RUNNING
        assert slurm_state(clean_slurm, long_sid) == "RUNNING"
        assert rt.executor.runs[long.id].slurm_id == long_sid
        live = [j for j in our_slurm_jobs(clean_slurm, "skyops.restart.") if "COMPLETED" not in j]
        assert len(live) == 1, live
    finally:
        await rt.stop()
        rt.store.close()


PLAN = """
[[jobs]]
name = "prod"
user = "ana"
mode = "priority"
command = ["{py}", "-c", "import sys, time; print(sys.argv[1:], flush=True); time.sleep(600)",
           "a b; $(touch {tmp}/pwned)", "'q' `id`"]
gpus = 2
hours = 1
env = {{ NOTE = "it's \\"quoted\\" $HOME" }}

[[jobs]]
name = "sweep"
user = "kim"
mode = "flex"
command = ["sleep", "600"]
gpus = 4
bid = 1.0
"""


async def test_plan_applied_twice_submits_once_and_passes_argv_verbatim(clean_slurm, tmp_path):
    """Applying a plan twice: the second changes nothing, in Skyops and in Slurm (no
    second submission). The job's argv reaches the process word for word: nothing in
    it is read by a shell."""
    import sys

    from skyops_tui.control import commands
    from skyops_tui.plan.schema import parse_plan_text

    rt = console(clean_slurm, tmp_path, "plan", nodes=2)
    await rt.start()
    try:
        await up(rt)
        plan = parse_plan_text(PLAN.format(py=sys.executable, tmp=tmp_path), "plan.toml")
        payload = {"plan": plan.payload(), "source": "plan.toml"}
        first = commands.run(rt.engine, "apply_plan", payload, "ops", rt.clock.now())
        assert first["status"] == "applied", first
        prod, sweep = (rt.grid.jobs[rt.grid.job_names[n]] for n in ("prod", "sweep"))
        await until(
            lambda: prod.state is JobState.RUNNING and sweep.state is JobState.RUNNING,
            "both running",
            30,
        )
        text = await log_contains(rt, prod, "['a b;")
        assert "['a b; $(touch " in text and "\"'q' `id`\"]" in text, text
        assert not (tmp_path / "pwned").exists()
        before = our_slurm_jobs(clean_slurm, "skyops.plan.")
        again = commands.run(rt.engine, "apply_plan", payload, "ops", rt.clock.now())
        assert again["status"] == "unchanged", again
        for _ in range(5):  # a few polls and passes: nothing new is submitted
            rt.executor._polled.clear()
            await until(rt.executor._polled.is_set, "a poll")
        assert our_slurm_jobs(clean_slurm, "skyops.plan.") == before
        assert len(before) == 2
    finally:
        await rt.stop()
        rt.store.close()


def reservation(slurm, name: str) -> dict[str, str]:
    out = slurm.run("scontrol", "show", "reservation", "-o", name, check=False).strip()
    if not out.startswith("ReservationName="):
        return {}
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


async def test_daily_commit_windows_each_get_their_slurm_reservation(clean_slurm, tmp_path):
    """A daily Commit reservation of two windows: Slurm holds the node for each window
    as it opens and for no longer. A Flex job lent the first window's GPUs runs on past
    its end, so Slurm cannot delete that reservation: it is ended at the window's end.
    The second window, a day later, gets a live reservation again (not the ended one),
    and its owner's job reclaims the GPUs and runs inside it."""
    clock = JumpClock()
    rt = console(clean_slurm, tmp_path, "daily", nodes=1, clock=clock)
    await rt.start()
    try:
        await up(rt)
        res = rt.scheduler.reserve(
            ReservationSpec(
                name="nightly",
                user="team",
                gpu_type="H100",
                gpus=8,
                start=clock.now() + 1,
                hours=0.02,
                repeat="daily",
                count=2,
            )
        )
        name = "skyops.daily.nightly"
        await until(lambda: res.active_window == 0, "first window open")
        await until(lambda: reservation(clean_slurm, name), "first Slurm reservation")
        first = reservation(clean_slurm, name)
        assert first["Nodes"] == "n1" and first["State"] == "ACTIVE", first
        lent = rt.scheduler.submit(flex("borrow", 8, 1.0, ("sleep", "300")))
        await until(lambda: lent.state is JobState.RUNNING, "flex runs on lent GPUs", 30)
        sid = rt.executor.runs[lent.id].slurm_id
        assert f"Reservation={name}" in clean_slurm.run("scontrol", "show", "job", "-o", sid)
        # To a few seconds before the second window opens, a day later.
        clock.offset += res.windows[1][0] - 4 - clock.now()
        await until(lambda: res.active_window is None, "first window over")
        await until(lambda: name not in rt.executor.reservations, "first reservation let go")
        await until(
            lambda: reservation(clean_slurm, name).get("State", "INACTIVE") == "INACTIVE",
            "first Slurm reservation ended",
        )
        assert lent.state is JobState.RUNNING
        await until(lambda: res.active_window == 1, "second window open")
        await until(
            lambda: reservation(clean_slurm, name).get("State") == "ACTIVE",
            "second Slurm reservation active",
        )
        second = reservation(clean_slurm, name)
        assert second["Nodes"] == "n1", second
        ends = datetime.fromisoformat(second["EndTime"]).timestamp()
        assert ends >= time.time() + 50, second  # this window's length, not the first's
        own = rt.scheduler.submit(
            JobSpec(
                name="w2",
                user="team",
                mode="commit",
                gpus=8,
                reservation="nightly",
                argv=("sleep", "300"),
            )
        )
        await until(lambda: lent.state is JobState.PAUSED, "flex reclaimed", 30)
        await until(lambda: own.state is JobState.RUNNING, "window 2 job running", 30)
        osid = rt.executor.runs[own.id].slurm_id
        info = clean_slurm.run("scontrol", "show", "job", "-o", osid)
        assert f"Reservation={name}" in info and "JobState=RUNNING" in info, info
    finally:
        await rt.stop()
        rt.store.close()


async def test_grid_shows_slurm_node_state_and_gpus_allocated_inside_and_outside_skyops(
    clean_slurm, tmp_path
):
    """The grid's telemetry of a Slurm node is what sinfo says: its state, the GPUs
    Slurm has allocated beside the ones Skyops holds (a job from outside Skyops shows),
    dated by the last poll so the grid's beat column ticks as for a fleet node."""
    from skyops_tui.app.screens.grid import heartbeat, telemetry

    rt = console(clean_slurm, tmp_path, "tele", nodes=2)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(priority("p", ("sleep", "300"), gpus=2))
        await until(lambda: job.state is JobState.RUNNING, "priority job running", 30)
        node = job.placement[0].node
        other = "n2" if node == "n1" else "n1"
        clean_slurm.run(
            "sbatch", "-p", "priority", "-w", other, "--gres=gpu:3", "-o", "/dev/null",
            "--wrap", "sleep 300",
        )  # fmt: skip

        def note(name: str) -> str:
            sample = telemetry(rt, name)
            return sample.note if sample is not None else ""

        await until(lambda: "3/8 GPUs allocated (Skyops holds 0)" in note(other), "outside")
        assert note(other).startswith("Slurm: mixed"), note(other)
        assert "2/8 GPUs allocated (Skyops holds 2)" in note(node), note(node)
        sample = telemetry(rt, node)
        assert len(sample.gpus) == 8 and all(g.util is None for g in sample.gpus)
        beat = heartbeat(rt, rt.grid.nodes[node], sample)
        assert beat is not None and beat < 5, beat
    finally:
        await rt.stop()
        rt.store.close()


async def test_a_script_session_is_done_once_slurm_has_its_job(clean_slurm, tmp_path):
    """`skyops submit` with no leader runs a session that waits until the executor has
    nothing in flight: once sbatch has answered, it is done. The poller, which runs
    until the console closes, is not work in flight (it was: every such session waited
    out its whole timeout)."""
    rt = console(clean_slurm, tmp_path, "script", nodes=1)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(priority("one", ("sleep", "300"), gpus=1))
        await until(lambda: job.state is JobState.RUNNING, "the job running")
        await until(lambda: not rt.executor.busy(), "nothing in flight once sbatch answered", 10)
        assert slurm_state(clean_slurm, rt.executor.runs[job.id].slurm_id) == "RUNNING"
    finally:
        await rt.stop()
        rt.store.close()
