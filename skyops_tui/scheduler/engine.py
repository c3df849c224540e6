"""The engine: commands, reports and scheduling passes applied to one grid, in order.

Both the live scheduler (asyncio, SQLite, the fleet) and the simulator (simulated time,
simulated agents) drive this same object, so the simulator runs the real rules. Every
change is handed to `persist` (the store, in one transaction) before the executor
sees the actions it implies: a crash between the two loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..domain.errors import Refused
from ..policy import actions as A
from ..policy.grid import Grid
from ..policy.planner import Planner, plan
from .executor import CalledOff, Checkpointed, Executor, Exited, NodeChanged, Report, Started

Persist = Callable[[Grid, list[A.Action]], None]


class LeaseLost(Exception):
    """The persist hook refused a write: another console holds the scheduler lease now
    (or this one's lapsed). Whatever this engine decided since is void; it must stop
    acting and follow, not retry."""


class NotLeading(Refused):
    """A command arrived while this engine may not act (its lease is in doubt or lost);
    nothing was changed, and the caller may try again (another console may answer)."""


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
        # Why this engine must not act now (its lease is not known to be valid), or
        # None; asked before every pass and command.
        self.hold: Callable[[float], str | None] | None = None
        self.lost = False  # a write was fenced off: act no more until reset
        # Executor actions of passes whose write failed (a full disk, a lock that
        # outlasted the wait): the grid already holds their decisions and keeps its
        # dirty marks, so they are written and carried out with the next write that
        # succeeds — never carried out unwritten, never dropped.
        self.unsent: list[A.Action] = []
        self._unsent_grid: Grid | None = None  # the grid they were decided on
        self.lost_listeners: list[Callable[[], None]] = []
        # Jobs whose preemption was called off: when their checkpoint signal went out.
        # A job may already be leaving when the call-off reaches it (it saved and
        # went); an exit within its graces is that, and it pauses (docs/modes.md).
        self.signalled: dict[int, float] = {}
        # The last step's actions but its Settles (nearly all of a step's actions, which
        # neither the executor nor the simulator's checks read), in their order.
        self.others: list[A.Action] = []

    def held(self, now: float) -> str | None:
        if self.lost:
            return "this console no longer holds the scheduler lease"
        return self.hold(now) if self.hold is not None else None

    def command(self, fn: Callable[[Grid, float], Any], now: float) -> Any:
        """Run a command (submit, cancel, extend...). It raises `Refused` having changed
        nothing, or returns its result once its changes are recorded and dispatched."""
        why = self.held(now)
        if why is not None:
            raise NotLeading(f"not applied: {why}; try again in a moment")
        result = fn(self.grid, now)
        try:
            self._carry_out(executor_actions(result))
        except LeaseLost as e:
            raise NotLeading(f"not applied: {e}; try again in a moment") from e
        return result

    def absorb(self, now: float) -> int:
        """Apply the reports the executor has sent since the last call (kept for later
        while the engine is held)."""
        if self.held(now) is not None:
            return 0
        n = 0
        actions: list[A.Action] = []
        while self.pending:
            batch = list(self.pending)
            self.pending.clear()
            for r in batch:
                n += 1
                match r:
                    case Started(job=j):
                        self.signalled.pop(j, None)
                        self.grid.started(j, now)
                    case Exited(job=j, exit_code=code, completed=done, cause=cause, ended_at=t):
                        if self._left_at_signal(j, now if t is None else t):
                            done = False
                            cause = "left at its checkpoint signal before the call-off reached it"
                        self.grid.exited(j, code, now, cause, done, t)
                    case CalledOff(job=j, cause=cause):
                        signalled = self.grid.preempted_at.get(j)
                        self.grid.called_off(j, now, cause)
                        if signalled is not None and self.grid.jobs[j].stop_reason is None:
                            self.signalled[j] = signalled[0]
                    case Checkpointed(job=j, at=at, work_lost_s=lost):
                        job = self.grid.jobs[j]
                        if at is not None:
                            job.last_checkpoint_at = at
                        job.lost_work_s += lost
                        self.grid.dirty_jobs.add(j)
                    case NodeChanged(node=name, status=status, cause=cause, since=since):
                        actions += self.grid.node_status(name, status, now, cause, since)
        if n:
            self._carry_out(actions)
        return n

    def _left_at_signal(self, job_id: int, ended: float) -> bool:
        """Whether a job whose preemption was called off ended within the graces of its
        checkpoint signal: then it pauses as preempted (the preemption counts again),
        rather than 'succeeded' on a run it left to save, or 'failed'."""
        at = self.signalled.pop(job_id, None)
        job = self.grid.jobs.get(job_id)
        if at is None or job is None or job.stop_reason is not None:
            return False
        c = self.grid.cfg.cluster
        if ended > at + c.grace_s + c.stop_grace_s:
            return False
        job.stop_reason = "paused"
        job.preemptions += 1
        return True

    def step(self, now: float) -> list[A.Action]:
        """Absorb reports, run one scheduling pass, apply and dispatch what it decides.
        Nothing at all while held: no pass, no billing, no executor action."""
        self.others = []
        if self.held(now) is not None:
            return []
        self.absorb(now)
        grid = self.grid
        planner = Planner(grid, now)
        actions = planner.run()
        # Most actions are Settles (a few dozen a pass): each run of them is billed in
        # one `settle_all`, in their order among the rest. The run `timers` made (nearly
        # all of them) is taken whole, in place of its actions.
        apply, settle_cls, open_cls = grid.apply, A.Settle, A.OpenWindow
        ids: list[int] = []
        others: list[A.Action] = []
        opened = False
        # The actions walked one by one, each run followed by the jobs to bill after it.
        block = planner.settle_block
        runs: list[tuple[list[A.Action], list[int]]] = [(actions, [])]
        if block is not None:
            at, settled = block
            runs = [(actions[:at], settled), (actions[at + len(settled) :], [])]
        for run, then in runs:
            for a in run:
                if a.__class__ is settle_cls:
                    ids.append(a.job)
                    continue
                if ids:
                    grid.settle_all(ids, now)
                    ids = []
                if a.__class__ is open_cls:
                    opened = True
                apply(a, now)
                others.append(a)
            ids += then
        if ids:
            grid.settle_all(ids, now)
        if opened:
            # The owner's waiting jobs start the moment a window opens, not a pass later.
            more = plan(self.grid, now)
            for a in more:
                self.grid.apply(a, now)
            actions += more
            others += [a for a in more if a.__class__ is not settle_cls]
        self.others = others
        self._carry_out(actions, others)
        return actions

    def _carry_out(self, actions: list[A.Action], others: list[A.Action] | None = None) -> None:
        """Persist `actions`, then hand the executor its share. `others`: those of them
        that are not Settles, when the caller has them (the executor acts on none)."""
        if self.unsent and self._unsent_grid is self.grid and not self.lost:
            actions = self.unsent + actions
            others = None
        self.unsent = []  # a grid voided or reloaded since: its decisions went with it
        if self.persist is not None:
            try:
                self.persist(self.grid, actions)
            except LeaseLost:
                self.lost = True
                for fn in self.lost_listeners:
                    fn()
                raise
            except Exception:
                self.unsent, self._unsent_grid = list(actions), self.grid
                raise
        settle, kinds = A.Settle, A.EXECUTOR_ACTIONS
        for a in actions if others is None else others:
            if a.__class__ is not settle and isinstance(a, kinds):  # most are Settles
                self.executor.execute(a, self.grid.jobs[a.job])
