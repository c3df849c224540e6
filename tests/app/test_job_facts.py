"""True job facts in the console, on real local agents running real processes: the
last checkpoint and the work a preemption lost, stderr and the exit reason of a failed
run, a demo launch that works as the form stands, and the mode's lock explained."""

from __future__ import annotations

import sys

from textual.widgets import Input, Log

from skyops_tui.app.app import SkyopsApp
from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.demo import demo_argv
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from tests.fleet.localgrid import make_runtime
from tests.fleet.sshd import kill_leftover_jobs

from .harness import screen_text, toasts, wait_for

SIZE = (160, 48)

IGNORES_SIGNALS = (
    sys.executable,
    "-c",
    "import signal, time\n"
    "signal.signal(signal.SIGUSR1, signal.SIG_IGN)\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ignoring signals', flush=True)\n"
    "time.sleep(600)\n",
)


def line_of(app, key: str) -> str:
    """The detail's line that starts with `key` (e.g. "preemptions")."""
    for line in screen_text(app).splitlines():
        if line.strip().startswith(key):
            return line.strip()
    return ""


def log_text(app) -> str:
    return "\n".join(str(line) for line in app.screen.query_one("#job-log", Log).lines)


async def nodes_up(pilot, rt) -> None:
    await wait_for(
        pilot,
        lambda: all(n.status.value == "up" for n in rt.grid.nodes.values()),
        "every node up",
        timeout=20,
    )


async def open_detail(pilot, app, job) -> JobScreen:
    app.show_job(job.id)
    await wait_for(
        pilot,
        lambda: isinstance(app.screen, JobScreen) and app.screen.job_id == job.id,
        f"{job.name}'s detail",
    )
    return app.screen


