"""Timers, the first part of a pass: what the clock alone decides.

Priority bookings warn at T-10/T-1 min, renew or expire at their end; running jobs
are settled every `billing_interval_s` (at most `SETTLE_PER_PASS` a pass, longest
unbilled first); accounts that can no longer pay for what they hold stop their jobs
(funding.py's Guard). It runs first so every later part sees those jobs as stopping
and their GPUs as being freed: a waiting job claims them, or outbids beside them, in
this pass, not in whichever pass comes next (so bills do not depend on how often
passes run, issue 10).
"""

from __future__ import annotations

import heapq

from ...domain.model import JobState, Mode, NodeStatus
from ...domain.money import fmt
from .. import actions as A
from ..grid import Grid
from ..pergrid import PerGrid
from .state import PassState, R

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_EXPIRED = JobState.EXPIRED
_COMMIT = Mode.COMMIT
_FLEX = Mode.FLEX
_PRIORITY = Mode.PRIORITY
_UP = NodeStatus.UP

# Settle actions one pass takes at least (more on a grid holding more than 32 x this).
SETTLE_PER_PASS = 128
# Per grid: whether every node was up, and the Grid.status_rev it was counted at.
_ALL_UP: PerGrid[tuple[int, bool]] = PerGrid()
# Tests set this: whether every node is up is counted again each pass and must agree.
CHECK_UP = False


def all_up(g: Grid) -> bool:
    """Whether every node is up: then no job's bill waits on a node not heard from.
    Counted again only when a node's status may have changed (`Grid.status_rev`)."""
    got = _ALL_UP.get(g)
    if got is None or got[0] != g.status_rev:
        up = _UP
        got = _ALL_UP.put(g, (g.status_rev, all(n.status is up for n in g.nodes.values())))
    elif CHECK_UP and got[1] != all(n.status is _UP for n in g.nodes.values()):
        raise AssertionError("every node kept as up, yet one is not (or the other way)")
    return got[1]


def timers(s: PassState) -> None:
    g, now = s.g, s.now
    w1, w2 = s.cfg.pricing.warn_before_s
    interval = s.cfg.cluster.billing_interval_s
    settle: list[int] = []
    jobs, nodes = g.jobs, g.nodes
    priority, commit, up = _PRIORITY, _COMMIT, _UP
    everywhere = all_up(g)
    for job in map(jobs.__getitem__, g.index.holding):
        if job.state is not R or job.stop_reason:
            continue
        mode = job.mode
        if mode is priority and job.end_at is not None:
            jid = job.id
            left = job.end_at - now
            if left <= 0:
                why = None
                if job.auto_renew:
                    why = g.renewal_refusal(job, job.renew_hours, now)
                    if why is None:
                        s.emit(A.Renew(jid, job.end_at + job.renew_hours * 3600, "auto-renewed"))
                        continue
                cause = "booking expired" + (f"; renewal refused: {why}" if why else "")
                s.mark_stopping(job)
                s.emit(A.Stop(jid, _EXPIRED, cause))
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
                    s.emit(A.Warn(jid, left, bit | (bit - 1), note))
        billed = job.billed_from
        if billed is not None and now - billed >= interval and mode is not commit:
            if everywhere:
                settle.append(job.id)
                continue
            # A node not heard from (a console just restarted, a link down) may yet
            # say the job ended a while ago: it is billed up to then when it does.
            for p in job.placement:
                if nodes[p.node].status is not up:
                    break
            else:
                settle.append(job.id)
    cap = SETTLE_PER_PASS
    if len(settle) > cap and len(settle) > (cap := max(cap, len(g.index.holding) // 32)):
        # Jobs started together would settle together every interval (2,000 in
        # one pass, a 150 ms write): the longest unbilled go first, the rest in the
        # next passes, which spreads them for good. A charge is the exact running
        # total whenever it is taken (docs/modes.md, Billing).
        def billed_from(jid: int) -> float:
            at = g.jobs[jid].billed_from
            assert at is not None, "settle holds only jobs being billed (checked above)"
            return at

        first = set(heapq.nsmallest(cap, settle, key=billed_from))
        settle = [j for j in settle if j in first]
    if settle:
        s.settle_block = (len(s.actions), settle)
        s.actions.extend(map(A.settle_of, settle))
    funds = s.guard.funds
    if funds and any(f.short for f in funds.values()):
        stop_unfunded(s)


def stop_unfunded(s: PassState) -> None:
    """Stop the jobs of accounts that cannot pay for them any longer."""
    for jid in sorted(s.g.index.holding):
        job = s.g.jobs[jid]
        f = s.guard.short(job.user)
        if f is None or job.mode is _COMMIT or job.stop_reason or jid in s.victims:
            continue
        cause = f"account {job.user} cannot pay ({fmt(f.available)} left)"
        if job.mode is _FLEX:
            s.preempt([job], cause)
        else:
            s.mark_stopping(job)
            s.emit(A.Stop(jid, _EXPIRED, cause))
