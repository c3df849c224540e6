"""Crash recovery: kill the console with SIGKILL while it runs real jobs, restart it,
and check that nothing was lost, run twice, double-booked or charged wrongly.

    python benchmarks/crash_harness.py --jobs 1000 --kills 12
    python benchmarks/crash_harness.py --jobs 120 --kills 4 --transport ssh   # real sshd
    python benchmarks/crash_harness.py --jobs 300 --kills 4 --locks 4        # lock faults
    python benchmarks/crash_harness.py --jobs 300 --kills 4 --disk-full 4    # full disk

The console is `skyops serve --config C --db D`, a real subprocess, leading a grid of
real agents (local subprocesses, or agents behind OpenSSH's sshd on 127.0.0.1). The
harness submits jobs in all three modes through the store's command queue (as any other
process would), kills the console at random points (progress thresholds, and moments
just after a restart, while it reconnects and reconciles), restarts it after a random
pause. With `--locks N` another process also takes the database exclusively
(`BEGIN EXCLUSIVE`, as a backup tool does) N times at random points, each for
`--lock-s` seconds, longer than the scheduler lease: the console cannot renew, must stop
acting, and take up again after. With `--disk-full N` the state database lives on a
small tmpfs of its own (mounted by the harness in a private mount namespace: it runs
itself under `unshare -m`), and N times at random points a filler file takes every free
byte of it for `--full-s` seconds, then is deleted: every write fails with SQLITE_FULL
(a real ENOSPC) while jobs run and end and clients keep submitting. The harness records
every answer a client got; what it was told was accepted must be in the store, what it
was told failed must never be applied. When every job has ended the harness checks, from
the store and from the agents' own job records (docs/store.md: the agent is the source
of truth for processes):

- states: every job ended, and its state matches its processes (no live process left,
  one agent run per recorded run, the last run's exit agrees with the state);
- no job ran twice: runs of one job never overlap, and their count is the job's own;
- no GPU double-booked: `check_placements` on the grid loaded from the store;
- the ledger sums to zero, every transaction balances, and each balance equals the sum
  of its account's entries;
- billing: each job is charged once for every second it held GPUs (see `check_billing`),
  and, at every kill and at the end, every Priority and Flex job's charge is what the
  per-second oracle computes from the store's prices and bids (see `check_oracle`);
- clients' answers: accepted means stored, failed means never applied (`check_answers`);
- with disk faults: the console logged each one and took up again when space returned,
  and a command run during one exited 4 naming the full disk.

Prints one JSON object: figures, kill points, and `violations` (must be empty). Exit
status 0 when there are none. See docs/reliability.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for p in (str(ROOT), str(ROOT / "agent")):
    if p not in sys.path:
        sys.path.insert(0, p)

from skyops_agent.jobs import JobRunner  # noqa: E402
from skyops_tui.api.client import ApiClient, LeaderGone, NoLeader  # noqa: E402
from skyops_tui.domain.config import load_config  # noqa: E402
from skyops_tui.domain.errors import Refused  # noqa: E402
from skyops_tui.domain.model import HOLDING, TERMINAL, JobState  # noqa: E402
from skyops_tui.fleet.executor import parse_agent_id  # noqa: E402
from skyops_tui.policy.invariants import check_placements  # noqa: E402
from skyops_tui.runtime import LEASE_TTL_S  # noqa: E402
from skyops_tui.store.control import lease_holder  # noqa: E402
from skyops_tui.store.db import Store  # noqa: E402
from skyops_tui.store.schema import StoreError  # noqa: E402
from tests import billing_oracle  # noqa: E402

CKPT_TRAIN = ROOT / "examples" / "ckpt_train.py"
USERS = {"priority": "ana", "commit": "team", "flex": "kim"}
RESERVATION = "nightly"
NODES = 4
GPUS_PER_NODE = 8
RATE = 2.5


def config_text(nodes: list[dict], heartbeat_s: float = 5.0) -> str:
    out = [
        "[cluster]",
        'name = "crash-harness"',
        "grace_s = 1",
        "stop_grace_s = 1",
        f"heartbeat_timeout_s = {heartbeat_s}",
        "tick_s = 0.2",
        "billing_interval_s = 1",
        "[pricing]",
        "min_slice_s = 2",
        "retry_backoff_s = 0",
        "[[node_types]]",
        'name = "H100"',
        f"rate = {RATE}",
        "[accounts]",
        'operators = ["ops"]',
        "default_balance = 1000000",
    ]
    for n in nodes:
        out.append("[[nodes]]")
        out += [f"{k} = {json.dumps(v)}" for k, v in n.items()]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------- workload
def workload(n: int, rng: random.Random) -> list[dict]:
    """`n` short jobs: 40 % Flex, 35 % Priority, 25 % Commit; `sleep` mostly, and one
    in ten the example checkpointing script (which answers the checkpoint signal)."""
    specs = []
    for i in range(n):
        r = rng.random()
        mode = "flex" if r < 0.40 else "priority" if r < 0.75 else "commit"
        if rng.random() < 0.1:
            argv = [sys.executable, str(CKPT_TRAIN), "--steps", str(rng.randint(3, 12))]
            argv += ["--step-seconds", "0.1", "--checkpoint-every", "2"]
        elif rng.random() < 0.1:
            argv = ["true"]
        else:
            argv = ["sleep", f"{rng.uniform(0.2, 2.0):.2f}"]
        spec: dict = {
            "name": f"{mode[0]}{i:05d}",
            "user": USERS[mode],
            "mode": mode,
            "gpus": rng.choice((1, 1, 2, 2, 4)),
            "gpu_type": "H100",
            "argv": argv,
        }
        if mode == "priority":
            spec["hours"] = 1
        elif mode == "commit":
            spec["reservation"] = RESERVATION
        else:
            spec["bid"] = round(rng.uniform(0.8, RATE), 2)
        specs.append(spec)
    return specs


# ------------------------------------------------------------------- lock fault
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
"""


