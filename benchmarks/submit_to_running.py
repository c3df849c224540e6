"""A burst of 64 one-GPU jobs on free GPUs, from the first request until every one is
running.

Whole path timed: 64 clients each open a connection to the leader's Unix socket and
send one `submit` (JSON line, caller's uid from the kernel, rights, the command
journalled, applied and written with its event, the group commit's fsync, the
answer); each command wakes the scheduler loop at once (no wait for its tick), whose
pass starts what fits and hands each start to the executor; the executor reports the
start and the next pass records the job running. The clock stops when the leader's
grid holds all 64 jobs RUNNING (checked after every pass).

The executor is the simulated one (`SimExecutor`: a start is reported at once), so
what an agent needs to launch a process is left out, as are the fleet's SSH links. The
leader and the clients share one process and event loop (the clients' work slows the
leader, not the reverse). Slurm's figure for the same burst (machine facts: 8 slurmd x
8 GRES GPUs on localhost, all running in 1.2-1.5 s) is quoted, not rerun here.

    python benchmarks/submit_to_running.py [--rounds 5] [--jobs 64]
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
from skyops_tui.api.client import ApiClient  # noqa: E402
from skyops_tui.clock import SystemClock  # noqa: E402
from skyops_tui.control.commands import Submit  # noqa: E402
from skyops_tui.domain.config import parse_config  # noqa: E402
from skyops_tui.domain.model import JobState  # noqa: E402
from skyops_tui.domain.specs import JobSpec  # noqa: E402
from skyops_tui.runtime import Runtime, current_user  # noqa: E402
from skyops_tui.sim.agents import SimExecutor  # noqa: E402
from skyops_tui.store.db import Store  # noqa: E402

TARGET_S = 0.5
SLURM_S = 1.2  # /work/shared/notes/machine-facts.md


def config(user: str) -> dict:
    return {
        "cluster": {"tick_s": 1.0},
        "node_types": [{"name": "H100", "rate": 2.5}],
        "nodes": [{"name": "n", "fake_gpus": "8xH100-80GB", "count": 8}],
        "accounts": {"default_balance": 1_000_000, "operators": [user]},
    }


async def one_round(n: int, folder: Path) -> dict:
    user = current_user()
    clock = SystemClock()
    store = Store(folder / "burst.db")
    rt = Runtime(
        parse_config(config(user), "benchmark config"),
        SimExecutor(clock, 5, 120),  # type: ignore[arg-type]
        clock=clock,
        store=store,
        user=user,
        socket_path=folder / "burst.sock",
    )
    await rt.start()
    names = [f"burst-{i}" for i in range(n)]
    done = asyncio.Event()
    passes = 0

    def check() -> None:
        nonlocal passes
        passes += 1
        g = rt.grid
        ids = [g.job_names.get(name) for name in names]
        if all(i is not None and g.jobs[i].state is JobState.RUNNING for i in ids):
            done.set()

    rt.local.listeners.append(check)
    answered: list[float] = []

    async def client(name: str) -> None:
        spec = JobSpec(name=name, user=user, mode="priority", gpus=1, gpu_type="H100", hours=1,
                       argv=("true",), runtime=3600.0)  # fmt: skip
        async with ApiClient.connected(rt.api_path()) as c:
            await c.command("submit", Submit(spec=spec).payload())
        answered.append(time.perf_counter() - t0)

    passes0 = rt.local.passes
    t0 = time.perf_counter()
    await asyncio.gather(*(client(name) for name in names))
    await asyncio.wait_for(done.wait(), 30)
    elapsed = time.perf_counter() - t0
    out = {
        "jobs": n,
        "all_running_s": round(elapsed, 4),
        "last_answer_s": round(max(answered), 4),
        "scheduler_passes": rt.local.passes - passes0,
        "fsyncs": store.fsyncs,
    }
    await rt.stop()
    store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    rounds = []
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            rounds.append(asyncio.run(one_round(args.jobs, Path(d))))
        print(f"round {r + 1}: all running in {rounds[-1]['all_running_s']} s", file=sys.stderr)
    med = statistics.median(r["all_running_s"] for r in rounds)
    out = {
        "benchmark": "burst of jobs on free GPUs until all running (socket, simulated executor)",
        "machine": machine(),
        "engine": engine_version(),
        "rounds": rounds,
        "median_all_running_s": med,
        "slurm_s": SLURM_S,
        "ratio_to_slurm": round(med / SLURM_S, 3),
        "target": {"seconds": TARGET_S, "met": med <= TARGET_S},
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
