"""The checks a request passes before it changes the grid: a submission's admission
(rights, size, funds, bid bounds), whether a Priority booking may be extended, whether
a reservation fits (by count, then by shape). They read the grid and change nothing
but what a refused request may leave (`admit` opens the user's account;
`shape_refusal` adds a probe reservation and removes it before it returns). `Grid`
calls them for its commands; each refusal says why.
"""

from __future__ import annotations

import functools
import operator
from datetime import UTC, datetime
from fractions import Fraction
from typing import TYPE_CHECKING

from ..domain.errors import Refused
from ..domain.model import Job, Mode, NodeStatus, Reservation
from ..domain.money import cost as money_cost
from ..domain.money import fmt, to_micro
from ..domain.specs import JobSpec, ReservationSpec
from . import pricing

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_COMMIT = Mode.COMMIT
_PRIORITY = Mode.PRIORITY
_UNREACHABLE = NodeStatus.UNREACHABLE

if TYPE_CHECKING:
    from .grid import Grid

# Exact conversions a submission repeats with the same few amounts (a bid, the
# minutes a Flex bid must fund, a booking's first hour): each builds Fractions, and
# a long simulation submits 100,000 jobs.
_to_micro = functools.lru_cache(maxsize=4096)(to_micro)
_GPU_COUNT = operator.attrgetter("gpu_count")
_priority_price = functools.lru_cache(maxsize=4096)(pricing.priority_price)


@functools.lru_cache(maxsize=64)
def _exact(amount: float) -> Fraction:
    return Fraction(str(amount))


@functools.lru_cache(maxsize=4096)
def _funded(gpus: int, bid: int, minutes: float) -> int:
    """What a Flex submission must fund: `minutes` of `gpus` at `bid`, exactly."""
    return int(gpus * bid * _exact(minutes) / 60)


def funds_note(grid: Grid, user: str, now: float) -> str:
    """The balance a refusal shows, and how much of it running jobs owe unbilled."""
    from .funding import unbilled

    owed = unbilled(grid, user, now)
    note = f"balance {fmt(grid.balance(user))}"
    return note + (f", {fmt(owed)} of it owed for usage not yet billed" if owed >= 10_000 else "")


def admit(
    grid: Grid, spec: JobSpec, now: float, actor: str | None
) -> tuple[int, Reservation | None]:
    """The checks of a submission; the bid in micro-units and the reservation."""
    if actor is not None and actor != spec.user and not grid.cfg.is_operator(actor):
        raise Refused(f"{actor} may not submit jobs as {spec.user}")
    types = grid.candidate_types(spec.gpu_type)
    if spec.gpu_type and spec.gpu_type not in grid.markets:
        raise Refused(f"no node type {spec.gpu_type!r} (known: {', '.join(grid.markets)})")
    if not types:
        raise Refused("the grid has no nodes")
    if spec.nodes:
        biggest = max(len(grid.by_type[t]) for t in types)
        if spec.nodes > biggest:
            raise Refused(f"asks for {spec.nodes} whole nodes; the largest type has {biggest}")
    else:
        size = 0  # the widest node of the types: read in C per type, not a generator
        for t in types:
            widest = max(map(_GPU_COUNT, grid.by_type[t]))
            if widest > size:
                size = widest
        if spec.gpu_count > size:
            raise Refused(f"asks for {spec.gpu_count} GPUs on one node; the largest has {size}")
    gpus_est = spec.gpu_count or (spec.nodes or 0) * max(
        n.gpu_count for t in types for n in grid.by_type[t]
    )
    bid = 0
    reservation = None
    grid.ensure_account(spec.user, now)
    if spec.mode is _PRIORITY:
        rate = max(grid.markets[t].rate for t in types)
        hours = min(spec.hours or 1.0, 1.0)
        need = _priority_price(rate, gpus_est, hours)
        if not grid.can_fund(spec.user, need, now):
            raise Refused(
                f"account {spec.user} cannot cover the first hour ({fmt(need)}); "
                f"{funds_note(grid, spec.user, now)}"
            )
    elif spec.mode is _COMMIT:
        reservation = grid.reservations.get(spec.reservation or "")
        if reservation is None:
            raise Refused(f"no reservation {spec.reservation!r}")
        grid.authorize(reservation.user, spec.user, f"use reservation {reservation.name}")
        if reservation.finished:
            raise Refused(f"reservation {reservation.name} has no windows left")
        if spec.gpu_type and spec.gpu_type != reservation.gpu_type:
            raise Refused(
                f"reservation {reservation.name} holds {reservation.gpu_type}, not {spec.gpu_type}"
            )
        if spec.gpu_count > reservation.gpus:
            raise Refused(f"reservation {reservation.name} holds only {reservation.gpus} GPUs")
        t = reservation.gpu_type
        widest = max((n.gpu_count for n in grid.by_type.get(t, [])), default=0)
        if spec.gpu_count > widest:
            # A job runs on one node: it could never start in any window.
            raise Refused(
                f"asks for {spec.gpu_count} GPUs on one node; the largest {t} node "
                f"(reservation {reservation.name}) has {widest}"
            )
    else:
        bid = _to_micro(spec.bid or 0)
        floor = min(grid.markets[t].floor for t in types)
        cap = max(grid.markets[t].rate for t in types)
        if bid < floor:
            raise Refused(f"bid {fmt(bid)} is under the floor {fmt(floor)} per GPU-hour")
        if bid > cap:
            raise Refused(f"bid {fmt(bid)} is over the standard rate {fmt(cap)} per GPU-hour")
        need = _funded(gpus_est, bid, grid.cfg.pricing.min_funded_minutes)
        if not grid.can_fund(spec.user, need, now):
            raise Refused(
                f"account {spec.user} cannot fund {grid.cfg.pricing.min_funded_minutes:g} "
                f"minutes at the bid ({fmt(need)}); {funds_note(grid, spec.user, now)}"
            )
    return bid, reservation


