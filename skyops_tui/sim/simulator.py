"""`skyops simulate`: the real engine, market and ledger through simulated time."""

from __future__ import annotations

import contextlib
import gc
import heapq
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..clock import ManualClock
from ..domain.config import Config
from ..domain.errors import Refused
from ..domain.model import (
    HOLDING,
    TERMINAL,
    Event,
    Job,
    JobState,
    Mode,
    NodeStatus,
    held_account,
)
from ..domain.money import to_micro
from ..policy import actions as A
from ..policy.funding import guard
from ..policy.grid import Grid
from ..policy.invariants import check_actions, check_placements, check_transactions, ledger_sum
from ..scheduler.engine import Engine
from ..scheduler.executor import Exited, NodeChanged
from ..store.db import Store
from .agents import SimExecutor
from .quality import quality
from .trace import NODE_KINDS, TraceLine

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_CANCELLED = JobState.CANCELLED
_EXPIRED = JobState.EXPIRED
_FAILED = JobState.FAILED
_RUNNING = JobState.RUNNING
_SUCCEEDED = JobState.SUCCEEDED
_FLEX = Mode.FLEX
_PRIORITY = Mode.PRIORITY
_DEGRADED = NodeStatus.DEGRADED
_UNREACHABLE = NodeStatus.UNREACHABLE
_UP = NodeStatus.UP

EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: simulated time starts here
FULL_CHECK_EVERY = 500
# Tests set this: each step, the kept wakeup is checked against a walk of every job.
CHECK_WAKEUPS = False


@dataclass
class SimResult:
    summary: dict
    grid: Grid
    # "line N (name): reason" for each trace line the grid refused.
    refused: list[str] = field(default_factory=list)
    # With `record`: every event and price row, as the store would have kept them.
    events: list[Event] = field(default_factory=list)
    prices: list[tuple[float, str, int]] = field(default_factory=list)


def next_wakeup(grid: Grid, now: float) -> float | None:
    """The next time a pass must run even if nothing reports: a warning, an expiry, a
    window edge, a retry, or a min_slice that ends while higher bids wait.

    This reads every holding and waiting job; `simulate` asks `_Wakeups`, which gives
    the same answer from the jobs that can still have a timer (see there)."""
    jobs = grid.jobs
    best = _priority_timers(grid, now, (jobs[j] for j in grid.index.holding), float("inf"))
    best = _min_slices(grid, now, (jobs[j] for j in grid.index.holding), best)
    retrying = (jobs[e[2]] for book in grid.index.flex_book.values() for e in book)
    return _other_timers(grid, now, retrying, best)


def _priority_timers(grid: Grid, now: float, held: Iterable[Job], best: float) -> float:
    """The earliest warning or expiry of the holding Priority jobs among `held`."""
    w1, w2 = grid.cfg.pricing.warn_before_s
    tick = grid.cfg.cluster.tick_s
    priority = _PRIORITY
    for job in held:
        end = job.end_at
        if job.mode is not priority or end is None or job.stop_reason:
            continue
        left = end - now
        bit = 2 if left <= w2 else 1 if left <= w1 else 0
        if bit and not job.warned & bit and now < now + tick < best:
            best = now + tick  # started inside its warning: the next pass warns
        t = end - w1
        if t <= now:
            t = end - w2
            if t <= now:
                t = end
        if now < t < best:
            best = t
    return best


def _min_slices(grid: Grid, now: float, held: Iterable[Job], best: float) -> float:
    """The earliest end of a min_slice among the holding Flex jobs in `held` that a
    waiting bid could displace once it ends."""
    min_slice = grid.cfg.pricing.min_slice_s
    outbid = 1 + grid.cfg.pricing.min_outbid
    books, markets = grid.index.flex_book, grid.markets
    untyped = books.get(None)
    top_any = -untyped[0][0] if untyped else 0
    top: dict[str, int] = {}  # per market of a job read: the highest bid waiting there
    flex = _FLEX
    for job in held:
        if job.mode is not flex or job.started_at is None:
            continue
        market = job.market or ""
        high = top.get(market)
        if high is None:
            b = books.get(market)
            high = -b[0][0] if b else 0
            if high < top_any:
                high = top_any
            if market not in markets:
                high = 0
            top[market] = high
        if high >= job.bid * outbid:
            t = job.started_at + min_slice
            if now < t < best:
                best = t
    return best


