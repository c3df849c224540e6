"""Everything one running console needs, wired together: config, grid, store, executor,
scheduler, clock. The TUI, the headless commands and the tests all build a `Runtime`.

The UI reads live state from the in-memory grid (it is the scheduler's own, so it is
never stale) and recent events, transactions and prices from the runtime's feed, which
sees every change on its way to the store.
"""

from __future__ import annotations

import getpass
import os
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
        self.scheduler = Scheduler(self.engine, self.clock, cfg.cluster.tick_s)

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
        starter = getattr(self.executor, "start", None)
        if starter is not None:
            await starter(self)
        self.scheduler.start()

    async def stop(self) -> None:
        await self.scheduler.stop()
        closer = getattr(self.executor, "close", None)
        if closer is not None:
            await closer()

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
