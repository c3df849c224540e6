"""The JSON documents a client sees of the grid: jobs, capacity, quotes.

The leader's socket answers queries with them and the command line prints them
(`--json`), so both read one definition. Money is in micro-units (1,000,000 = 1)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from ..domain.errors import InputError, Refused, validation_messages
from ..domain.model import Job, Mode, Node
from ..domain.money import to_micro
from ..domain.specs import JobSpec, ReservationSpec
from ..policy.grid import Grid
from ..policy.pricing import effective_rate_per_gpu_hour, priority_price

QUOTE_NAME = "quote"


def job_json(grid: Grid, job: Job) -> dict:
    """A job as the scripting commands print it. Money in micro-units (1,000,000 = 1)."""
    return {
        "id": job.id,
        "name": job.name,
        "user": job.user,
        "mode": str(job.mode),
        "state": str(job.state),
        "gpus": job.gpu_total if job.nodes else job.gpus,
        "nodes": job.nodes or None,
        "gpu_type": job.gpu_type,
        "market": job.market,
        "placement": [{"node": p.node, "gpus": list(p.gpus)} for p in job.placement],
        "command": list(job.argv),
        "reservation": job.reservation,
        "bid": job.bid if job.mode is Mode.FLEX else None,
        "hours": job.hours,
        "hourly": job.hourly,
        "end_at": job.end_at,
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "runs": job.runs,
        "preemptions": job.preemptions,
        "retries": job.retries,
        "lost_work_s": job.lost_work_s,
        "charged": job.charged,
        "exit_code": job.exit_code,
    }


def _node_counts(grid: Grid, node: Node) -> dict[str, int]:
    out = {"priority": 0, "commit": 0, "flex": 0, "reserved_idle": 0, "free": 0}
    for holder, reserved in zip(node.holders, node.reserved, strict=True):
        if holder is not None:
            job = grid.jobs.get(holder)
            out[str(job.mode) if job is not None else "priority"] += 1
        elif reserved is not None:
            out["reserved_idle"] += 1
        else:
            out["free"] += 1
    return out


def status_json(grid: Grid, leader: str | None) -> dict:
    nodes = []
    types: dict[str, dict[str, Any]] = {}
    for node in grid.nodes.values():
        c = _node_counts(grid, node)
        reserved = sum(1 for r in node.reserved if r is not None)
        nodes.append(
            {
                "name": node.name,
                "gpu_type": node.gpu_type,
                "gpus": node.gpu_count,
                "status": str(node.status),
                "drained": node.drained,
                "fake": node.fake,
                "held": {m: c[m] for m in ("priority", "commit", "flex")},
                "reserved": reserved,
                "reserved_idle": c["reserved_idle"],
                "free": c["free"],
            }
        )
        t = types.setdefault(
            node.gpu_type,
            {
                "gpu_type": node.gpu_type,
                "nodes": 0,
                "gpus": 0,
                "schedulable_gpus": 0,
                "held": {"priority": 0, "commit": 0, "flex": 0},
                "reserved": 0,
                "free": 0,
                "priority_available": 0,
                "flex_capacity": 0,
            },
        )
        t["nodes"] += 1
        t["gpus"] += node.gpu_count
        for m in ("priority", "commit", "flex"):
            t["held"][m] += c[m]
        t["reserved"] += reserved
        t["free"] += c["free"]
        if node.schedulable:
            t["schedulable_gpus"] += node.gpu_count
            for holder, res in zip(node.holders, node.reserved, strict=True):
                job = grid.jobs.get(holder) if holder is not None else None
                flexy = holder is None or (job is not None and job.mode is Mode.FLEX)
                if flexy:
                    t["flex_capacity"] += 1
                    if res is None:
                        t["priority_available"] += 1
    for name, t in types.items():
        market = grid.markets[name]
        t.update(price=market.price, floor=market.floor, rate=market.rate)
        t["waiting"] = {
            "priority": sum(
                1 for _, j in grid.priority_queue if grid.jobs[j].gpu_type in (None, name)
            ),
            "commit": sum(
                len(q)
                for r, q in grid.commit_waiting.items()
                if r in grid.reservations and grid.reservations[r].gpu_type == name
            ),
            "flex": len(grid.flex_book.get(name, [])),
        }
    return {
        "cluster": grid.cfg.cluster.name,
        "leader": leader,
        "nodes": nodes,
        "capacity": list(types.values()),
        "untyped_flex_waiting": len(grid.flex_book.get(None, [])),
    }


def last_placed(store: Any, job: Job) -> Job:
    """The job as its latest run was placed: an ended job holds no GPUs, but its output
    stays on the node it last ran on (from the store's record of its starts)."""
    if job.placement or store is None:
        return job
    start = store.last_start(job.id)
    if start is None:
        return job
    return dataclasses.replace(job, placement=list(start.placement))


def _quote_request(args: argparse.Namespace, user: str) -> dict:
    keys = ("gpus", "nodes", "gpu_type", "hours", "bid", "reservation", "start", "repeat", "count")
    data: dict[str, Any] = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    for flag in ("hourly", "auto_renew"):
        if getattr(args, flag):
            data[flag] = True
    data.update(name=QUOTE_NAME, user=user)
    return data


def quote_json(grid: Grid, args: argparse.Namespace, user: str, now: float, actor: str) -> dict:
    from ..plan.schema import PlanReservation

    data = _quote_request(args, user)
    source = "skyops quote"
    spec: ReservationSpec | JobSpec
    try:
        if args.kind == "reservation":
            for k in ("nodes", "bid", "reservation", "hourly", "auto_renew"):
                if k in data:
                    raise InputError([f"{source}: --{k.replace('_', '-')}: not for a reservation"])
            spec = PlanReservation.model_validate(data).spec(user)
        else:
            for k in ("start", "repeat", "count"):
                if k in data:
                    raise InputError([f"{source}: --{k}: only for a reservation"])
            spec = JobSpec.model_validate({**data, "mode": args.kind})
    except ValidationError as e:
        raise InputError(flag_messages(source, e)) from None
    if isinstance(spec, ReservationSpec):  # args.kind == "reservation", as above
        return _reservation_quote(grid, spec, now, actor)
    return _job_quote(grid, spec, now, actor)


def flag_messages(source: str, e: ValidationError) -> list[str]:
    """Pydantic's messages, naming the command-line flag instead of the key."""
    out = []
    for err, msg in zip(e.errors(), validation_messages(source, e), strict=True):
        loc = [p for p in err["loc"] if isinstance(p, str) and not p.startswith("function-")]
        if loc:
            key = loc[0]
            msg = msg.replace(f"{source}: {key}: ", f"{source}: --{key.replace('_', '-')}: ", 1)
        else:  # a rule across flags: the flags say it, not a key path
            msg = msg.replace(f"{source}: (top level): ", f"{source}: ", 1)
        out.append(msg)
    return out


def _reservation_quote(grid: Grid, spec: Any, now: float, actor: str) -> dict:
    q = grid.quote(spec)
    shadow = grid.snapshot()
    refused = None
    try:
        shadow.reserve(spec, now, actor)
    except Refused as e:
        refused = str(e)
    windows = spec.windows()
    return {
        "kind": "reservation",
        "user": spec.user,
        "gpu_type": spec.gpu_type,
        "gpus": spec.gpus,
        "windows": len(windows),
        "first_window": [_iso(windows[0][0]), _iso(windows[0][1])],
        "gpu_hours": q.gpu_hours,
        "rate": q.rate,
        "list_price": q.list_price,
        "discount_bp": q.discount_bp,
        "price": q.price,
        "early_exit_refund": q.refund_fraction,
        "balance": grid.balance(spec.user),
        "refused": refused,
        "outcome": None if refused else "booked and prepaid",
    }


def _job_quote(grid: Grid, spec: JobSpec, now: float, actor: str) -> dict:
    from ..policy.quotes import dry_run, request_gpus

    out: dict[str, Any] = {
        "kind": str(spec.mode),
        "user": spec.user,
        "gpu_type": spec.gpu_type,
        "gpus": spec.gpu_count if not spec.nodes else None,
        "nodes": spec.nodes,
        "balance": grid.balance(spec.user),
    }
    types = [spec.gpu_type] if spec.gpu_type else [t for t, ns in grid.by_type.items() if ns]
    markets = [grid.markets[t] for t in types if t in grid.markets]
    gpus = request_gpus(grid, spec, types)
    if spec.mode is Mode.PRIORITY and markets:
        rate = max(m.rate for m in markets)
        out.update(rate=rate, per_hour=rate * gpus, hours=spec.hours, hourly=spec.hourly)
        if spec.hours is not None:
            out["price"] = priority_price(rate, gpus, spec.hours)
    elif spec.mode is Mode.FLEX and markets:
        bid = to_micro(spec.bid or 0)
        out.update(
            bid=bid,
            floor=min(m.floor for m in markets),
            rate=max(m.rate for m in markets),
            clearing_price={m.gpu_type: m.price for m in markets},
            max_per_hour=bid * gpus,
        )
        book = grid.flex_book.get(spec.gpu_type, [])
        out["rank"] = 1 + sum(1 for b, _, _ in book if -b >= bid)
        out["waiting"] = len(book)
    elif spec.mode is Mode.COMMIT:
        res = grid.reservations.get(spec.reservation or "")
        if res is not None:
            out.update(
                reservation=res.name,
                rate=res.rate,
                effective_rate=effective_rate_per_gpu_hour(res),
                discount_bp=res.discount_bp,
                prepaid=res.prepaid,
                price=0,
            )
    o = dry_run(grid, spec, now, actor)
    out["refused"] = o.refused
    if o.refused:
        out["outcome"] = None
    elif o.starts_on:
        out["outcome"] = f"starts now on {o.starts_on}"
    elif o.preempts:
        out["outcome"] = "starts after preempting " + ", ".join(v.name for v in o.preempts)
    elif spec.mode is Mode.PRIORITY:
        out["outcome"] = "waits in the Priority queue"
    elif spec.mode is Mode.COMMIT:
        out["outcome"] = "waits for its reservation's window"
    else:
        out["outcome"] = "waits: the bid does not clear now"
    return out


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
