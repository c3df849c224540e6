"""The Flex market, per node type (docs/modes.md, *Flex*).

Waiting jobs by bid then submission; each starts where it fits; a bid higher by
`min_outbid` displaces running jobs that have run `min_slice`; a blocked large bid
holds a node so smaller, lower bids do not starve it. Once every market has placed its
jobs, each clearing price is set on the state the pass leaves (a bid whose account this
pass's starts left unable to pay, or whose job started in another market, no longer
counts), so the price never depends on how soon the next pass runs.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator

from ...domain.model import Job, Node, NodeStatus
from .. import actions as A
from ..funding import AmpleFunds
from ..pergrid import PerGrid
from ..pricing import clearing_price
from .state import FLEX_POOL, PassState
from .victims import choose_victims

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_UP = NodeStatus.UP

BookEntry = tuple[int, int, int]  # an entry of Grid.flex_book: (-bid, seq, id)
_NO_BOOK: list[BookEntry] = []  # a market nobody waits in (never changed)

# A head's verdicts hold for any bid no higher: a lower bid could have fewer GPUs.
# Per grid, type and head shape (gpus, nodes): the type's Grid.room_rev and the
# highest bid `hold_flex_head` found no node for in a pass that touched nothing there.
_NO_HEAD: PerGrid[dict[tuple[str, int, int], tuple[int, int]]] = PerGrid()
# Per grid, node and GPUs needed there: the node's Grid.node_room_rev and the highest
# bid it did not qualify for, judged on the grid as it is (nothing taken, claimed or
# being freed there by the pass).
_NO_HEAD_ON: PerGrid[dict[tuple[str, int], tuple[int, int]]] = PerGrid()
# Per grid, type and shape (gpus, nodes): the highest bid `choose_victims` found no
# room for in a pass that had touched nothing of the type, with the type's
# Grid.holds_rev then and the runs of the bids it could outbid once their min_slice
# ends: (run start, a node it holds GPUs on), one per node.
Ahead = list[tuple[float, str]]
_NO_ROOM: PerGrid[dict[tuple[str, int, int], tuple[int, int, Ahead]]] = PerGrid()
# Per grid and type, at the type's Grid.holds_rev: (that count, its Flex runs, their
# lowest bid not stopping, the latest start among those or None when one has none).
KeptRuns = tuple[int, list[Job], int | None, float | None]
_RUNS: PerGrid[dict[str, KeptRuns]] = PerGrid()
# Tests set this: a kept verdict is judged again and must come out the same.
CHECK_KEPT = False
# One grid's `_NO_HEAD`, `_NO_HEAD_ON` and `_NO_ROOM`.
Kept = tuple[
    dict[tuple[str, int, int], tuple[int, int]],
    dict[tuple[str, int], tuple[int, int]],
    dict[tuple[str, int, int], tuple[int, int, Ahead]],
]


_KEPT: PerGrid[Kept] = PerGrid()


def _kept(s: PassState) -> Kept:
    """The grid's `_NO_HEAD`, `_NO_HEAD_ON` and `_NO_ROOM`, looked up once a pass (a
    weak dictionary's lookup is Python code; these are read for every blocked bid)."""
    kept = s.flex_kept
    if kept is None:
        g = s.g
        kept = _KEPT.get(g)  # the three, together: one lookup a pass
        if kept is None:
            kept = _KEPT.put(
                g,
                (
                    _NO_HEAD.setdefault(g, {}),
                    _NO_HEAD_ON.setdefault(g, {}),
                    _NO_ROOM.setdefault(g, {}),
                ),
            )
        s.flex_kept = kept
    return kept


