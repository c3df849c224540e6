"""The test world runs the passes production runs: one right after a Commit window
closes (issue 17: "the simulator runs the same passes as production")."""

from __future__ import annotations

from skyops_tui.domain.model import JobState
from tests.helpers import HOUR, T0, World, config


def test_a_priority_job_behind_a_window_starts_as_the_window_closes() -> None:
    """One node x 4 H100 held by an idle window until 1 h; `p` (4 GPUs) waits for it.
    The window's GPUs are free once its close is applied, after the pass that decided
    it: the pass that follows at once starts p at 1 h, not at the next unrelated
    event."""
    w = World(config("1x4xH100"))
    w.reserve("r", gpus=4, start=T0, hours=1)
    w.advance(10)
    w.priority("p", gpus=4, hours=1, runtime=600)
    w.run_until(T0 + 3 * HOUR)
    p = w.job("p")
    assert p.first_started_at == T0 + HOUR
    assert p.state is JobState.SUCCEEDED
