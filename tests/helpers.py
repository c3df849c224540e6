"""A small grid in simulated time for the policy tests: the real Grid, planner and
Engine, driven either by simulated agents (`World`) or by hand (`HandWorld`, where the
test reports each start and exit itself). No mocks: every rule runs as in production.

After every scheduling pass the world checks the invariants (policy/invariants.py) and keeps
what it saw (actions, events, transactions) so a test can ask what happened and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from skyops_tui.api.remote import NoExecutor
from skyops_tui.clock import ManualClock
from skyops_tui.domain.config import Config, parse_config
from skyops_tui.domain.model import Event, Job, JobState, Mode, NodeStatus, Transaction
from skyops_tui.domain.money import MICRO
from skyops_tui.domain.specs import JobSpec, ReservationSpec
from skyops_tui.policy import actions as A
from skyops_tui.policy.grid import Grid
from skyops_tui.policy.invariants import (
    check_actions,
    check_placements,
    check_transactions,
    ledger_sum,
)
from skyops_tui.scheduler.engine import Engine
from skyops_tui.scheduler.executor import Checkpointed, Exited, NodeChanged, Report, Started
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.sim.simulator import next_wakeup

T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC, a Thursday
HOUR = 3600.0
RICH = 1_000_000 * MICRO  # an account that never runs short


def config(
    nodes: str | list[tuple[str, str]] = "8xH100",
    types: dict[str, float] | None = None,
    **sections: dict,
) -> Config:
    """A config from a compact description.

    `nodes`: '2x8xH100' (two 8-GPU H100 nodes named h100-1, h100-2) or a list of
    (name, fake_gpus). `types`: rate per GPU-hour by type (defaults: H100 2.50, A100
    1.60, L40S 0.90). Extra keyword arguments are config sections (pricing=..., ...).
    """
    rates = {"H100": 2.5, "A100": 1.6, "L40S": 0.9}
    if types:
        rates.update(types)
    if isinstance(nodes, str):
        out = []
        for part in nodes.split(","):
            bits = part.strip().split("x")
            count = int(bits[0]) if len(bits) == 3 else 1
            size, gtype = bits[-2], bits[-1]
            out += [(f"{gtype.lower()}-{i}", f"{size}x{gtype}") for i in range(1, count + 1)]
        nodes = out
    used = {spec.split("x")[1].split("-")[0] for _, spec in nodes}
    data: dict[str, Any] = {
        "node_types": [{"name": t, "rate": r} for t, r in rates.items() if t in used],
        "nodes": [{"name": n, "fake_gpus": spec} for n, spec in nodes],
    }
    data.update(sections)
    return parse_config(data, "test config")


class Recorder(NoExecutor):
    """An executor that carries nothing out: the test reports starts and exits. The
    rest of the protocol gives a remote console's empty answers."""

    def __init__(self) -> None:
        self.actions: list[A.Action] = []
        self.report: Callable[[Report], None] = lambda r: None

    def bind(self, report: Callable[[Report], None]) -> None:
        self.report = report

    def execute(self, action: A.Action, job: Job) -> None:
        self.actions.append(action)


