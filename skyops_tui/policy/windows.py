"""Where Commit windows not yet open will be held, decided before they open.

A window is held on as few nodes as possible, because each of its owner's jobs runs on
one node: a window of `gpus` has the *shape* it would take on an empty grid (the type's
largest nodes first: 4 GPUs on 4-GPU nodes is one whole node, 6 is 4 + 2). A plan
places every window due, in order of opening, on the nodes with the most GPUs that
neither Priority bookings running past its opening nor other windows overlapping it
hold (ties: by name); a window is *broken* when it cannot be held in its shape (more
nodes than the shape has, or a widest part narrower than the shape's).

The planner keeps Priority bookings off the GPUs a window is planned on (admission by
placement), and renewals and extensions are refused when they would break a window
that holds otherwise (docs/modes.md, *Window placement*). Flex jobs never count: they
are lent the GPUs until an owner's job needs them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..domain.model import Mode, Node, NodeStatus, Reservation
from .pergrid import PerGrid

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_PRIORITY = Mode.PRIORITY
_UNREACHABLE = NodeStatus.UNREACHABLE

if TYPE_CHECKING:
    from .grid import Grid


@dataclass(slots=True)
class Due:
    reservation: str
    index: int
    start: float
    end: float
    gpus: int
    chunks: dict[str, int] = field(default_factory=dict)  # node -> GPUs planned there
    broken: bool = False


def shape(sizes: list[int], gpus: int) -> list[int]:
    """The parts a window of `gpus` takes on an empty grid of nodes of `sizes`."""
    out = []
    left = gpus
    for size in sorted(sizes, reverse=True):
        if left <= 0:
            break
        out.append(min(size, left))
        left -= out[-1]
    return out


def fits_shape(parts: list[int], want: list[int], gpus: int) -> bool:
    return sum(parts) >= gpus and len(parts) <= len(want) and max(parts, default=0) >= want[0]


def place(avail: dict[str, int], gpus: int) -> dict[str, int]:
    """Greedy: nodes with the most room first (ties: by name), each takes what it can."""
    chunks: dict[str, int] = {}
    left = gpus
    for name in sorted(avail, key=lambda n: (-min(avail[n], gpus), n)):
        if left <= 0 or avail[name] <= 0:
            break
        chunks[name] = min(avail[name], left)
        left -= chunks[name]
    return chunks


def _place_in(order: list[str], avail: dict[str, int], gpus: int) -> dict[str, int]:
    """`place`, without sorting every node when one (the first by name) holds it all."""
    if gpus <= 0:
        return {}
    for name in order:
        if avail[name] >= gpus:
            return {name: gpus}
    return place(avail, gpus)


_LIVE: PerGrid[tuple[int, object, list[Reservation]]] = PerGrid()


def live_reservations(grid: Grid) -> list[Reservation]:
    """The grid's reservations not yet finished, in booking order. A finished one never
    comes back, so the last list is filtered again unless a reservation came or went
    since: their count or the last one booked differs (admission adds a trial
    reservation and removes it, which `Grid.live_reservations`' count alone misses)."""
    book = grid.reservations
    n = len(book)
    last = next(reversed(book.values())) if n else None
    seen = _LIVE.get(grid)
    if seen is not None and seen[0] == n and seen[1] is last:
        # `Reservation.finished`, inline (tens of them, twice a pass)
        live = [r for r in seen[2] if r.cancelled_at is None and r.settled_windows < len(r.windows)]
    else:
        live = [r for r in book.values() if not r.finished]
    _LIVE.put(grid, (n, last, live))
    return live


def due_windows(grid: Grid, gpu_type: str, now: float, until: float) -> list[Due]:
    """The windows of the type not yet open or settled that overlap [now, until).
    Only live reservations can have one, and a reservation's windows come in order of
    opening (a walk of every reservation ever booked grew with the trace)."""
    out = []
    for res in live_reservations(grid):
        if res.gpu_type != gpu_type:
            continue
        windows, active = res.windows, res.active_window
        for i in range(res.settled_windows, len(windows)):
            s, e = windows[i]
            if s >= until:
                break
            if e > now and i != active:
                out.append(Due(res.name, i, max(s, now), e, res.gpus))
    out.sort(key=lambda d: (d.start, -d.gpus, d.reservation))
    return out


def plan_windows(
    grid: Grid,
    gpu_type: str,
    now: float,
    until: float,
    ends: dict[int, float] | None = None,
    extra: list[tuple[str, int, float]] | None = None,
    admission: bool = False,
) -> list[Due]:
    """Place every window of the type due before `until`. `ends` overrides Priority
    jobs' booked ends (a renewal being judged); `extra` adds bookings (node, GPUs, end).

    `admission`: judging a new reservation against the calendar, every node not
    declared lost counts, as in the count by type (a node still connecting, or
    drained for now, is expected back by a later window); placing windows for this
    pass takes only nodes that can hold GPUs now."""
    due = due_windows(grid, gpu_type, now, until)
    if not due:
        return due
    nodes: list[Node] = [
        n
        for n in grid.by_type.get(gpu_type, [])
        if (n.status is not _UNREACHABLE if admission else n.schedulable)
    ]
    want_of = {}
    sizes = [n.gpu_count for n in nodes]
    # Per node: what holds GPUs and until when (Priority bookings, open windows).
    held: dict[str, list[tuple[float, int]]] = {}
    for jid in grid.index.holding:
        job = grid.jobs[jid]
        if job.mode is not _PRIORITY or job.market != gpu_type:
            continue
        end = (ends or {}).get(jid, job.end_at if job.end_at is not None else float("inf"))
        for p in job.placement:
            held.setdefault(p.node, []).append((end, len(p.gpus)))
    for name, k, end in extra or ():
        held.setdefault(name, []).append((end, k))
    for res in live_reservations(grid):  # a window opens and closes while one is live
        if res.gpu_type == gpu_type and res.active_window is not None:
            end = res.windows[res.active_window][1]
            for name, _ in res.held:
                held.setdefault(name, []).append((end, 1))
    # Room per node at each opening, kept as the openings advance (they come in order):
    # what holds GPUs past an opening counts until it ends. Linear in nodes and
    # holdings, not their product with the windows due.
    avail = {n.name: n.gpu_count for n in nodes}
    order = sorted(avail)
    ending: list[tuple[float, int, str, int]] = []
    seq = 0
    for name, entries in held.items():
        if name in avail:
            for e, k in entries:
                avail[name] -= k
                ending.append((e, seq, name, k))
                seq += 1
    heapq.heapify(ending)
    planned: list[Due] = []
    for d in due:
        while ending and ending[0][0] <= d.start:
            _, _, name, k = heapq.heappop(ending)
            avail[name] += k
        d.chunks = _place_in(order, avail, d.gpus)
        for name, k in d.chunks.items():
            avail[name] -= k
            heapq.heappush(ending, (d.end, seq, name, k))
            seq += 1
        if d.gpus not in want_of:
            want_of[d.gpus] = shape(sizes, d.gpus)
        want = want_of[d.gpus]
        d.broken = not want or not fits_shape(list(d.chunks.values()), want, d.gpus)
        planned.append(d)
    return planned