def renewal_refusal(grid: Grid, job: Job, hours: float, now: float) -> str | None:
    """Why a Priority booking may not be extended by `hours`, or None if it may."""
    market = grid.markets[job.market or ""]
    cost = pricing.priority_price(market.rate, job.gpu_total, hours)
    # The booked time still to run is owed already: the account must cover both
    # (what ran but is not billed yet, can_fund counts).
    owed = 0
    if job.billed_from is not None and job.end_at is not None:
        since = max(job.billed_from, now)
        owed = money_cost(job.gpu_total, market.rate, max(job.end_at - since, 0))
    if not grid.can_fund(job.user, cost + owed, now):
        return f"account {job.user} cannot pay {fmt(cost)} for {hours:g} h more"
    t = job.market or ""
    waiting = priority_waiting(grid, t, now)
    if waiting is not None:
        return f"priority job {waiting.name} is queued for {t} GPUs"
    start = job.end_at or now
    end = start + hours * 3600
    res_name = window_squeezed(grid, job, start, end, now)
    if res_name:
        return f"a Commit window ({res_name}) is due on these GPUs"
    return None


def priority_waiting(grid: Grid, gpu_type: str, now: float) -> Job | None:
    """The first queued Priority job that could use GPUs of the type and that its
    account can fund now: one waiting only for money holds nobody up."""
    queued = [
        q
        for q in (grid.jobs[j] for _seq, j in grid.index.priority_queue)
        if q.gpu_type in (None, gpu_type)
    ]
    if not queued:
        return None
    from .funding import guard

    funds = guard(grid, now)
    size = max((n.gpu_count for n in grid.by_type[gpu_type]), default=0)
    for q in queued:
        if funds.can_start(q, gpu_type, q.gpus or q.nodes * size):
            return q
    return None


def window_squeezed(grid: Grid, job: Job, start: float, end: float, now: float) -> str | None:
    """The Commit window due in [start, end) that could no longer be held on the
    nodes its owner's jobs need (windows.py) if `job` kept its GPUs until `end`,
    though it could otherwise; or None. Only what will really hold GPUs when each
    window opens counts: a Priority booking that ends before it does not."""
    from .windows import due_windows, plan_windows

    t = job.market or ""
    if not due_windows(grid, t, start, end):
        return None
    was = {(d.reservation, d.index) for d in plan_windows(grid, t, now, end) if d.broken}
    for d in plan_windows(grid, t, now, end, ends={job.id: end}):
        if d.broken and d.start >= start and (d.reservation, d.index) not in was:
            return d.reservation
    return None


