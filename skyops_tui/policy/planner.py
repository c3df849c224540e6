"""One scheduling pass: a function of the grid and the time that returns actions.

`plan(grid, now)` reads the grid and changes nothing; the caller records the actions
in the store, then applies them (`grid.apply`) and hands the executor its share. Rules
(docs/modes.md), in the order a pass applies them:

1. Timers: Priority bookings warn at T-10/T-1 min, renew or expire at their end;
   running jobs are billed every `billing_interval_s`.
2. Commit windows open (holding GPUs: free ones first, then ones Flex holds, which stay
   lent until an owner's job needs them) and close (the owner's jobs are stopped, the window's value is
   recognised and its downtime credited). A window short of GPUs takes spares later.
3. Priority admission, FIFO: free unreserved GPUs, else GPUs being freed, else preempt
   Flex (lowest bid first), else wait; the oldest job of a type that cannot do any of
   these holds the node where it can start soonest, and later jobs backfill around it.
   Never on GPUs a Commit window needs before the booking ends.
4. Commit jobs start on their reservation's held GPUs, reclaiming them from Flex.
5. Flex market per node type: waiting jobs by bid then submission; each starts where
   it fits; a bid higher by `min_outbid` displaces running jobs that have run
   `min_slice`. Once every market has placed its jobs, each clearing price is set on
   the state the pass leaves (a bid whose account this pass's starts left unable to
   pay, or whose job started in another market, no longer counts).

GPUs of jobs already being stopped count as "soon free": a waiting job claims them
instead of preempting more. A claim covers the free GPUs the job counts on beside them,
so no other job is placed there in the same pass (docs/modes.md, *Queue, backfill and
claims*). A blocked large Flex bid holds a node the same way.

Before `grid.preempt_from` (a leader still hearing from its nodes) nothing is preempted
for anyone: no Flex victims for Priority, no reclaim for Commit, no outbids. Jobs still
start on free GPUs; the rest wait for the next pass.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator

from ..domain.model import HOLDING, Job, JobState, Mode, Node, NodeStatus, Placement, Reservation
from ..domain.money import fmt
from . import actions as A
from .funding import guard
from .grid import Grid
from .pricing import clearing_price
from .windows import plan_windows, shape

R = JobState.RUNNING
# Settle actions one pass takes at least (more on a grid holding more than 32 x this).
SETTLE_PER_PASS = 128
PRIORITY_POOL, FLEX_POOL = "priority", "flex"


def plan(grid: Grid, now: float) -> list[A.Action]:
    return Planner(grid, now).run()


class Planner:
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
        self._flex_free: dict[str, int] = {}  # Flex capacity left per type in this pass
        self.waiting_elsewhere: set[int] = set()  # untyped jobs that claimed GPUs in a market
        self._smallest: dict[str, int] = {}
        self.guard = guard(grid, now)  # accounts that can no longer pay for what runs
        # Per type, per node a Commit window not yet open is planned on: each opening
        # there, and the GPUs a Priority booking running past it may still take.
        self._window_room: dict[str, dict[str, list[list[float]]]] = {}
        # Per node, the Flex runs there not being stopped as (bid, GPUs), lowest bid
        # first: bids and stops do not change within a pass.
        self._flex_holds: dict[str, list[tuple[int, int]]] = {}
        self._roomy: dict[str, list[Node]] = {}
        self._by_name: dict[str, list[Node]] = {}
        # Free GPUs per (type, pool), until a GPU of the type is taken.
        self._type_free: dict[tuple[str, str], int] = {}
        self._horizon: float | None = None
        # Priority jobs whose earlier claim was served first in this pass, and per type
        # what they hold or claim as (node, GPUs, booked end), which windows plan around.
        self._claims_served: set[int] | None = None
        self.claim_extra: dict[str, list[tuple[str, int, float]]] = {}
        # Nodes held for a blocked head (the oldest Priority job, or the highest Flex bid,
        # that cannot fit): when it can start there, and the free GPUs kept for it.
        self.head_nodes: dict[str, float] = {}
        self.head_free: dict[str, list[int]] = {}
        self._victim_nodes: list[str] = []  # the nodes the last choose_victims picked
        self.took = 0  # GPUs given out or held so far in this pass
        # A GPU that looks taken may be beside free ones on a node not heard from yet.
        self.may_preempt = now >= grid.preempt_from

    def run(self) -> list[A.Action]:
        self.timers()
        self.claims_first()
        self.windows()
        self.priority()
        self.commit()
        self.flex()
        self.call_offs()
        return self.actions

    # ------------------------------------------------------------- helpers
    def emit(self, action: A.Action) -> None:
        self.actions.append(action)

    def free_indices(self, node: Node, pool: str, reservation: str | None = None) -> list[int]:
        if not node.schedulable:
            return []
        taken = self.taken.get(node.name, ())
        h, r = node.holders, node.reserved
        if pool == PRIORITY_POOL:
            return [
                i for i in range(node.gpu_count) if h[i] is None and r[i] is None and i not in taken
            ]
        if pool == FLEX_POOL:
            free = [i for i in range(node.gpu_count) if h[i] is None and i not in taken]
            free.sort(key=lambda i: r[i] is not None)  # unreserved first: less to reclaim
            return free
        return [
            i
            for i in range(node.gpu_count)
            if h[i] is None and r[i] == reservation and i not in taken
        ]

    def node_free_count(self, node: Node, pool: str) -> int:
        if not node.schedulable:
            return 0
        n = node.n_free if pool == PRIORITY_POOL else node.n_free + node.n_idle_reserved
        taken = self.taken.get(node.name)
        if taken:
            n = len(self.free_indices(node, pool))
        return n

    def type_free(self, gpu_type: str, pool: str) -> int:
        key = (gpu_type, pool)
        n = self._type_free.get(key)
        if n is None:
            n = sum(self.node_free_count(n, pool) for n in self.roomy_nodes(gpu_type))
            self._type_free[key] = n
        return n

    def flex_free(self, gpu_type: str) -> int:
        if gpu_type not in self._flex_free:
            self._flex_free[gpu_type] = self.type_free(gpu_type, FLEX_POOL)
        return self._flex_free[gpu_type]

    def fits_elsewhere(self, job: Job, here: str) -> bool:
        """An untyped job that has free room in another market it clears in."""
        for t, market in self.g.markets.items():
            if t == here or job.bid < market.floor or not self.g.by_type[t]:
                continue
            if job.nodes:
                # whole nodes of the type's smallest size, as the market loop counts them
                if t not in self._smallest:
                    self._smallest[t] = min(n.gpu_count for n in self.g.by_type[t])
                need = job.nodes * self._smallest[t]
            else:
                need = job.gpus
            if need <= self.flex_free(t):
                return True
        return False

    def take(self, node: str, idx: Iterable[int]) -> None:
        if self._type_free:
            t = self.g.nodes[node].gpu_type
            self._type_free = {k: v for k, v in self._type_free.items() if k[0] != t}
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
        idx = self.soon().get(node.name)
        if not idx:
            return 0
        if pool == PRIORITY_POOL:
            n = sum(1 for i in idx if node.reserved[i] is None)
        elif pool == FLEX_POOL:
            n = len(idx)
        else:
            n = sum(1 for i in idx if node.reserved[i] == reservation)
        return max(n - self.claimed.get(node.name, 0), 0)

    def mark_stopping(self, job: Job) -> None:
        self.victims.add(job.id)
        for p in job.placement:
            self.soon().setdefault(p.node, []).extend(p.gpus)

    def start(self, job: Job, placement: list[Placement], market: str) -> None:
        for p in placement:
            self.take(p.node, p.gpus)
        self.started.add(job.id)
        self.start_of[job.id] = placement
        self.guard.started(job, market, sum(len(p.gpus) for p in placement))
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
        if not self.soon():
            return False
        if job.nodes:
            # A gang counts whole nodes being freed and whole nodes free already: both are
            # its to claim (a free node left out let its victims' preemption be called
            # off, and the gang preempted them again, pass after pass).
            ready = [
                n
                for n in nodes
                if n.name not in self.head_nodes
                and (n.name in self.soon() or n.schedulable)
                and self.node_free_count(n, pool)
                + (self.soon_count(n, pool) if n.name in self.soon() else 0)
                >= n.gpu_count
            ]
            ready.sort(key=lambda n: n.name not in self.soon())  # nodes being freed first
            if len(ready) >= job.nodes and any(n.name in self.soon() for n in ready[: job.nodes]):
                self._victim_nodes = [n.name for n in ready[: job.nodes]]
                for n in ready[: job.nodes]:
                    free = self.node_free_count(n, pool)
                    self.claim(n.name, n.gpu_count - free, job, pool, reservation)
                    self.take(n.name, self.free_indices(n, pool))
                return True
            return False
        for node in nodes:
            if node.name not in self.soon() or (node.name in self.head_nodes and pool != "commit"):
                continue
            free = (
                len(self.free_indices(node, pool, reservation))
                if pool == "commit"
                else self.node_free_count(node, pool)
            )
            soon = self.soon_count(node, pool, reservation)
            if soon and free + soon >= job.gpus:
                self._victim_nodes = [node.name]
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
        for name in self._victim_nodes:
            idx = self.free_indices(self.g.nodes[name], pool, reservation)
            self.take(name, idx if job.nodes else idx[: job.gpus])

    def claim(self, node: str, k: int, job: Job, pool: str, reservation: str | None) -> None:
        self.claimed[node] = self.claimed.get(node, 0) + k
        bid = job.bid if pool == FLEX_POOL else 0
        self.claims.setdefault(node, []).append((pool, reservation, k, bid))

    def preempt(self, victims: list[Job], cause: str, for_job: Job | None = None) -> None:
        for v in victims:
            if v.id in self.victims:
                continue
            self.mark_stopping(v)
            self.emit(A.Preempt(v.id, cause, for_job.id if for_job is not None else None))

    def call_offs(self) -> None:
        """Call off the preemptions made for a Priority job that nobody needs any more,
        while their victims are in the checkpoint grace (docs/modes.md, *Queue, backfill
        and claims*): the job they were for started elsewhere (or left), and no claim of
        this pass counts on their GPUs. A Flex claim counts only against a victim its
        bid could outbid: a lower bid gains nothing from a preemption it could not make.
        A victim back in the market caps its clearing price, as any running bid does."""
        g, now = self.g, self.now
        if not g.preempted_at:
            return
        grace = self.cfg.cluster.grace_s
        outbid = 1 + self.cfg.pricing.min_outbid
        cands = []
        for jid, (at, _) in g.preempted_at.items():
            v = g.jobs[jid]
            if (
                now < at + grace
                and jid not in g.calling_off
                and v.state is JobState.PREEMPTING
                and v.stop_reason == "paused"
                and jid not in self.victims
            ):
                cands.append(v)
        if not cands:
            return
        cands.sort(key=lambda v: (-v.bid, v.seq, v.id))  # the likeliest to resume first
        kept: dict[str, list[int]] = {}  # per node, soon-free GPUs of victims called off
        lowest: dict[str, int] = {}  # per market, the lowest bid called off
        for v in cands:
            bid = v.bid * outbid
            if not all(self._spare(p.node, p.gpus, kept.get(p.node, ()), bid) for p in v.placement):
                continue
            for p in v.placement:
                kept.setdefault(p.node, []).extend(p.gpus)
            if v.market is not None:
                lowest[v.market] = min(lowest.get(v.market, v.bid), v.bid)
            _, for_id = g.preempted_at[v.id]
            who = g.jobs.get(for_id)
            if who is None:
                why = "no longer needed"
            elif for_id in self.started:
                why = f"{who.name} started on other GPUs"
            elif who.state in HOLDING:
                why = f"{who.name} runs on other GPUs"
            else:
                why = f"{who.name} no longer needs its GPUs"
            self.emit(A.CallOff(v.id, why))
        if not lowest:
            return
        price = {a.gpu_type: a.price for a in self.actions if isinstance(a, A.SetPrice)}
        for t, bid in lowest.items():
            m = g.markets[t]
            now_price = price.get(t, m.price)
            if bid < now_price:
                self.emit(A.SetPrice(t, max(bid, m.floor)))

    def _spare(self, node: str, gpus: Iterable[int], kept: Iterable[int], bid: float) -> bool:
        """Whether the claims on `node` still have their GPUs being freed once `gpus` (and
        `kept`) are not: Priority claims on unreserved ones, a window's on its own."""
        out = set(gpus) | set(kept)
        left = [i for i in self.soon().get(node, ()) if i not in out]
        claims = self.claims.get(node)
        if not claims:
            return True
        n = self.g.nodes[node]
        total = 0
        need: dict[str | None, int] = {}
        for pool, res, k, b in claims:
            if pool == FLEX_POOL:
                if b >= bid:
                    total += k
                continue
            key = None if pool == PRIORITY_POOL else res
            need[key] = need.get(key, 0) + k
            total += k
        if len(left) < total:
            return False
        for key, k in need.items():
            if sum(1 for i in left if n.reserved[i] == key) < k:
                return False
        return True

    def choose_victims(
        self,
        nodes: list[Node],
        job: Job,
        pool: str,
        eligible,
        reservation: str | None = None,
    ) -> list[Job] | None:
        """The cheapest set of Flex jobs whose preemption makes room for `job`.

        Single-node requests: on one node, lowest bids first, then the least work lost
        (newest checkpoint), then the youngest. Whole-node requests: nodes whose every GPU
        is free or held by eligible Flex jobs. A gang victim is preempted whole.
        """
        on_node: dict[str, list[Job]] = {}
        running = sum(len(self.g.flex_running[t]) for t in {n.gpu_type for n in nodes})
        if len(nodes) * 8 < running:
            # Few nodes (a reservation's): read who holds their GPUs.
            for node in nodes:
                seen: set[int] = set()
                for vid in node.holders:
                    if vid is None or vid in seen or vid in self.victims:
                        continue
                    seen.add(vid)
                    v = self.g.jobs[vid]
                    if (
                        v.mode is Mode.FLEX
                        and v.holding
                        and v.state is not JobState.PREEMPTING
                        and not v.stop_reason
                        and eligible(v)
                    ):
                        on_node.setdefault(node.name, []).append(v)
        else:
            for t in {n.gpu_type for n in nodes}:
                for vid in self.g.flex_running[t]:
                    if vid in self.victims:
                        continue
                    v = self.g.jobs[vid]
                    if v.stop_reason or not eligible(v):
                        continue
                    for p in v.placement:
                        on_node.setdefault(p.node, []).append(v)
        if not on_node:
            return None

        def usable(node: Node, v: Job) -> int:
            idx = [i for p in v.placement if p.node == node.name for i in p.gpus]
            if pool == PRIORITY_POOL:
                # not GPUs a window opening in this pass took (reserved once applied)
                taken = self.taken.get(node.name, ())
                return sum(1 for i in idx if node.reserved[i] is None and i not in taken)
            if pool == "commit":
                return sum(1 for i in idx if node.reserved[i] == reservation)
            return len(idx)

        best: tuple | None = None
        chosen: list[Job] = []
        need_nodes = job.nodes or 1
        per_node: list[tuple[tuple, Node, list[Job]]] = []
        best_node = ""
        for node in nodes:
            vs = on_node.get(node.name)
            # A head keeps a node's unreserved GPUs; a window's own GPUs stay its owner's.
            headed = node.name in self.head_nodes and pool != "commit"
            if not node.schedulable or (not vs and not job.nodes) or headed:
                continue
            free = (
                len(self.free_indices(node, pool, reservation))
                if pool == "commit"
                else self.node_free_count(node, pool)
            ) + self.soon_count(node, pool, reservation)
            need = node.gpu_count if job.nodes else job.gpus
            if free >= need:
                if job.nodes:
                    per_node.append(((0, 0), node, []))  # a whole free node joins the gang
                continue
            if not vs:
                continue  # claim_soon or placement would have taken it
            vs = sorted(vs, key=_victim_order)
            picked: list[Job] = []
            for v in vs:
                picked.append(v)
                free += usable(node, v)
                if free >= need:
                    break
            if free < need:
                continue
            cost = (max(v.bid for v in picked), len(picked))
            per_node.append((cost, node, picked))
            if not job.nodes and (best is None or cost < best):
                best, chosen, best_node = cost, picked, node.name
        if job.nodes:
            if len(per_node) < need_nodes:
                return None
            per_node.sort(key=lambda c: c[0])
            out: dict[int, Job] = {}
            for _, _, picked in per_node[:need_nodes]:
                for v in picked:
                    out[v.id] = v
            self._victim_nodes = [n.name for _, n, _ in per_node[:need_nodes]]
            return list(out.values())
        self._victim_nodes = [best_node] if chosen else []
        return chosen or None

    # -------------------------------------------------------------- timers
    def timers(self) -> None:
        g, now = self.g, self.now
        w1, w2 = self.cfg.pricing.warn_before_s
        interval = self.cfg.cluster.billing_interval_s
        settle: list[int] = []
        for jid in g.holding:
            job = g.jobs[jid]
            if job.state is not R or job.stop_reason:
                continue
            if job.mode is Mode.PRIORITY and job.end_at is not None:
                left = job.end_at - now
                if left <= 0:
                    why = None
                    if job.auto_renew:
                        why = g.renewal_refusal(job, job.renew_hours, now)
                        if why is None:
                            self.emit(
                                A.Renew(jid, job.end_at + job.renew_hours * 3600, "auto-renewed")
                            )
                            continue
                    cause = "booking expired" + (f"; renewal refused: {why}" if why else "")
                    self.victims.add(jid)
                    self.emit(A.Stop(jid, JobState.EXPIRED, cause))
                    continue
                bit = 2 if left <= w2 else 1 if left <= w1 else 0
                if bit and not job.warned & bit:
                    note: str | None = ""
                    if job.auto_renew:
                        why = g.renewal_refusal(job, job.renew_hours, now)
                        if why is not None:
                            note = f"; renewal will be refused: {why}"
                        elif job.hourly:
                            note = None  # renews every hour: no warning each hour
                        else:
                            note = f"; it will be renewed for {job.renew_hours:g} h"
                    if note is not None:
                        self.emit(A.Warn(jid, left, bit | (bit - 1), note))
            if (
                job.billed_from is not None
                and now - job.billed_from >= interval
                and job.mode is not Mode.COMMIT
                and all(g.nodes[p.node].status is NodeStatus.UP for p in job.placement)
            ):
                # A node not heard from (a console just restarted, a link down) may yet
                # say the job ended a while ago: it is billed up to then when it does.
                settle.append(jid)
        cap = max(SETTLE_PER_PASS, len(g.holding) // 32)
        if len(settle) > cap:
            # Jobs started together would settle together every interval (2,000 in
            # one pass, a 150 ms write): the longest unbilled go first, the rest in the
            # next passes, which spreads them for good. A charge is the exact running
            # total whenever it is taken (docs/modes.md, Billing).
            first = set(heapq.nsmallest(cap, settle, key=lambda j: g.jobs[j].billed_from))
            settle = [j for j in settle if j in first]
        for jid in settle:
            self.emit(A.Settle(jid))
        if any(f.short for f in self.guard.funds.values()):
            self.stop_unfunded()

    def stop_unfunded(self) -> None:
        """Stop the jobs of accounts that cannot pay for them any longer."""
        for jid in sorted(self.g.holding):
            job = self.g.jobs[jid]
            f = self.guard.short(job.user)
            if f is None or job.mode is Mode.COMMIT or job.stop_reason or jid in self.victims:
                continue
            cause = f"account {job.user} cannot pay ({fmt(f.available)} left)"
            if job.mode is Mode.FLEX:
                self.preempt([job], cause)
            else:
                self.victims.add(jid)
                self.emit(A.Stop(jid, JobState.EXPIRED, cause))

    # ------------------------------------------------------------- windows
    def windows(self) -> None:
        g, now = self.g, self.now
        w1, w2 = self.cfg.pricing.warn_before_s
        for res in g.reservations.values():
            if res.finished:
                continue
            aw = res.active_window
            i = res.settled_windows
            if aw is not None and now >= res.windows[aw][1]:
                self.close_window(res, aw)
                i, aw = aw + 1, None
            while aw is None and i < len(res.windows) and res.windows[i][1] <= now:
                self.emit(A.CloseWindow(res.name, i))  # a window that passed unseen
                i += 1
            if aw is None and i < len(res.windows) and res.windows[i][0] <= now:
                self.open_window(res, i, res.gpus)
            elif aw is not None:
                if res.missing and len(res.held) < res.gpus:
                    self.open_window(
                        res,
                        aw,
                        res.gpus
                        - len(
                            [
                                1
                                for n, _ in res.held
                                if g.nodes[n].status is not NodeStatus.UNREACHABLE
                            ]
                        ),
                    )
                left = res.windows[aw][1] - now
                bit = 2 if left <= w2 else 1 if left <= w1 else 0
                if bit:
                    for jid in g.holding:
                        job = g.jobs[jid]
                        if job.reservation == res.name and job.state is R and not job.warned & bit:
                            self.emit(A.Warn(jid, left, bit | (bit - 1)))

    def close_window(self, res: Reservation, index: int) -> None:
        for jid in list(self.g.holding):
            job = self.g.jobs[jid]
            if job.reservation == res.name and not job.stop_reason and jid not in self.victims:
                self.victims.add(jid)
                self.emit(A.Stop(jid, JobState.EXPIRED, f"window {index + 1} of {res.name} ended"))
        self.emit(A.CloseWindow(res.name, index))

    def open_window(self, res: Reservation, index: int, want: int) -> None:
        """Hold `want` more GPUs for the window in its shape (windows.py: as few nodes as
        possible, since each of the owner's jobs runs on one node): nodes that can hold
        the most of it first, free GPUs before Flex-held ones, which stay lent. A node
        that cannot hold its part of the shape (counting GPUs Flex holds, and what the
        window holds there already) is not used: GPUs no owner job could use would be
        held for nothing. What is not held counts as downtime, credited at the close."""
        g = self.g
        first = index != res.active_window
        here: dict[str, int] = {}
        if not first:
            for n, _ in res.held:
                here[n] = here.get(n, 0) + 1
        cands = []
        for node in g.by_type.get(res.gpu_type, []):
            if not node.schedulable:
                continue
            free = self.free_indices(node, PRIORITY_POOL)
            taken = self.taken.get(node.name, ())
            # GPUs being freed for a Priority claim are the claimant's, not the window's.
            claimed = self.soon().get(node.name, ()) if self.claimed.get(node.name) else ()
            flex = [
                i
                for i, h in enumerate(node.holders)
                if h is not None
                and node.reserved[i] is None
                and i not in taken
                and i not in claimed
                and g.jobs[h].mode is Mode.FLEX
            ]
            lent = flex if self.may_preempt else []
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
            self.take(n, [i])
        self.emit(A.OpenWindow(res.name, index, tuple(held)))
        # Flex jobs on the GPUs it holds keep them, lent, until an owner's job needs
        # them (commit() reclaims then): a preemption nobody gains from is not made.

    # ------------------------------------------------------------ priority
    def claims_first(self) -> None:
        """Serve first the Priority jobs that claimed GPUs in an earlier pass (booked at
        the claim, not lapsed): they start or claim again before windows are planned or
        opened, so no window is placed on GPUs a claim counts on (docs/modes.md, *Queue,
        backfill and claims*). Their booking was admitted beside the windows known then;
        a reservation made later is admitted around it (Grid.capacity_refusal). Nothing
        is preempted here: a claim that lost its GPUs is judged with the queue."""
        if self._claims_served is not None:
            return
        g, now = self.g, self.now
        self._claims_served = set()
        live = {
            jid
            for _, jid in g.priority_queue
            if (j := g.jobs[jid]).end_at is not None and g.booked_end(j, now) == j.end_at
        }
        if not live:
            return
        keep, self.may_preempt = self.may_preempt, False
        try:
            self.priority(only=live)
        finally:
            self.may_preempt = keep

    def priority(self, only: set[int] | None = None) -> None:
        """FIFO with one head reservation per node type and backfill (docs/modes.md,
        *Queue and backfill*): a job starts on free GPUs, else waits for GPUs being freed,
        else preempts Flex. The oldest job of a type that can do none of these (the head)
        holds the node where it can start soonest: the free GPUs there are kept for it,
        and a later job may use them only if its booking ends before the head could start.
        Later jobs start elsewhere as they fit. A job waiting for funds holds nobody up."""
        g, now = self.g, self.now
        if not g.priority_queue:
            return
        all_types = [t for t, ns in g.by_type.items() if ns]
        headed: set[str] = set()  # types whose head holds a node
        no_room: dict[str, int] = {}  # per type: the smallest need that found no room
        served = self._claims_served or ()
        for _, jid in g.priority_queue:
            if (jid not in only) if only is not None else (jid in served):
                continue
            job = g.jobs[jid]
            types = [job.gpu_type] if job.gpu_type else all_types
            end = g.booked_end(job, now)
            ok_types = []
            nodes_of: dict[str, list[Node]] = {}  # the nodes it may use beside windows
            unfunded = 0
            for t in types:
                need = job.gpus or job.nodes * g.by_type[t][0].gpu_count
                if not self.guard.can_start(job, t, need):
                    unfunded += 1
                    continue
                nodes = g.by_type[t] if only is not None else self.beside_windows(t, end, job)
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
            t = self.admit(job, room, PRIORITY_POOL, "priority job", nodes_of) if room else None
            if only is not None:
                if t:
                    self._claims_served.add(jid)  # type: ignore[union-attr]
                    self.claim_extra.setdefault(t, []).extend(self.held_by(job, end))
                continue  # the rest of the queue is judged after the windows
            if t is None:
                for t2 in room:
                    if nodes_of[t2] is g.by_type[t2]:  # judged on every node of the type
                        need = job.gpus or job.nodes * g.by_type[t2][0].gpu_count
                        no_room[t2] = min(no_room.get(t2, 1 << 30), need)
                t = self.backfill(job, ok_types, end, nodes_of)
            if t:
                self.booked_beside_windows(job, t, end)
                if jid not in self.started and job.end_at != end:
                    # It claims GPUs being freed: its booking ends where it was admitted.
                    self.emit(A.Renew(jid, end, "claimed GPUs being freed"))
                continue
            if ok_types and not headed.intersection(ok_types):
                headed.update(self.hold_for_head(job, ok_types, nodes_of))

    def free_at(self, node: Node) -> list[float]:
        """When each GPU of the node could be this pass's head's at the soonest: free ones
        now, Flex-held ones after a preemption's grace, Priority-held ones at their booked
        end, reserved ones when their window closes; GPUs given out in this pass never."""
        g, now = self.g, self.now
        grace = self.cfg.cluster.grace_s + self.cfg.cluster.stop_grace_s
        taken = self.taken.get(node.name, ())
        out = []
        for i in range(node.gpu_count):
            if i in taken:
                out.append(float("inf"))
                continue
            at = now
            r = node.reserved[i]
            if r is not None:
                res = g.reservations.get(r)
                aw = res.active_window if res is not None else None
                at = res.windows[aw][1] if res is not None and aw is not None else float("inf")
            h = node.holders[i]
            if h is not None:
                j = g.jobs[h]
                if j.mode is Mode.PRIORITY:
                    hours = j.hours if j.hours is not None else 1.0
                    e = j.end_at if j.end_at is not None else now + hours * 3600
                elif j.mode is Mode.FLEX:
                    e = now + grace
                else:
                    e = at  # a Commit job: until its window closes
                at = max(at, e)
            out.append(at)
        return out

    def hold_for_head(
        self, job: Job, types: list[str], nodes_of: dict[str, list[Node]]
    ) -> list[str]:
        """Keep for `job` the node (or nodes, for a gang) where it can start soonest;
        returns the types it now heads."""
        best: tuple[float, str, list[str]] | None = None
        for t in types:
            per: list[tuple[float, str]] = []
            for node in nodes_of[t]:
                if not node.schedulable or node.name in self.head_nodes:
                    continue
                if job.nodes:
                    at = max(self.free_at(node))
                elif node.gpu_count >= job.gpus:
                    at = sorted(self.free_at(node))[job.gpus - 1]
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
            idx = self.free_indices(self.g.nodes[name], PRIORITY_POOL)
            if not job.nodes:
                idx = idx[: job.gpus]
            self.take(name, idx)
            self.head_nodes[name] = at
            self.head_free[name] = idx
        return [t]

    def backfill(
        self, job: Job, types: list[str], end: float, nodes_of: dict[str, list[Node]]
    ) -> str | None:
        """Start `job` on GPUs kept for a head if its booking ends before the head could
        start there (it delays nobody)."""
        if not self.head_free or job.nodes:
            return None
        for name, at in self.head_nodes.items():
            node = self.g.nodes[name]
            if end > at or node.gpu_type not in types:
                continue
            if nodes_of[node.gpu_type] is not self.g.by_type[node.gpu_type] and (
                self.window_room(node, end) < job.gpus
            ):
                continue
            kept = self.head_free[name]
            idx = kept + self.free_indices(node, PRIORITY_POOL)
            if len(idx) < job.gpus:
                continue
            use = sorted(idx[: job.gpus])
            self.head_free[name] = [i for i in kept if i not in use]
            self.start(job, [Placement(name, tuple(use))], node.gpu_type)
            return node.gpu_type
        return None

    def beside_windows(self, gpu_type: str, end: float, job: Job) -> list[Node]:
        """The nodes of the type where `job`, booked until `end`, leaves every Commit
        window due before then the room it is planned on (docs/modes.md, *Window
        placement*): all of them when no window is planned before `end`."""
        nodes = self.g.by_type[gpu_type]
        room = self.window_rooms(gpu_type)
        if not room:
            return nodes
        bad = set()
        for name, points in room.items():
            need = self.g.nodes[name].gpu_count if job.nodes else job.gpus
            if min((left for at, left in points if at < end), default=need) < need:
                bad.add(name)
        if not bad:
            return nodes
        return [n for n in nodes if n.name not in bad]

    def window_room(self, node: Node, end: float) -> float:
        points = self.window_rooms(node.gpu_type).get(node.name, ())
        return min((left for at, left in points if at < end), default=float("inf"))

    def window_rooms(self, gpu_type: str) -> dict[str, list[list[float]]]:
        """Plan the type's windows due within the longest booking queued (windows.py)
        and, per node a window is planned on, at each opening there: the GPUs neither
        the windows covering that moment nor Priority bookings running past it hold."""
        if gpu_type in self._window_room:
            return self._window_room[gpu_type]
        g, now = self.g, self.now
        if self._horizon is None:
            span = max(((g.jobs[j].hours or 1.0) for _, j in g.priority_queue), default=1.0)
            self._horizon = now + span * 3600
        claims = self.claim_extra.get(gpu_type, [])
        plan = plan_windows(g, gpu_type, now, self._horizon, extra=claims)
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
                        if aw is not None and res.windows[aw][1] > at:
                            used += 1
                    elif h is not None:
                        j = g.jobs[h]
                        if j.mode is Mode.PRIORITY and (j.end_at is None or j.end_at > at):
                            used += 1
                used += sum(k for n, k, e in claims if n == name and e > at)
                points.append([at, node.gpu_count - used])
            out[name] = points
        self._window_room[gpu_type] = out
        return out

    def held_by(self, job: Job, end: float) -> list[tuple[str, int, float]]:
        """What a booking admitted in this pass holds or claims: (node, GPUs, end)."""
        if job.id in self.started:
            return [(p.node, len(p.gpus), end) for p in self.start_of[job.id]]
        n = self.g.nodes
        k = job.gpus
        return [(name, n[name].gpu_count if job.nodes else k, end) for name in self._victim_nodes]

    def booked_beside_windows(self, job: Job, gpu_type: str, end: float) -> None:
        """A booking admitted in this pass takes its GPUs from the room beside windows."""
        room = self.window_rooms(gpu_type)
        if not room:
            return
        for name, k, _ in self.held_by(job, end):
            for point in room.get(name, ()):
                if point[0] < end:
                    point[1] -= k

    def admit(
        self, job: Job, types: list[str], pool: str, who: str, nodes_of: dict[str, list[Node]]
    ) -> str | None:
        """Start `job`, or wait for GPUs being freed, or preempt Flex for it, on the first
        type that allows one of those, on the nodes `nodes_of` allows; return that type
        (None: none does)."""
        for t in types:
            nodes = nodes_of[t]
            if job.nodes:
                pl = self.whole_nodes(nodes, job.nodes)
                if pl:
                    self.start(job, pl, t)
                    return t
            elif self.type_free(t, pool) >= job.gpus:
                p = self.best_fit(nodes, job.gpus, pool)
                if p:
                    self.start(job, [p], t)
                    return t
        for t in types:
            if self.claim_soon(nodes_of[t], job, pool):
                return t
        if not self.may_preempt:
            return None
        for t in types:
            victims = self.choose_victims(nodes_of[t], job, pool, lambda v: True)
            if victims:
                self.preempt(victims, f"preempted for {who} {job.name}", job)
                self.hold_victim_nodes(victims, job, pool)
                return t
        return None

    # -------------------------------------------------------------- commit
    def commit(self) -> None:
        g = self.g
        for name, waiting in g.commit_waiting.items():
            if not waiting:
                continue
            res = g.reservations.get(name)
            if res is None or res.finished:
                why = f"reservation {name} has no windows left"
                if res is not None and res.credited:
                    why += f"; GPUs lost to node failure were credited ({fmt(res.credited)})"
                for _, jid in list(waiting):
                    self.emit(A.Fail(jid, why))
                continue
            if res.active_window is None:
                continue
            nodes = sorted(
                (g.nodes[n] for n in {n for n, _ in res.held} if g.nodes[n].schedulable),
                key=lambda n: n.name,
            )
            # What the window can still give: idle held GPUs, and held GPUs lent to Flex.
            idle = lent = 0
            for node_name, i in res.held:
                h = g.nodes[node_name].holders[i]
                if h is None:
                    idle += 1
                elif g.jobs[h].mode is Mode.FLEX and h not in self.victims:
                    lent += 1
            reclaiming = True
            for _, jid in waiting:
                if not idle and not lent:
                    break  # the window is full of the owner's own jobs: the rest wait
                job = g.jobs[jid]
                p = self.best_fit(nodes, job.gpus, "commit", name)
                if p:
                    self.start(job, [p], res.gpu_type)
                    idle -= len(p.gpus)
                    continue
                if not reclaiming:
                    continue  # the queue is FIFO: only what fits now may pass the head
                reclaiming = False
                if self.claim_soon(nodes, job, "commit", name) or not self.may_preempt:
                    continue
                victims = self.choose_victims(nodes, job, "commit", lambda v: True, name)
                if victims:
                    self.preempt(victims, f"reclaimed for Commit job {job.name} ({name})")
                    self.hold_victim_nodes(victims, job, "commit", name)

    # ---------------------------------------------------------------- flex
    def hold_flex_head(self, job: Job, nodes: list[Node]) -> int:
        """Keep for a blocked large bid the node (a gang: nodes) with the most GPUs free
        or being freed, so smaller, lower bids do not starve it; returns GPUs kept.

        The nodes are taken in (most free or being freed, name) order; on a full grid
        most have none, so those are judged by name only until enough qualify, not all
        of them (a walk of every node per pass was the planner's largest cost)."""
        if not nodes:
            return 0
        k = job.nodes or 1
        t = nodes[0].gpu_type

        def qualifies(n: Node) -> bool:
            if not n.schedulable or n.name in self.head_nodes:
                return False
            need = n.gpu_count if job.nodes else job.gpus
            # Only where it can start once bids no higher than its own end or are
            # outbid: never idle GPUs beside Priority, Commit or higher bids.
            ok = self.node_free_count(n, FLEX_POOL) + self.soon_count(n, FLEX_POOL)
            if ok < need:
                for bid, gpus in self.flex_holds(n):
                    if bid > job.bid or ok >= need:
                        break
                    ok += gpus
            return ok >= need

        def room(n: Node) -> int:
            return self.node_free_count(n, FLEX_POOL) + self.soon_count(n, FLEX_POOL)

        roomy = {n.name: n for n in self.roomy_nodes(t)}
        for name in self.soon():
            n = self.g.nodes[name]
            if n.gpu_type == t:
                roomy[name] = n
        chosen = heapq.nsmallest(
            k,
            (n for n in roomy.values() if room(n) > 0 and qualifies(n)),
            key=lambda n: (-room(n), n.name),
        )
        if len(chosen) < k:
            picked = {n.name for n in chosen}
            for n in self.by_name(t):
                if len(chosen) >= k:
                    break
                if n.name not in picked and room(n) == 0 and qualifies(n):
                    chosen.append(n)
        if len(chosen) < k:
            return 0
        kept = 0
        for node in chosen:
            idx = self.free_indices(node, FLEX_POOL)
            if not job.nodes:
                idx = idx[: job.gpus]
            self.take(node.name, idx)
            self.head_nodes[node.name] = float("inf")
            self.head_free[node.name] = []
            kept += len(idx)
        if job.gpu_type is None:
            self.waiting_elsewhere.add(job.id)  # it holds a node in one market only
        return kept

    def roomy_nodes(self, gpu_type: str) -> list[Node]:
        """The type's nodes with GPUs free for Flex when the pass began (a pass only
        takes GPUs, so no other node has any free later in it)."""
        out = self._roomy.get(gpu_type)
        if out is None:
            out = self._roomy[gpu_type] = [
                n for n in self.g.by_type[gpu_type] if n.n_free or n.n_idle_reserved
            ]
        return out

    def by_name(self, gpu_type: str) -> list[Node]:
        out = self._by_name.get(gpu_type)
        if out is None:
            out = self._by_name[gpu_type] = sorted(self.g.by_type[gpu_type], key=lambda n: n.name)
        return out

    def flex_holds(self, node: Node) -> list[tuple[int, int]]:
        """The Flex runs on `node` not being stopped, as (bid, GPUs there), lowest bid
        first: bids and stops do not change within a pass."""
        held = self._flex_holds.get(node.name)
        if held is None:
            seen: set[int] = set()
            held = []
            for h in node.holders:
                if h is None or h in seen:
                    continue
                seen.add(h)
                v = self.g.jobs[h]
                if v.mode is Mode.FLEX and not v.stop_reason:
                    gpus = sum(len(p.gpus) for p in v.placement if p.node == node.name)
                    held.append((v.bid, gpus))
            held.sort()
            self._flex_holds[node.name] = held
        return held

    def flex(self) -> None:
        g, now = self.g, self.now
        pricing = self.cfg.pricing
        min_slice = pricing.min_slice_s
        outbid = 1 + pricing.min_outbid
        untyped = g.flex_book.get(None, [])
        # Per market, what its clearing price is judged on once every market has placed
        # its jobs (see `_waiting_bid`).
        priced: list[tuple[str, int | None, list[tuple[Job, int]], Iterator | None]] = []
        for t, market in g.markets.items():
            nodes = g.by_type[t]
            book = g.flex_book.get(t, [])
            running = [g.jobs[j] for j in g.flex_running[t] if j not in self.victims]
            lowest = min((j.bid for j in running if not j.stop_reason), default=None)
            movable = _lowest_movable(running, now, min_slice) if self.may_preempt else None
            failed_need: int | None = None  # a displacement this big found no victims
            free = self.flex_free(t)
            # Per pass: the most GPUs free on one node, and the nodes with GPUs being
            # freed; most waiting jobs are judged by these without a walk over the nodes.
            # A pass only takes GPUs, so `widest` stays an upper bound as jobs start; a
            # best_fit that finds no node lowers it (recounting it per start was O(nodes)).
            widest = (
                max((self.node_free_count(n, FLEX_POOL) for n in self.roomy_nodes(t)), default=0)
                if free
                else 0
            )
            soon = self.soon()
            soon_nodes = [n for n in nodes if n.name in soon] if soon else []
            sizes = [k for k in g.flex_needs.get(t, {})] + [k for k in g.flex_needs.get(None, {})]
            min_need = max(min(sizes, default=1), 1)
            smallest_node = min((n.gpu_count for n in nodes), default=0)
            bidders: list[tuple[Job, int]] = []  # waiting jobs that bid here, highest first
            rest: Iterator | None = None  # the book past the job the walk stopped at
            headed = False  # a blocked large bid holds a node in this market
            entries = _merge(book, untyped)
            for entry in entries:
                job = g.jobs[entry[2]]
                if job.id in self.started or job.retry_at > now or job.bid < market.floor:
                    continue
                if job.id in self.waiting_elsewhere:
                    continue
                if not nodes:
                    break
                need = job.gpus or job.nodes * smallest_node
                if not self.guard.can_start(job, t, need):
                    continue  # its account cannot fund it now: it neither runs nor bids
                if need <= free:
                    if job.nodes:
                        pl = self.whole_nodes(nodes, job.nodes, FLEX_POOL)
                    elif job.gpus > widest:
                        pl = None  # free GPUs exist, but no node has this many
                    else:
                        p = self.best_fit(nodes, job.gpus, FLEX_POOL)
                        pl = [p] if p else None
                        if p is None:
                            widest = job.gpus - 1
                    if pl:
                        self.start(job, pl, t)
                        free -= sum(len(p.gpus) for p in pl)
                        self._flex_free[t] = free
                        running.append(job)  # counts when `lowest` is recomputed below
                        lowest = job.bid if lowest is None else min(lowest, job.bid)
                        continue
                if job.gpu_type is None and self.fits_elsewhere(job, t):
                    continue  # it starts in another market this pass: no wait, no victims
                bidders.append((job, need))
                took = self.took
                if soon_nodes and self.claim_soon(soon_nodes, job, FLEX_POOL):
                    if job.gpu_type is None:
                        self.waiting_elsewhere.add(job.id)
                    free = self._flex_free[t] = free - (self.took - took)
                    continue
                if not headed and need > 1:
                    can_outbid = movable is not None and job.bid >= movable * outbid
                    if not can_outbid or (failed_need is not None and need >= failed_need):
                        headed = True
                        free = self._flex_free[t] = free - self.hold_flex_head(job, nodes)
                if movable is None or job.bid < movable * outbid:
                    if free < min_need:
                        rest = entries
                        break  # nobody below can start or displace anyone
                    continue
                if failed_need is not None and need >= failed_need:
                    continue  # a higher bid could not make room this big; nor can this one
                bid = job.bid

                def eligible(v: Job, bid: int = bid) -> bool:
                    return v.bid * outbid <= bid and now - (v.started_at or now) >= min_slice

                victims = self.choose_victims(nodes, job, FLEX_POOL, eligible)
                if victims:
                    if job.gpu_type is None:
                        self.waiting_elsewhere.add(job.id)
                    self.preempt(victims, f"outbid by {job.name}")
                    soon_nodes = [n for n in nodes if n.name in self.soon()]
                    took = self.took
                    self.hold_victim_nodes(victims, job, FLEX_POOL)
                    free = self._flex_free[t] = free - (self.took - took)
                    running = [j for j in running if j.id not in self.victims]
                    lowest = min((j.bid for j in running if not j.stop_reason), default=None)
                    movable = _lowest_movable(running, now, min_slice)
                else:
                    failed_need = need if failed_need is None else min(failed_need, need)
                    if not headed and need > 1:
                        headed = True
                        free = self._flex_free[t] = free - self.hold_flex_head(job, nodes)
            priced.append((t, lowest, bidders, rest))
        for t, lowest, bidders, rest in priced:
            market = g.markets[t]
            waiting = self._waiting_bid(t, bidders, rest)
            price = clearing_price(waiting, lowest, market.floor, market.rate)
            if (
                price != market.price
                or now - market.price_at >= self.cfg.cluster.billing_interval_s
            ):
                self.emit(A.SetPrice(t, price))

    def _waiting_bid(
        self, t: str, bidders: list[tuple[Job, int]], rest: Iterator | None
    ) -> int | None:
        """The highest bid still waiting in market `t` once this pass's starts are counted.

        A job waiting here when its market was walked may have started in a later one
        (an untyped job), or a later start of its account's may have left it unable to
        fund its first period: then it no longer bids. The price is judged on the state
        the pass leaves, as the next pass would see it; judged earlier, it would stand
        until the next pass, so bills would depend on how often passes run (issue 10).
        Funds only fall within a pass, so a job skipped as unfundable stays skipped;
        when no job walked still bids, the part of the book the walk never reached
        (`rest`) is read with the same rules."""
        guard, now = self.guard, self.now
        for job, need in bidders:
            if job.id not in self.started and guard.can_start(job, t, need):
                return job.bid
        if rest is None:
            return None
        g = self.g
        floor = g.markets[t].floor
        smallest_node = min((n.gpu_count for n in g.by_type[t]), default=0)
        for entry in rest:
            job = g.jobs[entry[2]]
            if job.id in self.started or job.retry_at > now or job.bid < floor:
                continue
            if job.id in self.waiting_elsewhere:
                continue
            if not guard.can_start(job, t, job.gpus or job.nodes * smallest_node):
                continue
            if job.gpu_type is None and self.fits_elsewhere(job, t):
                continue
            return job.bid
        return None


def _lowest_movable(running: list[Job], now: float, min_slice: float) -> int | None:
    """The lowest bid a higher one could displace now: running, not stopping, and past
    its min_slice. Bids under it by min_outbid cannot displace anyone."""
    return min(
        (j.bid for j in running if not j.stop_reason and now - (j.started_at or now) >= min_slice),
        default=None,
    )


def _victim_order(v: Job) -> tuple:
    work_at = v.last_checkpoint_at if v.last_checkpoint_at is not None else (v.started_at or 0)
    return (v.bid, -work_at, -(v.started_at or 0), -v.id)


def _merge(a: list, b: list) -> Iterator[tuple[int, int, int]]:
    if not b:
        return iter(a)
    if not a:
        return iter(b)
    return heapq.merge(a, b)
