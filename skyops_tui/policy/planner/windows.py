"""Commit windows open and close (docs/modes.md, *Commit*).

A window that opens holds its GPUs in its shape (policy/windows.py): free ones first,
then ones Flex holds, which stay lent until an owner's job needs them. One that closes
stops the owner's jobs; its value is recognised and its downtime credited when the
action is applied. A window short of GPUs (a node lost) takes spares later. This runs
after the claims of earlier passes are served, so no window is placed on GPUs a claim
counts on, and before Priority admission, which must leave the windows their GPUs.
"""

from __future__ import annotations

import functools

from ...domain.model import JobState, Mode, NodeStatus, Reservation
from .. import actions as A
from ..pergrid import PerGrid
from ..windows import live_reservations, shape
from .state import PRIORITY_POOL, PassState, R

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_EXPIRED = JobState.EXPIRED
_FLEX = Mode.FLEX
_UNREACHABLE = NodeStatus.UNREACHABLE

# Per grid: what the last walk of the live reservations was judged on (their count,
# the last booked, Grid.windows_rev) and when the first of them can act: the earliest
# next window of those without an open one, the earliest end of those with one, and
# whether one of those misses GPUs. Tests set CHECK_QUIET: a quiet pass walks anyway
# and must do nothing.
_QUIET: PerGrid[tuple[tuple[int, object, int], float, float, bool]] = PerGrid()
CHECK_QUIET = False
_INF = float("inf")


def windows(s: PassState) -> None:
    """Open and close the windows due, and warn the jobs in a window about to close.
    Most passes find nothing to do: while no reservation was booked or cancelled and no
    window opened, closed or changed what it holds since the last walk, time alone
    makes one act, so the walk waits until the earliest time one can."""
    g, now = s.g, s.now
    book = g.reservations
    key = (len(book), next(reversed(book.values())) if book else None, g.windows_rev)
    kept = _QUIET.get(g)
    if (
        kept is not None
        and kept[0] == key
        and not kept[3]
        and now < kept[1]
        and kept[2] - now > _longest_warning(s.cfg.pricing.warn_before_s)
    ):
        if not CHECK_QUIET:
            return
        acted = len(s.actions), s.took
        _walk(s)
        if (len(s.actions), s.took) != acted:
            raise AssertionError(f"windows kept as quiet at {now} acted")
        return
    _QUIET.put(g, (key, *_walk(s)))


@functools.lru_cache(maxsize=8)
def _longest_warning(warn_before_s: tuple[float, ...]) -> float:
    """`max(0.0, *warn_before_s)`, once per config's warnings (read every pass)."""
    return max(0.0, *warn_before_s)


def _walk(s: PassState) -> tuple[float, float, bool]:
    """Every live reservation judged; returns what `_QUIET` keeps: the earliest start
    or end of a next window not open, the earliest end of an open one, and whether an
    open one misses GPUs."""
    g, now = s.g, s.now
    w1, w2 = s.cfg.pricing.warn_before_s
    nxt = end = _INF
    short = False
    for res in live_reservations(g):
        aw = res.active_window
        i = res.settled_windows
        if aw is None:
            if i < len(res.windows):
                a, b = res.windows[i]
                nxt = min(nxt, a, b)
        else:
            end = min(end, res.windows[aw][1])
            short = short or bool(res.missing and len(res.held) < res.gpus)
        if aw is not None and now >= res.windows[aw][1]:
            close_window(s, res, aw)
            i, aw = aw + 1, None
        while aw is None and i < len(res.windows) and res.windows[i][1] <= now:
            s.emit(A.CloseWindow(res.name, i))  # a window that passed unseen
            i += 1
        if aw is None and i < len(res.windows) and res.windows[i][0] <= now:
            open_window(s, res, i, res.gpus)
        elif aw is not None:
            if res.missing and len(res.held) < res.gpus:
                open_window(
                    s,
                    res,
                    aw,
                    res.gpus
                    - len([1 for n, _ in res.held if g.nodes[n].status is not _UNREACHABLE]),
                )
            left = res.windows[aw][1] - now
            bit = 2 if left <= w2 else 1 if left <= w1 else 0
            if bit:
                for jid in g.index.holding:
                    job = g.jobs[jid]
                    if job.reservation == res.name and job.state is R and not job.warned & bit:
                        s.emit(A.Warn(jid, left, bit | (bit - 1)))
    return nxt, end, short


def close_window(s: PassState, res: Reservation, index: int) -> None:
    for jid in list(s.g.index.holding):
        job = s.g.jobs[jid]
        if job.reservation == res.name and not job.stop_reason and jid not in s.victims:
            s.victims.add(jid)
            s.emit(A.Stop(jid, _EXPIRED, f"window {index + 1} of {res.name} ended"))
    s.emit(A.CloseWindow(res.name, index))


def open_window(s: PassState, res: Reservation, index: int, want: int) -> None:
    """Hold `want` more GPUs for the window in its shape (windows.py: as few nodes as
    possible, since each of the owner's jobs runs on one node): nodes that can hold
    the most of it first, free GPUs before Flex-held ones, which stay lent. A node
    that cannot hold its part of the shape (counting GPUs Flex holds, and what the
    window holds there already) is not used: GPUs no owner job could use would be
    held for nothing. What is not held counts as downtime, credited at the close."""
    g = s.g
    first = index != res.active_window
    here: dict[str, int] = {}
    if not first:
        for n, _ in res.held:
            here[n] = here.get(n, 0) + 1
    cands = []
    for node in g.by_type.get(res.gpu_type, []):
        if not node.schedulable:
            continue
        free = s.free_indices(node, PRIORITY_POOL)
        taken = s.taken.get(node.name, ())
        # GPUs being freed for a Priority claim are the claimant's, not the window's.
        claimed = s.soon().get(node.name, ()) if s.claimed.get(node.name) else ()
        flex = [
            i
            for i, h in enumerate(node.holders)
            if h is not None
            and node.reserved[i] is None
            and i not in taken
            and i not in claimed
            and g.jobs[h].mode is _FLEX
        ]
        lent = flex if s.may_preempt else []
        potential = here.get(node.name, 0) + len(free) + len(flex)
        if free or lent or node.name in here:
            cands.append(
                (
                    -here.get(node.name, 0),
                    -min(potential, res.gpus),
                    -len(free),
                    node.name,
                    free + lent,
                )
            )
    cands.sort()  # spares go first beside what the window holds already
    held: list[tuple[str, int]] = []
    parts = shape([n.gpu_count for n in g.by_type.get(res.gpu_type, [])], res.gpus)
    for k, (_, neg, _, name, avail) in enumerate(cands):
        if k >= len(parts) or len(held) >= want or -neg < parts[k]:
            break
        more = min(parts[k] - here.get(name, 0), want - len(held))
        held += [(name, i) for i in avail[: max(more, 0)]]
    if not held and not first:
        return
    for n, i in held:
        s.take(n, [i])
    s.emit(A.OpenWindow(res.name, index, tuple(held)))