async def test_preempted_jobs_show_their_last_checkpoint_and_the_work_they_lost(tmp_path):
    """The example job saves on the checkpoint signal: its detail names that checkpoint
    (not "none reported"). A job that ignores the signal is killed after its grace with
    nothing saved: it lost the whole run, and says so (not "work lost none")."""
    rt = make_runtime(tmp_path)
    app = SkyopsApp(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await nodes_up(pilot, rt)
            saver = rt.scheduler.submit(
                JobSpec(name="saver", user="kim", mode="flex", gpus=4, gpu_type="H100",
                        bid=1.0, argv=demo_argv(4000, 0.05))
            )  # fmt: skip
            stubborn = rt.scheduler.submit(
                JobSpec(name="stubborn", user="kim", mode="flex", gpus=4, gpu_type="H100",
                        bid=1.0, argv=IGNORES_SIGNALS)
            )  # fmt: skip
            await wait_for(
                pilot,
                lambda: saver.state is JobState.RUNNING and stubborn.state is JobState.RUNNING,
                "both running",
                timeout=20,
            )
            await open_detail(pilot, app, saver)
            await pilot.press("l")
            await wait_for(pilot, lambda: "step 10/" in log_text(app), "saver works", 20)
            rt.scheduler.submit(
                JobSpec(name="boss", user="ana", mode="priority", nodes=2, gpu_type="H100",
                        hours=1, argv=demo_argv(100_000, 0.05))
            )  # fmt: skip
            await wait_for(
                pilot,
                lambda: saver.state is JobState.PAUSED and stubborn.state is JobState.PAUSED,
                "both preempted",
                timeout=30,
            )
            await wait_for(
                pilot,
                lambda: "checkpoint saved at step" in log_text(app),
                "saver's log says it saved",
                timeout=20,
            )
            line = await wait_for(
                pilot,
                lambda: "UTC" in line_of(app, "preemptions") and line_of(app, "preemptions"),
                "saver's last checkpoint shown",
                timeout=20,
            )
            assert "last checkpoint none" not in line and "none reported" not in line, line
            await open_detail(pilot, app, stubborn)
            line = await wait_for(
                pilot,
                lambda: (
                    "work lost none" not in line_of(app, "preemptions")
                    and "GPU-h" in line_of(app, "preemptions")
                    and line_of(app, "preemptions")
                ),
                "stubborn's lost work shown",
                timeout=20,
            )
            assert "1; work lost" in line and "last checkpoint none yet" in line, line
            assert stubborn.lost_work_s >= 1.0
            assert "paused" in line_of(app, "ended"), screen_text(app)
    finally:
        kill_leftover_jobs(tmp_path)


async def test_a_log_read_landing_while_the_detail_closes_is_dropped(tmp_path):
    """A closing screen is taken apart child by child; a log read (a worker) or a
    refresh that lands in between finds no log panel. It drops what it read: a failed
    worker ends the console (seen once, under load, in the test above)."""
    rt = make_runtime(tmp_path)
    app = SkyopsApp(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await nodes_up(pilot, rt)
            job = rt.scheduler.submit(
                JobSpec(name="talker", user="kim", mode="flex", gpus=1, gpu_type="H100",
                        bid=1.0, argv=demo_argv(4000, 0.05))
            )  # fmt: skip
            await wait_for(pilot, lambda: job.state is JobState.RUNNING, "running", timeout=20)
            screen = await open_detail(pilot, app, job)
            await pilot.press("l")
            await wait_for(pilot, lambda: "step " in log_text(app), "the log shown", 20)
            await screen.query_one("#job-log", Log).remove()  # as closing does: children first
            screen.refresh_view()
            screen.load_logs()
            await screen.workers.wait_for_complete()
            await pilot.pause()
            assert app.is_running and app.screen is screen
    finally:
        kill_leftover_jobs(tmp_path)


async def test_a_failed_job_opens_on_its_stderr_with_the_exit_reason(tmp_path):
    rt = make_runtime(tmp_path)
    app = SkyopsApp(rt)
    failing = (
        sys.executable,
        "-c",
        "import sys\nprint('loading', flush=True)\n"
        "print('config.yaml: lr must be positive', file=sys.stderr)\nsys.exit(3)\n",
    )
    try:
        async with app.run_test(size=SIZE) as pilot:
            job = rt.scheduler.submit(
                JobSpec(name="bad-cfg", user="ana", mode="priority", gpus=1, hours=1,
                        argv=failing)
            )  # fmt: skip
            await wait_for(pilot, lambda: job.state is JobState.FAILED, "job failed", 30)
            await open_detail(pilot, app, job)
            await wait_for(
                pilot,
                lambda: "config.yaml: lr must be positive" in log_text(app),
                "stderr shown without asking",
                timeout=20,
            )
            assert "stderr tail" in screen_text(app)
            assert "exited with status 3" in line_of(app, "ended"), screen_text(app)
            await pilot.press("s")
            await wait_for(pilot, lambda: "loading" in log_text(app), "s switches to stdout", 20)
            assert "lr must be positive" not in log_text(app)
    finally:
        kill_leftover_jobs(tmp_path)


async def test_a_demo_launch_as_the_form_stands_runs_the_example_job(tmp_path):
    """On real agents the demo form's command is the example checkpointing job: launched
    untouched, it runs (no failure for a missing train.py in $HOME); and no field is
    there that real agents ignore (simulated work)."""
    rt = make_runtime(tmp_path)
    rt.demo = True
    app = SkyopsApp(rt)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await nodes_up(pilot, rt)
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
            form = app.screen
            assert "ckpt_train.py" in form.query_one("#argv", Input).value
            assert not form.query("#sim_work"), "a simulated-work field on real agents"
            await pilot.press("ctrl+s")
            job = await wait_for(pilot, lambda: rt.grid.job_by_ref("job-1"), "launched")
            await wait_for(pilot, lambda: job.state is JobState.RUNNING, "running", 30)
            await open_detail(pilot, app, job)
            await pilot.press("l")
            await wait_for(pilot, lambda: "step 2/" in log_text(app), "the job works", 30)
            assert job.state is JobState.RUNNING
    finally:
        kill_leftover_jobs(tmp_path)


async def test_the_mode_shows_locked_and_m_explains_without_offering_a_switch():
    from skyops_tui.app.screens.dialogs import Dialog

    from .harness import demo_app

    app = demo_app(size=SIZE)
    async with app.run_test(size=SIZE) as pilot:
        job = app.runtime.grid.job_by_ref("sweep-01")
        await open_detail(pilot, app, job)
        assert "Flex (mode locked)" in screen_text(app)
        await pilot.press("M")
        await wait_for(pilot, lambda: toasts(app), "explained")
        await pilot.pause()
        assert not isinstance(app.screen, Dialog)
        msg = toasts(app)[-1]
        assert "locked" in msg and "cancel it" in msg and "Priority or Commit" in msg, msg
        assert job.mode.value == "flex"
