"""What a scheduling pass decides. The executor carries out Start, Preempt, CallOff and
Stop; the rest is bookkeeping the grid applies to itself."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.model import JobState, Placement


@dataclass(frozen=True, slots=True)
class Start:
    job: int
    placement: tuple[Placement, ...]
    market: str
    resume: bool


@dataclass(frozen=True, slots=True)
class Preempt:
    """Flex: checkpoint signal, grace, SIGTERM, SIGKILL; the job then pauses.
    `for_job`: the job it makes room for (None: not for room, e.g. unpaid); only such a
    preemption is called off when that room is no longer needed (an outbid only once
    its bidder no longer outbids the victim: planner/victims.py, `call_offs`)."""

    job: int
    cause: str
    for_job: int | None = None


@dataclass(frozen=True, slots=True)
class CallOff:
    """Cancel a preemption nobody needs any more, if its victim is still in its
    checkpoint grace (no SIGTERM yet): it then runs on, and the executor reports
    `CalledOff`. Too late, it pauses as preempted jobs do (docs/modes.md)."""

    job: int
    cause: str


@dataclass(frozen=True, slots=True)
class Stop:
    """SIGTERM, grace, SIGKILL; the job then ends as `outcome`."""

    job: int
    outcome: JobState
    cause: str


@dataclass(frozen=True, slots=True)
class Renew:
    job: int
    end_at: float
    cause: str


@dataclass(frozen=True, slots=True)
class Warn:
    job: int
    seconds_left: float
    bit: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class Fail:
    """End a waiting job without running it (e.g. its reservation has no windows left)."""

    job: int
    cause: str


@dataclass(frozen=True, slots=True)
class OpenWindow:
    reservation: str
    index: int
    held: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class CloseWindow:
    reservation: str
    index: int


@dataclass(frozen=True, slots=True)
class Settle:
    job: int


_new = object.__new__
_set_job = vars(Settle)["job"].__set__  # the slot's descriptor


def settle(job: int) -> Settle:
    """`Settle(job)` without the frozen dataclass's `__init__` (a pass makes a dozen,
    a long simulation millions): the same object, its one slot set directly."""
    action = _new(Settle)
    _set_job(action, job)
    return action


class _Settles(dict[int, Settle]):
    """The Settle action of each job, made once: a running job is settled every
    billing interval, and a frozen action of one field is the same value whoever
    holds it, so one object serves every pass (made afresh after a long run)."""

    def __missing__(self, job: int) -> Settle:
        if len(self) >= _SETTLES_KEPT:
            self.clear()
        action = self[job] = settle(job)
        return action


_SETTLES_KEPT = 1 << 16
# `settle_of(job)` is `settle(job)`, looked up in C for a job settled before.
settle_of = _Settles().__getitem__


@dataclass(frozen=True, slots=True)
class SetPrice:
    gpu_type: str
    price: int


_set_type = vars(SetPrice)["gpu_type"].__set__
_set_price = vars(SetPrice)["price"].__set__


def set_price(gpu_type: str, price: int) -> SetPrice:
    """`SetPrice(gpu_type, price)` as `settle` makes a Settle (one a market a pass)."""
    action = _new(SetPrice)
    _set_type(action, gpu_type)
    _set_price(action, price)
    return action


Action = (
    Start
    | Preempt
    | CallOff
    | Stop
    | Renew
    | Warn
    | Fail
    | OpenWindow
    | CloseWindow
    | Settle
    | SetPrice
)
EXECUTOR_ACTIONS = (Start, Preempt, CallOff, Stop)
