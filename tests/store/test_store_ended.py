"""Ended jobs leave a leader's memory once written, and read back from the store the
same as if they had stayed (docs/store.md "Ended jobs"): by id, by name, in listings,
in a reload; a name stays taken; a store that keeps them all changes nothing."""

from __future__ import annotations

import pytest

from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import TERMINAL, Mode
from skyops_tui.domain.specs import JobSpec
from skyops_tui.policy.resident import every_job
from skyops_tui.store import Store
from skyops_tui.store.codec import JOB_COLUMNS, job_row
from tests.store.test_store import (
    SIM_AGENT_FIELDS,
    T0,
    Console,
    assert_same_grid,
    busy_day,
    make_config,
)

# The simulated agents write a lost run's work into the Job object they hold, after the
# job has ended (SIM_AGENT_FIELDS): once the job has left memory, into a copy that is
# not written. Only they do (the fleet reports it through the engine, which reads the
# job back), and the simulator never lets jobs go; so these are left out here.
MASKED = [JOB_COLUMNS.index(f) for f in SIM_AGENT_FIELDS]


def row(job) -> list:
    r = job_row(job)
    for i in MASKED:
        r[i] = None
    return r


def in_memory(grid, job_id: int) -> bool:
    return dict.__contains__(grid.jobs, job_id)


def letting_go(path, keep: int) -> Console:
    c = Console(path)
    c.store.keep_ended = keep
    return c


def test_a_busy_day_reads_the_same_with_ended_jobs_out_of_memory(tmp_path):
    kept = Console(tmp_path / "kept.db")
    busy_day(kept)
    gone = letting_go(tmp_path / "gone.db", keep=0)
    busy_day(gone)

    ended = [j for j in kept.grid.jobs.values() if j.state in TERMINAL]
    assert ended, "the day ends some jobs"
    assert not any(in_memory(gone.grid, j.id) for j in ended)
    assert all(in_memory(gone.grid, j.id) for j in kept.grid.jobs.values() if not j.finished)
    every = sorted(kept.grid.jobs.values(), key=lambda j: j.id)
    assert [row(j) for j in every_job(gone.grid.jobs)] == [row(j) for j in every]
    for j in ended:
        assert row(gone.grid.jobs.get(j.id)) == row(j)
        assert row(gone.grid.job_by_ref(j.name)) == row(j)
        assert gone.grid.job_names[j.name] == j.id
    # Read back, they are in memory again, and leave with the next write.
    assert in_memory(gone.grid, ended[0].id)
    gone.step(1)
    assert not in_memory(gone.grid, ended[0].id)
    # The store holds the same rows either way, and the day goes on the same.
    assert [row(j) for j in gone.store.jobs()] == [row(j) for j in kept.store.jobs()]
    kept.step(70)
    gone.step(70)
    assert sorted(map(repr, kept.actions)) == sorted(map(repr, gone.actions))


def test_the_latest_ended_jobs_stay_and_the_older_ones_leave(tmp_path):
    c = letting_go(tmp_path / "s.db", keep=2)
    c.account("bob")
    ids = []
    for i in range(5):
        job = c.submit(f"q{i}", "priority", gpus=1, gpu_type="A100", hours=1)
        ids.append(job.id)
    for i in range(4):
        c.do(lambda g, t, i=i: g.cancel(f"q{i}", t))
        c.clock.advance(1)
    assert [in_memory(c.grid, i) for i in ids] == [False, False, True, True, True]
    # A restarted leader loads its live jobs and the same latest two ended ones.
    store = Store(tmp_path / "s.db")
    store.keep_ended = 2
    try:
        grid = store.load_grid(make_config(), c.now)
        assert sorted(grid.jobs) == ids[2:]
        assert grid.jobs[ids[0]].state == "cancelled"
    finally:
        store.close()
    # A store that keeps every job (the simulator's, a snapshot's) loads them all.
    store = Store(tmp_path / "s.db")
    try:
        assert sorted(store.load_grid(make_config(), c.now).jobs) == ids
    finally:
        store.close()


def test_a_name_stays_taken_after_its_job_left_memory(tmp_path):
    c = letting_go(tmp_path / "s.db", keep=0)
    c.account("bob")
    old = c.submit("old", "priority", gpus=1, gpu_type="A100", hours=1)
    c.do(lambda g, t: g.cancel("old", t))
    assert not in_memory(c.grid, old.id)
    with pytest.raises(Refused, match="exists already"):
        c.submit("old", "priority", gpus=1, gpu_type="A100", hours=1)
    spec = JobSpec(name="arr", user="bob", mode=Mode.PRIORITY, gpus=1, hours=1)
    with pytest.raises(Refused, match="job old exists already"):
        c.do(lambda g, t: g.submit_array(spec, ["new1", "old", "new2"], t))
    with pytest.raises(Refused, match="has already ended"):
        c.do(lambda g, t: g.cancel("old", t))
    assert c.grid.next_job_id == old.id + 1


def test_a_dry_run_copy_reads_ended_jobs_from_the_same_store(tmp_path):
    c = letting_go(tmp_path / "s.db", keep=0)
    c.account("bob")
    old = c.submit("old", "priority", gpus=1, gpu_type="A100", hours=1)
    c.do(lambda g, t: g.cancel("old", t))
    copy = c.grid.snapshot()
    assert copy.job_by_ref("old").id == old.id
    assert not in_memory(c.grid, old.id)


def test_without_a_limit_every_job_stays_in_memory(tmp_path):
    c = Console(tmp_path / "s.db")
    busy_day(c)
    assert all(in_memory(c.grid, j.id) for j in c.store.jobs())
    store = Store(tmp_path / "s.db")
    try:
        assert_same_grid(c.grid, store.load_grid(c.cfg, c.now))
    finally:
        store.close()
    assert T0 < c.now
