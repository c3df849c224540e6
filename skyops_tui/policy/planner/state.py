"""What one pass knows and has decided so far, shared by the planner's parts.

Each part (timers, windows, priority, commit, flex, victims) reads the grid, which a
pass never changes, and records its decisions here: the GPUs given out, the jobs
started or being stopped, the claims on GPUs being freed, the nodes kept for a blocked
head, and the actions. Placement (best fit, whole nodes, waiting for GPUs being freed)
lives beside that state because every part places jobs the same way and must see what
the parts before it took.

GPUs of jobs already being stopped count as "soon free": a waiting job claims them
instead of preempting more. A claim covers the free GPUs the job counts on beside them,
so no other job is placed there in the same pass (docs/modes.md, *Queue, backfill and
claims*).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

from ...domain.model import Job, JobState, Mode, Node, NodeStatus, Placement
from .. import actions as A
from ..funding import guard
from ..grid import Grid
from ..pergrid import PerGrid

R = JobState.RUNNING
_FLEX = Mode.FLEX
_UP = NodeStatus.UP
_NAME = operator.attrgetter("name")
# Per grid and type: (node count, last node, the nodes by name).
_BY_NAME: PerGrid[dict[str, tuple[int, Node | None, list[Node]]]] = PerGrid()
# Per grid and type, what a pass reads of the type's nodes before it takes anything,
# judged at the type's `Grid.holds_rev` (raised by every change of who holds its GPUs,
# its reservations, a node's status or drain, and a node added): (that count, the
# nodes with GPUs free, whether those are all schedulable, their free GPUs for
# Priority and for Flex, the most free on one of them for each, the GPUs of the
# type's smallest node).
_View = tuple[int, list[Node], bool, int, int, int, int, int]
_VIEWS: PerGrid[dict[str, _View]] = PerGrid()
# Tests set this: a view kept across passes is judged again and must come out the same.
CHECK_VIEWS = False
PRIORITY_POOL, FLEX_POOL = "priority", "flex"


class PassState:
    """One pass's state over `grid` at `now`, and the placement every part shares."""

    def __init__(self, grid: Grid, now: float) -> None:
        self.g = grid
        self.now = now
        self.cfg = grid.cfg
        self.actions: list[A.Action] = []
        self.taken: dict[str, set[int]] = {}  # GPUs given out in this pass
        self.victims: set[int] = set()  # jobs this pass preempts or stops
        self.claimed: dict[str, int] = {}  # soon-free GPUs claimed per node in this pass
        # The same claims one by one, per node: (pool, reservation, GPUs, Flex bid or 0).
        self.claims: dict[str, list[tuple[str, str | None, int, int]]] = {}
        self.started: set[int] = set()
        self.start_of: dict[int, list[Placement]] = {}
        self._soon: dict[str, list[int]] | None = None
        self.flex_left: dict[str, int] = {}  # Flex capacity left per type in this pass
        self.waiting_elsewhere: set[int] = set()  # untyped jobs that claimed GPUs in a market
        self._smallest: dict[str, int] = {}
        self.guard = guard(grid, now)  # accounts that can no longer pay for what runs
        # Per type, per node a Commit window not yet open is planned on: each opening
        # there, and the GPUs a Priority booking running past it may still take.
        self.window_rooms_of: dict[str, dict[str, list[list[float]]]] = {}
        self._roomy: dict[str, list[Node]] = {}
        views = _VIEWS.get(grid)
        if views is None:
            views = _VIEWS.put(grid, {})
        self._views = views
        self._seen: dict[str, _View] = {}  # the views this pass read (a pass changes none)
        # Free GPUs per (type, pool), until a GPU of the type is taken.
        self._type_free: dict[tuple[str, str], int] = {}
        self.horizon: float | None = None
        # Priority jobs whose earlier claim was served first in this pass, and per type
        # what they hold or claim as (node, GPUs, booked end), which windows plan around.
        self.claims_served: set[int] | None = None
        self.claim_extra: dict[str, list[tuple[str, int, float]]] = {}
        # Nodes held for a blocked head (the oldest Priority job, or the highest Flex bid,
        # that cannot fit): when it can start there, and the free GPUs kept for it.
        self.head_nodes: dict[str, float] = {}
        self.head_free: dict[str, list[int]] = {}
        self.victim_nodes: list[str] = []  # the nodes the last choose_victims picked
        # flex.py's kept verdicts for this grid, once looked up in this pass.
        self.flex_kept: tuple[dict[Any, Any], dict[Any, Any], dict[Any, Any]] | None = None
        self.took = 0  # GPUs given out or held so far in this pass
        # Where `timers` put its Settles among the actions, one run of them: (the
        # first's index, their jobs in order). The engine bills them without reading
        # each action (a pass's actions are nearly all Settles).
        self.settle_block: tuple[int, list[int]] | None = None
        # Node types where this pass took or claimed GPUs (or held a node for a head),
        # and those where it stopped jobs: there it no longer sees the grid as it is.
        # Takes and claims only leave less room; a stop makes room.
        self.touched: set[str] = set()
        self.stopped_types: set[str] = set()
        self.touched_nodes: set[str] = set()  # the same per node
        self.stopped_nodes: set[str] = set()
        # A GPU that looks taken may be beside free ones on a node not heard from yet.
        self.may_preempt = now >= grid.preempt_from

    def emit(self, action: A.Action) -> None:
        self.actions.append(action)

    def free_indices(self, node: Node, pool: str, reservation: str | None = None) -> list[int]:
        if node.status is not _UP or node.drained is not None:  # not `node.schedulable`
            return []
        taken = self.taken.get(node.name, ())
        h, r = node.holders, node.reserved
        if pool == PRIORITY_POOL:
            return [
                i for i in range(node.gpu_count) if h[i] is None and r[i] is None and i not in taken
            ]
        if pool == FLEX_POOL:
            # Unreserved first (less to reclaim), each part in index order: what a
            # stable sort on "reserved" gave, without a key call per GPU.
            free = [i for i in range(node.gpu_count) if h[i] is None and i not in taken]
            if node.n_idle_reserved:
                free = [i for i in free if r[i] is None] + [i for i in free if r[i] is not None]
            return free
        return [
            i
            for i in range(node.gpu_count)
            if h[i] is None and r[i] == reservation and i not in taken
        ]

    def node_free_count(self, node: Node, pool: str) -> int:
        if node.status is not _UP or node.drained is not None:  # not `node.schedulable`
            return 0
        n = node.n_free if pool == PRIORITY_POOL else node.n_free + node.n_idle_reserved
        taken = self.taken.get(node.name)
        if taken:
            n = len(self.free_indices(node, pool))
        return n

    def _view(self, gpu_type: str) -> _View:
        """The type's `_View`, kept across passes while its `holds_rev` stands: the
        counts `type_free`, `widest_free` and `smallest_node` read, judged once."""
        v = self._seen.get(gpu_type)
        if v is not None:
            return v
        rev = self.g.holds_rev.get(gpu_type, 0)
        v = self._views.get(gpu_type)
        if v is None or v[0] != rev:
            v = self._views[gpu_type] = _judge_view(self.g, gpu_type, rev)
        elif CHECK_VIEWS and v != _judge_view(self.g, gpu_type, rev):
            raise AssertionError(f"{gpu_type}: the kept view of its nodes is stale")
        self._seen[gpu_type] = v
        return v

    def type_free(self, gpu_type: str, pool: str) -> int:
        key = (gpu_type, pool)
        n = self._type_free.get(key)
        if n is None:
            if self._plain(gpu_type):
                # Every node schedulable and none touched by this pass: the grid's own
                # counts, summed once while nothing of the type changes.
                v = self._seen[gpu_type]  # `_plain` read the view
                n = v[3] if pool == PRIORITY_POOL else v[4]
            else:
                n = sum(self.node_free_count(n, pool) for n in self.roomy_nodes(gpu_type))
            self._type_free[key] = n
        return n

    def widest_free(self, gpu_type: str, pool: str) -> int:
        """The most GPUs free on one of the type's nodes."""
        if self._plain(gpu_type):
            v = self._view(gpu_type)
            return v[5] if pool == PRIORITY_POOL else v[6]
        return max((self.node_free_count(n, pool) for n in self.roomy_nodes(gpu_type)), default=0)

    def _plain(self, gpu_type: str) -> bool:
        """Whether every node of the type with GPUs free is schedulable and none of
        them had GPUs taken in this pass: then `node_free_count` is the grid's count."""
        v = self._seen.get(gpu_type)  # `_view`, read without a call once read this pass
        if not (v if v is not None else self._view(gpu_type))[2]:
            return False
        if not self.taken or gpu_type not in self.touched:
            return True  # nothing of the type taken (`take` marks it touched)
        nodes_by_name = self.g.nodes
        for name, idx in self.taken.items():
            node = nodes_by_name[name]
            if idx and node.gpu_type == gpu_type and (node.n_free or node.n_idle_reserved):
                return False
        return True

    def flex_free(self, gpu_type: str) -> int:
        n = self.flex_left.get(gpu_type)
        if n is None:
            n = self.flex_left[gpu_type] = self.type_free(gpu_type, FLEX_POOL)
        return n

    def fits_elsewhere(self, job: Job, here: str) -> bool:
        """An untyped job that has free room in another market it clears in."""
        by_type, left, bid = self.g.by_type, self.flex_left, job.bid
        for t, market in self.g.markets.items():
            if t == here or bid < market.floor or not by_type[t]:
                continue
            if job.nodes:
                # whole nodes of the type's smallest size, as the market loop counts them
                need = job.nodes * self.smallest_node(t)
            else:
                need = job.gpus
            free = left.get(t)
            if need <= (self.flex_free(t) if free is None else free):
                return True
        return False

    def smallest_node(self, gpu_type: str) -> int:
        """The GPUs of the type's smallest node (0 without nodes), once a pass."""
        n = self._smallest.get(gpu_type)
        if n is None:
            v = self._seen.get(gpu_type)  # `_view`, without a call once read this pass
            n = self._smallest[gpu_type] = (v if v is not None else self._view(gpu_type))[7]
        return n

    def take(self, node: str, idx: Iterable[int]) -> None:
        t = self.g.nodes[node].gpu_type
        self.touched.add(t)
        self.touched_nodes.add(node)
        type_free = self._type_free
        if type_free:
            # Its counts go stale (keys are (type, pool), of these two pools only).
            type_free.pop((t, PRIORITY_POOL), None)
            type_free.pop((t, FLEX_POOL), None)
        taken = self.taken.setdefault(node, set())
        n = len(taken)
        taken.update(idx)
        self.took += len(taken) - n

    def soon(self) -> dict[str, list[int]]:
        """GPUs held by jobs that are being stopped: free soon, per node."""
        if self._soon is None:
            self._soon = {}
            for jid in self.g.stopping:
                for p in self.g.jobs[jid].placement:
                    self._soon.setdefault(p.node, []).extend(p.gpus)
        return self._soon

    def soon_count(self, node: Node, pool: str, reservation: str | None = None) -> int:
        soon = self._soon
        idx = (soon if soon is not None else self.soon()).get(node.name)
        if not idx:
            return 0
        if pool == PRIORITY_POOL:
            n = sum(1 for i in idx if node.reserved[i] is None)
        elif pool == FLEX_POOL:
            n = len(idx)
        else:
            n = sum(1 for i in idx if node.reserved[i] == reservation)
        n -= self.claimed.get(node.name, 0)
        return n if n > 0 else 0

    def flex_room(self, node: Node) -> int:
        """`node_free_count(node, FLEX_POOL) + soon_count(node, FLEX_POOL)` of a
        schedulable node, in one call: a kept Flex verdict reads it for every node
        that changed, several times a pass."""
        name = node.name
        if self.taken.get(name):
            n = len(self.free_indices(node, FLEX_POOL))
        else:
            n = node.n_free + node.n_idle_reserved
        soon = self._soon
        if soon is None:
            soon = self.soon()
        idx = soon.get(name)
        if idx:
            left = len(idx) - self.claimed.get(name, 0)
            if left > 0:
                n += left
        return n

    def mark_stopping(self, job: Job) -> None:
        self.victims.add(job.id)
        for p in job.placement:
            self.soon().setdefault(p.node, []).extend(p.gpus)
            self.stopped_types.add(self.g.nodes[p.node].gpu_type)
            self.stopped_nodes.add(p.node)

    def start(self, job: Job, placement: list[Placement], market: str) -> None:
        for p in placement:
            self.take(p.node, p.gpus)
        self.started.add(job.id)
        self.start_of[job.id] = placement
        gpus = 0
        for p in placement:
            gpus += len(p.gpus)
        self.guard.started(job, market, gpus)
        self.emit(A.Start(job.id, tuple(placement), market, resume=job.runs > 0))

    def best_fit(
        self, nodes: list[Node], need: int, pool: str, reservation: str | None = None
    ) -> Placement | None:
        best: Node | None = None
        best_free = 1 << 30
        for node in nodes:
            if need > 0 and not (node.n_free or node.n_idle_reserved):
                continue  # every GPU held: nothing free in any pool
            if pool == "commit":
                n = len(self.free_indices(node, pool, reservation))
            else:
                n = self.node_free_count(node, pool)
            if need <= n < best_free:
                best, best_free = node, n
                if n == need:
                    break
        if best is None:
            return None
        idx = self.free_indices(best, pool, reservation)[:need]
        return Placement(best.name, tuple(sorted(idx)))

    def whole_nodes(
        self, nodes: list[Node], count: int, pool: str = PRIORITY_POOL
    ) -> list[Placement] | None:
        """`count` nodes with every GPU free (for Priority: and unreserved; Flex may
        borrow idle reserved GPUs, as its victim search counts them)."""
        out = []
        for node in nodes:
            if node.schedulable and self.node_free_count(node, pool) == node.gpu_count:
                out.append(Placement(node.name, tuple(range(node.gpu_count))))
                if len(out) == count:
                    return out
        return None

    def claim_soon(
        self, nodes: list[Node], job: Job, pool: str, reservation: str | None = None
    ) -> bool:
        """Wait for GPUs already being freed instead of preempting more."""
        freed = self.soon()  # one dict for the pass: what a claim reads of it stays
        if not freed:
            return False
        if job.nodes:
            # A gang counts whole nodes being freed and whole nodes free already: both are
            # its to claim (a free node left out let its victims' preemption be called
            # off, and the gang preempted them again, pass after pass).
            ready = [
                n
                for n in nodes
                if n.name not in self.head_nodes
                and (n.name in freed or n.schedulable)
                and self.node_free_count(n, pool)
                + (self.soon_count(n, pool) if n.name in freed else 0)
                >= n.gpu_count
            ]
            ready.sort(key=lambda n: n.name not in freed)  # nodes being freed first
            if len(ready) >= job.nodes and any(n.name in freed for n in ready[: job.nodes]):
                self.victim_nodes = [n.name for n in ready[: job.nodes]]
                for n in ready[: job.nodes]:
                    free = self.node_free_count(n, pool)
                    self.claim(n.name, n.gpu_count - free, job, pool, reservation)
                    self.take(n.name, self.free_indices(n, pool))
                return True
            return False
        for node in nodes:
            if node.name not in freed or (node.name in self.head_nodes and pool != "commit"):
                continue
            free = (
                len(self.free_indices(node, pool, reservation))
                if pool == "commit"
                else self.node_free_count(node, pool)
            )
            soon = self.soon_count(node, pool, reservation)
            if soon and free + soon >= job.gpus:
                self.victim_nodes = [node.name]
                self.claim(node.name, job.gpus - free, job, pool, reservation)
                # The free GPUs it counts on are its own too: nobody else gets them.
                self.take(node.name, self.free_indices(node, pool, reservation)[: job.gpus])
                return True
        return False

    def hold_victim_nodes(
        self, victims: list[Job], job: Job, pool: str, reservation: str | None = None
    ) -> None:
        """After preempting for `job`: the victims' GPUs are claimed for it, and so are the
        free GPUs it counted on beside them, so nothing else is placed there meanwhile."""
        for v in victims:
            for p in v.placement:
                self.claim(p.node, len(p.gpus), job, pool, reservation)
        for name in self.victim_nodes:
            idx = self.free_indices(self.g.nodes[name], pool, reservation)
            self.take(name, idx if job.nodes else idx[: job.gpus])

    def claim(self, node: str, k: int, job: Job, pool: str, reservation: str | None) -> None:
        self.claimed[node] = self.claimed.get(node, 0) + k
        self.touched.add(self.g.nodes[node].gpu_type)
        self.touched_nodes.add(node)
        bid = job.bid if pool == FLEX_POOL else 0
        self.claims.setdefault(node, []).append((pool, reservation, k, bid))

    def preempt(self, victims: list[Job], cause: str, for_job: Job | None = None) -> None:
        for v in victims:
            if v.id in self.victims:
                continue
            self.mark_stopping(v)
            self.emit(A.Preempt(v.id, cause, for_job.id if for_job is not None else None))

    def roomy_nodes(self, gpu_type: str) -> list[Node]:
        """The type's nodes with GPUs free for Flex when the pass began (a pass only
        takes GPUs, so no other node has any free later in it)."""
        out = self._roomy.get(gpu_type)
        if out is None:
            out = self._roomy[gpu_type] = self._view(gpu_type)[1]
        return out

    def by_name(self, gpu_type: str) -> list[Node]:
        """The type's nodes by name, sorted again only when one came or went."""
        nodes = self.g.by_type[gpu_type]
        kept = _BY_NAME.setdefault(self.g, {})
        seen = kept.get(gpu_type)
        last = nodes[-1] if nodes else None
        if seen is None or seen[0] != len(nodes) or seen[1] is not last:
            seen = kept[gpu_type] = (len(nodes), last, sorted(nodes, key=_NAME))
        return seen[2]

    def flex_yield(self, node: Node, bid: int, want: int) -> int:
        """GPUs on `node` that Flex runs not being stopped hold at a bid no higher than
        `bid`, counted until `want` are found (a head that bids `bid` could have them
        once those runs end or are outbid). Counted GPU by GPU from the node's holders
        (what a job holds there is its placement on the node)."""
        jobs, flex = self.g.jobs, _FLEX
        got = 0
        last = None
        mine = False
        for h in node.holders:
            if h is None:
                continue
            if h != last:
                last = h
                v = jobs[h]
                mine = v.mode is flex and not v.stop_reason and v.bid <= bid
            if mine:
                got += 1
                if got >= want:
                    break
        return got


def _judge_view(g: Grid, gpu_type: str, rev: int) -> _View:
    """The type's `_View` judged afresh from its nodes (read only: passes share it)."""
    nodes = g.by_type.get(gpu_type, [])
    roomy = []
    up = True
    free = flex = widest = widest_flex = 0
    smallest = 1 << 30
    status = _UP
    for n in nodes:
        k = n.gpu_count
        if k < smallest:
            smallest = k
        a, b = n.n_free, n.n_idle_reserved
        if a or b:
            roomy.append(n)
            if n.status is not status or n.drained is not None:
                up = False
            free += a
            flex += a + b
            if a > widest:
                widest = a
            if a + b > widest_flex:
                widest_flex = a + b
    return (rev, roomy, up, free, flex, widest, widest_flex, smallest if nodes else 0)
