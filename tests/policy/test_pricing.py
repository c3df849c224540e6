"""Money rules (skyops_tui/policy/pricing.py, domain/money.py): integer micro-units,
floored, never floats in the books."""

from __future__ import annotations

from fractions import Fraction

import pytest

from skyops_tui.domain.config import DEFAULT_TIERS, Tier
from skyops_tui.domain.model import US, Market, Reservation
from skyops_tui.domain.money import MICRO, cost, fmt, to_micro
from skyops_tui.policy import pricing

HOUR = 3600.0


def reservation(gpus=8, windows=((0.0, 4 * HOUR),), rate=1_600_000, bp=0, prepaid=None):
    windows = list(windows)
    if prepaid is None:
        hours = sum(e - s for s, e in windows) / HOUR
        prepaid = pricing.prepay(gpus, hours, rate, bp)
    return Reservation(1, "r", "team", "A100", gpus, windows, rate, bp, prepaid, 0.0)


# ----------------------------------------------------------------- money
@pytest.mark.parametrize(
    ("amount", "micro"),
    [(2.5, 2_500_000), ("0.1", 100_000), (0.30, 300_000), (1e-6, 1), (1234.567891, 1_234_567_891)],
)
def test_amounts_become_exact_micro_units(amount, micro):
    assert to_micro(amount) == micro


def test_cost_is_floored_to_a_micro_unit():
    assert cost(1, 2_500_000, 1) == 694  # 694.44...
    assert cost(3, 2_500_000, 1234) == 2_570_833  # 2,570,833.33...
    assert cost(8, 1_600_000, 3600) == 12_800_000


def test_money_is_shown_with_two_decimals_and_a_sign():
    assert fmt(2_500_000) == "$2.50"
    assert fmt(-1_234_567_890, "€") == "-€1,234.56"
    assert fmt(999) == "$0.00"


# -------------------------------------------------------------- discounts
@pytest.mark.parametrize(
    ("gpu_hours", "bp"),
    [(0, 0), (23.99, 0), (24, 1500), (167.9, 1500), (168, 3000), (719, 3000), (720, 5000)],
)
def test_default_tiers(gpu_hours, bp):
    assert pricing.discount_bp(DEFAULT_TIERS, gpu_hours) == bp


def test_the_highest_tier_reached_applies_whatever_the_order():
    tiers = (Tier(gpu_hours=100, discount=0.2), Tier(gpu_hours=10, discount=0.05))
    assert pricing.discount_bp(tiers, 50) == 500
    assert pricing.discount_bp(tiers, 100) == 2000


def test_prepay_is_gpus_hours_rate_less_discount_floored():
    assert pricing.prepay(8, 120, 1_600_000, 5000) == 768_000_000
    assert pricing.prepay(1, 1 / 3, 2_500_000, 0) == 833_333
    assert pricing.prepay(3, 7, 900_000, 1500) == 16_065_000


def test_quote_shows_list_price_discount_and_refund_terms():
    windows = [(k * 86400.0, k * 86400.0 + 4 * HOUR) for k in range(30)]
    q = pricing.quote("A100", 8, windows, 1_600_000, DEFAULT_TIERS, 0.5)
    assert (q.windows, q.gpu_hours, q.discount_bp) == (30, 960, 5000)
    assert (q.list_price, q.price, q.refund_fraction) == (1_536_000_000, 768_000_000, 0.5)


# ----------------------------------------------------------- reservations
def test_effective_rate_is_what_the_owner_paid_per_gpu_second():
    res = reservation(prepaid=768_000_000, windows=[(0, 4 * HOUR)] * 30)
    assert pricing.effective_rate_per_gpu_second(res) == Fraction(2000, 9)


def test_effective_rate_per_gpu_hour_is_the_discounted_standard_rate_floored():
    """The rate people see for a reservation, in micro-units per GPU-hour (the same
    unit as a market's rate), not the exact per-second Fraction refunds use."""
    res = reservation(rate=1_600_000, bp=5000)
    assert pricing.effective_rate_per_gpu_hour(res) == 800_000
    assert pricing.effective_rate_per_gpu_hour(reservation(rate=999_999, bp=1)) == 999_899


def test_priority_price_is_gpus_times_rate_times_hours_floored():
    """Admission, renewal, the launch form and `skyops quote` all price a booking with
    this one rule: a decimal hour count is exact, the total floored to a micro-unit."""
    assert pricing.priority_price(2_500_000, 4, 3) == 30_000_000
    assert pricing.priority_price(2_500_000, 8, 0.1) == 2_000_000
    assert pricing.priority_price(1_000_001, 1, 1 / 3) == 333_333


def test_window_values_add_up_to_the_prepayment_exactly():
    res = reservation(gpus=3, windows=[(0, 1000.0), (5000, 6000.0), (9000, 9333.0)], prepaid=7)
    values = [pricing.window_value(res, i) for i in range(3)]
    assert sum(values) == 7
    assert values == [3, 3, 1]  # floors, the last window takes the rounding


def test_unused_gpu_seconds_count_the_future_only():
    res = reservation(gpus=2, windows=[(0, 100.0), (200, 300.0)])
    assert pricing.unused_gpu_seconds(res, -5) == 400
    assert pricing.unused_gpu_seconds(res, 50) == 300  # half of the first window is used
    assert pricing.unused_gpu_seconds(res, 150) == 200
    assert pricing.unused_gpu_seconds(res, 300) == 0


def test_early_exit_refund_and_downtime_credit():
    # 8 GPUs x 4 h = 32 GPU-h at 1.60, 15 % off: 43.52 prepaid, 1.36 per GPU-hour
    res = reservation(bp=1500)
    assert res.prepaid == 43_520_000
    # cancelled 1 h in: 3 h x 8 unused = 24 GPU-h x 1.36 x 0.5 = 16.32
    assert pricing.early_exit_refund(res, HOUR, 0.5) == (16_320_000, 0)
    # half an hour of one node lost, still missing since 3000 s: 1800 + 8 x 600 GPU-s
    res.downtime_gpu_s = 1800.0
    res.missing, res.missing_since = 8, 3000.0
    assert pricing.downtime_credit(res, 3600.0) == int(Fraction(43_520_000, 115_200) * 6600)
    assert pricing.early_exit_refund(res, HOUR, 1.0)[0] == 32_640_000


# ------------------------------------------------------------ flex market
def test_clearing_price_is_capped_at_the_standard_rate():
    assert pricing.clearing_price(2_000_000, None, 270_000, 900_000) == 900_000
    assert pricing.clearing_price(2_000_000, 1_000_000, 270_000, 900_000) == 900_000
    assert pricing.clearing_price(500_000, 1_000_000, 270_000, 900_000) == 500_000


def test_charging_the_floored_running_total_every_second_does_not_drift():
    m = Market("H100", 1_000_000, 300_000, 777_777)
    m.set_price(777_777, 0.0)
    acc = charged = 0
    for k in range(3600):  # one second at 0.777777 per GPU-hour, 3 GPUs, billed each second
        acc += pricing.flex_usage(m, [], 1_000_000, k * US, (k + 1) * US)
        charged += pricing.owed(3, acc) - charged
    once = pricing.owed(3, pricing.flex_usage(m, [], 1_000_000, 0, 3600 * US))
    assert charged == once == 3 * 777_777 * 3600 // 3600 == 2_333_331


def test_micro_is_a_millionth():
    assert MICRO == 1_000_000