class LockHolder:
    """Another process holding the state database exclusively (`BEGIN EXCLUSIVE`, as a
    backup tool does) from `hold` until `release`: every write waits for it, then fails
    with 'database is locked'; in WAL mode reads go on."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.proc: subprocess.Popen | None = None

    def hold(self) -> LockHolder:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LOCKER, str(self.db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "locked":
            self.release()
            raise RuntimeError(f"{self.db}: the lock holder could not lock it")
        return self

    def release(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> LockHolder:
        return self.hold()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ------------------------------------------------------------------- disk-full fault
IN_NAMESPACE = "SKYOPS_HARNESS_MOUNT_NS"  # set once the harness runs under unshare -m
DISK_MB = 64


def mount_tmpfs(folder: Path, size_mb: int) -> None:
    """A small file system of its own for the state database, so it can really fill."""
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        raise RuntimeError(
            f"--disk-full needs to mount a tmpfs on {folder} (root, in a private mount "
            f"namespace: unshare -m): {r.stderr.strip() or r.returncode}"
        )


def unmount(folder: Path) -> None:
    r = subprocess.run(["umount", str(folder)], capture_output=True)
    if r.returncode:  # a process still has a file open there: detach it all the same
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


class DiskFiller:
    """Takes every free byte of the file system holding the state database, from `fill`
    until `free`. The WAL is first checkpointed and truncated (as a backup tool or a
    `journal_size_limit` would), so the next commit must grow it, and fails.

    A commit of the leader's between the truncation and the last free byte taken gives
    its WAL room again: with the leader's checkpoints it then writes on over those
    blocks for the whole fault, and never meets the full disk (a run under three CPU
    hogs did so through both of its faults). So all but `RESERVE` is taken before the
    truncation, the rest right after, and where the WAL is not empty then, the space is
    given back and it is all done again."""

    RESERVE = 4 << 20  # room for the checkpoint's writes into the database file
    ATTEMPTS = 20

    def __init__(self, folder: Path) -> None:
        self.path = folder / "filler"
        self.attempts = 0  # made by the last `fill`

    def fill(self, store: Store) -> int:
        wal = Path(f"{store.path}-wal")
        written = 0
        for attempt in range(1, self.ATTEMPTS + 1):
            self.attempts = attempt
            self.free()
            written = self._take(self.RESERVE)
            with store._lock:  # noqa: SLF001
                with contextlib.suppress(Exception):
                    store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written += self._take(0)
            try:
                if wal.stat().st_size == 0:
                    break
            except FileNotFoundError:
                break
        return written

    def _take(self, leave: int) -> int:
        """Append to the filler until `leave` bytes are free, or none (ENOSPC)."""
        written = 0
        folder = self.path.parent
        with open(self.path, "ab", buffering=0) as f:
            for chunk in (1 << 20, 4096, 512):
                block = b"\0" * chunk
                while True:
                    if leave:
                        st = os.statvfs(folder)
                        if st.f_bavail * st.f_frsize < leave + chunk:
                            break
                    try:
                        written += f.write(block)
                    except OSError as e:
                        if e.errno != 28:  # ENOSPC
                            raise
                        break
        return written

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


# What `skyops cancel no-such-job` says when its command could be written and applied.
USUAL_ANSWER = "refused: no job 'no-such-job'"


def cli_during_fault(console: Console) -> dict:
    """A command a person runs while the disk is full. Its journal row is a write: where
    that write fails, the command exits 4 with one line naming the fault (docs/headless.md).
    A leader whose WAL still holds room it was given before the fill (a checkpoint restarted
    the WAL over its own blocks) writes on, and the command gets its usual one-line answer,
    as durable as any other (docs/reliability.md, "Disk-full faults")."""
    r = subprocess.run(
        [sys.executable, "-m", "skyops_tui", "--config", str(console.config)]
        + ["--db", str(console.db), "cancel", "no-such-job"],
        capture_output=True,
        text=True,
        env=console.env,
        cwd=str(ROOT),
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    err = r.stderr.strip().splitlines()
    out = {"exit": r.returncode, "stderr": err[-1] if err else "", "lines": len(err)}
    if len(err) > 1:
        out["all_lines"] = err  # a violation: what came before the error says why
    return out


# ------------------------------------------------------------------- console
@dataclass
class Console:
    """`skyops serve` as a subprocess; each start appends to one log."""

    config: Path
    db: Path
    env: dict
    log: Path
    proc: subprocess.Popen | None = None
    starts: int = 0
    started_at: float = 0.0

    def start(self) -> None:
        self.starts += 1
        with open(self.log, "ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "skyops_tui", "--config", str(self.config)]
                + ["--db", str(self.db), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                cwd=str(ROOT),
            )
        self.started_at = time.monotonic()

    def leads(self, store: Store) -> bool:
        holder = lease_holder(store, time.time()) or ""
        return self.proc is not None and f":{self.proc.pid}:" in holder

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Run:
    workdir: Path
    jobs: int
    kills: int
    seed: int
    transport: str = "local"
    timeout_s: float = 0.0
    locks: int = 0
    lock_s: float = LEASE_TTL_S + 3.0
    disk_full: int = 0
    full_s: float = 4.0
    disk_mb: int = DISK_MB
    kill_points: list[dict] = field(default_factory=list)
    lock_points: list[dict] = field(default_factory=list)
    full_points: list[dict] = field(default_factory=list)
    exits: list[dict] = field(default_factory=list)  # the console exiting by itself
    # Each command's answers, in order, by the name it creates (see `deliver`).
    answers: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    agent_dirs: dict[str, Path] = field(default_factory=dict)
    # At each kill: jobs compared with the per-second oracle, and what differed.
    oracle_checks: list[dict] = field(default_factory=list)
    oracle_violations: list[str] = field(default_factory=list)


def _snapshot(store: Store) -> dict:
    """What was in flight: jobs per state and commands not yet applied."""
    states = Counter(
        r["state"]
        for r in store._rows("SELECT state FROM jobs")  # noqa: SLF001
    )
    pending = store._rows("SELECT COUNT(*) AS n FROM commands WHERE status = 'pending'")[0]["n"]
    return {"states": dict(sorted(states.items())), "commands_pending": pending}


def _boxes(run: Run):
    """Nodes behind OpenSSH's sshd (tests/fleet/sshd.py): one box, one agent dir per node."""
    from tests.fleet.sshd import SSHD, OpenSshBox

    if not Path(SSHD).exists():
        raise SystemExit(f"--transport ssh needs OpenSSH's sshd ({SSHD})")
    box = OpenSshBox(run.workdir / "sshd").start()
    home = run.workdir / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    (home / ".ssh" / "known_hosts").write_text(Path(box.known_hosts("trusted")).read_text())
    nodes = []
    for k in range(NODES):
        name = f"node-{chr(97 + k)}"
        agent_dir = run.workdir / "sshd" / "agents" / name
        nodes.append(
            {
                "name": name,
                "host": box.host,
                "port": box.port,
                "user": box.user,
                "identity": box.identity,
                "python": sys.executable,
                "agent_dir": str(agent_dir),
                "fake_gpus": f"{GPUS_PER_NODE}xH100-80GB",
            }
        )
        run.agent_dirs[name] = agent_dir / "state"
    return box, nodes, home


