"""A call-off that comes while the job is already leaving at its checkpoint signal
(issue 17; docs/modes.md, *Queue, backfill and claims*): the job saved and went, so it
pauses and resumes from its checkpoint; it never counts as having finished."""

from __future__ import annotations

from skyops_tui.demo import demo_argv
from skyops_tui.domain.model import JobState
from tests.waiting import until

from .localgrid import CONFIG, log_contains, make_runtime, up
from .sshd import kill_leftover_jobs
from .test_local_fleet import flex, priority

# On USR1 it takes 1.5 s to save, then leaves with status 0, as many training scripts
# do (and the demo's job, at once). A tick every 0.05 s otherwise.
SAVE_AND_LEAVE = (
    "sh",
    "-c",
    "trap 'echo checkpoint; sleep 1.5; echo saved; exit 0' USR1; i=0; "
    'while true; do i=$((i+1)); echo "tick $i"; sleep 0.05; done',
)


async def test_a_job_leaving_at_its_signal_pauses_though_the_preemption_was_called_off(tmp_path):
    rt = make_runtime(tmp_path, {"cluster": {**CONFIG["cluster"], "grace_s": 10}})
    await rt.start()
    try:
        await up(rt)
        done = tmp_path / "a-may-end"
        wait = ("sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.02; done', "sh", str(done))
        a = rt.scheduler.submit(priority("a", wait))
        await until(lambda: a.state is JobState.RUNNING, "a running")
        f = rt.scheduler.submit(flex("f", 4, 1.0, SAVE_AND_LEAVE))
        await until(lambda: f.state is JobState.RUNNING, "f running")
        p = rt.scheduler.submit(priority("p", demo_argv(100_000, 0.05)))
        await until(lambda: f.state is JobState.PREEMPTING, "f preempted for p")
        await log_contains(rt, f, "checkpoint")
        done.touch()  # a ends: p starts on its GPUs while f is still saving
        await until(lambda: p.state is JobState.RUNNING, "p running on a's GPUs")
        await until(lambda: f.runs == 2 and f.state is JobState.RUNNING, "f resumed", 30)
        states = [e.new for e in rt.feed.events if e.job == f.id and e.kind == "state"]
        assert "succeeded" not in states, states
        assert "paused" in states, states
        assert f.preemptions == 1
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