def hold_flex_head(s: PassState, job: Job, nodes: list[Node]) -> int:
    """Keep for a blocked large bid the node (a gang: nodes) with the most GPUs free
    or being freed, so smaller, lower bids do not starve it; returns GPUs kept.

    Most passes find no node for the same head as the pass before (every node held
    at higher bids or by other modes). A verdict of none, judged on the grid as it is
    (a pass that had touched nothing of the type), stands while nothing about who
    holds the type's GPUs changes but jobs starting (`Grid.room_rev`) and the pass
    stops no job there: GPUs taken by a start (a Flex start at a bid no higher turns
    free GPUs into GPUs it could have, no more), taken or claimed in a pass, and nodes
    held for other heads, only leave fewer nodes that qualify. Once that count has
    moved, only the nodes behind the change (`Grid.room_changes`) can have come to
    qualify: when none of them does, the verdict stands still."""
    if not nodes:
        return 0
    t = nodes[0].gpu_type
    g = s.g
    kept = (s.flex_kept or _kept(s))[0]
    unstopped = t not in s.stopped_types
    shape = (t, job.gpus, job.nodes)
    rev = g.room_rev.get(t, 0)
    got = kept.get(shape)
    if got is not None:
        if got[0] == rev and unstopped and job.bid <= got[1]:
            if CHECK_KEPT and _hold_flex_head(s, job, nodes, t) is not None:
                raise AssertionError(f"{job.name}: a head kept as blocked in {t} found nodes")
            return 0
        # Only the nodes whose room changed since, where this pass stopped jobs, or
        # (for a higher bid) where runs only it could have hold GPUs can have come to
        # qualify.
        changed = g.room_changes(t, got[0])
        if changed is not None:
            if not unstopped:
                changed = [*changed, *_stopped_nodes(s, t)]
            if job.bid > got[1]:
                changed = [*changed, *_yield_nodes(s, t, got[1], job.bid)]
            clean = unstopped and t not in s.touched
            # Judged at the kept bid first: if it holds there, it stands as it was.
            if clean and job.bid < got[1] and not _any_qualifies(s, job, changed, got[1]):
                bid = got[1]
            elif not _any_qualifies(s, job, changed, job.bid):
                bid = job.bid
            else:
                bid = -1
            if bid >= 0:
                if CHECK_KEPT and _hold_flex_head(s, job, nodes, t) is not None:
                    raise AssertionError(f"{job.name}: no node that changed in {t} qualifies")
                if clean:
                    kept[shape] = (rev, bid)
                return 0
    held = _hold_flex_head(s, job, nodes, t)
    if held is None:
        if unstopped and t not in s.touched and (got is None or got[0] != rev or got[1] < job.bid):
            kept[shape] = (rev, job.bid)
        return 0
    return held


def _yield_nodes(s: PassState, t: str, low: int, high: int) -> list[str]:
    """The nodes of the Flex runs of type `t` not stopping that bid more than `low`
    and no more than `high` (those a head bidding `high` could have, but not `low`)."""
    jobs = s.g.jobs
    out: list[str] = []
    for jid in s.g.index.flex_running[t]:
        v = jobs[jid]
        if low < v.bid <= high and not v.stop_reason:
            out.extend(p.node for p in v.placement)
    return out


def _stopped_nodes(s: PassState, t: str) -> list[str]:
    """The nodes of type `t` where this pass stopped jobs (their GPUs soon free)."""
    nodes = s.g.nodes
    return [name for name in s.stopped_nodes if nodes[name].gpu_type == t]


def _any_qualifies(s: PassState, job: Job, names: Iterable[str], bid: int) -> bool:
    """Whether one of the nodes `names` qualifies to be held for `job` bidding `bid`
    as a head, as `_hold_flex_head` judges a node (its room, then what bids no higher
    hold)."""
    heads, nodes = s.head_nodes, s.g.nodes
    up = _UP
    for name in set(names):
        n = nodes[name]
        if n.status is not up or n.drained is not None or name in heads:
            continue  # not schedulable, or held for another head
        need = n.gpu_count if job.nodes else job.gpus
        ok = s.flex_room(n)
        if ok < need:
            ok += s.flex_yield(n, bid, need - ok)
        if ok >= need:
            return True
    return False


