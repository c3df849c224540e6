"""Money is integer micro-units of the configured currency; never floats in the books."""

from __future__ import annotations

from fractions import Fraction

MICRO = 1_000_000


def to_micro(amount: float | int | str) -> int:
    """Convert a human amount (e.g. 2.5 from a config file) to micro-units, exactly."""
    return int(round(Fraction(str(amount)) * MICRO))


def fmt(micro: int, currency: str = "$") -> str:
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(micro), MICRO)
    cents = frac // 10_000
    return f"{sign}{currency}{whole:,}.{cents:02d}"


def cost(gpus: int, rate_per_gpu_hour: int, seconds: float) -> int:
    """Whole micro-units due for `gpus` held `seconds` at a per-GPU-hour rate (floor)."""
    return int(Fraction(gpus * rate_per_gpu_hour) * Fraction(seconds) / 3600)
