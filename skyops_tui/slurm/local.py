"""A throwaway Slurm cluster on localhost: munged, slurmctld and one `slurmd -N` per
node, fake GPUs as GRES files, everything under one folder. The Slurm tests and
benchmarks/slurm_submit.py run on it; docs/slurm.md shows the same slurm.conf a site
needs. Needs Debian's slurm-wlm and munge, and root (slurmd runs jobs as their user).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MUNGED = "/usr/sbin/munged"
SLURMCTLD = "/usr/sbin/slurmctld"
SLURMD = "/usr/sbin/slurmd"
MUNGE_KEY = Path("/etc/munge/munge.key")


class SlurmUnavailable(RuntimeError):
    """Slurm cannot run here (not installed, not root, a daemon would not start)."""


def _free_block(n: int) -> int:
    """A base port with n free ports after it (checked by binding each)."""
    for _ in range(200):
        base = random.randrange(20000, 60000 - n)
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise SlurmUnavailable("no block of free ports for slurmctld and the slurmds")


def slurm_conf(
    root: Path,
    nodes: int,
    gpus: int,
    ctld_port: int,
    node_port: int,
    grace_s: int,
    munge_socket: Path,
    node_prefix: str = "n",
    slurmd_timeout_s: int = 10,
) -> str:
    """The slurm.conf of the local cluster: Priority (never preempted), Flex (requeued
    by partition priority, with GraceTime) and the GRES GPUs."""
    names = f"{node_prefix}[1-{nodes}]"
    user = "root"
    return f"""\