def commit_demand(
    grid: Grid, gpu_type: str, start: float, end: float, exclude: str | None = None
) -> tuple[int, str | None]:
    """Most GPUs Commit windows not yet open need at once during [start, end)."""
    points: list[tuple[float, int, str]] = []
    for res in grid.reservations.values():
        if res.gpu_type != gpu_type or res.cancelled_at is not None or res.name == exclude:
            continue
        for i, (s, e) in enumerate(res.windows):
            if s < end and e > start and i != res.active_window and i >= res.settled_windows:
                points.append((max(s, start), res.gpus, res.name))
                points.append((min(e, end), -res.gpus, res.name))
    load = best = 0
    name = None
    for _, delta, rname in sorted(points, key=lambda p: (p[0], p[1])):
        load += delta
        if load > best:
            best, name = load, rname
    return best, name


def capacity_refusal(grid: Grid, spec: ReservationSpec, now: float) -> str | None:
    """Why the reservation does not fit, or None. By count (GPUs of the type less
    other windows, Priority bookings and claims running past each opening), then by
    placement: each window must be held in its shape beside them and must not split
    a window that holds otherwise (docs/modes.md, *Capacity calendar*)."""
    from .planner import Planner

    t = spec.gpu_type
    capacity = sum(n.gpu_count for n in grid.by_type.get(t, []) if n.status is not _UNREACHABLE)
    # Priority jobs waiting on GPUs being freed hold them by their claim (booked).
    probe = Planner(grid, now)
    probe.claims_first()
    claims = probe.claim_extra.get(t, [])
    for s, e in spec.windows():
        if e <= now:
            return f"window {hm(s)}-{hm(e)} is in the past"
        demand, _ = commit_demand(grid, t, s, e)
        active = sum(
            r.gpus
            for r in grid.reservations.values()
            if r.gpu_type == t
            and r.active_window is not None
            and r.cancelled_at is None
            and r.windows[r.active_window][1] > s
        )
        booked = sum(
            grid.jobs[j].gpu_total
            for j in grid.index.holding
            if grid.jobs[j].mode is _PRIORITY
            and grid.jobs[j].market == t
            and (grid.jobs[j].end_at or 0) > s
        ) + sum(k for _, k, end in claims if end > s)
        if demand + active + booked + spec.gpus > capacity:
            free = max(capacity - demand - active - booked, 0)
            return (
                f"no room on {t} for the window starting {hm(s)}: {free} of {capacity} GPUs "
                f"left after other Commit windows and Priority bookings, {spec.gpus} asked"
            )
    return shape_refusal(grid, spec, now, claims)


def shape_refusal(
    grid: Grid, spec: ReservationSpec, now: float, claims: list[tuple[str, int, float]]
) -> str | None:
    """Counting GPUs per type is not enough: each of the owner's jobs runs on one
    node, so a window that could only be held split (2 + 2 where its shape is 4 on
    one node) would sell GPUs no owner job can use (windows.py)."""
    from .windows import plan_windows

    t = spec.gpu_type
    windows = from_now(spec.windows(), now)
    if not windows:
        return None
    until = max(e for _, e in windows)
    was = {
        (d.reservation, d.index)
        for d in plan_windows(grid, t, now, until, extra=claims, admission=True)
        if d.broken
    }
    name = f"\0{spec.name}"  # a name no reservation has
    grid.reservations[name] = Reservation(
        id=-1, name=name, user=spec.user, gpu_type=t, gpus=spec.gpus, windows=windows,
        rate=0, discount_bp=0, prepaid=0, created_at=now,
    )  # fmt: skip
    try:
        plan = plan_windows(grid, t, now, until, extra=claims, admission=True)
    finally:
        del grid.reservations[name]
    for d in plan:
        if not d.broken or (d.reservation, d.index) in was:
            continue
        parts = " + ".join(str(k) for k in sorted(d.chunks.values(), reverse=True)) or "0"
        if d.reservation == name:
            return (
                f"no room on {t} for the window starting {hm(d.start)} on the nodes its "
                f"owner's jobs need: beside Priority bookings and other Commit windows it "
                f"could only be held as {parts} GPUs, {spec.gpus} asked"
            )
        return (
            f"no room on {t} for the window starting {hm(d.start)}: it would leave "
            f"window {d.index + 1} of {d.reservation} split across nodes ({parts} GPUs)"
        )
    return None


def from_now(windows: list[tuple[float, float]], now: float | None) -> list[tuple[float, float]]:
    """The windows as sold at `now`: one already begun is sold from `now` to its end."""
    if now is None:
        return windows
    return [(max(s, now), e) if s < now < e else (s, e) for s, e in windows]


def hm(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")
