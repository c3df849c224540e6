"""The job list and a job's detail: columns, sorting, filtering, live refresh that keeps
the cursor, and every action with its confirmation or refusal."""

from __future__ import annotations

from textual.widgets import Button, Input, Log

from skyops_tui.app.screens.dialogs import AskDialog, ConfirmDialog
from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.jobs import JobsScreen, matches
from skyops_tui.demo import advance, settle
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from tests.app.harness import (
    demo_app,
    demo_runtime,
    fill,
    press_button,
    row_texts,
    screen_text,
    toasts,
    wait_for,
)

WIDE = (150, 40)


async def open_jobs(pilot, app):
    await pilot.press("j")
    await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "jobs screen")
    return app.screen.query_one("#jobs")


def names(table) -> list[str]:
    cols = [c.key.value for c in table.ordered_columns]
    i = cols.index("name")
    return [r[i] for r in row_texts(table)]


def header_x(table, key: str) -> int:
    """Where column `key`'s header is, in cells from the table's left edge."""
    x = 0
    for c in table.ordered_columns:
        if c.key.value == key:
            return x + 2
        x += c.get_render_width(table)
    raise KeyError(key)


def column(table, key: str) -> list[str]:
    cols = [c.key.value for c in table.ordered_columns]
    i = cols.index(key)
    return [r[i] for r in row_texts(table)]


async def test_columns_show_mode_state_price_countdown_and_queue():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        rows = {r[3]: r for r in row_texts(table)}
        assert set(rows) == {
            "train-llm",
            "serve-eval",
            "nightly-train",
            "sweep-01",
            "sweep-02",
            "render-7",
            "embed-batch",
            "tiny-sweep",
        }
        llm = rows["train-llm"]
        assert llm[1] == "Priority" and llm[2] == "running" and llm[6] == "h100-a"
        assert llm[7] == "$2.50/h" and llm[8].startswith("3h 00m")
        assert rows["nightly-train"][7] == "$1.12 -30%"  # discounted Commit rate
        assert rows["nightly-train"][8] == "3h 50m"  # to the window's end
        assert rows["sweep-01"][7] == "bid $1.20 · clearing $0.90"
        assert rows["render-7"][9] == "bid #1" and rows["tiny-sweep"][9] == "bid #2"


async def test_compact_columns_at_80():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await open_jobs(pilot, app)
        assert [c.key.value for c in table.ordered_columns] == [
            "mode",
            "state",
            "name",
            "user",
            "gpus",
            "price",
            "left",
            "queue",
        ]
        assert column(table, "mode")[0] == "PRI"


async def test_countdown_ticks_with_the_clock_and_cursor_stays_on_its_job():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        await pilot.press("down", "down", "down")
        assert names(table)[table.cursor_row] == "sweep-01"
        advance(app.runtime, 600)
        await wait_for(
            pilot, lambda: column(table, "left")[0].startswith("2h 50m"), "countdown moved 10 min"
        )
        assert names(table)[table.cursor_row] == "sweep-01"


async def test_sort_keys_and_header_click():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        screen = app.screen
        await pilot.press("s")  # id -> mode
        assert screen.sort_key == "mode"
        await pilot.press("s")  # -> state
        await wait_for(
            pilot, lambda: column(table, "state")[-2:] == ["queued", "queued"], "queued last"
        )
        await pilot.press("S")
        await wait_for(
            pilot, lambda: column(table, "state")[:2] == ["queued", "queued"], "reversed"
        )
        await pilot.click("#jobs", offset=(header_x(table, "name"), 0))
        await wait_for(pilot, lambda: screen.sort_key == "name", "header click sorts by name")
        assert names(table) == sorted(names(table))
        await pilot.click("#jobs", offset=(header_x(table, "name"), 0))
        await wait_for(pilot, lambda: screen.sort_reverse, "second click reverses")
        assert names(table) == sorted(names(table), reverse=True)


async def test_filter_with_slash_and_leave_with_esc():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        await pilot.press("slash")
        box = app.screen.query_one("#filter", Input)
        await wait_for(pilot, lambda: box.has_focus, "filter box focused")
        await pilot.press(*"flex")
        await wait_for(pilot, lambda: len(names(table)) == 5, "5 flex jobs")
        await pilot.press("space", *"kim")
        await wait_for(pilot, lambda: names(table) == ["sweep-01", "sweep-02"], "kim's flex jobs")
        await pilot.press("enter")  # keep the filter, back to the table
        assert table.has_focus and len(names(table)) == 2
        await pilot.press("escape")  # esc leaves the filter
        await wait_for(pilot, lambda: len(names(table)) == 8, "all jobs back")
        assert isinstance(app.screen, JobsScreen) and not box.display


def test_filter_words():
    rt = demo_runtime()
    job = rt.grid.job_by_ref("sweep-02")
    assert matches(job, "flex kim")
    assert matches(job, "state:running mode:flex")
    assert not matches(job, "mode:priority")
    assert matches(job, "h100-b")


async def test_describe_shows_fields_events_and_log_tail():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        await open_jobs(pilot, app)
        await pilot.press("down", "down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "detail opens")
        text = screen_text(app)
        assert "sweep-01 #4" in text and "bid $1.20" in text and "preemptions" in text
        assert "queued → starting" in text and "placed on h100-a[4,5,6,7]" in text
        await pilot.press("l")
        log = app.screen.query_one("#job-log", Log)
        await wait_for(
            pilot, lambda: any("[sim] sweep-01" in line for line in log.lines), "log tail read"
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "esc back to the list")
        await pilot.press("l")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen, JobScreen) and app.screen.query_one("#job-log").display,
            "l opens the log",
        )


