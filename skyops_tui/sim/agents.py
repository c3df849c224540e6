"""Simulated agents: jobs that need `runtime` seconds of work and checkpoint every
`checkpoint_every` seconds, driven by simulated time.

As on a real node, a job saves a checkpoint every `checkpoint_every` seconds of its
run, whatever ends the run: a preemption, a stop, or the loss of its node. A resumed
run continues from the last checkpoint; the work since is lost."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..clock import ManualClock
from ..domain.model import HOLDING, Job, JobState, NodeStatus
from ..domain.telemetry import GpuSample, NodeSample
from ..policy import actions as A
from ..scheduler.executor import (
    CalledOff,
    Checkpointed,
    ExecutorAction,
    Exited,
    LogChunk,
    Report,
    Started,
)

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_PAUSED = JobState.PAUSED
_UNREACHABLE = NodeStatus.UNREACHABLE

if TYPE_CHECKING:
    from ..policy.grid import Grid

# What the heap holds: reports about one job's run, each keyed by its `job`.
JobReport = Started | Exited | Checkpointed | CalledOff


# Tests set this: whether a node is lost is counted every step and must agree.
CHECK_LOST = False


class SimExecutor:
    def __init__(
        self,
        clock: ManualClock,
        stop_delay_s: float,
        grace_s: float,
        stop_grace_s: float | None = None,
    ) -> None:
        self.clock = clock
        # A preempted job stops within its checkpoint grace; a stopped one within its
        # SIGTERM grace (the agent kills it then), as on a real node.
        self.stop_delay = min(stop_delay_s, grace_s)
        self.term_delay = (
            self.stop_delay if stop_grace_s is None else min(stop_delay_s, stop_grace_s)
        )
        self.heap: list[tuple[float, int, JobReport, int]] = []
        self.seq = itertools.count()
        self.token: dict[int, int] = {}  # job -> current run token
        self.run_start: dict[int, float] = {}
        self.run_gpus: dict[int, int] = {}
        self.report: Callable[[Report], None] = lambda r: None
        self.lost_work_gpu_s = 0.0
        self.grid = None
        self._samples: dict[str, tuple[tuple, NodeSample]] = {}
        self.used_gpu_s = 0.0
        self.jobs: dict[int, Job] = {}  # jobs with a run under way
        # Runs in a checkpoint grace: what their preemption saved and lost (work, work
        # lost, the checkpoint before), undone if it is called off.
        self.preempting: dict[int, tuple[float, float, float | None]] = {}
        self._lost_seen: tuple[object, int, bool] | None = None  # (grid, status_rev, lost)

    def bind(self, report: Callable[[Report], None]) -> None:
        self.report = report

    def _at(self, t: float, r: JobReport, token: int) -> None:
        heapq.heappush(self.heap, (t, next(self.seq), r, token))

    def execute(self, action: ExecutorAction, job: Job) -> None:
        now = self.clock.now()
        if isinstance(action, A.Start):
            if job.id in self.run_start:
                self._lost(job, now)  # its last run ended unreported (its node was lost)
            token = next(self.seq)
            self.token[job.id] = token
            self.run_start[job.id] = now
            self.run_gpus[job.id] = job.gpu_total
            self.jobs[job.id] = job
            self.report(Started(job.id))
            remaining = max((job.runtime or 0.0) - job.work_done, 0.0)
            self._at(now + remaining, Exited(job.id, 0, completed=True, cause="finished"), token)
            return
        if isinstance(action, A.CallOff):
            self._call_off(job, action.cause)
            return
        self.preempting.pop(job.id, None)
        start = self.run_start.get(job.id, now)
        stop_at = now + (self.stop_delay if isinstance(action, A.Preempt) else self.term_delay)
        done_at = start + max((job.runtime or 0.0) - job.work_done, 0.0)
        if done_at <= stop_at:
            return  # it finishes before the signal takes effect
        token = self.token[job.id] = next(self.seq)
        if isinstance(action, A.Preempt) or action.outcome is _PAUSED:
            before = (job.work_done, job.lost_work_s, job.last_checkpoint_at)
            self._save(job, start, stop_at)
            if isinstance(action, A.Preempt):
                self.preempting[job.id] = (
                    job.work_done - before[0],
                    job.lost_work_s - before[1],
                    before[2],
                )
        if isinstance(action, A.Preempt):
            cause = "stopped at the checkpoint signal"
        else:
            cause = f"stopped ({action.outcome})"
        self._at(stop_at, Exited(job.id, None, completed=False, cause=cause), token)

    def _call_off(self, job: Job, cause: str) -> None:
        """A run still in its checkpoint grace (it stops at the end of `stop_delay`)
        runs on; its checkpoint saved meanwhile does no harm. Later: nothing to do."""
        undo = self.preempting.pop(job.id, None)
        if undo is None or job.id not in self.token:
            return
        saved, lost, ckpt = undo
        job.work_done -= saved
        job.lost_work_s -= lost
        self.lost_work_gpu_s -= lost * job.gpu_total
        job.last_checkpoint_at = ckpt
        if self.grid is not None:
            self.grid.dirty_jobs.add(job.id)  # the undone accounting is written too
        token = self.token[job.id] = next(self.seq)
        start = self.run_start.get(job.id, self.clock.now())
        done = start + max((job.runtime or 0.0) - job.work_done, 0.0)
        self._at(done, Exited(job.id, 0, completed=True, cause="finished"), token)
        self.report(CalledOff(job.id, cause))

    def _save(self, job: Job, start: float, end: float) -> None:
        """Keep the checkpoints a run that ends at `end` saved on its way; the rest of
        its work is lost."""
        progress = max(end - start, 0.0)
        every = job.checkpoint_every
        saved = math.floor(progress / every) * every if every else 0.0
        job.work_done += saved
        job.lost_work_s += progress - saved
        self.lost_work_gpu_s += (progress - saved) * job.gpu_total
        if every and progress >= every:
            job.last_checkpoint_at = start + saved
        if self.grid is not None:
            self.grid.dirty_jobs.add(job.id)

    def _lost(self, job: Job, now: float) -> None:
        """A run that ended without a report (its node was lost): it did its work up to
        now and keeps its checkpoints."""
        start = self.run_start.pop(job.id, now)
        self.used_gpu_s += (now - start) * self.run_gpus.pop(job.id, 0)
        self.token.pop(job.id, None)
        self.jobs.pop(job.id, None)
        self.preempting.pop(job.id, None)
        self._save(job, start, now)

    def _reap_lost(self, now: float) -> None:
        grid = self.grid
        if grid is None or not self.jobs:
            return
        # Runs whose job left its GPUs unreported; they matter only while a node is
        # lost. Whichever list is shorter is read first (every step reads them).
        if len(self.jobs) > len(grid.nodes) and not self._any_lost(grid):
            return
        gone = [
            job
            for jid, job in self.jobs.items()
            if job.state not in HOLDING and jid in self.run_start
        ]
        if gone and self._any_lost(grid):
            for job in gone:
                self._lost(job, now)

    def _any_lost(self, grid: Grid) -> bool:
        """Whether a node is lost, counted again only when a status may have changed
        (`Grid.status_rev`): every step asks."""
        seen = self._lost_seen
        if seen is None or seen[0] is not grid or seen[1] != grid.status_rev:
            lost = any(n.status is _UNREACHABLE for n in grid.nodes.values())
            seen = self._lost_seen = (grid, grid.status_rev, lost)
        elif CHECK_LOST and seen[2] != any(n.status is _UNREACHABLE for n in grid.nodes.values()):
            raise AssertionError("a lost node kept as none lost, or the other way")
        return seen[2]

    def attach(self, grid) -> None:
        self.grid = grid

    async def start(self, grid_id: str = "") -> None:
        pass  # nothing to connect

    async def close(self) -> None:
        pass

    def busy(self) -> bool:
        return False  # its work is in `heap`, sent by `fire`

    def status_line(self) -> str:
        return ""

    def nodes_settled(self) -> bool:
        return True

    async def open_for_reads(self, grid_id: str) -> bool:
        return False

    def telemetry(self, node: str) -> NodeSample | None:
        """Simulated telemetry: busy GPUs run hot, idle ones cool. Deterministic."""
        grid = self.grid
        if grid is None or node not in grid.nodes:
            return None
        n = grid.nodes[node]
        key = (n.status, tuple(n.holders))
        hit = self._samples.get(node)
        if hit is not None and hit[0] == key:
            return NodeSample(node, self.clock.now(), hit[1].gpus, fake=True)
        gpus = []
        for i, h in enumerate(n.holders):
            busy = h is not None
            gpus.append(
                GpuSample(
                    i,
                    f"{n.gpu_type} (simulated)",
                    92 if busy else 0,
                    61_440 if busy else 512,
                    81_920,
                    71 if busy else 34,
                    610.0 if busy else 70.0,
                    f"SIM-{node}-{i}",
                    True,
                )
            )
        sample = NodeSample(node, self.clock.now(), tuple(gpus), fake=True)
        self._samples[node] = (key, sample)
        return sample

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        out = [f"[sim] {job.name}: run {job.runs}, {job.work_done:.0f} s of work saved"]
        if job.last_checkpoint_at is not None:
            out.append(
                f"[sim] last checkpoint at +{job.last_checkpoint_at - job.submitted_at:.0f} s"
            )
        return out[-lines:]

    async def read_log(
        self, job: Job, stream: str = "stdout", offset: int | None = None, lines: int = 100
    ) -> LogChunk | None:
        return None  # simulated runs write no files

    async def last_checkpoint(self, job: Job) -> float | None:
        return None  # `job.last_checkpoint_at` is already the simulated one

    def next_time(self) -> float | None:
        while self.heap and self.token.get(self.heap[0][2].job) != self.heap[0][3]:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap else None

    def fire(self, now: float) -> int:
        self._reap_lost(now)
        n = 0
        while self.heap and self.heap[0][0] <= now:
            t, _, r, token = heapq.heappop(self.heap)
            if self.token.get(r.job) != token:
                continue
            self.token.pop(r.job, None)
            self.jobs.pop(r.job, None)
            self.preempting.pop(r.job, None)
            start = self.run_start.pop(r.job, t)
            self.used_gpu_s += (t - start) * self.run_gpus.pop(r.job, 0)
            self.report(r)
            n += 1
        return n
