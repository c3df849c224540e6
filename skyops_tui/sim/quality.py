"""Scheduling quality of a simulated run: how long each mode waited, whether a lower
mode started while a higher one waited, and what preemptions cost (issue 17).

Part of `skyops simulate --json` (`summary["quality"]`); docs/modes.md says what each
mode promises, this says how well a run kept those promises."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from ..domain.model import Job, Mode
from ..policy.grid import Grid
from ..policy.invariants import watch

# Which modes rank below each: a Priority job should never wait while Flex starts; a
# Commit job (inside its open window) neither.
LOWER = {Mode.PRIORITY: (Mode.FLEX,), Mode.COMMIT: (Mode.FLEX,), Mode.FLEX: ()}


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(q * (len(values) - 1)))))]


def _wait_span(grid: Grid, job: Job, end: float) -> tuple[float, float]:
    """From when to when the job waited to start: from submission (a Commit job: from
    the opening of the window it could run in) to its first start (or the end)."""
    until = job.first_started_at if job.first_started_at is not None else end
    since = job.submitted_at
    if job.mode is Mode.COMMIT:
        res = grid.reservations.get(job.reservation or "")
        if res is not None:
            opened = [s for s, e in res.windows if s <= until and e > since]
            since = max(since, opened[-1]) if opened else until
    return since, max(until, since)


def quality(grid: Grid, lost_work_gpu_s: float, end: float) -> dict:
    starts = {m: sorted(t) for m, t in watch(grid).starts.items()}
    waits: dict[Mode, list[float]] = {m: [] for m in Mode}
    passed: dict[Mode, int] = dict.fromkeys(Mode, 0)
    owner_s = 0.0
    for job in grid.jobs.values():
        if job.first_started_at is None and job.finished:
            continue  # cancelled or refused while waiting: it never asked to run to the end
        since, until = _wait_span(grid, job, end)
        waits[job.mode].append(until - since)
        if job.mode is Mode.COMMIT:
            owner_s += until - since
        for lower in LOWER[job.mode]:
            ts = starts.get(lower, [])
            i = bisect.bisect_right(ts, since)
            if i < len(ts) and ts[i] < until:
                passed[job.mode] += 1
                break
    flex = [j.preemptions for j in grid.jobs.values() if j.mode is Mode.FLEX]
    return {
        "wait_s": {
            m.value: {
                "p50": round(_pct(w, 0.5), 1),
                "p95": round(_pct(w, 0.95), 1),
                "max": round(max(w, default=0.0), 1),
            }
            for m, w in waits.items()
        },
        "waited_while_lower_mode_started": {
            m.value: passed[m] for m in (Mode.PRIORITY, Mode.COMMIT)
        },
        "preemptions_per_job": {"max": max(flex, default=0), "p95": _pct(flex, 0.95)},
        "gpu_hours_lost_to_preemption": round(lost_work_gpu_s / 3600, 3),
        "commit_owner_minutes_lost": round(owner_s / 60, 1),
    }
