"""The footer of a screen that is away (another view is shown) is not rebuilt when that
screen's bindings change: Textual's Footer recomposed every screen's footer on each
bindings change, two or three per screen switch (docs/benchmarks.md §11)."""

from __future__ import annotations

from textual.widgets import Footer

from tests.app.harness import demo_app, settle_ui, wait_for


def count_recomposes(footer: Footer) -> list[int]:
    calls: list[int] = []
    recompose = footer.recompose

    async def counted() -> None:
        calls.append(1)
        await recompose()

    footer.recompose = counted  # type: ignore[method-assign]
    return calls


async def test_an_away_screens_footer_does_not_recompose_when_its_bindings_change():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs", "jobs view")
        jobs = app.screen
        await pilot.press("g")
        await wait_for(pilot, lambda: app.current_mode == "grid", "grid view")
        await settle_ui(pilot)
        away = count_recomposes(jobs.query_one(Footer))
        for _ in range(3):
            jobs.refresh_bindings()
            await pilot.pause()
        await settle_ui(pilot)
        assert away == []


async def test_the_shown_footer_follows_its_keys_and_a_screen_coming_back_is_current():
    app = demo_app()
    async with app.run_test(size=app.test_size) as pilot:
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs", "jobs view")
        jobs = app.screen
        shown = [key.key for key in jobs.query_one(Footer).query("FooterKey")]
        assert shown
        await pilot.press("g")
        await wait_for(pilot, lambda: app.current_mode == "grid", "grid view")
        await settle_ui(pilot)
        grid_footer = app.screen.query_one(Footer)
        grid_keys = [key.key for key in grid_footer.query("FooterKey")]
        assert grid_keys
        # A key the jobs screen gains while away shows once the screen is back.
        jobs._bindings.bind("z", "app.bell", "Zzz")
        jobs.refresh_bindings()
        await settle_ui(pilot)
        await pilot.press("j")
        await wait_for(pilot, lambda: app.current_mode == "jobs", "jobs view again")
        await settle_ui(pilot)
        await wait_for(
            pilot,
            lambda: "z" in [key.key for key in jobs.query_one(Footer).query("FooterKey")],
            "the new key in the jobs footer",
        )