async def test_cancel_asks_first_with_cancel_focused():
    rt = demo_runtime()
    rt.scheduler.submit(
        JobSpec(
            name="mine", user="ops", mode="flex", gpus=1, gpu_type="L40S", bid=0.5, runtime=3600
        )
    )
    settle(rt)
    app = demo_app(runtime=rt)
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        table.move_cursor(row=names(table).index("mine"))
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await wait_for(
            pilot,
            lambda: isinstance(app.screen.focused, Button) and app.screen.focused.id == "cancel",
            "Cancel focused first",
        )
        await pilot.press("enter")  # a stray enter keeps the job
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "dialog closed")
        job = rt.grid.job_by_ref("mine")
        assert job.state is JobState.RUNNING and not job.stop_reason
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation again")
        await press_button(pilot, "confirm")
        await wait_for(pilot, lambda: job.stop_reason == "cancelled", "stop asked")
        advance(rt, 30)
        await wait_for(pilot, lambda: "cancelled" in column(table, "state"), "row shows cancelled")


async def test_cancel_someone_elses_job_is_refused_with_the_reason():
    app = demo_app(runtime=demo_runtime(operator=False))
    async with app.run_test(size=WIDE) as pilot:
        await open_jobs(pilot, app)  # cursor on train-llm, ana's
        await pilot.press("ctrl+d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "confirmation")
        await press_button(pilot, "confirm")
        await wait_for(pilot, lambda: toasts(app, "error"), "refusal toast")
        assert "ops may not cancel job train-llm: it belongs to ana" in toasts(app, "error")[-1]
        assert app.runtime.grid.job_by_ref("train-llm").state is JobState.RUNNING


async def test_extend_a_booking_by_hours():
    rt = demo_runtime()
    rt.scheduler.submit(
        JobSpec(
            name="deadline",
            user="ops",
            mode="priority",
            gpus=2,
            gpu_type="L40S",
            hours=2,
            runtime=7200,
        )
    )
    settle(rt)
    job = rt.grid.job_by_ref("deadline")
    end = job.end_at
    app = demo_app(runtime=rt)
    async with app.run_test(size=WIDE) as pilot:
        app.show_job(job.id)
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "detail")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "asks how many hours")
        await fill(pilot, "#value", "2")
        await pilot.press("enter")
        await wait_for(pilot, lambda: job.end_at == end + 7200, "booking extended by 2 h")
        assert any("extended by 2 h" in t for t in toasts(app))


async def test_extend_refusals_say_why():
    app = demo_app()
    async with app.run_test(size=WIDE) as pilot:
        await open_jobs(pilot, app)
        await pilot.press("down", "down", "down")  # sweep-01, a Flex job of kim's
        await pilot.press("x")
        await wait_for(pilot, lambda: toasts(app, "error"), "refused")
        assert "sweep-01 is a flex job: only priority bookings extend" in toasts(app, "error")[-1]


async def test_change_bid_moves_the_job_and_bad_bids_are_refused():
    rt = demo_runtime()
    rt.scheduler.submit(
        JobSpec(
            name="cheap", user="ops", mode="flex", gpus=8, gpu_type="H100", bid=0.8, runtime=3600
        )
    )
    settle(rt)
    job = rt.grid.job_by_ref("cheap")
    app = demo_app(runtime=rt)
    async with app.run_test(size=WIDE) as pilot:
        app.show_job(job.id)
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "detail")
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "asks the bid")
        await fill(pilot, "#value", "abc")
        await pilot.press("enter")
        await wait_for(
            pilot,
            lambda: "not a number" in str(app.screen.query_one("#error").content),
            "inline error",
        )
        await fill(pilot, "#value", "9")
        await pilot.press("enter")
        await wait_for(pilot, lambda: toasts(app, "error"), "over the standard rate")
        assert "bid must be between $0.75 and $2.50" in toasts(app, "error")[-1]
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "asks again")
        await fill(pilot, "#value", "1.5")
        await pilot.press("enter")
        await wait_for(pilot, lambda: job.bid == 1_500_000, "bid changed")
        await wait_for(pilot, lambda: "bid $1.50" in screen_text(app), "detail shows it")


async def test_queue_position_for_waiting_priority_jobs():
    rt = demo_runtime()
    for i in (1, 2):
        rt.scheduler.submit(
            JobSpec(
                name=f"big-{i}",
                user="ops",
                mode="priority",
                nodes=2,
                gpu_type="H100",
                hours=1,
                runtime=3600,
            )
        )
    settle(rt)
    app = demo_app(runtime=rt)
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        rows = {r[3]: r for r in row_texts(table)}
        assert rows["big-1"][2] == "queued" and rows["big-1"][9] == "#1"
        assert rows["big-2"][9] == "#2"


async def test_names_with_markup_and_control_characters_are_shown_literally():
    """A user named "[/x]" (and one with a bold tag and an escape in it) is text: the
    Jobs screen shows the names as typed instead of failing on them."""
    rt = demo_runtime()
    for user in ("[/x]", "[bold]ev\x1bil"):
        rt.scheduler.submit(
            JobSpec(name=f"odd-{len(user)}", user=user, mode="flex", gpus=1, gpu_type="L40S",
                    bid=0.5, runtime=3600)
        )  # fmt: skip
    settle(rt)
    app = demo_app(runtime=rt)
    async with app.run_test(size=WIDE) as pilot:
        table = await open_jobs(pilot, app)
        cols = [c.key.value for c in table.ordered_columns]
        users = {r[cols.index("user")] for r in row_texts(table)}
        assert "[/x]" in users
        assert any(u.startswith("[bold]ev") for u in users), users
