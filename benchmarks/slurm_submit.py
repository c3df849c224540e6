"""Skyops on Slurm vs sbatch directly, on a localhost Slurm (8 nodes x 8 GRES GPUs).

- Submissions per second: 64 one-GPU Priority jobs (the cluster's 64 GPUs), by
  `sbatch` in a loop, and through a Skyops console (submit, scheduling pass, SQLite
  write, then the backend's sbatch), counted until Slurm holds every job.
- Submit to start: one Priority job at a time on an idle cluster, from the submit call
  until `squeue` shows it RUNNING (and, through Skyops, until the console has heard).

Needs root, slurm-wlm and munge (skyops_tui/slurm/local.py starts the cluster).
Left out: the jobs' own run (they sleep), and Skyops' front door (the console submits
in-process, not through the socket or `skyops submit`).

    python benchmarks/slurm_submit.py [--jobs 64] [--starts 5] [--json]
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

from skyops_tui.clock import SystemClock  # noqa: E402
from skyops_tui.domain.config import parse_config  # noqa: E402
from skyops_tui.domain.model import JobState  # noqa: E402
from skyops_tui.domain.specs import JobSpec  # noqa: E402
from skyops_tui.runtime import Runtime  # noqa: E402
from skyops_tui.slurm.executor import SlurmExecutor  # noqa: E402
from skyops_tui.slurm.local import LocalSlurm  # noqa: E402
from skyops_tui.store.db import Store  # noqa: E402


def running(slurm: LocalSlurm, ids: set[str]) -> set[str]:
    out = slurm.run("squeue", "-h", "-t", "R", "-o", "%i", check=False)
    return ids & set(out.split())


def wait(pred, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark waited too long")
        time.sleep(0.005)


def sbatch(slurm: LocalSlurm, out: Path) -> str:
    return slurm.run(
        "sbatch",
        "--parsable",
        "-p",
        "priority",
        "--gres=gpu:1",
        "--time=60",
        f"--output={out}",
        "--wrap",
        "sleep 600",
    ).strip()


def direct(slurm: LocalSlurm, n: int, starts: int, tmp: Path) -> dict:
    t0 = time.perf_counter()
    ids = {sbatch(slurm, tmp / "direct.out") for _ in range(n)}
    rate = n / (time.perf_counter() - t0)
    wait(lambda: running(slurm, ids) == ids)
    slurm.run("scancel", "--user=root", check=False)
    slurm.wait_quiet()
    lat = []
    for _ in range(starts):
        t0 = time.perf_counter()
        jid = sbatch(slurm, tmp / "direct.out")
        wait(lambda jid=jid: running(slurm, {jid}) == {jid})
        lat.append(time.perf_counter() - t0)
        slurm.run("scancel", jid)
        slurm.wait_quiet()
    return {"submissions_per_s": rate, "submit_to_running_s": lat}


def console(slurm: LocalSlurm, tmp: Path, name: str) -> Runtime:
    cfg = parse_config(
        {
            "cluster": {"name": name, "tick_s": 0.2, "settle_s": 0},
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [{"name": f"n{i}", "gpu_type": "H100", "gpus": 8} for i in range(1, 9)],
            "accounts": {"default_balance": 1_000_000_000},
            "backend": {
                "kind": "slurm",
                "slurm_conf": str(slurm.conf),
                "state_dir": str(tmp / name),
                "poll_s": 0.2,
            },
        },
        "benchmark config",
    )
    ex = SlurmExecutor(cfg, SystemClock())
    return Runtime(cfg, ex, store=Store(tmp / f"{name}.db"), user="bench")


def spec(k: int) -> JobSpec:
    return JobSpec(
        name=f"b{k}", user="bench", mode="priority", gpus=1, hours=1, argv=("sleep", "600")
    )


async def through_skyops(slurm: LocalSlurm, n: int, starts: int, tmp: Path) -> dict:
    rt = console(slurm, tmp, "bench")
    await rt.start()
    ex = rt.executor
    try:
        while not all(n.status.value == "up" for n in rt.grid.nodes.values()):
            await asyncio.sleep(0.01)
        t0 = time.perf_counter()
        jobs = [rt.scheduler.submit(spec(k)) for k in range(n)]
        while not all(ex.runs.get(j.id) and ex.runs[j.id].slurm_id for j in jobs):
            await asyncio.sleep(0.001)
        rate = n / (time.perf_counter() - t0)
        ids = {ex.runs[j.id].slurm_id for j in jobs}
        while running(slurm, ids) != ids:
            await asyncio.sleep(0.005)
        for j in jobs:
            rt.scheduler.cancel(j.id)
        while not all(j.finished for j in jobs):
            await asyncio.sleep(0.01)
        await asyncio.to_thread(slurm.wait_quiet)
        lat, heard = [], []
        for k in range(starts):
            t0 = time.perf_counter()
            job = rt.scheduler.submit(spec(n + k))
            while not (ex.runs.get(job.id) and ex.runs[job.id].slurm_id):
                await asyncio.sleep(0.001)
            sid = ex.runs[job.id].slurm_id
            while running(slurm, {sid}) != {sid}:
                await asyncio.sleep(0.005)
            lat.append(time.perf_counter() - t0)
            while job.state is not JobState.RUNNING:
                await asyncio.sleep(0.005)
            heard.append(time.perf_counter() - t0)
            rt.scheduler.cancel(job.id)
            while not job.finished:
                await asyncio.sleep(0.01)
            await asyncio.to_thread(slurm.wait_quiet)
        return {"submissions_per_s": rate, "submit_to_running_s": lat, "console_heard_s": heard}
    finally:
        await rt.stop()
        rt.store.close()


def summary(xs: list[float]) -> str:
    return f"median {statistics.median(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=64)
    ap.add_argument("--starts", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="skyops-slurm-bench-") as d:
        tmp = Path(d)
        slurm = LocalSlurm(tmp / "slurm").start()
        try:
            res = {
                "sbatch": direct(slurm, args.jobs, args.starts, tmp),
                "skyops": asyncio.run(through_skyops(slurm, args.jobs, args.starts, tmp)),
                "slurm": slurm.run("sinfo", "--version").strip(),
            }
        finally:
            slurm.stop()
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(res["slurm"])
    for k in ("sbatch", "skyops"):
        r = res[k]
        print(
            f"{k}: {r['submissions_per_s']:.0f} submissions/s; submit -> RUNNING in Slurm "
            f"{summary(r['submit_to_running_s'])}"
        )
    print(f"skyops: submit -> console shows running {summary(res['skyops']['console_heard_s'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
