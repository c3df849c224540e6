"""What each job should have paid, by the plainest reading of docs/modes.md: a loop over
whole seconds, each second billed at min(clearing price, own bid) (Flex) or the standard
rate (Priority) in force that second, each run's sum floored once.

It shares no code with the billing: it reads only what was recorded (the price rows the
store keeps, the job's bid changes, its state events, and over real agents the ends
they recorded) and does its own arithmetic, so an error in the billing code cannot hide
in here too. Times are taken to the microsecond, as recorded; a second that a price or
bid change, a start or an end cuts is billed piece by piece.
"""

from __future__ import annotations

import bisect
import re

from skyops_tui.domain.model import TERMINAL, Event, Job, JobState, Mode

_LEAVES = {JobState.PAUSED, JobState.QUEUED, *TERMINAL}
_GPUS = re.compile(r"\[([0-9,]+)\]")


S = 1_000_000  # microseconds in a second


def _whole(t: float, what: str) -> int:
    """A recorded time in microseconds."""
    return round(t * S)


def runs(
    job: Job,
    events: list[Event],
    lost: dict[str, float],
    recorded: list[tuple[float, float | None]] | None = None,
) -> list[tuple[int, int, int]]:
    """(start, end, GPUs) of each run: from `process started` to leaving the GPUs; a run
    on a node declared lost ends when that node was last heard from (`lost`). With
    `recorded` (each process the agents recorded for the job: started, ended or None),
    a run ends where its process did, if that came before the console heard of it."""
    out: list[tuple[int, int, int]] = []
    start = gpus = None
    end_cap: float | None = None
    for e in events:
        if e.job != job.id:
            continue
        if e.kind == "state" and e.new == str(JobState.STARTING):
            gpus = sum(len(m.split(",")) for m in _GPUS.findall(e.cause))
        if e.kind == "state" and e.new == str(JobState.RUNNING) and e.cause == "process started":
            start, end_cap = e.at, None
        if start is None:
            continue
        for node, t in lost.items():
            if f"node {node} lost" in e.cause:
                end_cap = t if end_cap is None else min(end_cap, t)
        if e.kind == "state" and e.new and JobState(e.new) in _LEAVES:
            end = e.at if end_cap is None else min(e.at, end_cap)
            if recorded:
                # the process this run was: the one it overlaps most
                _, ended = max((min(e.at, b or e.at) - max(start, a), b) for a, b in recorded)
                if ended is not None:
                    end = min(end, ended)
            if job.mode is Mode.PRIORITY and job.end_at is not None:
                end = min(end, job.end_at)
            out.append((_whole(start, "a start"), _whole(max(end, start), "an end"), gpus or 0))
            start = None
    return out


def charge(
    job: Job,
    events: list[Event],
    prices: list[tuple[float, str, int]],
    floor: int,
    rate: int,
    lost: dict[str, float] | None = None,
    until: float | None = None,
    recorded: list[tuple[float, float | None]] | None = None,
) -> int:
    """What `job` owes for every run, by the second. `prices`: the recorded (at, type,
    price) rows; before the first one its market was at the floor. A run still holding
    at the end is billed to `until`. `recorded`: the agents' records of its processes
    (see `runs`)."""
    mine: list[tuple[int, int]] = []
    for at, t, p in prices:
        if t == job.market:
            while mine and mine[-1][0] >= _whole(at, "price"):
                mine.pop()  # set twice at one instant: the last one holds
            mine.append((_whole(at, "price"), p))
    times = [t for t, _ in mine]
    bids = list(job.bid_log) or [(-(10**30), job.bid)]
    bid_times = [t for t, _ in bids]
    cuts = sorted({*times, *bid_times})
    spans = runs(job, events, lost or {}, recorded)
    if job.holding and until is not None and job.started_at is not None:
        end = (
            until if job.end_at is None or job.mode is not Mode.PRIORITY else min(until, job.end_at)
        )
        spans.append((_whole(job.started_at, "a start"), _whole(end, "an end"), job.gpu_total))
    total = 0
    for start, end, gpus in spans:
        acc = 0  # price x microseconds
        second = start - start % S
        while second < end:
            lo, hi = max(second, start), min(second + S, end)
            # the changes inside this second cut it into pieces
            inner = cuts[bisect.bisect_right(cuts, lo) : bisect.bisect_left(cuts, hi)]
            for a, b in zip([lo, *inner], [*inner, hi], strict=True):
                if job.mode is Mode.PRIORITY:
                    acc += rate * (b - a)
                    continue
                i = bisect.bisect_right(times, a) - 1
                price = mine[i][1] if i >= 0 else floor
                j = bisect.bisect_right(bid_times, a) - 1
                bid = bids[max(j, 0)][1]
                acc += min(price, bid) * (b - a)
            second += S
        total += gpus * acc // (3600 * S)
    return total
