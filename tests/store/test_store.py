"""The state store on real SQLite files: schema and migrations, the one-transaction write
path the engine persists through, and the round trip that lets a restarted console
continue exactly where the last one stopped."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

import pytest

from skyops_tui.clock import ManualClock
from skyops_tui.domain.config import Config, parse_config
from skyops_tui.domain.model import (
    HOLDING,
    Job,
    JobState,
    Mode,
    NodeStatus,
    Placement,
    Reservation,
)
from skyops_tui.domain.money import MICRO
from skyops_tui.domain.specs import JobSpec, ReservationSpec
from skyops_tui.policy import actions as A
from skyops_tui.policy.grid import Grid
from skyops_tui.policy.planner import plan
from skyops_tui.scheduler.engine import Engine
from skyops_tui.scheduler.executor import NodeChanged
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store import SCHEMA_VERSION, SchemaTooNew, Store, StoreError
from skyops_tui.store import schema as schema_mod
from skyops_tui.store.codec import JOB_COLUMNS, RESERVATION_COLUMNS
from tests.waiting import wait_for

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC
RICH = 1_000_000 * MICRO

CONFIG = {
    "cluster": {"grace_s": 20, "stop_grace_s": 5},
    "node_types": [{"name": "H100", "rate": 2.5}, {"name": "A100", "rate": 1.6}],
    "nodes": [
        {"name": "h100-1", "fake_gpus": "8xH100-80GB"},
        {"name": "h100-2", "fake_gpus": "8xH100-80GB"},
        {"name": "a100-1", "fake_gpus": "8xA100-80GB"},
    ],
}


def make_config(**changes) -> Config:
    data = {**CONFIG, **changes}
    return parse_config(data, "test config")


def dump(path: Path) -> str:
    """Everything in the file, as SQL, read through a connection of its own."""
    conn = sqlite3.connect(path)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


class Console:
    """One console: a grid driven by the real engine and simulated agents, persisting
    every change to a store, as the live scheduler does."""

    def __init__(self, path: Path, cfg: Config | None = None) -> None:
        self.cfg = cfg or make_config()
        self.clock = ManualClock(T0)
        self.store = Store(path)
        self.grid = Grid(self.cfg, T0)
        self.sim = SimExecutor(self.clock, 5.0, self.cfg.cluster.grace_s)
        self.sim.attach(self.grid)  # as Runtime does: what the agents write is persisted
        self.engine = Engine(self.grid, self.sim, self.store.persister(self.clock))
        self.actions: list[A.Action] = []

    @property
    def now(self) -> float:
        return self.clock.now()

    def do(self, fn):
        return self.engine.command(fn, self.now)

    def account(self, user: str) -> None:
        self.do(lambda g, t: g.ensure_account(user, t, RICH))

    def submit(self, name: str, mode: str, user: str = "bob", **kw) -> Job:
        spec = JobSpec(name=name, user=user, mode=Mode(mode), **kw)
        return self.do(lambda g, t: g.submit(spec, t))

    def reserve(self, name: str, gpus: int, start: float, hours: float, user: str = "alice"):
        spec = ReservationSpec(
            name=name, user=user, gpu_type="H100", gpus=gpus, start=start, hours=hours
        )
        return self.do(lambda g, t: g.reserve(spec, t))

    def step(self, seconds: float = 0.0) -> list[A.Action]:
        if seconds:
            self.clock.advance(seconds)
        self.sim.fire(self.now)
        acts = self.engine.step(self.now)
        self.actions += acts
        return acts


def busy_day(c: Console, check=None) -> None:
    """Flex fills the H100s, Priority preempts, a higher bid outbids, a Commit window
    reclaims GPUs, a job is cancelled, a bid changes and a node is lost. `check` runs
    after every change."""
    check = check or (lambda: None)
    for user in ("alice", "bob", "carol"):
        c.account(user)
    c.reserve("nightly", gpus=4, start=T0 + 1800, hours=1)
    check()
    for i, bid in enumerate((1.0, 1.2, 1.5, 2.0), 1):
        c.submit(
            f"f{i}", "flex", gpus=4, bid=bid, gpu_type="H100", runtime=7200, checkpoint_every=60
        )
    c.step()
    check()
    c.step(10)
    check()
    c.submit("p-a100", "priority", user="carol", gpus=2, gpu_type="A100", hourly=True, runtime=9000)
    c.step(600)
    check()
    c.submit("p1", "priority", user="carol", gpus=4, gpu_type="H100", hours=1, runtime=3000)
    c.step(1)  # preempts the lowest bid
    check()
    c.step(6)  # the victim has stopped; p1 starts
    check()
    c.submit("f5", "flex", gpus=4, bid=2.4, gpu_type="H100", runtime=600, checkpoint_every=60)
    c.do(lambda g, t: g.change_bid("f3", 1.7, t))
    c.step(1)  # f5 outbids
    check()
    c.step(6)
    check()
    c.clock.set(T0 + 1800)
    c.step()  # the window opens and reclaims GPUs from Flex
    check()
    c.submit("c1", "commit", user="alice", gpus=4, reservation="nightly", runtime=7200)
    c.step(6)
    check()
    c.do(lambda g, t: g.cancel("f4", t))
    check()
    c.engine.pending.append(NodeChanged("a100-1", NodeStatus.UNREACHABLE, "link lost"))
    c.step(6)
    check()
    for _ in range(3):
        c.step(70)  # billing intervals: settles, price points
        check()


# ------------------------------------------------------------------ comparisons
# SimExecutor writes a run's work accounting into the Job object when it carries a
# stop out, or finds at a restart that the run's node was lost: after the pass was
# persisted, and marks the job dirty: the next persist writes it. These fields may
# differ only for a job so marked (the store is the grid less what is marked dirty).
SIM_AGENT_FIELDS = ("work_done", "lost_work_s", "last_checkpoint_at")


def assert_same_jobs(a: Grid, b: Grid) -> None:
    assert a.jobs.keys() == b.jobs.keys()
    for jid, ja in a.jobs.items():
        jb = b.jobs[jid]
        if jid in a.dirty_jobs:
            for f in SIM_AGENT_FIELDS:
                setattr(jb, f, getattr(ja, f))
        assert ja == jb, f"job {ja.name} differs after the round trip"
    assert a.job_names == b.job_names


def nonempty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def assert_same_grid(a: Grid, b: Grid) -> None:
    assert_same_jobs(a, b)
    assert a.reservations == b.reservations
    assert a.nodes == b.nodes  # holders, reserved, free counts, status
    assert a.balances == b.balances
    assert a.markets == b.markets
    assert (a.next_job_id, a.next_res_id, a.next_seq) == (b.next_job_id, b.next_res_id, b.next_seq)
    assert a.holding == b.holding
    assert a.stopping == b.stopping
    assert a.priority_queue == b.priority_queue
    assert nonempty(a.commit_waiting) == nonempty(b.commit_waiting)
    assert nonempty(a.flex_book) == nonempty(b.flex_book)
    assert a.flex_running == b.flex_running
    assert a.priority_held == b.priority_held
    assert [n.name for n in a.by_type["H100"]] == [n.name for n in b.by_type["H100"]]


def canonical(actions: list[A.Action]) -> list[str]:
    # Sets (holding, flex_running) may iterate in another order in a rebuilt grid.
    return sorted(map(repr, actions))


# ------------------------------------------------------------------- the file
def test_opens_in_wal_mode_with_the_pragmas_several_consoles_need(tmp_path):
    path = tmp_path / "deep" / "er" / "skyops.db"
    with Store(path) as store:
        pragma = lambda p: store.conn.execute(f"PRAGMA {p}").fetchone()[0]  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 1  # NORMAL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 1000
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # stays with the file
    conn.close()


def test_a_new_file_another_process_is_still_creating_is_waited_for(tmp_path):
    """`skyops serve` and a `skyops status` started together on a new state file: while
    one creates it (rollback mode, write lock held), SQLite answers the other's switch
    to WAL with SQLITE_BUSY at once, not after the busy timeout. The store waits as the
    timeout promises; a lock held past it is refused after the time the error names."""
    import time

    path = tmp_path / "state.db"
    creator = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    creator.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, creator.execute, ("ROLLBACK",)).start()
    started = time.monotonic()
    with Store(path, busy_timeout_s=10) as store:
        waited = time.monotonic() - started
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert 0.25 < waited < 5, waited
    creator.close()

    path = tmp_path / "held.db"
    creator = sqlite3.connect(path, isolation_level=None)
    creator.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"locked by another process \(waited 0.4 s\)"):
        Store(path, busy_timeout_s=0.4)
    assert time.monotonic() - started >= 0.4
    creator.execute("ROLLBACK")
    creator.close()


def test_schema_version_is_recorded_and_reopening_migrates_nothing(tmp_path):
    path = tmp_path / "skyops.db"
    with Store(path) as store:
        assert store.found_version == 0
        assert store.schema_version == SCHEMA_VERSION
    before = dump(path)
    with Store(path) as store:
        assert store.found_version == SCHEMA_VERSION
    assert dump(path) == before
    conn = sqlite3.connect(path)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert int(row[0]) == SCHEMA_VERSION
    conn.close()


def test_a_database_from_a_newer_skyops_is_refused_untouched(tmp_path):
    path = tmp_path / "skyops.db"
    Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [SCHEMA_VERSION + 1])
    conn.commit()
    conn.close()
    before = dump(path)
    with pytest.raises(SchemaTooNew) as err:
        Store(path)
    msg = str(err.value)
    assert str(path) in msg
    assert f"schema version {SCHEMA_VERSION + 1} is newer" in msg
    assert f"up to {SCHEMA_VERSION}" in msg and "upgrade Skyops" in msg
    assert dump(path) == before


def test_a_file_that_is_not_a_skyops_store_is_refused(tmp_path):
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE songs (title TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="not a Skyops state database"):
        Store(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(StoreError, match="cannot open the state database"):
        Store(junk)


def test_migrations_run_forward_in_order_and_a_failing_one_changes_nothing(tmp_path, monkeypatch):
    path = tmp_path / "skyops.db"
    Store(path).close()
    v1 = dump(path)

    def v2_broken(db):
        db["jobs"].add_column("priority_class", str)
        raise RuntimeError("migration bug")

    monkeypatch.setattr(schema_mod, "MIGRATIONS", [*schema_mod.MIGRATIONS, v2_broken])
    monkeypatch.setattr(schema_mod, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    with pytest.raises(RuntimeError, match="migration bug"):
        Store(path)
    assert dump(path) == v1

    def v2(db):
        db["jobs"].add_column("priority_class", str)

    monkeypatch.setattr(schema_mod, "MIGRATIONS", [*schema_mod.MIGRATIONS[:-1], v2])
    with Store(path) as store:
        assert store.found_version == SCHEMA_VERSION
        assert store.schema_version == SCHEMA_VERSION + 1
        assert "priority_class" in store.db["jobs"].columns_dict


def test_every_job_and_reservation_field_has_a_column(tmp_path):
    with Store(tmp_path / "skyops.db") as store:
        assert tuple(store.db["jobs"].columns_dict) == JOB_COLUMNS
        assert tuple(store.db["reservations"].columns_dict) == RESERVATION_COLUMNS
        assert set(store.db.table_names()) >= {
            "meta", "nodes", "jobs", "reservations", "markets", "prices", "events",
            "ledger_tx", "ledger_entries", "accounts", "actions", "counters", "lease",
        }  # fmt: skip
        money = {"bid", "price_mark", "run_acc", "run_charged", "charged"}
        cols = store.db["jobs"].columns_dict
        assert all(cols[c] is int for c in money)


# --------------------------------------------------------------- round trip
def test_a_busy_day_round_trips_after_every_step(tmp_path):
    c = Console(tmp_path / "skyops.db")
    reader = Store(tmp_path / "skyops.db")
    checks = []

    def check():
        loaded = reader.load_grid(c.cfg, c.now)
        assert_same_grid(c.grid, loaded)
        assert canonical(plan(loaded, c.now + 61)) == canonical(plan(c.grid, c.now + 61))
        checks.append(c.now)

    busy_day(c, check)
    assert len(checks) > 10
    kinds = {r.kind for r in c.store.actions(limit=100_000)}
    assert {"Start", "Preempt", "Stop", "OpenWindow", "SetPrice"} <= kinds
    # Settles are recorded by the ledger (and the jobs' billing columns), not as actions.
    assert "Settle" not in kinds and any(a.__class__ is A.Settle for a in c.actions)
    assert any(t.reason.startswith("flex usage") for t in c.store.transactions(limit=1000))
    states = {j.state for j in c.grid.jobs.values()}
    assert {JobState.RUNNING, JobState.PAUSED, JobState.CANCELLED, JobState.FAILED} <= states
    assert c.grid.reservations["nightly"].active_window == 0


def test_a_restarted_console_continues_exactly(tmp_path):
    """Two consoles from the same moment, one uninterrupted and one restarted from the
    file, make the same decisions and end in the same state."""
    c = Console(tmp_path / "skyops.db")
    busy_day(c)
    restarted = Console.__new__(Console)
    restarted.cfg, restarted.clock = c.cfg, ManualClock(c.now)
    restarted.store = Store(tmp_path / "skyops.db")
    restarted.grid = restarted.store.load_grid(c.cfg, c.now)
    # The agents kept running: the same simulated agents carry on for the new console.
    restarted.sim, restarted.actions = c.sim, []
    assert_same_grid(c.grid, restarted.grid)
    a = plan(c.grid, c.now + 300)
    b = plan(restarted.grid, c.now + 300)
    assert canonical(a) == canonical(b)
    assert a, "the pass after the restart has something to do"


def test_ledger_transactions_balance_and_accounts_match_their_entries(tmp_path):
    c = Console(tmp_path / "skyops.db")
    busy_day(c)
    db = c.store.conn
    unbalanced = db.execute(
        "SELECT tx_id, SUM(amount) FROM ledger_entries GROUP BY tx_id HAVING SUM(amount) != 0"
    ).fetchall()
    assert unbalanced == []
    sums = dict(db.execute("SELECT account, SUM(amount) FROM ledger_entries GROUP BY account"))
    balances = c.store.balances()
    assert {a: b for a, b in balances.items() if b or a in sums} == sums
    assert balances == c.grid.balances
    assert sum(balances.values()) == 0
    assert db.execute("SELECT COUNT(*) FROM ledger_tx").fetchone()[0] > 10
    orphans = db.execute(
        "SELECT COUNT(*) FROM ledger_tx t WHERE NOT EXISTS "
        "(SELECT 1 FROM ledger_entries e WHERE e.tx_id = t.id)"
    ).fetchone()[0]
    assert orphans == 0


def test_an_unbalanced_transaction_is_refused(tmp_path):
    c = Console(tmp_path / "skyops.db")
    c.account("bob")
    before = dump(tmp_path / "skyops.db")
    from skyops_tui.domain.model import Transaction

    c.grid.transactions.append(Transaction(c.now, "forged", [("user:bob", 5), ("revenue", -4)]))
    with pytest.raises(StoreError, match="unbalanced"):
        c.store.persist(c.grid, [], c.now)
    assert dump(tmp_path / "skyops.db") == before


# ------------------------------------------------------------- atomicity
def _pending_changes(c: Console) -> None:
    """Changes in the grid not yet persisted: a job, its event, a price point, a
    ledger transaction and a node."""
    spec = JobSpec(name="late", user="bob", mode=Mode.FLEX, gpus=1, bid=1.0)
    c.grid.submit(spec, c.now)
    c.grid.apply(A.SetPrice("H100", c.grid.markets["H100"].price + 1), c.now)
    c.grid.deposit("bob", 7 * MICRO, c.now)
    c.grid.dirty_nodes.add("h100-1")


def _assert_outbox_kept(g: Grid) -> None:
    assert g.events and g.transactions and g.prices
    assert g.dirty_jobs and g.dirty_nodes


def test_an_action_that_cannot_be_serialised_writes_nothing(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    busy_day(c)
    _pending_changes(c)
    before = dump(path)
    bad = A.Stop(1, object(), "cannot be stored")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cannot store"):
        c.store.persist(c.grid, [A.Settle(1), bad], c.now)
    assert dump(path) == before
    _assert_outbox_kept(c.grid)
    c.store.persist(c.grid, [], c.now)  # the retry writes it all
    assert_same_grid(c.grid, Store(path).load_grid(c.cfg, c.now))
    assert c.store.job("late").state is JobState.QUEUED


def test_a_database_error_mid_transaction_rolls_everything_back(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    busy_day(c)
    _pending_changes(c)
    before = dump(path)
    # Prices are written after jobs, events and the ledger: fail there.
    c.store.conn.execute(
        "CREATE TEMP TRIGGER boom BEFORE INSERT ON main.prices "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(sqlite3.IntegrityError, match="disk on fire"):
        c.store.persist(c.grid, [A.Start(99, (Placement("h100-1", (0,)),), "H100", False)], c.now)
    assert dump(path) == before
    assert not c.store.conn.in_transaction
    _assert_outbox_kept(c.grid)
    c.store.conn.execute("DROP TRIGGER boom")
    c.store.persist(c.grid, [], c.now)
    assert_same_grid(c.grid, Store(path).load_grid(c.cfg, c.now))


def test_a_closed_connection_writes_nothing(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    busy_day(c)
    _pending_changes(c)
    before = dump(path)
    c.store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        c.store.persist(c.grid, [], c.now)
    assert dump(path) == before
    _assert_outbox_kept(c.grid)
    with Store(path) as again:
        again.persist(c.grid, [], c.now)
        assert_same_grid(c.grid, again.load_grid(c.cfg, c.now))


# -------------------------------------------------------------- events, actions
def test_events_are_append_only_and_in_order(tmp_path):
    c = Console(tmp_path / "skyops.db")
    busy_day(c)
    events = c.store.events(limit=100_000)
    assert len(events) > 30
    ids = [e.id for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    ats = [e.at for e in events]
    assert ats == sorted(ats)
    db = c.store.conn
    for sql in ("UPDATE events SET cause = 'rewritten'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    for table in ("prices", "ledger_tx", "ledger_entries"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(f"DELETE FROM {table}")
    assert c.store.events(limit=100_000) == events


def test_event_queries_page_and_filter(tmp_path):
    c = Console(tmp_path / "skyops.db")
    busy_day(c)
    everything = c.store.events(limit=100_000)
    latest = c.store.events(limit=5)
    assert latest == everything[-5:]
    page = c.store.events(limit=5, since_id=everything[9].id)
    assert page == everything[10:15]
    f1 = c.grid.job_by_ref("f1").id
    mine = c.store.events(job=f1, limit=1000)
    assert mine and all(e.job == f1 for e in mine)
    assert [e.new for e in mine if e.kind == "state"][:3] == ["starting", "running", "preempting"]
    window = c.store.events(reservation="nightly")
    assert {e.kind for e in window} >= {"reservation", "window"}
    node = [e for e in everything if e.node == "a100-1"]
    assert node and node[-1].new == "unreachable"


def test_intended_actions_are_pending_until_an_outcome_is_recorded(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    for user in ("bob",):
        c.account(user)
    c.submit("f1", "flex", gpus=2, bid=1.0, gpu_type="H100")
    starts = [a for a in c.step() if isinstance(a, A.Start)]
    c.step(10)
    bookkeeping = c.step(61)
    assert starts and bookkeeping
    assert all(not isinstance(a, A.EXECUTOR_ACTIONS) for a in bookkeeping)
    pending = c.store.pending_actions()
    assert [p.action for p in pending] == starts  # bookkeeping is done when written
    done = c.store.actions()[-len(bookkeeping) :]
    assert [d.action for d in done] == bookkeeping
    assert all(d.status == "done" and d.done_at == c.now for d in done)
    assert all(p.status == "intended" and p.outcome is None for p in pending)
    assert pending[0].job == c.grid.job_by_ref("f1").id
    c.store.record_outcome(pending[0].id, "done", "agent started pid 4242", c.now + 1)
    assert c.store.pending_actions() == []
    rec = c.store.actions(job=pending[0].job)[-1]
    assert (rec.status, rec.outcome, rec.done_at) == ("done", "agent started pid 4242", c.now + 1)
    with pytest.raises(StoreError, match="already has an outcome"):
        c.store.record_outcome(pending[0].id, "failed", "again", c.now)
    with pytest.raises(StoreError, match="no action 999999"):
        c.store.record_outcome(999_999, "done", "", c.now)
    with pytest.raises(ValueError, match="status must be"):
        c.store.record_outcome(pending[0].id, "maybe", "", c.now)


def test_persist_returns_action_ids_in_order_and_payloads_round_trip(tmp_path):
    with Store(tmp_path / "skyops.db") as store:
        grid = Grid(make_config(), T0)
        actions = [
            A.Start(1, (Placement("h100-1", (0, 1)), Placement("h100-2", (7,))), "H100", True),
            A.Preempt(2, "outbid by f9"),
            A.Stop(3, JobState.EXPIRED, "booking expired"),
            A.Renew(4, T0 + 7200.5, "auto-renewed"),
            A.Warn(4, 59.5, 3, "; renewal will be refused"),
            A.Fail(5, "no windows left"),
            A.OpenWindow("nightly", 0, (("h100-1", 2), ("h100-2", 3))),
            A.CloseWindow("nightly", 0),
            A.Settle(6),
            A.SetPrice("H100", 1_250_000),
        ]
        ids = store.persist(grid, actions, T0)
        recorded_actions = [a for a in actions if not isinstance(a, A.Settle)]
        assert ids == sorted(ids) and len(ids) == len(recorded_actions)
        recorded = store.actions()
        assert [r.id for r in recorded] == ids
        assert [r.action for r in recorded] == recorded_actions
        assert [r.id for r in store.pending_actions()] == ids[:3]


def test_where_a_job_last_ran_is_found_after_a_day_of_billing(tmp_path):
    """An ended job's output stays on the node it last ran on: `skyops logs` reads it
    there, found from the store's record of the job's latest start (`last_placed`).
    A day of billing (a settle a minute) must not hide that start: it did, when each
    settle was an action row and the lookup read the job's latest 1,000 rows."""
    from skyops_tui.api.views import last_placed

    c = Console(tmp_path / "skyops.db")
    c.account("bob")
    job = c.submit("long", "priority", gpus=2, gpu_type="A100", hours=30, runtime=25 * 3600)
    c.step()
    placed = list(c.grid.jobs[job.id].placement)
    assert placed
    for _ in range(25 * 60 + 2):
        c.step(60)
    ended = c.grid.jobs[job.id]
    assert ended.state is JobState.SUCCEEDED and not ended.placement
    assert sum(1 for t in c.store.transactions(limit=5000) if t.job == job.id) > 1000
    assert last_placed(c.store, ended).placement == placed


