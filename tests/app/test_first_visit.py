"""The first visit to a view builds its screen and styles only that screen: every view's
stylesheet is read at start-up, so no visit reparses the CSS or restyles the screens
built before it (Textual did both on each first visit, half of its CPU: key presses
that open a view for the first time were the slowest, docs/benchmarks.md §11). A theme
chosen later still reaches every screen, built before the change or after it."""

from __future__ import annotations

from textual.widgets import Static

from tests.app.harness import demo_app, settle_ui, wait_for

VIEW_KEYS = {"jobs": "j", "market": "m", "reservations": "r", "ledger": "L", "events": "e"}


async def visit(pilot, view: str) -> None:
    await pilot.press(VIEW_KEYS.get(view, view[0]))
    await wait_for(pilot, lambda: pilot.app.current_mode == view, f"the {view} view")
    await settle_ui(pilot)


async def test_a_first_visit_neither_reparses_the_css_nor_restyles_other_screens():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await settle_ui(pilot)
        stylesheet = app.stylesheet
        reparsed: list[int] = []
        reparse = stylesheet.reparse

        def counted() -> None:
            reparsed.append(1)
            reparse()

        stylesheet.reparse = counted  # type: ignore[method-assign]
        grid = app.screen
        restyled: list[object] = []
        update = stylesheet.update

        def update_counted(root, animate: bool = False) -> None:
            restyled.append(root)
            update(root, animate=animate)

        stylesheet.update = update_counted  # type: ignore[method-assign]
        for view in VIEW_KEYS:
            await visit(pilot, view)
        assert reparsed == []
        assert restyled == []
        # The view's own stylesheet (market.tcss) is in effect.
        market = app.get_screen_stack("market")[0]
        summary = market.query_one("#summary", Static)
        assert summary.styles.height is not None and summary.styles.height.value == 1
        assert grid.is_attached


async def test_a_theme_chosen_later_reaches_screens_built_before_and_after_it():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await visit(pilot, "jobs")
        await visit(pilot, "grid")
        dark = app.screen.styles.background
        app.theme = "textual-light"
        await settle_ui(pilot)
        light = app.screen.styles.background
        assert light != dark
        await visit(pilot, "jobs")  # built before the change
        await wait_for(pilot, lambda: app.screen.styles.background == light, "jobs restyled")
        await visit(pilot, "market")  # built after it
        assert app.screen.styles.background == light
