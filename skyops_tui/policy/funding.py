"""An account that cannot pay stops its jobs before it passes its credit limit.

Admission checks funds once (docs/modes.md, funding); usage is then billed per second, so a
long job on a small account would run its balance down without end. Each pass weighs,
per account, what is left (balance + credit limit - usage not yet billed) against what
its holding jobs may still cost once told to stop (their burn over the stop margin:
checkpoint grace + SIGTERM grace for Flex, SIGTERM grace for Priority, plus one tick).
When what is left no longer covers that, the planner stops the account's jobs: Flex
jobs pause (and resume when the account can fund them again), Priority jobs expire.
A job starts only if the account can still fund its first period (the first hour for
Priority, `min_funded_minutes` at the bid for Flex, as at admission) on top of that
reserve; until then it waits, without holding up the jobs behind it.
Commit jobs are prepaid and never stopped for funds.

What a job may still cost is an estimate at the most it can cost (its bid, the
standard rate), so it errs on the safe side. What it owes already is not: usage not
yet billed is valued exactly as billing will charge it (`Grid.unbilled`), so whether
an account is short never depends on when billing last ran.
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass

from ..domain.model import Job, Mode
from ..domain.money import to_micro
from .grid import Grid
from .pergrid import PerGrid

# Enum members read in hot paths, looked up once (`Mode.FLEX` costs 100 ns on 3.11).
_FLEX = Mode.FLEX
_PRIORITY = Mode.PRIORITY


@dataclass(slots=True)
class Funds:
    available: int  # balance + credit limit - usage not yet billed (micro-units)
    burn: int = 0  # micro-units per hour its holding jobs may cost at most
    reserve: int = 0  # what they may still cost once told to stop

    @property
    def short(self) -> bool:
        return self.available < self.reserve


class Guard:
    """Per-pass view of every account with jobs that cost money while they hold GPUs."""

    def __init__(self, grid: Grid, now: float) -> None:
        self.g = grid
        c = grid.cfg.cluster
        self.margin = {
            _FLEX: c.grace_s + c.stop_grace_s + c.tick_s,
            _PRIORITY: c.stop_grace_s + c.tick_s,
        }
        self.funded_s = grid.cfg.pricing.min_funded_minutes * 60
        self.limit = credit_limit(grid)
        self.funds: dict[str, Funds] = {}
        # One tight loop over the holding jobs: per user, burn by mode and the burn-seconds
        # not yet billed (a pass over thousands of jobs must stay cheap).
        jobs, flex, priority = grid.jobs, _FLEX, _PRIORITY
        rates = {t: m.rate for t, m in grid.markets.items()}
        unbilled = grid.unbilled
        acc: dict[str, list[int]] = {}
        for jid in grid.index.holding:
            job = jobs[jid]
            mode = job.mode
            if mode is flex:
                burn = job.gpu_total * job.bid
            elif mode is priority:
                burn = job.gpu_total * rates.get(job.market or "", 0)
            else:
                continue
            a = acc.get(job.user)
            if a is None:
                a = acc[job.user] = [0, 0, 0, 0]  # flex burn, priority burn, unbilled, jobs
            a[0 if mode is flex else 1] += burn
            a[3] += 1
            if job.billed_from is not None:
                a[2] += unbilled(job, now)  # at the price owed, as billing would charge it
        mf, mp = self.margin[flex], self.margin[priority]
        for user, (bf, bp, owed, n) in acc.items():
            self.funds[user] = Funds(
                self.g.balance(user) + self.limit - owed - n,
                bf + bp,
                int((bf * mf + bp * mp) / 3600) + n,
            )

    def account(self, user: str) -> Funds:
        f = self.funds.get(user)
        if f is None:
            f = self.funds[user] = Funds(self.g.balance(user) + self.limit)
        return f

    def burn(self, job: Job, gpus: int, gpu_type: str | None = None) -> int:
        """Most the job may cost per hour: its bid (Flex) or the standard rate (Priority)."""
        if job.mode is _FLEX:
            return gpus * job.bid
        if job.mode is _PRIORITY:
            market = self.g.markets.get(gpu_type or job.market or job.gpu_type or "")
            return gpus * market.rate if market else 0
        return 0

    def add(self, f: Funds, job: Job, burn: int) -> None:
        f.burn += burn
        f.reserve += int(burn * self.margin[job.mode] / 3600) + 1

    def short(self, user: str) -> Funds | None:
        f = self.funds.get(user)
        return f if f is not None and f.short else None

    def first_period(self, job: Job, gpu_type: str, gpus: int) -> float:
        """What the job's account must still have to start it (as admission asked)."""
        burn = self.burn(job, gpus, gpu_type)
        if job.mode is _FLEX:
            return burn * self.funded_s / 3600
        return burn * min(job.hours if job.hours is not None else 1.0, 1.0)

    def can_start(self, job: Job, gpu_type: str, gpus: int) -> bool:
        first = self.first_period(job, gpu_type, gpus)
        if not first:
            return True
        f = self.funds.get(job.user)
        left = (f.available - f.reserve) if f else self.g.balance(job.user) + self.limit
        return left >= first  # what admission asked, after what already runs

    def started(self, job: Job, gpu_type: str, gpus: int) -> None:
        burn = self.burn(job, gpus, gpu_type)
        if burn:
            self.add(self.account(job.user), job, burn)

    def runs_dry_at(self, now: float) -> float | None:
        """The first time, at today's burn, an account's funds reach its reserve, or
        no longer cover the first period of a job it has waiting: that job then stops
        bidding, which may move the clearing price. The burn is the most the account
        may pay, so this is never late; a pass then reckons again."""
        best = None
        need = self._waiting_needs()
        for user, f in self.funds.items():
            left = f.available - f.reserve - need.get(user, 0)
            if f.burn > 0 and left >= 0:
                t = now + max(1, -(-left * 3600 // f.burn))
                best = t if best is None else min(best, t)
        return best

    def _waiting_needs(self) -> dict[str, float]:
        """Per account whose funds fall, the largest first period of a waiting job it
        can still fund (in any market the job may use)."""
        users = {u for u, f in self.funds.items() if f.burn > 0}
        if not users:
            return {}
        g = self.g
        sizes = {t: {n.gpu_count for n in ns} for t, ns in g.by_type.items()}
        waiting = [g.jobs[j] for _s, j in g.index.priority_queue]
        waiting += [g.jobs[e[2]] for book in g.index.flex_book.values() for e in book]
        need: dict[str, float] = {}
        for job in waiting:
            if job.user not in users:
                continue
            f = self.funds[job.user]
            left = f.available - f.reserve
            for t in [job.gpu_type] if job.gpu_type else list(sizes):
                for size in sizes.get(t, ()) if job.nodes else (0,):
                    first = self.first_period(job, t, job.gpus or job.nodes * size)
                    if need.get(job.user, 0) < first <= left:
                        need[job.user] = first
        return need


def funds_may_run_low(grid: Grid, horizon_h: float = 24.0) -> bool:
    """False when even the whole grid at its highest rate for `horizon_h` could not bring
    any account down to its limit: then no account is short in this pass, every job can
    fund its first period, and the per-account reckoning can be skipped."""
    ledger = grid.ledger
    balances, nodes, cfg = ledger.balances, grid.nodes, grid.cfg
    mark = ledger.low_mark
    if (
        mark is not None
        and mark[0] is balances
        and mark[1] == len(balances)
        and mark[4] is cfg
        and mark[5] == len(nodes)
        and mark[6] is (next(reversed(nodes.values())) if nodes else None)
        and mark[8] == horizon_h
    ):
        # No balance has fallen by more than was debited since the lowest was counted
        # (on these accounts, nodes and limit; accounts are never closed, so the same
        # count is the same accounts, some user's among them): while that bound clears
        # the bar, the lowest does (twice a pass, a walk of every account otherwise).
        limit, burn = mark[7], mark[9]
        if mark[2] - (ledger.debited - mark[3]) + limit >= burn:
            if CHECK_LOW:
                accounts = ledger.user_accounts()
                if not accounts or min(map(balances.__getitem__, accounts)) + limit < burn:
                    raise AssertionError("funds kept as ample while an account runs low")
            return False
    accounts = ledger.user_accounts()
    if not accounts:
        return False
    last = next(reversed(nodes.values())) if nodes else None
    limit, burn = credit_limit(grid), _grid_burn(grid) * horizon_h
    lowest = min(map(balances.__getitem__, accounts))
    ledger.low_mark = (
        balances, len(balances), lowest, ledger.debited, cfg, len(nodes), last, limit, horizon_h, burn
    )  # fmt: skip
    return lowest + limit < burn


# Tests set this: funds judged ample from the kept lowest balance are counted again.
CHECK_LOW = False
_BURN: PerGrid[tuple[int, object, int]] = PerGrid()
_RATE = operator.attrgetter("rate")


def _grid_burn(grid: Grid) -> int:
    """The whole grid at its highest standard rate, per hour: counted again only when
    a node came or went (their count or the last one added differs); a sum over
    thousands of nodes twice a pass showed."""
    nodes = grid.nodes
    n = len(nodes)
    last = next(reversed(nodes.values())) if n else None
    seen = _BURN.get(grid)
    if seen is None or seen[0] != n or seen[1] is not last:
        top = max(map(_RATE, grid.markets.values()), default=0)
        seen = _BURN.put(grid, (n, last, top * sum(node.gpu_count for node in nodes.values())))
    return seen[2]


def credit_limit(grid: Grid) -> int:
    """`Grid.credit_limit`, converted once per amount: funding asks it several times a
    pass, and the exact conversion builds a Fraction each time."""
    return _micro(grid.cfg.accounts.credit_limit)


@functools.lru_cache(maxsize=16)
def _micro(amount: float) -> int:
    return to_micro(amount)


class AmpleFunds:
    """The Guard when every account could pay for the whole grid for a day."""

    funds: dict[str, Funds] = {}

    def short(self, user: str) -> None:
        return None

    def can_start(self, job: Job, gpu_type: str, gpus: int) -> bool:
        return True

    def started(self, job: Job, gpu_type: str, gpus: int) -> None:
        pass

    def runs_dry_at(self, now: float) -> None:
        return None


AMPLE = AmpleFunds()


def guard(grid: Grid, now: float) -> Guard | AmpleFunds:
    return Guard(grid, now) if funds_may_run_low(grid) else AMPLE


def can_fund(grid: Grid, user: str, amount: int, now: float) -> bool:
    """Whether `user` can pay `amount` besides what its jobs owe already: admission
    (submit, renew, extend, reserve) weighs the balance less the usage not yet billed,
    valued as billing will charge it (the Guard's `available`), so whether it admits
    never depends on when billing last ran (docs/modes.md, *Billing*). When every
    account could pay for the whole grid for a day (`AMPLE`), what is unbilled, hours
    of the grid at most, is not summed."""
    left = grid.balance(user) + credit_limit(grid)
    if left < amount:
        return False  # usage not yet billed only lowers what is left
    return left - unbilled(grid, user, now) >= amount


def unbilled(grid: Grid, user: str, now: float) -> int:
    """What the account's holding jobs owe but billing has not charged yet, as the
    Guard counts it (nothing when funds are `AMPLE`)."""
    f = guard(grid, now).funds.get(user)
    return grid.balance(user) + credit_limit(grid) - f.available if f else 0
