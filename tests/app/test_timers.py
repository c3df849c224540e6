"""Timers and warnings: a stopping job's grace counts down, time left turns amber
under ten minutes and red under one, the launch quote says when the account cannot
pay, and the extend and bid dialogs preview what the new value would do as it is
typed."""

from __future__ import annotations

from textual.widgets import Input, Static

from skyops_tui.app.screens.dialogs import AskDialog
from skyops_tui.app.screens.jobs import JobsScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.demo import advance, demo_argv, settle
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from tests.app.harness import Typist, choose, demo_app, fill, keys_of, load, wait_for

SIZE = (160, 48)


def left_cell(app, name: str):
    """The Time left cell of job `name` in the job list (a rich Text)."""
    screen = app.screen
    table = screen.query_one("#jobs")
    job = app.runtime.grid.job_by_ref(name)
    keys = [c.key for c in screen.columns()]
    return table.get_row(str(job.id))[keys.index("left")]


async def open_jobs(pilot, app) -> JobsScreen:
    await pilot.press("j")
    return await wait_for(
        pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen, "job list"
    )


async def test_a_preempted_flex_job_shows_its_grace_counting_down():
    app = demo_app()
    rt = app.runtime
    async with app.run_test(size=SIZE) as pilot:
        rt.local.submit(
            JobSpec(
                name="urgent",
                user="ops",
                mode="priority",
                gpus=8,
                gpu_type="H100",
                hours=1,
                argv=demo_argv(),
            ),
            actor="ops",
        )
        settle(rt)
        victim = next(j for j in rt.grid.jobs.values() if j.state is JobState.PREEMPTING)
        await open_jobs(pilot, app)
        await wait_for(pilot, lambda: left_cell(app, victim.name).plain == "grace 20s", "20 s")
        assert left_cell(app, victim.name).style  # coloured: under a minute
        rt.clock.set(rt.clock.now() + 5)  # time passes; the agent has not answered yet
        await wait_for(pilot, lambda: left_cell(app, victim.name).plain == "grace 15s", "15 s")


async def test_time_left_is_amber_under_ten_minutes_and_red_under_one():
    app = demo_app()
    rt = app.runtime
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_jobs(pilot, app)
        paint = screen.query_one("#jobs").paint
        assert not left_cell(app, "serve-eval").style
        advance(rt, 51 * 60)
        await wait_for(
            pilot,
            lambda: left_cell(app, "serve-eval").style == paint("tag--warning"),
            "amber under 10 min",
        )
        advance(rt, 8 * 60 + 30)
        await wait_for(
            pilot,
            lambda: left_cell(app, "serve-eval").style == paint("tag--error"),
            "red under 1 min",
        )


async def test_the_launch_quote_warns_when_the_account_cannot_pay():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        form = await wait_for(
            pilot, lambda: isinstance(app.screen, LaunchScreen) and app.screen, "launch form"
        )
        await choose(pilot, "#gpu_type", "H100")
        await fill(pilot, "#gpus", "8")
        await fill(pilot, "#hours", "900")
        await wait_for(
            pilot,
            lambda: "cannot cover $18,000.00" in str(form.query_one("#quote").content),
            "the quote saying the account cannot cover it",
        )
        await fill(pilot, "#hours", "1")
        await wait_for(
            pilot,
            lambda: "$20.00" in (q := str(form.query_one("#quote").content)) and q,
            "the quote for one hour",
        )
        assert "cannot cover" not in str(form.query_one("#quote").content)


def preview(app) -> str:
    return str(app.screen.query_one("#preview", Static).content)


async def select(pilot, app, name: str) -> None:
    table = app.screen.query_one("#jobs")
    row = table.get_row_index(str(app.runtime.grid.job_by_ref(name).id))
    table.move_cursor(row=row)
    await pilot.pause()


async def test_extend_previews_the_new_end_and_total_as_typed():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_jobs(pilot, app)
        await select(pilot, app, "serve-eval")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "extend dialog")
        load(app, 0.5)
        app.screen.query_one("#value", Input).value = ""
        typist = Typist(app, keys_of("2"), gap=0.2)
        await typist.finish(pilot)
        text = await wait_for(pilot, lambda: "total" in preview(app) and preview(app), "preview")
        assert "new end 2026-11-25 12:00:00 UTC" in text, text
        assert "total $3.60" in text, text


async def test_the_bid_dialog_previews_rank_victims_and_cost_as_typed():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_jobs(pilot, app)
        rt = app.runtime
        for name, bid in (("low", 0.76), ("waiting", 0.75)):  # low takes the free GPUs
            spec = JobSpec(
                name=name,
                user="ops",
                mode="flex",
                gpus=4,
                gpu_type="H100",
                bid=bid,
                argv=demo_argv(),
                runtime=8 * 3600,
            )
            rt.local.submit(spec, actor="ops")
        advance(rt, 900)  # past the time a new Flex job is safe from being outbid
        await pilot.pause()
        await select(pilot, app, "waiting")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "bid dialog")
        app.screen.query_one("#value", Input).value = ""
        load(app, 0.5)
        typist = Typist(app, keys_of("2.40"), gap=0.2)
        await typist.finish(pilot)
        text = await wait_for(pilot, lambda: "would preempt" in preview(app) and preview(app), "")
        assert "would preempt low ($0.76)" in text, text
        assert (
            "rank #1 of 3 waiting bids" in text
            and "4 GPUs: $3.04 per hour" in text
            and "at most $9.60" in text
        ), text