def _other_timers(
    grid: Grid, now: float, retrying: Iterable[Job], best: float, edges: bool = True
) -> float | None:
    """`best` or an earlier window edge (unless `edges` is False: `best` counts them
    already), retry of the waiting Flex jobs in `retrying`, or account running dry;
    None when there is none at all."""
    if edges:
        edge = _first_edge(grid, now)
        if edge is not None and edge < best:
            best = edge
    for job in retrying:
        if job.retries and now < job.retry_at < best:
            best = job.retry_at
    dry = guard(grid, now).runs_dry_at(now)  # an account about to run out of funds
    if dry is not None and now < dry < best:
        best = dry
    return None if best == float("inf") else best


def _first_edge(grid: Grid, now: float) -> float | None:
    """The first window edge after `now` of every live reservation."""
    w1, w2 = grid.cfg.pricing.warn_before_s
    best = None
    for res in grid.live_reservations():
        edge = _next_edge(res.windows, res.settled_windows, now, w1, w2)
        if edge is not None and (best is None or edge < best):
            best = edge
    return best


def _next_edge(
    windows: list[tuple[float, float]], settled: int, now: float, w1: float, w2: float
) -> float | None:
    """The first window edge after `now` (an opening, a warning, a close) of the
    windows not yet settled, in their order."""
    for i in range(settled, len(windows)):
        s, e = windows[i]
        for t in (s, e - w1, e - w2, e):
            if t > now:
                return t
    return None


