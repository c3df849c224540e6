"""The launch form: per-mode fields, the live quote, inline validation, submit."""

from __future__ import annotations

from textual.widgets import Static

from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.demo import advance
from skyops_tui.domain.model import JobState, Mode
from tests.app.harness import choose, demo_app, fill, toasts, wait_for

SIZE = (160, 48)


async def open_launch(pilot, app) -> LaunchScreen:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch screen")
    return app.screen


def quote(screen) -> str:
    return str(screen.query_one("#quote", Static).content)


def error(screen, field: str) -> str:
    return str(screen.query_one(f"#err-{field}", Static).content)


async def test_priority_quote_and_submit_goes_to_the_job():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        await fill(pilot, "#name", "deadline")
        await fill(pilot, "#gpus", "2")
        await choose(pilot, "#gpu_type", "L40S")
        await fill(pilot, "#hours", "3")
        await fill(pilot, "#argv", 'python train.py --tag "a b"')
        await wait_for(
            pilot, lambda: "$0.90 x 2 GPUs x 3 h = $5.40" in quote(screen), "priority quote"
        )
        assert "would run now on l40s-a[2,3]" in quote(screen)
        assert "['python', 'train.py', '--tag', 'a b']" in quote(screen)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "job detail after submit")
        job = app.runtime.grid.job_by_ref("deadline")
        assert app.screen.job_id == job.id
        assert job.mode is Mode.PRIORITY and job.argv == ["python", "train.py", "--tag", "a b"]
        assert job.user == "ops" and job.gpus == 2 and job.hours == 3
        assert job.state in (JobState.STARTING, JobState.RUNNING)
        assert any("Priority job deadline" in t and "submitted" in t for t in toasts(app))


async def test_pydantic_errors_show_next_to_their_field():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        await fill(pilot, "#name", "bad name!")
        await wait_for(pilot, lambda: "letters, digits" in error(screen, "name"), "name error")
        await fill(pilot, "#gpus", "0")
        await wait_for(
            pilot, lambda: "greater than or equal to 1" in error(screen, "gpus"), "gpus error"
        )
        await fill(pilot, "#gpus", "x")
        await wait_for(pilot, lambda: "valid integer" in error(screen, "gpus"), "not a number")
        await fill(pilot, "#argv", 'python "unclosed')
        await wait_for(
            pilot, lambda: "cannot split the command" in error(screen, "argv"), "shlex error"
        )
        assert "Fix the marked fields" in quote(screen)
        n = len(app.runtime.grid.jobs)
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: toasts(app, "error"), "not launched")
        assert len(app.runtime.grid.jobs) == n


async def test_priority_needs_hours_or_hourly():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        await fill(pilot, "#hours", "")
        await wait_for(
            pilot, lambda: "hours = N or hourly = true" in error(screen, "hours"), "hours error"
        )
        screen.query_one("#hourly").focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: "renewed hourly" in quote(screen), "hourly quote")
        assert error(screen, "hours") == ""


async def test_flex_quote_shows_the_ladder_and_what_would_happen():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        await pilot.press("f3")
        await wait_for(pilot, lambda: screen.mode is Mode.FLEX, "flex picked")
        await choose(pilot, "#gpu_type", "H100")
        await fill(pilot, "#gpus", "4")
        await fill(pilot, "#bid", "0.85")
        q = await wait_for(pilot, lambda: "ranks" in quote(screen) and quote(screen), "flex quote")
        assert "clearing price now $0.90" in q
        assert "your bid $0.85 ranks #2 of 3 waiting bids" in q  # after render-7 ($0.90)
        assert "would run now on h100-b[4,5,6,7]" in q
        await fill(pilot, "#gpus", "8")
        await fill(pilot, "#bid", "2.00")
        await wait_for(
            pilot, lambda: "5m 00s more of its run (min_slice)" in quote(screen), "min_slice"
        )
        assert "would wait" in quote(screen)
        advance(app.runtime, 400)
        await wait_for(pilot, lambda: "would displace" in quote(screen), "displacement preview")
        assert "sweep-02 ($1.00)" in quote(screen)
        await fill(pilot, "#bid", "0.10")
        await wait_for(
            pilot, lambda: "bid must be between $0.75 and $2.50" in quote(screen), "floor"
        )


async def test_commit_lists_my_reservations_and_quotes_the_discount():
    from skyops_tui.demo import DEMO_EPOCH
    from skyops_tui.domain.specs import ReservationSpec

    app = demo_app()
    app.runtime.scheduler.reserve(
        ReservationSpec(
            name="ops-nightly",
            user="ops",
            gpu_type="A100",
            gpus=2,
            start=DEMO_EPOCH + 3600,
            hours=4,
            repeat="daily",
            count=30,
        )
    )
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        await pilot.press("f2")
        await wait_for(pilot, lambda: screen.mode is Mode.COMMIT, "commit picked")
        assert (
            not screen.query_one("#row-bid").display
            or not screen.query_one("#row-bid").region.height
        )
        await wait_for(
            pilot,
            lambda: "reservation" in error(screen, "reservation") or "Fix" in quote(screen),
            "needs one",
        )
        await choose(pilot, "#reservation", "ops-nightly")
        q = await wait_for(
            pilot, lambda: "30% off" in quote(screen) and quote(screen), "commit quote"
        )
        assert "$1.12 per GPU-hour (standard $1.60)" in q
        assert "next window opens" in q and "waits for it" in q
        assert "would wait for its reservation's window" in q
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "submitted")
        job = app.runtime.grid.jobs[app.screen.job_id]
        assert (
            job.mode is Mode.COMMIT
            and job.reservation == "ops-nightly"
            and job.state is JobState.QUEUED
        )


async def test_a_refused_submit_shows_the_reason():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_launch(pilot, app)
        await fill(pilot, "#name", "train-llm")  # taken
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: toasts(app, "error"), "refused")
        assert "a job named 'train-llm' exists already" in toasts(app, "error")[-1]
        assert isinstance(app.screen, LaunchScreen)


async def test_enter_moves_to_the_next_field_and_never_launches():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_launch(pilot, app)
        n = len(app.runtime.grid.jobs)
        screen.query_one("#name").focus()
        await pilot.press("enter")
        await wait_for(
            pilot, lambda: screen.focused and screen.focused.id == "user", "focus moved on"
        )
        assert len(app.runtime.grid.jobs) == n
