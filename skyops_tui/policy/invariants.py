"""Checks that must hold after every step; the simulator and the tests run them."""

from __future__ import annotations

import operator
import re
from collections import deque
from dataclasses import dataclass, field
from itertools import compress

from ..domain.model import HOLDING, Job, JobState, Mode, Transaction, user_account
from . import actions as A
from .funding import credit_limit
from .grid import Grid
from .pergrid import PerGrid
from .windows import fits_shape, shape

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_PAUSED = JobState.PAUSED
_QUEUED = JobState.QUEUED
_FLEX = Mode.FLEX

# Whom a preemption was for, read from its cause (planner.py words them so).
_PREEMPTOR = re.compile(
    r"^(?:preempted for priority job |outbid by |reclaimed for Commit job )(\S+)"
)
COMMIT_SLACK_S = 60.0  # beyond the graces, how long a fitting owner job may wait
_BID = operator.attrgetter("bid")


@dataclass
class Watch:
    """What the order checks remember from step to step, per grid."""

    # victim -> (GPUs it held, name of the job it was preempted for)
    preempted: dict[int, tuple[frozenset[tuple[str, int]], str]] = field(default_factory=dict)
    preempt_times: dict[int, deque[float]] = field(default_factory=dict)
    starts: dict[Mode, list[float]] = field(default_factory=dict)  # start times per mode
    commit_blocked: dict[int, float] = field(default_factory=dict)  # owner job -> since


_WATCHES: PerGrid[Watch] = PerGrid()


def watch(grid: Grid) -> Watch:
    w = _WATCHES.get(grid)
    if w is None:
        w = _WATCHES.put(grid, Watch())
    return w


