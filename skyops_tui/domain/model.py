"""Runtime state of the grid: plain data the policy reads and the transitions change.

Inputs from people (job specs, reservations, config) are validated by pydantic at the
edges (see `specs.py`, `config.py`); in here everything is already valid and kept as
slotted dataclasses so a scheduling pass over thousands of jobs stays cheap.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import StrEnum


class Mode(StrEnum):
    PRIORITY = "priority"
    COMMIT = "commit"
    FLEX = "flex"


class JobState(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    PREEMPTING = "preempting"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


HOLDING = frozenset({JobState.STARTING, JobState.RUNNING, JobState.PREEMPTING})
WAITING = frozenset({JobState.QUEUED, JobState.PAUSED})
TERMINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED})


class NodeStatus(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    UNREACHABLE = "unreachable"


@dataclass(slots=True)
class Node:
    name: str
    gpu_type: str
    gpu_count: int
    status: NodeStatus = NodeStatus.UP
    host: str = ""
    fake: bool = False
    last_heartbeat: float | None = None
    # An operator's drain: who and why (None: not drained). Unlike `status`, which the
    # node's own reports set, only Undrain clears it; nothing new is placed meanwhile.
    drained: str | None = None
    # Per GPU index: the job holding it (None = free), and the reservation whose
    # active window holds it (None = not reserved).
    holders: list[int | None] = field(default_factory=list)
    reserved: list[str | None] = field(default_factory=list)
    n_free: int = -1  # unreserved GPUs nobody holds
    n_idle_reserved: int = 0  # reserved GPUs nobody holds (lent to Flex)

    def __post_init__(self) -> None:
        if not self.holders:
            self.holders = [None] * self.gpu_count
        if not self.reserved:
            self.reserved = [None] * self.gpu_count
        self.recount()

    def recount(self) -> None:
        self.n_free = self.n_idle_reserved = 0
        for h, r in zip(self.holders, self.reserved, strict=True):
            if h is None:
                if r is None:
                    self.n_free += 1
                else:
                    self.n_idle_reserved += 1

    @property
    def schedulable(self) -> bool:
        return self.status is NodeStatus.UP and self.drained is None

    def free_indices(self, reservation: str | None = None) -> list[int]:
        """GPUs nobody holds, and (unless `reservation` is given) not reserved by a window."""
        return [
            i
            for i in range(self.gpu_count)
            if self.holders[i] is None and self.reserved[i] == reservation
        ]


@dataclass(slots=True)
class Placement:
    node: str
    gpus: tuple[int, ...]


@dataclass(slots=True)
class Job:
    id: int
    name: str
    user: str
    mode: Mode
    seq: int
    submitted_at: float
    argv: list[str] = field(default_factory=list)
    gpus: int = 1
    nodes: int = 0  # >0: whole nodes instead of `gpus`
    gpu_type: str | None = None
    state: JobState = JobState.QUEUED
    # Priority booking
    hours: float | None = None
    hourly: bool = False
    auto_renew: bool = False
    renew_hours: float = 1.0
    end_at: float | None = None
    warned: int = 0  # bit 1: T-10 min warning sent, bit 2: T-1 min
    # Commit
    reservation: str | None = None
    # Flex
    bid: int = 0
    max_retries: int = 0
    retries: int = 0
    retry_at: float = 0.0
    preemptions: int = 0
    lost_work_s: float = 0.0
    last_checkpoint_at: float | None = None
    # Lifetime and placement
    placement: list[Placement] = field(default_factory=list)
    market: str | None = None  # node type it runs in
    started_at: float | None = None  # current run
    first_started_at: float | None = None
    ended_at: float | None = None
    runs: int = 0
    stop_reason: str | None = None  # why a stop/preempt was asked
    exit_code: int | None = None
    # Billing: seconds held in the current run already charged, and total charged.
    billed_from: float | None = None
    price_mark: int = 0  # unused since schema v4
    # Per GPU, sum of min(price, bid) x microseconds from the run's start to billed_from
    # (price per GPU-hour): the run's exact running total. Charged: its floor.
    run_acc: int = 0
    run_charged: int = 0  # charged in the current run
    charged: int = 0
    env: dict[str, str] = field(default_factory=dict)
    workdir: str | None = None
    # Simulator only: work needed and done, checkpoint cadence.
    runtime: float | None = None
    work_done: float = 0.0
    checkpoint_every: float | None = None
    refunded: int = 0  # of `charged`, credited back (time found not to have been used)
    # Bid changes, (microseconds, bid per GPU-hour), oldest first: the bid in force at
    # each instant, so every second is billed at the bid of that second.
    bid_log: list[tuple[int, int]] = field(default_factory=list, repr=False)

    @property
    def gpu_total(self) -> int:
        if self.nodes:
            return sum(len(p.gpus) for p in self.placement) if self.placement else 0
        return self.gpus

    @property
    def holding(self) -> bool:
        return self.state in HOLDING

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


@dataclass(slots=True)
class Reservation:
    id: int
    name: str
    user: str
    gpu_type: str
    gpus: int
    windows: list[tuple[float, float]]
    rate: int  # standard rate per GPU-hour at creation
    discount_bp: int  # basis points, 3000 = 30 %
    prepaid: int
    created_at: float
    cancelled_at: float | None = None
    # Current window bookkeeping
    active_window: int | None = None
    held: list[tuple[str, int]] = field(default_factory=list)
    missing: int = 0  # reserved GPUs currently lost (node down, no spare)
    missing_since: float | None = None
    downtime_gpu_s: float = 0.0  # accrued in the current window, not yet credited
    settled_windows: int = 0  # windows whose value has been recognised
    refunded: int = 0
    credited: int = 0

    @property
    def gpu_seconds_total(self) -> float:
        return sum((e - s) * self.gpus for s, e in self.windows)

    @property
    def finished(self) -> bool:
        return self.cancelled_at is not None or self.settled_windows >= len(self.windows)


US = 1_000_000  # billing measures time in whole microseconds


def us(t: float) -> int:
    """A clock reading in whole microseconds: every charge is an integer sum over these."""
    return round(t * US)


@dataclass(slots=True)
class Market:
    """The Flex market of one node type, with its price timeline: the clearing price as
    piecewise-constant segments (`starts[i]` in microseconds, `levels[i]` per GPU-hour),
    each in force until the next one starts. Before the first segment: the floor."""

    gpu_type: str
    rate: int  # standard rate per GPU-hour
    floor: int
    price: int  # current clearing price per GPU-hour
    price_at: float = 0.0  # when the price was last set (changed or confirmed)
    integral: int = 0  # unused since schema v4; kept so old rows load
    starts: list[int] = field(default_factory=list, compare=False, repr=False)
    levels: list[int] = field(default_factory=list, compare=False, repr=False)

    def set_price(self, price: int, now: float) -> bool:
        """Set the price from `now` on; True when that opens a new segment."""
        self.price_at = now
        if price == self.price and self.starts:
            return False
        self.price = price
        t = us(now)
        starts, levels = self.starts, self.levels
        while starts and starts[-1] >= t:  # set again at the same instant: the last wins
            starts.pop()
            levels.pop()
        if levels and levels[-1] == price:
            return False
        starts.append(t)
        levels.append(price)
        return True

    def price_in(self, t_us: int) -> int:
        i = bisect.bisect_right(self.starts, t_us) - 1
        return self.levels[i] if i >= 0 else self.floor

    def prune(self, before_us: int) -> None:
        """Forget segments wholly before `before_us` (nothing can be billed there)."""
        i = bisect.bisect_right(self.starts, before_us) - 1
        if i > 0:
            del self.starts[:i]
            del self.levels[:i]


@dataclass(slots=True)
class Event:
    at: float
    kind: str
    cause: str
    job: int | None = None
    reservation: str | None = None
    node: str | None = None
    old: str | None = None
    new: str | None = None
    user: str | None = None


@dataclass(slots=True)
class Transaction:
    """A double-entry ledger transaction: its entries sum to zero."""

    at: float
    reason: str
    entries: list[tuple[str, int]]
    job: int | None = None
    reservation: str | None = None

    @property
    def balanced(self) -> bool:
        return sum(a for _, a in self.entries) == 0


def user_account(user: str) -> str:
    return f"user:{user}"


def held_account(reservation: str) -> str:
    return f"held:{reservation}"


REVENUE = "revenue"
DEPOSITS = "deposits"
