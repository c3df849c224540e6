"""The leader's memory as its history grows: a real `skyops serve` process with 2,000
live jobs, then 100,000 more submitted and ended through its API, in batches.

    python benchmarks/serve_memory.py [--live 2000] [--ended 100000] [--every 20000]
    python benchmarks/serve_memory.py --root /path/to/another/checkout   # before/after
    python benchmarks/serve_memory.py --grid ssh     # the node over SSH (or slurm)

Whole path measured: the serve process's resident memory (VmRSS, and its peak VmHWM,
from /proc/PID/status) and CPU seconds, at start (0 jobs), with the live jobs queued,
after each `--every` ended jobs, and after listing every job as `skyops jobs --all`
does (the `jobs` query, 2,000 jobs a page). The
state file is created (at the current schema) before the leader starts, as for a
leader restarted on its file. The jobs go through the leader's socket as a
client's do: one `submit` of an array per batch (`--batch`, 500 jobs), then one `cancel`
per job, from 16 connections at once (each command journaled, applied, written and
group-committed before its answer). The one node is drained, so the live jobs are
queued ones and the ended ones are cancelled from the queue: no job runs, no agent
process is started, and what is measured is the leader's own memory for its jobs.
What the leader loads depends on how it reaches its node (`--grid`, benchmarks/leader.py):
`local` (the default), `ssh` (asyncssh and cryptography; nothing answers, the leader
keeps trying) or `slurm` (the Slurm executor; no Slurm needs to run).

Also reported: the floor, a bare interpreter that imports what `skyops serve` imports
(`python -c 'import skyops_tui.cli.main, ...'`, asyncio imported without ssl as
`skyops` does), and where that memory goes (the RSS each step of those imports adds,
and a Grid's bytes per queued job by tracemalloc), measured in processes of their own.

Serve runs from a copy of the tree's packages with their bytecode compiled, as pip
compiles a package it installs: serve is measured as installed, not compiling its
modules at start. Left out: running jobs (their shims' memory is the agent's: benchmarks/... shim
figures), the SQLite page cache beyond what these commands touch, the watch stream,
and with `--grid ssh` a live SSH session's own memory (nothing answers there: the
figure is the SSH library loaded, not a connection held).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.leader import GRIDS, config, cpu_s, drained_leader  # noqa: E402
from benchmarks.machine import machine  # noqa: E402
from skyops_tui.cli.headless import JOBS_PAGE  # noqa: E402

TARGET_MB = 40.0
# Jobs per submitted array. The target is a leader with 2,000 live jobs as its history
# grows, so a batch keeps the live count near that: 500 make 2,500 at most. Arrays of
# 5,000 (`--batch 5000`) had 7,000 live at once, and the heap they grew stays.
BATCH = 500
CONNECTIONS = 16
IMPORTS = (
    "import skyops_tui.cli.main, skyops_tui.cli.console, skyops_tui.runtime, "
    "skyops_tui.api.server, skyops_tui.fleet.executor, skyops_tui.control.commands"
)
# What reaching the node adds to the imports (cli/console.py's transports, build_runtime).
IGNORE = shutil.ignore_patterns("__pycache__")
GRID_IMPORTS = {
    "local": (),
    "ssh": ("import skyops_tui.fleet.ssh",),
    "slurm": ("import skyops_tui.slurm.executor",),
}


def status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM in MB, and CPU seconds, of a process."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    out["cpu_s"] = round(cpu_s(pid), 2)
    return out


class Client:
    """One connection to the leader's socket, one request at a time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.f = self.sock.makefile("rwb")
        self.hello = json.loads(self.f.readline())
        self.n = 0

    def ask(self, type_: str, kind: str, payload: dict) -> dict:
        self.n += 1
        msg = {"v": 1, "type": type_, "id": self.n, "kind": kind, "payload": payload}
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        reply = json.loads(self.f.readline())
        if reply.get("type") != "ok":
            raise RuntimeError(f"{kind} {payload}: {reply}")
        return reply["result"]

    def close(self) -> None:
        self.sock.close()


def submit(c: Client, name: str, count: int) -> list[int]:
    spec = {"name": name, "mode": "priority", "hours": 1, "gpus": 1, "argv": ["sleep", "600"]}
    spec["user"] = c.hello["user"]
    got = c.ask("command", "submit", {"spec": spec, "count": count})
    return [j["id"] for j in got["jobs"]]