class _Wakeups:
    """`next_wakeup`, kept from the events of each step instead of a walk of every
    holding and waiting job: a job can have a timer only if it is a holding Priority
    job (entered a holding state), a Flex job started less than min_slice ago (its
    `process started` event; only then can its min_slice still end), or a waiting
    Flex job that was retried (a `queued` event with retries). Those are the jobs
    kept here (a retried one only while it waits: its latest state event is neither a
    holding nor an ended state); each answer judges them by the same rules as
    `next_wakeup`.

    A holding Priority job's next warning or expiry stays the same until time reaches
    it or something happens to the job (an event: renewed, warned, stopped, left), so
    those are kept in a heap, judged again only then; the jobs inside a warning band,
    whose unsent warning makes the next pass come a tick later, are read every step
    (`_priority_timers` walked every holding Priority job each step)."""

    def __init__(self, grid: Grid) -> None:
        self.reset(grid)

    def reset(self, grid: Grid) -> None:
        """Start from `grid` as it is (a new simulation, or a console restarted)."""
        self.grid = grid
        self.min_slice = grid.cfg.pricing.min_slice_s
        self.w1, self.w2 = grid.cfg.pricing.warn_before_s
        self.tick = grid.cfg.cluster.tick_s
        # Holding Priority jobs: (next warning or expiry after the time it was judged,
        # job, its end_at then), stale entries dropped as they come up; the jobs inside
        # a warning band (now >= end - w1); those to judge again (an event about them).
        self.timers: list[tuple[float, int, float]] = []
        self.band: set[int] = set()
        self.recheck: set[int] = set()
        self.fresh: list[tuple[float, int]] = []  # (run start + min_slice, job)
        self.retrying: set[int] = set()
        # The first window edge as last found, and the reservations it was found on
        # (their count, the last booked, `Grid.reservations_rev`): it stays the first
        # while none is booked, cancelled or settles a window and time has not reached
        # it (no reservation's next edge lies before it).
        self.edge: tuple[tuple[int, int], object, float | None] | None = None
        for jid in grid.index.holding:
            job = grid.jobs[jid]
            if job.mode is _PRIORITY:
                self.recheck.add(jid)
            if job.started_at is not None:
                heapq.heappush(self.fresh, (job.started_at + self.min_slice, jid))
        for book in grid.index.flex_book.values():
            self.retrying.update(e[2] for e in book if self.grid.jobs[e[2]].retries)

    def see(self, events: list[Event]) -> None:
        jobs = self.grid.jobs
        priority = _PRIORITY
        for e in events:
            if e.job is None:
                continue
            if e.kind != "state":
                if jobs[e.job].mode is priority:
                    self.recheck.add(e.job)  # renewed or warned: its timers moved
                continue
            job = jobs[e.job]
            if job.mode is priority:
                self.recheck.add(job.id)
            if e.new in _HOLDING_NAMES:
                if e.new == _RUNNING:
                    heapq.heappush(self.fresh, (e.at + self.min_slice, job.id))
                self.retrying.discard(job.id)  # it runs: no retry waits
            elif e.new in _TERMINAL_NAMES:
                self.retrying.discard(job.id)
            elif job.retries:
                self.retrying.add(job.id)

    def _judge(self, job: Job, now: float) -> None:
        """Keep the holding Priority job's next timer after `now` (as `_priority_timers`
        finds it), and whether it is inside a warning band."""
        end = job.end_at
        if job.mode is not _PRIORITY or end is None or job.stop_reason:
            return
        if job.id not in self.grid.index.holding:
            return
        w1 = self.w1
        t = end - w1
        if t <= now:
            self.band.add(job.id)
            t = end - self.w2
            if t <= now:
                t = end
        if now < t:
            heapq.heappush(self.timers, (t, job.id, end))

    def _priority_timers(self, now: float) -> float:
        """`_priority_timers` over the holding Priority jobs, from the kept heap."""
        g = self.grid
        jobs, holding = g.jobs, g.index.holding
        if self.recheck:
            for jid in self.recheck:
                self._judge(jobs[jid], now)
            self.recheck.clear()
        heap = self.timers
        while heap:
            t, jid, end = heap[0]
            job = jobs[jid]
            if jid not in holding or job.end_at != end or job.stop_reason:
                heapq.heappop(heap)  # an event about it has judged it again
            elif t <= now:
                heapq.heappop(heap)
                self._judge(job, now)
            else:
                break
        best = heap[0][0] if heap else float("inf")
        if self.band:
            w1, w2, tick = self.w1, self.w2, self.tick
            out = []
            for jid in self.band:
                job = jobs[jid]
                end_at = job.end_at
                if jid not in holding or end_at is None or job.stop_reason:
                    out.append(jid)
                    continue
                left = end_at - now
                bit = 2 if left <= w2 else 1 if left <= w1 else 0
                if not bit:
                    out.append(jid)  # renewed: its heap entry brings it back
                elif not job.warned & bit and now < now + tick < best:
                    best = now + tick  # started inside its warning: the next pass warns
            self.band.difference_update(out)
        return best

    def next(self, now: float) -> float | None:
        g = self.grid
        jobs, holding = g.jobs, g.index.holding
        best = self._priority_timers(now)
        fresh = self.fresh
        while fresh and fresh[0][0] <= now:
            heapq.heappop(fresh)
        if fresh:
            recent = [jobs[j] for _, j in fresh if j in holding]
            if recent:
                best = _min_slices(g, now, recent, best)
        # (nothing to walk while no job waits for a retry, most steps)
        waiting: Iterable[Job] = (
            (
                job
                for job in (jobs[j] for j in self.retrying)
                if job.mode is _FLEX and job.state in _BOOKED
            )
            if self.retrying
            else ()
        )
        book = g.reservations
        last = next(reversed(book.values())) if book else None
        kept = self.edge
        if (
            kept is None
            or kept[0] != (len(book), g.reservations_rev)
            or kept[1] is not last
            or (kept[2] is not None and now >= kept[2])
        ):
            kept = self.edge = ((len(book), g.reservations_rev), last, _first_edge(g, now))
        edge = kept[2]
        if edge is not None and edge < best:
            best = edge
        return _other_timers(g, now, waiting, best, edges=False)


