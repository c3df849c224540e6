"""Waiting in the tests: the one place a test polls for something to happen.

    from tests.waiting import wait_for, until, pilot_until

    line = wait_for(lambda: agent_log_line(), "the job printing its pid")       # sync
    job = await until(lambda: rt.grid.jobs.get("a"), "job a listed")            # asyncio
    await until(read_log_over_the_link, "the log written", timeout=30)         # async check
    await pilot_until(pilot, lambda: app.screen.id == "grid", "grid shown")     # Textual

Each polls `predicate` until it returns something truthy and returns that value, so a
wait can hand back what it waited for. A predicate that raises (a widget not mounted
yet, a link reconnecting, a file not written yet) counts as "not yet"; after `timeout`
seconds the wait fails with an AssertionError saying what never happened and the last
error the predicate raised. An AssertionError raised by the predicate itself is a check
that failed, not "not yet": it fails the wait at once (e.g. `assert proc.poll() is None`
inside a predicate stops waiting on a process that died).

The timeouts the callers pass were tuned on a loaded 2-core machine: lengthen them if
need be, never shorten them.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

TIMEOUT_S = 20.0
INTERVAL_S = 0.05
PILOT_TIMEOUT_S = 5.0
PILOT_INTERVAL_S = 0.02


class _Deadline:
    """The deadline logic every wait shares: when to give up, and how to say so."""

    def __init__(self, what: str, timeout: float, show: Callable[[], str] | None) -> None:
        self.what, self.timeout, self.show = what, timeout, show
        self.end = time.monotonic() + timeout
        self.last_error: Exception | None = None

    def failed(self, exc: Exception) -> None:
        if isinstance(exc, AssertionError):
            raise exc
        self.last_error = exc

    def check(self) -> None:
        """Raise if the deadline has passed (called after a poll that was not truthy)."""
        if time.monotonic() < self.end:
            return
        message = f"waited {self.timeout:g} s, but never: {self.what}"
        if self.last_error is not None:
            message += f" (last error: {self.last_error!r})"
        if self.show is not None:
            try:
                message += self.show()
            except Exception as exc:  # what to show is a courtesy; the failure is the news
                message += f" (and showing more failed: {exc!r})"
        raise AssertionError(message)


def wait_for(
    predicate: Callable[[], Any],
    what: str,
    timeout: float = TIMEOUT_S,
    *,
    interval: float = INTERVAL_S,
    show: Callable[[], str] | None = None,
) -> Any:
    """Poll `predicate` until it returns something truthy; return that. Fail saying
    `what` never happened (with the predicate's last error, and `show()` appended)."""
    deadline = _Deadline(what, timeout, show)
    while True:
        value = None
        try:
            value = predicate()
        except Exception as exc:
            deadline.failed(exc)
        else:
            deadline.last_error = None
        if value:
            return value
        deadline.check()
        time.sleep(interval)


async def until(
    predicate: Callable[[], Any | Awaitable[Any]],
    what: str,
    timeout: float = TIMEOUT_S,
    *,
    interval: float = INTERVAL_S,
    show: Callable[[], str] | None = None,
    pause: Callable[[float], Awaitable[Any]] | None = None,
) -> Any:
    """`wait_for` for asyncio tests: `predicate` may be sync or async (its result is
    awaited when awaitable). Between polls it awaits `pause(interval)`, by default
    asyncio.sleep, so the event loop runs meanwhile."""
    deadline = _Deadline(what, timeout, show)
    rest = pause or asyncio.sleep
    while True:
        value = None
        try:
            got = predicate()
            value = (await got) if inspect.isawaitable(got) else got
        except Exception as exc:
            deadline.failed(exc)
        else:
            deadline.last_error = None
        if value:
            return value
        deadline.check()
        await rest(interval)


async def pilot_until(
    pilot: Any,
    predicate: Callable[[], Any | Awaitable[Any]],
    what: str,
    timeout: float = PILOT_TIMEOUT_S,
) -> Any:
    """`until` for a Textual app under test: the app processes its messages between
    polls (pilot.pause), and a failure names the screen the app was on."""

    def where() -> str:
        screen = getattr(getattr(pilot, "app", None), "screen", None)
        return f" on screen {type(screen).__name__}" if screen is not None else ""

    return await until(
        predicate, what, timeout, interval=PILOT_INTERVAL_S, show=where, pause=pilot.pause
    )
