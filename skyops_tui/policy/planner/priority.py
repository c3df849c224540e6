"""Priority admission (docs/modes.md, *Priority* and *Queue, backfill and claims*).

FIFO: free unreserved GPUs, else GPUs being freed, else preempt Flex (lowest bid
first), else wait; the oldest job of a type that can do none of these holds the node
where it can start soonest, and later jobs backfill around it. Never on GPUs a Commit
window needs before the booking ends: the windows due within the longest booking queued
are planned (policy/windows.py) and each booking is judged against the room they leave.
Jobs that claimed GPUs in an earlier pass are served first (`claims_first`), before
windows open; the rest of the queue after (`priority`).
"""

from __future__ import annotations

from ...domain.model import Job, Mode, Node, Placement
from .. import actions as A
from ..windows import plan_windows
from .state import PRIORITY_POOL, PassState
from .victims import choose_victims

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_FLEX = Mode.FLEX
_PRIORITY = Mode.PRIORITY
_INF = float("inf")


def claims_first(s: PassState) -> None:
    """Serve first the Priority jobs that claimed GPUs in an earlier pass (booked at
    the claim, not lapsed): they start or claim again before windows are planned or
    opened, so no window is placed on GPUs a claim counts on (docs/modes.md, *Queue,
    backfill and claims*). Their booking was admitted beside the windows known then;
    a reservation made later is admitted around it (Grid.capacity_refusal). Nothing
    is preempted here: a claim that lost its GPUs is judged with the queue."""
    if s.claims_served is not None:
        return
    g, now = s.g, s.now
    s.claims_served = set()
    if not g.index.priority_queue:
        return  # (no set built over an empty queue, most passes)
    live = {
        jid
        for _, jid in g.index.priority_queue
        if (j := g.jobs[jid]).end_at is not None and g.booked_end(j, now) == j.end_at
    }
    if not live:
        return
    keep, s.may_preempt = s.may_preempt, False
    try:
        priority(s, only=live)
    finally:
        s.may_preempt = keep


def priority(s: PassState, only: set[int] | None = None) -> None:
    """FIFO with one head reservation per node type and backfill (docs/modes.md,
    *Queue and backfill*): a job starts on free GPUs, else waits for GPUs being freed,
    else preempts Flex. The oldest job of a type that can do none of these (the head)
    holds the node where it can start soonest: the free GPUs there are kept for it,
    and a later job may use them only if its booking ends before the head could start.
    Later jobs start elsewhere as they fit. A job waiting for funds holds nobody up."""
    g, now = s.g, s.now
    if not g.index.priority_queue:
        return
    all_types = [t for t, ns in g.by_type.items() if ns]
    headed: set[str] = set()  # types whose head holds a node
    no_room: dict[str, int] = {}  # per type: the smallest need that found no room
    # (type, gpus, nodes) for which hold_for_head found no node on every node of the
    # type: a pass only takes GPUs and keeps nodes, so no later job of that shape can.
    no_head: set[tuple[str, int, int]] = set()
    # Shapes (type, gpus, nodes) `_blocked` judged so, until a head holds a new node:
    # what it reads only grows, except the heads beside which a job may backfill.
    blocked: set[tuple[str | None, int, int]] = set()
    heads = 0
    served = s.claims_served or ()
    for _, jid in g.index.priority_queue:
        if (jid not in only) if only is not None else (jid in served):
            continue
        job = g.jobs[jid]
        if no_room and only is None:
            if heads != len(s.head_nodes):
                heads = len(s.head_nodes)
                blocked.clear()
            key = (job.gpu_type, job.gpus, job.nodes)
            if key in blocked:
                continue
            if _blocked(
                s, job, [job.gpu_type] if job.gpu_type else all_types, no_room, headed, no_head
            ):
                blocked.add(key)
                continue
        types = [job.gpu_type] if job.gpu_type else all_types
        end = g.booked_end(job, now)
        ok_types = []
        nodes_of: dict[str, list[Node]] = {}  # the nodes it may use beside windows
        unfunded = 0
        for t in types:
            need = job.gpus or job.nodes * g.by_type[t][0].gpu_count
            if not s.guard.can_start(job, t, need):
                unfunded += 1
                continue
            nodes = g.by_type[t] if only is not None else beside_windows(s, t, end, job)
            if nodes:
                ok_types.append(t)
                nodes_of[t] = nodes
        if unfunded == len(types):
            continue  # waits for funds, not for GPUs: it holds nobody up
        room = [
            t
            for t in ok_types
            if (job.gpus or job.nodes * g.by_type[t][0].gpu_count) < no_room.get(t, 1 << 30)
        ]
        # The type it starts, waits or preempts on (None: none); `t` is the loop's above.
        got = admit(s, job, room, PRIORITY_POOL, "priority job", nodes_of) if room else None
        if only is not None:
            if got:
                # Only claims_first passes `only`, and it sets claims_served first.
                assert s.claims_served is not None, "claims_first sets claims_served"
                s.claims_served.add(jid)
                s.claim_extra.setdefault(got, []).extend(held_by(s, job, end))
            continue  # the rest of the queue is judged after the windows
        if got is None:
            for t2 in room:
                if nodes_of[t2] is g.by_type[t2]:  # judged on every node of the type
                    need = job.gpus or job.nodes * g.by_type[t2][0].gpu_count
                    no_room[t2] = min(no_room.get(t2, 1 << 30), need)
            got = backfill(s, job, ok_types, end, nodes_of)
        if got:
            booked_beside_windows(s, job, got, end)
            if jid not in s.started and job.end_at != end:
                # It claims GPUs being freed: its booking ends where it was admitted.
                s.emit(A.Renew(jid, end, "claimed GPUs being freed"))
            continue
        if ok_types and not headed.intersection(ok_types):
            shape = (job.gpus, job.nodes)
            live = [t for t in ok_types if (t, *shape) not in no_head]
            got_head = hold_for_head(s, job, live, nodes_of) if live else []
            if not got_head:
                no_head.update((t, *shape) for t in live if nodes_of[t] is g.by_type[t])
            headed.update(got_head)


