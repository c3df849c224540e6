"""Jobs started together are not all billed in one pass every interval: a pass bills at
most SETTLE_PER_PASS of them, the longest unbilled first, so the scheduler step that
bills never stalls the console (docs/modes.md, Billing); every second is still billed."""

from __future__ import annotations

from skyops_tui.policy import actions as A
from skyops_tui.policy.planner import SETTLE_PER_PASS
from tests.helpers import HandWorld, config


def test_a_pass_bills_at_most_its_share_and_the_rest_next_pass():
    n = SETTLE_PER_PASS + 72
    w = HandWorld(config(f"{n // 8}x8xH100"))
    for i in range(n):
        w.priority(f"p{i}", gpus=1, hours=2, user=f"u{i % 7}")
    w.at(0)
    w.run()
    settled = [a.job for a in w.at(60) if isinstance(a, A.Settle)]
    assert len(settled) == SETTLE_PER_PASS
    rest = [a.job for a in w.at(61) if isinstance(a, A.Settle)]
    assert len(rest) == n - SETTLE_PER_PASS
    assert not set(settled) & set(rest)
    # Spread for good: the next interval bills them in two passes again, not one.
    assert len([a for a in w.at(120) if isinstance(a, A.Settle)]) == SETTLE_PER_PASS
    assert len([a for a in w.at(121) if isinstance(a, A.Settle)]) == n - SETTLE_PER_PASS
    # Every second billed: 121 s at 2.50 per GPU-hour each, floored to a micro-unit.
    assert {w.charged(f"p{i}") for i in range(n)} == {121 * 2_500_000 // 3600}
