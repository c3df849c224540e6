"""Durable accepted submissions per second through the scheduler and the store.

Whole path: CLIENTS concurrent in-process callers each submit one Flex job at a time and
wait for its answer as a client of the leader does: validate the request, admit it to
the grid, write the job and its event to SQLite (WAL) in one transaction, wake the
scheduler, whose passes (coalesced while submissions keep coming) place what fits, and
wait for the group commit (`Store.durable`: one fsync of the WAL shared by every answer
waiting) before the submission counts as accepted. The baseline round in the same run
commits each submission with `synchronous = FULL` (one fsync each, no grouping).

Left out: the socket round trip and JSON (benchmarks/api_commands.py measures those),
the fleet (simulated agents run the jobs), and the syncs SQLite itself makes at its
automatic checkpoints (two per 4,000 WAL pages; `fsyncs` counts the group commit's).

    python benchmarks/submissions.py [--jobs 20000] [--rounds 3] [--clients 256]
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

from benchmarks.machine import engine_version, machine, summary_ms  # noqa: E402
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


async def one_round(n: int, folder: Path, clients: int, full: bool) -> dict:
    cfg = parse_config(CONFIG, "benchmark config")
    clock = SystemClock()
    store = Store(folder / "bench.db")
    if full:
        store.conn.execute("PRAGMA synchronous = FULL")
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
    passes0, commits0, fsyncs0 = rt.local.passes, store.commits, store.fsyncs
    answer_s: list[float] = []

    async def client(mine: list[JobSpec]) -> None:
        for spec in mine:
            t = time.perf_counter()
            rt.scheduler.submit(spec)
            if not full:
                await store.durable()
            else:
                await asyncio.sleep(0)  # its commit was fsync'd; let the others run
            answer_s.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(client(specs[c::clients]) for c in range(clients)))
    submitted = time.perf_counter() - t0
    rt.local.step()
    total = time.perf_counter() - t0
    running = sum(1 for j in rt.grid.jobs.values() if j.holding)
    rows = store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    passes = rt.local.passes - passes0
    commits = store.commits - commits0
    fsyncs = commits if full else store.fsyncs - fsyncs0
    await rt.stop()
    store.close()
    return {
        "durability": "synchronous=FULL, fsync per commit" if full else "group commit",
        "submissions": n,
        "clients": clients,
        "submit_s": round(submitted, 3),
        "per_second": round(n / submitted, 1),
        "answer_ms": summary_ms(answer_s),
        "fsyncs": fsyncs,
        "fsyncs_per_submission": round(fsyncs / n, 4),
        "commits": commits,
        "with_final_pass_s": round(total, 3),
        "scheduler_passes": passes,
        "jobs_in_store": rows,
        "placed": running,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--clients", type=int, default=256)
    args = p.parse_args(argv)
    rounds, baseline = [], []
    for r in range(args.rounds):
        for full, into in ((False, rounds), (True, baseline)):
            with tempfile.TemporaryDirectory() as d:
                into.append(asyncio.run(one_round(args.jobs, Path(d), args.clients, full)))
            print(
                f"round {r + 1} {into[-1]['durability']}: "
                f"{into[-1]['per_second']:,.0f} durable submissions/s, "
                f"{into[-1]['fsyncs_per_submission']} fsyncs each",
                file=sys.stderr,
            )
    rates = [r["per_second"] for r in rounds]
    base = statistics.median(r["per_second"] for r in baseline)
    out = {
        "benchmark": "durable accepted submissions through scheduler + store (group commit)",
        "machine": machine(),
        "engine": engine_version(),
        "rounds": rounds,
        "baseline_full_rounds": baseline,
        "median_per_second": round(statistics.median(rates), 1),
        "baseline_full_median_per_second": round(base, 1),
        "ratio_to_baseline": round(statistics.median(rates) / base, 2),
        "fsyncs_per_submission": statistics.median(r["fsyncs_per_submission"] for r in rounds),
        "target": {"per_second": 5000, "met": statistics.median(rates) >= 5000},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