def _blocked(
    s: PassState,
    job: Job,
    types: list[str],
    no_room: dict[str, int],
    headed: set[str],
    no_head: set[tuple[str, int, int]],
) -> bool:
    """Whether this pass already shows `job` can neither start, wait, preempt,
    backfill nor hold a node, whatever its funds and windows: on each of its types a
    need no larger found no room, and a head holds a node there or a job of its shape
    found none to hold. Judging it again cost each blocked job the walk over the nodes
    (15,000 jobs queued for a drained type: 23 ms a pass)."""
    g = s.g
    if s.head_free and not job.nodes:
        node_of = g.nodes
        if any(node_of[name].gpu_type in types for name in s.head_nodes):
            return False  # it may backfill beside a head: that depends on its booking
    gpus, k = job.gpus, job.nodes
    for t in types:
        need = gpus or k * g.by_type[t][0].gpu_count
        if need < no_room.get(t, 1 << 30):
            return False
        if t not in headed and (t, gpus, k) not in no_head:
            return False
    return True


def free_at(s: PassState, node: Node) -> list[float]:
    """When each GPU of the node could be this pass's head's at the soonest: free ones
    now, Flex-held ones after a preemption's grace, Priority-held ones at their booked
    end, reserved ones when their window closes; GPUs given out in this pass never."""
    g, now = s.g, s.now
    grace = s.cfg.cluster.grace_s + s.cfg.cluster.stop_grace_s
    taken = s.taken.get(node.name, ())
    out = []
    inf = _INF
    for i in range(node.gpu_count):
        if i in taken:
            out.append(inf)
            continue
        at = now
        r = node.reserved[i]
        if r is not None:
            res = g.reservations.get(r)
            aw = res.active_window if res is not None else None
            at = res.windows[aw][1] if res is not None and aw is not None else inf
        h = node.holders[i]
        if h is not None:
            j = g.jobs[h]
            if j.mode is _PRIORITY:
                hours = j.hours if j.hours is not None else 1.0
                e = j.end_at if j.end_at is not None else now + hours * 3600
            elif j.mode is _FLEX:
                e = now + grace
            else:
                e = at  # a Commit job: until its window closes
            if e > at:  # `max(at, e)`
                at = e
        out.append(at)
    return out


def hold_for_head(
    s: PassState, job: Job, types: list[str], nodes_of: dict[str, list[Node]]
) -> list[str]:
    """Keep for `job` the node (or nodes, for a gang) where it can start soonest;
    returns the types it now heads."""
    best: tuple[float, str, list[str]] | None = None
    for t in types:
        per: list[tuple[float, str]] = []
        for node in nodes_of[t]:
            if not node.schedulable or node.name in s.head_nodes:
                continue
            if job.nodes:
                at = max(free_at(s, node))
            elif node.gpu_count >= job.gpus:
                at = sorted(free_at(s, node))[job.gpus - 1]
            else:
                continue
            per.append((at, node.name))
        k = job.nodes or 1
        if len(per) < k:
            continue
        per.sort()
        at = per[k - 1][0]
        if at != float("inf") and (best is None or at < best[0]):
            best = (at, t, [name for _, name in per[:k]])
    if best is None:
        return []
    at, t, names = best
    for name in names:
        idx = s.free_indices(s.g.nodes[name], PRIORITY_POOL)
        if not job.nodes:
            idx = idx[: job.gpus]
        s.take(name, idx)
        s.head_nodes[name] = at
        s.head_free[name] = idx
    return [t]


def backfill(
    s: PassState, job: Job, types: list[str], end: float, nodes_of: dict[str, list[Node]]
) -> str | None:
    """Start `job` on GPUs kept for a head if its booking ends before the head could
    start there (it delays nobody)."""
    if not s.head_free or job.nodes:
        return None
    for name, at in s.head_nodes.items():
        node = s.g.nodes[name]
        if end > at or node.gpu_type not in types:
            continue
        if nodes_of[node.gpu_type] is not s.g.by_type[node.gpu_type] and (
            window_room(s, node, end) < job.gpus
        ):
            continue
        kept = s.head_free[name]
        idx = kept + s.free_indices(node, PRIORITY_POOL)
        if len(idx) < job.gpus:
            continue
        use = sorted(idx[: job.gpus])
        s.head_free[name] = [i for i in kept if i not in use]
        s.start(job, [Placement(name, tuple(use))], node.gpu_type)
        return node.gpu_type
    return None


