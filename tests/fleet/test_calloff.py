"""A preemption called off over the real agents (issue 17; docs/modes.md, *Queue,
backfill and claims*)."""

from __future__ import annotations

from pathlib import Path

from skyops_tui.demo import demo_argv
from skyops_tui.domain.model import JobState
from tests.waiting import until

from .localgrid import CONFIG, log_contains, log_text, make_runtime, up
from .sshd import kill_leftover_jobs
from .test_local_fleet import flex, priority

# Saves a "checkpoint" on USR1 and runs on; a tick every 0.05 s.
CHECKPOINT_AND_GO_ON = (
    "sh",
    "-c",
    "trap 'echo checkpoint' USR1; trap 'echo term; exit 1' TERM; i=0; "
    'while true; do i=$((i+1)); echo "tick $i"; sleep 0.05; done',
)


async def preempt_then_free_elsewhere(rt, victim: tuple[str, ...], tmp: Path):
    """Priority `a` holds one node and Flex `f` (running `victim`) the other; Priority
    `p` arrives and preempts f; once f has its checkpoint signal, a ends and p starts on
    a's GPUs, so nobody needs f's any more. Returns (f, p)."""
    await up(rt)
    done = tmp / "a-may-end"
    wait = ("sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.02; done', "sh", str(done))
    a = rt.scheduler.submit(priority("a", wait))
    await until(lambda: a.state is JobState.RUNNING, "a running")
    f = rt.scheduler.submit(flex("f", 4, 1.0, victim))
    await until(lambda: f.state is JobState.RUNNING, "f running")
    assert f.placement[0].node != a.placement[0].node
    p = rt.scheduler.submit(priority("p", demo_argv(100_000, 0.05)))
    await until(lambda: f.state is JobState.PREEMPTING, "f preempted for p")
    await log_contains(rt, f, "checkpoint")
    done.touch()
    await until(lambda: p.state is JobState.RUNNING, "p running on a's GPUs")
    return f, p


async def test_a_preemption_nobody_needs_any_more_is_called_off(tmp_path):
    """Flex `f` gets the checkpoint signal for Priority `p`; node-a frees inside f's
    grace, p starts there, and f's preemption is called off over the agent: f runs on
    past its grace, never gets SIGTERM, and no preemption is counted against it."""
    rt = make_runtime(tmp_path, {"cluster": {**CONFIG["cluster"], "grace_s": 4}})
    await rt.start()
    try:
        f, p = await preempt_then_free_elsewhere(rt, CHECKPOINT_AND_GO_ON, tmp_path)
        assert p.placement[0].node != f.placement[0].node
        await until(lambda: f.state is JobState.RUNNING, "f's preemption called off")
        called = [e.cause for e in rt.feed.events if e.job == f.id and e.kind == "state"]
        assert called[-1] == "preemption called off (p started on other GPUs)"
        assert f.preemptions == 0 and f.runs == 1
        ticks = int((await log_contains(rt, f, "tick")).rsplit("tick ", 1)[1].split()[0])
        # 4 s of grace and 1 s of SIGTERM grace are 100 ticks: f is still there after.
        await log_contains(rt, f, f"tick {ticks + 120}\n", 30)
        assert f.state is JobState.RUNNING and "term" not in await log_text(rt, f)
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
