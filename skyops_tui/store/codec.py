"""Domain objects to table rows and back.

Columns follow the dataclass fields by name, so a field added to `Job` or `Reservation`
without a migration adding its column fails at the first write (and in the tests),
instead of being silently dropped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import fields
from operator import attrgetter
from typing import Any

from ..domain.model import Job, JobState, Market, Mode, Node, NodeStatus, Placement, Reservation
from ..policy import actions as A

JOB_COLUMNS = tuple(f.name for f in fields(Job))
RESERVATION_COLUMNS = tuple(f.name for f in fields(Reservation))
NODE_COLUMNS = (
    "name",
    "gpu_type",
    "gpu_count",
    "status",
    "host",
    "fake",
    "last_heartbeat",
    "drained",
)
MARKET_COLUMNS = ("gpu_type", "rate", "floor", "price", "price_at", "integral")
EVENT_COLUMNS = ("at", "kind", "cause", "job", "reservation", "node", "old", "new", "user")


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _dumps(value: Any) -> str:
    return _encode(value) if value else ("[]" if isinstance(value, list | tuple) else "{}")


# ------------------------------------------------------------------- jobs
def _placement_out(placement: list[Placement]) -> str:
    return _encode([[p.node, p.gpus] for p in placement]) if placement else "[]"


def _placement_in(text: str) -> list[Placement]:
    return [Placement(node, tuple(gpus)) for node, gpus in json.loads(text)]


# Enums are str and bools are int to sqlite3 already: only the containers need encoding.
_JOB_OUT = {"argv": _dumps, "env": _dumps, "placement": _placement_out, "bid_log": _dumps}
_JOB_IN: dict[str, Callable[[Any], Any]] = {
    "bid_log": lambda text: [(int(t), int(b)) for t, b in json.loads(text)],
    "argv": json.loads,
    "env": json.loads,
    "placement": _placement_in,
    "mode": Mode,
    "state": JobState,
    "hourly": bool,
    "auto_renew": bool,
}


job_values = attrgetter(*JOB_COLUMNS)  # a job's fields as a tuple, JOB_COLUMNS order
_job_conv = [(i, _JOB_OUT[c]) for i, c in enumerate(JOB_COLUMNS) if c in _JOB_OUT]
JOB_CONVERTED = {i: conv for i, conv in _job_conv}  # column -> its encoder, for containers


def job_row(job: Job) -> list[Any]:
    """Column values in JOB_COLUMNS order. On the hot path: one per dirty job per pass."""
    return job_row_of(job_values(job))


def job_rows(jobs: Iterable[Job]) -> Iterator[list[Any]]:
    """`job_row` of each job, the containers equal to one already encoded in this call
    not encoded again: an array's 5,000 jobs share one argv and env (JSON encoding them
    was 40 % of writing the array). One row at a time, for `executemany`: the rows of
    an array's jobs all at once would raise the leader's memory for good (a process
    keeps the heap it grew)."""
    memo: dict[tuple[int, Any], str] = {}
    for job in jobs:
        row = list(job_values(job))
        for i, conv in _job_conv:
            v = row[i]
            try:
                key = (i, tuple(v.items()) if isinstance(v, dict) else tuple(v))
                text = memo.get(key)
            except TypeError:  # an unhashable element: encode it as it is
                key, text = None, None
            if text is None:
                text = conv(v)
                if key is not None:
                    memo[key] = text
            row[i] = text
        yield row


def job_row_of(values: tuple[Any, ...]) -> list[Any]:
    """The row of a job's `job_values`."""
    row = list(values)
    for i, conv in _job_conv:
        row[i] = conv(row[i])
    return row


# A settle changes only these: a written job is compared on the rest first, whose
# values are mostly the very objects last written (compared by identity, fast).
JOB_BILLING = ("billed_from", "run_acc", "run_charged", "charged", "refunded")
JOB_REST = tuple(c for c in JOB_COLUMNS if c not in JOB_BILLING)
JOB_BILLING_AT = tuple(JOB_COLUMNS.index(c) for c in JOB_BILLING)
JOB_REST_AT = tuple(JOB_COLUMNS.index(c) for c in JOB_REST)
job_billing = attrgetter(*JOB_BILLING)
job_rest = attrgetter(*JOB_REST)
_rest_containers = [JOB_REST.index(c) for c in _JOB_OUT]