def _hold_flex_head(s: PassState, job: Job, nodes: list[Node], t: str) -> int | None:
    """`hold_flex_head` judged afresh; None when no node qualifies (nothing changed).

    The nodes are taken in (most free or being freed, name) order; on a full grid
    most have none, so those are judged by name only until enough qualify, not all
    of them (a walk of every node per pass was the planner's largest cost)."""
    k = job.nodes or 1
    heads = s.head_nodes
    g, bid = s.g, job.bid
    rev, touched, stopped = g.node_room_rev, s.touched_nodes, s.stopped_nodes
    no_head = (s.flex_kept or _kept(s))[1]

    def qualifies(n: Node, ok: int) -> bool:
        """`ok`: the node's GPUs free or being freed for Flex (its room). A node that
        does not, judged as the grid is (untouched by this pass), is kept as such."""
        name = n.name
        need = n.gpu_count if job.nodes else job.gpus
        if not n.schedulable or name in heads:
            q = False
        else:
            # Only where it can start once bids no higher than its own end or are
            # outbid: never idle GPUs beside Priority, Commit or higher bids.
            if ok < need:
                ok += s.flex_yield(n, bid, need - ok)
            q = ok >= need
        if not q and name not in touched and name not in stopped:
            r, got = rev.get(name, 0), no_head.get((name, need))
            if got is None or got[0] != r or got[1] < bid:
                no_head[name, need] = (r, bid)
        return q

    def blocked(n: Node) -> bool:
        """A kept verdict that the node does not qualify, still standing: nothing
        about who holds it changed and this pass stopped no job there (what a pass
        takes or claims only leaves less room)."""
        name = n.name
        need = n.gpu_count if job.nodes else job.gpus
        got = no_head.get((name, need))
        if name in stopped or got is None or got[0] != rev.get(name, 0) or bid > got[1]:
            return False
        if CHECK_KEPT and qualifies(n, room(n)):
            raise AssertionError(f"{job.name}: {name}, kept as no head's, qualifies")
        return True

    def room(n: Node) -> int:
        return s.node_free_count(n, FLEX_POOL) + s.soon_count(n, FLEX_POOL)

    roomy = {n.name: n for n in s.roomy_nodes(t)}
    for name in s.soon():
        n = s.g.nodes[name]
        if n.gpu_type == t:
            roomy[name] = n
    ranked = []
    for n in roomy.values():
        if blocked(n):
            continue
        r = room(n)
        if r > 0 and qualifies(n, r):
            ranked.append((-r, n.name, n))
    chosen = [n for _, _, n in heapq.nsmallest(k, ranked)]
    if len(chosen) < k:
        picked = {n.name for n in chosen}
        for n in s.by_name(t):
            if len(chosen) >= k:
                break
            if n.name not in picked and not blocked(n) and room(n) == 0 and qualifies(n, 0):
                chosen.append(n)
    if len(chosen) < k:
        return None
    kept = 0
    for node in chosen:
        idx = s.free_indices(node, FLEX_POOL)
        if not job.nodes:
            idx = idx[: job.gpus]
        s.take(node.name, idx)
        s.head_nodes[node.name] = float("inf")
        s.head_free[node.name] = []
        kept += len(idx)
    if job.gpu_type is None:
        s.waiting_elsewhere.add(job.id)  # it holds a node in one market only
    return kept