class _World:
    def __init__(self, cfg: Config, executor: Any, clock: ManualClock, balance: int) -> None:
        self.cfg = cfg
        self.clock = clock
        self.grid = Grid(cfg, clock.now())
        self.balance = balance
        self.executor = executor
        self.engine = Engine(self.grid, executor)
        self.actions: list[tuple[float, A.Action]] = []
        self.events: list[Event] = []
        self.transactions: list[Transaction] = []
        self.prices: list[tuple[float, str, int]] = []
        self.violations: list[str] = []
        # What each Flex job may have paid at most: GPUs x its bid x seconds billed.
        self._flex_billed: dict[int, tuple[float, int, int]] = {}
        self.flex_allowance: dict[int, int] = {}
        self._drain()

    # ----------------------------------------------------------------- access
    @property
    def now(self) -> float:
        return self.clock.now()

    def job(self, name: str) -> Job:
        return self.grid.job_by_ref(name)

    def state(self, name: str) -> JobState:
        return self.job(name).state

    def account(self, user: str, balance: int | None = None) -> None:
        self.grid.ensure_account(user, self.now, self.balance if balance is None else balance)
        self._drain()

    def gpus_of(self, name: str) -> set[tuple[str, int]]:
        return {(p.node, i) for p in self.job(name).placement for i in p.gpus}

    def acted(self, kind: type, name: str | None = None) -> list[A.Action]:
        jid = self.job(name).id if name is not None else None
        return [
            a
            for _, a in self.actions
            if isinstance(a, kind) and (jid is None or getattr(a, "job", None) == jid)
        ]

    def events_of(self, name: str, kind: str | None = None) -> list[Event]:
        jid = self.job(name).id
        return [e for e in self.events if e.job == jid and (kind is None or e.kind == kind)]

    def causes(self, name: str) -> list[str]:
        return [e.cause for e in self.events_of(name)]

    def states(self, name: str) -> list[str]:
        """Every state the job went through, in order, from its event rows."""
        evs = self.events_of(name)
        out = [str(JobState.QUEUED)] if evs else []
        out += [e.new for e in evs if e.kind == "state" and e.new]
        return out

    # ---------------------------------------------------------------- commands
    def submit(self, name: str, mode: str, user: str = "alice", actor: str | None = None, **kw):
        if user not in {u[5:] for u in self.grid.balances}:
            self.account(user)
        spec = JobSpec(name=name, user=user, mode=Mode(mode), **kw)
        job = self.engine.command(lambda g, t: g.submit(spec, t, actor), self.now)
        self._drain()
        return job

    def priority(self, name: str, gpus: int = 1, hours: float | None = 1, **kw) -> Job:
        if kw.get("hourly"):
            hours = None
        return self.submit(name, "priority", gpus=gpus, hours=hours, **kw)

    def flex(self, name: str, gpus: int | None = 1, bid: float = 1.0, **kw) -> Job:
        if kw.get("nodes"):
            gpus = None
        return self.submit(name, "flex", gpus=gpus, bid=bid, **kw)

    def commit(self, name: str, reservation: str, gpus: int = 1, user: str = "team", **kw):
        return self.submit(name, "commit", gpus=gpus, reservation=reservation, user=user, **kw)

    def reserve(self, name: str, gpus: int, start: float, hours: float, user: str = "team", **kw):
        if user not in {u[5:] for u in self.grid.balances}:
            self.account(user)
        spec = ReservationSpec(
            name=name, user=user, gpu_type=kw.pop("gpu_type", "H100"), gpus=gpus,
            start=start, hours=hours, **kw,
        )  # fmt: skip
        res = self.engine.command(lambda g, t: g.reserve(spec, t), self.now)
        self._drain()
        return res

    def do(self, fn: Callable[[Grid, float], Any]) -> Any:
        """Run a command (cancel, extend, change_bid...) as the console would."""
        out = self.engine.command(fn, self.now)
        self._drain()
        return out

    def node(self, name: str, status: NodeStatus, cause: str = "") -> None:
        self.engine.pending.append(NodeChanged(name, status, cause))
        self.engine.absorb(self.now)
        self._drain()

    # -------------------------------------------------------------- scheduling
    def step(self) -> list[A.Action]:
        acts = self.engine.step(self.now)
        self.actions += [(self.now, a) for a in acts]
        self.violations += check_actions(self.grid, acts, self.now)
        self._drain()
        return acts

    def _drain(self) -> None:
        events, txs, prices = self.grid.drain()
        self.events += events
        self.transactions += txs
        self.prices += prices
        self.violations += check_transactions(self.grid, txs)
        self.violations += check_placements(self.grid)
        if ledger_sum(self.grid) != 0:
            self.violations.append(f"ledger sums to {ledger_sum(self.grid)}")
        self._watch_flex()

    def _watch_flex(self) -> None:
        now, jobs = self.now, self.grid.jobs
        for jid, (since, gpus, bid) in self._flex_billed.items():
            more = gpus * min(bid, jobs[jid].bid) * (now - since)
            self.flex_allowance[jid] = self.flex_allowance.get(jid, 0) + int(more)
        self._flex_billed = {
            j.id: (now, j.gpu_total, j.bid)
            for j in (jobs[jid] for jid in self.grid.holding)
            if j.mode is Mode.FLEX and j.billed_from is not None
        }
        for jid, allowed in self.flex_allowance.items():
            job = jobs[jid]
            if job.charged * 3600 > allowed:
                self.violations.append(
                    f"flex job {job.name} paid {job.charged}, above its bid ({allowed / 3600:.0f})"
                )

    def price(self, gpu_type: str = "H100") -> int:
        return self.grid.markets[gpu_type].price

    def charged(self, name: str) -> int:
        """Settle the job up to now, then what it paid in all."""
        self.grid.settle(self.job(name), self.now)
        self._drain()
        return self.job(name).charged


