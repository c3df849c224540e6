"""Test harness for the Textual console: waiting without sleeps, deterministic
snapshots, and the demo app on the seeded simulated grid.

    from harness import demo_app, wait_for, no_blink

    async def test_x():
        app = demo_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.screen.id == "grid", "grid screen shown")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

DEFAULT_SIZE = (120, 40)


async def wait_for(
    pilot: Any,
    predicate: Callable[[], Any],
    description: str,
    timeout: float = 5.0,
) -> Any:
    """Poll `predicate` (letting the app process messages between polls) until it
    returns something truthy; return that value. Fail saying what never happened."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:  # a widget not mounted yet, a query that misses
            value, last_error = None, exc
        else:
            last_error = None
        if value:
            return value
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_error!r})" if last_error is not None else ""
            screen = getattr(getattr(pilot, "app", None), "screen", None)
            where = f" on screen {type(screen).__name__}" if screen is not None else ""
            raise AssertionError(f"never happened within {timeout}s: {description}{where}{extra}")
        await pilot.pause(0.02)


async def settle_ui(pilot: Any) -> None:
    """Let pending messages, refreshes and workers run."""
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def _stop_blink(app: Any) -> None:
    from textual.widgets import Input, TextArea

    for screen in getattr(app, "screen_stack", [app.screen]):
        for w in screen.query("*"):
            if isinstance(w, Input | TextArea):
                w.cursor_blink = False
                if hasattr(w, "_cursor_visible"):
                    w._cursor_visible = True


async def no_blink(app: Any) -> None:
    """Make a running app render the same way every time: no blinking cursors, no
    pending animations. Call before taking a snapshot (run_before does it for you)."""
    app.animation_level = "none"
    _stop_blink(app)


def demo_runtime(**kwargs: Any):
    from skyops_tui.demo import sim_runtime

    return sim_runtime(**kwargs)


def demo_app(size: tuple[int, int] = DEFAULT_SIZE, runtime: Any = None, **kwargs: Any):
    """`SkyopsApp(sim_runtime())`: the seeded demo grid on simulated agents and a
    manual clock. `size` is kept on the app (`app.test_size`) for `run_test`."""
    from skyops_tui.app.app import SkyopsApp

    rt = runtime if runtime is not None else demo_runtime()
    app = SkyopsApp(rt, **kwargs)
    app.test_size = size
    return app


def run_before(*steps: Any) -> Callable[[Any], Any]:
    """A `run_before` for snap_compare: runs `steps` (async callables taking the pilot,
    or key strings to press) then freezes the display."""

    async def go(pilot: Any) -> None:
        await pilot.pause()
        for step in steps:
            if isinstance(step, str):
                await pilot.press(step)
            else:
                result = step(pilot)
                if asyncio.iscoroutine(result):
                    await result
            await pilot.pause()
        await no_blink(pilot.app)
        await settle_ui(pilot)

    return go
