"""Carry out a plan whole or not at all.

`apply_plan` judges the plan on a copy of the grid (`diff_plan`). If any item is
refused, nothing changes and the refusals are the answer; otherwise the commands that
succeeded on the copy are replayed on the real grid in the same order. The grid's
commands are deterministic and the copy started equal to the grid, so the replay
cannot fail halfway. Pure: the caller persists the grid and dispatches the actions.

The control layer's `apply_plan` command calls `handle_apply_plan`, so whichever process
leads the grid can apply a plan sent by another; this module imports nothing from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.errors import InputError, Refused
from ..policy import actions as A
from ..policy.grid import Grid
from .diff import CHANGE, CREATE, REFUSE, UNCHANGED, PlanDiff, diff_plan
from .schema import Plan, plan_from_payload

APPLIED, NO_CHANGE, REFUSED, PLANNED = "applied", "unchanged", "refused", "planned"


@dataclass
class PlanResult:
    diff: PlanDiff
    status: str  # applied | unchanged | refused | planned (a dry run with changes)

    @property
    def applied(self) -> bool:
        return self.status == APPLIED

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "applied": self.applied,
            "counts": {a: self.diff.count(a) for a in (CREATE, CHANGE, UNCHANGED, REFUSE)},
            "items": [i.to_json() for i in self.diff.items],
        }


def judge(diff: PlanDiff, dry_run: bool) -> str:
    if diff.refused:
        return REFUSED
    if not diff.ops:
        return NO_CHANGE
    return PLANNED if dry_run else APPLIED


def plan_plan(grid: Grid, plan: Plan, now: float, actor: str) -> PlanResult:
    """A dry run: what applying would do."""
    diff = diff_plan(grid, plan, now, actor)
    return PlanResult(diff, judge(diff, dry_run=True))


def apply_plan(grid: Grid, plan: Plan, now: float, actor: str) -> tuple[PlanResult, list[A.Action]]:
    diff = diff_plan(grid, plan, now, actor)
    status = judge(diff, dry_run=False)
    if status != APPLIED:
        return PlanResult(diff, status), []
    actions: list[A.Action] = []
    for op in diff.ops:
        try:
            result = op.run(grid, now, actor)
        except Refused as e:  # pragma: no cover - the copy said it would succeed
            raise RuntimeError(
                f"plan apply diverged from its dry run at {op.kind} {op.target}: {e}"
            ) from e
        if isinstance(result, list):
            actions += [a for a in result if isinstance(a, A.EXECUTOR_ACTIONS)]
    for item in diff.items:
        if item.kind in ("job", "bid") and item.name in grid.job_names:
            item.id = grid.job_names[item.name]
    return PlanResult(diff, status), actions


def handle_apply_plan(
    grid: Grid, now: float, actor: str, payload: dict
) -> tuple[dict, list[A.Action]]:
    """The `apply_plan` command, run by whichever process leads the grid. Payload:
    `{"plan": Plan.payload(), "source": "plan.toml", "dry_run": false}`. A refused
    plan is an answer (status "refused", with every reason), not an error."""
    source = str(payload.get("source") or "plan")
    try:
        plan = plan_from_payload(payload.get("plan") or {}, source)
    except InputError as e:
        raise Refused("invalid plan: " + "; ".join(e.messages)) from None
    if payload.get("dry_run"):
        return plan_plan(grid, plan, now, actor).to_json(), []
    result, actions = apply_plan(grid, plan, now, actor)
    return result.to_json(), actions
