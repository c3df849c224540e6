"""The collector's full passes while the console runs: on the console's timer, never
in the middle of a key's handling because the collector chose that moment."""

from __future__ import annotations

import gc
import weakref

from skyops_tui.app.app import SkyopsApp
from tests.app.harness import demo_app, wait_for


class Cycle:
    def __init__(self) -> None:
        self.me = self


async def test_full_passes_run_on_the_console_timer_only() -> None:
    """With the console up, allocations that would have set off the collector's own
    full passes (about one for every 7,000 objects that outlive two young ones) set
    off none; cyclic garbage is still reclaimed, by the console's timer; the
    collector's thresholds are back as they were once the console exits."""
    before = gc.get_threshold()
    app = demo_app()
    app.GC_FULL_S = 0.5
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.current_mode == "grid", "grid screen")
        full = gc.get_stats()[2]["collections"]
        kept = []
        for _ in range(20):  # long-lived objects, promoted to the oldest generation
            kept.append([[] for _ in range(5_000)])
            for _ in range(2):
                gc.collect(1)
        garbage = Cycle()
        gone = weakref.ref(garbage)
        gc.collect(1)  # it survives into the oldest generation
        del garbage
        gc.collect(1)  # garbage now, and only a full pass frees it
        assert gone() is not None
        assert gc.get_stats()[2]["collections"] == full, "the collector ran a full pass"
        await wait_for(pilot, lambda: gone() is None, "the console's full pass freed it")
        del kept
    assert gc.get_threshold() == before
    assert SkyopsApp.GC_FULL_S == 60.0