def rest_snapshot(rest: tuple[Any, ...]) -> tuple[Any, ...]:
    """A job's `job_rest` with its containers copied, to compare with the job later:
    equal to it as long as nothing changed, whether a list is replaced or mutated."""
    out = list(rest)
    for i in _rest_containers:
        v = out[i]
        out[i] = v.copy() if v is not None else None
    return tuple(out)


def job_from_row(row: dict[str, Any]) -> Job:
    kw = {}
    for name in JOB_COLUMNS:
        value = row[name]
        conv = _JOB_IN.get(name)
        kw[name] = conv(value) if conv is not None and value is not None else value
    return Job(**kw)


# ----------------------------------------------------------- reservations
_RES_OUT = {"windows": _dumps, "held": _dumps}


def reservation_row(res: Reservation) -> tuple[Any, ...]:
    out = []
    for name in RESERVATION_COLUMNS:
        value = getattr(res, name)
        conv = _RES_OUT.get(name)
        out.append(conv(value) if conv is not None else value)
    return tuple(out)


def reservation_from_row(row: dict[str, Any]) -> Reservation:
    kw = {name: row[name] for name in RESERVATION_COLUMNS}
    kw["windows"] = [(float(s), float(e)) for s, e in json.loads(kw["windows"])]
    kw["held"] = [(n, int(i)) for n, i in json.loads(kw["held"])]
    return Reservation(**kw)


# ------------------------------------------------------------ nodes, markets
def node_row(node: Node) -> tuple[Any, ...]:
    return (
        node.name,
        node.gpu_type,
        node.gpu_count,
        str(node.status),
        node.host,
        int(node.fake),
        node.last_heartbeat,
        node.drained,
    )


def node_from_row(row: dict[str, Any]) -> Node:
    return Node(
        row["name"],
        row["gpu_type"],
        row["gpu_count"],
        status=NodeStatus(row["status"]),
        host=row["host"],
        fake=bool(row["fake"]),
        last_heartbeat=row["last_heartbeat"],
        drained=row["drained"],
    )


def market_row(m: Market) -> tuple[Any, ...]:
    return (m.gpu_type, m.rate, m.floor, m.price, m.price_at, m.integral)


def market_from_row(row: dict[str, Any]) -> Market:
    return Market(*(row[c] for c in MARKET_COLUMNS))


# ---------------------------------------------------------------- actions
ACTION_TYPES: dict[str, type[A.Action]] = {
    t.__name__: t
    for t in (
        A.Start,
        A.Preempt,
        A.CallOff,
        A.Stop,
        A.Renew,
        A.Warn,
        A.Fail,
        A.OpenWindow,
        A.CloseWindow,
        A.Settle,
        A.SetPrice,
    )
}


def _action_default(value: Any) -> Any:
    if isinstance(value, Placement):
        return [value.node, list(value.gpus)]
    raise TypeError(f"cannot store a {type(value).__name__} in an action payload: {value!r}")


_encode_action = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, default=_action_default
).encode
# Per action type: its kind and field names (a pass may record thousands of Settles).
_ACTION_FIELDS = {t: (name, tuple(f.name for f in fields(t))) for name, t in ACTION_TYPES.items()}


def action_payload(action: A.Action) -> tuple[str, int | None, str]:
    """(kind, job, JSON payload). Raises TypeError or ValueError for what JSON cannot hold."""
    known = _ACTION_FIELDS.get(type(action))
    if known is None:
        raise TypeError(f"not an action: {action!r}")
    kind, names = known
    payload = {n: getattr(action, n) for n in names}
    return kind, getattr(action, "job", None), _encode_action(payload)


def action_from_payload(kind: str, text: str) -> A.Action | None:
    """The action a row records, or None for a kind this code does not know."""
    cls = ACTION_TYPES.get(kind)
    if cls is None:
        return None
    kw = json.loads(text)
    if cls is A.Start:
        kw["placement"] = tuple(Placement(n, tuple(g)) for n, g in kw["placement"])
    elif cls is A.Stop:
        kw["outcome"] = JobState(kw["outcome"])
    elif cls is A.OpenWindow:
        kw["held"] = tuple((n, int(i)) for n, i in kw["held"])
    return cls(**kw)
