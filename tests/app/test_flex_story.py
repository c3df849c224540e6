"""SCENARIOS.md story 5, through the keyboard: a cheap Flex job is launched, a Priority
job takes its GPUs (checkpoint signal, grace, pause), and when the Priority job is
cancelled the Flex job resumes from its checkpoint."""

from __future__ import annotations

from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.jobs import JobsScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.demo import advance, settle
from skyops_tui.domain.model import JobState
from tests.app.harness import (
    choose,
    demo_app,
    fill,
    press_button,
    row_texts,
    screen_text,
    toasts,
    wait_for,
)


def state_of(table, name: str) -> str | None:
    for row in row_texts(table):
        if row[3] == name:
            return row[2]
    return None


async def launch(pilot, app, mode_key: str, **fields: str) -> JobScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
    await pilot.press(mode_key)
    await choose(pilot, "#gpu_type", "H100")
    for field, value in fields.items():
        await fill(pilot, f"#{field}", value)
    await pilot.press("ctrl+s")
    return await wait_for(
        pilot, lambda: isinstance(app.screen, JobScreen) and app.screen, "the new job's detail"
    )


async def test_flex_job_is_preempted_by_priority_and_resumes():
    app = demo_app()
    rt = app.runtime
    async with app.run_test(size=(150, 45)) as pilot:
        # 1. A cheap Flex job on the H100 market runs on the free half of h100-b.
        detail = await launch(pilot, app, "f3", name="cheap-sweep", gpus="4", bid="0.80")
        flex = rt.grid.jobs[detail.job_id]
        settle(rt)
        await wait_for(pilot, lambda: flex.state is JobState.RUNNING, "flex job running")
        assert [p.node for p in flex.placement] == ["h100-b"]
        advance(rt, 400)  # it checkpoints at +300 s
        assert flex.last_checkpoint_at is None or flex.runs == 1

        # 2. A Priority job needs those GPUs: the quote says so before we submit.
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
        form = app.screen
        await pilot.press("f1")
        await choose(pilot, "#gpu_type", "H100")
        await fill(pilot, "#name", "urgent")
        await fill(pilot, "#gpus", "4")
        await fill(pilot, "#hours", "1")
        await wait_for(
            pilot,
            lambda: (
                "would preempt Flex cheap-sweep ($0.80)" in str(form.query_one("#quote").content)
            ),
            "quote names the Flex job it would preempt",
        )
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "urgent's detail")
        urgent = rt.grid.job_by_ref("urgent")
        settle(rt)

        # 3. The Flex job gets its checkpoint signal: preempting, then paused.
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "job list")
        table = app.screen.query_one("#jobs")
        await wait_for(
            pilot, lambda: state_of(table, "cheap-sweep") == "preempting", "flex preempting"
        )
        assert any(t.startswith("Preempting: cheap-sweep") for t in toasts(app, "warning"))
        advance(rt, 30)
        await wait_for(pilot, lambda: state_of(table, "cheap-sweep") == "paused", "flex paused")
        await wait_for(pilot, lambda: state_of(table, "urgent") == "running", "priority running")
        assert any(t.startswith("Paused: cheap-sweep paused") for t in toasts(app, "warning"))

        # Its detail shows the preemption, the work lost and the checkpoint it resumes from.
        app.show_job(flex.id)
        await wait_for(pilot, lambda: getattr(app.screen, "job_id", None) == flex.id, "flex detail")
        text = screen_text(app)
        assert "preemptions 1; work lost 1m 45s" in text
        assert "last checkpoint 09:05:00 UTC" in text
        assert "running → preempting" in text and "preempted for priority job urgent" in text

        # 4. Cancel the Priority job (confirm), and the Flex job resumes.
        app.show_job(urgent.id)
        await wait_for(
            pilot, lambda: getattr(app.screen, "job_id", None) == urgent.id, "urgent detail"
        )
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "ConfirmDialog", "confirm")
        await press_button(pilot, "confirm")
        await wait_for(pilot, lambda: urgent.stop_reason == "cancelled", "stop asked")
        advance(rt, 30)
        assert urgent.state is JobState.CANCELLED
        await wait_for(pilot, lambda: flex.state is JobState.RUNNING, "flex running again")
        assert flex.runs == 2 and flex.preemptions == 1
        assert flex.work_done == 300
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "job list")
        table = app.screen.query_one("#jobs")
        await wait_for(
            pilot, lambda: state_of(table, "cheap-sweep") == "running", "list shows running"
        )
        app.show_job(flex.id)
        await wait_for(pilot, lambda: getattr(app.screen, "job_id", None) == flex.id, "flex detail")
        await wait_for(pilot, lambda: "over 2 run(s)" in screen_text(app), "cost over both runs")
        assert any(t.startswith("Resuming: cheap-sweep") for t in toasts(app))
