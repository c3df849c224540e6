"""The narrow interface between the scheduler and whatever runs jobs.

The scheduler hands an executor the actions that touch processes (start, preempt,
call off a preemption, stop). The executor carries them out on its own time and tells the scheduler what
happened through reports. The simulated executor, the SSH fleet, the Slurm backend and
a remote console's `NoExecutor` all fit behind it, and implement every member of
`Executor`: callers never probe for one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, TypedDict, runtime_checkable

from ..domain.model import Job, NodeStatus
from ..domain.telemetry import NodeSample
from ..policy.actions import CallOff, Preempt, Start, Stop

if TYPE_CHECKING:
    from ..policy.grid import Grid


@dataclass(frozen=True, slots=True)
class Started:
    job: int


@dataclass(frozen=True, slots=True)
class Exited:
    job: int
    exit_code: int | None
    completed: bool = False  # ended on its own, before any stop signal
    cause: str = ""
    ended_at: float | None = None  # when it ended, if it was not just now (found late)


@dataclass(frozen=True, slots=True)
class Checkpointed:
    job: int
    at: float | None  # the newest checkpoint; None: the run saved none
    work_lost_s: float = 0.0  # work since that checkpoint (or the run's start), lost


@dataclass(frozen=True, slots=True)
class CalledOff:
    """A preemption was cancelled in its checkpoint grace: the job runs on."""

    job: int
    cause: str = ""


@dataclass(frozen=True, slots=True)
class NodeChanged:
    node: str
    status: NodeStatus
    cause: str = ""
    since: float | None = None  # unreachable: when the node was last heard from


Report = Started | Exited | Checkpointed | CalledOff | NodeChanged
ExecutorAction = Start | Preempt | CallOff | Stop


class LogChunk(TypedDict):
    """A piece of a job's log, read to follow it (`Executor.read_log`)."""

    run: str  # which run's file: a new value means a new file, read from its start
    lines: list[str]
    partial: str  # an unfinished last line, held back
    size: int  # the file's size in bytes
    next_offset: int  # where the next read starts


@runtime_checkable
class Executor(Protocol):
    """What the scheduler, the runtime, the CLI session and the screens may ask of
    whatever runs jobs. Every executor implements every member; where one makes no sense
    for it, it gives the natural empty answer:

    - `attach`, `start`, `close`: nothing to do (the simulated agents, `NoExecutor`).
    - `fire`: 0 on an executor that runs on its own time (all but the simulated one).
    - `busy`: False with no work of its own in flight.
    - `status_line`: "" when there is nothing to say.
    - `nodes_settled`: True when it has no nodes to wait for.
    - `open_for_reads`: False when reads need nothing opened.
    - `telemetry`: None (no sample of the node).
    - `logs`: [] or a line saying why there are none; `read_log`: None.
    - `last_checkpoint`: None (it cannot tell; the stored time stands).
    """

    def bind(self, report: Callable[[Report], None]) -> None:
        """Where to send reports. Called once before any action."""
        ...

    def attach(self, grid: Grid) -> None:
        """The grid the scheduler acts on (again after a reload replaced it)."""
        ...

    async def start(self, grid_id: str = "") -> None:
        """Connect (links, pollers) when this process starts leading. `grid_id` is the
        state database's ("" without one): it keeps grids sharing a node apart."""
        ...

    async def close(self) -> None:
        """Let go of what `start` opened; the jobs run on, for the next leader."""
        ...

    def execute(self, action: ExecutorAction, job: Job) -> None:
        """Carry out an action; must not block. Outcomes come back as reports.

        `CallOff` asks to cancel the job's preemption: while its checkpoint grace runs
        (no SIGTERM sent) the executor stops the stop sequence and reports `CalledOff`;
        once SIGTERM is out it reports nothing, and the job exits as a preempted one."""
        ...

    def fire(self, now: float) -> int:
        """Send the reports due by `now` on a manual clock (the demo, tests); how many."""
        ...

    def busy(self) -> bool:
        """Whether work it started (an action in flight, a poller) is still under way:
        a script's session waits for this before it ends."""
        ...

    def status_line(self) -> str:
        """What it is busy with, for the status bar (e.g. 'reconnecting to h100-b')."""
        ...

    def nodes_settled(self) -> bool:
        """Every node it connects to has answered, or failed at least once."""
        ...

    async def open_for_reads(self, grid_id: str) -> bool:
        """On a console that follows: open what `logs` needs if it is not open yet.
        True when it opened something (then wait for `nodes_settled`)."""
        ...

    def telemetry(self, node: str) -> NodeSample | None:
        """The node's last sample: a cached read, never I/O."""
        ...

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        """The last `lines` lines of the job's latest run's `stream`."""
        ...

    async def read_log(
        self, job: Job, stream: str = "stdout", offset: int | None = None, lines: int = 100
    ) -> LogChunk | None:
        """To follow a log: from byte `offset` of the latest run's file (its last `lines`
        lines when None). None while there is no run, or nothing answers."""
        ...

    async def last_checkpoint(self, job: Job) -> float | None:
        """When the job's newest checkpoint was saved, as the node tells; None if unknown."""
        ...
