"""The durable state store: one SQLite file in WAL mode, written through `Store.persist`.

The engine changes the in-memory grid, then hands it to `persist`, which writes every
change (dirty jobs, reservations and nodes, markets, the outbox of events, ledger
transactions and prices, the pass's actions, the counters) in one transaction before
the executor sees a single action. `load_grid` rebuilds the grid from the file, so a
console that stops, crashes or is replaced continues where the last one left off.

Schema creation and migrations go through sqlite-utils; the write path uses prepared
statements on the bare connection, since it runs on every scheduling pass.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import compress
from operator import ne
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..domain.config import Config
from ..domain.errors import InputError
from ..domain.model import HOLDING, Job, JobState, Market, Reservation
from ..policy import actions as A
from ..policy.grid import Grid
from ..policy.stored import Inconsistent, StoredGrid
from ..scheduler.engine import LeaseLost
from . import schema
from .codec import (
    EVENT_COLUMNS,
    JOB_BILLING,
    JOB_BILLING_AT,
    JOB_COLUMNS,
    JOB_CONVERTED,
    JOB_REST_AT,
    MARKET_COLUMNS,
    NODE_COLUMNS,
    RESERVATION_COLUMNS,
    action_from_payload,
    action_payload,
    job_billing,
    job_from_row,
    job_rest,
    job_rows,
    job_values,
    market_from_row,
    market_row,
    node_from_row,
    node_row,
    reservation_from_row,
    reservation_row,
    rest_snapshot,
)
from .records import ActionRecord, EventRecord, TransactionRecord
from .schema import SCHEMA_VERSION, StoreError, migrate, schema_version

if TYPE_CHECKING:
    from sqlite_utils import Database

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 10.0
# Pages the WAL may reach before a commit checkpoints it (SQLite's default is 1000). A
# checkpoint syncs to disk; fewer, larger ones keep bursts of small commits fast.
WAL_AUTOCHECKPOINT = 4000
# How often a leader's checkpoint thread looks for new commits (`checkpoint_in_background`).
CHECKPOINT_EVERY_S = 1.0
# The WAL size past which that thread makes it start over (a RESTART checkpoint), how
# often it looks, and how long it may hold the leader's writes back waiting for its turn.
WAL_LIMIT_BYTES = 64 * 1024 * 1024
WAL_POLL_S = 0.1
RESTART_WAIT_MS = 50
COUNTERS = ("next_job_id", "next_res_id", "next_seq")
# The ended jobs a long-running leader keeps in memory (`Store.keep_ended`): the latest
# thousand, a few MB at most, so its memory stays flat however long its history grows.
KEEP_ENDED = 1000
OUTCOMES = ("done", "failed")


def _upsert(table: str, columns: tuple[str, ...], key: str) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    sets = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != key)
    return (
        f'INSERT INTO {table} ({cols}) VALUES ({marks}) ON CONFLICT("{key}") DO UPDATE SET {sets}'
    )


def _insert(table: str, columns: tuple[str, ...]) -> str:
    cols = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' for _ in columns)})"


UPSERT_JOB = _upsert("jobs", JOB_COLUMNS, "id")
# Positions in a job row of the columns the jobs table indexes (schema.py).
JOB_INDEXED = frozenset(JOB_COLUMNS.index(c) for c in ("name", "state", "user"))
UPDATE_JOB_BILLING = (
    "UPDATE jobs SET " + ", ".join(f'"{c}" = ?' for c in JOB_BILLING) + " WHERE id = ?"
)
# What a grid that lets ended jobs go loads: its live jobs and the latest ended ones.
LIVE_AND_LATEST_ENDED = (
    "SELECT * FROM jobs WHERE ended_at IS NULL OR id IN "
    "(SELECT id FROM jobs WHERE ended_at IS NOT NULL ORDER BY ended_at DESC, id DESC LIMIT ?) "
    "ORDER BY id"
)
JOB_PAGE = 1000
# Lists of values go to SQLite as one JSON array, so each query is one statement however
# long the list: `IN (?, ?, ...)` made one per length, and the connection's cache of
# compiled statements (128) kept them, 6 MB for arrays of 200 sizes (a leader keeps its
# connection for months). tests/store/test_statements.py.
NAMES_IN = "SELECT name FROM jobs WHERE name IN (SELECT value FROM json_each(?))"
ENTRIES_OF = (
    "SELECT tx_id, account, amount FROM ledger_entries "
    "WHERE tx_id IN (SELECT value FROM json_each(?)) ORDER BY rowid"
)
# SQLite's page cache, KiB per connection (its default: 2,000): it is the leader's
# memory, and a step's reads and writes touch few pages (docs/store.md).
CACHE_KIB = 512
# A job as written: (id, `rest_snapshot` of its `job_rest` or None where it is not kept,
# its `job_billing`, ended_at).
JobWritten = tuple[int, tuple[Any, ...] | None, tuple[Any, ...], float | None]
JobKept = tuple[int, tuple[Any, ...], tuple[Any, ...], float | None]
UPSERT_RESERVATION = _upsert("reservations", RESERVATION_COLUMNS, "id")
UPSERT_NODE = _upsert("nodes", NODE_COLUMNS, "name")
UPSERT_MARKET = _upsert("markets", MARKET_COLUMNS, "gpu_type")
UPSERT_COUNTER = _upsert("counters", ("name", "value"), "name")
INSERT_EVENT = _insert("events", EVENT_COLUMNS)
INSERT_PRICE = _insert("prices", ("at", "gpu_type", "price"))
INSERT_TX = _insert("ledger_tx", ("id", "at", "reason", "job", "reservation"))
INSERT_ENTRY = _insert("ledger_entries", ("tx_id", "account", "amount"))
INSERT_ACTION = _insert(
    "actions", ("id", "at", "kind", "job", "payload", "status", "outcome", "done_at")
)
# The next rowid SQLite would pick (INTEGER PRIMARY KEY, no AUTOINCREMENT): set
# explicitly so a pass's rows go in one executemany, not one statement each.
NEXT_TX_ID = "SELECT coalesce(max(id), 0) + 1 FROM ledger_tx"
NEXT_ACTION_ID = "SELECT coalesce(max(id), 0) + 1 FROM actions"
ADD_TO_BALANCE = (
    "INSERT INTO accounts (account, balance) VALUES (?, ?) "
    "ON CONFLICT(account) DO UPDATE SET balance = balance + excluded.balance"
)
OPEN_ACCOUNT = "INSERT OR IGNORE INTO accounts (account, balance) VALUES (?, 0)"
LEASE = "scheduler"


class _Reader:
    """The two calls the reads make, as sqlite-utils' `Database` answers them (rows as
    dicts by column name), on the bare connection."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def query(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> Iterator[dict[str, Any]]:
        cur = self.conn.execute(sql, params or ())
        keys = [d[0] for d in cur.description]
        for row in cur:
            yield dict(zip(keys, row, strict=True))

    def execute(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> sqlite3.Cursor:
        return self.conn.execute(sql, params or ())


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a leader acquired. Its writes go through only while the lease row still
    names this holder and epoch and has not ended by `clock`, checked inside the write's
    own transaction: a console that lost the lease cannot slip in a late decision."""

    holder: str
    epoch: int
    clock: Callable[[], float]
    # A leader's own writes renew its lease when it is due (`due(now)`): to `now +
    # ttl_s`, in the same transaction, and `renewed(now)` is told once that commits.
    # The renewal from the leader's loop, in a thread, waits for the store's lock and
    # for the loop's turns; a leader writing without pause (a storm of commands, each
    # committed at once) starved it past the lease's end and paused itself.
    ttl_s: float = 0.0
    due: Callable[[float], bool] | None = None
    renewed: Callable[[float], None] | None = None


def busy_timeout() -> float:
    """How long to wait for another process's write lock: `SKYOPS_BUSY_TIMEOUT_S`, else
    `BUSY_TIMEOUT_S`."""
    raw = os.environ.get("SKYOPS_BUSY_TIMEOUT_S", "").strip()
    if not raw:
        return BUSY_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1e6:
        raise InputError([f"SKYOPS_BUSY_TIMEOUT_S: must be seconds >= 0 (got {raw!r})"])
    return value


def _prepare_folder(path: Path) -> None:
    """Refuse a path that can never hold the file, and create its folder, before SQLite
    answers with its bare 'unable to open database file'."""
    if path.is_dir():
        raise StoreError(
            f"{path}: is a folder, not a state database file; "
            "point --db or SKYOPS_DB at a file in it"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise StoreError(
            f"{path}: cannot create its folder {path.parent}: part of that path is a file"
        ) from None
    except OSError as e:
        raise StoreError(
            f"{path}: cannot create its folder {path.parent}: {e.strerror or e}"
        ) from None


def _disk_full(folder: Path) -> bool:
    # SQLite says only "disk I/O error" when it cannot even size its -shm file.
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def store_fault(path: Path, e: sqlite3.Error, busy_timeout_s: float | None = None) -> StoreError:
    """An error from SQLite as a person can act on it: the file, what went wrong, what
    to do. The command line exits 4 for every one (docs/headless.md)."""
    code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
    detail = str(e)
    folder = path.parent
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        waited = f" (waited {busy_timeout_s:g} s)" if busy_timeout_s is not None else ""
        why = (
            f"the state database is locked by another process{waited}; try again when it "
            "is free, or wait longer with SKYOPS_BUSY_TIMEOUT_S"
        )
    elif code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _disk_full(folder)):
        why = f"the disk is full ({detail}); free some space and try again"
    elif code == sqlite3.SQLITE_READONLY:
        if path.exists() and not os.access(path, os.W_OK):
            why = "the file is read-only; make it writable"
        elif not os.access(folder, os.W_OK):
            why = (
                f"its folder {folder} is read-only (SQLite writes a -wal and a -shm file "
                "beside the database)"
            )
        else:
            why = f"the state database cannot be written ({detail})"
    elif code == sqlite3.SQLITE_CANTOPEN:
        if not path.exists() and not os.access(folder, os.W_OK):
            why = f"cannot create the file: its folder {folder} is not writable"
        elif path.exists() and not os.access(path, os.R_OK):
            why = "cannot open the file: permission denied"
        elif path.exists() and not os.access(folder, os.W_OK):
            why = (
                f"cannot open the file: its folder {folder} is read-only (SQLite needs to "
                "create a -wal and a -shm file beside the database)"
            )
        else:
            why = f"cannot open the file ({detail})"
    elif code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        why = f"cannot open the state database: {detail}; point --db or SKYOPS_DB at another file"
    elif code == sqlite3.SQLITE_IOERR:
        why = f"cannot read or write the file: disk I/O error ({detail})"
    elif code == sqlite3.SQLITE_PERM:
        why = f"permission denied ({detail})"
    else:
        why = f"cannot open the state database: {detail}"
    return StoreError(f"{path}: {why}")


def ensure_grid_id(conn: sqlite3.Connection) -> str:
    """This database's grid id, made the first time it is opened: agents on the boxes
    scope job records by it, so two grids sharing boxes never touch each other's jobs."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'grid_id'").fetchone()
    if row is not None:  # no write: a read-only file still opens for reading
        return str(row[0])
    grid_id = os.urandom(6).hex()
    conn.execute("INSERT INTO meta (key, value) VALUES ('grid_id', ?)", [grid_id])
    return grid_id


class Store:
    """One console's connection to the state file. Thread-safe: calls are serialised."""

    # Set by the runtime while it leads (see `_fenced_write`); None: writes are not fenced.
    fence: Fence | None = None
    # How many ended jobs a grid this store loads or writes keeps in memory; the older
    # ones leave it once written and are read back from here on demand (docs/store.md
    # "Ended jobs"). None: every job stays (the simulator, a dry run, a snapshot).
    keep_ended: int | None = None

    def __init__(self, path: str | Path, busy_timeout_s: float | None = None) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout_s = busy_timeout() if busy_timeout_s is None else busy_timeout_s
        _prepare_folder(self.path)
        self._lock = threading.RLock()
        # Group commit (`durable`): commits made, commits known fsync'd, fsyncs done.
        self.commits = 0
        self.synced = 0
        self.fsyncs = 0
        self._dir_synced = False
        self._flush: asyncio.Task[None] | None = None
        self.checkpoints = 0  # done by `checkpoint_in_background`'s thread
        self.restarts = 0  # of those, the ones that let the WAL start over (past its limit)
        self._checkpointer: threading.Thread | None = None
        self._stop_checkpoints = threading.Event()
        try:
            # isolation_level=None: no implicit transactions; every write below is either a
            # single statement or inside an explicit BEGIN IMMEDIATE ... COMMIT.
            self.conn = sqlite3.connect(
                str(self.path),
                timeout=self.busy_timeout_s,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as e:
            raise store_fault(self.path, e, self.busy_timeout_s) from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            mode = self._switch_to_wal()
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode!r})")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._db: Database | None = None
            self._reader = _Reader(self.conn)
            with self._write():
                found = schema_version(self.conn)
                if found != schema.SCHEMA_VERSION:  # read late: tests append migrations
                    found = migrate(self.db, str(self.path))
                self.found_version = found
                self.grid_id = ensure_grid_id(self.conn)
        except sqlite3.Error as e:
            self.conn.close()
            raise store_fault(self.path, e, self.busy_timeout_s) from None
        except BaseException:
            self.conn.close()
            raise
        # What this store last wrote, to skip rows that did not change.
        self._grid: weakref.ref[Grid] | None = None
        self._markets: dict[str, tuple[Any, ...]] = {}
        # What was last written of each job that holds GPUs (see `_job_writes`).
        self._jobs_written: dict[int, JobKept] = {}
        self._accounts: set[str] = set()
        self._counters = self._read_counters()

    def _switch_to_wal(self) -> str:
        """`PRAGMA journal_mode = WAL`, retried until the busy timeout has passed. A
        file that another process has just created is still in rollback mode while that
        process switches it to WAL; meanwhile SQLite answers this switch SQLITE_BUSY at
        once, without waiting out the busy timeout, since this connection holds a read
        lock the other needs released (waiting would deadlock). Two commands started
        together on a new state file, `skyops serve` and a `skyops status`, met so."""
        deadline = time.monotonic() + self.busy_timeout_s
        pause = 0.002
        while True:
            try:
                return str(self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            except sqlite3.OperationalError as e:
                code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
                left = deadline - time.monotonic()
                if code != sqlite3.SQLITE_BUSY or left <= 0:
                    raise
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.05)

    # ------------------------------------------------------------ plumbing
    def close(self) -> None:
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._checkpointer = None
        with self._lock:
            self.conn.close()

    def checkpoint_in_background(
        self, every_s: float = CHECKPOINT_EVERY_S, wal_limit: int = WAL_LIMIT_BYTES
    ) -> None:
        """Checkpoint the WAL from a thread of its own, never inside a write: a commit
        that reaches `wal_autocheckpoint` copies the WAL into the file and fsyncs it
        before it returns, a stall of 10-20 ms in the scheduling pass that made it
        (docs/benchmarks.md §8). A leader calls this; its writes then only append to
        the WAL, and a PASSIVE checkpoint (which waits for no reader or writer) runs
        every `every_s` seconds in which something was committed.

        A PASSIVE checkpoint alone never lets the WAL start over while the leader keeps
        writing: SQLite rewinds it only at a write that finds every frame copied, and
        the thread always lags the writer. A burst of 5,000 submissions and cancels
        grew it to 244 MB, and the index of it that SQLite maps (`-shm`, 32 KiB a
        4,096 frames, in each connection) to 1.8 MB of the leader's memory. So once
        the file passes `wal_limit` bytes the thread follows with a RESTART checkpoint:
        it holds writers back while it copies the few frames written since and waits
        at most `RESTART_WAIT_MS` for them (or for a reader on an older snapshot)
        before it gives up until the next look; the leader's next write then starts
        the WAL over and cuts the file back to `wal_limit` (`journal_size_limit`),
        whose space the frames after it reuse. Stopped by `close`."""
        if self._checkpointer is not None:
            return
        with self._lock:
            self.conn.execute("PRAGMA wal_autocheckpoint = 0")
            self.conn.execute(f"PRAGMA journal_size_limit = {wal_limit}")
        self._stop_checkpoints.clear()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_loop,
            args=(every_s, wal_limit),
            name="skyops-checkpoint",
            daemon=True,
        )
        self._checkpointer.start()

    def _checkpoint_loop(self, every_s: float, wal_limit: int) -> None:
        conn: sqlite3.Connection | None = None
        done = self.commits
        wal = f"{self.path}-wal"
        poll_s = min(every_s, WAL_POLL_S)
        waited = 0.0
        try:
            while not self._stop_checkpoints.wait(poll_s):
                waited += poll_s
                try:
                    big = os.stat(wal).st_size > wal_limit
                except OSError:
                    big = False
                if not big and (waited < every_s or self.commits == done):
                    continue
                waited, done = 0.0, self.commits
                try:
                    if conn is None:
                        conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout_s)
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    if big:
                        conn.execute(f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
                        try:
                            if not conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]:
                                self.restarts += 1
                        finally:
                            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
                except sqlite3.Error as e:  # a full disk, a file gone: the next round retries
                    log.debug("background checkpoint of %s failed: %s", self.path, e)
        finally:
            if conn is not None:
                conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return schema_version(self.conn)

    @property
    def db(self) -> Database:
        """sqlite-utils over this connection, made on first use: the migrations and
        tests use it; the write and read paths do not, so a leader that opens a file
        already at this schema never imports it (some 15 MB resident with its imports)."""
        if self._db is None:
            from sqlite_utils import Database

            self._db = Database(self.conn, execute_plugins=False)
        return self._db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at BEGIN so two consoles never deadlock
        upgrading read locks; rolled back whole on any error."""
        with self._lock:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------ durability
    def sync(self) -> None:
        """Make every commit so far survive power loss: one fsync of the WAL (commits
        run with `synchronous = NORMAL`, which leaves that to the next checkpoint).
        Nothing to do when no commit was made since the last sync."""
        with self._lock:
            upto = self.commits
        if self.synced >= upto:
            return
        self._fsync_wal()
        self.synced = max(self.synced, upto)

    def _fsync_wal(self) -> None:
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:  # checkpointed and removed: the checkpoint synced the file
            fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot make a write durable: {e.strerror or e}") from e
        finally:
            os.close(fd)
        self.fsyncs += 1
        if not self._dir_synced:  # the -wal file's own directory entry, once
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
            self._dir_synced = True

    async def durable(self) -> None:
        """Return once every commit made before the call is fsync'd: the group commit a
        leader awaits before telling a client a command was accepted. Callers waiting
        together share one fsync, run in a thread so commands keep being applied (and
        join the next fsync) meanwhile."""
        upto = self.commits
        while self.synced < upto:
            if self._flush is None or self._flush.done():
                self._flush = asyncio.get_running_loop().create_task(self._group())
            await asyncio.shield(self._flush)

    async def flushed(self) -> None:
        """Wait for the group commit under way, if any, without starting one: the
        scheduler's pass lets the answers that wait on it go out first."""
        flush = self._flush
        if flush is not None and not flush.done():
            await asyncio.shield(flush)

    async def _group(self) -> None:
        await asyncio.sleep(0)  # the commands of this loop turn join this fsync
        upto = self.commits
        if self.synced < upto:
            await asyncio.to_thread(self._fsync_wal)
            self.synced = max(self.synced, upto)

    @contextmanager
    def _fenced_write(self) -> Iterator[sqlite3.Connection]:
        """A write of the leader's decisions: refused with `LeaseLost`, and rolled back,
        unless this console still holds the lease it acquired (`fence`)."""
        renewed: Callable[[], None] | None = None
        with self._write() as c:
            fence = self.fence
            if fence is not None:
                row = c.execute(
                    "SELECT holder, epoch, expires_at FROM lease WHERE name = ?", (LEASE,)
                ).fetchone()
                if row is None or (row[0], row[1]) != (fence.holder, fence.epoch):
                    who = f"{row[0]} (epoch {row[1]})" if row else "nobody"
                    raise LeaseLost(
                        f"the scheduler lease is held by {who}, not by this console "
                        f"(epoch {fence.epoch})"
                    )
                now = fence.clock()
                if row[2] <= now:
                    raise LeaseLost(
                        f"this console's scheduler lease ended {now - row[2]:.1f} s ago"
                    )
                if fence.due is not None and fence.renewed is not None and fence.due(now):
                    c.execute(
                        "UPDATE lease SET expires_at = ? WHERE name = ?", (now + fence.ttl_s, LEASE)
                    )
                    renewed = functools.partial(fence.renewed, now)
            yield c
        if renewed is not None:  # committed
            renewed()

    @contextmanager
    def _read(self) -> Iterator[_Reader]:
        """One snapshot for reads that span several queries."""
        with self._lock:
            self.conn.execute("BEGIN")
            try:
                yield self._reader
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    def _rows(
        self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return list(self._reader.query(sql, params))

    def _read_counters(self) -> tuple[int, ...]:
        with self._lock:
            saved = dict(self.conn.execute("SELECT name, value FROM counters").fetchall())
        return tuple(saved.get(name, 1) for name in COUNTERS)

    def _bind(self, grid: Grid, markets: dict[str, tuple[Any, ...]], accounts: set[str]) -> None:
        self._grid = weakref.ref(grid)
        self._markets = markets
        self._accounts = accounts
        self._jobs_written = {}

    def _job_writes(self, c: sqlite3.Connection, grid: Grid) -> list[JobWritten]:
        """Write the dirty jobs: a row this store wrote before gets only its changed
        columns (most often a settle's billing columns, which leaves the job's indexes
        alone and encodes none of its lists), an unchanged one nothing, any other the
        whole row. Returns what was written of each, for `_jobs_written`.

        What was written is kept only for a job that holds GPUs: it is the one settled
        every billing interval. A job that waits, or has ended, changes seldom and then
        mostly its state (a whole row anyway), and its copy would cost the leader some
        800 bytes a job (docs/store.md)."""
        whole: list[Job] = []
        billed: list[tuple[Any, ...]] = []
        parts: dict[tuple[int, ...], list[list[Any]]] = {}
        written = self._jobs_written
        jobs = grid.jobs
        out: list[JobWritten] = []
        for j in grid.dirty_jobs:
            job = jobs[j]
            rest, bill = job_rest(job), job_billing(job)
            old = written.get(j)
            if old is not None and rest == old[1]:
                if bill != old[2]:
                    billed.append((*bill, j))
                    out.append((j, old[1], bill, job.ended_at))
                continue
            kept = rest_snapshot(rest) if job.state in HOLDING else None
            if kept is not None or old is not None:
                out.append((j, kept, bill, job.ended_at))
            if old is None:
                whole.append(job)
                continue
            changed = tuple(
                sorted(
                    [
                        *compress(JOB_REST_AT, map(ne, rest, old[1])),
                        *compress(JOB_BILLING_AT, map(ne, bill, old[2])),
                    ]
                )
            )
            if not JOB_INDEXED.isdisjoint(changed):
                whole.append(job)
                continue
            values = job_values(job)
            row = [
                JOB_CONVERTED[i](values[i]) if i in JOB_CONVERTED else values[i] for i in changed
            ]
            row.append(j)
            parts.setdefault(changed, []).append(row)
        if whole:
            c.executemany(UPSERT_JOB, job_rows(whole))
        if billed:
            c.executemany(UPDATE_JOB_BILLING, billed)
        for changed, rows in parts.items():
            sets = ", ".join(f'"{JOB_COLUMNS[i]}" = ?' for i in changed)
            c.executemany(f"UPDATE jobs SET {sets} WHERE id = ?", rows)
        return out

    # ---------------------------------------------------------------- writes
    def persist(self, grid: Grid, actions: list[A.Action], now: float) -> list[int]:
        """Write every change since the last call in one transaction; return the ids of
        the action rows, in order. Executor actions are recorded 'intended' (their outcome
        comes later, `record_outcome`); bookkeeping actions, already applied to the grid
        and written with it, are recorded 'done', except `Settle`: a leader settles every
        running job each billing interval (most of a busy pass's actions), and what a
        settle did is already written, in the job's billing columns and its ledger
        transaction.

        On any error nothing is written, the grid keeps its outbox and dirty marks (so a
        later call writes them), and the exception propagates. A leader that lost its
        lease gets `LeaseLost` (see `_fenced_write`): it must demote, not retry.
        """
        if self._grid is None or self._grid() is not grid:
            self._bind(grid, {}, set())
        events, txs, prices = grid.events, grid.transactions, grid.prices
        markets = [market_row(m) for m in grid.markets.values()]
        markets = [r for r in markets if self._markets.get(r[0]) != r]
        new_accounts = []
        if len(grid.balances) != len(self._accounts):
            # Accounts opened with a zero balance have no ledger entry to create them.
            new_accounts = [(a,) for a in grid.balances if a not in self._accounts]
        counters = (grid.next_job_id, grid.next_res_id, grid.next_seq)
        ids: list[int] = []
        job_rows: list[JobWritten] = []
        with self._fenced_write() as c:
            if grid.dirty_reservations:
                c.executemany(
                    UPSERT_RESERVATION,
                    [reservation_row(grid.reservations[n]) for n in grid.dirty_reservations],
                )
            if grid.dirty_jobs:
                job_rows = self._job_writes(c, grid)
            if grid.dirty_nodes:
                rows = [node_row(grid.nodes[n]) for n in grid.dirty_nodes if n in grid.nodes]
                c.executemany(UPSERT_NODE, rows)
            if markets:
                c.executemany(UPSERT_MARKET, markets)
            if events:
                c.executemany(
                    INSERT_EVENT,
                    (
                        (e.at, e.kind, e.cause, e.job, e.reservation, e.node, e.old, e.new, e.user)
                        for e in events
                    ),
                )
            if txs:
                entries: list[tuple[int, str, int]] = []
                deltas: dict[str, int] = {}
                tx_rows = []
                tx_id: int = c.execute(NEXT_TX_ID).fetchone()[0]
                for tx in txs:
                    total = 0
                    for account, amount in tx.entries:
                        entries.append((tx_id, account, amount))
                        deltas[account] = deltas.get(account, 0) + amount
                        total += amount
                    if total != 0:
                        raise StoreError(f"refusing an unbalanced ledger transaction: {tx}")
                    tx_rows.append((tx_id, tx.at, tx.reason, tx.job, tx.reservation))
                    tx_id += 1
                c.executemany(INSERT_TX, tx_rows)
                c.executemany(INSERT_ENTRY, entries)
                c.executemany(ADD_TO_BALANCE, deltas.items())
            if new_accounts:
                c.executemany(OPEN_ACCOUNT, new_accounts)
            if prices:
                c.executemany(INSERT_PRICE, prices)
            if actions:
                action_id: int = c.execute(NEXT_ACTION_ID).fetchone()[0]
                rows = []
                for action in actions:
                    if action.__class__ is A.Settle:
                        continue  # its record is the job's billing columns and the ledger
                    kind, job, payload = action_payload(action)
                    if isinstance(action, A.EXECUTOR_ACTIONS):
                        rows.append((action_id, now, kind, job, payload, "intended", None, None))
                    else:
                        rows.append((action_id, now, kind, job, payload, "done", "applied", now))
                    ids.append(action_id)
                    action_id += 1
                c.executemany(INSERT_ACTION, rows)
            if counters != self._counters:
                changed = zip(COUNTERS, counters, self._counters, strict=True)
                c.executemany(UPSERT_COUNTER, [(n, v) for n, v, was in changed if v != was])
        grid.drain()
        for w in job_rows:
            if (kept := w[1]) is not None:
                self._jobs_written[w[0]] = (w[0], kept, w[2], w[3])
            else:
                self._jobs_written.pop(w[0], None)
        if self.keep_ended is not None:
            if grid.jobs.archive is not self:
                grid.bind_archive(self)
            grid.evict_ended(self.keep_ended)
        self._markets.update((r[0], r) for r in markets)
        if new_accounts:
            self._accounts.update(a for (a,) in new_accounts)
        self._counters = counters
        return ids

    def persister(self, clock: Clock) -> Callable[[Grid, list[A.Action]], list[int]]:
        """The engine's `persist` hook: `Engine(grid, executor, store.persister(clock))`."""

        def persist(grid: Grid, actions: list[A.Action]) -> list[int]:
            return self.persist(grid, actions, clock.now())

        return persist

    def record_outcome(self, action_id: int, status: str, outcome: str, now: float) -> None:
        """What became of an intended action: 'done' or 'failed', with a reason.
        Recorded once; a second outcome for the same action is refused."""
        if status not in OUTCOMES:
            raise ValueError(f"status must be one of {', '.join(OUTCOMES)}, not {status!r}")
        with self._fenced_write() as c:
            cur = c.execute(
                "UPDATE actions SET status = ?, outcome = ?, done_at = ? "
                "WHERE id = ? AND status = 'intended'",
                (status, outcome, now, action_id),
            )
            if cur.rowcount == 0:
                row = c.execute("SELECT status FROM actions WHERE id = ?", (action_id,)).fetchone()
                if row is None:
                    raise StoreError(f"no action {action_id}")
                raise StoreError(f"action {action_id} already has an outcome ({row[0]})")

    # ------------------------------------------------------------- load
    def load_grid(self, cfg: Config, now: float) -> Grid:
        """The grid as the file last recorded it, under the current config.

        The store reads the parts; policy/stored.py puts them together (the config's
        rates, floors and nodes; a node the config no longer names kept, drained, while
        something holds its GPUs).
        """
        with self._read() as db:
            node_rows = {r["name"]: r for r in db.query("SELECT * FROM nodes")}
            market_rows = {r["gpu_type"]: r for r in db.query("SELECT * FROM markets")}
            if self.keep_ended is None:
                sql, args = "SELECT * FROM jobs ORDER BY id", []
            else:
                sql, args = LIVE_AND_LATEST_ENDED, [self.keep_ended]
            jobs = [job_from_row(r) for r in db.query(sql, args)]
            reservations = [
                reservation_from_row(r) for r in db.query("SELECT * FROM reservations ORDER BY id")
            ]
            balances = {r["account"]: r["balance"] for r in db.query("SELECT * FROM accounts")}
            counters = {r["name"]: r["value"] for r in db.query("SELECT * FROM counters")}

            # The price timeline from the segment in force when the oldest run still
            # holding GPUs began: enough to bill, or credit back, any of its seconds.
            since: dict[str, float] = {}
            for j in jobs:
                if j.state in HOLDING and j.market and j.started_at is not None:
                    since[j.market] = min(since.get(j.market, j.started_at), j.started_at)
            price_rows = {t: self._price_rows(db, t, since.get(t, now)) for t in market_rows}

        markets: dict[str, Market] = {}
        for t, row in market_rows.items():
            markets[t] = m = market_from_row(row)
            _replay_prices(m, price_rows.get(t, []), row)
        stored = StoredGrid(
            nodes={name: node_from_row(row) for name, row in node_rows.items()},
            markets=markets,
            jobs=jobs,
            reservations=reservations,
            balances=balances,
            counters=counters,
        )
        try:
            grid = Grid.from_stored(cfg, now, stored)
        except Inconsistent as e:
            raise StoreError(f"{self.path}: {e}") from e
        stored_markets = {t: market_row(market_from_row(r)) for t, r in market_rows.items()}
        self._bind(grid, stored_markets, set(balances))
        if self.keep_ended is not None:
            grid.bind_archive(self)
        self._counters = tuple(counters.get(name, 1) for name in COUNTERS)
        return grid

    @staticmethod
    def _price_rows(db: _Reader, gpu_type: str, since: float) -> list[tuple[float, int]]:
        first = db.execute(
            "SELECT max(at) FROM prices WHERE gpu_type = ? AND at <= ?", [gpu_type, since]
        ).fetchone()[0]
        rows = db.execute(
            "SELECT at, price FROM prices WHERE gpu_type = ? AND at >= ? ORDER BY id",
            [gpu_type, since if first is None else first],
        )
        return [(at, price) for at, price in rows]

    # ------------------------------------------------- ended jobs (an Archive)
    def archived_job(self, job_id: int) -> Job | None:
        with self._lock:
            rows = self._rows("SELECT * FROM jobs WHERE id = ?", [job_id])
        return job_from_row(rows[0]) if rows else None

    def archived_job_id(self, name: str) -> int | None:
        with self._lock:
            row = self.conn.execute("SELECT id FROM jobs WHERE name = ?", [name]).fetchone()
        return None if row is None else int(row[0])

    def archived_names(self, names: list[str]) -> set[str]:
        with self._lock:
            return {n for (n,) in self.conn.execute(NAMES_IN, [json.dumps(names)])}

    def archived_jobs(self, after: int = 0) -> Iterator[Job]:
        """Every job row with an id above `after`, by id, read a page at a time (a long
        history is never in memory at once)."""
        while True:
            with self._lock:
                rows = self._rows(
                    "SELECT * FROM jobs WHERE id > ? ORDER BY id LIMIT ?", [after, JOB_PAGE]
                )
            for r in rows:
                yield job_from_row(r)
            if len(rows) < JOB_PAGE:
                return
            after = rows[-1]["id"]

    # ------------------------------------------------------------- reads
    def jobs(
        self, user: str | None = None, states: Iterable[JobState | str] | None = None
    ) -> list[Job]:
        where: list[str] = []
        params: list[Any] = []
        if user is not None:
            where.append("user = ?")
            params.append(user)
        if states is not None:
            states = [str(s) for s in states]
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params += states
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        with self._lock:
            return [job_from_row(r) for r in self._rows(sql + " ORDER BY id", params)]

    def job(self, ref: str | int) -> Job | None:
        """By id (an int or a string of digits) or by name."""
        arg: int | str
        if isinstance(ref, int) or ref.isdigit():
            sql, arg = "SELECT * FROM jobs WHERE id = ?", int(ref)
        else:
            sql, arg = "SELECT * FROM jobs WHERE name = ?", ref
        with self._lock:
            rows = self._rows(sql, [arg])
        return job_from_row(rows[0]) if rows else None

    def reservations(self) -> list[Reservation]:
        with self._lock:
            rows = self._rows("SELECT * FROM reservations ORDER BY id")
        return [reservation_from_row(r) for r in rows]

    def markets(self) -> list[Market]:
        with self._lock:
            return [market_from_row(r) for r in self._rows("SELECT * FROM markets")]

    def events(
        self,
        limit: int = 200,
        job: int | None = None,
        reservation: str | None = None,
        since_id: int | None = None,
    ) -> list[EventRecord]:
        """Oldest first. With `since_id`: the first `limit` events after it (to follow
        the log); without: the latest `limit`."""
        where: list[str] = []
        params: list[Any] = []
        if job is not None:
            where.append("job = ?")
            params.append(job)
        if reservation is not None:
            where.append("reservation = ?")
            params.append(reservation)
        if since_id is not None:
            where.append("id > ?")
            params.append(since_id)
        sql = "SELECT * FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id" + (" DESC" if since_id is None else "") + " LIMIT ?"
        with self._lock:
            rows = self._rows(sql, [*params, limit])
        if since_id is None:
            rows.reverse()
        return [EventRecord(**r) for r in rows]

    def transactions(
        self, limit: int = 200, account: str | None = None, job: int | None = None
    ) -> list[TransactionRecord]:
        """The latest `limit` ledger transactions, oldest first, with their entries."""
        where: list[str] = []
        params: list[Any] = []
        if account is not None:
            where.append("id IN (SELECT tx_id FROM ledger_entries WHERE account = ?)")
            params.append(account)
        if job is not None:
            where.append("job = ?")
            params.append(job)
        sql = "SELECT * FROM ledger_tx" + (" WHERE " + " AND ".join(where) if where else "")
        with self._read():
            txs = self._rows(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
            txs.reverse()
            entries: dict[int, list[tuple[str, int]]] = {t["id"]: [] for t in txs}
            rows = self.conn.execute(ENTRIES_OF, [json.dumps(list(entries))])
            for tx_id, acct, amount in rows:
                entries[tx_id].append((acct, amount))
        return [
            TransactionRecord(
                t["id"], t["at"], t["reason"], tuple(entries[t["id"]]), t["job"], t["reservation"]
            )
            for t in txs
        ]

    def balances(self) -> dict[str, int]:
        with self._lock:
            return dict(self.conn.execute("SELECT account, balance FROM accounts ORDER BY account"))

    def prices(self, gpu_type: str, since: float | None = None) -> list[tuple[float, int]]:
        """The clearing price history of one node type: (at, price per GPU-hour), oldest first."""
        sql = "SELECT at, price FROM prices WHERE gpu_type = ?"
        params: list[Any] = [gpu_type]
        if since is not None:
            sql += " AND at >= ?"
            params.append(since)
        with self._lock:
            return [tuple(r) for r in self.conn.execute(sql + " ORDER BY at, id", params)]

    def pending_actions(self) -> list[ActionRecord]:
        """Actions decided and written but with no recorded outcome, oldest first: after a
        crash, what the executor may or may not have carried out."""
        with self._lock:
            rows = self._rows("SELECT * FROM actions WHERE status = 'intended' ORDER BY id")
        return [_action_record(r) for r in rows]

    def last_start(self, job: int) -> A.Start | None:
        """The job's latest `Start` action: where its latest run was placed."""
        with self._lock:
            rows = self._rows(
                "SELECT * FROM actions WHERE job = ? AND kind = 'Start' ORDER BY id DESC LIMIT 1",
                [job],
            )
        if not rows:
            return None
        action = _action_record(rows[0]).action
        return action if isinstance(action, A.Start) else None

    def actions(self, limit: int = 200, job: int | None = None) -> list[ActionRecord]:
        """The latest `limit` actions, oldest first, whatever their status."""
        sql = "SELECT * FROM actions" + (" WHERE job = ?" if job is not None else "")
        params = [job] if job is not None else []
        with self._lock:
            rows = self._rows(sql + " ORDER BY id DESC LIMIT ?", [*params, limit])
        rows.reverse()
        return [_action_record(r) for r in rows]


def _replay_prices(m: Market, rows: list[tuple[float, int]], row: dict[str, Any]) -> None:
    """Rebuild a market's price timeline as the passes that recorded it built it."""
    m.starts, m.levels = [], []
    m.price = m.floor
    for at, price in rows:
        m.set_price(price, at)
    if not m.starts or m.price != row["price"]:
        m.set_price(row["price"], row["price_at"])
    m.price_at, m.integral = row["price_at"], row["integral"]


def _action_record(r: dict[str, Any]) -> ActionRecord:
    return ActionRecord(
        id=r["id"],
        at=r["at"],
        kind=r["kind"],
        job=r["job"],
        payload=r["payload"],
        action=action_from_payload(r["kind"], r["payload"]),
        status=r["status"],
        outcome=r["outcome"],
        done_at=r["done_at"],
    )


__all__ = ["KEEP_ENDED", "Store", "StoreError", "SCHEMA_VERSION", "busy_timeout", "store_fault"]