def pass_after(
    grid: Grid,
    now: float,
    actions: list,
    wakeup: Callable[[float], float | None] | None = None,
) -> float | None:
    """When the next pass runs. Production runs one at least every `tick_s`; here a pass
    follows at once a step that closed a window (its GPUs are free only once the close
    is applied, after the pass that decided it), one tick after a step that asked jobs
    to stop while a Priority job waits (production's next pass is the one that sees
    their GPUs being freed, and the waiting job claims them then, booked from that
    moment), else at the next timer (`wakeup`: `next_wakeup` kept incrementally).
    The actions are walked in plain loops (a generator each cost more than the walk:
    a step has two or three actions but its Settles)."""
    stops = False
    for a in actions:
        if isinstance(a, A.CloseWindow):
            return now
        if isinstance(a, _STOPS):
            stops = True
    wake = next_wakeup(grid, now) if wakeup is None else wakeup(now)
    if stops and grid.index.priority_queue:
        t = now + grid.cfg.cluster.tick_s
        wake = t if wake is None else min(wake, t)
    return wake


_STOPS = (A.Stop, A.Preempt)


# Allocations between young collections during a run (CPython's default: 700).
GC_YOUNG = 20_000


@contextlib.contextmanager
def _collector_quiet() -> Iterator[None]:
    """For the length of a run: what exists before it (the trace, the config, modules)
    is left out of the cyclic collector's walks (`gc.freeze`), and young objects are
    collected less often. A run makes little cyclic garbage but keeps every job it
    admitted, so the collector's full walks of the trace and the grid cost 2-4 % of a
    100k-job run. Thresholds are restored afterwards, and the freeze undone unless the
    process had frozen objects of its own before (a console that did keeps them so)."""
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    gc.freeze()
    young, middle, old = threshold
    if young:  # 0: the process turned collection off; it stays off
        gc.set_threshold(max(young, GC_YOUNG), max(middle, 20), max(old, 20))
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        if not frozen:
            gc.unfreeze()


