"""A preemption called off on Slurm (issue 17; docs/modes.md, *Queue, backfill and
claims*): the console drives the escalation, so calling off is not escalating."""

from __future__ import annotations

from skyops_tui.domain.model import JobState
from tests.waiting import until

from .harness import console, flex, log_contains, priority, up

# Saves a "checkpoint" on USR1 and runs on; a tick every 0.05 s.
CHECKPOINT_AND_GO_ON = (
    "sh",
    "-c",
    "trap 'echo checkpoint' USR1; trap 'echo term; exit 1' TERM; i=0; "
    'while true; do i=$((i+1)); echo "tick $i"; sleep 0.05; done',
)


async def test_a_preemption_nobody_needs_is_not_escalated(clean_slurm, tmp_path):
    """Flex `f` on n2 gets the checkpoint signal for Priority `p`; `a` ends on n1 in f's
    grace, p starts there, and f is neither requeued nor killed: it runs on, the same
    Slurm job, with no preemption counted."""
    rt = console(clean_slurm, tmp_path, "calloff", nodes=2, cluster={"grace_s": 6})
    await rt.start()
    try:
        await up(rt)
        done = tmp_path / "a-may-end"
        wait = ("sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.05; done', "sh", str(done))
        a = rt.scheduler.submit(priority("a", wait, gpus=8))
        await until(lambda: a.state is JobState.RUNNING, "a running", 30)
        f = rt.scheduler.submit(flex("f", 8, 1.0, CHECKPOINT_AND_GO_ON))
        await until(lambda: f.state is JobState.RUNNING, "f running", 30)
        sid = rt.executor.runs[f.id].slurm_id
        await log_contains(rt, f, "tick 2")
        p = rt.scheduler.submit(priority("p", ("sleep", "60"), gpus=8))
        await until(lambda: f.state is JobState.PREEMPTING, "f preempted for p", 30)
        await log_contains(rt, f, "checkpoint")
        done.touch()
        await until(lambda: p.state is JobState.RUNNING, "p running on n1", 30)
        await until(lambda: f.state is JobState.RUNNING, "f's preemption called off", 30)
        assert f.preemptions == 0 and f.runs == 1
        text = await log_contains(rt, f, "tick")
        ticks = int(text.rsplit("tick ", 1)[1].split()[0])
        # 6 s of grace are 120 ticks: f is still running after.
        text = await log_contains(rt, f, f"tick {ticks + 160}\n", 60)
        assert "term" not in text and f.state is JobState.RUNNING
        assert rt.executor.runs[f.id].slurm_id == sid
        info = clean_slurm.run("scontrol", "show", "job", "-o", sid)
        assert "JobState=RUNNING" in info and "Restarts=0" in info
    finally:
        await rt.stop()
        rt.store.close()
