"""The narrow interface between the scheduler and whatever runs jobs.

The scheduler hands an executor the actions that touch processes (start, preempt,
call off a preemption, stop). The executor carries them out on its own time and tells the scheduler what
happened through reports. The simulated executor, the SSH fleet and a Slurm backend
all fit behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..domain.model import Job, NodeStatus
from ..domain.telemetry import NodeSample
from ..policy.actions import CallOff, Preempt, Start, Stop


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


class Executor(Protocol):
    def bind(self, report: Callable[[Report], None]) -> None:
        """Where to send reports. Called once before any action."""
        ...

    def execute(self, action: ExecutorAction, job: Job) -> None:
        """Carry out an action; must not block. Outcomes come back as reports.

        `CallOff` asks to cancel the job's preemption: while its checkpoint grace runs
        (no SIGTERM sent) the executor stops the stop sequence and reports `CalledOff`;
        once SIGTERM is out it reports nothing, and the job exits as a preempted one."""
        ...


class FleetView(Protocol):
    """What an executor may also offer the screens (optional; checked with getattr)."""

    def telemetry(self, node: str) -> NodeSample | None: ...

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]: ...
