"""The jobs a grid keeps in memory, and the ended ones it can let go of.

A grid without an archive (the simulator, a dry run's copy of one, a test) keeps every
job it ever admitted, as a plain dict does. A grid with one (a store bound to it, in a
leader that lets ended jobs go: docs/store.md "Ended jobs") keeps its live jobs and the
most recently ended ones; an ended job that left is read back from the archive the
first time something asks for it, by id or by name, and stays until it leaves again.
So `grid.jobs[i]`, `grid.jobs.get(i)`, `i in grid.jobs` and `grid.job_names` answer for
every job ever admitted either way; only iterating them (and `len`) sees just the jobs
in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from ..domain.model import Job


class Archive(Protocol):
    """Where ended jobs that left memory are read back from (the store)."""

    def archived_job(self, job_id: int) -> Job | None: ...

    def archived_job_id(self, name: str) -> int | None: ...

    def archived_names(self, names: list[str]) -> set[str]:
        """Those of `names` the archive holds a job under."""
        ...

    def archived_jobs(self, after: int = 0) -> Iterator[Job]:
        """Every job the archive holds, by id."""
        ...


class JobTable(dict[int, Job]):
    """`grid.jobs`: a dict of the jobs in memory, reading an ended job that left back
    from `archive` on a miss (see the module docstring)."""

    def __init__(self, jobs: Iterable[tuple[int, Job]] = ()) -> None:
        super().__init__(jobs)
        self.archive: Archive | None = None
        self.names: NameTable | None = None  # the grid's job_names, kept in step
        # Ended jobs in memory, oldest ended (or read back) first: the order they leave.
        self.ended: dict[int, None] = {}

    def __missing__(self, job_id: int) -> Job:
        job = self._read_back(job_id)
        if job is None:
            raise KeyError(job_id)
        return job

    def get(self, job_id: int, default: Job | None = None) -> Job | None:  # type: ignore[override]
        job = dict.get(self, job_id)
        if job is None and self.archive is not None:
            job = self._read_back(job_id)
        return default if job is None else job

    def __contains__(self, job_id: object) -> bool:
        if dict.__contains__(self, job_id):
            return True
        return isinstance(job_id, int) and self.get(job_id) is not None

    def _read_back(self, job_id: int) -> Job | None:
        if self.archive is None or not isinstance(job_id, int):
            return None
        job = self.archive.archived_job(job_id)
        if job is None:
            return None
        self[job_id] = job
        if self.names is not None:
            dict.__setitem__(self.names, job.name, job_id)
        if job.ended_at is not None:
            self.ended[job_id] = None
        return job


class NameTable(dict[str, int]):
    """`grid.job_names`: name -> id for the jobs in memory, asking the archive about a
    name it does not hold (a name stays taken by a job that left memory)."""

    def __init__(self, names: Iterable[tuple[str, int]] = ()) -> None:
        super().__init__(names)
        self.archive: Archive | None = None

    def __missing__(self, name: str) -> int:
        job_id = self.get(name)
        if job_id is None:
            raise KeyError(name)
        return job_id

    def get(self, name: str, default: int | None = None) -> int | None:  # type: ignore[override]
        job_id = dict.get(self, name)
        if job_id is None and self.archive is not None and isinstance(name, str):
            job_id = self.archive.archived_job_id(name)
        return default if job_id is None else job_id

    def __contains__(self, name: object) -> bool:
        if dict.__contains__(self, name):
            return True
        return isinstance(name, str) and self.get(name) is not None

    def taken(self, names: list[str]) -> list[str]:
        """Those of `names` some job has, in their order: one archive query for all."""
        missing = [n for n in names if not dict.__contains__(self, n)]
        held = (
            self.archive.archived_names(missing) if self.archive is not None and missing else set()
        )
        return [n for n in names if dict.__contains__(self, n) or n in held]


def every_job(jobs: JobTable, after: int = 0) -> Iterator[Job]:
    """Every job ever admitted with an id above `after`, by id: the ones in memory, and
    with an archive bound the ended ones that left it, read a page at a time and not
    kept (a listing of a long history does not bring it back into memory). A job in
    memory is the one given, since its row may lag it by a pass."""
    resident = sorted((j for j in jobs.values() if j.id > after), key=lambda j: j.id)
    if jobs.archive is None:
        yield from resident
        return
    i, n = 0, len(resident)
    for job in jobs.archive.archived_jobs(after):
        while i < n and resident[i].id < job.id:
            yield resident[i]
            i += 1
        if i < n and resident[i].id == job.id:
            yield resident[i]
            i += 1
        else:
            yield job
    yield from resident[i:]
