"""Simulator throughput: the real engine, market and ledger through a big mixed trace.

    python benchmarks/simulator.py                  # 100000 jobs on examples/sim-config.toml
    python benchmarks/simulator.py --jobs 10000 --profile 30
    python benchmarks/simulator.py --grid 1200      # 1,200 nodes, 7 types, 7,000 jobs, 150 days

`--grid N` times a generated grid the shape of a public GPU trace (issue 15): N nodes
in 7 GPU types (8- and 4-GPU nodes), 7,000 Priority and Flex jobs (`--jobs`) arriving
over 150 days (`--days`), most of 1 GPU, a few of 8, runtimes log-normal from minutes
to a week (median 40 min, `--median-h`). Its target is <= 10 CPU seconds for the
simulation (generation and parsing apart). Such a grid is mostly idle (0.1 % of its
GPU-hours used at the defaults): what it times is the cost of each pass on 1,200
nodes, not contention; `--days 1` or a longer `--median-h` load it more.

Generates the trace with examples/gen_trace.py (seeded: the same trace every run),
writes it as JSON Lines, reads it back as `skyops simulate` does, and simulates it.
Prints JSON: jobs per wall second of the simulation (the trace's generation and
parsing are timed apart; jobs per CPU second too, which other load on the machine
disturbs less), the summary's violations count and ledger_sum, and whether
the target is met: >= 2000 jobs per CPU second on the mixed trace, <= 10 CPU
seconds on `--grid`.

Whole path: `simulate()` as `skyops simulate` runs it (reports absorbed, passes,
actions applied, simulated agents, billing, the invariant checks each step). Left out:
the store (the simulator keeps the grid in memory, no SQLite) and the trace's
generation and parsing (timed apart).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import pstats
import random
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from machine import machine

from skyops_tui.domain.config import load_config
from skyops_tui.sim.simulator import simulate
from skyops_tui.sim.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
import gen_trace  # noqa: E402

TARGET_JOBS_PER_S = 2000  # per CPU second, on the 100k mixed trace
TARGET_GRID_CPU_S = 10.0  # the whole simulation of `--grid 1200`

# `--grid`: (type, standard rate, share of the nodes, GPUs a node), seven types.
GRID_TYPES = [
    ("A100", 1.60, 0.25, 8),
    ("V100", 0.90, 0.20, 8),
    ("H100", 2.50, 0.10, 8),
    ("A40", 0.80, 0.10, 4),
    ("L40S", 0.90, 0.10, 4),
    ("T4", 0.35, 0.15, 4),
    ("P100", 0.40, 0.10, 4),
]
GRID_GPUS = [(80, 1), (9, 2), (6, 4), (5, 8)]  # (weight, GPUs): most 1, a few 8


def grid_config(nodes: int, path: Path) -> Path:
    """A config of `nodes` fake nodes in the seven GPU_TYPES, written to `path`."""
    counts = [max(1, round(nodes * share)) for _, _, share, _ in GRID_TYPES]
    counts[0] += nodes - sum(counts)
    out = [
        "[cluster]",
        'name = "generated-grid"',
        "grace_s = 120",
        "stop_grace_s = 30",
        "",
        "[simulation]",
        "initial_balance = 1_000_000_000",
        "stop_delay_s = 5",
    ]
    for name, rate, _, _ in GRID_TYPES:
        out += ["", "[[node_types]]", f'name = "{name}"', f"rate = {rate}"]
    for (name, _, _, size), count in zip(GRID_TYPES, counts, strict=True):
        out += [
            "",
            "[[nodes]]",
            f'name = "{name.lower()}"',
            f'fake_gpus = "{size}x{name}"',
            f"count = {count}",
        ]
    path.write_text("\n".join(out) + "\n")
    return path


def grid_trace(jobs: int, days: float, seed: int, median_h: float = 2 / 3) -> list[dict]:
    """`jobs` jobs arriving at random over `days`: half Priority (booked for their
    runtime and a margin), half Flex (a bid between the floor and the rate), each on
    a type chosen by its share of the GPUs; runtimes log-normal, median `median_h`
    (40 min), at most a week."""
    rng = random.Random(seed)
    span = days * 86400
    gpus_of = [share * size for _, _, share, size in GRID_TYPES]
    users = [f"user{i:02d}" for i in range(1, 41)]
    times = sorted(rng.uniform(0, span) for _ in range(jobs))
    out = []
    for k, at in enumerate(times, 1):
        total = sum(w for w, _ in GRID_GPUS)
        x, gpus = rng.random() * total, GRID_GPUS[-1][1]
        for w, g in GRID_GPUS:
            x -= w
            if x < 0:
                gpus = g
                break
        fits = [i for i, t in enumerate(GRID_TYPES) if t[3] >= gpus]
        i = rng.choices(fits, [gpus_of[j] for j in fits])[0]
        name, rate, _, _ = GRID_TYPES[i]
        runtime = round(min(median_h * 3600 * math.exp(rng.gauss(0, 1.8)), 7 * 86400)) + 60
        line = {
            "name": f"g{k:06d}",
            "user": rng.choice(users),
            "submit": round(at, 1),
            "gpu_type": name,
            "gpus": gpus,
            "runtime": runtime,
        }
        if rng.random() < 0.5:
            line |= {"mode": "priority", "hours": math.ceil(runtime * 1.25 / 3600)}
        else:
            floor = rate * 0.3
            bid = round(floor + (rate - floor) * rng.random(), 2)
            line |= {"mode": "flex", "bid": max(bid, math.ceil(floor * 100) / 100)}
            line["checkpoint_every"] = 900
        out.append(line)
    return out


def refusal_reasons(refused: list[str], top: int = 5) -> dict[str, int]:
    """Refusals counted by reason, names and amounts blanked (most are bid or cancel
    lines for jobs that ended first: the trace does not know when jobs end)."""
    counts = Counter(
        re.sub(r"\$[\d,.]+|\b[jr]\d+\b|'[^']*'|\([a-z]+\)", "_", r.split(": ", 1)[-1])
        for r in refused
    )
    return dict(counts.most_common(top))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, help="job lines (default 100000; 7000 with --grid)")
    ap.add_argument("--grid", type=int, metavar="NODES", help="a generated grid of NODES nodes")
    ap.add_argument("--days", type=float, default=150.0, help="--grid: arrivals over DAYS")
    ap.add_argument("--median-h", type=float, default=2 / 3, help="--grid: median runtime, hours")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load", type=float, default=0.9, help="offered GPU-hours / capacity")
    ap.add_argument("--config", default=str(ROOT / "examples" / "sim-config.toml"))
    ap.add_argument("--trace", help="simulate this trace instead of generating one")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile; top N to stderr")
    a = ap.parse_args(argv)
    jobs = a.jobs or (7000 if a.grid else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        if a.grid:
            a.config = str(grid_config(a.grid, Path(tmp) / "grid.toml"))
        cfg = load_config(a.config)
        path = Path(a.trace) if a.trace else Path(tmp) / "trace.jsonl"
        t = time.perf_counter()
        if a.grid and not a.trace:
            gen_trace.write(grid_trace(jobs, a.days, a.seed, a.median_h), path)
        elif not a.trace:
            gen_trace.write(gen_trace.mixed(cfg, jobs, a.seed, a.load), path)
        gen_s = time.perf_counter() - t
        t = time.perf_counter()
        trace = read_trace(path)
        parse_s = time.perf_counter() - t
    last = [0.0]

    def progress(i: int, n: int) -> None:
        if time.perf_counter() - last[0] > 10:
            last[0] = time.perf_counter()
            print(f"  {i}/{n} lines submitted", file=sys.stderr)

    prof = cProfile.Profile() if a.profile else None
    if prof:
        prof.enable()
    cpu = time.process_time()
    result = simulate(trace, cfg, progress)
    cpu = time.process_time() - cpu
    if prof:
        prof.disable()
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(a.profile)
        stats.sort_stats("cumulative").print_stats(a.profile)
    s = result.summary
    rate = s["jobs"] / s["wall_s"] if s["wall_s"] else 0.0
    cpu_rate = s["jobs"] / cpu if cpu else 0.0
    if a.grid:
        target = {"cpu_s": TARGET_GRID_CPU_S, "met": cpu <= TARGET_GRID_CPU_S}
        target["ratio"] = round(TARGET_GRID_CPU_S / cpu, 2) if cpu else 0.0
    else:
        target = {"jobs_per_cpu_s": TARGET_JOBS_PER_S, "met": cpu_rate >= TARGET_JOBS_PER_S}
        target["ratio"] = round(cpu_rate / TARGET_JOBS_PER_S, 2)
    out = {
        "benchmark": "simulator",
        "machine": machine(),
        "config": f"generated: {a.grid} nodes in {len(GRID_TYPES)} types, {a.days:g} days, "
        f"median runtime {a.median_h:.2g} h"
        if a.grid
        else str(Path(a.config).resolve().relative_to(ROOT))
        if Path(a.config).resolve().is_relative_to(ROOT)
        else a.config,
        "nodes": len(cfg.all_nodes()),
        "gpus": sum(n.resolved_gpus for n in cfg.all_nodes()),
        "trace_lines": len(trace),
        "generate_s": round(gen_s, 2),
        "parse_s": round(parse_s, 2),
        "jobs": s["jobs"],
        "steps": s["steps"],
        "simulated_days": round(s["simulated_s"] / 86400, 1),
        "wall_s": s["wall_s"],
        "jobs_per_wall_s": round(rate, 1),
        "cpu_s": round(cpu, 3),
        "jobs_per_cpu_s": round(cpu_rate, 1),
        "violations": len(s["violations"]),
        "first_violations": s["violations"][:5],
        "ledger_sum": s["ledger_sum"],
        "violations_capped": len(s["violations"]) >= 100,  # the summary keeps 100
        "refused": len(result.refused),
        "refused_why": refusal_reasons(result.refused),
        "profiled": bool(prof),
        "summary": {
            k: s[k]
            for k in (
                "succeeded",
                "failed",
                "expired",
                "cancelled",
                "unfinished",
                "preemptions",
                "gpu_utilization",
                "mean_wait_s",
                "p95_wait_s",
                "refunds",
            )
        },
        "target": target,
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
