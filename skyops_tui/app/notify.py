"""Toasts for what a user must not miss: expiry warnings, preemptions and resumes,
renewals, refusals and failures. Only the user's own jobs (operators see all), and at
most a few per second: the rest are counted and summed up in one toast."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..domain.model import Event, JobState

if TYPE_CHECKING:
    from ..runtime import Runtime

PER_SECOND = 3


class Notifier:
    def __init__(
        self,
        runtime: Runtime,
        toast: Callable[..., None],
        per_second: int = PER_SECOND,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runtime = runtime
        self.toast = toast
        self.per_second = per_second
        self.now = now
        self.recent: deque[float] = deque()
        self.held = 0

    def mine(self, event: Event) -> bool:
        rt = self.runtime
        return rt.is_operator or event.user == rt.user

    def message(self, event: Event) -> tuple[str, str, str] | None:
        """(title, text, severity) for an event worth a toast, or None."""
        g = self.runtime.grid
        job = g.jobs.get(event.job) if event.job is not None else None
        who = job.name if job is not None else (event.reservation or event.node or "")
        cause = event.cause
        if "refused" in cause:
            return ("Refused", f"{who}: {cause}", "error")
        if event.kind == "warning":
            return ("Expiring", f"{who}: {cause}", "warning")
        if event.kind == "renewed":
            return ("Renewed", f"{who}: {cause}", "information")
        if event.kind == "node" and event.new == "unreachable":
            return ("Node " + (event.new or ""), f"{event.node}: {cause}", "error")
        if event.kind != "state" or job is None:
            return None
        new = event.new
        if new == JobState.PREEMPTING:
            return ("Preempting", f"{who}: {cause}", "warning")
        if new == JobState.PAUSED:
            return ("Paused", f"{who} paused: {cause}", "warning")
        if new == JobState.STARTING and event.old == JobState.PAUSED:
            return ("Resuming", f"{who}: {cause}", "information")
        if new == JobState.FAILED:
            return ("Failed", f"{who}: {cause}", "error")
        if new == JobState.EXPIRED:
            return ("Expired", f"{who}: {cause}", "warning")
        return None

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if not self.mine(event):
                continue
            msg = self.message(event)
            if msg is None:
                continue
            t = self.now()
            while self.recent and t - self.recent[0] >= 1.0:
                self.recent.popleft()
            if len(self.recent) >= self.per_second:
                self.held += 1
                continue
            self.recent.append(t)
            title, text, severity = msg
            self.toast(text, title=title, severity=severity)

    def flush(self) -> None:
        """Sum up what was held back (called once a second)."""
        if self.held:
            n, self.held = self.held, 0
            self.toast(f"{n} more event(s): see the events screen (e).", title="More events")
