"""What a job would cost and what the scheduler would do with it right now: the rules
behind the launch form's live quote and `skyops quote`, so neither recomputes them.

"What would happen" is answered by the scheduler itself: the job is submitted to a
copy of the grid and one planning pass runs on the copy. The live grid is never
touched, and the answer cannot drift from the real rules. Prices come from
`pricing`; the words around them are the caller's (a screen's lines, the CLI's JSON).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..domain.errors import Refused
from ..domain.model import Job, Mode
from ..domain.money import to_micro
from ..domain.specs import JobSpec
from . import actions as A
from .grid import Grid
from .planner import plan
from .pricing import priority_price

DRY_RUN_MAX_JOBS = 2_000  # beyond this, copying the grid per keystroke costs too much


@dataclass
class Outcome:
    """What one planning pass would do with the new job."""

    refused: str | None = None
    starts_on: str | None = None
    preempts: list[Job] = field(default_factory=list)
    waits: bool = False
    skipped: bool = False


def dry_run(grid: Grid, spec: JobSpec, now: float, actor: str | None) -> Outcome:
    """Submit the job to a copy of the grid and plan once: where it would start, whom
    it would preempt, or why it would be refused."""
    if len(grid.jobs) > DRY_RUN_MAX_JOBS:
        return Outcome(skipped=True)
    shadow = grid.snapshot()
    try:
        job = shadow.submit(spec, now, actor)
    except Refused as e:
        return Outcome(refused=str(e))
    actions = plan(shadow, now)
    out = Outcome()
    for a in actions:
        if isinstance(a, A.Start) and a.job == job.id:
            out.starts_on = ", ".join(
                f"{p.node}[{','.join(map(str, p.gpus))}]" for p in a.placement
            )
        elif isinstance(a, A.Preempt) and caused_by(a.cause, job.name):
            victim = grid.jobs.get(a.job)
            if victim is not None:
                out.preempts.append(victim)
    out.waits = out.starts_on is None and not out.preempts
    return out


def caused_by(cause: str, name: str) -> bool:
    """Whether a preemption's cause names the job `name` (as a whole word)."""
    return name in cause.replace("(", " ").replace(")", " ").split()


def request_gpus(grid: Grid, spec: JobSpec, types: list[str]) -> int:
    """The GPUs a request asks for: its count, or whole nodes of the largest size
    among `types`."""
    if spec.nodes:
        size = max((n.gpu_count for t in types for n in grid.by_type.get(t, [])), default=0)
        return spec.nodes * size
    return spec.gpu_count


def upfront(grid: Grid, spec: JobSpec) -> int:
    """What admission asks the account to cover for this job: a Priority booking's
    whole length (or its first hour), nothing for Commit (prepaid) or Flex (by bid)."""
    if spec.mode is not Mode.PRIORITY:
        return 0
    types = [spec.gpu_type] if spec.gpu_type else list(grid.markets)
    rates = [grid.markets[t].rate for t in types if t in grid.markets]
    if not rates:
        return 0
    hours = 1.0 if spec.hourly else (spec.hours or 0)
    return priority_price(max(rates), request_gpus(grid, spec, types), hours)


def opening_balance(grid: Grid, user: str) -> int:
    """What an account not opened yet starts with (as Grid.ensure_account opens it)."""
    accounts = grid.cfg.accounts
    for u in accounts.users:
        if u.name == user:
            return to_micro(u.balance)
    return to_micro(accounts.default_balance)
