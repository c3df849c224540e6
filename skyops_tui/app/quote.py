"""The launch form's live quote in words: the lines the form shows for what a job
would cost and what the scheduler would do with it right now. The rules (prices, the
dry run on a copy of the grid) are policy's (`policy.pricing`, `policy.quotes`), shared
with `skyops quote`; this module only words them. Plain functions, no Textual, so they
are tested without a terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..domain.errors import Refused
from ..domain.model import Job, Mode, user_account
from ..domain.money import fmt, to_micro
from ..domain.specs import JobSpec
from ..policy import actions as A
from ..policy.grid import Grid
from ..policy.planner import plan
from ..policy.pricing import effective_rate_per_gpu_hour, priority_price
from ..policy.quotes import (
    DRY_RUN_MAX_JOBS,
    Outcome,
    caused_by,
    opening_balance,
    request_gpus,
    upfront,
)
from . import format as F


@dataclass
class QuoteLine:
    text: str
    style: str = ""  # a palette component class, or ""


def bid_preview(grid: Grid, job: Job, bid: float, now: float, cur: str) -> list[QuoteLine]:
    """What a new bid would do, from one planning pass on a copy of the grid: the
    job's rank among the waiting bids, whom it would preempt, its cost per hour."""
    if len(grid.jobs) > DRY_RUN_MAX_JOBS:
        return [QuoteLine("not previewed: the grid is too large to copy", "tag--muted")]
    shadow = grid.snapshot()
    try:
        shadow.change_bid(job.id, bid, now)
    except Refused as e:
        return [QuoteLine(f"would be refused: {e}", "tag--error")]
    mine = shadow.jobs[job.id]
    lines: list[QuoteLine] = []
    book = shadow.flex_book.get(mine.gpu_type, [])
    rank = next((k for k, (_, _, jid) in enumerate(book, 1) if jid == job.id), None)
    if rank is not None:
        lines.append(QuoteLine(f"rank #{rank} of {len(book)} waiting bids"))
    actions = plan(shadow, now)
    victims = [
        grid.jobs[a.job]
        for a in actions
        if isinstance(a, A.Preempt) and caused_by(a.cause, job.name) and a.job in grid.jobs
    ]
    starts = any(isinstance(a, A.Start) and a.job == job.id for a in actions)
    if victims:
        who = ", ".join(f"{v.name} ({money(v.bid, cur)})" for v in victims)
        lines.append(QuoteLine(f"would preempt {who}", "tag--warning"))
    elif starts:
        lines.append(QuoteLine("would start now", "load--light"))
    elif not mine.holding:
        lines.append(QuoteLine("would keep waiting: the bid does not clear now", "tag--warning"))
    market = grid.markets.get(mine.market or mine.gpu_type or "")
    per_gpu = min(mine.bid, market.price) if market is not None else mine.bid
    gpus = mine.gpu_total or mine.gpus
    lines.append(
        QuoteLine(
            f"{gpus} GPUs: {money(per_gpu * gpus, cur)} per hour at the clearing price, "
            f"at most {money(mine.bid * gpus, cur)} at this bid",
            "tag--key",
        )
    )
    return lines


def money(micro: int, cur: str) -> str:
    return fmt(micro, cur)


def priority_quote(grid: Grid, spec: JobSpec, cur: str) -> list[QuoteLine]:
    types = [spec.gpu_type] if spec.gpu_type else list(grid.markets)
    rates = {t: grid.markets[t].rate for t in types if t in grid.markets}
    if not rates:
        return [QuoteLine(f"no node type {spec.gpu_type!r}", "tag--error")]
    rate = max(rates.values())
    gpus = request_gpus(grid, spec, types)
    lines = [QuoteLine("Price", "tag--section")]
    label = spec.gpu_type or "any type (up to)"
    lines.append(QuoteLine(f"{label}: {money(rate, cur)} per GPU-hour (standard)"))
    per_hour = rate * gpus
    if spec.hourly:
        lines.append(QuoteLine(f"{gpus} GPUs: {money(per_hour, cur)} per hour, renewed hourly"))
    else:
        hours = spec.hours or 0
        total = priority_price(rate, gpus, hours)
        lines.append(
            QuoteLine(
                f"{money(rate, cur)} x {gpus} GPUs x {hours:g} h = {money(total, cur)}", "tag--key"
            )
        )
        if spec.auto_renew:
            lines.append(
                QuoteLine(
                    f"auto-renew: +{money(priority_price(rate, gpus, spec.renew_hours or hours), cur)} per renewal"
                )
            )
    lines.append(QuoteLine("billed per second held; an early exit stops billing", "tag--muted"))
    return lines


def commit_quote(grid: Grid, spec: JobSpec, now: float, cur: str) -> list[QuoteLine]:
    res = grid.reservations.get(spec.reservation or "")
    if res is None:
        return [QuoteLine("pick one of your reservations", "tag--muted")]
    eff = effective_rate_per_gpu_hour(res)
    lines = [
        QuoteLine("Price", "tag--section"),
        QuoteLine(
            f"{res.name}: {res.gpus} x {res.gpu_type}, {res.discount_bp / 100:g}% off",
        ),
        QuoteLine(
            f"{money(eff, cur)} per GPU-hour (standard {money(res.rate, cur)}), prepaid {money(res.prepaid, cur)}",
            "tag--key",
        ),
        QuoteLine("this job adds no charge: the window is paid for", "tag--muted"),
    ]
    if res.cancelled_at is not None or res.finished:
        lines.append(QuoteLine("this reservation has no windows left", "tag--error"))
    elif res.active_window is not None:
        s, e = res.windows[res.active_window]
        lines.append(
            QuoteLine(f"window open until {F.clock(e, False)} UTC ({F.duration(e - now)} left)")
        )
    else:
        nxt = next((s for s, _ in res.windows if s > now), None)
        if nxt is not None:
            lines.append(
                QuoteLine(
                    f"next window opens {F.stamp(nxt)[:16]} UTC (in {F.duration(nxt - now)}); the job waits for it"
                )
            )
    return lines


