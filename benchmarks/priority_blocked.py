"""One pass with a long Priority queue that cannot start (issue 15).

    python benchmarks/priority_blocked.py                 # 15,000 blocked jobs queued
    python benchmarks/priority_blocked.py --queued 50000 --passes 50

The grid: 64 H100 nodes x 8 GPUs and one L40S node, drained. The queue: QUEUED Priority
jobs of 1, 2, 4 and 8 GPUs for L40S (none can start, wait, preempt, backfill or hold a
node), then one H100 job that starts. Each timed pass is `plan(grid, now)` on that
grid, the clock 2 s further each time; nothing is applied, so every pass judges the
same queue (as a queue stuck on a drained type is judged pass after pass). Prints
JSON: p50/p99 per pass in CPU and wall-clock ms, and the actions of the last pass.

Whole path: `plan()` alone. Left out: applying its actions, the store's write and the
executor (benchmarks/scheduler_step.py times the whole step), and the submissions.
"""

from __future__ import annotations

import argparse
import json
import time

from machine import machine, summary_ms

from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import Mode
from skyops_tui.domain.specs import JobSpec
from skyops_tui.policy.grid import Grid
from skyops_tui.policy.planner import plan

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
SIZES = [1, 2, 4, 8]


def build(queued: int) -> Grid:
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}, {"name": "L40S", "rate": 0.9}],
            "nodes": [
                {"name": "h100", "fake_gpus": "8xH100-80GB", "count": 64},
                {"name": "l40s", "fake_gpus": "8xL40S", "count": 1},
            ],
            "accounts": {"default_balance": 1e9},
        },
        "benchmark config",
    )
    g = Grid(cfg, T0)
    for name, node in g.nodes.items():
        if node.gpu_type == "L40S":
            g.drain_node(name, "maintenance", T0, "benchmark")
    for i in range(queued):
        spec = JobSpec(
            name=f"p{i:06d}",
            user=f"user{i % 40:02d}",
            mode=Mode.PRIORITY,
            gpus=SIZES[i % len(SIZES)],
            gpu_type="L40S",
            hours=4,
        )
        g.submit(spec, T0)
    spec = JobSpec(
        name="behind", user="user00", mode=Mode.PRIORITY, gpus=4, gpu_type="H100", hours=4
    )
    g.submit(spec, T0)
    return g


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--queued", type=int, default=15_000, help="blocked Priority jobs")
    ap.add_argument("--passes", type=int, default=100, help="timed passes")
    a = ap.parse_args(argv)
    g = build(a.queued)
    now = T0
    wall: list[float] = []
    cpu: list[float] = []
    actions = []
    for _ in range(a.passes):
        now += 2.0
        t, c = time.perf_counter(), time.process_time()
        actions = plan(g, now)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    out = {
        "benchmark": "priority_blocked",
        "machine": machine(),
        "queued": len(g.priority_queue),
        "passes": a.passes,
        "last_pass_actions": sorted({type(x).__name__ for x in actions}),
        **summary_ms(wall),
        "cpu": summary_ms(cpu),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