def simulate(
    trace: list[TraceLine],
    cfg: Config,
    progress: Callable[[int, int], None] | None = None,
    record: bool = False,
    tick_s: float | None = None,
    store_path: str | Path | None = None,
) -> SimResult:
    """Run `trace` through the real engine. `tick_s`: also run a pass every that many
    seconds while anything runs or is due, as production's loop does (billing then
    happens at the config's `billing_interval_s` as it would there); by default passes
    run only when something happens, which bills the same (docs/simulator.md).

    A trace with `restart` lines (or a `store_path`) keeps its grid in a real SQLite
    store, written by every pass as production's is, so that a restart can reload it
    the way a restarted console does; `store_path` names that file (default: a
    temporary one, removed at the end).

    The run keeps the collector off what existed before it (the trace, the config,
    modules) and collects young objects less often (`_collector_quiet`); results do
    not depend on it."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_collector_quiet())
        stored = None
        if store_path is not None or any(t.kind == "restart" for t in trace):
            if store_path is None:
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="skyops-sim-"))
                store_path = Path(folder) / "skyops.db"
            stored = stack.enter_context(_Stored(Path(store_path), cfg))
        return _simulate(trace, cfg, progress, record, tick_s, stored)


def _simulate(
    trace: list[TraceLine],
    cfg: Config,
    progress: Callable[[int, int], None] | None,
    record: bool,
    tick_s: float | None,
    stored: _Stored | None,
) -> SimResult:
    wall0 = time.perf_counter()
    clock = ManualClock(EPOCH)
    grid = Grid(cfg, EPOCH)
    balance = to_micro(cfg.simulation.initial_balance)
    for user in sorted({t.user for t in trace if t.kind in _ACCOUNT_KINDS}):
        grid.ensure_account(user, EPOCH, balance)
    ex = SimExecutor(
        clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s, cfg.cluster.stop_grace_s
    )
    engine = Engine(grid, ex)
    ex.attach(grid)
    take: Callable[[Grid], tuple[list, list, list]] = Grid.drain
    if stored is not None:
        engine.persist = stored.persister(clock)
        stored.persist(grid, [], EPOCH)  # the opening balances and the nodes
        take = stored.take
    violations: list[str] = []
    refused: list[str] = []
    refusals: list[dict] = []
    nodes = _NodeWatch(cfg.cluster.heartbeat_timeout_s)
    held = _Held()
    counters = {"tx": 0}
    kept_events: list[Event] = []
    kept_prices: list[tuple[float, str, int]] = []
    take(grid)
    wakeups = _Wakeups(grid)
    i, n = 0, len(trace)
    submits = [t.submit + EPOCH for t in trace]
    wake: float | None = EPOCH
    steps = 0
    last_progress = 0
    while True:
        # The earliest of: the next trace line, a simulated report, the next timer,
        # a node's heartbeat deadline, a tick (while anything runs or is due) and, with
        # reports waiting, now.
        cur = clock.now()
        best = submits[i] if i < n else None
        t = ex.next_time()
        if t is not None and (best is None or t < best):
            best = t
        if wake is not None and (best is None or wake < best):
            best = wake
        busy = best is not None or bool(grid.index.holding)
        if nodes.timers:
            t = nodes.timers[0][0]
            if best is None or t < best:
                best = t
        if tick_s and busy:
            t = cur + tick_s
            if best is None or t < best:
                best = t
        if engine.pending and (best is None or cur < best):
            best = cur
        if best is None:
            break
        now = cur if cur > best else best
        clock.set(now)
        while i < n and submits[i] <= now:
            item = trace[i]
            i += 1
            if item.kind == "restart" and stored is not None:
                grid, engine = stored.restart(engine, ex, now)
                wakeups.reset(grid)
                continue
            try:
                _submit(engine, item, now, ex, nodes)
            except Refused as e:
                _refuse(refused, refusals, item, i, str(e))
        engine.pending += nodes.due(now)
        ex.fire(now)
        lost_now = nodes.lost_now
        actions = engine.step(now)
        if lost_now:
            ex._reap_lost(now)  # runs on a node declared lost end now, whatever passes follow
        engine.absorb(now)  # simulated starts are instant: no second pass needed for them
        steps += 1
        events, txs, prices = take(grid)
        held.see(grid, events)
        wakeups.see(events)
        if record:
            kept_events += events
            kept_prices += prices
        counters["tx"] += len(txs)
        # Most of a step's actions are Settles, which none of the checks below read.
        actions = engine.others
        violations += check_actions(grid, actions, now)
        violations += check_transactions(grid, txs)
        touched: set[int] | None = None  # the jobs this step started (most start none)
        for a in actions:
            if isinstance(a, A.Start):
                if touched is None:
                    touched = set()
                touched.add(a.job)
        if touched:
            violations += check_placements(grid, touched)
        if steps % FULL_CHECK_EVERY == 0:
            violations += check_placements(grid)
        wake = pass_after(grid, now, actions, wakeups.next)
        if CHECK_WAKEUPS and wake != pass_after(grid, now, actions):
            raise AssertionError(f"wakeup at {now}: {wake} kept, {next_wakeup(grid, now)} walked")
        if progress and (i - last_progress >= 1000 or i == n):
            progress(i, n)
            last_progress = i
        if len(violations) > 1000:
            break
    violations += check_placements(grid)
    end = clock.now()
    # Settle what is still running at the end of the trace.
    for jid in list(grid.index.holding):
        grid.settle(grid.jobs[jid], end)
    if stored is not None:
        stored.persist(grid, [], end)
    events, txs, prices = take(grid)
    held.see(grid, events)
    if record:
        kept_events += events
        kept_prices += prices
    violations += check_transactions(grid, txs)
    wall = time.perf_counter() - wall0
    # Each job's count: a preemption called off is not one (docs/modes.md).
    preemptions = sum(j.preemptions for j in grid.jobs.values())
    summary = _summary(grid, ex, preemptions, end - EPOCH, wall, violations, steps)
    summary.update(bills(grid, held.total(end), refusals))
    return SimResult(
        summary,
        grid,
        refused,
        kept_events,
        kept_prices,
    )


def _submit(
    engine: Engine, item: TraceLine, now: float, ex: SimExecutor, nodes: _NodeWatch
) -> None:
    name = item.name or ""
    if item.kind in NODE_KINDS:
        nodes.line(engine.grid, item, now)
    elif item.kind == "extend":
        engine.command(lambda g, t: g.extend(name, item.hours or 0, t), now)
    elif item.kind == "deposit":
        amount = to_micro(item.amount or 0)
        engine.command(lambda g, t: g.deposit(item.user, amount, t, f"deposit by {item.user}"), now)
    elif item.kind == "fail":
        _fail(engine.grid, ex, name, item.exit_code, now)
    elif item.kind == "job":
        spec = item.job_spec()
        engine.command(lambda g, t: g.submit(spec, t), now)
    elif item.kind == "reservation":
        spec_r = item.reservation_spec(EPOCH)
        engine.command(lambda g, t: g.reserve(spec_r, t), now)
    elif item.kind == "cancel":
        # TraceLine's validator requires name on cancel and bid lines: `name` is item.name.
        if name in engine.grid.reservations:
            engine.command(lambda g, t: g.cancel_reservation(name, t), now)
        else:
            engine.command(lambda g, t: g.cancel(name, t), now)
    elif item.kind == "bid":
        engine.command(lambda g, t: g.change_bid(name, item.bid or 0, t), now)


class _Stored:
    """The simulated console's state file, for traces that restart it. Every pass is
    written through the store's own `persist`, as production writes it; the outbox each
    write takes is kept for the simulator's checks and summary."""

    def __init__(self, path: Path, cfg: Config) -> None:
        self.path = path
        self.cfg = cfg
        self.store = Store(path)
        self.outbox: list[tuple[list, list, list]] = []
        self.clock: ManualClock | None = None

    def __enter__(self) -> _Stored:
        return self

    def __exit__(self, *exc: object) -> None:
        self.store.close()

    def persist(self, grid: Grid, actions: list[A.Action], now: float) -> None:
        box = (grid.events, grid.transactions, grid.prices)
        self.store.persist(grid, actions, now)
        self.outbox.append(box)

    def persister(self, clock: ManualClock) -> Callable[[Grid, list[A.Action]], None]:
        self.clock = clock
        return lambda grid, actions: self.persist(grid, actions, clock.now())

    def take(self, grid: Grid) -> tuple[list, list, list]:
        """Everything written since the last call, and what is still unwritten."""
        self.outbox.append(grid.outbox.take_records())
        events, txs, prices = [], [], []
        for ev, tx, pr in self.outbox:
            events += ev
            txs += tx
            prices += pr
        self.outbox = []
        return events, txs, prices

    def restart(self, engine: Engine, ex: SimExecutor, now: float) -> tuple[Grid, Engine]:
        """A `restart` line: the console writes what it holds, stops, and a new one
        loads the grid from the file (prices from its rows, not from memory) and takes
        over the agents, whose runs went on meanwhile."""
        self.persist(engine.grid, [], now)
        self.store.close()
        self.store = Store(self.path)
        grid = self.store.load_grid(self.cfg, now)
        fresh = Engine(grid, ex, engine.persist)
        fresh.pending += engine.pending  # reports the old console had not applied
        ex.jobs = {jid: grid.jobs[jid] for jid in ex.jobs}
        ex.attach(grid)
        return grid, fresh


