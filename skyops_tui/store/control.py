"""Store tables that let several processes share one grid: the scheduler lease and
the command queue (schema v2; the lease's epoch, v3). The leader holds the lease and
applies queued commands; every other process reads state and queues commands. The
leader's writes are fenced by the lease it holds (docs/store.md, "The scheduler lease")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..domain.jsontext import json_text
from .db import LEASE, Store


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: int
    at: float
    actor: str
    kind: str
    payload: dict[str, Any]
    status: str
    result: dict[str, Any] | None
    done_at: float | None


@contextmanager
def waiting_at_most(store: Store, wait_s: float | None) -> Iterator[None]:
    """Wait `wait_s` for another process's write lock instead of the connection's
    whole busy timeout: a lease attempt must fail fast and be retried, and a leader's
    write need not wait past its lease (it would be refused then anyway)."""
    if wait_s is None:
        yield
        return
    with store._lock:
        old = store.conn.execute("PRAGMA busy_timeout").fetchone()[0]
        store.conn.execute(f"PRAGMA busy_timeout = {max(int(wait_s * 1000), 1)}")
        try:
            yield
        finally:
            store.conn.execute(f"PRAGMA busy_timeout = {int(old)}")


def acquire_lease(
    store: Store, holder: str, now: float, ttl_s: float, wait_s: float | None = None
) -> int | None:
    """Take or renew the lease until `now + ttl_s`; return its epoch, or None while
    another live holder has it. The epoch goes up by one each time the holder changes,
    so a leader can tell a plain renewal from getting the lease back after someone else
    held it (its grid is stale then). Raises sqlite3.OperationalError when the file is
    locked (after `wait_s`, default the busy timeout), unwritable or full."""
    with waiting_at_most(store, wait_s), store._write() as conn:
        row = conn.execute(
            "SELECT holder, expires_at, epoch FROM lease WHERE name = ?", (LEASE,)
        ).fetchone()
        if row is not None and row[0] != holder and row[1] > now:
            return None
        epoch = 1 if row is None else row[2] if row[0] == holder else row[2] + 1
        conn.execute(
            "INSERT INTO lease (name, holder, expires_at, epoch) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at, epoch = excluded.epoch",
            (LEASE, holder, now + ttl_s, epoch),
        )
        return epoch


def release_lease(store: Store, holder: str, wait_s: float | None = None) -> None:
    """End the lease at once so another console need not wait out its time. The row
    stays, with its epoch, so the next holder's epoch is still a new one."""
    with waiting_at_most(store, wait_s), store._write() as conn:
        conn.execute(
            "UPDATE lease SET expires_at = 0 WHERE name = ? AND holder = ?", (LEASE, holder)
        )


def lease_holder(store: Store, now: float) -> str | None:
    with store._lock:
        rows = store._rows("SELECT holder, expires_at FROM lease WHERE name = ?", (LEASE,))
    if rows and rows[0]["expires_at"] > now:
        holder: str | None = rows[0]["holder"]
        return holder
    return None


def lease_epoch(store: Store) -> int:
    """The lease's epoch (0 before anyone held it): how many times it changed hands."""
    with store._lock:
        rows = store._rows("SELECT epoch FROM lease WHERE name = ?", (LEASE,))
    return int(rows[0]["epoch"]) if rows else 0


def enqueue(store: Store, kind: str, payload: dict[str, Any], actor: str, now: float) -> int:
    with store._write() as conn:
        cur = conn.execute(
            "INSERT INTO commands (at, actor, kind, payload, status) VALUES (?, ?, ?, ?, 'pending')",
            (now, actor, kind, json.dumps(payload)),
        )
        assert cur.lastrowid is not None  # an INSERT always sets it
        return cur.lastrowid


def pending_commands(store: Store, limit: int = 100) -> list[CommandRow]:
    with store._lock:
        rows = store._rows(
            "SELECT * FROM commands WHERE status = 'pending' ORDER BY id LIMIT ?", (limit,)
        )
    return [_row(r) for r in rows]


def finish_command(store: Store, cid: int, status: str, result: dict[str, Any], now: float) -> None:
    """The leader's answer to a command: fenced like every decision it writes (a
    console that lost the lease gets `LeaseLost` and the command stays pending)."""
    with store._fenced_write() as conn:
        conn.execute(
            "UPDATE commands SET status = ?, result = ?, done_at = ? WHERE id = ? AND status = 'pending'",
            (status, json_text(result), now, cid),
        )


def command(store: Store, cid: int) -> CommandRow | None:
    with store._lock:
        rows = store._rows("SELECT * FROM commands WHERE id = ?", (cid,))
    return _row(rows[0]) if rows else None


def _row(r: dict[str, Any]) -> CommandRow:
    return CommandRow(
        r["id"],
        r["at"],
        r["actor"],
        r["kind"],
        json.loads(r["payload"]),
        r["status"],
        json.loads(r["result"]) if r["result"] else None,
        r["done_at"],
    )