def deliver(run: Run, sock: Path, kind: str, payload: dict) -> bool:
    """A command to the leading console's socket, as a user's client sends it. False
    while no console answers (killed, starting, its store locked or full): the harness
    asks again later. A command whose answer was lost with a killed console may have
    been applied; asked again, it is refused as a duplicate, which counts as sent.
    Each answer is kept under the name the command creates: 'accepted #id',
    'refused: ...', 'failed: ...' (the scheduler said it could not act: nothing
    applied), 'gone' (no answer: maybe applied) or 'no leader' (never sent)."""
    name = payload["spec"]["name"]

    async def go() -> dict:
        async with ApiClient.connected(sock) as client:
            return await client.command(kind, payload)

    try:
        result = asyncio.run(go())
    except NoLeader:
        return False
    except LeaderGone:
        run.answers[name].append("gone")
        return False
    except StoreError as e:
        run.answers[name].append(f"failed: {e}")
        return False
    except Refused as e:
        run.answers[name].append(f"refused: {e}")
        return True
    run.answers[name].append(f"accepted #{result.get('id', result.get('name'))}")
    return True


def check_answers(answers: dict[str, list[str]], stored: dict[str, int]) -> list[str]:
    """What clients were told against what the store holds (`stored`: name -> id).
    A name asked again after an answer that may have been lost ('gone') is refused as
    a duplicate: that refusal says the earlier attempt was applied, which is fine only
    if no answer before it said otherwise."""
    out = []
    for name, said in answers.items():
        maybe = False  # an earlier attempt may have been applied
        for a in said:
            if a.startswith("accepted"):
                told = a.split("#", 1)[1]
                if name not in stored:
                    out.append(f"{name}: told accepted ({told}), not in the store")
                elif told.isdigit() and int(told) != stored[name]:
                    out.append(f"{name}: told accepted as {told}, stored as {stored[name]}")
                maybe = True
            elif a == "gone":
                maybe = True
            elif a.startswith("refused") and "exists already" in a and not maybe:
                out.append(f"{name}: told it failed ({said}), then found applied")
        if name in stored and not maybe:
            out.append(f"{name}: every answer said not applied ({said}), yet it is stored")
    return out