# ---------------------------------------------------------------- the whole bill
def _refuse(
    refused: list[str], refusals: list[dict], item: TraceLine, index: int, why: str
) -> None:
    line = item.line or index  # a trace built in code: its position
    refused.append(f"line {line} ({item.name or item.node or item.user}): {why}")
    refusals.append({"line": line, "kind": item.kind, "name": item.name, "reason": why})


def _fail(grid: Grid, ex: SimExecutor, name: str, code: int, now: float) -> None:
    """A `fail` line: the job's run in progress exits with `code` now, keeping the
    checkpoints it saved on its way (docs/simulator.md)."""
    job = grid.job_by_ref(name)
    token = ex.token.get(job.id)
    if job.state not in HOLDING or token is None:
        raise Refused(f"job {job.name} has no run in progress ({job.state})")
    if not job.stop_reason:  # a stopping run had its checkpoints counted when told to stop
        ex._save(job, ex.run_start.get(job.id, now), now)
    ex._at(now, Exited(job.id, code, completed=True, cause=f"exited with status {code}"), token)


class _NodeWatch:
    """`silent`, `back` and `lost` lines, as the fleet sees a node (fleet/node.py): no
    heartbeat for `heartbeat_timeout_s` makes it degraded (nothing new placed there, its
    jobs left alone), 4 x that makes it unreachable, its jobs handled as lost and billed
    only to when it was last heard from."""

    def __init__(self, heartbeat_timeout_s: float) -> None:
        self.timeout = heartbeat_timeout_s
        self.silent: dict[str, float] = {}  # node -> last heard from
        self.timers: list[tuple[float, str, NodeStatus]] = []
        self.lost_now = False  # the last `due` declared a node lost

    def line(self, grid: Grid, item: TraceLine, now: float) -> None:
        name = item.node or ""
        node = grid.nodes.get(name)
        if node is None:
            raise Refused(f"no node named {name}")
        if item.kind == "silent":
            if name in self.silent or node.status is _UNREACHABLE:
                raise Refused(f"node {name} is already silent")
            self.silent[name] = now
            self.timers += [
                (now + self.timeout, name, _DEGRADED),
                (now + 4 * self.timeout, name, _UNREACHABLE),
            ]
        elif item.kind == "lost":
            if node.status is _UNREACHABLE:
                raise Refused(f"node {name} is already lost")
            self.timers = [t for t in self.timers if t[1] != name]
            self.timers.append((now, name, _UNREACHABLE))
            self.silent.setdefault(name, now)
        else:
            if name not in self.silent and node.status is not _UNREACHABLE:
                raise Refused(f"node {name} was not silent")
            self.silent.pop(name, None)
            self.timers = [t for t in self.timers if t[1] != name]
            self.timers.append((now, name, _UP))
        self.timers.sort()

    def next_time(self) -> float | None:
        return self.timers[0][0] if self.timers else None

    def due(self, now: float) -> list[NodeChanged]:
        out: list[NodeChanged] = []
        self.lost_now = False
        while self.timers and self.timers[0][0] <= now:
            _, name, status = self.timers.pop(0)
            since = self.silent.get(name)
            if status is _UNREACHABLE:
                self.silent.pop(name, None)
                self.lost_now = True
                out.append(NodeChanged(name, status, f"node {name} unreachable", since))
            elif status is _DEGRADED:
                quiet = now - (since or now)
                out.append(NodeChanged(name, status, f"no heartbeat for {quiet:.0f} s"))
            else:
                out.append(NodeChanged(name, status, f"node {name} heard from again"))
        return out


