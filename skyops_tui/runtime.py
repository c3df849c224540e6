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
import random
import socket
import sqlite3
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .clock import Clock, SystemClock
from .domain.config import Config
from .domain.model import Event, Job, Mode, Transaction
from .policy import actions as A
from .policy.grid import Grid
from .scheduler.engine import Engine, LeaseLost, NotLeading
from .scheduler.executor import Executor
from .scheduler.loop import Scheduler
from .store.schema import StoreError

if TYPE_CHECKING:
    from .control.commands import Command
    from .domain.telemetry import NodeSample
    from .store.db import Store

FEED = 2000
LEASE_TTL_S = 5.0  # a leader silent this long is replaced by another console
# A leader stops acting this share of the TTL before its lease ends by its own clock, so
# it is idle before any other console may take over.
LEASE_MARGIN = 0.2
POLL_S = 0.1  # how often the leader checks its lease and its unanswered journal rows
FOLLOW_S = 1.0  # how often a follower reloads the grid and tries for the lease
log = logging.getLogger(__name__)


@dataclass
class Feed:
    """Recent history for the screens: events, transactions and price points."""

    events: deque[Event] = field(default_factory=lambda: deque(maxlen=FEED))
    transactions: deque[Transaction] = field(default_factory=lambda: deque(maxlen=FEED))
    prices: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    listeners: list[Callable[[list[Event]], None]] = field(default_factory=list)
    # Every change, for the API's watchers: (events, transactions, prices).
    watchers: list[Callable[[list, list, list], None]] = field(default_factory=list)

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
        if events or txs or prices:
            for w in list(self.watchers):
                w(events, txs, prices)


class Backoff:
    """Retry delays for a store fault: doubling up to `cap_s`, each scaled by a random
    0.5-1.0, so consoles that hit one lock together do not retry in step."""

    def __init__(self, base_s: float, cap_s: float) -> None:
        self.base_s = base_s
        self.cap_s = cap_s
        self.tries = 0

    def next(self) -> float:
        delay = min(self.cap_s, self.base_s * 2**self.tries)
        self.tries += 1
        return delay * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.tries = 0


