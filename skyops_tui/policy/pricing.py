"""Prices, discounts, quotes and refunds: every money rule of the modes, in one place.

All amounts are integer micro-units. Rules (see docs/modes.md):
- Priority: gpus x standard rate x seconds held / 3600, floored to a micro-unit.
- Commit prepay: gpus x hours x rate x (1 - discount), floored; the discount is the
  highest tier whose GPU-hours the reservation reaches, per node type.
- Commit early exit: unused future GPU-seconds x effective rate x early_exit_refund,
  plus downtime GPU-seconds not yet credited x effective rate, floored.
- Flex clearing price: the highest waiting bid, capped at the lowest running bid and
  at the standard rate, never under the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ..domain.config import Tier
from ..domain.model import Reservation


def discount_bp(tiers: tuple[Tier, ...], gpu_hours: float) -> int:
    best = 0
    for t in tiers:
        if gpu_hours >= t.gpu_hours:
            best = max(best, int(round(Fraction(str(t.discount)) * 10_000)))
    return best


def prepay(gpus: int, hours_total: float, rate: int, bp: int) -> int:
    value = Fraction(gpus) * Fraction(str(hours_total)) * rate * (10_000 - bp) / 10_000
    return int(value)


def effective_rate(res: Reservation) -> Fraction:
    """What the owner paid per GPU-second."""
    total = res.gpu_seconds_total
    return Fraction(res.prepaid) / Fraction(total) if total else Fraction(0)


@dataclass(frozen=True, slots=True)
class Quote:
    gpu_type: str
    gpus: int
    windows: int
    gpu_hours: float
    rate: int
    discount_bp: int
    price: int
    refund_fraction: float

    @property
    def list_price(self) -> int:
        return int(Fraction(str(self.gpu_hours)) * self.rate)


def quote(
    gpu_type: str,
    gpus: int,
    windows: list[tuple[float, float]],
    rate: int,
    tiers: tuple[Tier, ...],
    refund_fraction: float,
) -> Quote:
    hours = sum(e - s for s, e in windows) / 3600
    gpu_hours = gpus * hours
    bp = discount_bp(tiers, gpu_hours)
    return Quote(
        gpu_type=gpu_type,
        gpus=gpus,
        windows=len(windows),
        gpu_hours=gpu_hours,
        rate=rate,
        discount_bp=bp,
        price=prepay(gpus, hours, rate, bp),
        refund_fraction=refund_fraction,
    )


def window_value(res: Reservation, index: int) -> int:
    """The share of the prepayment that buys window `index` (last one takes the rounding)."""
    n = len(res.windows)
    if index < n - 1:
        s, e = res.windows[index]
        return int(effective_rate(res) * Fraction(res.gpus) * Fraction(e - s))
    earlier = sum(window_value(res, i) for i in range(n - 1))
    return res.prepaid - earlier


def unused_gpu_seconds(res: Reservation, now: float) -> float:
    unused = 0.0
    for s, e in res.windows:
        if now <= s:
            unused += (e - s) * res.gpus
        elif now < e:
            unused += (e - now) * res.gpus
    return unused


def early_exit_refund(res: Reservation, now: float, refund_fraction: float) -> tuple[int, int]:
    """(refund for unused future time, credit for downtime) on cancelling at `now`."""
    rate = effective_rate(res)
    unused = int(rate * Fraction(unused_gpu_seconds(res, now)) * Fraction(str(refund_fraction)))
    downtime = downtime_credit(res, now)
    return unused, downtime


def downtime_credit(res: Reservation, now: float) -> int:
    seconds = res.downtime_gpu_s
    if res.missing and res.missing_since is not None:
        seconds += res.missing * (now - res.missing_since)
    return int(effective_rate(res) * Fraction(seconds))


def clearing_price(
    highest_waiting_bid: int | None,
    lowest_running_bid: int | None,
    floor: int,
    rate: int | None = None,
) -> int:
    """The highest waiting bid, capped at the lowest running bid and at the standard
    `rate` (an untyped bid may exceed the rate of a cheaper market), never under `floor`."""
    if highest_waiting_bid is None:
        return floor
    price = highest_waiting_bid
    if lowest_running_bid is not None:
        price = min(price, lowest_running_bid)
    if rate is not None:
        price = min(price, rate)
    return max(price, floor)


def accrue(job, gpus: int, acc: int) -> int:
    """Add `acc` micro-unit-seconds per GPU to the job's run; return the whole micro-units
    now due. Charging the running total keeps rounding from drifting over many settles."""
    job.run_acc += acc
    due = gpus * job.run_acc // 3600 - job.run_charged
    job.run_charged += due
    return due