# Passes at one instant before run_until calls it a livelock: a pass that keeps deciding
# at the same time (preempt, call off, preempt...) would otherwise hang the suite.
MAX_PASSES_AT_ONE_INSTANT = 1000


class World(_World):
    """Simulated agents: a job runs `runtime` seconds, stops `stop_delay` s after a signal."""

    def __init__(
        self, cfg: Config | None = None, stop_delay: float = 5.0, balance: int = RICH
    ) -> None:
        cfg = cfg or config()
        clock = ManualClock(T0)
        ex = SimExecutor(clock, stop_delay, cfg.cluster.grace_s, cfg.cluster.stop_grace_s)
        super().__init__(cfg, ex, clock, balance)
        self.sim = ex

    def step(self) -> list[A.Action]:
        self.sim.fire(self.now)
        return super().step()

    def run_until(self, t: float) -> None:
        """Advance to `t`, running a pass at every report, timer and window edge, and
        one right after a pass that closed a window (its GPUs are free only once the
        close is applied), as production and the simulator do."""
        acts = self.step()
        same = 0
        while True:
            due = [x for x in (self.sim.next_time(), next_wakeup(self.grid, self.now)) if x]
            if self.engine.pending or any(isinstance(a, A.CloseWindow) for a in acts):
                due.append(self.now)
            if not due or min(due) > t:
                break
            nxt = min(due)
            same = same + 1 if nxt <= self.now else 0
            assert same < MAX_PASSES_AT_ONE_INSTANT, (
                f"livelock at {self.now - T0:.0f} s: {same} passes without time moving; "
                f"the last decided {acts[:6]}"
            )
            self.clock.set(max(nxt, self.now))
            acts = self.step()
        self.clock.set(t)
        self.step()

    def advance(self, seconds: float) -> None:
        self.run_until(self.now + seconds)


class HandWorld(_World):
    """Nothing happens unless the test says so: it reports starts and exits itself."""

    def __init__(self, cfg: Config | None = None, balance: int = RICH) -> None:
        cfg = cfg or config()
        super().__init__(cfg, Recorder(), ManualClock(T0), balance)

    def at(self, t: float) -> list[A.Action]:
        """Move the clock to T0 + t and run a pass."""
        self.clock.set(T0 + t)
        return self.step()

    def started(self, *names: str) -> None:
        for n in names:
            self.engine.pending.append(Started(self.job(n).id))
        self.engine.absorb(self.now)
        self._drain()

    def exited(self, name: str, code: int | None = 0, completed: bool = True) -> None:
        self.engine.pending.append(Exited(self.job(name).id, code, completed))
        self.engine.absorb(self.now)
        self._drain()

    def checkpointed(self, name: str, t: float) -> None:
        """The job reports a checkpoint written at T0 + t."""
        self.engine.pending.append(Checkpointed(self.job(name).id, T0 + t))
        self.engine.absorb(self.now)
        self._drain()

    def stopped(self, name: str) -> None:
        """The process went away after the stop or checkpoint signal it was sent."""
        self.exited(name, None, completed=False)

    def run(self, *names: str) -> None:
        """Report that every job the last passes placed has started (or only `names`)."""
        starting = [j.name for j in self.grid.jobs.values() if j.state is JobState.STARTING]
        self.started(*(names or starting))


def micro(amount: float | str) -> int:
    from skyops_tui.domain.money import to_micro

    return to_micro(amount)


def one_local_node_config(cluster: str, accounts: str = "") -> str:
    """Config text for a grid of one local node with 4 fake H100s, a fast tick and `ops`
    as operator: what the tests of consoles, the API and its faults run on."""
    return (
        f'[cluster]\nname = "{cluster}"\ntick_s = 0.2\n'
        '[[node_types]]\nname = "H100"\nrate = 2.5\n'
        '[[nodes]]\nname = "node-a"\nfake_gpus = "4xH100-80GB"\nlocal = true\n'
        f'[accounts]\noperators = ["ops"]\n{accounts}'
    )
