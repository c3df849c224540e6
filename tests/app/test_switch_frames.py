"""A view's key shows the view as soon as its screen is ready, not after a fixed hold:
Textual holds frames back 50 ms on every switch (`delay_update`), so even a view that
was ready in 5 ms took 50 ms to appear. Frames are still held while the screen is
built, so none shows it half built. And the view is drawn from the grid once per key,
not once by its mount, again by its resize and resume and again by the key's own
redraw (on a big grid each is a job list rebuilt row by row)."""

from __future__ import annotations

from typing import Any

from skyops_tui.app.widgets.ladder import Ladder
from skyops_tui.app.widgets.tables import GridTable
from skyops_tui.app.widgets.timeline import Timeline
from tests.app.harness import demo_app, settle_ui, wait_for

HOLDS = ("delay_update", "switch hold")


async def test_a_switch_is_drawn_when_the_screen_is_ready_without_a_timer_running_out():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await settle_ui(pilot)
        held: list[str] = []
        set_timer = app.set_timer

        def holds_never_run_out(delay: float, callback: Any = None, **kw: Any) -> Any:
            if kw.get("name") in HOLDS:
                held.append(kw["name"])
                delay = 3600.0  # not within this test
            return set_timer(delay, callback, **kw)

        app.set_timer = holds_never_run_out  # type: ignore[method-assign]
        drawn: list[tuple[object, str]] = []
        display = app._display

        def recorded(screen: Any, renderable: Any) -> None:
            if renderable is not None and not app._batch_count:
                drawn.append((screen, str(app.current_mode)))
            display(screen, renderable)

        app._display = recorded  # type: ignore[method-assign]
        for key, view in (("j", "jobs"), ("m", "market"), ("j", "jobs"), ("g", "grid")):
            await pilot.press(key)
            await wait_for(
                pilot,
                lambda view=view: (app.screen, view) in drawn,
                f"a frame of the {view} view",
            )
        assert held, "each switch holds frames back while its screen is built"
        # No frame of a view was written before its screen was the app's screen.
        assert all(screen is app.get_screen_stack(mode)[0] for screen, mode in drawn)


async def test_a_view_key_draws_the_view_from_the_grid_once():
    app = demo_app()
    # What each view draws from the grid: its job table, its bid ladder, its timeline.
    drawers = {"jobs": (GridTable, "show_rows"), "market": (Ladder, "show")}
    drawers["reservations"] = (Timeline, "show")
    originals = {view: getattr(cls, name) for view, (cls, name) in drawers.items()}
    drawn: list[str] = []

    def counting(view: str) -> Any:
        def draw(widget: Any, *args: Any, **kw: Any) -> Any:
            if widget.screen.VIEW == view:
                drawn.append(view)
            return originals[view](widget, *args, **kw)

        return draw

    async with app.run_test(size=app.test_size) as pilot:
        await settle_ui(pilot)
        for timer in list(app._timers):
            if timer.name == "refresh":
                timer.pause()  # ticks at chosen moments only (a tick redraws, rightly)
        await settle_ui(pilot)
        try:
            for view, (cls, name) in drawers.items():
                setattr(cls, name, counting(view))
            # First visits, then revisits (the market and reservations redraw on resume).
            for key, view in (("j", "jobs"), ("m", "market"), ("r", "reservations")) * 2:
                app._tick()  # time moved while the view was away: it is stale
                epoch = getattr(app, "data_epoch", None)
                drawn.clear()
                await pilot.press(key)
                await wait_for(pilot, lambda view=view: app.current_mode == view, view)
                await settle_ui(pilot)
                assert getattr(app, "data_epoch", None) == epoch, "the grid moved meanwhile"
                assert drawn == [view], f"{view}: drawn {len(drawn)} times"
        finally:
            for view, (cls, name) in drawers.items():
                setattr(cls, name, originals[view])