def _recovered(log: Path) -> bool:
    """The running console has logged the end of every store fault it logged: the run
    may end (ending it in the backoff after a lock would leave the fault unclosed)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    last = text.rsplit("--- start ", 1)[-1]
    return last.count("state database available again") >= last.count("state database unavailable")


def run_harness(run: Run, progress=lambda msg: None) -> dict:
    rng = random.Random(run.seed)
    run.workdir.mkdir(parents=True, exist_ok=True)
    data = run.workdir / "data"
    env = {
        **os.environ,
        "XDG_DATA_HOME": str(data),
        "SKYOPS_USER": "ops",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "agent")]),
    }
    env.pop("SKYOPS_DB", None)
    box = None
    if run.transport == "ssh":
        box, nodes, home = _boxes(run)
        env["HOME"] = str(home)
    else:
        nodes = [
            {"name": f"node-{chr(97 + k)}", "fake_gpus": f"{GPUS_PER_NODE}xH100-80GB"}
            | {"local": True}
            for k in range(NODES)
        ]
        for n in nodes:
            run.agent_dirs[n["name"]] = data / "skyops" / "local-agents" / n["name"]
    cfg_path = run.workdir / "config.toml"
    cfg_path.write_text(config_text(nodes))
    cfg = load_config(cfg_path)
    db_path = run.workdir / "state.db"
    state_fs: Path | None = None
    if run.disk_full:
        state_fs = run.workdir / "state-fs"
        mount_tmpfs(state_fs, run.disk_mb)
        db_path = state_fs / "state.db"
    filler = DiskFiller(state_fs) if state_fs is not None else None
    full_on = False
    console = Console(cfg_path, db_path, env, run.workdir / "console.log")
    specs = workload(run.jobs, rng)
    total_gpus = NODES * GPUS_PER_NODE
    timeout = run.timeout_s or max(120.0, run.jobs * 0.6 + run.kills * 15)
    timeout += run.locks * (run.lock_s + 10) if not run.timeout_s else 0
    timeout += run.disk_full * (run.full_s + 10) if not run.timeout_s else 0
    # Kill points: when this many jobs have ended, plus a random delay; every third one
    # instead soon after the previous restart (while links reconnect and reconcile).
    thresholds = sorted(rng.uniform(0.03, 0.92) for _ in range(run.kills))
    plan: list[tuple[str, float]] = []
    for k, frac in enumerate(thresholds):
        if k % 3 == 2:
            plan.append(("after restart", rng.uniform(0.3, 2.5)))
        else:
            plan.append(("progress", frac))
    # Lock faults: when this share of the jobs has ended, plus a random delay.
    locks = sorted(rng.uniform(0.05, 0.9) for _ in range(run.locks))
    lock: LockHolder | None = None
    lock_armed: float | None = None
    # Disk faults: when this share of the jobs has ended, plus a random delay.
    fulls = sorted(rng.uniform(0.05, 0.9) for _ in range(run.disk_full))
    full_armed: float | None = None
    recovering: dict | None = None  # the last fault, until its console leads again
    t0 = time.monotonic()
    store = None
    submitted = 0
    try:
        console.start()
        store = Store(db_path)
        now = time.time()
        reserve = {
            "name": RESERVATION,
            "user": USERS["commit"],
            "gpu_type": "H100",
            "gpus": GPUS_PER_NODE,
            "start": now - 1,
            "hours": 2,
        }
        unsent: list[tuple[str, dict]] = [("reserve", {"spec": reserve})]
        pending_kill = plan.pop(0) if plan else None
        armed_at: float | None = None
        while True:
            elapsed = time.monotonic() - t0
            if elapsed > timeout:
                raise TimeoutError(f"not every job ended within {timeout:.0f} s")
            rows = store._rows("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            by_state = {r["state"]: r["n"] for r in rows}
            ended = sum(n for s, n in by_state.items() if JobState(s) in TERMINAL)
            live = sum(n for s, n in by_state.items() if JobState(s) not in TERMINAL)
            while (
                unsent and lock is None and deliver(run, db_path.with_suffix(".sock"), *unsent[0])
            ):
                unsent.pop(0)
            if not full_on and console.proc is not None and console.proc.poll() is not None:
                # It gave up (a console that starts on a full disk exits 4): start it
                # again, as a service manager would.
                run.exits.append(
                    {"exit": console.proc.returncode, "at_s": round(time.monotonic() - t0, 2)}
                )
                progress(f"the console exited {console.proc.returncode}; starting it again")
                console.start()
            if recovering is not None and console.leads(store):
                recovering["leads_again_after_s"] = round(
                    time.monotonic() - recovering.pop("_freed"), 2
                )
                recovering = None
            if full_on:
                # Clients keep submitting (and are told the scheduler cannot act);
                # reads go on; the harness kills nothing while the disk is full.
                point = run.full_points[-1]
                if "cli" not in point and time.monotonic() - point["_from"] >= 1.0:
                    point["cli"] = cli_during_fault(console)
                if time.monotonic() - point["_from"] >= run.full_s:
                    filler.free()
                    full_on = False
                    point["full_s"] = round(time.monotonic() - point.pop("_from"), 2)
                    point["jobs_ended_after"] = ended
                    point["_freed"] = time.monotonic()
                    recovering = point
                    progress(f"disk fault {point['fault']} over: {point}")
                time.sleep(0.1)
                continue
            if fulls and recovering is None and ended >= fulls[0] * len(specs):
                if full_armed is None:
                    full_armed = time.monotonic() + rng.uniform(0.0, 2.0)
                if time.monotonic() >= full_armed:
                    fulls.pop(0)
                    full_armed = None
                    leading = console.leads(store)
                    snap = _snapshot(store)
                    filled = filler.fill(store)
                    full_on = True
                    run.full_points.append(
                        {
                            "fault": len(run.full_points) + 1,
                            "at_s": round(time.monotonic() - t0, 2),
                            "console_led": leading,
                            "jobs_ended": ended,
                            "filler_mb": round(filled / 2**20, 2),
                            "fill_attempts": filler.attempts,
                            "_from": time.monotonic(),
                            **snap,
                        }
                    )
                    continue
            if lock is not None:
                # Reads go on under the lock; writes (submitting, a console starting)
                # would only wait for it, so the harness neither submits nor kills.
                point = run.lock_points[-1]
                if time.monotonic() - point["_from"] >= run.lock_s:
                    lock.release()
                    lock = None
                    point["held_s"] = round(time.monotonic() - point.pop("_from"), 2)
                    point["jobs_ended_after"] = ended
                    progress(f"lock {point['lock']} released: {point}")
                time.sleep(0.1)
                continue
            if locks and ended >= locks[0] * len(specs):
                if lock_armed is None:
                    lock_armed = time.monotonic() + rng.uniform(0.0, 2.0)
                if time.monotonic() >= lock_armed:
                    locks.pop(0)
                    lock_armed = None
                    leading = console.leads(store)
                    lock = LockHolder(db_path).hold()
                    run.lock_points.append(
                        {
                            "lock": len(run.lock_points) + 1,
                            "at_s": round(time.monotonic() - t0, 2),
                            "console_led": leading,
                            "jobs_ended": ended,
                            "_from": time.monotonic(),
                            **_snapshot(store),
                        }
                    )
                    continue
            if submitted < len(specs) and not unsent and live < 3 * total_gpus:
                unsent += [("submit", {"spec": spec}) for spec in specs[submitted : submitted + 20]]
                submitted = min(submitted + 20, len(specs))
            if (
                submitted == len(specs)
                and not unsent
                and ended == len(specs)
                and pending_kill is None
                and not locks
                and not fulls
                and recovering is None
                and _recovered(console.log)
            ):
                break
            if pending_kill is not None:
                kind, arg = pending_kill
                due = False
                if kind == "progress" and ended >= arg * len(specs):
                    if armed_at is None:
                        armed_at = time.monotonic() + rng.uniform(0.0, 1.5)
                    due = time.monotonic() >= armed_at
                elif kind == "after restart":
                    if armed_at is None and console.leads(store):
                        armed_at = time.monotonic() + arg
                    due = armed_at is not None and time.monotonic() >= armed_at
                if due:
                    up_for = time.monotonic() - console.started_at
                    leading = console.leads(store)
                    console.kill()
                    checked, wrong = check_oracle(
                        store, agent_runs(run.agent_dirs), f"kill {len(run.kill_points) + 1}"
                    )
                    run.oracle_checks.append(checked)
                    run.oracle_violations += wrong
                    point = {
                        "kill": len(run.kill_points) + 1,
                        "trigger": kind,
                        "at_s": round(time.monotonic() - t0, 2),
                        "console_up_s": round(up_for, 2),
                        "console_led": leading,
                        "jobs_ended": ended,
                        "submitted": submitted,
                        **_snapshot(store),
                    }
                    pause = rng.uniform(0.0, 1.5)
                    point["restart_after_s"] = round(pause, 2)
                    run.kill_points.append(point)
                    progress(f"kill {point['kill']}: {point}")
                    time.sleep(pause)
                    console.start()
                    pending_kill = plan.pop(0) if plan else None
                    armed_at = None
            time.sleep(0.1)
        wall = time.monotonic() - t0
        console.stop()
        stored = {r["name"]: r["id"] for r in store._rows("SELECT id, name FROM jobs")}
        stored |= {r["name"]: r["name"] for r in store._rows("SELECT name FROM reservations")}
        store.close()
        store = None
        result = verify(cfg, db_path, run.agent_dirs)
        result["violations"] += check_answers(run.answers, stored)
        result["violations"] += run.oracle_violations
        result["figures"].update(
            {
                "transport": run.transport,
                "jobs": len(specs),
                "kills": len(run.kill_points),
                "console_starts": console.starts,
                "wall_s": round(wall, 1),
                "seed": run.seed,
                "oracle_checked_at_kills": run.oracle_checks,
                "oracle_mismatches_at_kills": len(run.oracle_violations),
            }
        )
        result["figures"].update(lock_figures(run, console.log))
        result["figures"].update(answer_figures(run))
        if run.disk_full:
            figures, violations = disk_figures(run, console.log)
            result["figures"].update(figures)
            result["violations"] += violations
            result["full_points"] = run.full_points
        result["kill_points"] = run.kill_points
        result["lock_points"] = run.lock_points
        result["console_exits"] = run.exits
        return result
    except BaseException:
        if state_fs is not None:  # the tmpfs goes: keep its database to look into
            import shutil

            for f in state_fs.glob("state.db*"):
                with contextlib.suppress(OSError):
                    shutil.copy(f, run.workdir / f.name)
        raise
    finally:
        if lock is not None:
            lock.release()
        if filler is not None:
            filler.free()
        console.stop()
        if store is not None:
            store.close()
        if state_fs is not None:
            unmount(state_fs)
        for d in run.agent_dirs.values():
            kill_leftovers(d)
        if box is not None:
            box.close()


def lock_figures(run: Run, log: Path) -> dict:
    """What the console said about the lock faults (its log: stdout and stderr)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return {
        "locks": len(run.lock_points),
        "lock_s": run.lock_s,
        "faults_logged": text.count("state database unavailable"),
        "lease_renewed_after_pause": text.count("scheduler lease renewed; scheduling resumes"),
        "passes_fenced": text.count("scheduling pass refused"),
        "demotions": text.count("a write was refused, the scheduler lease is not ours")
        + text.count("scheduler lease lost; following"),
    }


