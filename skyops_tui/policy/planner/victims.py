"""Whom to preempt, and which preemptions to call off.

`choose_victims` picks the cheapest Flex jobs whose preemption makes room for a job
(Priority, a Commit reclaim, a higher bid). `call_offs`, the last part of a pass, calls
off the preemptions made for a Priority job nobody needs any more while their victims
are still in the checkpoint grace, so a preemption that gives nobody anything is undone.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

from ...domain.model import HOLDING, Job, JobState, Mode, Node
from .. import actions as A
from .state import FLEX_POOL, PRIORITY_POOL, PassState

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_PREEMPTING = JobState.PREEMPTING
_FLEX = Mode.FLEX

_GPU_TYPE = operator.attrgetter("gpu_type")


def choose_victims(
    s: PassState,
    nodes: list[Node],
    job: Job,
    pool: str,
    eligible: Callable[[Job], bool],
    reservation: str | None = None,
) -> list[Job] | None:
    """The cheapest set of Flex jobs whose preemption makes room for `job`.

    Single-node requests: on one node, lowest bids first, then the least work lost
    (newest checkpoint), then the youngest. Whole-node requests: nodes whose every GPU
    is free or held by eligible Flex jobs. A gang victim is preempted whole.
    """
    on_node: dict[str, list[Job]] = {}
    types = set(map(_GPU_TYPE, nodes))
    flex_running = s.g.index.flex_running
    running = 0
    for t in types:  # (a loop: a generator for one or two types cost more)
        running += len(flex_running[t])
    if len(nodes) * 8 < running:
        # Few nodes (a reservation's): read who holds their GPUs.
        for node in nodes:
            seen: set[int] = set()
            for vid in node.holders:
                if vid is None or vid in seen or vid in s.victims:
                    continue
                seen.add(vid)
                v = s.g.jobs[vid]
                if (
                    v.mode is _FLEX
                    and v.holding
                    and v.state is not _PREEMPTING
                    and not v.stop_reason
                    and eligible(v)
                ):
                    on_node.setdefault(node.name, []).append(v)
    else:
        for t in types:
            for vid in s.g.index.flex_running[t]:
                if vid in s.victims:
                    continue
                v = s.g.jobs[vid]
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
            taken = s.taken.get(node.name, ())
            return sum(1 for i in idx if node.reserved[i] is None and i not in taken)
        if pool == "commit":
            return sum(1 for i in idx if node.reserved[i] == reservation)
        return len(idx)

    best: tuple[int, int] | None = None
    chosen: list[Job] = []
    need_nodes = job.nodes or 1
    per_node: list[tuple[tuple[int, int], Node, list[Job]]] = []
    best_node = ""
    for node in nodes:
        vs = on_node.get(node.name)
        # A head keeps a node's unreserved GPUs; a window's own GPUs stay its owner's.
        headed = node.name in s.head_nodes and pool != "commit"
        if not node.schedulable or (not vs and not job.nodes) or headed:
            continue
        free = (
            len(s.free_indices(node, pool, reservation))
            if pool == "commit"
            else s.node_free_count(node, pool)
        ) + s.soon_count(node, pool, reservation)
        need = node.gpu_count if job.nodes else job.gpus
        if free >= need:
            if job.nodes:
                per_node.append(((0, 0), node, []))  # a whole free node joins the gang
            continue
        if not vs:
            continue  # claim_soon or placement would have taken it
        vs = sorted(vs, key=_victim_order)
        picked: list[Job] = []
        top = 0  # the highest bid picked (`max` over `picked`)
        for v in vs:
            gives = usable(node, v)
            if not gives:
                continue  # its GPUs are not the pool's: preempting it gives `job` nothing
            picked.append(v)
            if len(picked) == 1 or v.bid > top:
                top = v.bid
            free += gives
            if free >= need:
                break
        if free < need:
            continue
        cost = (top, len(picked))
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
        s.victim_nodes = [n.name for _, n, _ in per_node[:need_nodes]]
        return list(out.values())
    s.victim_nodes = [best_node] if chosen else []
    return chosen or None


def call_offs(s: PassState) -> None:
    """Call off the preemptions made for a Priority job that nobody needs any more,
    while their victims are in the checkpoint grace (docs/modes.md, *Queue, backfill
    and claims*): the job they were for started elsewhere (or left), and no claim of
    this pass counts on their GPUs. An outbid is called off only when its bidder's
    owner lowered the bid below what outbids the victim: the victim, the higher bid,
    would take the GPUs back, and a lower bid cannot choose it again. A Flex claim
    counts only against a victim its bid could outbid: a lower bid gains nothing from
    a preemption it could not make. A victim back in the market caps its clearing
    price, as any running bid does."""
    g, now = s.g, s.now
    if not g.preempted_at:
        return
    grace = s.cfg.cluster.grace_s
    outbid = 1 + s.cfg.pricing.min_outbid
    cands = []
    for jid, (at, _) in g.preempted_at.items():
        v = g.jobs[jid]
        if (
            now < at + grace
            and jid not in g.calling_off
            and v.state is _PREEMPTING
            and v.stop_reason == "paused"
            and jid not in s.victims
        ):
            cands.append(v)
    if not cands:
        return
    cands.sort(key=lambda v: (-v.bid, v.seq, v.id))  # the likeliest to resume first
    kept: dict[str, list[int]] = {}  # per node, soon-free GPUs of victims called off
    lowest: dict[str, int] = {}  # per market, the lowest bid called off
    for v in cands:
        _, for_id = g.preempted_at[v.id]
        who = g.jobs.get(for_id)
        bid = v.bid * outbid
        outbid_since = who is not None and who.mode is _FLEX and who.bid < bid
        if who is not None and who.mode is _FLEX and not outbid_since:
            continue  # an outbid stands while its bid still outbids the victim (see above)
        if who is not None and for_id not in s.started and who.state not in HOLDING:
            if not who.finished and not outbid_since:
                # Its preemptor still waits: calling its victims off now could be undone
                # by its next choice of victims, pass after pass at one instant. (A bid
                # that no longer outbids the victim cannot choose it again.)
                continue
        if not all(_spare(s, p.node, p.gpus, kept.get(p.node, ()), bid) for p in v.placement):
            continue
        for p in v.placement:
            kept.setdefault(p.node, []).extend(p.gpus)
        if v.market is not None:
            lowest[v.market] = min(lowest.get(v.market, v.bid), v.bid)
        if who is None:
            why = "no longer needed"
        elif for_id in s.started:
            why = f"{who.name} started on other GPUs"
        elif who.state in HOLDING:
            why = f"{who.name} runs on other GPUs"
        elif outbid_since and not who.finished:
            why = f"{who.name}'s bid no longer outbids it"
        else:
            why = f"{who.name} is {who.state}"
        s.emit(A.CallOff(v.id, why))
    if not lowest:
        return
    price = {a.gpu_type: a.price for a in s.actions if isinstance(a, A.SetPrice)}
    for t, bid in lowest.items():
        m = g.markets[t]
        now_price = price.get(t, m.price)
        if bid < now_price:
            s.emit(A.SetPrice(t, max(bid, m.floor)))


def _spare(s: PassState, node: str, gpus: Iterable[int], kept: Iterable[int], bid: float) -> bool:
    """Whether the claims on `node` still have their GPUs being freed once `gpus` (and
    `kept`) are not: Priority claims on unreserved ones, a window's on its own."""
    out = set(gpus) | set(kept)
    left = [i for i in s.soon().get(node, ()) if i not in out]
    claims = s.claims.get(node)
    if not claims:
        return True
    n = s.g.nodes[node]
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


def _victim_order(v: Job) -> tuple[int, float, float, int]:
    work_at = v.last_checkpoint_at if v.last_checkpoint_at is not None else (v.started_at or 0)
    return (v.bid, -work_at, -(v.started_at or 0), -v.id)