def flex(s: PassState) -> None:
    g, now = s.g, s.now
    pricing = s.cfg.pricing
    min_slice = pricing.min_slice_s
    outbid = 1 + pricing.min_outbid
    interval = s.cfg.cluster.billing_interval_s
    # With ample funds, a bidder for a market alone is still waiting once the pass
    # ends: `_waiting_bid` reads no bidder after the first such one.
    ample = isinstance(s.guard, AmpleFunds)
    books, needs = g.index.flex_book, g.index.flex_needs  # a pass changes neither
    untyped = books.get(None, [])
    needs_u = needs.get(None)
    min_u = min(needs_u) if needs_u else 1  # the smallest untyped job, for every market
    # Per market, what its clearing price is judged on once every market has placed
    # its jobs (see `_waiting_bid`).
    priced: list[
        tuple[
            str,
            int | None,
            list[tuple[Job, int]],
            Iterator[BookEntry] | None,
            tuple[int, int, int] | None,
        ]
    ] = []
    jobs, started, elsewhere = g.jobs, s.started, s.waiting_elsewhere
    kept_runs = _RUNS.get(g)
    if kept_runs is None:
        kept_runs = _RUNS.put(g, {})
    flex_left = s.flex_left
    # GPUs being freed, per node: one dict for the whole pass (a stop adds to it).
    soon = s.soon()
    for t, market in g.markets.items():
        nodes = g.by_type[t]
        book = books.get(t, _NO_BOOK)
        running, lowest, movable = _running(s, t, min_slice, kept_runs)
        bar = None if movable is None else movable * outbid  # the bid that displaces
        if not book and not untyped:
            # Nobody waits here: nothing to place, and no waiting bid to price on.
            priced.append((t, lowest, [], None, None))
            continue
        failed_need: int | None = None  # a displacement this big found no victims
        free = flex_left.get(t)
        if free is None:
            free = s.flex_free(t)
        # Per pass: the most GPUs free on one node (counted when first needed), and the
        # nodes with GPUs being freed; most waiting jobs are judged by these without a
        # walk over the nodes. A pass only takes GPUs, so `widest` stays an upper
        # bound as jobs start; a best_fit that finds no node lowers it (recounting it
        # per start was O(nodes)).
        widest: int | None = None
        soon_nodes = [n for n in nodes if n.name in soon] if soon else []
        needs_t = needs.get(t)
        if needs_t:
            min_need = min(needs_t)
            if needs_u and min_u < min_need:
                min_need = min_u
        else:
            min_need = min_u
        if min_need < 1:
            min_need = 1
        smallest_node = s.smallest_node(t)
        bidders: list[tuple[Job, int]] = []  # waiting jobs that bid here, highest first
        rest: Iterator[BookEntry] | None = None  # the book past the job the walk stopped at
        headed = False  # a blocked large bid holds a node in this market
        sure = False  # such a bidder is in `bidders`
        cut: tuple[int, int, int] | None = None  # CHECK_KEPT: where the walk would stop
        # Without nodes the walk stops at its first bidder, having done nothing.
        entries = _merge(book, untyped) if nodes else iter(_NO_BOOK)
        floor = market.floor
        for entry in entries:
            jid = entry[2]
            if jid in started or jid in elsewhere:
                continue
            job = jobs[jid]
            if job.retry_at > now or job.bid < floor:
                continue
            need = job.gpus or job.nodes * smallest_node
            if not ample and not s.guard.can_start(job, t, need):
                continue  # its account cannot fund it now: it neither runs nor bids
            if need <= free:
                if not job.nodes and widest is None:
                    widest = s.widest_free(t, FLEX_POOL)
                if job.nodes:
                    pl = s.whole_nodes(nodes, job.nodes, FLEX_POOL)
                elif widest is not None and job.gpus > widest:
                    pl = None  # free GPUs exist, but no node has this many
                else:
                    p = s.best_fit(nodes, job.gpus, FLEX_POOL)
                    pl = [p] if p else None
                    if p is None:
                        widest = job.gpus - 1
                if pl:
                    s.start(job, pl, t)
                    for p in pl:
                        free -= len(p.gpus)
                    s.flex_left[t] = free
                    running = [*running, job]  # counts when `lowest` is recomputed below
                    if lowest is None or job.bid < lowest:
                        lowest = job.bid
                    continue
            if job.gpu_type is None and s.fits_elsewhere(job, t):
                continue  # it starts in another market this pass: no wait, no victims
            bidders.append((job, need))
            if ample and job.gpu_type is not None:
                sure = True
            took = s.took
            if soon_nodes and s.claim_soon(soon_nodes, job, FLEX_POOL):
                if job.gpu_type is None:
                    s.waiting_elsewhere.add(job.id)
                free = s.flex_left[t] = free - (s.took - took)
                continue
            if not headed and need > 1:
                can_outbid = bar is not None and job.bid >= bar
                if not can_outbid or (failed_need is not None and need >= failed_need):
                    headed = True
                    free = s.flex_left[t] = free - hold_flex_head(s, job, nodes)
            if bar is None or job.bid < bar:
                if free < min_need:
                    rest = entries
                    break  # nobody below can start or displace anyone
                if (
                    sure
                    and headed
                    and not soon_nodes
                    and _only_bids(free, widest, min_need, smallest_node)
                ):
                    # Nor claim or hold a node: below, only bids `_waiting_bid` never reads.
                    if not CHECK_KEPT:
                        break
                    cut = cut or (len(s.actions), s.took, len(bidders))
                continue
            if failed_need is not None and need >= failed_need:
                # A higher bid could not make room this big; nor can this one.
                if (
                    sure
                    and headed
                    and not soon_nodes
                    and failed_need <= min_need
                    and _only_bids(free, widest, min_need, smallest_node)
                ):
                    if not CHECK_KEPT:
                        break  # nor any bid below, which all need as much
                    cut = cut or (len(s.actions), s.took, len(bidders))
                continue
            bid = job.bid

            def eligible(v: Job, bid: int = bid) -> bool:
                return v.bid * outbid <= bid and now - (v.started_at or now) >= min_slice

            victims = _outbid(s, nodes, job, t, eligible, running)
            if victims:
                if job.gpu_type is None:
                    s.waiting_elsewhere.add(job.id)
                s.preempt(victims, f"outbid by {job.name}", job)
                soon_nodes = [n for n in nodes if n.name in soon]
                took = s.took
                s.hold_victim_nodes(victims, job, FLEX_POOL)
                free = s.flex_left[t] = free - (s.took - took)
                running = [j for j in running if j.id not in s.victims]
                lowest = min((j.bid for j in running if not j.stop_reason), default=None)
                movable = _lowest_movable(running, now, min_slice)
                bar = None if movable is None else movable * outbid
            else:
                if failed_need is None or need < failed_need:
                    failed_need = need
                if not headed and need > 1:
                    headed = True
                    free = s.flex_left[t] = free - hold_flex_head(s, job, nodes)
        if cut is not None and (len(s.actions), s.took) != cut[:2]:
            raise AssertionError(f"{t}: the book past the cut started, claimed or displaced")
        priced.append((t, lowest, bidders, rest, cut))
    emit = s.actions.append
    for t, lowest, bidders, rest, cut in priced:
        market = g.markets[t]
        waiting: int | None = None
        if ample:
            # `_waiting_bid` while every account can fund its jobs: the first bidder
            # that did not start, else the rest of the book.
            for job, _need in bidders:
                if job.id not in started:
                    waiting = job.bid
                    break
            else:
                if rest is not None:
                    waiting = _waiting_bid(s, t, [], rest)
        else:
            waiting = _waiting_bid(s, t, bidders, rest)
        if cut is not None and waiting != _waiting_bid(s, t, bidders[: cut[2]], None):
            raise AssertionError(f"{t}: the book past the cut changed the waiting bid")
        # `clearing_price`, inline (three times a pass): the same integers compared.
        floor = market.floor
        if waiting is None:
            price = floor
        else:
            price = waiting
            if lowest is not None and lowest < price:
                price = lowest
            rate = market.rate
            if rate is not None and rate < price:
                price = rate
            if floor > price:
                price = floor
        if CHECK_KEPT and price != clearing_price(waiting, lowest, floor, market.rate):
            raise AssertionError(f"{t}: the clearing price inline is not clearing_price's")
        if price != market.price or now - market.price_at >= interval:
            emit(A.set_price(t, price))