class _Held:
    """GPU-seconds each job held its GPUs, from its process start to leaving them."""

    def __init__(self) -> None:
        self.since: dict[int, tuple[float, int]] = {}
        self.gpu_s: dict[int, float] = {}

    def see(self, grid: Grid, events: list[Event]) -> None:
        for e in events:
            if e.kind != "state" or e.job is None:
                continue
            if e.new == _RUNNING:
                self.since[e.job] = (e.at, grid.jobs[e.job].gpu_total)
            elif e.job in self.since and e.new not in _HOLDING_NAMES:
                start, gpus = self.since.pop(e.job)
                self.gpu_s[e.job] = self.gpu_s.get(e.job, 0.0) + (e.at - start) * gpus

    def total(self, end: float) -> dict[int, float]:
        out = dict(self.gpu_s)
        for jid, (start, gpus) in self.since.items():
            out[jid] = out.get(jid, 0.0) + (end - start) * gpus
        return out


_HOLDING_NAMES = {str(s) for s in HOLDING}
_TERMINAL_NAMES = {str(s) for s in TERMINAL}
_BOOKED = (JobState.QUEUED, JobState.PAUSED)  # a Flex job in these is in the order book
# Lines whose user has an account; on the others `user` is only who acts.
_ACCOUNT_KINDS = ("job", "reservation", "deposit")