def beside_windows(s: PassState, gpu_type: str, end: float, job: Job) -> list[Node]:
    """The nodes of the type where `job`, booked until `end`, leaves every Commit
    window due before then the room it is planned on (docs/modes.md, *Window
    placement*): all of them when no window is planned before `end`."""
    nodes = s.g.by_type[gpu_type]
    room = window_rooms(s, gpu_type)
    if not room:
        return nodes
    bad = set()
    for name, points in room.items():
        need = s.g.nodes[name].gpu_count if job.nodes else job.gpus
        if min((left for at, left in points if at < end), default=need) < need:
            bad.add(name)
    if not bad:
        return nodes
    return [n for n in nodes if n.name not in bad]


def window_room(s: PassState, node: Node, end: float) -> float:
    points = window_rooms(s, node.gpu_type).get(node.name, ())
    return min((left for at, left in points if at < end), default=float("inf"))


def window_rooms(s: PassState, gpu_type: str) -> dict[str, list[list[float]]]:
    """Plan the type's windows due within the longest booking queued (windows.py)
    and, per node a window is planned on, at each opening there: the GPUs neither
    the windows covering that moment nor Priority bookings running past it hold."""
    if gpu_type in s.window_rooms_of:
        return s.window_rooms_of[gpu_type]
    g, now = s.g, s.now
    if s.horizon is None:
        span = max(((g.jobs[j].hours or 1.0) for _, j in g.index.priority_queue), default=1.0)
        s.horizon = now + span * 3600
    claims = s.claim_extra.get(gpu_type, [])
    plan = plan_windows(g, gpu_type, now, s.horizon, extra=claims)
    out: dict[str, list[list[float]]] = {}
    starts: dict[str, set[float]] = {}
    for d in plan:
        for name in d.chunks:
            starts.setdefault(name, set()).add(d.start)
    for name, ats in starts.items():
        node = g.nodes[name]
        points = []
        for at in sorted(ats):
            used = sum(d.chunks.get(name, 0) for d in plan if d.start <= at < d.end)
            for i in range(node.gpu_count):
                r, h = node.reserved[i], node.holders[i]
                if r is not None:
                    res = g.reservations.get(r)
                    aw = res.active_window if res is not None else None
                    # An open window (aw not None) means the reservation was found.
                    if res is not None and aw is not None and res.windows[aw][1] > at:
                        used += 1
                elif h is not None:
                    j = g.jobs[h]
                    if j.mode is _PRIORITY and (j.end_at is None or j.end_at > at):
                        used += 1
            used += sum(k for n, k, e in claims if n == name and e > at)
            points.append([at, node.gpu_count - used])
        out[name] = points
    s.window_rooms_of[gpu_type] = out
    return out


def held_by(s: PassState, job: Job, end: float) -> list[tuple[str, int, float]]:
    """What a booking admitted in this pass holds or claims: (node, GPUs, end)."""
    if job.id in s.started:
        return [(p.node, len(p.gpus), end) for p in s.start_of[job.id]]
    n = s.g.nodes
    k = job.gpus
    return [(name, n[name].gpu_count if job.nodes else k, end) for name in s.victim_nodes]


def booked_beside_windows(s: PassState, job: Job, gpu_type: str, end: float) -> None:
    """A booking admitted in this pass takes its GPUs from the room beside windows."""
    room = window_rooms(s, gpu_type)
    if not room:
        return
    for name, k, _ in held_by(s, job, end):
        for point in room.get(name, ()):
            if point[0] < end:
                point[1] -= k


def admit(
    s: PassState, job: Job, types: list[str], pool: str, who: str, nodes_of: dict[str, list[Node]]
) -> str | None:
    """Start `job`, or wait for GPUs being freed, or preempt Flex for it, on the first
    type that allows one of those, on the nodes `nodes_of` allows; return that type
    (None: none does)."""
    for t in types:
        nodes = nodes_of[t]
        if job.nodes:
            pl = s.whole_nodes(nodes, job.nodes)
            if pl:
                s.start(job, pl, t)
                return t
        elif s.type_free(t, pool) >= job.gpus:
            p = s.best_fit(nodes, job.gpus, pool)
            if p:
                s.start(job, [p], t)
                return t
    for t in types:
        if s.claim_soon(nodes_of[t], job, pool):
            return t
    if not s.may_preempt:
        return None
    for t in types:
        victims = choose_victims(s, nodes_of[t], job, pool, lambda v: True)
        if victims:
            s.preempt(victims, f"preempted for {who} {job.name}", job)
            s.hold_victim_nodes(victims, job, pool)
            return t
    return None
