"""A call-off that comes while the job is already leaving at its checkpoint signal
(issue 17; docs/modes.md, *Queue, backfill and claims*): the job saved and went, so it
pauses and resumes from its checkpoint; it never counts as having finished."""

from __future__ import annotations

from skyops_tui.domain.model import JobState
from tests.waiting import until

from .localgrid import CONFIG, make_runtime
from .sshd import kill_leftover_jobs
from .test_calloff import preempt_then_free_elsewhere

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
        f, _ = await preempt_then_free_elsewhere(rt, SAVE_AND_LEAVE, tmp_path)
        await until(lambda: f.runs == 2 and f.state is JobState.RUNNING, "f resumed", 30)
        states = [e.new for e in rt.feed.events if e.job == f.id and e.kind == "state"]
        assert "succeeded" not in states, states
        assert "paused" in states, states
        assert f.preemptions == 1
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
