"""Telemetry over real SSH: what N agents at 1 Hz cost the console, and how late it hears.

One command, JSON on stdout (progress on stderr):

    python benchmarks/telemetry.py [--agents 16,64,128] [--seconds 20] [--profile N]

For each size three kinds of process run on this machine, all on 127.0.0.1:

- the *box*: this file with `--role box`, an asyncssh server (the approach of
  tests/fleet/sshd.py: generated host key, one authorised client key, SFTP rooted in a
  temp home, exec requests run as real subprocesses with their stdio relayed);
- the *agents*: N real `skyops_agent serve --stdio --fake-gpus 8xH100-80GB`, each
  pushed as the zipapp over SFTP and started over its own SSH connection, each in its
  own `~/.skyops/<node>` as on N separate boxes;
- the *console*: this file with `--role console`, a fresh interpreter running the real
  `FleetExecutor` (one `NodeLink` + `SshTransport` per node, known_hosts trusting the
  generated host key), subscribed at 1 Hz as the console subscribes.

Once every node is up (plus a short warm-up), the console measures itself for
`--seconds`: its CPU time (every thread of the process) over wall time, as % of one
core, and for every telemetry event the delay from the agent's `at` stamp to the
moment the console's AgentLink hands the decoded event over (same clock: one machine).
The box and the agents are measured too, only to show how loaded the machine was.

Every process started is in a process group of its own and is killed at the end of
each size, also on failure or Ctrl-C; the JSON says how many were left to kill.

Left out: scheduling and the store (no job runs; only telemetry flows), and real
GPUs (the agents' GPUs are fake, so NVML's own cost is not in the agents' figure).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import ctypes
import getpass
import json
import logging
import os
import pstats
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import asyncssh  # noqa: E402

from benchmarks.machine import machine, summary_ms  # noqa: E402

HOST = "127.0.0.1"
FAKE_GPUS = "8xH100-80GB"
INTERVAL_S = 1.0
WARMUP_S = 3.0
CHUNK = 1 << 16
TARGET_AGENTS = 128
TARGET_CPU_PCT = 10.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ processes
def _die_with_parent() -> None:
    """In a child between fork and exec: killed when the process that started it dies
    (Linux), so a benchmark killed with SIGKILL still leaves nothing running."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG


def _group(pgid: int) -> list[int]:
    """Live pids whose process group is `pgid` (zombies not counted)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            pids.append(int(entry))
    return pids


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds used so far by the live processes of a process group."""
    total = 0
    for pid in _group(pgid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def _machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def _stop_group(proc: subprocess.Popen | None, grace_s: float = 5.0) -> int:
    """TERM the process group led by `proc`, then KILL whatever is left; returns how
    many processes still had to be killed."""
    if proc is None:
        return 0
    pgid = proc.pid
    # The leader first (the box stops its agents itself), then the whole group.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(grace_s)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        proc.poll()
        if not _group(pgid):
            break
        time.sleep(0.05)
    left = _group(pgid)
    if left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return len(left)


def _start(role_args: list[str], stdout=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *role_args],
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        start_new_session=True,  # its own process group: one killpg ends it and its children
        preexec_fn=_die_with_parent,
    )


