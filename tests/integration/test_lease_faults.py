"""The scheduler lease under store faults, with two real runtimes on one real SQLite
file: another process locking the file (`BEGIN EXCLUSIVE`, as a backup tool does) for
longer than the lease, and a leader deposed behind its back. The grid is never led by
two: a leader that cannot renew stops acting, and a deposed leader's writes are refused.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from benchmarks.crash_harness import LockHolder
from skyops_tui.api.client import ApiClient
from skyops_tui.control.commands import Submit
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.specs import JobSpec
from skyops_tui.runtime import Runtime
from skyops_tui.store.control import lease_epoch, lease_holder
from skyops_tui.store.db import Store
from tests.helpers import Recorder
from tests.waiting import until

TTL_S = 1.0
BUSY_S = 0.2  # each console's busy timeout: a locked write fails fast

CONFIG = {
    "cluster": {"name": "lease", "tick_s": 0.05},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "node-a", "fake_gpus": "8xH100-80GB", "local": True}],
    "accounts": {"operators": ["ops"], "default_balance": 10000},
}


def console(path: Path) -> tuple[Runtime, Recorder]:
    """A console on the file, with a short lease and a short busy timeout; its executor
    records every action it is handed (that is what 'acting' means for a box)."""
    ex = Recorder()
    rt = Runtime(
        parse_config(CONFIG, "test config"),
        ex,
        store=Store(path, busy_timeout_s=BUSY_S),
        user="ops",
        lease_ttl_s=TTL_S,
        follow_s=0.1,
        socket_path=path.with_suffix(".sock"),
    )
    return rt, ex


def spec(name: str) -> dict:
    return {"name": name, "user": "ops", "mode": "priority", "gpus": 1, "hours": 1,
            "gpu_type": "H100", "argv": ["true"]}  # fmt: skip


def acting(rt: Runtime) -> bool:
    """Would this console schedule right now: it leads and its engine is not held."""
    return rt.leader and rt.engine.held(rt.clock.now()) is None


class OneLeader:
    """Samples both consoles on every turn of the loop: at no moment may two act."""

    def __init__(self, *rts: Runtime) -> None:
        self.rts = rts
        self.violations: list[str] = []
        self.task = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            if sum(acting(rt) for rt in self.rts) > 1:
                self.violations.append(f"two consoles acting at {time.time():.3f}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


class Answer:
    def __init__(self, status: str, result: dict) -> None:
        self.status, self.result = status, result


async def answered(path: Path, kind: str, payload: dict, timeout: float = 20.0) -> Answer:
    """A command through the leader's socket, as another process sends it; asked again
    while no leader answers (one is taking over: a StoreError, to `until` a "not yet")."""

    async def ask() -> Answer:
        try:
            async with ApiClient.connected(path.with_suffix(".sock")) as client:
                return Answer("done", await client.command(kind, payload))
        except Refused as e:
            return Answer("refused", {"message": str(e)})

    return await until(ask, f"an answer to {kind}", timeout)


async def test_a_locked_store_pauses_the_leader_and_one_console_leads_after(tmp_path):
    path = tmp_path / "state.db"
    a, a_ex = console(path)
    b, _ = console(path)
    probe = Store(path)
    await a.start()
    await b.start()
    watch = OneLeader(a, b)
    try:
        assert a.leader and not b.leader
        assert (await answered(path, "submit", {"spec": spec("before")})).status == "done"
        steps: list[tuple[str | None, int]] = []
        a.local.listeners.append(lambda: steps.append((a.local.paused, a.local.passes)))

        with LockHolder(path):
            # Longer than the lease and than every busy timeout: A cannot renew.
            await until(
                lambda: len(steps) > 5 and all(p for p, _ in steps[-5:]),
                "the leader pausing its passes",
                timeout=10,
            )
            paused_at = len(steps) - 5
            handed = len(a_ex.actions)
            await until(lambda: len(steps) > paused_at + 15, "more paused ticks")
            assert all(p is not None for p, _ in steps[paused_at:]), steps[paused_at:]
            assert len({n for _, n in steps[paused_at:]}) == 1  # no pass ran
            assert len(a_ex.actions) == handed  # nothing handed to the boxes
            assert "locked" in (a.store_fault or "") and "paused" in a.store_fault
            # The follower's loop lives through the fault too, and says so.
            await until(lambda: b.store_fault is not None, "the follower seeing the fault")
            assert "locked" in b.store_fault
            assert not b._control.done() and not a._control.done()
            with pytest.raises(Refused, match="paused"):
                a.local.submit(JobSpec(**spec("during")))

        # Released: one console holds a live lease and acts, and answers commands.
        await until(
            lambda: sum(acting(rt) for rt in (a, b)) == 1 and a.store_fault is None,
            "one console leading again",
        )
        leader = a if acting(a) else b
        holder = lease_holder(probe, time.time())
        assert holder == leader.holder
        assert leader.epoch == lease_epoch(probe)
        row = await answered(path, "submit", {"spec": spec("after")})
        assert row.status == "done", row.result
        assert probe.job("after") is not None and probe.job("during") is None
        assert watch.violations == []
    finally:
        await watch.stop()
        for rt in (a, b):
            await rt.stop()
            rt.store.close()
        probe.close()


async def test_a_deposed_leaders_writes_are_refused_and_it_follows(tmp_path):
    path = tmp_path / "state.db"
    a, a_ex = console(path)
    b, _ = console(path)
    probe = Store(path)
    await a.start()
    await b.start()
    try:
        assert a.leader and not b.leader
        assert (await answered(path, "submit", {"spec": spec("first")})).status == "done"
        await until(lambda: a_ex.actions, "the first job handed to its box")
        # The lease goes to B behind A's back; A's own clock still says its lease runs,
        # only the store can tell. (No await until the checks: nothing else runs.)
        epoch = lease_epoch(probe)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute(
            "UPDATE lease SET holder = ?, epoch = epoch + 1, expires_at = ? WHERE name = ?",
            (b.holder, time.time() + 60, "scheduler"),
        )
        conn.close()
        marks = rowids(probe)
        handed = len(a_ex.actions)
        assert acting(a)

        with pytest.raises(Refused, match="lease is held by"):
            a.local.submit(JobSpec(**spec("late")))
        passes = a.local.passes
        a.local.step()  # no further pass: A does not retry, it demotes
        assert a.local.passes == passes and "no longer holds" in (a.local.paused or "")
        assert rowids(probe) == marks and probe.job("late") is None
        assert len(a_ex.actions) == handed and not acting(a)

        await until(lambda: not a.leader, "A demoting itself")
        await until(lambda: b.leader, "B leading under the lease it was given")
        assert b.epoch == epoch + 1 == lease_epoch(probe)
        assert not a.leader and not a._control.done()
        # A follows: its commands go to B's socket; nothing of A's reached a box.
        done = await a.call(Submit(spec=JobSpec(**spec("through-b"))))
        assert done["name"] == "through-b"
        assert probe.job("late") is None and len(a_ex.actions) == handed
        await until(lambda: "through-b" in {j.name for j in a.grid.jobs.values()},
                       "A's view showing B's decision")  # fmt: skip
        assert not acting(a) and acting(b)
    finally:
        for rt in (a, b):
            await rt.stop()
            rt.store.close()
        probe.close()


def rowids(store: Store) -> dict[str, int]:
    """The last row of every table a decision writes to."""
    tables = ("events", "actions", "ledger_tx", "jobs", "commands", "prices")
    return {t: store._rows(f"SELECT MAX(rowid) AS m FROM {t}")[0]["m"] or 0 for t in tables}


async def test_a_leader_writing_without_pause_keeps_its_lease(tmp_path):
    """A storm of commands, each committed (and fsync'd) the moment it arrives, leaves
    the leader's loop few turns and its store's lock rarely free: the lease loop's
    renewal, in a thread, came too late and the leader paused itself in the middle of
    the storm (refusing commands, "the scheduler lease is not renewed"). Its own
    writes renew the lease when due, so it leads throughout and the lease row says so."""
    rt, _ = console(tmp_path / "state.db")
    # Due for renewal 0.19 s after the last, surely ours until 0.6 s: a write every 0.4 s
    # keeps it (the loop alone, in a thread, did not).
    rt.lease_ttl_s = 0.75
    rt.store.conn.execute("PRAGMA synchronous = FULL")  # a slow disk: every commit waits
    await rt.start()
    refused: list[str] = []
    submitted = 0
    end = time.monotonic() + 4 * rt.lease_ttl_s

    async def client(c: int) -> None:
        nonlocal submitted
        k = 0
        while time.monotonic() < end and not refused:
            try:
                rt.local.submit(JobSpec(**spec(f"storm-{c}-{k}")))
            except Exception as e:  # noqa: BLE001 - the refusal is what is asserted
                refused.append(f"{type(e).__name__}: {e}")
            k += 1
            submitted += 1
            await asyncio.sleep(0)  # the others' turns: the loop is never idle

    try:
        assert rt.leader
        await asyncio.gather(*(client(c) for c in range(256)))
        assert refused == [], f"after {submitted} submissions: {refused[0]}"
        assert acting(rt)
        assert lease_holder(rt.store, rt.clock.now()) == rt.holder
        assert rt.store._rows("SELECT count(*) AS n FROM jobs")[0]["n"] == submitted
    finally:
        await rt.stop()
        rt.store.close()
