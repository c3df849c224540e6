"""The narrow interface between the scheduler and whatever runs jobs.

The scheduler hands an executor the actions that touch processes (start, preempt,
stop). The executor carries them out on its own time and tells the scheduler what
happened through reports. The simulated executor, the SSH fleet and a Slurm backend
all fit behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..domain.model import Job, NodeStatus
from ..domain.telemetry import NodeSample
from ..policy.actions import Preempt, Start, Stop


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
class NodeChanged:
    node: str
    status: NodeStatus
    cause: str = ""
    since: float | None = None  # unreachable: when the node was last heard from


Report = Started | Exited | Checkpointed | NodeChanged
ExecutorAction = Start | Preempt | Stop


class Executor(Protocol):
    def bind(self, report: Callable[[Report], None]) -> None:
        """Where to send reports. Called once before any action."""
        ...

    def execute(self, action: ExecutorAction, job: Job) -> None:
        """Carry out an action; must not block. Outcomes come back as reports."""
        ...


class FleetView(Protocol):
    """What an executor may also offer the screens (optional; checked with getattr)."""

    def telemetry(self, node: str) -> NodeSample | None: ...

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]: ...
