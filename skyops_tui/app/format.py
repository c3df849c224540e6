"""How jobs, prices and countdowns read on screen (plain strings, no styling).

Times and durations come from `skyops_tui.text`, shared with the command line; they
are named here too so a screen finds every formatter under `F`."""

from __future__ import annotations

from ..domain.model import Job, JobState, Mode
from ..domain.money import fmt
from ..policy.pricing import effective_rate_per_gpu_hour
from ..runtime import Runtime
from ..text import clock as clock
from ..text import duration as duration
from ..text import stamp as stamp


def money(micro: int, currency: str = "$") -> str:
    return fmt(micro, currency)


def rate(micro: int, currency: str = "$") -> str:
    """A per-GPU-hour price: '$2.50'."""
    return fmt(micro, currency)


def placement(job: Job) -> str:
    if not job.placement:
        return "—"
    return ",".join(p.node for p in job.placement)


def gpus(job: Job) -> str:
    if job.nodes:
        held = job.gpu_total
        return f"{job.nodes}n" + (f"/{held}" if held else "")
    return str(job.gpus)


def market_of(rt: Runtime, job: Job) -> str | None:
    if job.market:
        return job.market
    if job.gpu_type:
        return job.gpu_type
    return None


def price(rt: Runtime, job: Job, compact: bool = False) -> str:
    """Priority: the standard rate; Commit: the discounted rate; Flex: bid and clearing price."""
    cur = rt.cfg.cluster.currency
    g = rt.grid
    m = market_of(rt, job)
    if job.mode is Mode.PRIORITY:
        if m and m in g.markets:
            return f"{rate(g.markets[m].rate, cur)}/h"
        return "std rate"
    if job.mode is Mode.COMMIT:
        res = g.reservations.get(job.reservation or "")
        if res is None:
            return "—"
        off = f" -{res.discount_bp / 100:g}%" if res.discount_bp and not compact else ""
        return f"{rate(effective_rate_per_gpu_hour(res), cur)}{off}"
    bid = rate(job.bid, cur)
    if m and m in g.markets:
        now = rate(g.markets[m].price, cur)
        return f"bid {bid}@{now}" if compact else f"bid {bid} · clearing {now}"
    return f"bid {bid}"


WARN_S = 600.0  # time left under this is shown as a warning
URGENT_S = 60.0  # and under this as an error


def left_style(seconds: float | None) -> str:
    """The palette class for time left: urgent under a minute, warning under ten."""
    if seconds is None:
        return ""
    if seconds < URGENT_S:
        return "tag--error"
    if seconds < WARN_S:
        return "tag--warning"
    return ""


def stop_asked_at(rt: Runtime, job: Job) -> float | None:
    """When the stop now under way was asked: the job's latest 'stop' event, or its
    move to preempting (the feed keeps both; stops are few, the scan is short)."""
    for e in reversed(rt.feed.events):
        if e.job != job.id:
            continue
        if e.kind == "stop" or (e.kind == "state" and e.new == JobState.PREEMPTING):
            return e.at
        if e.kind == "state":
            return None  # a later state change: no stop under way since
    return None


def grace_left(rt: Runtime, job: Job, now: float) -> float | None:
    """Seconds until a stopping job is killed: a preempted Flex job gets the checkpoint
    grace (grace_s), any other stop the stop grace (stop_grace_s)."""
    if job.state is not JobState.PREEMPTING and not (job.holding and job.stop_reason):
        return None
    asked = stop_asked_at(rt, job)
    if asked is None:
        return None
    c = rt.cfg.cluster
    checkpointing = job.mode is Mode.FLEX and job.stop_reason == JobState.PAUSED
    return max(0.0, asked + (c.grace_s if checkpointing else c.stop_grace_s) - now)


def countdown(rt: Runtime, job: Job, now: float) -> tuple[str, float | None]:
    """Time left on a Priority booking or a Commit window, or of the grace of a job
    being stopped, and the seconds (for sorting and colouring)."""
    if job.finished:
        return "", None
    grace = grace_left(rt, job, now)
    if grace is not None:
        return f"grace {duration(grace)}", grace
    if job.mode is Mode.PRIORITY:
        if job.end_at is not None and job.holding:
            left = job.end_at - now
            return duration(left) + (" ↻" if job.auto_renew else ""), left
        if job.hours is not None:
            return f"{job.hours:g}h booking", None
        return "hourly", None
    if job.mode is Mode.COMMIT:
        res = rt.grid.reservations.get(job.reservation or "")
        if res is None or res.cancelled_at is not None:
            return "", None
        if res.active_window is not None:
            left = res.windows[res.active_window][1] - now
            return duration(left), left
        for s, _e in res.windows:
            if s > now:
                return f"opens {duration(s - now)}", s - now
        return "", None
    return "", None


def queue(rt: Runtime, job: Job) -> str:
    if job.mode is Mode.PRIORITY and job.state is JobState.QUEUED:
        pos = rt.queue_position(job)
        return f"#{pos}" if pos else ""
    if job.mode is Mode.FLEX and job.state in (JobState.QUEUED, JobState.PAUSED):
        rank = flex_rank(rt, job)
        return f"bid #{rank}" if rank else ""
    return ""


def flex_rank(rt: Runtime, job: Job) -> int | None:
    """1-based rank of a waiting Flex job among the waiting bids of its book."""
    book = rt.grid.flex_book.get(job.gpu_type, [])
    for k, (_, _, jid) in enumerate(book, 1):
        if jid == job.id:
            return k
    return None


def work_lost(job: Job) -> str:
    if not job.lost_work_s:
        return "none"
    gpu_s = job.lost_work_s * max(job.gpu_total or job.gpus, 1)
    return f"{duration(job.lost_work_s)} ({gpu_s / 3600:.2f} GPU-h)"
