"""Prices, discounts, quotes and refunds: every money rule of the modes, in one place.

All amounts are integer micro-units. Rules (see docs/modes.md):
- Priority: gpus x standard rate x seconds held / 3600, floored to a micro-unit.
- Commit prepay: gpus x hours x rate x (1 - discount), floored; the discount is the
  highest tier whose GPU-hours the reservation reaches, per node type.
- Commit early exit: unused future GPU-seconds x effective rate x early_exit_refund,
  plus downtime GPU-seconds not yet credited x effective rate, floored.
- Flex clearing price: the highest waiting bid, capped at the lowest running bid and
  at the standard rate, never under the floor.
- Usage (Priority and Flex): per GPU, the exact sum over the run of price x time, time
  in whole microseconds, the Flex price being min(clearing price, own bid) at each
  instant; what a run owes is that running total floored to a micro-unit, so billing
  every second, every minute or once comes to the same sum.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from fractions import Fraction

from ..domain.config import Tier
from ..domain.model import US, Market, Reservation


def discount_bp(tiers: tuple[Tier, ...], gpu_hours: float) -> int:
    best = 0
    for t in tiers:
        if gpu_hours >= t.gpu_hours:
            best = max(best, int(round(Fraction(str(t.discount)) * 10_000)))
    return best


def prepay(gpus: int, hours_total: float, rate: int, bp: int) -> int:
    value = Fraction(gpus) * Fraction(str(hours_total)) * rate * (10_000 - bp) / 10_000
    return int(value)


def priority_price(rate: int, gpus: int, hours: float) -> int:
    """A Priority booking's price: gpus x standard rate x hours, floored to a micro-unit.

    The one place this rule lives: admission, renewal, the launch form's quote and
    `skyops quote` all ask it, so they cannot disagree by a rounding. `hours` goes
    through its decimal text (0.1 h is a tenth of an hour, not a binary float)."""
    return int(Fraction(rate * gpus) * Fraction(str(hours)))


def effective_rate_per_gpu_second(res: Reservation) -> Fraction:
    """What the owner paid per GPU-second, exact: refunds and window values are
    computed from it and floored once, at the end."""
    total = res.gpu_seconds_total
    return Fraction(res.prepaid) / Fraction(total) if total else Fraction(0)


def effective_rate_per_gpu_hour(res: Reservation) -> int:
    """The discounted rate per GPU-hour in micro-units, floored: the price shown to
    people (screens, `skyops quote`), comparable with a market's standard rate."""
    return int(Fraction(res.rate) * (10_000 - res.discount_bp) / 10_000)


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
        return int(effective_rate_per_gpu_second(res) * Fraction(res.gpus) * Fraction(e - s))
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
    rate = effective_rate_per_gpu_second(res)
    unused = int(rate * Fraction(unused_gpu_seconds(res, now)) * Fraction(str(refund_fraction)))
    downtime = downtime_credit(res, now)
    return unused, downtime


def downtime_credit(res: Reservation, now: float) -> int:
    seconds = res.downtime_gpu_s
    if res.missing and res.missing_since is not None:
        seconds += res.missing * (now - res.missing_since)
    return int(effective_rate_per_gpu_second(res) * Fraction(seconds))


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
    # `min` and `max` by comparisons (the same value, ties included: each kept the
    # first argument), at a fraction of a builtin call's cost.
    price = highest_waiting_bid
    if lowest_running_bid is not None and lowest_running_bid < price:
        price = lowest_running_bid
    if rate is not None and rate < price:
        price = rate
    return floor if floor > price else price


PER_HOUR = 3600 * US  # price per GPU-hour x microseconds -> micro-units


def owed(gpus: int, acc: int) -> int:
    """What a run's running total (per GPU, price x microseconds) comes to, floored."""
    return gpus * acc // PER_HOUR


def flex_usage(market: Market, bid_log: list[tuple[int, int]], bid: int, a: int, b: int) -> int:
    """Per GPU, the sum of min(clearing price, bid) x microseconds over [a, b): the
    market's price segments merged with the job's bid changes (`bid` when it has none)."""
    if b <= a:
        return 0
    starts, levels = market.starts, market.levels
    i = bisect_right(starts, a) - 1
    price = levels[i] if i >= 0 else market.floor
    n = len(starts)
    # The bid all along [a, b) when it did not change there (a job's log opens at its
    # submission, so most have one entry).
    cap: int | None = bid if not bid_log else bid_log[-1][1] if bid_log[-1][0] <= a else None
    if cap is not None and (i + 1 >= n or starts[i + 1] >= b):
        return (price if price < cap else cap) * (b - a)  # one price, one bid: most bills
    if bid_log:
        j = bisect_right(bid_log, (a, float("inf"))) - 1
        cap = bid_log[j][1] if j >= 0 else bid_log[0][1]
        m = len(bid_log)
    else:
        j, cap, m = 0, bid, 0
    total = 0
    t = a
    while t < b:
        nxt_p = starts[i + 1] if i + 1 < n else b
        nxt_b = bid_log[j + 1][0] if j + 1 < m else b
        end = min(b, nxt_p, nxt_b)
        total += (price if price < cap else cap) * (end - t)
        t = end
        while i + 1 < n and starts[i + 1] <= t:
            i += 1
            price = levels[i]
        while j + 1 < m and bid_log[j + 1][0] <= t:
            j += 1
            cap = bid_log[j][1]
    return total