def answer_figures(run: Run) -> dict:
    said = Counter(a.split(" ", 1)[0].rstrip(":") for v in run.answers.values() for a in v)
    return {"answers": dict(sorted(said.items()))}


def disk_figures(run: Run, log: Path) -> tuple[dict, list[str]]:
    """What the console and a command said about the full disk, and whether the console
    took up again once space returned."""
    text = log.read_text(errors="replace") if log.exists() else ""
    lines = text.splitlines()
    full = [ln for ln in lines if "state database unavailable" in ln and "full" in ln]
    violations = []
    for p in run.full_points:
        if "leads_again_after_s" not in p:
            violations.append(f"disk fault {p['fault']}: the console never led again")
        cli = p.get("cli")
        if cli is None:
            continue
        # Exit 4 and one line saying why: the disk is full, or (while the console that
        # met the full disk at start-up is down) that no scheduler serves the socket. Or,
        # from a leader still writing into its WAL's own blocks, the usual answer.
        why = ("disk is full", "no scheduler serves")
        fault = cli["exit"] == 4 and any(w in cli["stderr"] for w in why)
        answered = cli["exit"] == 1 and cli["stderr"] == USUAL_ANSWER
        if not (fault or answered) or cli["lines"] != 1:
            violations.append(f"disk fault {p['fault']}: a command exited {cli}")
    if run.full_points and not full:
        violations.append("the console never logged a full disk")
    if any("Traceback" in ln for ln in lines):
        violations.append("the console log holds a traceback")
    return {
        "disk_faults": len(run.full_points),
        "full_s": run.full_s,
        "disk_mb": run.disk_mb,
        "full_faults_logged": len(full),
        "available_again_logged": text.count("state database available again"),
        "commands_refused_for_the_fault": sum(
            p.get("cli", {}).get("exit") == 4 for p in run.full_points
        ),
        "writes_failed_answers": sum(
            a.startswith("failed") and "full" in a for v in run.answers.values() for a in v
        ),
    }, violations


