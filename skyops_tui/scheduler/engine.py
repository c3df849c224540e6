"""The engine: commands, reports and scheduling passes applied to one grid, in order.

Both the live scheduler (asyncio, SQLite, the fleet) and the simulator (simulated time,
simulated agents) drive this same object, so the simulator runs the real rules. Every
change is handed to `persist` (the store, in one transaction) before the executor
sees the actions it implies: a crash between the two loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..policy import actions as A
from ..policy.grid import Grid
from ..policy.planner import plan
from .executor import Checkpointed, Executor, Exited, NodeChanged, Report, Started

Persist = Callable[[Grid, list[A.Action]], None]


def executor_actions(result: Any) -> list[A.Action]:
    if isinstance(result, list) and all(isinstance(a, A.EXECUTOR_ACTIONS) for a in result):
        return result
    return []


class Engine:
    def __init__(self, grid: Grid, executor: Executor, persist: Persist | None = None) -> None:
        self.grid = grid
        self.executor = executor
        self.persist = persist
        self.pending: list[Report] = []
        executor.bind(self.pending.append)

    def command(self, fn: Callable[[Grid, float], Any], now: float) -> Any:
        """Run a command (submit, cancel, extend...). It raises `Refused` having changed
        nothing, or returns its result once its changes are recorded and dispatched."""
        result = fn(self.grid, now)
        self._carry_out(executor_actions(result))
        return result

    def absorb(self, now: float) -> int:
        """Apply the reports the executor has sent since the last call."""
        n = 0
        actions: list[A.Action] = []
        while self.pending:
            batch = list(self.pending)
            self.pending.clear()
            for r in batch:
                n += 1
                match r:
                    case Started(job=j):
                        self.grid.started(j, now)
                    case Exited(job=j, exit_code=code, completed=done, cause=cause, ended_at=t):
                        self.grid.exited(j, code, now, cause, done, t)
                    case Checkpointed(job=j, at=at):
                        self.grid.jobs[j].last_checkpoint_at = at
                        self.grid.dirty_jobs.add(j)
                    case NodeChanged(node=name, status=status, cause=cause, since=since):
                        actions += self.grid.node_status(name, status, now, cause, since)
        if n:
            self._carry_out(actions)
        return n

    def step(self, now: float) -> list[A.Action]:
        """Absorb reports, run one scheduling pass, apply and dispatch what it decides."""
        self.absorb(now)
        actions = plan(self.grid, now)
        for a in actions:
            self.grid.apply(a, now)
        if any(isinstance(a, A.OpenWindow) for a in actions):
            # The owner's waiting jobs start the moment a window opens, not a pass later.
            more = plan(self.grid, now)
            for a in more:
                self.grid.apply(a, now)
            actions += more
        self._carry_out(actions)
        return actions

    def _carry_out(self, actions: list[A.Action]) -> None:
        if self.persist is not None:
            self.persist(self.grid, actions)
        for a in actions:
            if isinstance(a, A.EXECUTOR_ACTIONS):
                self.executor.execute(a, self.grid.jobs[a.job])