def cancel_all(clients: list[Client], ids: list[int]) -> None:
    errors: list[BaseException] = []

    def run(c: Client, mine: list[int]) -> None:
        try:
            for jid in mine:
                c.ask("command", "cancel", {"ref": str(jid)})
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=(c, ids[k :: len(clients)]))
        for k, c in enumerate(clients)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


STEPS = (
    # As cli/entry.py prepares every command but `submit`: asyncio without ssl, pydantic
    # without importlib.metadata (an older checkout, given as --root, imports them whole).
    "import skyops_tui.cli.entry as e; "
    "getattr(e, 'lean_imports', getattr(e, 'asyncio_without_tls', lambda: None))()",
    "import sqlite3, json, argparse, logging",
    "import pydantic",
    "import skyops_tui.domain.config",
    "import skyops_tui.policy.grid, skyops_tui.policy.planner",
    "import skyops_tui.store.db, skyops_tui.runtime",
    "import skyops_tui.fleet.executor",
)


def floor_and_breakdown(env: dict, live: int, grid: str, cwd: Path) -> dict:
    """In processes of their own: the RSS of a bare interpreter, then after each step of
    the imports `skyops serve` makes for `grid` (what each adds, in that order), and a
    Grid's bytes per queued job (tracemalloc). Run in `cwd`, not the checkout: `-c` puts
    the working directory first on the path."""
    all_steps = (*STEPS, *GRID_IMPORTS[grid], IMPORTS)
    steps = "\n".join(f"{step}\nout.append(({step!r}, rss()))" for step in all_steps)
    code = f"""
import json
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS'):
            return int(line.split()[1]) / 1024
out = [('python', rss())]
{steps}
print(json.dumps(out))
"""

    def output(program: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", program], env=env, check=True, capture_output=True, text=True,
            cwd=cwd,
        )  # fmt: skip
        return run.stdout

    got = json.loads(output(code))
    added = [
        {
            "step": step,
            "rss_mb": round(mb, 1),
            "adds_mb": round(mb - got[k - 1][1], 1) if k else None,
        }
        for k, (step, mb) in enumerate(got)
    ]
    per_job = f"""
import json, tracemalloc, tomllib
{IMPORTS}
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import Mode
from skyops_tui.domain.specs import JobSpec
from skyops_tui.policy.grid import Grid
cfg = parse_config(tomllib.loads({config("memory-bench", grid)!r}), 'bench')
g = Grid(cfg, 0.0)
g.ensure_account('bench', 0.0)
spec = JobSpec(name='x', user='bench', mode=Mode.PRIORITY, gpus=1, hours=1, argv=['sleep', '600'])
tracemalloc.start()
g.submit_array(spec, [f'live-{{i}}' for i in range({live})], 0.0)
g.drain()
print(round(tracemalloc.get_traced_memory()[0] / {live}))
"""
    return {"imports": added, "grid_bytes_per_queued_job": int(output(per_job))}


def compiled_copy(root: Path, tmp: Path) -> tuple[Path, Path]:
    """The packages as pip installs them: a copy of the tree's with its bytecode compiled
    beside it. A checkout run where PYTHONDONTWRITEBYTECODE is set (this sandbox sets it)
    has none, and then every start compiles every module, whose heap stays with the
    process. Not a cache prefix (PYTHONPYCACHEPREFIX): Python then reads every module's
    bytecode from the prefix alone, so the standard library and site-packages, whose
    compiled files lie beside them, were compiled at each start (asyncssh's sftp module
    alone 8.5 MB). Nothing is written into the tree."""
    dst = tmp / "tree"
    shutil.copytree(root / "skyops_tui", dst / "skyops_tui", ignore=IGNORE)
    shutil.copytree(root / "agent" / "skyops_agent", dst / "agent" / "skyops_agent", ignore=IGNORE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dst)], env=env, check=True,
                   capture_output=True)  # fmt: skip
    return dst, dst / "agent"


