"""Billing over real local agents: a run is billed to the end its agent recorded
(issue 10, finding 7), not to when the console heard of it."""

from __future__ import annotations

import sys

from skyops_tui.domain.model import JobState
from skyops_tui.fleet.executor import agent_id
from tests.fleet.sshd import kill_leftover_jobs
from tests.integration.test_node_loss import agent_records, grid, job, ready
from tests.waiting import until

SHORT = (sys.executable, "-c", "import time; time.sleep(1.5)")


async def test_an_exit_seen_live_is_billed_to_the_end_the_agent_recorded(tmp_path):
    rt, _boxes = grid(tmp_path, nodes=1, billing_interval_s=60)
    await rt.start()
    try:
        await ready(rt)
        p = rt.scheduler.submit(job("short", "priority", argv=SHORT))
        await until(lambda: p.state is JobState.SUCCEEDED, "the short job done", timeout=30)
        record = (await agent_records(rt, "node-a"))[agent_id(p.id, 1, 0)]
        seen = next(e.at for e in rt.feed.events if e.job == p.id and e.new == "succeeded")
        assert record["ended_at"] < seen  # the console heard of it later
        rate = rt.grid.markets["H100"].rate
        held_us = round(record["ended_at"] * 1e6) - round(p.started_at * 1e6)
        expected = 4 * rate * held_us // (3600 * 10**6)
        assert p.charged == expected, (p.charged, expected, seen - record["ended_at"])
    finally:
        await rt.stop()
        kill_leftover_jobs(tmp_path)
