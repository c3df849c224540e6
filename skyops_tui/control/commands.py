"""Every change a person can ask for, as one typed command: the one command path.

Each command is a pydantic model with one handler (`apply`) and one rights check
(`owner` says whose thing it touches; `run` decides). The console (leader or
follower), the CLI, plans and the socket API all build these models and hand them to
`run` on the process that leads; nothing else changes the grid on a person's behalf.

Rights (docs/security.md, "Identity and rights"): a user acts only on their own jobs,
reservations and balance; an operator on all. An operator acting on someone else's
thing is recorded in the event log naming both; `as_user` (`--as USER`) says so
up front and is refused for anyone but an operator. A handler raises `Refused` having
changed nothing.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from ..domain.errors import Refused, validation_messages
from ..domain.model import Event, Job, Reservation
from ..domain.specs import JobSpec, ReservationSpec
from ..plan.apply import handle_apply_plan
from ..policy import actions as A
from ..policy.grid import Grid
from ..scheduler.engine import Engine

OPERATORS = "operators"  # `owner` of a command only operators may give
Result = tuple[dict, list[A.Action]]


class Command(BaseModel):
    """One request to change the grid. `as_user`: an operator acting for that user."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str] = ""
    as_user: str | None = Field(default=None, min_length=1, max_length=64)

    def owner(self, grid: Grid) -> str | None:
        """Whose job, reservation or account this touches (OPERATORS: nobody's but
        the operators'; None: the system's, as a plan that checks each item itself)."""
        return None

    def target(self) -> str:
        return ""

    def refusal(self, caller: str, owner: str) -> str:
        what = f"{self.kind} {self.target()}".strip()
        return f"{caller} may not {what}: it belongs to {owner} (operators may act on all)"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        raise NotImplementedError

    def payload(self) -> dict:
        return self.model_dump(mode="json", exclude_none=True)


REGISTRY: dict[str, type[Command]] = {}


def command(cls: type[Command]) -> type[Command]:
    REGISTRY[cls.kind] = cls
    return cls


def job_summary(job: Job) -> dict:
    return {"id": job.id, "name": job.name, "state": str(job.state), "mode": str(job.mode)}


def reservation_summary(res: Reservation) -> dict:
    return {
        "name": res.name,
        "prepaid": res.prepaid,
        "discount_bp": res.discount_bp,
        "windows": len(res.windows),
    }


Ref = str | int


MAX_ARRAY = 10_000


@command
class Submit(Command):
    """One job, or an array of `count` jobs NAME-0 .. NAME-(count-1) admitted in one
    command (one transaction, one fsync). With `auto_name` the leader names it
    `<program>-<id>` (an array: `<program>-<first id>-<k>`), so a shell loop of
    submissions never collides on names as a client's clock-made name would."""

    kind: ClassVar[str] = "submit"
    spec: JobSpec
    count: int | None = Field(default=None, ge=1, le=MAX_ARRAY)
    auto_name: bool = False

    def owner(self, grid: Grid) -> str:
        return self.spec.user

    def target(self) -> str:
        if self.auto_name:
            return "job"
        return f"job {self.spec.name}" + (f"-0..{self.count - 1}" if self.count else "")

    def refusal(self, caller: str, owner: str) -> str:
        return f"{caller} may not submit jobs as {owner}"

    def names(self, grid: Grid) -> list[str]:
        base = self.spec.name
        if self.auto_name:
            program = Path(self.spec.argv[0]).name if self.spec.argv else ""
            program = re.sub(r"[^A-Za-z0-9_.:-]", "_", program)[:60].lstrip("_.:-") or "job"
            base = f"{program}-{grid.next_job_id}"
        if self.count is None:
            return [base]
        return [f"{base}-{k}" for k in range(self.count)]

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        names = self.names(grid)
        if self.count is None:
            spec = self.spec.model_copy(update={"name": names[0]})
            return job_summary(grid.submit(spec, now, actor)), []
        jobs = grid.submit_array(self.spec, names, now, actor)
        return {"jobs": [job_summary(j) for j in jobs]}, []


