"""The job list's refresh builds cells only for the jobs whose row changed: it runs every
second and after each batch of events, and on a big grid building every row's cells was
most of it (1,124 jobs at 512 nodes: 84 -> 29 ms a refresh, profiled), time a key
pressed meanwhile waited. What a row shows still follows its job, and a new theme
repaints every row."""

from __future__ import annotations

from typing import Any

from skyops_tui.app import format as F
from skyops_tui.app.palette import Painter
from tests.app.harness import demo_app, settle_ui, wait_for


async def test_a_refresh_rebuilds_only_the_rows_that_changed():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs", "the job list")
        for timer in list(app._timers):
            if timer.name == "refresh":
                timer.pause()  # refreshes at chosen moments only
        await settle_ui(pilot)
        table = app.screen.query_one("#jobs")
        built: list[str] = []
        state = Painter.state

        def counted(painter: Any, value: Any) -> Any:
            built.append(str(value))
            return state(painter, value)

        Painter.state = counted  # type: ignore[method-assign]
        try:
            app.screen.refresh_view()
            assert built == [], "nothing changed: no row is built again"

            rt = app.runtime
            job = next(j for j in rt.grid.jobs.values() if j.state.value == "running")
            rt.clock.advance(120)  # every running booking's time left moves on
            app.screen.refresh_view()
            # The running jobs' rows, not the queued ones' (no time left to show).
            assert 0 < len(built) < table.row_count
            await settle_ui(pilot)
            left, _ = F.countdown(rt, job, rt.clock.now())
            assert str(table.get_cell(str(job.id), "left")) == left

            built.clear()
            app.theme = "textual-light"
            await settle_ui(pilot)
            app.screen.refresh_view()
            assert len(built) == table.row_count, "a new theme repaints every row"
        finally:
            Painter.state = state  # type: ignore[method-assign]
