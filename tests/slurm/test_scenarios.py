"""The scenario suite of the SSH fleet, on a real localhost Slurm (8 nodes x 8 GRES
GPUs): Skyops decides, Slurm runs."""

from __future__ import annotations

import re

from skyops_tui.domain.model import JobState

from .harness import console, flex, log_contains, priority, train, up, wait_for


def slurm_state(slurm, job_id: str) -> str:
    return slurm.run("squeue", "-h", "-j", job_id, "-o", "%T", check=False).strip()


async def test_priority_preempts_flex_which_checkpoints_and_resumes(clean_slurm, tmp_path):
    """One node: a Flex job fills it; a Priority job preempts it. The Flex job gets its
    checkpoint signal and saves within grace, is requeued and held in Slurm, and when
    the Priority job ends it resumes (the same Slurm job, released) from its step."""
    rt = console(clean_slurm, tmp_path, "preempt", nodes=1)
    await rt.start()
    try:
        await up(rt)
        job = rt.scheduler.submit(flex("sweep", 8, 1.0, train()))
        await wait_for(lambda: job.state is JobState.RUNNING, "flex job running")
        sid = rt.executor.runs[job.id].slurm_id
        assert slurm_state(clean_slurm, sid) == "RUNNING"
        await log_contains(rt, job, "step 12/")
        boss = rt.scheduler.submit(priority("deadline", ("sleep", "3"), gpus=4))
        await wait_for(lambda: job.state is JobState.PAUSED, "flex job paused", 30)
        text = await log_contains(rt, job, "on SIGUSR1; exiting")
        saved = int(re.search(r"checkpoint saved at step (\d+) on SIGUSR1", text).group(1))
        assert saved >= 12
        info = clean_slurm.run("scontrol", "show", "job", "-o", sid)
        assert "Restarts=1" in info and "JobState=PENDING" in info
        await wait_for(lambda: boss.state is JobState.RUNNING, "priority job running", 30)
        await wait_for(lambda: boss.state is JobState.SUCCEEDED, "priority job done", 30)
        await wait_for(lambda: job.state is JobState.RUNNING and job.runs == 2, "resumed", 30)
        assert rt.executor.runs[job.id].slurm_id == sid  # the same Slurm job, released
        text = await log_contains(rt, job, f"resumed from step {saved}")
        assert "SKYOPS_RESUME=1" in text
    finally:
        await rt.stop()
        rt.store.close()