def kill_leftovers(state_dir: Path) -> None:
    """Jobs outlive the console by design; the harness must not leave any behind."""
    if not (state_dir / "jobs").is_dir():
        return
    for rec in JobRunner(str(state_dir)).list_jobs(with_checkpoint=False):
        if rec["state"] in ("starting", "running", "stopping"):
            for pid, kill in ((rec.get("pgid"), os.killpg), (rec.get("shim_pid"), os.kill)):
                if pid:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------- checks
def agent_runs(agent_dirs: dict[str, Path]) -> dict[int, dict[int, list[dict]]]:
    """job id -> run number -> the agent records of its parts (one per node)."""
    out: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for node, d in agent_dirs.items():
        if not (d / "jobs").is_dir():
            continue
        for rec in JobRunner(str(d)).list_jobs(with_checkpoint=False):
            aid = parse_agent_id(rec["job_id"])
            if aid:
                out[aid.job][aid.run].append(dict(rec, node=node))
    return out


def verify(cfg, db_path: Path, agent_dirs: dict[str, Path]) -> dict:
    store = Store(db_path)
    try:
        grid = store.load_grid(cfg, time.time())
        events = store._rows("SELECT * FROM events WHERE job IS NOT NULL ORDER BY id")
        txs = store.transactions(limit=10**9)
        entries = store._rows(
            "SELECT account, SUM(amount) AS s FROM ledger_entries GROUP BY account"
        )
        balances = store.balances()
    finally:
        store.close()
    records = agent_runs(agent_dirs)
    violations: list[str] = []
    jobs = list(grid.jobs.values())

    # 1. every job ended, in a state its processes agree with; 2. no job ran twice
    runs_total = 0
    for job in jobs:
        recs = records.get(job.id, {})
        if job.state not in TERMINAL:
            violations.append(f"job {job.name} did not end: {job.state}")
        for r, parts in recs.items():
            for rec in parts:
                if rec["state"] != "exited":
                    violations.append(
                        f"job {job.name} ({job.state}) run {r} on {rec['node']} is {rec['state']}"
                    )
            if len(parts) != 1:
                violations.append(f"job {job.name} run {r} has {len(parts)} agent records")
        started = sorted(r for r, parts in recs.items() if any(p["pid"] for p in parts))
        runs_total += len(started)
        if not set(recs) <= set(range(1, job.runs + 1)):
            violations.append(
                f"job {job.name}: the agents know runs {sorted(recs)}, the store {job.runs}"
            )
        spans = sorted(
            (p["started_at"] or 0, p["ended_at"] or math.inf, r)
            for r, parts in recs.items()
            for p in parts
            if p["pid"]
        )
        for (_, e1, r1), (s2, _, r2) in zip(spans, spans[1:], strict=False):
            if s2 < e1:
                violations.append(f"job {job.name}: run {r2} started before run {r1} ended")
        if job.state is JobState.SUCCEEDED and started:
            last = recs[started[-1]][0]
            if last["exit_code"] != 0:
                violations.append(
                    f"job {job.name} succeeded but its last run exited {last['exit_code']}"
                )
        expected_runs = 1 + job.preemptions + job.retries
        if job.state is JobState.SUCCEEDED and job.runs > expected_runs:
            violations.append(
                f"job {job.name} ran {job.runs} times; preemptions and retries explain "
                f"{expected_runs}"
            )

    # 3. no GPU double-booked, nothing left holding
    violations += check_placements(grid)
    holding = [j.name for j in jobs if j.state in HOLDING]
    if holding:
        violations.append(f"jobs still holding GPUs: {holding[:10]}")

    # 4. the ledger
    total = sum(balances.values())
    if total != 0:
        violations.append(f"ledger sums to {total}, not 0")
    for tx in txs:
        if sum(a for _, a in tx.entries) != 0:
            violations.append(f"unbalanced transaction {tx.id}: {tx.reason}")
    sums = {r["account"]: r["s"] for r in entries}
    for acct, bal in balances.items():
        if sums.get(acct, 0) != bal:
            violations.append(f"{acct}: balance {bal} but its entries sum to {sums.get(acct, 0)}")

    # 5. billing: within the bounds, and to the micro-unit by the per-second oracle
    billing = check_billing(grid, events, txs, records)
    violations += billing.pop("violations")
    store = Store(db_path)
    try:
        oracle_checked, wrong = check_oracle(store, records, "at the end")
    finally:
        store.close()
    violations += wrong

    modes = Counter(str(j.mode) for j in jobs)
    states = Counter(str(j.state) for j in jobs)
    figures = {
        "by_mode": dict(modes),
        "by_state": dict(states),
        "agent_runs": runs_total,
        "preemptions": sum(j.preemptions for j in jobs),
        "ledger_sum": total,
        "transactions": len(txs),
        **billing,
        "oracle_checked_at_end": oracle_checked["jobs"],
    }
    return {"violations": violations, "figures": figures}


