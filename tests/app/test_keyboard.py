"""Keyboard safety: keys typed at a person's pace while a slow refresh holds the app
land where the person meant them, screen keys never fire from inside a field, esc goes
back everywhere, and q asks before losing anything."""

from __future__ import annotations

from textual.widgets import Input

from skyops_tui.app.screens.dialogs import ChoiceDialog, ConfirmDialog
from skyops_tui.app.screens.grid import GridScreen
from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.jobs import JobsScreen
from skyops_tui.app.screens.launch import LaunchScreen
from skyops_tui.app.screens.market import MarketScreen
from skyops_tui.domain.model import HOLDING, JobState
from tests.app.harness import (
    Typist,
    demo_app,
    keys_of,
    load,
    press_button,
    row_texts,
    wait_for,
)

SIZE = (160, 48)
LOAD_S = 0.5  # each redraw holds the app this long, as on a loaded machine


def value(app, wid: str) -> str:
    return app.screen.query_one(f"#{wid}", Input).value


async def test_a_name_with_screen_letters_is_typed_into_the_name_field():
    """n then "prio-renew": the r must not open Reservations nor the e Events; a q in
    a name must not quit. n focuses the first field at once, however slow the app."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid")
        load(app, LOAD_S)
        typist = Typist(app, ["n", *keys_of("prio-renew-quick")], gap=0.15)
        await typist.finish(pilot)
        assert isinstance(app.screen, LaunchScreen), type(app.screen).__name__
        assert app.screen.focused is app.screen.query_one("#name")
        assert value(app, "name") == "prio-renew-quick"
        assert app.is_running


async def test_tab_then_ctrl_u_clears_the_field_tab_moved_to():
    """Tab, ctrl+u, 0.05 typed 0.4 s apart under a slow refresh: the command stays
    as it was, hours is cleared and then holds 0.05."""
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
        app.screen.query_one("#argv", Input).focus()
        await pilot.pause()
        load(app, 3.0)
        typist = Typist(app, ["tab", "ctrl+u", *keys_of("0.05")], gap=0.4)
        await typist.finish(pilot)
        assert value(app, "argv") == ""
        assert value(app, "hours") == "0.05"


async def test_tab_tab_tab_space_ticks_the_box_it_reached():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
        app.screen.query_one("#argv", Input).focus()
        await pilot.pause()
        load(app, 3.0)
        typist = Typist(app, ["tab", "tab", "tab", "space"], gap=0.4)
        await typist.finish(pilot)
        assert value(app, "hours") == "1"
        assert app.screen.query_one("#auto_renew").value is True


async def test_q_with_unsaved_form_edits_asks_first():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, LaunchScreen), "launch form")
        await pilot.press(*keys_of("draft"))
        await pilot.press("escape")  # back to the grid, the form keeps its edits
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "esc back to grid")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "asked first")
        assert "unsaved" in app.screen.title_text and "name" in app.screen.message
        await pilot.press("enter")  # Cancel is focused first
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "still running")
        assert app.is_running


async def test_quitting_the_demo_offers_to_stop_its_jobs():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        grid = app.runtime.grid
        running = [j.id for j in grid.jobs.values() if j.state in HOLDING]
        assert len(running) >= 3
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "asked first")
        assert f"{len(running)} demo jobs are running" in app.screen.message
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "esc keeps it")
        assert app.is_running
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "asked again")
        await press_button(pilot, "choice-stop")
        await wait_for(pilot, lambda: not app.is_running, "the console quits")
        grid = app.runtime.grid
    stopping = {grid.jobs[i].name: (grid.jobs[i].state, grid.jobs[i].stop_reason) for i in running}
    assert all(
        state is JobState.CANCELLED or reason == "cancelled" for state, reason in stopping.values()
    ), stopping


async def test_leaving_the_demo_jobs_running_is_a_choice():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        grid = app.runtime.grid
        running = [j.id for j in grid.jobs.values() if j.state in HOLDING]
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ChoiceDialog), "asked first")
        await press_button(pilot, "choice-leave")
        await wait_for(pilot, lambda: not app.is_running, "the console quits")
    assert all(grid.jobs[i].state in HOLDING and not grid.jobs[i].stop_reason for i in running)


async def test_esc_goes_back_from_market():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "esc back to grid")


async def test_j_opens_the_job_list_not_a_detail_left_open():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "jobs")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "a job's detail")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid")
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "the job list")


async def test_j_k_move_and_a_key_per_column_sorts_the_job_list():
    app = demo_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("j")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "jobs")
        table = app.screen.query_one("#jobs")
        load(app, LOAD_S)
        typist = Typist(app, ["j", "j", "k"], gap=0.2)
        await typist.finish(pilot)
        assert table.cursor_row == 1
        await pilot.press("N")
        names = [r[3] for r in row_texts(table)]
        assert names == sorted(names), names
        await pilot.press("N")  # the same column's key again reverses
        names = [r[3] for r in row_texts(table)]
        assert names == sorted(names, reverse=True), names
        await pilot.press("U")
        users = [r[4] for r in row_texts(table)]
        assert users == sorted(users) and app.screen.sort_key == "user"
