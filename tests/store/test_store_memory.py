"""What a store holds in memory of the jobs it has written (docs/store.md, *What the
store keeps of a written job*): a copy of the row of each job that holds GPUs, so that
a settle writes its billing columns alone; nothing of a waiting job, of which a leader
may have thousands. And what a write holds at its peak: a process keeps the heap it grew."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import tracemalloc

from skyops_tui.domain.model import JobState, Mode
from skyops_tui.domain.specs import JobSpec
from skyops_tui.store import Store
from tests.store.test_store import Console, assert_same_grid

WAITING = 2000


def store_bytes_alive(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes allocated in the store's own code that are still alive."""
    only_store = [tracemalloc.Filter(True, "*/skyops_tui/store/*")]
    return sum(s.size for s in snapshot.filter_traces(only_store).statistics("filename"))


def test_waiting_jobs_cost_the_store_no_memory_and_still_round_trip(tmp_path):
    c = Console(tmp_path / "skyops.db")
    c.account("bob")
    spec = JobSpec(name="w", user="bob", mode=Mode.FLEX, gpus=8, bid=1.0, gpu_type="H100",
                   argv=("python", "train.py"), env={"K": "1"})  # fmt: skip
    names = [f"w-{i}" for i in range(WAITING)]
    tracemalloc.start()
    try:
        c.do(lambda g, t: g.submit_array(spec, names, t))
        c.step()  # two take the two H100 nodes; the others wait
        gc.collect()  # what is held, not what awaits collection
        alive = store_bytes_alive(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()
    waiting = [j for j in c.grid.jobs.values() if j.state is JobState.QUEUED]
    assert len(waiting) == WAITING - 2
    assert alive / WAITING < 50, f"the store holds {alive / WAITING:.0f} bytes a waiting job"

    # A waiting job's change is written whole, and a running one's settles as before.
    c.do(lambda g, t: g.change_bid("w-7", 1.3, t))
    c.step(70)
    c.step(70)
    assert_same_grid(c.grid, Store(tmp_path / "skyops.db").load_grid(c.cfg, c.now))


def test_writing_an_array_takes_no_memory_in_proportion_to_it(tmp_path):
    """A process keeps the heap it grew: an array's rows built all at once before the
    write would raise the leader's memory for good. They are made one at a time."""
    c = Console(tmp_path / "skyops.db")
    c.account("bob")
    spec = JobSpec(name="a", user="bob", mode=Mode.FLEX, gpus=8, bid=1.0, gpu_type="H100",
                   argv=("python", "train.py"), env={"K": "1"})  # fmt: skip
    c.grid.submit_array(spec, [f"a-{i}" for i in range(5000)], c.now)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        c.store.persist(c.grid, [], c.now)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert peak / 5000 < 100, f"writing the array took {peak / 5000:.0f} bytes a job at its peak"
    loaded = Store(tmp_path / "skyops.db").load_grid(c.cfg, c.now)
    assert_same_grid(c.grid, loaded)
    assert [j.argv for j in loaded.jobs.values()] == [["python", "train.py"]] * 5000


def sqlite_bytes_in_use() -> int:
    """What the SQLite library this process runs holds now (its page caches among it)."""
    lib = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return lib.sqlite3_memory_used()


def test_a_stores_page_cache_stays_small_whatever_it_has_written(tmp_path):
    """SQLite's page cache is the leader's memory too: a store keeps at most 512 KiB of
    pages (docs/store.md), not the default 2 MB, whatever it has written and read."""
    c = Console(tmp_path / "skyops.db")
    c.account("bob")
    spec = JobSpec(name="a", user="bob", mode=Mode.FLEX, gpus=8, bid=1.0, gpu_type="H100",
                   argv=("python", "train.py"), env={"K": "1"})  # fmt: skip
    gc.collect()  # earlier tests' stores, closed now rather than while this one writes
    before = sqlite_bytes_in_use()
    assert before > 0, "not the SQLite library this process's sqlite3 module runs"
    for k in range(4):
        c.do(lambda g, t, k=k: g.submit_array(spec, [f"a{k}-{i}" for i in range(5000)], t))
    assert sum(1 for _ in c.store.archived_jobs()) == 20_000
    grown = sqlite_bytes_in_use() - before
    assert grown < 1_000_000, f"SQLite holds {grown / 1e6:.1f} MB more for this store"
