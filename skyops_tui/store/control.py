"""Store tables that let several processes share one grid: the scheduler lease and
the command queue (schema v2). The leader holds the lease and applies queued commands;
every other process reads state and queues commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .db import Store

LEASE = "scheduler"


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: int
    at: float
    actor: str
    kind: str
    payload: dict
    status: str
    result: dict | None
    done_at: float | None


def acquire_lease(store: Store, holder: str, now: float, ttl_s: float) -> bool:
    """Take or renew the lease; False while another live holder has it."""
    with store._write() as conn:
        row = conn.execute(
            "SELECT holder, expires_at FROM lease WHERE name = ?", (LEASE,)
        ).fetchone()
        if row is not None and row[0] != holder and row[1] > now:
            return False
        conn.execute(
            "INSERT INTO lease (name, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at",
            (LEASE, holder, now + ttl_s),
        )
        return True


def release_lease(store: Store, holder: str) -> None:
    with store._write() as conn:
        conn.execute("DELETE FROM lease WHERE name = ? AND holder = ?", (LEASE, holder))


def lease_holder(store: Store, now: float) -> str | None:
    rows = store._rows("SELECT holder, expires_at FROM lease WHERE name = ?", (LEASE,))
    if rows and rows[0]["expires_at"] > now:
        return rows[0]["holder"]
    return None


def enqueue(store: Store, kind: str, payload: dict, actor: str, now: float) -> int:
    with store._write() as conn:
        cur = conn.execute(
            "INSERT INTO commands (at, actor, kind, payload, status) VALUES (?, ?, ?, ?, 'pending')",
            (now, actor, kind, json.dumps(payload)),
        )
        return int(cur.lastrowid)


def pending_commands(store: Store, limit: int = 100) -> list[CommandRow]:
    rows = store._rows(
        "SELECT * FROM commands WHERE status = 'pending' ORDER BY id LIMIT ?", (limit,)
    )
    return [_row(r) for r in rows]


def finish_command(store: Store, cid: int, status: str, result: dict[str, Any], now: float) -> None:
    with store._write() as conn:
        conn.execute(
            "UPDATE commands SET status = ?, result = ?, done_at = ? WHERE id = ? AND status = 'pending'",
            (status, json.dumps(result), now, cid),
        )


def command(store: Store, cid: int) -> CommandRow | None:
    rows = store._rows("SELECT * FROM commands WHERE id = ?", (cid,))
    return _row(rows[0]) if rows else None


def _row(r: dict) -> CommandRow:
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