def _only_bids(free: int, widest: int | None, min_need: int, smallest_node: int) -> bool:
    """Whether no waiting job (none needs fewer than `min_need` GPUs) can start: then,
    when none can claim GPUs being freed or hold a node as a head either, all the
    book further down can do is bid. A gang starts only on a node with every GPU
    free, so not when the widest free node (`widest` is an upper bound) is narrower
    than the smallest node."""
    if free < min_need:
        return True
    return widest is not None and widest < min_need and widest < smallest_node


def _outbid(
    s: PassState,
    nodes: list[Node],
    job: Job,
    t: str,
    eligible: Callable[[Job], bool],
    running: list[Job],
) -> list[Job] | None:
    """`choose_victims` for a Flex bid, or the verdict of no room kept from an earlier
    pass. Most searches find none, pass after pass: a verdict judged on the grid as it
    is (a pass that had touched nothing of the type) stands while no bid it could
    outbid has reached its min_slice since (the only way time alone makes room) and
    this pass has stopped nothing of the type, for any bid no higher of the same shape
    (a lower bid can displace no more). Where who holds the type's GPUs changed since
    (`Grid.holds_rev`), only the nodes that changed are judged again: the others are
    as they were, and what this pass took or claimed there only leaves less room.
    `running`: the market's Flex runs (`_running`; in a clean pass, every one).

    A search that finds none may leave `victim_nodes` cleared; a kept verdict leaves it
    as it is: nothing reads it before a search or a claim that succeeds sets it."""
    g, now = s.g, s.now
    kept = (s.flex_kept or _kept(s))[2]
    stopped = t in s.stopped_types
    clean = t not in s.touched and not stopped
    shape = (t, job.gpus, job.nodes)
    rev = g.holds_rev.get(t, 0)
    got = kept.get(shape)
    if got is not None:
        min_slice = s.cfg.pricing.min_slice_s
        # Runs whose min_slice has ended since are new victims, on their nodes only.
        due = [x[1] for x in got[2] if now - x[0] >= min_slice] if got[2] else []
        more: Ahead = []
        if job.bid > got[1]:
            # A higher bid can outbid more runs: those too, on their nodes only.
            outbid = 1 + s.cfg.pricing.min_outbid
            for v in running:
                if v.stop_reason or v.bid * outbid <= got[1] or not v.bid * outbid <= job.bid:
                    continue
                at = v.started_at
                if at and now - at >= min_slice:
                    due.extend(p.node for p in v.placement)
                elif at:
                    more.extend((at, p.node) for p in v.placement)
        if got[0] == rev and not stopped and not due:
            ahead: Ahead | None = []
        else:
            ahead = _no_room_on(s, job, t, got[0], eligible, stopped, due)
        if ahead is not None:
            if CHECK_KEPT and choose_victims(s, nodes, job, FLEX_POOL, eligible) is not None:
                raise AssertionError(f"{job.name}: a bid kept as finding no room in {t} found some")
            if clean and (ahead or due or more or got[0] != rev or job.bid > got[1]):
                left = [x for x in got[2] if not now - x[0] >= min_slice] if due else got[2]
                kept[shape] = (rev, job.bid, left + more + ahead)
            return None
    victims = choose_victims(s, nodes, job, FLEX_POOL, eligible)
    if victims is None and clean:
        kept[shape] = (rev, job.bid, _min_slices_ahead(s, running, job.bid))
    return victims