def bills(grid: Grid, held_gpu_s: dict[int, float], refusals: list[dict]) -> dict:
    """The summary's whole bill: per job, per reservation, per account, and the trace
    lines the grid refused. Money in micro-units; `charged` is net of `refunded`."""
    jobs = {
        j.name: {
            "user": j.user,
            "mode": str(j.mode),
            "state": str(j.state),
            "runs": j.runs,
            "gpu_seconds": round(held_gpu_s.get(j.id, 0.0), 3),
            "charged": j.charged,
            "refunded": j.refunded,
            "preemptions": j.preemptions,
            "retries": j.retries,
            "lost_work_s": round(j.lost_work_s, 3),
        }
        for j in sorted(grid.jobs.values(), key=lambda j: j.id)
    }
    reservations = {
        r.name: {
            "user": r.user,
            "prepaid": r.prepaid,
            "refunded": r.refunded,
            "credited": r.credited,
            "held": grid.balances.get(held_account(r.name), 0),
        }
        for r in grid.reservations.values()
    }
    accounts = {
        a.removeprefix("user:"): v
        for a, v in sorted(grid.balances.items())
        if a.startswith("user:")
    }
    return {
        "bills": jobs,
        "reservation_bills": reservations,
        "balances": accounts,
        "refused_lines": len(refusals),
        "refused": refusals,
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    k = min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))
    return values[k]


def _summary(
    grid: Grid,
    ex: SimExecutor,
    preemptions: int,
    span: float,
    wall: float,
    violations: list[str],
    steps: int,
) -> dict:
    jobs = list(grid.jobs.values())
    by_state = {s: 0 for s in JobState}
    for j in jobs:
        by_state[j.state] += 1
    waits: dict[str, list[float]] = {m.value: [] for m in Mode}
    for j in jobs:
        if j.first_started_at is not None:
            waits[j.mode.value].append(j.first_started_at - j.submitted_at)
    gpus = sum(n.gpu_count for n in grid.nodes.values() if n.status is not _UNREACHABLE)
    used = ex.used_gpu_s
    revenue = grid.balances.get("revenue", 0)
    refunds = sum(r.refunded + r.credited for r in grid.reservations.values())
    return {
        "jobs": len(jobs),
        "reservations": len(grid.reservations),
        "succeeded": by_state[_SUCCEEDED],
        "failed": by_state[_FAILED],
        "expired": by_state[_EXPIRED],
        "cancelled": by_state[_CANCELLED],
        "unfinished": sum(1 for j in jobs if not j.finished),
        "preemptions": preemptions,
        "gpu_hours_used": round(used / 3600, 3),
        "gpu_utilization": round(used / (gpus * span), 4) if gpus and span > 0 else 0.0,
        "mean_wait_s": {m: round(sum(w) / len(w), 1) if w else 0.0 for m, w in waits.items()},
        "p95_wait_s": {m: round(_pct(w, 0.95), 1) for m, w in waits.items()},
        "lost_work_gpu_hours": round(ex.lost_work_gpu_s / 3600, 3),
        "revenue": revenue,
        "refunds": refunds,
        "ledger_sum": sum(grid.balances.values()),
        "simulated_s": round(span, 1),
        "steps": steps,
        "wall_s": round(wall, 3),
        "jobs_per_wall_s": round(len(jobs) / wall, 1) if wall > 0 else 0.0,
        "violations": violations[:100],
        "quality": quality(grid, ex.lost_work_gpu_s, EPOCH + span),
    }


__all__ = ["simulate", "SimResult", "EPOCH", "next_wakeup", "HOLDING", "Job", "ledger_sum"]
