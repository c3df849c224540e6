"""Commands per second through the leader's socket (durable), beside the in-process
figure for the same submissions.

Through the socket each command is what a client's request costs the leader: read a
JSON line, check the caller's rights, journal the command (one transaction), apply it
and write the job and its event (one transaction, with the journal's mark), write the
answer (one transaction), reply. The leader runs in its own process (`--serve`) on
simulated agents; the clients are 1 and 8 connections from this process. Left out:
the CLI's own start-up (`skyops submit`; the client here is a library call) and the
fleet (simulated agents).

    python benchmarks/api_commands.py [--jobs 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.machine import engine_version, machine  # noqa: E402
from skyops_tui.api.client import ApiClient, NoLeader  # noqa: E402
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


def spec(i: int, tag: str) -> dict:
    return {
        "name": f"{tag}-{i}",
        "user": "bench",
        "mode": "flex",
        "gpus": 1 + i % 4,
        "gpu_type": "H100",
        "bid": 0.75 + (i % 100) / 100,
        "argv": ["true"],
        "runtime": 3600.0,
    }


def runtime(db: Path, sock: Path | None) -> Runtime:
    clock = SystemClock()
    ex = SimExecutor(clock, 5, 120)  # type: ignore[arg-type]
    cfg = parse_config(CONFIG, "benchmark config")
    return Runtime(cfg, ex, clock=clock, store=Store(db), user="bench", socket_path=sock)


async def serve(db: Path, sock: Path) -> None:
    rt = runtime(db, sock)
    await rt.start()
    print("serving", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await rt.stop()


async def through_socket(sock: Path, n: int, conns: int, tag: str) -> float:
    clients = [await ApiClient.connect(sock) for _ in range(conns)]

    async def run(c: ApiClient, k: int) -> None:
        for i in range(k, n, conns):
            await c.command("submit", {"spec": spec(i, tag)})

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c, k) for k, c in enumerate(clients)))
    elapsed = time.perf_counter() - t0
    for c in clients:
        await c.close()
    return n / elapsed


async def in_process(db: Path, n: int) -> float:
    rt = runtime(db, None)
    await rt.start()
    specs = [JobSpec(**spec(i, "inproc")) for i in range(n)]
    t0 = time.perf_counter()
    for k, s in enumerate(specs):
        rt.scheduler.submit(s)
        if k % 200 == 199:
            await asyncio.sleep(0)
    elapsed = time.perf_counter() - t0
    await rt.stop()
    rt.store.close()
    return n / elapsed


async def wait_serving(sock: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            c = await ApiClient.connect(sock)
            await c.close()
            return
        except NoLeader:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the benchmark's leader did not start") from None
            await asyncio.sleep(0.05)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--jobs", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--serve", nargs=2, metavar=("DB", "SOCKET"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(Path(args.serve[0]), Path(args.serve[1])))
        return
    load = os.getloadavg()[0]
    rounds: dict[str, list[float]] = {"socket_1_conn": [], "socket_8_conns": [], "in_process": []}
    for r in range(args.rounds):
        with tempfile.TemporaryDirectory() as d:
            folder = Path(d)
            sock = folder / "api.sock"
            proc = subprocess.Popen(
                [sys.executable, __file__, "--serve", str(folder / "api.db"), str(sock)],
                stdout=subprocess.DEVNULL,
            )
            try:
                asyncio.run(wait_serving(sock, proc))
                one = asyncio.run(through_socket(sock, args.jobs, 1, f"a{r}"))
                eight = asyncio.run(through_socket(sock, args.jobs, 8, f"b{r}"))
            finally:
                proc.terminate()
                proc.wait(30)
            rounds["socket_1_conn"].append(round(one, 1))
            rounds["socket_8_conns"].append(round(eight, 1))
            rounds["in_process"].append(
                round(asyncio.run(in_process(folder / "ip.db", args.jobs)), 1)
            )
    print(
        json.dumps(
            {
                "benchmark": "api_commands",
                "jobs_per_round": args.jobs,
                "rounds": rounds,
                "median_per_second": {k: statistics.median(v) for k, v in rounds.items()},
                "machine": machine(),
                "load_at_start": round(load, 2),
                "engine": engine_version(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
