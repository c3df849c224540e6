"""The store's schema as an ordered list of forward migrations.

`MIGRATIONS[k]` takes a database from version k to k + 1; `SCHEMA_VERSION` is their
count. A migration, once released, is never edited: a change to the schema is a new
function appended to the list (see docs/store.md). `migrate` runs every missing step in
the caller's transaction and records the version in `meta`, so a failed step leaves the
file at its old version.

Money columns are INTEGER micro-units; times are REAL epoch seconds; lists, dicts and
placements are JSON text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported by whoever migrates (Store), not by every process that opens one
    from sqlite_utils import Database


class StoreError(Exception):
    """The state database cannot be used as it is, or cannot be reached now (locked by
    another process, a full disk, a folder where the file should be, a folder or file
    that cannot be written); the message names the file, says why and what to do. The
    command line exits 4 for it (docs/headless.md)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Skyops than this one."""


def _append_only(db: Database, table: str) -> None:
    for op in ("UPDATE", "DELETE"):
        db.execute(
            f"CREATE TRIGGER {table}_no_{op.lower()} BEFORE {op} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def _partial_index(db: Database, table: str, column: str) -> None:
    # Most rows leave these NULL; skipping them keeps each append a page lighter.
    db.execute(f"CREATE INDEX idx_{table}_{column} ON {table}({column}) WHERE {column} IS NOT NULL")


def _v1(db: Database) -> None:
    """The initial schema."""
    db.table("meta").create({"key": str, "value": str}, pk="key", not_null={"value"})
    db.table("nodes").create(
        {
            "name": str,
            "gpu_type": str,
            "gpu_count": int,
            "status": str,
            "host": str,
            "fake": int,
            "last_heartbeat": float,
        },
        pk="name",
        not_null={"gpu_type", "gpu_count", "status", "host", "fake"},
    )
    db.table("jobs").create(
        {
            "id": int,
            "name": str,
            "user": str,
            "mode": str,
            "seq": int,
            "submitted_at": float,
            "argv": str,
            "gpus": int,
            "nodes": int,
            "gpu_type": str,
            "state": str,
            "hours": float,
            "hourly": int,
            "auto_renew": int,
            "renew_hours": float,
            "end_at": float,
            "warned": int,
            "reservation": str,
            "bid": int,
            "max_retries": int,
            "retries": int,
            "retry_at": float,
            "preemptions": int,
            "lost_work_s": float,
            "last_checkpoint_at": float,
            "placement": str,
            "market": str,
            "started_at": float,
            "first_started_at": float,
            "ended_at": float,
            "runs": int,
            "stop_reason": str,
            "exit_code": int,
            "billed_from": float,
            "price_mark": int,
            "run_acc": int,
            "run_charged": int,
            "charged": int,
            "env": str,
            "workdir": str,
            "runtime": float,
            "work_done": float,
            "checkpoint_every": float,
        },
        pk="id",
        not_null={"name", "user", "mode", "seq", "submitted_at", "state"},
    )
    db.table("jobs").create_index(["name"], unique=True)
    db.table("jobs").create_index(["state"])
    db.table("jobs").create_index(["user"])
    db.table("reservations").create(
        {
            "id": int,
            "name": str,
            "user": str,
            "gpu_type": str,
            "gpus": int,
            "windows": str,
            "rate": int,
            "discount_bp": int,
            "prepaid": int,
            "created_at": float,
            "cancelled_at": float,
            "active_window": int,
            "held": str,
            "missing": int,
            "missing_since": float,
            "downtime_gpu_s": float,
            "settled_windows": int,
            "refunded": int,
            "credited": int,
        },
        pk="id",
        not_null={"name", "user", "gpu_type", "gpus", "windows", "prepaid", "created_at"},
    )
    db.table("reservations").create_index(["name"], unique=True)
    db.table("markets").create(
        {
            "gpu_type": str,
            "rate": int,
            "floor": int,
            "price": int,
            "price_at": float,
            "integral": int,
        },
        pk="gpu_type",
        not_null={"rate", "floor", "price", "price_at", "integral"},
    )
    db.table("prices").create(
        {"id": int, "at": float, "gpu_type": str, "price": int},
        pk="id",
        not_null={"at", "gpu_type", "price"},
    )
    db.table("prices").create_index(["gpu_type", "at"])
    db.table("events").create(
        {
            "id": int,
            "at": float,
            "kind": str,
            "cause": str,
            "job": int,
            "reservation": str,
            "node": str,
            "old": str,
            "new": str,
            "user": str,
        },
        pk="id",
        not_null={"at", "kind", "cause"},
    )
    _partial_index(db, "events", "job")
    _partial_index(db, "events", "reservation")
    db.table("ledger_tx").create(
        {"id": int, "at": float, "reason": str, "job": int, "reservation": str},
        pk="id",
        not_null={"at", "reason"},
    )
    _partial_index(db, "ledger_tx", "job")
    _partial_index(db, "ledger_tx", "reservation")
    db.table("ledger_entries").create(
        {"tx_id": int, "account": str, "amount": int},
        not_null={"tx_id", "account", "amount"},
        foreign_keys=[("tx_id", "ledger_tx", "id")],
    )
    db.table("ledger_entries").create_index(["tx_id"])
    db.table("ledger_entries").create_index(["account", "tx_id"])
    db.table("accounts").create(
        {"account": str, "balance": int}, pk="account", not_null={"balance"}
    )
    db.table("actions").create(
        {
            "id": int,
            "at": float,
            "kind": str,
            "job": int,
            "payload": str,
            "status": str,
            "outcome": str,
            "done_at": float,
        },
        pk="id",
        not_null={"at", "kind", "payload", "status"},
    )
    db.execute("CREATE INDEX actions_intended ON actions(id) WHERE status = 'intended'")
    db.table("counters").create({"name": str, "value": int}, pk="name", not_null={"value"})
    db.table("lease").create(
        {"name": str, "holder": str, "expires_at": float},
        pk="name",
        not_null={"holder", "expires_at"},
    )
    for table in ("events", "prices", "ledger_tx", "ledger_entries"):
        _append_only(db, table)


Migration = Callable[["Database"], None]


def _v2(db: Database) -> None:
    """Commands from other processes (CLI, other consoles) for the scheduler's leader."""
    db.table("commands").create(
        {
            "id": int,
            "at": float,
            "actor": str,
            "kind": str,
            "payload": str,
            "status": str,  # pending | done | refused | failed
            "result": str,
            "done_at": float,
        },
        pk="id",
        not_null={"at", "actor", "kind", "payload", "status"},
    )
    db.execute("CREATE INDEX idx_commands_pending ON commands(id) WHERE status = 'pending'")


