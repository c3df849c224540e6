"""Submissions per second through the store and the scheduler.

Each submission is what a console does for a person: validate the request, admit it to
the grid, write the job and its event to SQLite in one transaction, and wake the
scheduler, whose passes (coalesced while submissions keep coming) place what fits.
Simulated agents run the jobs, so the fleet is not what is measured.

    python benchmarks/submissions.py [--jobs 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import engine_version, machine  # noqa: E402
from skyops_tui.clock import SystemClock  # noqa: E402
from skyops_tui.domain.config import parse_config  # noqa: E402
from skyops_tui.domain.specs import JobSpec  # noqa: E402
from skyops_tui.runtime import Runtime  # noqa: E402
from skyops_tui.sim.agents import SimExecutor  # noqa: E402
from skyops_tui.store.db import Store  # noqa: E402

CONFIG = {
    "cluster": {"tick_s": 1.0},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "n", "fake_gpus": "8xH100-80GB", "count": 64}],
    "accounts": {"default_balance": 1_000_000_000},
}


async def one_round(n: int, folder: Path) -> dict:
    cfg = parse_config(CONFIG, "benchmark config")
    clock = SystemClock()
    store = Store(folder / "bench.db")
    ex = SimExecutor(clock, 5, 120)  # type: ignore[arg-type]
    rt = Runtime(cfg, ex, clock=clock, store=store, user="bench")
    await rt.start()
    specs = [
        JobSpec(
            name=f"job-{i}",
            user="bench",
            mode="flex",
            gpus=1 + i % 4,
            gpu_type="H100",
            bid=0.75 + (i % 100) / 100,
            argv=("true",),
            runtime=3600.0,
        )
        for i in range(n)
    ]
    passes0 = rt.local.passes
    t0 = time.perf_counter()
    for k, spec in enumerate(specs):
        rt.scheduler.submit(spec)
        if k % 200 == 199:
            await asyncio.sleep(0)  # let the scheduler run, as a console's event loop would
    submitted = time.perf_counter() - t0
    await asyncio.sleep(0)
    rt.local.step()
    total = time.perf_counter() - t0
    running = sum(1 for j in rt.grid.jobs.values() if j.holding)
    rows = store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    passes = rt.local.passes - passes0
    await rt.stop()
    store.close()
    return {
        "submissions": n,
        "submit_s": round(submitted, 3),
        "per_second": round(n / submitted, 1),
        "with_final_pass_s": round(total, 3),
        "scheduler_passes": passes,
        "jobs_in_store": rows,
        "placed": running,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args(argv)
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            rounds.append(asyncio.run(one_round(args.jobs, Path(d))))
        print(f"round {r + 1}: {rounds[-1]['per_second']:,.0f} submissions/s", file=sys.stderr)
    rates = [r["per_second"] for r in rounds]
    out = {
        "benchmark": "submissions through store + scheduler",
        "machine": machine(),
        "engine": engine_version(),
        "rounds": rounds,
        "median_per_second": round(statistics.median(rates), 1),
        "target": {"per_second": 5000, "met": statistics.median(rates) >= 5000},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
