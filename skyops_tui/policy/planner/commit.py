"""Commit jobs start on their reservation's held GPUs (docs/modes.md, *Commit*).

FIFO per reservation: a job starts on the window's idle held GPUs; the first that does
not fit waits for GPUs being freed or reclaims the held GPUs lent to Flex (never
others). A reservation with no windows left fails the jobs still queued on it.
"""

from __future__ import annotations

from itertools import compress

from ...domain.model import Mode
from ...domain.money import fmt
from .. import actions as A
from .state import PassState
from .victims import choose_victims

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_FLEX = Mode.FLEX

# Tests set this: a pass that finds no Commit job waiting (`JobIndex.commit_busy`)
# reads every queue anyway, and finds them all empty.
CHECK_IDLE = False


def commit(s: PassState) -> None:
    g = s.g
    queues = g.index.commit_waiting  # a queue per reservation ever booked, most of them empty
    if not g.index.commit_busy:
        if CHECK_IDLE and any(queues.values()):
            raise AssertionError("a Commit job waits, yet the queues were counted empty")
        return
    for name, waiting in compress(queues.items(), queues.values()):
        res = g.reservations.get(name)
        if res is None or res.finished:
            why = f"reservation {name} has no windows left"
            if res is not None and res.credited:
                why += f"; GPUs lost to node failure were credited ({fmt(res.credited)})"
            for _, jid in list(waiting):
                s.emit(A.Fail(jid, why))
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
            elif g.jobs[h].mode is _FLEX and h not in s.victims:
                lent += 1
        reclaiming = True
        for _, jid in waiting:
            if not idle and not lent:
                break  # the window is full of the owner's own jobs: the rest wait
            job = g.jobs[jid]
            p = s.best_fit(nodes, job.gpus, "commit", name)
            if p:
                s.start(job, [p], res.gpu_type)
                idle -= len(p.gpus)
                continue
            if not reclaiming:
                continue  # the queue is FIFO: only what fits now may pass the head
            reclaiming = False
            if s.claim_soon(nodes, job, "commit", name) or not s.may_preempt:
                continue
            victims = choose_victims(s, nodes, job, "commit", lambda v: True, name)
            if victims:
                s.preempt(victims, f"reclaimed for Commit job {job.name} ({name})")
                s.hold_victim_nodes(victims, job, "commit", name)