def _v3(db: Database) -> None:
    """The lease's epoch, bumped each time another console takes it: a leader's writes
    carry the epoch it acquired, so the late writes of one that lost it are refused."""
    db.execute("ALTER TABLE lease ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1")


def _v4(db: Database) -> None:
    """Billing from one price timeline (docs/modes.md, Billing): each Flex job's bid
    changes with their times, what was credited back to a job, and running totals in
    price x microseconds (they were price x seconds)."""
    db.execute("ALTER TABLE jobs ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE jobs ADD COLUMN bid_log TEXT NOT NULL DEFAULT '[]'")
    db.execute("UPDATE jobs SET run_acc = run_acc * 1000000 WHERE run_acc IS NOT NULL")
    # A market whose price never changed has no row yet: its timeline starts here.
    db.execute(
        "INSERT INTO prices (at, gpu_type, price) SELECT price_at, gpu_type, price FROM markets "
        "WHERE gpu_type NOT IN (SELECT DISTINCT gpu_type FROM prices)"
    )


def _v5(db: Database) -> None:
    """An operator's drain on each node (who and why; NULL: not drained), kept apart
    from `status`, which the node's own reports set (docs/api.md, Commands)."""
    db.execute("ALTER TABLE nodes ADD COLUMN drained TEXT")


def _v6(db: Database) -> None:
    """Where a job last started, found at once: `skyops logs` of an ended job reads
    its output on the node of its latest `Start` action (a partial index of those by
    job). Settles are no longer recorded as actions (the ledger records them); the
    ones written before stay."""
    db.execute("CREATE INDEX actions_starts ON actions(job, id) WHERE kind = 'Start'")


MIGRATIONS: list[Migration] = [_v1, _v2, _v3, _v4, _v5, _v6]
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version(db: Database | sqlite3.Connection) -> int:
    """The version recorded in the file: 0 for an empty file."""
    tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if "meta" not in tables:
        others = [t for t in tables if not t.startswith("sqlite_")]
        if others:
            raise StoreError(
                f"not a Skyops state database: it has tables ({', '.join(sorted(others)[:5])}) "
                "but no schema version; point --db or SKYOPS_DB at another file"
            )
        return 0
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(db: Database, source: str = "database") -> int:
    """Bring `db` up to `SCHEMA_VERSION` inside the caller's transaction; return the
    version found. A file newer than this code is refused, never touched."""
    found = schema_version(db)
    if found > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{source}: schema version {found} is newer than this Skyops understands "
            f"(up to {SCHEMA_VERSION}); upgrade Skyops, or point --db or SKYOPS_DB at "
            "another file"
        )
    for version in range(found + 1, SCHEMA_VERSION + 1):
        MIGRATIONS[version - 1](db)
        db.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [str(version)],
        )
    return found