ClusterName=skyops
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={node_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
SlurmdParameters=config_overrides
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
ReturnToService=2
SlurmdTimeout={slurmd_timeout_s}
MessageTimeout=5
KillWait=2
MinJobAge=600
InactiveLimit=0
MpiDefault=none
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName={names} NodeHostname=localhost NodeAddr=127.0.0.1 Port={node_port}-{node_port + nodes - 1} CPUs=8 RealMemory=8000 Gres=gpu:{gpus} State=UNKNOWN
PartitionName=priority Nodes={names} PriorityTier=10 PreemptMode=OFF MaxTime=INFINITE State=UP Default=YES
PartitionName=flex Nodes={names} PriorityTier=1 PreemptMode=REQUEUE GraceTime={grace_s} MaxTime=INFINITE State=UP
"""


class LocalSlurm:
    """Start with `start()`, stop with `stop()` (kills every job and daemon it started).
    `env` is what a Slurm client needs (SLURM_CONF)."""

    def __init__(
        self,
        root: Path,
        nodes: int = 8,
        gpus: int = 8,
        grace_s: int = 3,
        prefix: str = "n",
        extra_conf: str = "",
    ) -> None:
        self.root = Path(root)
        self.extra_conf = extra_conf  # more slurm.conf lines (a benchmark's MaxArraySize)
        self.nodes = nodes
        self.gpus = gpus
        self.grace_s = grace_s
        self.prefix = prefix
        self.conf = self.root / "etc" / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.procs: dict[str, subprocess.Popen] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    @property
    def node_names(self) -> list[str]:
        return [f"{self.prefix}{i}" for i in range(1, self.nodes + 1)]

    def _check(self) -> None:
        missing = [p for p in (MUNGED, SLURMCTLD, SLURMD) if not Path(p).exists()]
        if missing or shutil.which("sbatch") is None:
            raise SlurmUnavailable(
                f"Slurm is not installed ({', '.join(missing) or 'sbatch'} missing): "
                "apt-get install slurm-wlm munge"
            )
        if os.geteuid() != 0:
            raise SlurmUnavailable("a local Slurm needs root (slurmd runs jobs as their user)")
        if not MUNGE_KEY.exists():
            raise SlurmUnavailable(f"{MUNGE_KEY} is missing (the munge package creates it)")

    def start(self, timeout_s: float = 30.0) -> LocalSlurm:
        self._check()
        for sub in ("etc", "state", "spool", "log", "munge", "gpu"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root / "munge", 0o700)
        for i in range(self.gpus):
            (self.root / "gpu" / f"nvidia{i}").touch()
        base = _free_block(self.nodes + 1)
        self.conf.write_text(
            slurm_conf(
                self.root,
                self.nodes,
                self.gpus,
                base,
                base + 1,
                self.grace_s,
                self.munge_socket,
                self.prefix,
            )
            + self.extra_conf
        )
        last = self.gpus - 1
        (self.root / "etc" / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.prefix}[1-{self.nodes}] Name=gpu "
            f"File={self.root}/gpu/nvidia[0-{last}]\n"
        )
        (self.root / "etc" / "cgroup.conf").write_text("CgroupPlugin=cgroup/v1\n")
        try:
            self._spawn(
                "munged",
                [
                    MUNGED,
                    "-F",
                    "--force",
                    f"--socket={self.munge_socket}",
                    f"--key-file={MUNGE_KEY}",
                    f"--pid-file={self.root}/munge/munged.pid",
                    f"--seed-file={self.root}/munge/munged.seed",
                    f"--log-file={self.root}/log/munged.log",
                ],
            )
            self._wait(lambda: self.munge_socket.exists(), "munged's socket", timeout_s)
            self._spawn("slurmctld", [SLURMCTLD, "-D", "-i", "-f", str(self.conf)])
            for name in self.node_names:
                self.start_node(name)
            self._wait(self._all_idle, "every slurmd registered and idle", timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    def start_node(self, name: str) -> None:
        self._spawn(f"slurmd-{name}", [SLURMD, "-D", "-N", name, "-f", str(self.conf)])

    def kill_node(self, name: str) -> None:
        """As a box that dies: slurmd killed at once (its jobs' steps go too)."""
        proc = self.procs.pop(f"slurmd-{name}")
        proc.kill()
        proc.wait()

    def _wait(self, pred, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not pred():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    tail = self.log_tail(name)
                    raise SlurmUnavailable(f"{name} exited ({p.returncode}): {tail}")
            if time.monotonic() > deadline:
                raise SlurmUnavailable(f"within {timeout_s:.0f} s, never: {what}")
            time.sleep(0.1)

    def log_tail(self, name: str) -> str:
        for path in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if path.exists() and path.stat().st_size:
                return " | ".join(path.read_text(errors="replace").splitlines()[-5:])
        return "(no log)"

    def run(self, *argv: str, check: bool = True) -> str:
        out = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=30)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def _all_idle(self) -> bool:
        out = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env, capture_output=True, text=True
        )
        if out.returncode != 0:
            return False
        states = dict(line.split() for line in out.stdout.splitlines() if line.strip())
        # "plnd": backfill had planned a job there that has gone since.
        return all(states.get(n, "").rstrip("*") in ("idle", "plnd") for n in self.node_names)

    def wait_quiet(self, timeout_s: float = 20.0) -> None:
        """Until no job is left (running, completing or pending) and every node is up
        (a killed slurmd is started again)."""
        for name in self.node_names:
            if f"slurmd-{name}" not in self.procs:
                self.start_node(name)

        def quiet() -> bool:
            out = subprocess.run(
                ["squeue", "-h", "-t", "PD,R,CG,S,RQ,RS", "-o", "%i"],
                env=self.env,
                capture_output=True,
                text=True,
            )
            return out.returncode == 0 and not out.stdout.strip() and self._all_idle()

        try:
            self._wait(quiet, "no job left and every node idle", timeout_s)
        except SlurmUnavailable as e:
            jobs = self.run("squeue", "-h", "-o", "%i %T %R", check=False)
            nodes = self.run("sinfo", "-h", "-N", "-p", "flex", "-o", "%N %t", check=False)
            raise SlurmUnavailable(f"{e}: jobs {jobs.split()} nodes {nodes.split()}") from None

    def end_reservations(self) -> None:
        """Delete every reservation (one a job still runs in is ended instead), so the
        next test starts with every node free of them."""
        out = self.run("scontrol", "show", "reservation", "-o", check=False)
        for line in out.splitlines():
            if not line.startswith("ReservationName="):
                continue
            name = line.split()[0].split("=", 1)[1]
            gone = subprocess.run(
                ["scontrol", "delete", f"ReservationName={name}"],
                env=self.env,
                capture_output=True,
                timeout=30,
            )
            if gone.returncode != 0:
                self.run(
                    "scontrol", "update", f"ReservationName={name}", "EndTime=now", check=False
                )

    def stop(self) -> None:
        """Cancel every job, then stop the daemons; anything left is killed."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            subprocess.run(
                ["scancel", "--user=root"], env=self.env, capture_output=True, timeout=30
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                out = subprocess.run(
                    ["squeue", "-h", "-t", "R,CG", "-o", "%i"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                )
                if out.returncode != 0 or not out.stdout.strip():
                    break
                time.sleep(0.1)
        order = sorted(self.procs, key=lambda n: (n == "munged", n == "slurmctld"))
        for name in order:
            p = self.procs[name]
            if p.poll() is None:
                p.terminate()
        for name in order:
            p = self.procs[name]
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.procs.clear()
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """slurmstepd and job processes outlive a killed slurmd: find them by the
        SLURM_CONF their environment carries, and kill them."""
        needle = f"SLURM_CONF={self.conf}".encode()
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                env = Path(f"/proc/{entry.name}/environ").read_bytes()
            except OSError:
                continue
            if needle in env.split(b"\0"):
                try:
                    os.kill(int(entry.name), signal.SIGKILL)
                except OSError:
                    pass