def check_oracle(store: Store, records, when: str) -> tuple[dict, list[str]]:
    """Every Priority and Flex job's `charged`, as the store holds it now, against the
    per-second oracle (tests/billing_oracle.py) over the store's `prices` rows and each
    job's `bid_log`, to the micro-unit. A run that has ended is billed to where its
    agent recorded the end (if the console heard of it later); one still holding GPUs,
    to its `billed_from` (how far the console had billed it). Returns how many jobs
    were checked (`holding`: of them, still holding GPUs), and a line per one that
    differs."""
    jobs = store.jobs()
    markets = {m.gpu_type: m for m in store.markets()}
    prices = {t: [(at, t, p) for at, p in store.prices(t)] for t in markets}
    by_job: dict[int, list] = defaultdict(list)
    for e in store.events(limit=10**9):
        if e.job is not None:
            by_job[e.job].append(e)
    violations: list[str] = []
    checked = {"jobs": 0, "holding": 0}
    for job in jobs:
        if job.mode.value == "commit" or job.market is None:
            continue
        m = markets[job.market]
        procs = [
            (p["started_at"] or 0.0, p["ended_at"])
            for parts in records.get(job.id, {}).values()
            for p in parts
            if p["pid"]
        ]
        until = job.billed_from if job.state in HOLDING else None
        want = billing_oracle.charge(
            job, by_job[job.id], prices[job.market], m.floor, m.rate, until=until, recorded=procs
        )
        checked["jobs"] += 1
        checked["holding"] += until is not None
        if job.charged != want:
            violations.append(
                f"{when}: {job.mode} job {job.name} ({job.state}, {job.runs} run(s)) charged "
                f"{job.charged}, the per-second oracle says {want}"
            )
    return checked, violations