def max_preemptions_per_hour(grid: Grid) -> int:
    """More than this many preemptions of one job in an hour is churn, not a market:
    an outbid needs `min_slice` of running plus a grace each time."""
    p, c = grid.cfg.pricing, grid.cfg.cluster
    return max(6, int(3600 // max(p.min_slice_s + c.grace_s, 1)) + 2)


def check_order(grid: Grid, actions: list[A.Action], now: float) -> list[str]:
    """Order and waste (docs/modes.md, *Queue, backfill and claims*): no Flex start
    while a fitting Priority job waits; no victim resumed on its GPUs while the job it
    was preempted for still waits and still ranks ahead of it; no Commit owner job kept waiting in an open window
    that holds enough GPUs for it (`check_commit_waits`); no job preempted more than N
    times an hour."""
    w = watch(grid)
    out: list[str] = []
    limit = None  # counted once a step preempts (most do not)
    flex_starts: list[A.Start] = []
    for a in actions:
        if isinstance(a, A.Preempt):
            if limit is None:
                limit = max_preemptions_per_hour(grid)
            job = grid.jobs[a.job]
            m = _PREEMPTOR.match(a.cause)
            if m:
                held = frozenset((p.node, i) for p in job.placement for i in p.gpus)
                w.preempted[job.id] = (held, m.group(1))
            times = w.preempt_times.setdefault(job.id, deque())
            times.append(now)
            while times and times[0] <= now - 3600:
                times.popleft()
            if len(times) == limit + 1:
                out.append(f"job {job.name} preempted {len(times)} times within an hour")
        elif isinstance(a, A.Start):
            job = grid.jobs[a.job]
            w.starts.setdefault(job.mode, []).append(now)
            gpus = {(p.node, i) for p in a.placement for i in p.gpus}
            mine = w.preempted.pop(job.id, None)
            if mine is not None and mine[0] & gpus:
                by = grid.job_names.get(mine[1])
                p = grid.jobs.get(by) if by is not None else None
                if (
                    p is not None
                    and p.state in (_QUEUED, _PAUSED)
                    and not _behind_victim(p, job)
                    and _fits_instead(grid, p, a, mine[0] & gpus, now)
                    and _fundable(grid, p, a.market, now)
                ):
                    out.append(
                        f"flex job {job.name} resumed on its GPUs while {p.name}, "
                        "which preempted it, still waits"
                    )
            if w.preempted:
                for vid in [v for v, (g, _) in w.preempted.items() if g & gpus]:
                    del w.preempted[vid]  # someone else got its GPUs: the preemption served
            if job.mode is _FLEX:
                flex_starts.append(a)
    if flex_starts and grid.index.priority_queue:
        out += _flex_before_priority(grid, flex_starts, now)
    if grid.index.commit_waiting and (grid.index.commit_busy or w.commit_blocked):
        out += check_commit_waits(grid, now)  # (with no owner job waiting, nothing to do)
    return out


def _behind_victim(p: Job, victim: Job) -> bool:
    """A Flex preemptor whose owner lowered its bid since (or the victim's raised its
    own) to where the victim ranks ahead of it in the book: the victim's turn comes
    first, as the market's order says (highest bid, then the earlier job)."""
    return p.mode is _FLEX and (-victim.bid, victim.seq, victim.id) < (-p.bid, p.seq, p.id)


def _fits_instead(
    grid: Grid, p: Job, start: A.Start, back: frozenset[tuple[str, int]], now: float
) -> bool:
    """Whether `p` would fit where the victim came back: on its GPUs and the free ones
    beside them (else higher-ranked jobs took the room and the victim may have it). Only
    GPUs `p` may use count: a window opened on the victim's GPUs since holds them for
    its owner, and Flex may borrow them but Priority may not (docs/modes.md). Nor may a
    Flex preemptor count free unreserved GPUs while a funded Priority job of the type
    waits, nor a window's idle GPUs while its owner's jobs wait: a pass keeps them for
    those (a head's node, a Commit claim; *Queue, backfill and claims*), which the grid
    after the pass does not show."""
    flex = p.mode is _FLEX
    for pl in start.placement:
        node = grid.nodes[pl.node]
        mine = sum(1 for n, i in back if n == pl.node and (flex or node.reserved[i] is None))
        free = node.n_free
        if flex:
            if free and _priority_waits(grid, node.gpu_type, now):
                free = 0
            free += sum(
                1
                for i, r in enumerate(node.reserved)
                if r is not None
                and node.holders[i] is None
                and not grid.index.commit_waiting.get(r)
            )
        if (node.gpu_count if p.nodes else p.gpus) <= mine + free:
            return True
    return False


def _priority_waits(grid: Grid, gpu_type: str, now: float) -> bool:
    """A funded Priority job of the type waits (it may be kept free GPUs of any node)."""
    from .funding import guard

    g = None
    for _, jid in grid.index.priority_queue[:50]:
        q = grid.jobs[jid]
        if q.gpu_type not in (None, gpu_type):
            continue
        g = g or guard(grid, now)
        node = next(iter(grid.by_type.get(gpu_type) or []), None)
        need = q.gpus or q.nodes * (node.gpu_count if node else 1)
        if g.can_start(q, gpu_type, need):
            return True
    return False


def _fundable(grid: Grid, job: Job, market: str, now: float) -> bool:
    """A job its account cannot fund now waits for money, not for GPUs."""
    from .funding import guard

    node = next(iter(grid.by_type.get(market) or []), None)
    need = job.gpus or job.nodes * (node.gpu_count if node else 1)
    return guard(grid, now).can_start(job, market, need)


def _flex_before_priority(grid: Grid, starts: list[A.Start], now: float) -> list[str]:
    from .funding import guard

    out = []
    g = None
    waiting = [grid.jobs[j] for _, j in grid.index.priority_queue[:50]]
    for a in starts:
        flex = grid.jobs[a.job]
        if flex.state not in HOLDING:
            continue
        for p in a.placement:
            node = grid.nodes[p.node]
            mine = sum(1 for i in p.gpus if node.reserved[i] is None)
            if not mine:
                continue  # lent reserved GPUs only: nothing a Priority job could use
            room = node.n_free + mine
            for q in waiting:
                if q.nodes or q.gpus > room or q.gpu_type not in (None, node.gpu_type):
                    continue
                end = now + (q.hours if q.hours is not None else 1.0) * 3600
                if grid.commit_demand(node.gpu_type, now, end)[0]:
                    continue  # it may have to leave room for a window: Flex does not
                g = g or guard(grid, now)
                if not g.can_start(q, node.gpu_type, q.gpus):
                    continue
                out.append(
                    f"flex job {flex.name} started on {p.node} while priority job {q.name} "
                    f"({q.gpus} GPU) waits and fits there"
                )
                break
    return out


def check_commit_waits(grid: Grid, now: float) -> list[str]:
    """An owner's job kept out of an open window that holds enough GPUs for it (a
    window split across nodes, issue 17 story 1): windows are held in their shape
    (policy/windows.py), so the GPUs a window holds can take its owner's jobs."""
    w = watch(grid)
    if not grid.index.commit_busy:  # no owner job waits: none is kept out of a window
        w.commit_blocked.clear()
        return []
    out = []
    c = grid.cfg.cluster
    allowed = c.grace_s + c.stop_grace_s + COMMIT_SLACK_S
    still: set[int] = set()
    queues = grid.index.commit_waiting  # a queue per reservation ever booked, most of them empty
    for name, queue in compress(queues.items(), queues.values()):
        res = grid.reservations.get(name)
        if res is None or res.active_window is None:
            continue
        per_node: dict[str, int] = {}
        for n, i in res.held:
            node = grid.nodes[n]
            h = node.holders[i]
            if node.schedulable and (h is None or grid.jobs[h].mode is _FLEX):
                per_node[n] = per_node.get(n, 0) + 1
        usable = sum(per_node.values())
        job = grid.jobs[queue[0][1]]
        widest = max((n.gpu_count for n in grid.by_type.get(res.gpu_type, [])), default=0)
        if job.gpus > usable or job.gpus > widest:
            continue  # (a job wider than any node of the type can never start)
        if max(per_node.values()) < job.gpus:
            # No node has room for it: a wait for the owner's own jobs, unless the
            # window is held split, out of its shape (windows.py).
            on: dict[str, int] = {}
            for n, _ in res.held:
                on[n] = on.get(n, 0) + 1
            sizes = [n.gpu_count for n in grid.by_type.get(res.gpu_type, [])]
            parts = sorted(on.values(), reverse=True)
            if len(res.held) < res.gpus or fits_shape(parts, shape(sizes, res.gpus), res.gpus):
                continue
        still.add(job.id)
        since = w.commit_blocked.setdefault(job.id, now)
        if now - since > allowed:
            out.append(
                f"commit job {job.name} waits {now - since:.0f} s in an open window of "
                f"{name} holding {usable} GPUs it could use"
            )
            w.commit_blocked[job.id] = now  # once per stretch, not every step
    for jid in [j for j in w.commit_blocked if j not in still]:
        del w.commit_blocked[jid]
    return out


def check_actions(grid: Grid, actions: list[A.Action], now: float | None = None) -> list[str]:
    """Checks the actions of one step, once applied. A step may hold two passes (the
    engine runs another when a window opens): only the last price of a market is in
    force, so only that one is held against the bids running after the step. With
    `now`, the order checks (`check_order`) run too."""
    out = [] if now is None else check_order(grid, actions, now)
    last_price: dict[str, A.SetPrice] = {}
    for a in actions:  # (a loop: a comprehension is a call, for two or three actions)
        if isinstance(a, A.SetPrice):
            last_price[a.gpu_type] = a
    for a in actions:
        if isinstance(a, A.Preempt):
            job = grid.jobs[a.job]
            if job.mode is not _FLEX:
                out.append(f"{job.mode} job {job.name} preempted ({a.cause})")
        elif isinstance(a, A.SetPrice):
            m = grid.markets[a.gpu_type]
            if a.price < m.floor:
                out.append(f"{a.gpu_type} clearing price {a.price} under the floor {m.floor}")
            if last_price[a.gpu_type] is not a:
                continue
            ids, job_of = grid.index.flex_running[a.gpu_type], grid.jobs.__getitem__
            # The lowest bid first: only under the price can one pay more.
            low = _lowest_bid(grid, a.gpu_type)
            if low is not None and low < a.price:
                for job in map(job_of, ids):
                    if job.bid < a.price and not job.stop_reason:
                        out.append(f"flex job {job.name} pays {a.price} above its bid {job.bid}")
    return out


def _lowest_bid(grid: Grid, gpu_type: str) -> int | None:
    """The lowest bid of the type's Flex runs (stopping or not; None without runs),
    kept while the type's `Grid.holds_rev` stands: every run's start or end and every
    change of a running job's state, stop or bid raises it (planner/flex.py keeps its
    runs on the same count). Read in C when counted again."""
    kept = _LOWEST.get(grid)
    if kept is None:
        kept = _LOWEST.put(grid, {})
    rev = grid.holds_rev.get(gpu_type, 0)
    got = kept.get(gpu_type)
    if got is None or got[0] != rev:
        ids = grid.index.flex_running[gpu_type]
        got = kept[gpu_type] = (
            rev,
            min(map(_BID, map(grid.jobs.__getitem__, ids))) if ids else None,
        )
    elif CHECK_LOWEST:
        ids = grid.index.flex_running[gpu_type]
        low = min(map(_BID, map(grid.jobs.__getitem__, ids))) if ids else None
        if low != got[1]:
            raise AssertionError(
                f"{gpu_type}: lowest Flex bid kept as {got[1]}, the runs say {low}"
            )
    return got[1]


# Per grid and type: (Grid.holds_rev, the lowest bid of its Flex runs then).
_LOWEST: PerGrid[dict[str, tuple[int, int | None]]] = PerGrid()
# Tests set this: a kept lowest bid is counted again from the runs and must agree.
CHECK_LOWEST = False


def check_transactions(grid: Grid, txs: list[Transaction]) -> list[str]:
    out = []
    # Every account posted to; the users' are picked out once at the end (a step
    # may post thousands of transactions to a few accounts).
    seen: set[str] = set()
    add = seen.add
    for tx in txs:
        entries = tx.entries
        try:  # nearly every one has two entries (billing's): the same sum, unrolled
            (a, v), (b, w) = entries
        except ValueError:
            pass  # more or fewer: summed below
        else:
            add(a)
            add(b)
            if v + w:
                out.append(f"unbalanced transaction: {tx.reason}")
            continue
        total = 0
        for a, v in entries:
            total += v
            add(a)
        if total:
            out.append(f"unbalanced transaction: {tx.reason}")
    limit = credit_limit(grid)
    floor = -limit
    balances = grid.balances
    for acct in seen:
        # The balance first: it is rarely below the floor (the name is read only then).
        if balances.get(acct, 0) < floor and acct.startswith("user:"):
            out.append(f"{acct} balance {balances[acct]} beyond its limit -{limit}")
    return out


def check_placements(grid: Grid, job_ids: set[int] | None = None) -> list[str]:
    """Every GPU a holding job claims is held by it, and no GPU by two jobs."""
    out = []
    ids = grid.index.holding if job_ids is None else job_ids
    for jid in ids:
        job = grid.jobs.get(jid)
        if job is None or job.state not in HOLDING:
            continue
        for p in job.placement:
            node = grid.nodes[p.node]
            for i in p.gpus:
                if node.holders[i] != jid:
                    out.append(f"job {job.name} placed on {p.node}:{i} held by {node.holders[i]}")
    if job_ids is None:
        for node in grid.nodes.values():
            for i, h in enumerate(node.holders):
                if h is not None:
                    job = grid.jobs[h]
                    if job.state not in HOLDING or not any(
                        p.node == node.name and i in p.gpus for p in job.placement
                    ):
                        out.append(
                            f"{node.name}:{i} held by job {job.name} ({job.state}) not placed there"
                        )
    return out


def ledger_sum(grid: Grid) -> int:
    return sum(grid.balances.values())


def user_balance(grid: Grid, user: str) -> int:
    return grid.balances.get(user_account(user), 0)
