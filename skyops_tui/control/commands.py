"""Every change a person can ask for, as a named command with a JSON payload.

The leader applies commands to its grid (directly, or from the store's queue when they
come from another process). A handler returns a JSON-able result and the executor
actions it implies; it raises `Refused` having changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from ..domain.errors import Refused
from ..domain.model import Job, Reservation
from ..domain.specs import JobSpec, ReservationSpec
from ..policy import actions as A
from ..policy.grid import Grid
from ..scheduler.engine import Engine

Handler = Callable[[Grid, float, str, dict], tuple[dict, list[A.Action]]]
HANDLERS: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        HANDLERS[kind] = fn
        return fn

    return deco


def run(engine: Engine, kind: str, payload: dict, actor: str, now: float) -> dict:
    """Apply one command on the leader: recorded and dispatched before it returns."""
    _load_plugins()
    handler = HANDLERS.get(kind)
    if handler is None:
        raise Refused(f"unknown command {kind!r} (known: {', '.join(sorted(HANDLERS))})")
    box: dict = {}

    def fn(grid: Grid, t: float) -> list[A.Action]:
        result, actions = handler(grid, t, actor, payload)
        box["result"] = result
        return list(actions)

    engine.command(fn, now)
    return box["result"]


def _load_plugins() -> None:
    # Plan handling registers itself on import; it is optional for the core.
    try:
        import skyops_tui.plan.apply  # noqa: F401
    except ImportError:
        pass


def job_summary(job: Job) -> dict:
    return {"id": job.id, "name": job.name, "state": str(job.state), "mode": str(job.mode)}


def reservation_summary(res: Reservation) -> dict:
    return {
        "name": res.name,
        "prepaid": res.prepaid,
        "discount_bp": res.discount_bp,
        "windows": len(res.windows),
    }


@register("submit")
def _submit(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    spec = JobSpec.model_validate(p["spec"])
    return job_summary(grid.submit(spec, now, actor)), []


@register("reserve")
def _reserve(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    spec = ReservationSpec.model_validate(p["spec"])
    return reservation_summary(grid.reserve(spec, now, actor)), []


@register("cancel")
def _cancel(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    actions = grid.cancel(p["ref"], now, actor)
    return job_summary(grid.job_by_ref(p["ref"])), actions


@register("cancel_reservation")
def _cancel_reservation(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    refund = grid.refund_preview(p["name"], now) if p["name"] in grid.reservations else (0, 0)
    actions = grid.cancel_reservation(p["name"], now, actor)
    return {"name": p["name"], "refund": refund[0], "downtime_credit": refund[1]}, actions


@register("extend")
def _extend(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    job = grid.extend(p["ref"], float(p["hours"]), now, actor)
    return {**job_summary(job), "end_at": job.end_at}, []


@register("bid")
def _bid(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    job = grid.change_bid(p["ref"], float(p["bid"]), now, actor)
    return {**job_summary(job), "bid": job.bid}, []


@register("mode")
def _mode(grid: Grid, now: float, actor: str, p: dict) -> tuple[dict, list]:
    grid.change_mode(p["ref"], str(p["mode"]), actor)
    return {}, []  # never reached: the mode is locked