def current_user() -> str:
    """Who the person running this process says they are: names the demo's operator
    and the user a process that leads acts as. Never an identity on the socket: the
    server asks the kernel (api/server.py)."""
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
        store: Store | None = None,
        grid: Grid | None = None,
        user: str | None = None,
        demo: bool = False,
        readonly: bool = False,
        lease_ttl_s: float = LEASE_TTL_S,
        follow_s: float = FOLLOW_S,
        socket_path: str | Path | None = None,
        remote: bool = False,
        keep_ended: int | None = None,
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
        if store is not None and keep_ended is not None:
            # Ended jobs beyond the latest `keep_ended` leave memory (docs/store.md).
            store.keep_ended = keep_ended
        if grid is None:
            grid = store.load_grid(cfg, now) if store is not None else Grid(cfg, now)
        for m in grid.markets.values():
            self.feed.prices.setdefault(m.gpu_type, deque(maxlen=FEED)).append((now, m.price))
        executor.attach(grid)
        self.engine = Engine(grid, executor, self._persist)
        self.local = Scheduler(self.engine, self.clock, cfg.cluster.tick_s)
        self.local.actor = self.user
        if store is not None:
            self.local.before_pass = store.flushed  # answers before the pass they woke
        # Where the leader serves the API (docs/api.md); None serves nothing.
        self.socket_path = Path(socket_path) if socket_path is not None else None
        self.api: Any = None
        self.samples: dict[str, NodeSample] = {}  # a follower's telemetry, from the leader
        self._watch: asyncio.Task | None = None
        self._reload_now = asyncio.Event()
        # A remote console (`--connect`) only ever follows the head's leader, through
        # its socket: no store, no lease. Otherwise, without a store this process leads.
        self.remote = remote
        self.remote_operator: bool | None = None  # as the head's leader said hello
        self.leader = store is None and not remote
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._control: asyncio.Task | None = None
        self._started = False
        self._last_event_id = 0
        self.role_listeners: list[Callable[[], None]] = []
        self.lease_ttl_s = lease_ttl_s
        self.follow_s = follow_s
        # A lease attempt waits this long for another process's lock, then backs off.
        self.lease_wait_s = min(0.5, lease_ttl_s / 10)
        self.epoch: int | None = None  # of the lease this console holds or last held
        self._lease_until = float("-inf")  # by this console's clock, less the margin
        self._renew_at = float("-inf")
        self._fault: str | None = None
        self._fault_error: Exception | None = None
        self._nudge = asyncio.Event()
        # Commands applied whose answer could not be written yet (store fault).
        self._unanswered: dict[int, tuple[str, dict]] = {}
        self.engine.lost_listeners.append(self._nudge.set)
        self._watching = False  # the feed comes from the leader's watch stream

    @property
    def scheduler(self) -> Scheduler:
        """The in-process scheduler (a leader's; tests and seeding drive it directly).
        People's commands go through `call`, whoever leads."""
        return self.local

    @property
    def _db(self) -> Store:
        """The store, for the lease, the journal and reloads: only a console with a
        store ever reaches them (without one it leads, or follows a remote leader)."""
        assert self.store is not None, "this console has no store"
        return self.store

    # ------------------------------------------------------------------ commands
    async def call(self, cmd: Command) -> dict:
        """Apply a command as this console's user: in-process when this console leads,
        else through the leader's socket. Never blocks the event loop waiting for
        another process. Raises Refused (or StoreError) with nothing changed."""
        if self.leader:
            result = self.apply(cmd, self.user)
            await self.durable()
            return result
        from .api.client import ApiClient, NoLeader

        try:
            async with ApiClient.connected(self.api_path()) as client:
                result = await client.command(cmd.kind, cmd.payload())
        except NoLeader:
            if self._fault_error is not None:  # why this process could not lead itself
                raise StoreError(self.store_message(self._fault_error)) from None
            raise
        if self.store is not None:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.to_thread(self.reload)
        self._reload_now.set()
        return result

    def apply(self, cmd: Command, actor: str | None, journal: bool = False) -> dict:
        """The leader's side of every command. With `journal` (commands from the
        socket) the command is first recorded as received, and its event is written in
        the same transaction as its change, so after a crash it is known whether it was
        applied (docs/api.md, "Exactly once"). A change that could not be written is
        voided: this console drops its grid and reloads the store's."""
        from .control import commands
        from .domain.errors import Refused
        from .store.control import enqueue, waiting_at_most

        now = self.clock.now()
        why = self.engine.held(now)
        if why is not None:
            raise NotLeading(f"not applied: {why}; try again in a moment")
        cid = None
        if journal and self.store is not None:
            with waiting_at_most(self.store, max(self._lease_until - now, 0.05)):
                cid = enqueue(self.store, cmd.kind, cmd.payload(), actor or "system", now)
        try:
            result = commands.run(self.engine, cmd, actor=actor, now=now, journal=cid)
        except Refused as e:
            self._answer(cid, "refused", {"message": str(e)})
            raise
        except sqlite3.Error as e:
            log.warning("a command could not be written (%s); reloading the stored grid", e)
            self._store_fault(e)
            self.engine.lost = True  # the grid holds a change the store does not: void it
            self._nudge.set()
            raise
        self._answer(cid, "done", result)
        self.local.poke()
        return result

    async def durable(self) -> None:
        """Wait until every change applied so far survives power loss (docs/store.md,
        Durability): asked before a client is told its command was accepted."""
        if self.store is not None:
            await self.store.durable()

    def _answer(self, cid: int | None, status: str, result: dict) -> None:
        if cid is None:
            return
        self._unanswered[cid] = (status, result)
        self._flush_answers()

    def _flush_answers(self) -> None:
        from .store.control import finish_command

        for cid, (status, result) in list(self._unanswered.items()):
            try:
                finish_command(self._db, cid, status, result, self.clock.now())
            except (sqlite3.Error, LeaseLost) as e:
                log.debug("answer to command %s not written yet: %s", cid, e)
                return
            del self._unanswered[cid]

    def api_path(self) -> Path:
        if self.socket_path is None:
            from .domain.errors import Refused

            raise Refused("this console serves no API socket")
        return self.socket_path

    def store_message(self, e: Exception) -> str:
        if self.store is None or not isinstance(e, sqlite3.Error):
            return str(e)
        from .store.db import store_fault

        return str(store_fault(Path(self.store.path), e))

    def sample(self, node: str) -> NodeSample | None:
        """The node's last telemetry: the executor's when leading, the leader's (by
        watch) when following."""
        if not self.leader:
            return self.samples.get(node)
        return self.executor.telemetry(node)

    def telemetry(self) -> dict[str, dict]:
        """Every node's last sample, for the API's watchers."""
        out = {}
        for name in self.grid.nodes:
            s = self.sample(name)
            if s is not None:
                out[name] = _sample_json(s)
        return out

    @property
    def grid(self) -> Grid:
        return self.engine.grid

    @property
    def is_operator(self) -> bool:
        if self.remote_operator is not None:
            return self.remote_operator
        return self.cfg.is_operator(self.user)

    def _persist(self, grid: Grid, actions: list[A.Action]) -> None:
        if self.store is not None:
            # The store drains the grid's outbox inside its transaction; mirror it first.
            from .store.control import waiting_at_most

            events, txs, prices = list(grid.events), list(grid.transactions), list(grid.prices)
            now = self.clock.now()
            # A leader's write waits for a lock only while its lease lasts: a pass stuck
            # behind another process's lock must not freeze the console past that.
            wait = max(self._lease_until - now, 0.05) if self.engine.hold is not None else None
            with waiting_at_most(self.store, wait):
                self.store.persist(grid, actions, now)
        else:
            events, txs, prices = grid.drain()
        self.feed.take(events, txs, prices)

    @property
    def store_fault(self) -> str | None:
        """Why this console cannot use the state database right now (and so whether it
        schedules), for the status line; None when all is well."""
        if self._fault is None:
            return None
        if self.leader and self.engine.held(self.clock.now()) is not None:
            return f"state database: {self._fault}; scheduling paused until the lease is renewed"
        return f"state database: {self._fault}; retrying"

    def _store_fault(self, e: Exception) -> None:
        if self._fault is None:
            log.warning(
                "state database unavailable (%s); retrying with backoff (a leader that "
                "cannot renew its lease stops scheduling)",
                e,
            )
        self._fault = str(e) or type(e).__name__
        self._fault_error = e

    def _store_ok(self) -> None:
        if self._fault is not None:
            log.warning("state database available again")
            self._fault = None
            self._fault_error = None

    def _hold(self, now: float) -> str | None:
        """The engine's guard: act only while the lease is surely ours by our own clock."""
        if now < self._lease_until:
            return None
        why = f": {self._fault}" if self._fault else ""
        return f"scheduling paused, the scheduler lease is not renewed{why}"

    async def _acquire(self) -> tuple[float, int | None]:
        from .store.control import acquire_lease

        now = self.clock.now()
        # In a thread: a locked file must not freeze the screens while it waits.
        epoch = await asyncio.to_thread(
            acquire_lease, self._db, self.holder, now, self.lease_ttl_s, self.lease_wait_s
        )
        return now, epoch

    def _hold_lease(self, now: float, epoch: int) -> None:
        from .store.db import Fence

        self.epoch = epoch
        self._lease_renewed(now)
        self._db.fence = Fence(
            self.holder,
            epoch,
            self.clock.now,
            ttl_s=self.lease_ttl_s,
            due=self._lease_due,
            renewed=self._lease_renewed,
        )

    def _lease_due(self, now: float) -> bool:
        return now >= self._renew_at

    def _lease_renewed(self, now: float) -> None:
        """The lease was renewed at `now` (by the lease loop, or by one of this leader's
        writes): it is surely ours until a margin before its end by our clock. Never
        moved back: the loop's renewal, started before a write's, may end after it."""
        self._lease_until = max(self._lease_until, now + self.lease_ttl_s * (1 - LEASE_MARGIN))
        self._renew_at = max(self._renew_at, now + self.lease_ttl_s / 4)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(self._control_ended)
        return task

    def _control_ended(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            log.error("the scheduler lease loop stopped: %r", e, exc_info=e)
            self._fault = f"the lease loop stopped: {e}"

    async def start(self) -> None:
        """Lead if no other console does (holding the scheduler lease), else follow."""
        if self.remote:
            self._control = self._spawn(self._follow_remote())
            return
        if self.store is not None:
            from .store.db import Fence

            self.engine.hold = self._hold
            epoch = None
            try:
                now, epoch = await self._acquire()
            except sqlite3.DatabaseError as e:
                self._store_fault(e)
            if epoch is not None:
                self._hold_lease(now, epoch)
            else:
                # No lease holds epoch 0: a follower's store refuses any decision.
                self.store.fence = Fence(self.holder, 0, self.clock.now)
            self.leader = epoch is not None
        if self.leader:
            await self._lead()
        else:
            with contextlib.suppress(sqlite3.DatabaseError):
                self._last_event_id = max((e.id for e in self._db.events(limit=1)), default=0)
            self._control = self._spawn(self._follow())

    async def _lead(self) -> None:
        self.engine.lost = False
        if self.store is not None:
            self.store.checkpoint_in_background()  # no checkpoint stalls a pass
        await self.executor.start(self.store.grid_id if self.store is not None else "")
        self.local.start()
        self._started = True
        if self.store is not None:
            self._settle_journal()
            await self._serve()
            self._control = self._spawn(self._lead_loop())
        for fn in self.role_listeners:
            fn()

    async def _lead_loop(self) -> None:
        backoff = Backoff(2 * POLL_S, self.lease_ttl_s / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._nudge.wait()
            self._nudge.clear()
            if self.engine.lost:
                log.warning("a write was refused, the scheduler lease is not ours; following")
                await self._demote()
                return
            if self.clock.now() >= self._renew_at:
                try:
                    now, epoch = await self._acquire()
                except sqlite3.DatabaseError as e:
                    self._store_fault(e)
                    self._renew_at = self.clock.now() + backoff.next()
                    continue
                backoff.reset()
                self._store_ok()
                if epoch is None or epoch != self.epoch:
                    # Another console holds it, or held it meanwhile: this grid is stale.
                    log.warning("scheduler lease lost; following the new leader")
                    await self._demote()
                    return
                paused = self.engine.held(now) is not None
                self._hold_lease(now, epoch)
                if paused:
                    log.warning("scheduler lease renewed; scheduling resumes")
                    self.local.poke()
            if self.engine.held(self.clock.now()) is not None:
                continue
            self._flush_answers()

    async def _serve(self) -> None:
        if self.socket_path is None or self.api is not None:
            return
        from .api.server import ApiServer
        from .domain.errors import InputError

        api = ApiServer(self, self.socket_path)
        try:
            await api.start()
        except (OSError, InputError) as e:
            # This process still leads; other processes cannot reach it (said once).
            why = "; ".join(e.messages) if isinstance(e, InputError) else str(e)
            log.warning("not serving the API on %s: %s", self.socket_path, why)
            return
        self.api = api

    async def _unserve(self) -> None:
        if self.api is not None:
            api, self.api = self.api, None
            await api.close()

    def _settle_journal(self) -> None:
        """Answer what the last leader received but did not answer: a command whose
        event is in the store was applied (once); any other never was, and never will
        be (its caller was told the scheduler went away)."""
        from .store.control import finish_command, pending_commands

        try:
            store = self._db
            for cmd in pending_commands(store, limit=10_000):
                with store._lock:
                    applied = store._rows(
                        "SELECT 1 FROM events WHERE kind = 'command' AND cause LIKE ? LIMIT 1",
                        (f"#{cmd.id} %",),
                    )
                if applied:
                    answer = ("done", {"message": "applied before the scheduler restarted"})
                else:
                    answer = (
                        "failed",
                        {"message": "the scheduler stopped before applying it; nothing changed"},
                    )
                finish_command(store, cmd.id, *answer, self.clock.now())
        except (sqlite3.Error, LeaseLost) as e:
            log.warning("could not settle the command journal yet: %s", e)

    async def _demote(self) -> None:
        self.leader = False
        self.engine.lost = True  # nothing more from this engine until it leads again
        await self._unserve()
        await self.local.stop()
        await self.executor.close()
        self._started = False
        # Reports and answers belong to the grid being dropped; the new leader
        # reconciles with the agents and answers the queue itself.
        self.engine.pending.clear()
        self._unanswered.clear()
        self._control = self._spawn(self._follow())
        for fn in self.role_listeners:
            fn()

    async def _follow(self) -> None:
        """Show the leader's state; take over when its lease lapses. Store faults are
        retried with backoff: a follower outlives a locked file.

        Each change the leader's watch stream announces asks for a reload, but a burst
        of them gets one: a reload waits `follow_s / 4` after the last, as a remote
        console's fetch does (a busy leader announces a change every few tens of ms,
        and a reload of a 512-node grid takes about 50 ms of this loop). The lease is
        tried every `follow_s`, not at each reload: each try is a write transaction
        on the leader's file."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.follow_s, max(self.follow_s, self.lease_ttl_s / 2))
        delay = self.follow_s
        lease_at = 0.0  # loop time of the next lease try
        if self.socket_path is not None and self._watch is None:
            self._watch = loop.create_task(self._watch_leader())
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._reload_now.wait()
            self._reload_now.clear()
            epoch = None
            try:
                await self._reload_aside()
                if loop.time() >= lease_at:
                    now, epoch = await self._acquire()
                    lease_at = loop.time() + self.follow_s
                if epoch is not None:
                    self._hold_lease(now, epoch)
                    self.reload(now)  # what the last leader wrote before its lease ended
            except sqlite3.DatabaseError as e:
                self._store_fault(e)
                delay = backoff.next()
                continue
            self._store_ok()
            backoff.reset()
            if epoch is not None:
                log.info("took over the scheduler lease (epoch %d)", epoch)
                await self._unwatch()
                self.leader = True
                await self._lead()
                return
            await asyncio.sleep(self.follow_s / 4)  # a burst of changes: one reload
            delay = max(lease_at - loop.time(), 0.0)

    async def _follow_remote(self) -> None:
        """A remote console's view: the leader's feed by watch, and its grid (fetched
        through the socket) again after each change, at most once per `follow_s`."""
        from .api.remote import fetch_state

        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_leader())
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.follow_s):
                    await self._reload_now.wait()
            self._reload_now.clear()
            try:
                _, grid, _ = await fetch_state(self.api_path(), self.cfg)
            except Exception as e:  # the leader restarting, the tunnel gone: retry
                self._fault = f"the head's scheduler: {e}"
            else:
                self._fault = None
                self.engine.grid = grid
            await asyncio.sleep(self.follow_s / 4)  # a burst of changes: one fetch

    async def _unwatch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        self.samples.clear()
        self._watching = False

    async def _watch_leader(self) -> None:
        """A follower's live view: the leader's history (events, transactions, prices)
        and telemetry, as the leader has them, then each change; the grid itself is
        reloaded (read-only) from the store when a change arrives."""
        from .api.client import ApiClient, NoLeader

        while True:
            try:
                async with ApiClient.connected(self.api_path()) as client:
                    async for msg in client.watch():
                        self._take_watch(msg)
            except (NoLeader, ConnectionError, OSError) as e:
                log.debug("no leader to watch yet: %s", e)
            except Exception as e:  # a bad message must not end the follower's view
                log.warning("watching the leader failed: %r", e)
            self._watching = False
            await asyncio.sleep(self.follow_s)

    def _take_watch(self, msg: dict) -> None:
        from .api import protocol as P

        events = [Event(**e) for e in msg.get("events", [])]
        txs = [_tx_from_json(t) for t in msg.get("transactions", [])]
        if msg["type"] == P.SNAPSHOT:
            self._watching = True
            self.feed.events.clear()
            self.feed.transactions.clear()
            self.feed.prices.clear()
            prices = [(at, t, p) for t, pts in msg.get("prices", {}).items() for at, p in pts]
        else:
            prices = [tuple(p) for p in msg.get("prices", [])]
        self.samples = {n: _sample_from_json(d) for n, d in msg.get("telemetry", {}).items()}
        self.feed.take(events, txs, prices)
        self._reload_now.set()

    def reload(self, now: float | None = None) -> None:
        """Replace the grid with the store's (a follower's view of the leader's state)."""
        now = self.clock.now() if now is None else now
        self._take_grid(self._db.load_grid(self.cfg, now))

    async def _reload_aside(self) -> None:
        """`reload`, with the grid read and built in a worker thread: at 512 nodes that
        is some 50 ms, and a follower reloads after each burst of the leader's changes
        (two or three times a second when it is busy). On the loop it held every key
        and frame for the whole of it; aside, the loop takes its turns with the GIL
        (every 5 ms) and SQLite's reads run beside it. The store's lock keeps the
        screens' own reads of the file apart from it."""
        grid = await asyncio.to_thread(self._db.load_grid, self.cfg, self.clock.now())
        self._take_grid(grid)

    def _take_grid(self, grid: Grid) -> None:
        self.engine.grid = grid
        self.executor.attach(grid)
        events = self._db.events(limit=FEED, since_id=self._last_event_id)
        if events and not self._watching:
            self._last_event_id = events[-1].id
            # The store's records carry Event's fields plus the row `id`: the feed holds
            # Events, which is what a watcher of this console rebuilds once it leads.
            fields = Event.__dataclass_fields__
            self.feed.take([Event(**{k: getattr(e, k) for k in fields}) for e in events], [], [])

    async def stop(self) -> None:
        await self._unwatch()
        await self._unserve()
        if self._control is not None:
            self._control.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._control
            self._control = None
        if self._started:
            await self.local.stop()
            await self.executor.close()
            self._started = False
        if self.store is not None and self.leader:
            from .store.control import release_lease

            try:
                release_lease(self.store, self.holder, self.lease_wait_s)
            except sqlite3.DatabaseError as e:
                log.warning("could not release the scheduler lease (%s); it ends by itself", e)

    # Read helpers the screens share
    def jobs(self, mode: Mode | None = None) -> list[Job]:
        """Every job ever admitted (those that left memory read back from the store)."""
        from .policy.resident import every_job

        return [j for j in every_job(self.grid.jobs) if mode is None or j.mode is mode]

    def queue_position(self, job: Job) -> int | None:
        """1-based place in the Priority FIFO, or None if not queued there."""
        for k, (_, jid) in enumerate(self.grid.priority_queue, 1):
            if jid == job.id:
                return k
        return None


def _sample_json(s: NodeSample) -> dict:
    return {
        "node": s.node,
        "at": s.at,
        "fake": s.fake,
        "note": s.note,
        "gpus": [{k: getattr(g, k) for k in g.__dataclass_fields__} for g in s.gpus],
    }


def _sample_from_json(d: dict) -> NodeSample:
    from .domain.telemetry import GpuSample, NodeSample

    gpus = tuple(GpuSample(**g) for g in d.get("gpus", []))
    return NodeSample(d["node"], d["at"], gpus, d.get("fake", False), d.get("note", ""))


def _tx_from_json(d: dict) -> Transaction:
    entries = [(a, v) for a, v in d["entries"]]
    return Transaction(d["at"], d["reason"], entries, d.get("job"), d.get("reservation"))