def flex_quote(grid: Grid, spec: JobSpec, cur: str, now: float | None = None) -> list[QuoteLine]:
    t = spec.gpu_type
    if not t:
        types = [m for m in grid.markets if grid.by_type.get(m)]
        lines = [QuoteLine("Markets", "tag--section")]
        lines.append(QuoteLine("any type: runs in whichever market has room", "tag--muted"))
        for name in types:
            mk = grid.markets[name]
            lines.append(
                QuoteLine(f"{name}: clearing {money(mk.price, cur)} (floor {money(mk.floor, cur)})")
            )
        return lines
    m = grid.markets.get(t)
    if m is None:
        return [QuoteLine(f"no node type {t!r}", "tag--error")]
    bid = to_micro(spec.bid or 0)
    gpus = request_gpus(grid, spec, [t])
    lines = [
        QuoteLine("Price", "tag--section"),
        QuoteLine(f"{t} market: floor {money(m.floor, cur)}, standard {money(m.rate, cur)}"),
        QuoteLine(f"clearing price now {money(m.price, cur)} per GPU-hour", "mode--flex"),
    ]
    if not m.floor <= bid <= m.rate:
        lines.append(
            QuoteLine(
                f"bid must be between {money(m.floor, cur)} and {money(m.rate, cur)}", "tag--error"
            )
        )
        return lines
    lines.append(
        QuoteLine(
            f"pays at most {money(bid * gpus, cur)} per hour for {gpus} GPUs, never above the bid",
            "tag--muted",
        )
    )
    lines.append(QuoteLine("Ladder", "tag--section"))
    waiting = [grid.jobs[j] for _, _, j in grid.flex_book.get(t, [])]
    ahead = sum(1 for j in waiting if j.bid >= bid)
    lines.append(
        QuoteLine(
            f"your bid {money(bid, cur)} ranks #{ahead + 1} of {len(waiting) + 1} waiting bids",
            "tag--key",
        )
    )
    running = sorted((grid.jobs[j] for j in grid.flex_running.get(t, ())), key=lambda j: j.bid)
    if running:
        low = running[0]
        need = int(Fraction(low.bid) * (1 + Fraction(str(grid.cfg.pricing.min_outbid))))
        text = f"lowest running bid {money(low.bid, cur)} ({low.name}); displacing it takes ≥ {money(need, cur)}"
        min_slice = grid.cfg.pricing.min_slice_s
        ran = (now - low.started_at) if now is not None and low.started_at is not None else None
        if ran is not None and ran < min_slice:
            text += f" and {F.duration(min_slice - ran)} more of its run (min_slice)"
        lines.append(QuoteLine(text))
    return lines


def funding_lines(grid: Grid, spec: JobSpec, now: float, cur: str) -> list[QuoteLine]:
    """A warning when the account cannot cover the booking (balance and credit, less
    what its running jobs owe unbilled): the same test admission makes."""
    amount = upfront(grid, spec)
    if not amount:
        return []
    if user_account(spec.user) in grid.balances:
        if grid.can_fund(spec.user, amount, now):
            return []
        have = grid.balance(spec.user) + grid.credit_limit()
    else:  # opened on submit, with its opening balance
        have = opening_balance(grid, spec.user) + grid.credit_limit()
        if have >= amount:
            return []
    return [
        QuoteLine(
            f"{spec.user}'s account cannot cover {money(amount, cur)}: "
            f"balance and credit {money(have, cur)}",
            "tag--error",
        )
    ]


def outcome_lines(outcome: Outcome, spec: JobSpec, grid: Grid, cur: str) -> list[QuoteLine]:
    if outcome.skipped:
        return [
            QuoteLine(
                "not previewed: the grid is too large to copy on each keystroke", "tag--muted"
            )
        ]
    if outcome.refused:
        return [QuoteLine(f"would be refused: {outcome.refused}", "tag--error")]
    if outcome.starts_on:
        return [QuoteLine(f"would run now on {outcome.starts_on}", "load--light")]
    if outcome.preempts:
        who = ", ".join(
            f"{v.name} ({money(v.bid, cur)})" if v.mode is Mode.FLEX else v.name
            for v in outcome.preempts
        )
        if spec.mode is Mode.FLEX:
            return [QuoteLine(f"would displace {who} by min_outbid, then start", "tag--warning")]
        return [
            QuoteLine(
                f"would preempt Flex {who}, then start after their grace period", "tag--warning"
            )
        ]
    if spec.mode is Mode.PRIORITY:
        return [
            QuoteLine(
                "would wait in the Priority queue (no free or Flex-held GPUs fit)", "tag--warning"
            )
        ]
    if spec.mode is Mode.COMMIT:
        return [QuoteLine("would wait for its reservation's window", "tag--warning")]
    return [QuoteLine("would wait: the bid does not clear now", "tag--warning")]