def test_the_persister_is_the_engines_hook(tmp_path):
    store = Store(tmp_path / "skyops.db")
    clock = ManualClock(T0 + 42)
    grid = Grid(make_config(), T0)
    engine = Engine(grid, SimExecutor(clock, 5, 20), store.persister(clock))
    engine.command(lambda g, t: g.ensure_account("bob", t, RICH), clock.now())
    spec = JobSpec(name="f1", user="bob", mode=Mode.FLEX, gpus=1, bid=1.0)
    engine.command(lambda g, t: g.submit(spec, t), clock.now())
    assert not grid.events and not grid.dirty_jobs
    job = store.job("f1")
    assert job is not None and job.submitted_at == T0 + 42
    assert store.events()[-1].kind == "submitted"


# ------------------------------------------------------------ two consoles
def test_two_stores_on_one_file_see_each_others_writes(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    other = Store(path)
    c.account("bob")
    c.submit("f1", "flex", gpus=1, bid=1.0)
    assert other.job("f1") is not None
    assert other.balances() == c.store.balances() == c.grid.balances
    c.step()
    pending = other.pending_actions()
    assert len(pending) == 1
    other.record_outcome(pending[0].id, "failed", "agent unreachable", c.now)
    assert c.store.pending_actions() == []
    assert [e.kind for e in other.events()] == [e.kind for e in c.store.events()]
    assert_same_grid(c.grid, other.load_grid(c.cfg, c.now))


def test_two_stores_writing_at_once_lose_nothing(tmp_path):
    path = tmp_path / "skyops.db"
    stores = [Store(path), Store(path)]
    grids = [Grid(make_config(), T0), Grid(make_config(), T0)]
    errors: list[BaseException] = []

    def writer(k: int) -> None:
        try:
            for i in range(200):
                g = grids[k]
                g.deposit(f"u{k}", 1, T0 + i)
                stores[k].persist(g, [A.SetPrice("H100", i)], T0 + i)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Store(path) as s:
        balances = s.balances()
        opening = 1000 * MICRO  # the config's default balance
        assert balances["user:u0"] == balances["user:u1"] == opening + 200
        assert balances["deposits"] == -2 * (opening + 200)
        assert len(s.actions(limit=10_000)) == 400


# ----------------------------------------------------------- config changes
def test_load_follows_the_config_for_nodes_and_rates(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    busy_day(c)
    held_h100_2 = {j for j in c.grid.nodes["h100-2"].holders if j is not None}
    assert held_h100_2, "the scenario leaves jobs on h100-2"
    cfg = make_config(
        node_types=[{"name": "H100", "rate": 3.0}, {"name": "A100", "rate": 1.6}],
        nodes=[
            {"name": "h100-1", "fake_gpus": "8xH100-80GB"},
            {"name": "h100-3", "fake_gpus": "8xH100-80GB"},
        ],
    )
    grid = Store(path).load_grid(cfg, c.now)
    # a new node is added; one still holding jobs is kept but drained; a100-1 held
    # nothing (lost with its job failed) and is gone
    assert set(grid.nodes) == {"h100-1", "h100-2", "h100-3"}
    assert grid.nodes["h100-2"].status is NodeStatus.DEGRADED
    assert {j for j in grid.nodes["h100-2"].holders if j is not None} == held_h100_2
    assert grid.events[-1].node == "h100-2" and "no longer in the config" in grid.events[-1].cause
    assert grid.markets["H100"].rate == 3 * MICRO
    assert grid.markets["H100"].price == c.grid.markets["H100"].price
    assert grid.dirty_nodes == {"h100-2", "h100-3"}
    acts = plan(grid, c.now + 1)
    assert not any(
        isinstance(a, A.Start) and any(p.node == "h100-2" for p in a.placement) for a in acts
    )
    Store(path).persist(grid, acts, c.now + 1)
    rows = {r["name"]: r for r in Store(path).db["nodes"].rows}
    assert rows["h100-2"]["status"] == "degraded" and "h100-3" in rows
    assert "a100-1" in rows  # history stays in the file


def test_a_node_whose_shape_changed_keeps_its_recorded_shape_while_held(tmp_path):
    path = tmp_path / "skyops.db"
    c = Console(path)
    c.account("bob")
    c.submit("f1", "flex", gpus=2, bid=1.0, gpu_type="H100")
    c.step()
    assert c.grid.job_by_ref("f1").placement[0].node == "h100-1"
    cfg = make_config(
        nodes=[
            {"name": "h100-1", "fake_gpus": "4xH100-80GB"},
            {"name": "h100-2", "fake_gpus": "4xH100-80GB"},
            {"name": "a100-1", "fake_gpus": "8xA100-80GB"},
        ]
    )
    grid = Store(path).load_grid(cfg, c.now)
    held, free = grid.nodes["h100-1"], grid.nodes["h100-2"]
    assert (held.gpu_count, held.status) == (8, NodeStatus.DEGRADED)
    assert held.holders[:2] == [1, 1]
    assert (free.gpu_count, free.status) == (4, NodeStatus.UP)
    assert grid.dirty_nodes == {"h100-1", "h100-2"}
    assert sorted(n.name for n in grid.by_type["H100"]) == ["h100-1", "h100-2"]


# -------------------------------------------------------------------- reads
def test_read_queries(tmp_path):
    c = Console(tmp_path / "skyops.db")
    busy_day(c)
    s = c.store
    assert [j.name for j in s.jobs(user="carol")] == ["p-a100", "p1"]
    running = s.jobs(states=[JobState.RUNNING, "starting"])
    assert running and all(j.state in (JobState.RUNNING, JobState.STARTING) for j in running)
    assert {j.id for j in s.jobs(states=HOLDING)} == c.grid.holding
    assert len(s.jobs()) == len(c.grid.jobs)
    f1 = c.grid.job_by_ref("f1")
    assert s.job("f1") == s.job(f1.id) == s.job(str(f1.id))
    assert s.job("nope") is None and s.job(999) is None

    txs = s.transactions(limit=100_000)
    assert all(sum(a for _, a in t.entries) == 0 for t in txs)
    carol = s.transactions(account="user:carol", limit=100_000)
    assert carol and all(any(a == "user:carol" for a, _ in t.entries) for t in carol)
    p1 = c.grid.job_by_ref("p1").id
    assert s.transactions(job=p1) and all(t.job == p1 for t in s.transactions(job=p1))
    assert s.transactions(limit=3) == txs[-3:]

    prices = s.prices("H100")
    assert prices and prices == sorted(prices)
    assert prices[-1][1] == c.grid.markets["H100"].price
    assert s.prices("H100", since=prices[-1][0]) == [p for p in prices if p[0] >= prices[-1][0]]
    assert s.markets() == sorted(
        c.grid.markets.values(), key=lambda m: list(c.grid.markets).index(m.gpu_type)
    )
    assert s.reservations() == list(c.grid.reservations.values())
    assert isinstance(s.reservations()[0], Reservation)


def test_persist_sustains_thousands_of_small_writes_a_second(tmp_path):
    """One job submission and its event per call, as a burst of submissions writes them.
    The floor is far under what an idle 2-core machine reaches (docs/store.md)."""
    import time

    with Store(tmp_path / "skyops.db") as store:
        grid = Grid(make_config(), T0)
        grid.ensure_account("bob", T0, RICH)
        store.persist(grid, [], T0)
        n = 2000
        specs = [JobSpec(name=f"j{i}", user="bob", mode=Mode.PRIORITY, hours=1) for i in range(n)]
        spent = 0.0
        for i, spec in enumerate(specs):
            grid.submit(spec, T0 + i)
            t = time.perf_counter()
            store.persist(grid, [], T0 + i)
            spent += time.perf_counter() - t
        assert len(store.jobs()) == n
    assert n / spent > 1000, f"{n / spent:.0f} persists a second"


def test_a_gang_job_losing_a_node_the_moment_it_was_billed_round_trips(tmp_path):
    c = Console(tmp_path / "skyops.db")
    c.account("carol")
    c.submit("gang", "priority", user="carol", nodes=2, gpu_type="H100", hours=2, runtime=9000)
    c.step()
    c.step(10)  # started, billed from now
    c.engine.pending.append(NodeChanged("h100-1", NodeStatus.UNREACHABLE, "link lost"))
    c.step()
    assert c.grid.job_by_ref("gang").stop_reason == "failed"
    assert_same_grid(c.grid, Store(tmp_path / "skyops.db").load_grid(c.cfg, c.now))


# ---------------------------------------------------------- the lease, fencing
def test_the_lease_epoch_moves_only_when_the_holder_changes(tmp_path):
    from skyops_tui.store.control import acquire_lease, lease_epoch, lease_holder, release_lease

    with Store(tmp_path / "skyops.db") as store:
        assert lease_epoch(store) == 0
        assert acquire_lease(store, "a", T0, 5) == 1
        assert acquire_lease(store, "a", T0 + 1, 5) == 1  # a renewal
        assert acquire_lease(store, "b", T0 + 5.9, 5) is None  # a's runs to T0 + 6
        assert acquire_lease(store, "b", T0 + 6, 5) == 2
        assert lease_holder(store, T0 + 6) == "b"
        release_lease(store, "b")
        assert lease_holder(store, T0 + 7) is None
        assert acquire_lease(store, "a", T0 + 7, 5) == 3  # released, still a new epoch
        assert lease_epoch(store) == 3


def test_a_lease_from_before_epochs_keeps_its_holder(tmp_path, monkeypatch):
    from skyops_tui.store.control import acquire_lease, lease_epoch, lease_holder

    path = tmp_path / "skyops.db"
    with monkeypatch.context() as m:
        m.setattr(schema_mod, "MIGRATIONS", schema_mod.MIGRATIONS[:2])
        m.setattr(schema_mod, "SCHEMA_VERSION", 2)
        Store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO lease (name, holder, expires_at) VALUES ('scheduler', 'old', ?)", [T0 + 5]
    )
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.found_version == 2 and store.schema_version == SCHEMA_VERSION
        assert lease_holder(store, T0) == "old" and lease_epoch(store) == 1
        assert acquire_lease(store, "new", T0, 5) is None
        assert acquire_lease(store, "new", T0 + 5, 5) == 2


def test_a_deposed_leaders_writes_are_refused_and_write_nothing(tmp_path):
    from skyops_tui.scheduler.engine import LeaseLost
    from skyops_tui.store.control import acquire_lease, enqueue, finish_command
    from skyops_tui.store.db import Fence

    path = tmp_path / "skyops.db"
    c = Console(path)
    busy_day(c)
    epoch = acquire_lease(c.store, "a", c.now, 5)
    c.store.fence = Fence("a", epoch, c.clock.now)
    cid = enqueue(c.store, "cancel", {"ref": "f1"}, "bob", c.now)
    _pending_changes(c)
    c.store.persist(c.grid, [], c.now)  # while the lease is a's: written
    assert c.store.job("late") is not None
    pending = c.store.pending_actions()
    assert pending

    # a's lease runs out by the clock: nothing more from a, though nobody took it yet.
    c.clock.advance(5)
    spec = JobSpec(name="later", user="bob", mode=Mode.FLEX, gpus=1, bid=1.0)
    c.grid.submit(spec, c.now)
    before = dump(path)
    with pytest.raises(LeaseLost, match="lease ended 0.0 s ago"):
        c.store.persist(c.grid, [], c.now)
    assert dump(path) == before and c.grid.dirty_jobs and c.grid.events

    # b takes it: a's persist, answers and outcomes are all refused, all rolled back.
    other = Store(path)
    assert acquire_lease(other, "b", c.now + 0.1, 5) == epoch + 1
    c.clock.advance(0.2)
    before = dump(path)
    with pytest.raises(LeaseLost, match=r"held by b \(epoch 2\), not by this console \(epoch 1\)"):
        c.store.persist(c.grid, [A.Settle(1)], c.now)
    with pytest.raises(LeaseLost):
        finish_command(c.store, cid, "done", {}, c.now)
    with pytest.raises(LeaseLost):
        c.store.record_outcome(pending[0].id, "done", "late", c.now)
    assert dump(path) == before
    assert not c.store.conn.in_transaction
    assert c.store.job("later") is None
    # b, which holds it, writes; so would a again only under a lease of its own.
    other.fence = Fence("b", epoch + 1, c.clock.now)
    finish_command(other, cid, "done", {}, c.now)
    other.close()


def test_a_pass_whose_write_fails_carries_its_decisions_out_with_the_next_write(tmp_path):
    """Found by the crash harness with a full disk: a pass that could not be written
    kept its decisions in the grid but dropped its actions, so jobs sat `starting`
    with no process for good. Its actions now wait for the next write that succeeds:
    never carried out unwritten, never dropped."""
    from tests.helpers import Recorder

    path = tmp_path / "skyops.db"
    cfg = make_config()
    clock = ManualClock(T0)
    store = Store(path, busy_timeout_s=0.05)
    grid = Grid(cfg, T0)
    agents = Recorder()
    engine = Engine(grid, agents, store.persister(clock))
    engine.command(lambda g, t: g.ensure_account("bob", t, RICH), T0)
    spec = JobSpec(name="j", user="bob", mode="priority", gpus=1, gpu_type="H100", hours=1)
    job = engine.command(lambda g, t: g.submit(spec, t), T0)
    other = sqlite3.connect(path)
    other.execute("BEGIN EXCLUSIVE")  # another process holds the file (a backup, a lock)
    try:
        with pytest.raises(sqlite3.OperationalError):
            engine.step(T0 + 1)
        assert job.state is JobState.STARTING  # decided, in memory
        assert agents.actions == []  # but nothing carried out that is not written
    finally:
        other.rollback()
        other.close()
    engine.step(T0 + 2)
    starts = [a for a in agents.actions if isinstance(a, A.Start)]
    assert [a.job for a in starts] == [job.id]
    assert store.job(job.id).state is JobState.STARTING
    engine.step(T0 + 3)
    assert [a for a in agents.actions if isinstance(a, A.Start)] == starts  # once
    store.close()


def test_arrays_written_in_one_transaction_keep_each_jobs_own_lists(tmp_path):
    """An array's jobs share their argv and env, which one write encodes once; jobs of
    other arrays (and one-off jobs) in the same write keep their own."""
    c = Console(tmp_path / "skyops.db")
    c.account("bob")

    def arrays(g: Grid, t: float) -> None:
        for k, argv in enumerate((("python", "a.py"), ("python", "b.py", "--x"), ("1",))):
            spec = JobSpec(name=f"arr{k}", user="bob", mode=Mode.PRIORITY, gpus=1, hours=1.0,
                           argv=argv, env={"K": str(k)} if k != 1 else {})  # fmt: skip
            g.submit_array(spec, [f"arr{k}-{i}" for i in range(20)], t)
        g.submit(JobSpec(name="solo", user="bob", mode=Mode.PRIORITY, gpus=1, hours=1.0,
                         argv=("python", "a.py"), env={"K": "9"}), t)  # fmt: skip

    c.do(arrays)
    loaded = Store(tmp_path / "skyops.db").load_grid(c.cfg, c.now)
    assert_same_grid(c.grid, loaded)
    got = {j.name: (j.argv, j.env) for j in loaded.jobs.values()}
    assert got["arr0-19"] == (["python", "a.py"], {"K": "0"})
    assert got["arr1-0"] == (["python", "b.py", "--x"], {})
    assert got["arr2-7"] == (["1"], {"K": "2"})
    assert got["solo"] == (["python", "a.py"], {"K": "9"})


def test_a_leaders_writes_reach_the_file_through_a_checkpoint_thread(tmp_path):
    """With `checkpoint_in_background` no commit checkpoints (a checkpoint's copy and
    fsync stalled the scheduling pass that made it): the thread does, so what is
    written reaches the database file itself while the leader runs, and the WAL does
    not grow without end."""
    c = Console(tmp_path / "skyops.db")
    c.store.checkpoint_in_background(every_s=0.02)
    assert c.store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    c.account("bob")
    for k in range(200):
        c.submit(f"j{k}", "flex", gpus=1, bid=1.0, argv=("train",))

    def jobs_in_the_file() -> int:
        # immutable=1: the database file alone, without the WAL's frames
        uri = f"file:{tmp_path / 'skyops.db'}?immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as conn:
            return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]

    wait_for(lambda: jobs_in_the_file() == 200, "the jobs checkpointed into the file")
    assert c.store.checkpoints >= 1
    c.store.close()  # stops the thread: nothing is left running
    assert c.store._checkpointer is None


def test_a_leader_writing_without_pause_keeps_its_wal_bounded(tmp_path):
    """A PASSIVE checkpoint never lets the WAL start over while the leader keeps
    writing (SQLite rewinds it only at a write that finds every frame copied), so a
    long burst grew the file without end: 244 MB after 5,000 submissions and cancels,
    with the leader's map of its index growing alongside. Past `wal_limit` the thread
    makes it start over and the file is cut back, the leader writing all along, and
    nothing written is lost."""
    limit = 1 << 20
    c = Console(tmp_path / "skyops.db")
    c.store.checkpoint_in_background(every_s=0.02, wal_limit=limit)
    c.account("bob")
    wal = tmp_path / "skyops.db-wal"
    cut, last, k = 0, 0, 0
    while cut < 2:
        c.submit(f"j{k}", "flex", gpus=1, bid=1.0, argv=("train",))
        k += 1
        size = wal.stat().st_size
        cut += size < last
        last = size
        assert size < 64 * limit, f"the WAL reached {size:,} bytes after {k} jobs, never cut"
    c.store.close()
    assert c.store.restarts >= 1
    with contextlib.closing(sqlite3.connect(tmp_path / "skyops.db")) as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == k
