"""Test harness for the Textual console: waiting without sleeps (tests/waiting.py's
`pilot_until`, here as `wait_for`), deterministic snapshots, and the demo app on the
seeded simulated grid.

    from tests.app.harness import demo_app, wait_for, no_blink

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

# Re-exported: app tests wait with wait_for(pilot, predicate, what, timeout=5.0).
from tests.waiting import pilot_until as wait_for  # noqa: F401

DEFAULT_SIZE = (120, 40)


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


def demo_runtime(operator: bool = True, **kwargs: Any):
    """The seeded demo grid; the user ("ops") is an operator unless `operator=False`."""
    from skyops_tui.demo import sim_runtime

    if not operator and "cfg" not in kwargs:
        from skyops_tui.domain.config import demo_config

        kwargs["cfg"] = demo_config()
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


def toasts(app: Any, severity: str | None = None) -> list[str]:
    """Every toast the app has shown, as 'title: message', optionally of one severity."""
    return [
        f"{title}: {message}" if title else message
        for title, message, sev in getattr(app, "toast_log", [])
        if severity is None or sev == severity
    ]


async def fill(pilot: Any, selector: str, text: str) -> None:
    """Focus an Input, empty it and type `text` key by key."""
    box = pilot.app.screen.query_one(selector)
    box.focus()
    await pilot.pause()
    box.value = ""
    if text:
        await pilot.press(*[_key(c) for c in text])
    await pilot.pause()


def _key(c: str) -> str:
    return {" ": "space", "-": "minus", ".": "full_stop", '"': "quotation_mark"}.get(c, c)


async def choose(pilot: Any, selector: str, value: Any) -> None:
    """Pick `value` in a Select with the keyboard: open it, move down to it, enter."""
    select = pilot.app.screen.query_one(selector)
    select.focus()
    await pilot.pause()
    values = [v for _, v in select._options if v is not select.NULL]
    index = values.index(value) + (1 if select._allow_blank else 0)
    await pilot.press("enter")
    await pilot.pause()
    await pilot.press("home")
    for _ in range(index):
        await pilot.press("down")
    await pilot.press("enter")
    await pilot.pause()


def row_texts(table: Any) -> list[list[str]]:
    """A DataTable's cells as plain strings, row by row."""
    out = []
    for row in table.ordered_rows:
        out.append([str(getattr(c, "plain", c)) for c in table.get_row(row.key)])
    return out


def screen_text(app: Any) -> str:
    """Everything the active screen shows, as plain text (for asserting on words)."""
    import io

    from rich.console import Console
    from textual.widgets import DataTable, Static

    console = Console(width=app.size.width, file=io.StringIO(), record=True, color_system=None)
    parts = []
    for w in app.screen.query("*"):
        if not w.display:
            continue
        if isinstance(w, DataTable):
            parts.append(
                " ".join(str(getattr(c.label, "plain", c.label)) for c in w.ordered_columns)
            )
            parts += [" ".join(r) for r in row_texts(w)]
        elif isinstance(w, Static):
            content = w.content
            plain = getattr(content, "plain", None)
            if plain is None:
                console.print(content)
                plain = console.export_text()
            parts.append(str(plain))
    return "\n".join(parts)


async def press_button(pilot: Any, button_id: str) -> None:
    """In a dialog that focuses Cancel first: wait for that, tab to `button_id`, press
    enter. Never presses enter before the focus is where a person would see it."""
    screen = pilot.app.screen
    await wait_for(
        pilot,
        lambda: screen.focused is not None and screen.focused.id == "cancel",
        "Cancel focused",
    )
    for _ in range(5):
        if screen.focused is not None and screen.focused.id == button_id:
            break
        await pilot.press("tab")
        await pilot.pause()
    assert screen.focused is not None and screen.focused.id == button_id, button_id
    await pilot.press("enter")


def load(app: Any, seconds: float) -> None:
    """Make each redraw of `app` hold the event loop for `seconds`, as a big grid on a
    busy machine does: keys typed meanwhile reach the app together, the way a person's
    keys do when the console is slow. `app.test_busy` is set while a redraw holds it."""
    import threading

    redraw = app.refresh_views
    busy = app.test_busy = threading.Event()

    def slow() -> None:
        redraw()
        busy.set()
        time.sleep(seconds)
        busy.clear()

    app.refresh_views = slow


class Typist:
    """Types keys into a running app from another thread at a person's pace (`gap`
    seconds apart), as the terminal driver does: a key typed while the app is busy
    waits in its queue behind the others, whatever the app is doing."""

    def __init__(self, app: Any, keys: list[str], gap: float = 0.4) -> None:
        import threading

        self.app = app
        self.keys = list(keys)
        self.gap = gap
        self.done = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._type, daemon=True)
        self._thread.start()

    def _type(self) -> None:
        from textual import events

        busy = getattr(self.app, "test_busy", None)
        if busy is not None:
            busy.wait(10)  # start typing while a slow redraw holds the app
        for i, key in enumerate(self.keys):
            if i:
                time.sleep(self.gap)  # the pause between a person's keys
            char = KEY_CHARS.get(key, key if len(key) == 1 else None)
            self._loop.call_soon_threadsafe(self.app.post_message, events.Key(key, char))
        self.done.set()

    async def finish(self, pilot: Any) -> None:
        """Wait until every key is typed and the app has handled them all."""
        await wait_for(pilot, self.done.is_set, f"typing {self.keys}", timeout=30)
        await pilot.pause()
        await settle_ui(pilot)


KEY_CHARS = {"minus": "-", "full_stop": ".", "space": " ", "question_mark": "?"}


def keys_of(text: str) -> list[str]:
    """The key names that type `text`."""
    return [_key(c) for c in text]
