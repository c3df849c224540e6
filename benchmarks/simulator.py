"""Simulator throughput: the real engine, market and ledger through a big mixed trace.

    python benchmarks/simulator.py                  # 100000 jobs on examples/sim-config.toml
    python benchmarks/simulator.py --jobs 10000 --profile 30

Generates the trace with examples/gen_trace.py (seeded: the same trace every run),
writes it as JSON Lines, reads it back as `skyops simulate` does, and simulates it.
Prints JSON: jobs per wall second of the simulation (the trace's generation and
parsing are timed apart; jobs per CPU second too, which other load on the machine
disturbs less), the summary's violations count and ledger_sum, and whether
the target (>= 2000 jobs per wall second) is met.

Whole path: `simulate()` as `skyops simulate` runs it (reports absorbed, passes,
actions applied, simulated agents, billing, the invariant checks each step). Left out:
the store (the simulator keeps the grid in memory, no SQLite) and the trace's
generation and parsing (timed apart).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
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

TARGET_JOBS_PER_S = 2000


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
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--load", type=float, default=0.9, help="offered GPU-hours / capacity")
    ap.add_argument("--config", default=str(ROOT / "examples" / "sim-config.toml"))
    ap.add_argument("--trace", help="simulate this trace instead of generating one")
    ap.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile; top N to stderr")
    a = ap.parse_args(argv)
    cfg = load_config(a.config)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(a.trace) if a.trace else Path(tmp) / "trace.jsonl"
        t = time.perf_counter()
        if not a.trace:
            gen_trace.write(gen_trace.mixed(cfg, a.jobs, a.seed, a.load), path)
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
    out = {
        "benchmark": "simulator",
        "machine": machine(),
        "config": str(Path(a.config).resolve().relative_to(ROOT))
        if Path(a.config).resolve().is_relative_to(ROOT)
        else a.config,
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
        "jobs_per_cpu_s": round(s["jobs"] / cpu, 1) if cpu else 0.0,
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
        "target": {
            "jobs_per_wall_s": TARGET_JOBS_PER_S,
            "met": rate >= TARGET_JOBS_PER_S,
            "ratio": round(rate / TARGET_JOBS_PER_S, 2),
        },
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