@command
class Reserve(Command):
    kind: ClassVar[str] = "reserve"
    spec: ReservationSpec

    def owner(self, grid: Grid) -> str:
        return self.spec.user

    def target(self) -> str:
        return f"reservation {self.spec.name}"

    def refusal(self, caller: str, owner: str) -> str:
        return f"{caller} may not reserve as {owner}"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        return reservation_summary(grid.reserve(self.spec, now, actor)), []


class JobCommand(Command):
    ref: Ref
    _name: str | None = PrivateAttr(default=None)  # the job's name, once found

    def owner(self, grid: Grid) -> str:
        job = grid.job_by_ref(self.ref)
        self._name = job.name
        return job.user

    def target(self) -> str:
        return f"job {self._name or self.ref}"


@command
class Cancel(JobCommand):
    kind: ClassVar[str] = "cancel"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        actions = grid.cancel(self.ref, now, actor)
        return job_summary(grid.job_by_ref(self.ref)), actions


@command
class Extend(JobCommand):
    kind: ClassVar[str] = "extend"
    hours: float = Field(gt=0, le=24 * 366)

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        job = grid.extend(self.ref, self.hours, now, actor)
        return {**job_summary(job), "end_at": job.end_at}, []


@command
class Bid(JobCommand):
    kind: ClassVar[str] = "bid"
    bid: float = Field(gt=0, le=1e9)

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        job = grid.change_bid(self.ref, self.bid, now, actor)
        return {**job_summary(job), "bid": job.bid}, []


@command
class ChangeMode(JobCommand):
    kind: ClassVar[str] = "mode"
    mode: Literal["priority", "commit", "flex"]

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        grid.change_mode(self.ref, self.mode, actor)
        return {}, []  # never reached: the mode is locked


@command
class CancelReservation(Command):
    kind: ClassVar[str] = "cancel_reservation"
    name: str = Field(min_length=1, max_length=128)

    def owner(self, grid: Grid) -> str:
        res = grid.reservations.get(self.name)
        if res is None:
            raise Refused(f"no reservation {self.name!r}")
        return res.user

    def target(self) -> str:
        return f"reservation {self.name}"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        refund = grid.refund_preview(self.name, now) if self.name in grid.reservations else (0, 0)
        actions = grid.cancel_reservation(self.name, now, actor)
        return {"name": self.name, "refund": refund[0], "downtime_credit": refund[1]}, actions


@command
class Deposit(Command):
    """Money into a user's account: an operator's act (a top-up or a grant)."""

    kind: ClassVar[str] = "deposit"
    user: str = Field(min_length=1, max_length=64)
    amount: int = Field(gt=0, lt=2**62, description="micro-units")
    reason: str = Field(default="deposit", max_length=200)

    def owner(self, grid: Grid) -> str:
        return OPERATORS

    def target(self) -> str:
        return f"account {self.user}"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        grid.deposit(self.user, self.amount, now, f"{self.reason} by {actor or 'system'}")
        return {"user": self.user, "balance": grid.balance(self.user)}, []


class NodeCommand(Command):
    """An operator's act on a node: nobody else's thing, and nobody's to act for."""

    node: str = Field(min_length=1, max_length=128)

    def owner(self, grid: Grid) -> str:
        return OPERATORS

    def target(self) -> str:
        return f"node {self.node}"


@command
class Drain(NodeCommand):
    """Nothing new is placed on the node until Undrain; its jobs run until they end
    (docs/modes.md, Draining a node)."""

    kind: ClassVar[str] = "drain"
    reason: str = Field(default="", max_length=200)

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        who = actor or "system"
        note = f"by {who}" + (f": {self.reason}" if self.reason else "")
        grid.drain_node(self.node, note, now, f"node {self.node} drained {note}")
        return node_summary(grid, self.node), []


@command
class Undrain(NodeCommand):
    kind: ClassVar[str] = "undrain"

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        who = actor or "system"
        grid.drain_node(self.node, None, now, f"node {self.node} undrained by {who}")
        return node_summary(grid, self.node), []


