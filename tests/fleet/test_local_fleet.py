"""The real executor over local agents: jobs as real processes under the shim."""

from __future__ import annotations

import os
import signal
import sys

from skyops_tui.demo import demo_argv
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from tests.waiting import until

from .localgrid import log_contains, make_runtime, up
from .sshd import kill_leftover_jobs

IGNORES_SIGNALS = (
    sys.executable,
    "-c",
    "import signal, time\n"
    "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring signals', flush=True)\n"
    "time.sleep(600)\n",
)


def flex(name: str, gpus: int, bid: float, argv, node_type: str = "H100") -> JobSpec:
    return JobSpec(
        name=name, user="kim", mode="flex", gpus=gpus, gpu_type=node_type, bid=bid, argv=tuple(argv)
    )


def priority(name: str, argv, gpus: int = 4, hours: float = 1) -> JobSpec:
    return JobSpec(
        name=name,
        user="ana",
        mode="priority",
        gpus=gpus,
        gpu_type="H100",
        hours=hours,
        argv=tuple(argv),
    )


async def test_job_starts_with_its_gpus_and_environment(tmp_path):
    rt = make_runtime(tmp_path)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(flex("env", 2, 1.0, demo_argv(400, 0.05)))
        await until(lambda: job.state is JobState.RUNNING, "job running")
        text = await log_contains(rt, job, "step 2/")
        idx = ",".join(map(str, job.placement[0].gpus))
        assert f"CUDA_VISIBLE_DEVICES={idx}" in text
        assert f"SKYOPS_JOB_ID=j{job.id}-r1-p0" in text
        assert "SKYOPS_MODE=flex" in text
        assert f"checkpoints/job-{job.id}" in text
        sample = rt.executor.telemetry(job.placement[0].node)
        assert sample is not None and sample.fake and len(sample.gpus) == 4
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_preempted_flex_job_checkpoints_and_resumes_on_another_node(tmp_path):
    rt = make_runtime(tmp_path)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(flex("sweep", 4, 1.0, demo_argv(4000, 0.02)))
        await until(lambda: job.state is JobState.RUNNING, "flex job running")
        first = job.placement[0].node
        other = "node-b" if first == "node-a" else "node-a"
        # Keep the other node busy so the Priority job must preempt the Flex one.
        blocker = rt.scheduler.submit(flex("blocker", 4, 2.5, demo_argv(4000, 0.05)))
        await until(lambda: blocker.state is JobState.RUNNING, "blocker running")
        await log_contains(rt, job, "step 30/", 30)
        boss = rt.scheduler.submit(priority("deadline", demo_argv(100_000, 0.05)))
        await until(lambda: job.state is JobState.PAUSED, "flex job paused")
        assert job.preemptions == 1, [(e.kind, e.cause) for e in rt.feed.events if e.job == job.id]
        await until(lambda: boss.state is JobState.RUNNING, "priority job running")
        assert boss.placement[0].node == first
        # Free the other node: the Flex job resumes there, from its checkpoint.
        rt.scheduler.cancel("blocker")
        await until(lambda: job.state is JobState.RUNNING and job.runs == 2, "flex resumed")
        assert job.placement[0].node == other
        text = await log_contains(rt, job, "resumed from step", 30)
        step = int(text.split("resumed from step")[1].split()[0].strip(".,:"))
        assert step >= 30
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_job_that_ignores_signals_is_killed_after_grace(tmp_path):
    rt = make_runtime(tmp_path)
    await rt.start()
    try:
        await up(rt)
        stubborn = rt.scheduler.submit(flex("stubborn", 4, 0.9, IGNORES_SIGNALS))
        other = rt.scheduler.submit(flex("other", 4, 0.9, IGNORES_SIGNALS))
        await until(
            lambda: stubborn.state is JobState.RUNNING and other.state is JobState.RUNNING,
            "both running",
        )
        await log_contains(rt, stubborn, "ignoring signals")
        await log_contains(rt, other, "ignoring signals")
        boss = rt.scheduler.submit(priority("boss", demo_argv(100_000, 0.05)))
        await until(lambda: boss.state is JobState.RUNNING, "priority job running", 30)
        victim = stubborn if stubborn.state is JobState.PAUSED else other
        assert victim.state is JobState.PAUSED
        # grace 2 s + term grace 1 s, then SIGKILL of the whole process group.
        assert victim.preemptions == 1
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)


async def test_job_survives_a_killed_agent_and_its_exit_is_reported(tmp_path):
    rt = make_runtime(tmp_path)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(flex("survivor", 4, 1.0, demo_argv(60, 0.05)))
        await until(lambda: job.state is JobState.RUNNING, "job running")
        node = job.placement[0].node
        transport = rt.executor.links[node].transport
        first_agent = transport.process.pid
        os.kill(first_agent, signal.SIGKILL)
        await until(lambda: rt.executor.links[node].connects >= 2, "agent reconnected")
        assert transport.process.pid != first_agent
        await until(lambda: job.state is JobState.SUCCEEDED, "job succeeded", 30)
        assert job.runs == 1  # never started twice
        assert job.exit_code == 0
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
