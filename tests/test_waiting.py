"""tests/waiting.py: every wait returns what it waited for, fails after its deadline
saying what never happened, and reports the last error the predicate raised."""

from __future__ import annotations

import time

import pytest

from tests.waiting import pilot_until, until, wait_for


def counting(after: int, value: object = "ready"):
    """A predicate falsy for its first `after` calls, then `value`."""
    calls = []

    def predicate():
        calls.append(1)
        return value if len(calls) > after else None

    return predicate


def raising(times: int, value: object = "ready"):
    """A predicate that raises for its first `times` calls, then returns `value`."""
    calls = []

    def predicate():
        calls.append(1)
        if len(calls) <= times:
            raise LookupError(f"not yet ({len(calls)})")
        return value

    return predicate


class GridScreen:
    pass


class FakePilot:
    """Just what pilot_until uses of Textual's Pilot: pause(), and app.screen."""

    def __init__(self) -> None:
        self.app = type("App", (), {"screen": GridScreen()})()
        self.pauses: list[float | None] = []

    async def pause(self, delay: float | None = None) -> None:
        self.pauses.append(delay)


# wait_for: sync


def test_wait_for_returns_the_truthy_value():
    assert wait_for(counting(3, {"a": 1}), "a dict", timeout=5, interval=0.001) == {"a": 1}


def test_wait_for_fails_with_the_description_after_the_deadline():
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"waited 0\.2 s, but never: the moon turning blue"):
        wait_for(lambda: 0, "the moon turning blue", timeout=0.2, interval=0.01)
    assert time.monotonic() - start >= 0.2


def test_wait_for_reports_the_predicates_last_error():
    with pytest.raises(AssertionError, match=r"never: a file.*last error: LookupError\('not yet"):
        wait_for(raising(10**9), "a file", timeout=0.1, interval=0.01)


def test_wait_for_retries_a_predicate_that_raised_and_forgets_its_error():
    assert wait_for(raising(3), "ready after errors", timeout=5, interval=0.001) == "ready"
    with pytest.raises(AssertionError) as failed:
        predicate = raising(2, value=0)  # raises, then is merely falsy
        wait_for(predicate, "zero", timeout=0.1, interval=0.001)
    assert "last error" not in str(failed.value)


def test_an_assertion_in_the_predicate_fails_the_wait_at_once():
    def predicate():
        raise AssertionError("the server died")

    start = time.monotonic()
    with pytest.raises(AssertionError, match="the server died"):
        wait_for(predicate, "the server answering", timeout=30)
    assert time.monotonic() - start < 5


def test_wait_for_appends_what_show_returns():
    with pytest.raises(AssertionError, match="never: a prompt; the screen was:\nempty"):
        wait_for(lambda: "", "a prompt", 0.05, show=lambda: "; the screen was:\nempty")


# until: asyncio, sync or async predicates


async def test_until_returns_the_value_of_a_sync_predicate():
    assert await until(counting(2, 42), "42", timeout=5, interval=0.001) == 42


async def test_until_awaits_an_async_predicate():
    calls = []

    async def check():
        calls.append(1)
        return "logged" if len(calls) >= 3 else ""

    assert await until(check, "a log line", timeout=5, interval=0.001) == "logged"
    assert len(calls) == 3


async def test_until_fails_with_the_description_after_the_deadline():
    async def never():
        return False

    with pytest.raises(AssertionError, match=r"waited 0\.1 s, but never: the job done"):
        await until(never, "the job done", timeout=0.1, interval=0.01)


async def test_until_reports_the_last_error_of_an_async_predicate():
    async def reconnecting():
        raise ConnectionResetError("link down")

    with pytest.raises(AssertionError, match=r"never: a reply.*ConnectionResetError\('link down"):
        await until(reconnecting, "a reply", timeout=0.1, interval=0.01)


# pilot_until: Textual


async def test_pilot_until_lets_the_app_run_between_polls_and_returns_the_value():
    pilot = FakePilot()
    assert await pilot_until(pilot, counting(2, "grid"), "grid shown") == "grid"
    assert len(pilot.pauses) == 2


async def test_pilot_until_fails_naming_the_screen_and_the_last_error():
    pilot = FakePilot()
    with pytest.raises(
        AssertionError,
        match=r"never: the help open \(last error: LookupError\(.*\) on screen GridScreen",
    ):
        await pilot_until(pilot, raising(10**9), "the help open", timeout=0.1)