def node_summary(grid: Grid, name: str) -> dict:
    node = grid.nodes[name]
    held = sum(1 for h in node.holders if h is not None)
    return {"node": name, "node_status": str(node.status), "drained": node.drained, "held": held}


class ApplyPlan(Command):
    """A plan file, applied whole or refused whole; each item's rights are checked by
    the plan's diff with the caller as actor (plan/apply.py)."""

    kind: ClassVar[str] = "apply_plan"
    plan: dict
    source: str = "plan"
    dry_run: bool = False

    def apply(self, grid: Grid, now: float, actor: str | None) -> Result:
        # `--as USER`: the plan is diffed and checked as USER's (its items default to
        # USER, and may touch only USER's things); the operator is named in the log.
        who = self.as_user or actor or ""
        return handle_apply_plan(grid, now, who, self.model_dump(mode="json"))


REGISTRY[ApplyPlan.kind] = ApplyPlan


def parse(kind: str, payload: dict) -> Command:
    """A command from its wire form; Refused (naming the field) when it is not one."""
    cls = REGISTRY.get(kind)
    if cls is None:
        raise Refused(f"unknown command {kind!r} (known: {', '.join(sorted(REGISTRY))})")
    if not isinstance(payload, dict):
        raise Refused(f"{kind}: the payload must be an object")
    try:
        return cls.model_validate(payload)
    except ValidationError as e:
        raise Refused("; ".join(validation_messages(kind, e))) from None


def authorize(grid: Grid, cmd: Command, caller: str | None) -> str | None:
    """The one rights check. Returns the user the command acts for when that is not
    the caller (an operator acting for someone), else None. `caller=None` is the
    system itself (seeding, traces): it may do anything."""
    if caller is None:
        return None
    operator = grid.cfg.is_operator(caller)
    what = f"{cmd.kind} {cmd.target()}".strip()
    if cmd.as_user is not None and cmd.as_user != caller and not operator:
        raise Refused(f"{caller} may not act as {cmd.as_user}: only operators act for others")
    owner = cmd.owner(grid)
    if owner == OPERATORS:
        if not operator:
            raise Refused(f"{caller} may not {what}: only operators may")
        return None
    if owner is None:
        return cmd.as_user if cmd.as_user not in (None, caller) else None
    if owner != caller and not operator:
        raise Refused(cmd.refusal(caller, owner))
    if cmd.as_user is not None and cmd.as_user != owner:
        raise Refused(f"{what} belongs to {owner}, not {cmd.as_user} (--as {cmd.as_user})")
    return owner if owner != caller else None


def run(
    engine: Engine,
    cmd: Command | str,
    payload: dict | None = None,
    actor: str | None = None,
    now: float = 0.0,
    journal: int | None = None,
) -> dict:
    """Apply one command on the leader: rights checked, recorded and dispatched before
    it returns. `journal` is the command's row in the store's journal: its event is
    written in the same transaction as the change, so a restarted leader can tell a
    command it applied from one it never did (exactly once)."""
    if isinstance(cmd, str):
        cmd = parse(cmd, payload or {})
    box: dict[str, Any] = {}

    def fn(grid: Grid, t: float) -> list[A.Action]:
        acting_for = authorize(grid, cmd, actor)
        result, actions = cmd.apply(grid, t, actor)
        if acting_for is not None or journal is not None:
            who = f"{actor} for {acting_for}" if acting_for is not None else f"{actor or 'system'}"
            tag = f"#{journal} " if journal is not None else ""
            grid.events.append(
                Event(
                    t,
                    "command",
                    f"{tag}{cmd.kind} {cmd.target()} by {who}".replace("  ", " "),
                    job=result.get("id") if isinstance(result.get("id"), int) else None,
                    user=acting_for or actor,
                )
            )
        box["result"] = result
        return list(actions)

    engine.command(fn, now)
    return box["result"]


__all__ = [
    "REGISTRY",
    "Command",
    "Submit",
    "Reserve",
    "Cancel",
    "Extend",
    "Bid",
    "ChangeMode",
    "CancelReservation",
    "Deposit",
    "Drain",
    "Undrain",
    "ApplyPlan",
    "authorize",
    "parse",
    "run",
]