# ------------------------------------------------------------------------ box
async def serve_box(folder: Path) -> None:
    """An asyncssh server on 127.0.0.1: SFTP in `folder/home`, commands run there as
    real subprocesses (no shell), their stdio relayed to the channel."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    home = folder / "home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ, HOME=str(home))
    procs: set[asyncio.subprocess.Process] = set()

    async def run_command(process: asyncssh.SSHServerProcess) -> None:
        command = process.command
        if not command:
            process.stderr.write(b"commands only, no shells\n")
            process.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            *shlex.split(command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=home,
            env=env,
            preexec_fn=_die_with_parent,
        )
        procs.add(proc)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            try:
                while data := await process.stdin.read(CHUNK):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except Exception:
                pass
            finally:
                with contextlib.suppress(Exception):
                    proc.stdin.close()  # the client went away: the agent sees EOF

        async def relay(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
            try:
                while data := await source.read(CHUNK):
                    sink.write(data)
                    await sink.drain()
            except Exception:
                with contextlib.suppress(Exception):
                    while await source.read(CHUNK):
                        pass

        feeding = asyncio.ensure_future(feed())
        try:
            await asyncio.gather(
                relay(proc.stdout, process.stdout), relay(proc.stderr, process.stderr)
            )
            code = await proc.wait()
        finally:
            feeding.cancel()
            procs.discard(proc)
        with contextlib.suppress(Exception):
            process.exit(code)

    server = await asyncssh.listen(
        HOST,
        0,
        server_host_keys=[asyncssh.read_private_key(folder / "host_key")],
        authorized_client_keys=asyncssh.read_authorized_keys(str(folder / "authorized_keys")),
        process_factory=run_command,
        sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=os.fsencode(home)),
        encoding=None,
        allow_scp=False,
        backlog=1024,  # every node connects at once
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tmp = folder / "port.tmp"
    tmp.write_text(str(server.get_port()))
    tmp.rename(folder / "port")
    try:
        await stop.wait()
    finally:
        for proc in list(procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for proc in list(procs):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        server.close()


# -------------------------------------------------------------------- console
class Tap:
    """A Transport around the real one: stamps each telemetry event as the console's
    AgentLink hands it over, then passes it on to the NodeLink unchanged."""

    def __init__(self, inner, record: Callable[[str, float], None]) -> None:
        self.inner = inner
        self.record = record

    def describe(self) -> str:
        return self.inner.describe()

    async def connect(self, on_event):
        name = self.inner.node.name
        record = self.record

        def tapped(msg: dict) -> None:
            if msg.get("type") == "telemetry":
                record(name, time.time() - float(msg.get("at") or 0.0))
            on_event(msg)

        return await self.inner.connect(tapped)


async def run_console(args: argparse.Namespace) -> dict:
    from skyops_tui.clock import SystemClock
    from skyops_tui.domain.config import parse_config
    from skyops_tui.domain.model import NodeStatus
    from skyops_tui.fleet.executor import FleetExecutor
    from skyops_tui.fleet.ssh import SshTransport
    from skyops_tui.scheduler.executor import NodeChanged

    folder = Path(args.dir)
    # SshTransport builds the agent zipapp in a temp folder it never removes: keep it
    # in this size's folder, which the orchestrator removes.
    tempfile.tempdir = str(folder)
    port = int((folder / "port").read_text())
    n = args.agents
    names = [f"n{i:03d}" for i in range(n)]
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [
                {
                    "name": name,
                    "host": HOST,
                    "port": port,
                    "user": getpass.getuser(),
                    "identity": str(folder / "client_key"),
                    "python": sys.executable,
                    "agent_dir": f"~/.skyops/{name}",  # one state dir per node, as on N boxes
                    "fake_gpus": FAKE_GPUS,
                }
                for name in names
            ],
        },
        "telemetry benchmark",
    )
    window = {"on": False}
    delays: list[float] = []
    per_node: Counter[str] = Counter()

    def record(node: str, delay: float) -> None:
        if window["on"]:
            delays.append(delay)
            per_node[node] += 1

    transports = {
        node.name: Tap(
            SshTransport(
                node,
                known_hosts=str(folder / "known_hosts"),
                ssh_config=str(folder / "no-ssh-config"),
                connect_timeout=args.connect_timeout,
            ),
            record,
        )
        for node in cfg.all_nodes()
    }
    changes: list[tuple[float, str, str]] = []
    ex = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=INTERVAL_S)  # type: ignore[arg-type]
    ex.bind(
        lambda r: (
            changes.append((time.monotonic(), r.node, r.status.value))
            if isinstance(r, NodeChanged)
            else None
        )
    )
    t0 = time.monotonic()
    await ex.start()
    try:
        while not all(link.status is NodeStatus.UP for link in ex.links.values()):
            if time.monotonic() - t0 > args.connect_timeout:
                down = [(k, v.error) for k, v in ex.links.items() if v.status is not NodeStatus.UP]
                raise RuntimeError(
                    f"{len(down)} of {n} nodes not up after {args.connect_timeout:.0f} s: "
                    + "; ".join(f"{k}: {e or 'connecting'}" for k, e in down[:5])
                )
            await asyncio.sleep(0.1)
        connect_s = time.monotonic() - t0
        retries = sum(link.connects for link in ex.links.values()) - n
        await asyncio.sleep(WARMUP_S)

        load0 = os.getloadavg()
        box0, busy0 = _group_cpu_s(args.box_pgid), _machine_busy()
        connects0 = sum(link.connects for link in ex.links.values())
        prof = cProfile.Profile() if args.profile else None
        window["on"] = True
        w0, c0 = time.monotonic(), time.process_time()
        if prof is not None:
            prof.enable()
        await asyncio.sleep(args.seconds)
        if prof is not None:
            prof.disable()
        w1, c1 = time.monotonic(), time.process_time()
        window["on"] = False
        box1, busy1 = _group_cpu_s(args.box_pgid), _machine_busy()
        load1 = os.getloadavg()
        connects1 = sum(link.connects for link in ex.links.values())
        not_up = [k for k, v in ex.links.items() if v.status is not NodeStatus.UP]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ex.close(), 20)

    wall = w1 - w0
    if prof is not None:
        print(f"--- cProfile of the console, {n} agents, {wall:.0f} s ---", file=sys.stderr)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(args.profile)
        pstats.Stats(prof, stream=sys.stderr).sort_stats("cumulative").print_stats(args.profile)
    got = sum(per_node.values())
    window_changes = [c for c in changes if w0 <= c[0] <= w1]
    return {
        "agents": n,
        "seconds": round(wall, 3),
        "console_cpu_s": round(c1 - c0, 3),
        "console_cpu_pct": round(100 * (c1 - c0) / wall, 2),
        "console_cpu_ms_per_event": round(1000 * (c1 - c0) / got, 3) if got else None,
        "latency": summary_ms(delays) if delays else None,
        "events": got,
        "events_expected": round(n * wall / INTERVAL_S),
        "nodes_heard": len(per_node),
        "fewest_events_per_node": min((per_node[k] for k in names), default=0),
        "connect_s": round(connect_s, 2),
        "connect_retries": retries,
        "reconnects_in_window": connects1 - connects0,
        "status_changes_in_window": len(window_changes),
        "not_up_at_end": not_up,
        "box_and_agents_cpu_pct": round(100 * (box1 - box0) / wall, 1),
        "machine_busy_pct": round(100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]), 1),
        "loadavg_1m": [round(load0[0], 2), round(load1[0], 2)],
        "profiled": bool(prof),
    }


# --------------------------------------------------------------- orchestrator
def _keys(folder: Path) -> None:
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(folder / "client_key")
    (folder / "authorized_keys").write_bytes(client.export_public_key())
    host = asyncssh.generate_private_key("ssh-ed25519")
    host.write_private_key(folder / "host_key")
    (folder / "host_key.pub").write_bytes(host.export_public_key())


def one_size(n: int, args: argparse.Namespace) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"skyops-telemetry-{n}-"))
    box = console = None
    result: dict = {"agents": n}
    try:
        _keys(folder)
        box = _start(["--role", "box", "--dir", str(folder)])
        deadline = time.monotonic() + 30
        while not (folder / "port").exists():
            if box.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the SSH server did not start")
            time.sleep(0.05)
        port = int((folder / "port").read_text())
        host_public = (folder / "host_key.pub").read_text().strip()
        (folder / "known_hosts").write_text(f"[{HOST}]:{port} {host_public}\n")
        role = ["--role", "console", "--dir", str(folder), "--agents", str(n)]
        role += ["--seconds", str(args.seconds), "--box-pgid", str(box.pid)]
        role += ["--connect-timeout", str(args.connect_timeout), "--profile", str(args.profile)]
        console = _start(role, stdout=subprocess.PIPE)
        limit = args.connect_timeout + WARMUP_S + args.seconds + 60
        try:
            out, _ = console.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the console did not finish within {limit:.0f} s") from None
        lines = out.decode().strip().splitlines()
        if console.returncode != 0 or not lines:
            raise RuntimeError(f"the console failed (exit status {console.returncode})")
        result = json.loads(lines[-1])
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        left = _stop_group(console) + _stop_group(box)
        result["processes_killed_at_cleanup"] = left
        shutil.rmtree(folder, ignore_errors=True)
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--agents", default="16,64,128", help="comma-separated sizes")
    p.add_argument("--seconds", type=float, default=20.0, help="measured window per size")
    p.add_argument("--connect-timeout", type=float, default=300.0)
    p.add_argument("--profile", type=int, default=0, help="cProfile top N of the console")
    p.add_argument(
        "--role", choices=["run", "box", "console"], default="run", help=argparse.SUPPRESS
    )
    p.add_argument("--dir", help=argparse.SUPPRESS)
    p.add_argument("--box-pgid", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.role == "box":
        # Killed agents race asyncio's child watcher at shutdown ("Unknown child process
        # pid ..., will report returncode 255"): harmless here, and not worth the noise.
        logging.getLogger("asyncio").setLevel(logging.ERROR)
        asyncio.run(serve_box(Path(args.dir)))
        return 0
    if args.role == "console":
        args.agents = int(args.agents)
        print(json.dumps(asyncio.run(run_console(args))), flush=True)
        return 0

    # Ctrl-C and SIGTERM both unwind through the cleanup in one_size.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = [int(x) for x in args.agents.split(",") if x.strip()]
    report = {
        "benchmark": "telemetry over SSH: console CPU and event latency",
        "machine": machine(),
        "fake_gpus": FAKE_GPUS,
        "interval_s": INTERVAL_S,
        "seconds": args.seconds,
        "results": [],
    }
    for n in sizes:
        print(f"{n} agents ...", file=sys.stderr, flush=True)
        r = one_size(n, args)
        report["results"].append(r)
        print(
            f"  {n} agents: console {r.get('console_cpu_pct')} % of a core, "
            f"latency {r.get('latency')}, load {r.get('loadavg_1m')}"
            + (f", ERROR {r['error']}" if "error" in r else ""),
            file=sys.stderr,
            flush=True,
        )
    at_target = next((r for r in report["results"] if r.get("agents") == TARGET_AGENTS), None)
    cpu = at_target.get("console_cpu_pct") if at_target else None
    report["target"] = {
        "what": f"{TARGET_AGENTS} agents: console <= {TARGET_CPU_PCT} % of one core",
        "measured_pct": cpu,
        "met": None if cpu is None else cpu <= TARGET_CPU_PCT,
        "ratio_to_target": None if cpu is None else round(cpu / TARGET_CPU_PCT, 2),
    }
    print(json.dumps(report, indent=2))
    return 1 if any("error" in r for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
