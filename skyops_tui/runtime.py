"""Everything one running console needs, wired together: config, grid, store, executor,
scheduler, clock. The TUI, the headless commands and the tests all build a `Runtime`.

The UI reads live state from the in-memory grid (it is the scheduler's own, so it is
never stale) and recent events, transactions and prices from the runtime's feed, which
sees every change on its way to the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock
from .domain.config import Config
from .domain.model import Event, Job, Mode, Transaction
from .policy import actions as A
from .policy.grid import Grid
from .scheduler.engine import Engine
from .scheduler.executor import Executor
from .scheduler.loop import Scheduler

FEED = 2000
LEASE_TTL_S = 5.0  # a leader silent this long is replaced by another console
POLL_S = 0.1  # how often the leader looks for queued commands
FOLLOW_S = 1.0  # how often a follower reloads the grid and tries for the lease
log = logging.getLogger(__name__)


@dataclass
class Feed:
    """Recent history for the screens: events, transactions and price points."""

    events: deque[Event] = field(default_factory=lambda: deque(maxlen=FEED))
    transactions: deque[Transaction] = field(default_factory=lambda: deque(maxlen=FEED))
    prices: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    listeners: list[Callable[[list[Event]], None]] = field(default_factory=list)

    def take(
        self, events: list[Event], txs: list[Transaction], prices: list[tuple[float, str, int]]
    ) -> None:
        self.events.extend(events)
        self.transactions.extend(txs)
        for at, t, p in prices:
            self.prices.setdefault(t, deque(maxlen=FEED)).append((at, p))
        if events:
            for fn in self.listeners:
                fn(events)


def current_user() -> str:
    try:
        return os.environ.get("SKYOPS_USER") or getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "operator"


class Runtime:
    def __init__(
        self,
        cfg: Config,
        executor: Executor,
        clock: Clock | None = None,
        store: Any | None = None,
        grid: Grid | None = None,
        user: str | None = None,
        demo: bool = False,
        readonly: bool = False,
    ) -> None:
        self.cfg = cfg
        self.clock = clock or SystemClock()
        self.store = store
        self.executor = executor
        self.user = user or current_user()
        self.demo = demo
        self.readonly = readonly
        self.feed = Feed()
        now = self.clock.now()
        if grid is None:
            grid = store.load_grid(cfg, now) if store is not None else Grid(cfg, now)
        for m in grid.markets.values():
            self.feed.prices.setdefault(m.gpu_type, deque(maxlen=FEED)).append((now, m.price))
        attach = getattr(executor, "attach", None)
        if attach is not None:
            attach(grid)
        self.engine = Engine(grid, executor, self._persist)
        self.local = Scheduler(self.engine, self.clock, cfg.cluster.tick_s)
        self.local.actor = self.user
        self.remote = RemoteScheduler(self)
        # Without a store nobody shares the grid: this process leads.
        self.leader = store is None
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._control: asyncio.Task | None = None
        self._started = False
        self._last_event_id = 0
        self.role_listeners: list[Callable[[], None]] = []

    @property
    def scheduler(self) -> Scheduler | RemoteScheduler:
        """Where commands go: this process's scheduler if it leads, else the queue."""
        return self.local if self.leader else self.remote

    @property
    def grid(self) -> Grid:
        return self.engine.grid

    @property
    def is_operator(self) -> bool:
        return self.cfg.is_operator(self.user)

    def _persist(self, grid: Grid, actions: list[A.Action]) -> None:
        if self.store is not None:
            # The store drains the grid's outbox inside its transaction; mirror it first.
            events, txs, prices = list(grid.events), list(grid.transactions), list(grid.prices)
            self.store.persist(grid, actions, self.clock.now())
        else:
            events, txs, prices = grid.drain()
            grid.dirty_jobs.clear()
            grid.dirty_nodes.clear()
            grid.dirty_reservations.clear()
        self.feed.take(events, txs, prices)

    async def start(self) -> None:
        """Lead if no other console does (holding the scheduler lease), else follow."""
        if self.store is not None:
            from .store.control import acquire_lease

            self.leader = acquire_lease(self.store, self.holder, self.clock.now(), LEASE_TTL_S)
        if self.leader:
            await self._lead()
        else:
            self._last_event_id = max((e.id for e in self.store.events(limit=1)), default=0)
            self._control = asyncio.get_running_loop().create_task(self._follow())

    async def _lead(self) -> None:
        starter = getattr(self.executor, "start", None)
        if starter is not None:
            await starter(self)
        self.local.start()
        self._started = True
        if self.store is not None:
            self._control = asyncio.get_running_loop().create_task(self._lead_loop())
        for fn in self.role_listeners:
            fn()

    async def _lead_loop(self) -> None:
        from .control import commands
        from .domain.errors import InputError, Refused
        from .store.control import acquire_lease, finish_command, pending_commands

        renewed = self.clock.now()
        while True:
            await asyncio.sleep(POLL_S)
            now = self.clock.now()
            if now - renewed >= LEASE_TTL_S / 4:
                if not acquire_lease(self.store, self.holder, now, LEASE_TTL_S):
                    log.warning("scheduler lease lost; following the new leader")
                    await self._demote()
                    return
                renewed = now
            for cmd in pending_commands(self.store):
                try:
                    result = commands.run(self.engine, cmd.kind, cmd.payload, cmd.actor, now)
                    finish_command(self.store, cmd.id, "done", result, now)
                except Refused as e:
                    finish_command(self.store, cmd.id, "refused", {"message": str(e)}, now)
                except InputError as e:
                    finish_command(
                        self.store, cmd.id, "refused", {"message": "\n".join(e.messages)}, now
                    )
                except Exception as e:  # a bad command must not stop the leader
                    log.exception("command %s failed", cmd.id)
                    finish_command(
                        self.store, cmd.id, "failed", {"message": f"{type(e).__name__}: {e}"}, now
                    )

    async def _demote(self) -> None:
        self.leader = False
        await self.local.stop()
        closer = getattr(self.executor, "close", None)
        if closer is not None:
            await closer()
        self._control = asyncio.get_running_loop().create_task(self._follow())
        for fn in self.role_listeners:
            fn()

    async def _follow(self) -> None:
        """Show the leader's state; take over when its lease lapses."""
        from .store.control import acquire_lease

        while True:
            await asyncio.sleep(FOLLOW_S)
            now = self.clock.now()
            self.reload(now)
            if acquire_lease(self.store, self.holder, now, LEASE_TTL_S):
                log.info("took over the scheduler lease")
                self.leader = True
                self.reload(now)
                await self._lead()
                return

    def reload(self, now: float | None = None) -> None:
        """Replace the grid with the store's (a follower's view of the leader's state)."""
        now = self.clock.now() if now is None else now
        grid = self.store.load_grid(self.cfg, now)
        self.engine.grid = grid
        attach = getattr(self.executor, "attach", None)
        if attach is not None:
            attach(grid)
        events = self.store.events(limit=FEED, since_id=self._last_event_id)
        if events:
            self._last_event_id = events[-1].id
            self.feed.take(list(events), [], [])

    async def stop(self) -> None:
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control
            self._control = None
        if self._started:
            await self.local.stop()
            closer = getattr(self.executor, "close", None)
            if closer is not None:
                await closer()
            self._started = False
        if self.store is not None and self.leader:
            from .store.control import release_lease

            release_lease(self.store, self.holder)

    # Read helpers the screens share
    def jobs(self, mode: Mode | None = None) -> list[Job]:
        jobs = self.grid.jobs.values()
        return [j for j in jobs if mode is None or j.mode is mode]

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the Priority FIFO, or None if not queued there."""
        for k, (_, jid) in enumerate(self.grid.priority_queue, 1):
            if jid == job.id:
                return k
        return None


class RemoteScheduler:
    """A follower's commands: queued in the store for the leader, answered within a
    second or two. Same methods as `Scheduler`; raises `Refused` the same way."""

    def __init__(self, rt: Runtime, timeout_s: float = 10.0) -> None:
        self.rt = rt
        self.timeout_s = timeout_s

    def call(self, kind: str, payload: dict) -> dict:
        from .domain.errors import Refused
        from .store.control import command, enqueue

        store = self.rt.store
        cid = enqueue(store, kind, payload, self.rt.user, self.rt.clock.now())
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            row = command(store, cid)
            if row is not None and row.status != "pending":
                self.rt.reload()
                if row.status == "done":
                    return row.result or {}
                raise Refused((row.result or {}).get("message", row.status))
            time.sleep(0.02)
        raise Refused(
            f"no scheduler answered within {self.timeout_s:.0f} s (is a console running?)"
        )

    def submit(self, spec, actor: str | None = None) -> Job:
        r = self.call("submit", {"spec": spec.model_dump(mode="json")})
        return self.rt.grid.jobs[r["id"]]

    def reserve(self, spec, actor: str | None = None):
        r = self.call("reserve", {"spec": spec.model_dump(mode="json")})
        return self.rt.grid.reservations[r["name"]]

    def cancel(self, ref, actor: str | None = None) -> None:
        self.call("cancel", {"ref": ref})

    def cancel_reservation(self, name: str, actor: str | None = None) -> None:
        self.call("cancel_reservation", {"name": name})

    def extend(self, ref, hours: float, actor: str | None = None) -> Job:
        r = self.call("extend", {"ref": ref, "hours": hours})
        return self.rt.grid.jobs[r["id"]]

    def change_bid(self, ref, bid: float, actor: str | None = None) -> Job:
        r = self.call("bid", {"ref": ref, "bid": bid})
        return self.rt.grid.jobs[r["id"]]

    def change_mode(self, ref, mode: str, actor: str | None = None) -> None:
        self.call("mode", {"ref": ref, "mode": mode})

    def poke(self) -> None:
        pass
