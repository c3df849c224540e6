"""The live scheduler: an asyncio task that runs a pass on every event and on a tick.

Commands from the console or a plan go through `Scheduler` methods; each is applied to
the grid, written to the store and dispatched before the call returns, then the loop is
woken so a pass follows at once. Executor reports wake it too. A pass waits for the
group commit under way (`before_pass`), so the answers waiting on it go out first: a
client is told "accepted" without waiting for the pass its command woke, as `sbatch`
answers before Slurm's scheduler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..clock import Clock
from ..domain.model import Job, Reservation
from ..domain.specs import JobSpec, ReservationSpec
from ..policy.grid import Grid
from .engine import Engine, LeaseLost
from .executor import Exited, Report

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self, engine: Engine, clock: Clock, tick_s: float = 1.0) -> None:
        self.engine = engine
        self.clock = clock
        self.tick_s = tick_s
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.passes = 0
        self.errors: list[str] = []
        self.paused: str | None = None  # why the last pass did not run, if it did not
        self.listeners: list[Callable[[], None]] = []
        # Who commands act as when the caller names nobody (the console's user).
        # None acts as the system itself (simulator, trace replay, demo seeding).
        self.actor: str | None = None
        # Awaited before each pass: the store's group commit under way, if any.
        self.before_pass: Callable[[], Awaitable[None]] | None = None
        engine.executor.bind(self._report)

    @property
    def grid(self) -> Grid:
        return self.engine.grid

    def _report(self, report: Report) -> None:
        if isinstance(report, Exited) and report.ended_at is None:
            now = self.clock.now()
            if self.engine.held(now) is not None:
                # Heard while paused: billing stops now, not when the pause ends.
                report = dataclasses.replace(report, ended_at=now)
        self.engine.pending.append(report)
        self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    def start(self) -> asyncio.Task[None]:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self.run(), name="skyops-scheduler")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        """Passes until stopped, or until a write is fenced off (the lease is gone:
        retrying would only be refused again; the runtime demotes this console)."""
        while not self.engine.lost:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that comes as
            # the wake-up does (bpo-42130), and `stop` would then wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tick_s):
                    await self._wake.wait()
            self._wake.clear()
            if self.before_pass is not None:
                try:
                    await self.before_pass()
                except Exception as e:  # the fsync failed: its waiters report it
                    log.debug("group commit before the pass failed: %s", e)
            self.step()

    def step(self) -> None:
        now = self.clock.now()
        self.paused = self.engine.held(now)
        try:
            if self.paused is None:
                self.engine.step(now)
                self.passes += 1
        except LeaseLost as e:
            log.warning("scheduling pass refused, the lease is gone: %s", e)
            self.paused = f"lease lost: {e}"
        except Exception as e:  # a bad pass must not kill the loop; it is logged and shown
            error = f"scheduling pass failed: {e}"
            if self.errors and self.errors[-1] == error:
                log.debug(error)  # the same fault again (a locked store): said once
            else:
                log.exception("scheduling pass failed")
                self.errors.append(error)
        for fn in self.listeners:
            fn()

    def command(self, fn: Callable[[Grid, float], Any]) -> Any:
        result = self.engine.command(fn, self.clock.now())
        self.poke()
        return result

    # In-process conveniences over the one command path (control/commands.py): the
    # same models, handlers and rights check as the console, the CLI and the socket.
    def do(self, cmd: Any, actor: str | None = None) -> dict[str, Any]:
        from ..control import commands

        result = commands.run(self.engine, cmd, actor=actor or self.actor, now=self.clock.now())
        self.poke()
        return result

    def submit(self, spec: JobSpec, actor: str | None = None) -> Job:
        from ..control.commands import Submit

        return self.grid.jobs[self.do(Submit(spec=spec), actor)["id"]]

    def reserve(self, spec: ReservationSpec, actor: str | None = None) -> Reservation:
        from ..control.commands import Reserve

        return self.grid.reservations[self.do(Reserve(spec=spec), actor)["name"]]

    def cancel(self, ref: str | int, actor: str | None = None) -> None:
        from ..control.commands import Cancel

        self.do(Cancel(ref=ref), actor)

    def cancel_reservation(self, name: str, actor: str | None = None) -> None:
        from ..control.commands import CancelReservation

        self.do(CancelReservation(name=name), actor)

    def extend(self, ref: str | int, hours: float, actor: str | None = None) -> Job:
        from ..control.commands import Extend

        return self.grid.jobs[self.do(Extend(ref=ref, hours=hours), actor)["id"]]

    def change_bid(self, ref: str | int, bid: float, actor: str | None = None) -> Job:
        from ..control.commands import Bid

        return self.grid.jobs[self.do(Bid(ref=ref, bid=bid), actor)["id"]]

    def change_mode(self, ref: str | int, mode: str, actor: str | None = None) -> None:
        from ..control import commands

        self.do(commands.parse("mode", {"ref": ref, "mode": mode}), actor)