def measure(
    root: Path, live: int, ended: int, every: int, batch_size: int = BATCH, grid: str = "local"
) -> dict:
    with tempfile.TemporaryDirectory(prefix="skyops-mem-bench-") as d, ExitStack() as stack:
        tmp = Path(d)
        env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "SKYOPS_USER": "bench"}
        node, text = "node-a", config("memory-bench", grid)
        if grid == "slurm":
            from skyops_tui.slurm.local import LocalSlurm

            slurm = LocalSlurm(tmp / "slurm", nodes=1, prefix="node-").start()
            stack.callback(slurm.stop)
            node, env["SLURM_CONF"] = slurm.node_names[0], str(slurm.conf)
            text = config("memory-bench", grid, node) + f'state_dir = "{tmp / "jobs"}"\n'
        (tmp / "config.toml").write_text(text)
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in compiled_copy(root, tmp))
        base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp / "config.toml")]
        base += ["--db", str(tmp / "s.db")]
        # The file exists, at this schema, before the leader opens it: a leader is
        # started (or restarted) on its file far more often than it creates one, and
        # creating one loads the migrations' library (sqlite-utils) for good.
        subprocess.run([sys.executable, "-c", f"from skyops_tui.store.db import Store; "
                        f"Store({str(tmp / 's.db')!r}).close()"], env=env, check=True,
                       cwd=tmp)  # fmt: skip
        points: list[dict] = []
        with drained_leader(tmp, base, env, cwd=tmp, node=node) as leader:
            t0 = time.perf_counter()

            def point(label: str, live_n: int, ended_n: int) -> None:
                time.sleep(1.5)  # a tick or so: the leader settles
                p = {"at": label, "live": live_n, "ended": ended_n, **status(leader.pid)}
                p["wall_s"] = round(time.perf_counter() - t0, 1)
                points.append(p)
                print(json.dumps(p), file=sys.stderr)

            point("start", 0, 0)
            clients = [Client(tmp / "s.sock") for _ in range(CONNECTIONS)]
            done = 0
            left = live
            while left:
                n = min(batch_size, left)
                submit(clients[0], f"live{live - left}", n)
                left -= n
            point("live", live, 0)
            batch = 0
            while done < ended:
                n = min(batch_size, ended - done)
                ids = submit(clients[0], f"e{batch}", n)
                cancel_all(clients, ids)
                done += n
                batch += 1
                if done % every == 0 or done == ended:
                    point(f"ended {done}", live, done)
            # As `skyops jobs --all` asks: a page of JOBS_PAGE jobs an answer.
            listed = cancelled = pages = 0
            after = 0
            while after is not None:
                page = clients[0].ask("query", "jobs", {"limit": JOBS_PAGE, "after": after})
                listed += len(page["jobs"])
                cancelled += sum(j["state"] == "cancelled" for j in page["jobs"])
                after, pages = page["next"], pages + 1
            counted = {"listed": listed, "cancelled": cancelled, "pages": pages}
            point("after listing every job", live, done)
            for c in clients:
                c.close()
        floor = floor_and_breakdown(env, live, grid, tmp)
        return {"grid": grid, "points": points, "jobs_query": counted, "floor": floor}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=2000)
    ap.add_argument("--ended", type=int, default=100_000)
    ap.add_argument("--every", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=BATCH, help="jobs per submitted array")
    ap.add_argument("--root", type=Path, default=ROOT, help="the checkout whose skyops runs")
    ap.add_argument("--grid", choices=GRIDS, default="local", help="how the node is reached")
    a = ap.parse_args()
    if a.every % a.batch:
        ap.error("--every must be a multiple of --batch")
    r = measure(a.root.resolve(), a.live, a.ended, a.every, a.batch, a.grid)
    pts = r["points"]
    live_rss = next(p["VmRSS"] for p in pts if p["at"] == "live")
    ended_rss = [p["VmRSS"] for p in pts if p["at"].startswith("ended")]
    r["summary"] = {
        "rss_live_mb": live_rss,
        "rss_after_ended_mb": ended_rss,
        # Flat means this: from the first `--every` ended jobs to the last.
        "growth_mb_over_ended": round(ended_rss[-1] - ended_rss[0], 1) if ended_rss else None,
        "target_mb": TARGET_MB,
        "met": live_rss <= TARGET_MB and bool(ended_rss) and max(ended_rss) <= TARGET_MB,
    }
    out = {"benchmark": "serve_memory", "root": str(a.root), "machine": machine(), **r}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