def _no_room_on(
    s: PassState,
    job: Job,
    t: str,
    since: int,
    eligible: Callable[[Job], bool],
    stopped: bool,
    also: list[str],
) -> Ahead | None:
    """Judged on the nodes of type `t` whose holders changed since `holds_rev` was
    `since` (and, when `stopped`, those where this pass stopped jobs, and those in
    `also`), as `choose_victims` judges a node for a Flex bid: None when one of them
    has room for `job`, else the runs there of the bids it could outbid once their
    min_slice ends. None too when those changes are no longer known."""
    g, now = s.g, s.now
    changed = g.holds_changes(t, since)
    if changed is None:
        return None
    if stopped:
        changed = [*changed, *_stopped_nodes(s, t)]
    if also:
        changed = [*changed, *also]
    pricing = s.cfg.pricing
    min_slice, outbid = pricing.min_slice_s, 1 + pricing.min_outbid
    jobs, runs, heads, victims = g.jobs, g.index.flex_running[t], s.head_nodes, s.victims
    bid = job.bid
    ahead: Ahead = []
    nodes, up = g.nodes, _UP
    for name in set(changed):
        node = nodes[name]
        if node.status is not up or node.drained is not None or name in heads:
            continue  # not schedulable, or held for a head
        free = s.flex_room(node)
        need = node.gpu_count if job.nodes else job.gpus
        if free >= need:
            if job.nodes:
                return None  # a whole free node joins a gang
            continue  # claim_soon or placement would have taken it
        for vid in set(node.holders):
            if vid is None or vid not in runs or vid in victims:
                continue
            v = jobs[vid]
            if v.stop_reason:
                continue
            if eligible(v):
                for p in v.placement:
                    if p.node == name:
                        free += len(p.gpus)
            elif v.bid * outbid <= bid and v.started_at and not now - v.started_at >= min_slice:
                ahead.append((v.started_at, name))
        if free >= need:
            return None
    return ahead


def _min_slices_ahead(s: PassState, running: list[Job], bid: int) -> Ahead:
    """The `running` bids that `bid` could outbid but whose min_slice has not ended
    (`eligible` in `flex` on the time alone): (run start, node) per node each holds."""
    now = s.now
    pricing = s.cfg.pricing
    min_slice, outbid = pricing.min_slice_s, 1 + pricing.min_outbid
    out: Ahead = []
    for v in running:
        at = v.started_at
        if at and not v.stop_reason and v.bid * outbid <= bid and not now - at >= min_slice:
            out.extend((at, p.node) for p in v.placement)
    return out