def check_billing(grid, events: list[dict], txs, records) -> dict:
    """Each run's held seconds: from the console recording its process started (the
    `starting -> running` event) to its end, which is the event that released its GPUs,
    or, when the console learned of the end late (it was down, or the link was), the
    moment the agent recorded the process ended. The two bound what may be charged:

    - Priority: gpus x rate x held / 3600 for each run, floored; each settle (every
      `billing_interval_s`) floors its share, so the sum may be short by one micro-unit
      per settle (its usage transactions, plus one per run), never above.
    - Flex: between the floor and the job's own bid, x gpus x held / 3600, same rounding.
    - Commit: prepaid; its jobs carry no usage charge.
    A second charged twice, or held and not charged, falls outside these bounds.
    `billed_after_exit_s` sums, over Priority runs, the seconds charged after the
    agent's recorded end (the watch interval, or a console outage if that were billed).
    """
    violations: list[str] = []
    spans: dict[int, list[tuple[float, float]]] = defaultdict(list)
    open_at: dict[int, float] = {}
    holding = {str(s) for s in HOLDING}
    for e in events:
        if e["kind"] != "state":
            continue
        jid = e["job"]
        if e["old"] == "starting" and e["new"] == "running":
            open_at[jid] = e["at"]
        elif e["old"] in holding and e["new"] not in holding and jid in open_at:
            spans[jid].append((open_at.pop(jid), e["at"]))
    charged: dict[int, int] = defaultdict(int)
    n_tx: dict[int, int] = defaultdict(int)
    for tx in txs:
        if tx.job is not None and "usage" in tx.reason:
            charged[tx.job] += sum(a for acct, a in tx.entries if acct == "revenue")
            n_tx[tx.job] += 1
    held_s = 0.0
    late_s = 0.0

    def cost(per_hour: int, a: float, b: float) -> int:
        return int(Fraction(per_hour) * Fraction(max(b - a, 0.0)) / 3600)

    for job in grid.jobs.values():
        held = spans.get(job.id, [])
        procs = [
            (p["started_at"] or 0.0, p["ended_at"])
            for parts in records.get(job.id, {}).values()
            for p in parts
            if p["pid"]
        ]
        runs = []  # (start, earliest end, latest end)
        for a, b in held:
            overlap = [(min(b, e or b) - max(a, s), e) for s, e in procs]
            end = max(overlap)[1] if overlap else None
            runs.append((a, min(b, end) if end is not None else b, b))
        held_s += sum(b - a for a, b in held)
        if job.mode.value == "commit":
            if charged.get(job.id):
                violations.append(f"commit job {job.name} charged {charged[job.id]} for usage")
            continue
        market = grid.markets[job.market or "H100"]
        low = market.rate if job.mode.value == "priority" else market.floor
        high = market.rate if job.mode.value == "priority" else job.bid
        tol = n_tx[job.id] + len(runs)
        lo = sum(cost(job.gpus * low, a, e1) for a, e1, _ in runs) - tol
        hi = sum(cost(job.gpus * high, a, e2) for a, _, e2 in runs) + len(runs)
        got = charged.get(job.id, 0)
        if not lo <= got <= hi:
            violations.append(
                f"{job.mode} job {job.name}: charged {got}, expected {lo}..{hi} for "
                f"{sum(b - a for a, b in held):.3f} s x {job.gpus} GPU in {len(held)} run(s)"
            )
        if job.charged != got:
            violations.append(f"job {job.name}: its total says {job.charged}, the ledger {got}")
        if job.mode.value == "priority" and runs:
            billed_s = got * 3600 / (job.gpus * market.rate)
            # A start the console heard of only with the exit (after a fault or a kill)
            # holds from then: its run's recorded end lies before it, and counts as 0 s.
            late_s += max(0.0, billed_s - sum(max(e1 - a, 0.0) for a, e1, _ in runs))
    return {
        "violations": violations,
        "held_gpu_runs": sum(len(v) for v in spans.values()),
        "held_s": round(held_s, 1),
        "billed_after_exit_s": round(late_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1000)
    p.add_argument("--kills", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--transport", choices=("local", "ssh"), default="local")
    p.add_argument("--workdir", help="default: a new temporary folder (kept on failure)")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds (default: from --jobs)")
    p.add_argument("--locks", type=int, default=0, help="lock faults (another process's lock)")
    p.add_argument(
        "--lock-s",
        type=float,
        default=LEASE_TTL_S + 3.0,
        help=f"seconds each lock is held (default: the lease, {LEASE_TTL_S:g} s, + 3)",
    )
    p.add_argument(
        "--disk-full",
        type=int,
        default=0,
        help="disk-full faults (the state database's tmpfs filled up, then freed)",
    )
    p.add_argument("--full-s", type=float, default=4.0, help="seconds each fault lasts")
    p.add_argument("--disk-mb", type=int, default=DISK_MB, help="size of that tmpfs")
    args = p.parse_args(argv)
    if args.disk_full and not os.environ.get(IN_NAMESPACE):
        # Its own mount namespace: the tmpfs goes away with the harness, however it ends.
        ns = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
        cmd = [*ns, sys.executable, str(Path(__file__).resolve())]
        os.execvpe(cmd[0], cmd + sys.argv[1:] if argv is None else cmd + argv,
                   {**os.environ, IN_NAMESPACE: "1"})  # fmt: skip
    import tempfile

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="skyops-crash-"))
    run = Run(
        workdir, args.jobs, args.kills, args.seed, args.transport, args.timeout, args.locks,
        args.lock_s, args.disk_full, args.full_s, args.disk_mb,
    )  # fmt: skip
    result = run_harness(run, lambda m: print(m, file=sys.stderr, flush=True))
    result["workdir"] = str(workdir)
    print(json.dumps(result, indent=2))
    return 0 if not result["violations"] else 1


if __name__ == "__main__":
    sys.exit(main())
