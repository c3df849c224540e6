"""What applying a plan would do, item by item, judged without changing the grid.

Every item is one of: create, change (which fields), unchanged, or refuse (why). The
verdicts come from the grid's own commands run on a deep copy of it, in the order a
real apply runs them (nodes, reservations, jobs, bids), so capacity, funding, floors,
permissions and the mode lock are judged exactly as they will be, including what the
plan's earlier items use up. The commands that succeed on the copy are kept as `Op`s:
replayed on the real grid in the same order, they cannot fail halfway.

Diff rules (docs/headless.md):
- A name the grid does not know is created.
- A job's mode never changes (the mode lock): the plan is refused with the grid's
  message. Other fields fixed at submission (user, command, gpus/nodes, gpu_type,
  reservation, env, workdir, max_retries, hourly, auto_renew, renew_hours) are refused
  too: cancel the job and submit it under a new name.
- What may change is what the grid can change: a live Flex job's `bid`, and a running
  Priority booking's `hours` when the plan asks for more (an extension, judged like
  `extend`). A booking already longer than the plan (renewed, extended) is left as is.
- A reservation is prepaid: any difference in its user, type, GPUs or windows is
  refused.
- A job or reservation that has ended (or was cancelled) is left alone: names are
  not reused. A `[[bids]]` entry whose bid is already the job's is unchanged.
- `[[nodes]]` come from config.toml, not from plans: each is checked against the
  config and reported unchanged, or refused when it is missing or differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..domain.config import NodeConfig
from ..domain.errors import Refused
from ..domain.model import Job, JobState, Mode
from ..domain.money import fmt, to_micro
from ..domain.specs import JobSpec, ReservationSpec
from ..policy.grid import Grid, windows_as_sold
from .schema import Plan, PlanBid, PlanJob, PlanReservation

CREATE, CHANGE, UNCHANGED, REFUSE = "create", "change", "unchanged", "refuse"
EPS_H = 1e-6  # hours: booking lengths equal within a few milliseconds


@dataclass(frozen=True)
class Change:
    field: str
    old: Any
    new: Any

    def to_json(self) -> dict:
        return {"field": self.field, "from": self.old, "to": self.new}


@dataclass(frozen=True)
class Op:
    """One grid command a plan carries out."""

    kind: str  # submit | reserve | bid | extend
    target: str
    spec: JobSpec | ReservationSpec | None = None
    value: float = 0.0

    def run(self, grid: Grid, now: float, actor: str) -> Any:
        match self.kind:
            case "reserve":
                assert isinstance(self.spec, ReservationSpec)
                return grid.reserve(self.spec, now, actor)
            case "submit":
                assert isinstance(self.spec, JobSpec)
                return grid.submit(self.spec, now, actor)
            case "bid":
                return grid.change_bid(self.target, self.value, now, actor)
            case "extend":
                return grid.extend(self.target, self.value, now, actor)
        raise ValueError(f"unknown plan op {self.kind!r}")


@dataclass
class Item:
    kind: str  # node | reservation | job | bid
    name: str
    index: int  # position in its table of the plan
    action: str = UNCHANGED
    summary: str = ""
    changes: list[Change] = field(default_factory=list)
    reason: str | None = None  # why refused, or a note on an unchanged item
    id: int | None = None  # a job's id in the grid

    @property
    def table(self) -> str:
        return {"node": "nodes", "reservation": "reservations", "job": "jobs", "bid": "bids"}[
            self.kind
        ]

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "kind": self.kind,
            "name": self.name,
            "action": self.action,
            "summary": self.summary,
            "changes": [c.to_json() for c in self.changes],
            "reason": self.reason,
        }
        if self.kind in ("job", "bid"):
            out["id"] = self.id
        return out


@dataclass
class PlanDiff:
    items: list[Item]
    ops: list[Op]

    @property
    def refused(self) -> list[Item]:
        return [i for i in self.items if i.action == REFUSE]

    def count(self, action: str) -> int:
        return sum(1 for i in self.items if i.action == action)


def diff_plan(grid: Grid, plan: Plan, now: float, actor: str) -> PlanDiff:
    """Compare the plan with the grid. The grid is not changed."""
    shadow = grid.snapshot()
    d = _Differ(shadow, now, actor)
    configured = {n.name: n for n in shadow.cfg.all_nodes()} if plan.nodes else {}
    for i, node in enumerate(plan.nodes):
        d.items += _nodes(shadow, configured, node, i)
    for i, res in enumerate(plan.reservations):
        d.reservation(res, i)
    for i, job in enumerate(plan.jobs):
        d.job(job, i)
    for i, bid in enumerate(plan.bids):
        d.bid(bid, i)
    return PlanDiff(d.items, d.ops)


class _Differ:
    def __init__(self, shadow: Grid, now: float, actor: str) -> None:
        self.g = shadow
        self.now = now
        self.actor = actor
        self.cur = shadow.cfg.cluster.currency
        self.items: list[Item] = []
        self.ops: list[Op] = []

    def money(self, micro: int) -> str:
        return fmt(micro, self.cur)

    def _try(self, item: Item, *ops: Op) -> list[Any]:
        """Run ops on the copy; keep them, or refuse the item with the grid's reason.
        A refused command changes nothing (the grid's contract), so later items are
        judged on the copy as it would be."""
        results = []
        try:
            for op in ops:
                results.append(op.run(self.g, self.now, self.actor))
        except Refused as e:
            item.action = REFUSE
            item.reason = str(e)
            return []
        self.ops += ops
        return results

    # ------------------------------------------------------------ reservations
    def reservation(self, pr: PlanReservation, index: int) -> None:
        spec = pr.spec(self.actor)
        item = Item("reservation", spec.name, index, summary=self._res_summary(spec))
        self.items.append(item)
        res = self.g.reservations.get(spec.name)
        if res is None:
            item.action = CREATE
            self._try(item, Op("reserve", spec.name, spec))
            return
        changes = []
        if res.user != spec.user:
            changes.append(Change("user", res.user, spec.user))
        if res.gpu_type != spec.gpu_type:
            changes.append(Change("gpu_type", res.gpu_type, spec.gpu_type))
        if res.gpus != spec.gpus:
            changes.append(Change("gpus", res.gpus, spec.gpus))
        windows = windows_as_sold(spec.windows(), res.created_at)
        if len(windows) != len(res.windows) or any(
            abs(a - c) > 1e-3 or abs(b - d) > 1e-3
            for (a, b), (c, d) in zip(windows, res.windows, strict=False)
        ):
            changes.append(Change("windows", _windows_text(res.windows), _windows_text(windows)))
        if changes:
            item.action = REFUSE
            item.changes = changes
            what = ", ".join(c.field for c in changes)
            item.reason = (
                f"reservation {spec.name} is booked and prepaid: its {what} cannot change; "
                "cancel it (early-exit refund) and book a new one under another name"
            )
            return
        if res.cancelled_at is not None:
            item.reason = "cancelled; a name is not booked twice"
        elif res.finished:
            item.reason = "every window has ended"

    def _res_summary(self, spec: ReservationSpec) -> str:
        windows = spec.windows()
        when = _hm(windows[0][0])
        if spec.repeat:
            when = f"{spec.repeat} x {spec.count} from {when}"
        text = f"{spec.gpus} x {spec.gpu_type}, {when}, {spec.hours:g} h"
        if spec.gpu_type in self.g.markets:
            q = self.g.quote(spec)
            text += f"; prepay {self.money(q.price)}"
            if q.discount_bp:
                text += f" ({q.discount_bp / 100:g}% off)"
        return text

    # -------------------------------------------------------------------- jobs
    def job(self, pj: PlanJob, index: int) -> None:
        spec = pj.spec(self.actor)
        item = Item("job", spec.name, index, summary=self._job_summary(spec))
        self.items.append(item)
        jid = self.g.job_names.get(spec.name)
        if jid is None:
            item.action = CREATE
            done = self._try(item, Op("submit", spec.name, spec))
            if done:
                item.id = done[0].id
            return
        job = self.g.jobs[jid]
        item.id = job.id
        if job.mode is not spec.mode:
            item.action = REFUSE
            item.changes = [Change("mode", str(job.mode), str(spec.mode))]
            try:
                self.g.change_mode(job.name, str(spec.mode), self.actor)
            except Refused as e:
                item.reason = str(e)
            return
        fixed = _fixed_changes(self.g, job, spec)
        if fixed:
            item.action = REFUSE
            item.changes = fixed
            if fixed[0].field == "user":
                item.reason = (
                    f"job {job.name} belongs to {job.user}, not {spec.user}: "
                    "give the plan's job another name"
                )
            else:
                what = ", ".join(c.field for c in fixed)
                item.reason = (
                    f"job {job.name}: {what} cannot change once submitted; cancel it and "
                    "submit it under a new name"
                )
            return
        ops, changes, note = self._job_changes(job, spec)
        if job.finished:
            item.reason = f"ended ({job.state})" + (
                f"; not changed: {', '.join(c.field for c in changes)}" if changes else ""
            )
            return
        item.reason = note
        if ops:
            item.action = CHANGE
            item.changes = changes
            self._try(item, *ops)

    def _job_changes(self, job: Job, spec: JobSpec) -> tuple[list[Op], list[Change], str | None]:
        ops: list[Op] = []
        changes: list[Change] = []
        note = None
        if job.mode is Mode.FLEX and spec.bid is not None and to_micro(spec.bid) != job.bid:
            changes.append(Change("bid", job.bid / 1_000_000, spec.bid))
            ops.append(Op("bid", job.name, value=spec.bid))
        if job.mode is Mode.PRIORITY and spec.hours is not None and not job.hourly:
            booked = _booked_hours(job)
            if spec.hours > booked + EPS_H:
                more = round(spec.hours - booked, 6)
                changes.append(Change("hours", round(booked, 6), spec.hours))
                ops.append(Op("extend", job.name, value=more))
            elif spec.hours < booked - EPS_H:
                note = f"booked for {booked:g} h (extended or renewed); a booking is not shortened"
        return ops, changes, note

    def _job_summary(self, spec: JobSpec) -> str:
        if spec.nodes:
            kind = f"{spec.gpu_type} " if spec.gpu_type else ""
            size = f"{spec.nodes} whole {kind}node{'s' if spec.nodes != 1 else ''}"
        elif spec.gpu_type:
            size = f"{spec.gpu_count} x {spec.gpu_type}"
        else:
            size = f"{spec.gpu_count} GPU{'s' if spec.gpu_count != 1 else ''} of any type"
        if spec.mode is Mode.PRIORITY:
            length = "hourly" if spec.hourly else f"{spec.hours:g} h"
            return f"priority, {size}, {length}" + (", auto-renew" if spec.auto_renew else "")
        if spec.mode is Mode.COMMIT:
            return f"commit in {spec.reservation}, {spec.gpu_count} GPUs"
        return f"flex, {size}, bid {self.money(to_micro(spec.bid or 0))}/GPU-h"

    # -------------------------------------------------------------------- bids
    def bid(self, pb: PlanBid, index: int) -> None:
        item = Item("bid", pb.name, index, summary=f"bid {self.money(to_micro(pb.bid))}/GPU-h")
        self.items.append(item)
        jid = self.g.job_names.get(pb.name)
        if jid is None:
            item.action = REFUSE
            item.reason = f"no job {pb.name!r}"
            return
        job = self.g.jobs[jid]
        item.id = job.id
        if job.mode is Mode.FLEX and job.bid == to_micro(pb.bid):
            return
        if job.finished and job.mode is Mode.FLEX:
            item.reason = f"ended ({job.state}); bid not changed"
            return
        item.action = CHANGE
        item.changes = [Change("bid", job.bid / 1_000_000 if job.bid else None, pb.bid)]
        self._try(item, Op("bid", job.name, value=pb.bid))


def _nodes(grid: Grid, configured: dict[str, NodeConfig], pn: NodeConfig, index: int) -> list[Item]:
    items = []
    for n in pn.expand():
        item = Item("node", n.name, index, summary=f"{n.resolved_gpus} x {n.resolved_type}")
        items.append(item)
        have = configured.get(n.name)
        if have is None:
            item.action = REFUSE
            item.reason = (
                f"node {n.name} is not in the config: nodes come from config.toml, "
                "add it there (and restart the console)"
            )
            continue
        changes = []
        for key in sorted(pn.model_fields_set - {"name", "count"}):
            ours, theirs = _node_value(n, key), _node_value(have, key)
            if ours != theirs:
                changes.append(Change(key, theirs, ours))
        if changes:
            item.action = REFUSE
            item.changes = changes
            diffs = ", ".join(f"{c.field} {c.old!r} in the config, {c.new!r} here" for c in changes)
            item.reason = f"node {n.name} differs from config.toml ({diffs}): edit config.toml"
            continue
        live = grid.nodes.get(n.name)
        if live is not None:
            item.reason = str(live.status)
    return items


def _node_value(n: NodeConfig, key: str) -> Any:
    if key == "gpu_type":
        return n.resolved_type
    if key == "gpus":
        return n.resolved_gpus
    return getattr(n, key)


def _fixed_changes(grid: Grid, job: Job, spec: JobSpec) -> list[Change]:
    """Fields fixed at submission where the plan and the job differ."""
    out: list[Change] = []

    def check(name: str, old: Any, new: Any) -> None:
        if old != new:
            out.append(Change(name, old, new))

    check("user", job.user, spec.user)
    check("command", list(job.argv), list(spec.argv))
    old_size = f"{job.nodes} nodes" if job.nodes else job.gpus
    new_size = f"{spec.nodes} nodes" if spec.nodes else spec.gpu_count
    check("nodes" if job.nodes or spec.nodes else "gpus", old_size, new_size)
    res = grid.reservations.get(spec.reservation or "")
    want_type = spec.gpu_type or (res.gpu_type if res is not None else None)
    check("gpu_type", job.gpu_type, want_type)
    check("reservation", job.reservation, spec.reservation)
    check("hourly", job.hourly, spec.hourly)
    if job.mode is Mode.PRIORITY:
        check("auto_renew", job.auto_renew, spec.auto_renew or spec.hourly)
        if spec.renew_hours is not None:
            check("renew_hours", job.renew_hours, spec.renew_hours)
        if job.state is JobState.QUEUED and spec.hours is not None:
            check("hours", job.hours, spec.hours)
    check("max_retries", job.max_retries, spec.max_retries)
    check("env", dict(job.env), dict(spec.env))
    check("workdir", job.workdir, spec.workdir)
    return out


def _booked_hours(job: Job) -> float:
    if job.end_at is not None and job.started_at is not None:
        return (job.end_at - job.started_at) / 3600
    return job.hours or 0.0


def _hm(t: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def _windows_text(windows: list[tuple[float, float]]) -> str:
    if not windows:
        return "none"
    s, e = windows[0]
    text = f"{_hm(s)} for {(e - s) / 3600:g} h"
    if len(windows) > 1:
        text += f", {len(windows)} windows"
    return text