def _waiting_bid(
    s: PassState, t: str, bidders: list[tuple[Job, int]], rest: Iterator[BookEntry] | None
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
    guard, now = s.guard, s.now
    for job, need in bidders:
        if job.id not in s.started and guard.can_start(job, t, need):
            return job.bid
    if rest is None:
        return None
    g = s.g
    floor = g.markets[t].floor
    smallest_node = s.smallest_node(t)
    for entry in rest:
        job = g.jobs[entry[2]]
        if job.id in s.started or job.retry_at > now or job.bid < floor:
            continue
        if job.id in s.waiting_elsewhere:
            continue
        if not guard.can_start(job, t, job.gpus or job.nodes * smallest_node):
            continue
        if job.gpu_type is None and s.fits_elsewhere(job, t):
            continue
        return job.bid
    return None


def _running(
    s: PassState, t: str, min_slice: float, kept: dict[str, KeptRuns] | None = None
) -> tuple[list[Job], int | None, int | None]:
    """The market's Flex runs this pass does not stop, their lowest bid and (when the
    pass may preempt) `_lowest_movable`, in one walk; or, before the pass stops any,
    from `kept` (`_RUNS`): while the type's `Grid.holds_rev` stands (raised by every
    start and end of a run and every change of a holding job's state, stop or bid)
    the runs and their lowest bid are the same, and once the latest of their starts
    is min_slice ago every one of them can be moved. The kept list itself is returned:
    callers make a new one rather than change it."""
    jobs, victims, now = s.g.jobs, s.victims, s.now
    may_preempt = s.may_preempt
    ids = s.g.index.flex_running[t]
    if kept is not None and not victims:
        rev = s.g.holds_rev.get(t, 0)
        got = kept.get(t)
        if got is None or got[0] != rev:
            got = kept[t] = _judge_runs(jobs, ids, rev)
        elif CHECK_KEPT and got != _judge_runs(jobs, ids, rev):
            raise AssertionError(f"{t}: the kept Flex runs are stale")
        rev, kept_runs, lowest, latest = got
        if not may_preempt or lowest is None:
            return kept_runs, lowest, None
        if latest is not None and now - latest >= min_slice:
            return kept_runs, lowest, lowest
        if min_slice <= 0:
            return _running(s, t, min_slice)  # a run not started yet may be moved too
        # Some run is inside its min_slice: the lowest bid among those past it, read
        # from the kept runs (no list made).
        movable = None
        for job in kept_runs:
            at = job.started_at
            if at and not job.stop_reason and now - at >= min_slice:
                bid = job.bid
                if movable is None or bid < movable:
                    movable = bid
        if CHECK_KEPT and movable != _running(s, t, min_slice)[2]:
            raise AssertionError(f"{t}: the lowest movable bid kept is not the walk's")
        return kept_runs, lowest, movable
    if victims:
        running = [jobs[jid] for jid in ids if jid not in victims]
    else:
        running = list(map(jobs.__getitem__, ids))
    lowest = movable = None
    for job in running:
        if job.stop_reason:
            continue
        bid = job.bid
        if lowest is None or bid < lowest:
            lowest = bid
        if (
            may_preempt
            and (movable is None or bid < movable)
            and now - (job.started_at or now) >= min_slice
        ):
            movable = bid
    return running, lowest, movable


def _judge_runs(jobs: dict[int, Job], ids: Iterable[int], rev: int) -> KeptRuns:
    """A type's `KeptRuns` judged afresh."""
    running = list(map(jobs.__getitem__, ids))
    lowest: int | None = None
    latest: float | None = None
    every = True  # every run not stopping has started (`started_at` set)
    for job in running:
        if job.stop_reason:
            continue
        bid = job.bid
        if lowest is None or bid < lowest:
            lowest = bid
        at = job.started_at
        if not at:
            every = False
        elif latest is None or at > latest:
            latest = at
    return rev, running, lowest, latest if every else None


def _lowest_movable(running: list[Job], now: float, min_slice: float) -> int | None:
    """The lowest bid a higher one could displace now: running, not stopping, and past
    its min_slice. Bids under it by min_outbid cannot displace anyone."""
    return min(
        (j.bid for j in running if not j.stop_reason and now - (j.started_at or now) >= min_slice),
        default=None,
    )


def _merge(a: list[BookEntry], b: list[BookEntry]) -> Iterator[BookEntry]:
    if not b:
        return iter(a)
    if not a:
        return iter(b)
    return _merge2(a, b)


def _merge2(a: list[BookEntry], b: list[BookEntry]) -> Iterator[BookEntry]:
    """`heapq.merge(a, b)` of two sorted books (no two entries equal: each has its
    own seq), at a third of its cost a step; a walk reads a few entries of each."""
    i = j = 0
    na, nb = len(a), len(b)
    while i < na and j < nb:
        x, y = a[i], b[j]
        if y < x:
            yield y
            j += 1
        else:
            yield x
            i += 1
    while i < na:
        yield a[i]
        i += 1
    while j < nb:
        yield b[j]
        j += 1
