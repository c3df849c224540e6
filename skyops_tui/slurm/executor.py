"""The Slurm backend: the scheduler's actions carried out by a Slurm cluster.

Skyops stays the market and the ledger: its planner decides which job runs where and
when, as on its own fleet; this executor turns each decision into Slurm commands and
Slurm places, runs, signals and kills the processes. docs/slurm.md maps each mode to
the Slurm feature it uses.

- One Slurm job per Skyops job, named `skyops.<cluster>.j<id>`. A Flex job keeps its
  Slurm job across preemptions: it is requeued and held (`scontrol requeuehold`), and a
  resume moves it to the node Skyops chose and releases it; the batch script sees
  `SLURM_RESTART_COUNT` and sets `SKYOPS_RESUME=1`.
- Preemption is Skyops's: the checkpoint signal to the batch step (`scancel -b -s`),
  up to `grace_s` for the job to go, then the requeue (which kills what is left). A
  preemption called off in that grace is simply not escalated: the job runs on.
  The Flex partition's own REQUEUE/GraceTime and `--signal=B:USR1@grace` only act if
  Slurm preempts by itself (a job from outside Skyops).
- State is read from Slurm every `poll_s`: `squeue --json` for jobs (their real start
  and end times), `sinfo --json` for nodes.
- Commit windows become Slurm reservations (Flags=IGNORE_JOBS,FLEX) on the nodes the
  window holds, for the user Skyops submits as; every Skyops job placed on a reserved
  node is submitted into that reservation, so a lent GPU is Skyops's to lend.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..clock import Clock
from ..domain.config import Config
from ..domain.model import HOLDING, Job, JobState, Mode, NodeStatus
from ..domain.telemetry import GpuSample, NodeSample
from ..policy import actions as A
from ..scheduler.executor import (
    CalledOff,
    ExecutorAction,
    Exited,
    LogChunk,
    NodeChanged,
    Report,
    Started,
)

log = logging.getLogger(__name__)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
}
COMMAND_TIMEOUT_S = 30.0


class SlurmError(RuntimeError):
    """A Slurm command failed; the message names the command and Slurm's answer."""


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:40] or "skyops"


def batch_script(job: Job, checkpoint_dir: str, resume: bool) -> str:
    """A script that execs the job's argv: every word and value shell-quoted, so a
    command from a user is never read by the shell as anything but its words."""
    lines = ["#!/bin/bash"]
    env = {
        "SKYOPS_JOB_ID": str(job.id),
        "SKYOPS_MODE": str(job.mode),
        "SKYOPS_CHECKPOINT_DIR": checkpoint_dir,
        **{k: v for k, v in job.env.items()},
    }
    for k, v in env.items():
        if not ENV_NAME.match(k):
            raise SlurmError(f"job {job.id}: environment name {k!r} is not a shell name")
        lines.append(f"export {k}={shlex.quote(v)}")
    lines.append(f"mkdir -p {shlex.quote(checkpoint_dir)}")
    # A requeued run (Skyops's own requeue or Slurm's) resumes from its checkpoint.
    lines.append(
        f'if [ "${{SLURM_RESTART_COUNT:-0}}" -gt 0 ] || [ {int(resume)} = 1 ]; then '
        "export SKYOPS_RESUME=1; else export SKYOPS_RESUME=0; fi"
    )
    if job.workdir:
        lines.append(f"cd {shlex.quote(job.workdir)} || exit 111")
    argv = list(job.argv) or ["true"]
    lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
    return "\n".join(lines) + "\n"


def minutes(seconds: float) -> int:
    """Slurm's time limits are whole minutes: round up, never below one."""
    return max(1, math.ceil(seconds / 60.0))


@dataclass
class SlurmJob:
    id: str
    name: str
    state: str
    nodes: str
    start: float | None
    end: float | None
    exit_code: int | None
    signal: int | None
    restarts: int
    time_limit: int | None
    reason: str
    reservation: str = ""


@dataclass
class Run:
    job: int
    run: int
    slurm_id: str | None = None
    started: bool = False
    reported: bool = False
    stopping: bool = False
    preempting: bool = False
    call_off: str | None = None  # why the preemption in its grace is called off
    escalated: bool = False  # the grace is over: requeued, past calling off
    limit_min: int | None = None
    seen_restarts: int = 0


class SlurmExecutor:
    def __init__(self, cfg: Config, clock: Clock, env: dict[str, str] | None = None) -> None:
        self.cfg = cfg
        self.b = cfg.backend
        self.clock = clock
        self.env = dict(env if env is not None else os.environ)
        if self.b.slurm_conf:
            self.env["SLURM_CONF"] = os.path.expanduser(self.b.slurm_conf)
        self.state_dir = Path(os.path.expanduser(self.b.state_dir))
        self.prefix = f"skyops.{safe_name(cfg.cluster.name)}.j"
        self.user = self.env.get("USER") or _login()
        self.report: Callable[[Report], None] = lambda r: None
        self.grid = None
        self.runs: dict[int, Run] = {}
        self.locks: dict[int, asyncio.Lock] = {}
        self.slurm_jobs: dict[int, SlurmJob] = {}  # newest Slurm job of each Skyops job
        self.node_status: dict[str, NodeStatus] = {}
        self.samples: dict[str, NodeSample] = {}
        self.reservations: dict[str, str] = {}  # Slurm reservation -> its node list
        self.errors: list[str] = []
        self.commands = 0
        self._tasks: set[asyncio.Task] = set()
        self._poller: asyncio.Task | None = None
        self._res_lock = asyncio.Lock()
        self._polled = asyncio.Event()

    # --------------------------------------------------------------- wiring
    def bind(self, report: Callable[[Report], None]) -> None:
        self.report = report

    def attach(self, grid) -> None:
        self.grid = grid

    async def start(self, grid_id: str = "") -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if self.grid is not None:
            for name in self.grid.nodes:
                # Nothing is placed on a node until Slurm has said it is up.
                self.report(NodeChanged(name, NodeStatus.DEGRADED, "waiting for Slurm"))
        await self._reconcile()
        self._poller = self._spawn(self._poll_loop())

    async def close(self) -> None:
        """Stop polling; the jobs run on under Slurm, for the next console to find."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def fire(self, now: float) -> int:
        return 0  # Slurm runs on its own time; the poller reports

    def busy(self) -> bool:
        """Commands in flight (sbatch, scancel, scontrol): the poller runs until `close`
        and is not one, or a script's session would wait out its whole timeout."""
        return any(t is not self._poller for t in self._tasks)

    def nodes_settled(self) -> bool:
        return True  # no links: nodes are as the last poll found them

    async def open_for_reads(self, grid_id: str) -> bool:
        return False  # logs are files on the shared state folder

    def status_line(self) -> str:
        down = [n for n, s in self.node_status.items() if s is not NodeStatus.UP]
        return ("Slurm: not up " + ", ".join(down[:4])) if down else ""

    def telemetry(self, node: str) -> NodeSample | None:
        """What the last `sinfo` said of the node: its Slurm state, GPUs allocated (by
        Skyops's jobs and any other) and reason, dated by that poll (the grid's beat).
        Slurm reports no per-GPU utilisation or memory without GPU accounting: N/A."""
        return self.samples.get(node)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(str(task.exception()))
            log.error("slurm task failed", exc_info=task.exception())

    def checkpoint_dir(self, job: int) -> str:
        shared = self.cfg.cluster.shared_checkpoint_path
        if shared:
            return f"{os.path.expanduser(shared).rstrip('/')}/job-{job}"
        return str(self.state_dir / "checkpoints" / f"job-{job}")

    def log_path(self, job: int) -> Path:
        return self.state_dir / "logs" / f"job-{job}.out"

    # ------------------------------------------------------------- commands
    async def slurm(self, *argv: str, check: bool = True) -> str:
        self.commands += 1
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise SlurmError(f"{argv[0]}: no answer within {COMMAND_TIMEOUT_S:.0f} s") from None
        if check and proc.returncode != 0:
            why = (err or out).decode(errors="replace").strip().splitlines()
            raise SlurmError(f"{' '.join(argv[:3])}: {why[-1] if why else proc.returncode}")
        return out.decode(errors="replace")

    # -------------------------------------------------------------- actions
    def _lock(self, job: int) -> asyncio.Lock:
        return self.locks.setdefault(job, asyncio.Lock())

    def execute(self, action: ExecutorAction, job: Job) -> None:
        if isinstance(action, A.Start):
            run = Run(job.id, job.runs)
            old = self.runs.get(job.id)
            if old is not None:
                run.slurm_id = old.slurm_id  # a held Flex job resumes as itself
                run.seen_restarts = old.seen_restarts
            self.runs[job.id] = run
            self._spawn(self._start(run, job, action))
        elif isinstance(action, A.Preempt):
            self._spawn(self._preempt(self._run_for(job), job))
        elif isinstance(action, A.CallOff):
            run = self._run_for(job)
            if run.preempting and not run.escalated:
                run.call_off = action.cause or "no longer needed"
        elif isinstance(action, A.Stop):
            self._spawn(self._stop(self._run_for(job), job.mode, action.cause))

    def _run_for(self, job: Job) -> Run:
        run = self.runs.get(job.id)
        if run is None or run.run != job.runs:
            run = Run(job.id, job.runs)
            sj = self.slurm_jobs.get(job.id)
            if sj is not None:
                run.slurm_id = sj.id
                run.seen_restarts = sj.restarts
            self.runs[job.id] = run
        return run

    def _reservation_on(self, node: str) -> str | None:
        grid = self.grid
        if grid is None or node not in grid.nodes:
            return None
        for name in grid.nodes[node].reserved:
            if name is not None:
                return self._res_name(name)
        return None

    def _res_name(self, reservation: str) -> str:
        return f"skyops.{safe_name(self.cfg.cluster.name)}.{safe_name(reservation)}"

    def _gres(self, job: Job, count: int, node: str) -> str:
        if self.b.gres_type and self.grid is not None and node in self.grid.nodes:
            return f"gpu:{self.grid.nodes[node].gpu_type}:{count}"
        return f"gpu:{count}"

    def sbatch_args(self, job: Job, action: A.Start, script: Path) -> list[str]:
        """The submission of one Skyops job: mode -> partition and options."""
        nodes = [p.node for p in action.placement]
        per_node = len(action.placement[0].gpus) if action.placement else job.gpus
        args = [
            "sbatch",
            "--parsable",
            f"--job-name={self.prefix}{job.id}",
            f"--nodelist={','.join(nodes)}",
            f"--nodes={len(nodes)}",
            f"--gres={self._gres(job, per_node, nodes[0])}",
            f"--output={self.log_path(job.id)}",
            "--open-mode=append",
            f"--chdir={self.state_dir}",
        ]
        if self.b.account:
            args.append(f"--account={self.b.account}")
        now = self.clock.now()
        if job.mode is Mode.FLEX:
            grace = max(1, int(self.cfg.cluster.grace_s))
            args += [
                f"--partition={self.b.flex_partition}",
                "--requeue",
                f"--signal=B:{self.cfg.cluster.checkpoint_signal.removeprefix('SIG')}@{grace}",
            ]
        elif job.mode is Mode.PRIORITY:
            hours = job.hours if job.hours is not None else job.renew_hours
            args += [
                f"--partition={self.b.priority_partition}",
                "--no-requeue",
                f"--time={minutes(hours * 3600 + self.cfg.cluster.stop_grace_s)}",
            ]
        else:
            res = self.grid.reservations.get(job.reservation) if self.grid else None
            end = now + 3600
            if res is not None and res.active_window is not None:
                end = res.windows[res.active_window][1]
            args += [
                f"--partition={self.b.commit_partition or self.b.priority_partition}",
                "--no-requeue",
                f"--time={minutes(end - now + self.cfg.cluster.stop_grace_s)}",
            ]
        res_name = next((r for r in map(self._reservation_on, nodes) if r), None)
        if res_name is not None:
            args.append(f"--reservation={res_name}")
        return args + [str(script)]

    async def _start(self, run: Run, job: Job, action: A.Start) -> None:
        async with self._lock(job.id):
            if run.stopping:
                return
            nodes = [p.node for p in action.placement]
            if any(self._reservation_on(n) for n in nodes):
                await self.sync_reservations()
            try:
                if run.slurm_id is not None and await self._resume_held(run, job, action):
                    return
                (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
                script = self.state_dir / "scripts" / f"job-{job.id}-r{run.run}.sh"
                script.parent.mkdir(parents=True, exist_ok=True)
                script.write_text(batch_script(job, self.checkpoint_dir(job.id), action.resume))
                out = await self.slurm(*self.sbatch_args(job, action, script))
                run.slurm_id = out.strip().split(";")[0]
                run.seen_restarts = 0
            except SlurmError as e:
                run.reported = True
                self.report(Exited(job.id, None, False, f"start failed: {e}"))

    async def _resume_held(self, run: Run, job: Job, action: A.Start) -> bool:
        """A Flex job requeued and held by its preemption: moved to the node Skyops
        chose, made eligible now (a requeue delays it otherwise) and released."""
        if run.slurm_id is None:  # the caller checked: nothing was held
            return False
        sj = await self._query(run.slurm_id)
        if sj is None or sj.state != "PENDING":
            return False
        nodes = ",".join(p.node for p in action.placement)
        upd = ["scontrol", "update", f"JobId={sj.id}", f"NodeList={nodes}", "StartTime=now"]
        res = next((r for r in (self._reservation_on(p.node) for p in action.placement) if r), "")
        upd.append(f"Reservation={res}")
        await self.slurm(*upd)
        await self.slurm("scontrol", "release", sj.id)
        return True

    async def _preempt(self, run: Run, job: Job) -> None:
        """Checkpoint signal to the batch step; up to grace_s for the job to go; then
        requeued and held (what is left is killed) until Skyops resumes it."""
        async with self._lock(job.id):
            run.stopping = run.preempting = True
            run.call_off, run.escalated = None, False
            sid = run.slurm_id
            if sid is None:
                return
            sig = self.cfg.cluster.checkpoint_signal.removeprefix("SIG")
            await self.slurm("scancel", "--batch", f"--signal={sig}", sid, check=False)
            deadline = self.clock.now() + self.cfg.cluster.grace_s
            while self.clock.now() < deadline:
                sj = await self._query(sid)
                if sj is None or sj.state != "RUNNING":
                    break
                if run.call_off is not None:
                    run.stopping = run.preempting = False
                    self.report(CalledOff(job.id, run.call_off))
                    run.call_off = None
                    return
                await asyncio.sleep(min(0.2, self.b.poll_s))
            run.escalated = True
            await self.slurm("scontrol", "requeuehold", sid, check=False)

    async def _stop(self, run: Run, mode: Mode, reason: str) -> None:
        async with self._lock(run.job):
            run.stopping = True
            if run.slurm_id is not None:
                await self.slurm("scancel", run.slurm_id, check=False)

    # -------------------------------------------------------------- reading
    def _parse(self, j: dict) -> SlurmJob:
        code = j.get("exit_code")
        status = code if isinstance(code, int) else None
        t = j.get("start_time") or None
        e = j.get("end_time") or None
        limit = j.get("time_limit")
        return SlurmJob(
            str(j.get("job_id")),
            str(j.get("name", "")),
            str(j.get("job_state", "")),
            str(j.get("nodes", "")),
            float(t) if t else None,
            float(e) if e else None,
            (status >> 8) & 0xFF if status is not None else None,
            (status & 0x7F) or None if status is not None else None,
            int(j.get("restart_cnt") or 0),
            int(limit) if isinstance(limit, int) else None,
            str(j.get("state_reason", "")),
            str(j.get("reservation") or ""),
        )

    async def _jobs(self) -> dict[int, SlurmJob]:
        data = json.loads(await self.slurm("squeue", "--json"))
        out: dict[int, SlurmJob] = {}
        for raw in data.get("jobs", []):
            sj = self._parse(raw)
            if not sj.name.startswith(self.prefix):
                continue
            try:
                jid = int(sj.name[len(self.prefix) :])
            except ValueError:
                continue
            if jid not in out or int(sj.id) > int(out[jid].id):
                out[jid] = sj
        return out

    async def _query(self, sid: str) -> SlurmJob | None:
        out = await self.slurm("squeue", "--json", check=False)
        try:
            data = json.loads(out)
        except ValueError:
            return None
        for raw in data.get("jobs", []):
            if str(raw.get("job_id")) == sid:
                return self._parse(raw)
        return None

    async def _nodes(self) -> dict[str, NodeStatus]:
        data = json.loads(await self.slurm("sinfo", "--json"))
        out: dict[str, NodeStatus] = {}
        for n in data.get("nodes", []):
            state = str(n.get("state", "")).lower()
            flags = {str(f).upper() for f in n.get("state_flags") or []}
            if state in ("down", "unknown", "future") or "NOT_RESPONDING" in flags:
                status = NodeStatus.UNREACHABLE
            elif state.startswith("drain") or flags & {"DRAIN", "FAIL"}:
                status = NodeStatus.DEGRADED
            else:
                status = NodeStatus.UP
            out[str(n.get("name"))] = status
            self._sample(n, state, flags)
        return out

    def _sample(self, n: dict, state: str, flags: set[str]) -> None:
        name = str(n.get("name"))
        node = self.grid.nodes.get(name) if self.grid is not None else None
        total, used = _gpu_count(n.get("gres")), _gpu_count(n.get("gres_used"))
        if node is not None:
            total = total or node.gpu_count
        held = sum(1 for h in node.holders if h is not None) if node is not None else 0
        words = " ".join([state, *sorted(f.lower() for f in flags)])
        note = f"Slurm: {words}, {used}/{total} GPUs allocated (Skyops holds {held})"
        if n.get("reason"):
            note += f"; reason: {n['reason']}"
        kind = node.gpu_type if node is not None else "gpu"
        gpus = tuple(GpuSample(i, kind, None, None, None) for i in range(total))
        self.samples[name] = NodeSample(name, self.clock.now(), gpus, note=note)

    async def _poll_loop(self) -> None:
        while True:
            try:
                await self.poll()
            except (SlurmError, ValueError, OSError) as e:
                log.warning("reading Slurm failed: %s", e)
            await asyncio.sleep(self.b.poll_s)

    async def poll(self) -> None:
        """One look at Slurm: node states, job states and the reservations to keep."""
        nodes = await self._nodes()
        for name, status in nodes.items():
            if self.grid is not None and name not in self.grid.nodes:
                continue
            if self.node_status.get(name) is not status:
                self.node_status[name] = status
                cause = {
                    NodeStatus.UP: "Slurm: node up",
                    NodeStatus.DEGRADED: "Slurm: node drained",
                    NodeStatus.UNREACHABLE: "Slurm: node down or not responding",
                }[status]
                self.report(NodeChanged(name, status, cause))
        self.slurm_jobs = await self._jobs()
        for jid, run in list(self.runs.items()):
            if run.reported or run.slurm_id is None or self._lock(jid).locked():
                continue
            sj = self.slurm_jobs.get(jid)
            if sj is None or sj.id != run.slurm_id:
                if sj is None and run.started:
                    run.reported = True
                    self.report(Exited(jid, None, False, "gone from Slurm"))
                continue
            self._judge(run, sj)
        await self._renew_limits()
        await self.sync_reservations()
        self._polled.set()

    def _judge(self, run: Run, sj: SlurmJob) -> None:
        if sj.state == "RUNNING" and not run.started:
            run.started = True
            self.report(Started(run.job))
            return
        requeued = sj.state == "PENDING" and sj.restarts > run.seen_restarts
        if sj.state in ENDED or requeued or (run.started and sj.state == "PENDING"):
            if not run.started and sj.state == "PENDING":
                return
            run.reported = True
            run.seen_restarts = sj.restarts
            if run.preempting:
                cause = "stopped at the checkpoint signal, requeued and held"
            elif requeued:
                # Slurm requeued it by itself (node failure, its own preemption): it
                # waits, held, for Skyops to decide where and when it runs again.
                cause = "requeued by Slurm"
                self._spawn(self.slurm("scontrol", "hold", sj.id, check=False))
            elif sj.exit_code is not None and sj.state in ("COMPLETED", "FAILED"):
                cause = f"exited with status {sj.exit_code}"
            else:
                cause = f"Slurm: {sj.state.lower()}"
            code = sj.exit_code if sj.state in ("COMPLETED", "FAILED") else None
            done = not run.stopping and sj.state == "COMPLETED" and code == 0
            self.report(Exited(run.job, code, done, cause, sj.end if sj.state in ENDED else None))

    async def _renew_limits(self) -> None:
        """A Priority booking extended or renewed: Slurm's time limit follows it."""
        grid = self.grid
        if grid is None:
            return
        for jid, run in self.runs.items():
            job = grid.jobs.get(jid)
            sj = self.slurm_jobs.get(jid)
            if job is None or sj is None or sj.id != run.slurm_id or sj.state != "RUNNING":
                continue
            if job.mode is not Mode.PRIORITY or job.end_at is None or sj.start is None:
                continue
            want = minutes(job.end_at - sj.start + self.cfg.cluster.stop_grace_s)
            if sj.time_limit is not None and want > sj.time_limit and run.limit_min != want:
                await self.slurm("scontrol", "update", f"JobId={sj.id}", f"TimeLimit={want}")
                run.limit_min = want

    async def sync_reservations(self) -> None:
        """Slurm holds each open Commit window's nodes: created when it opens, moved
        when its nodes change, deleted when it ends or is cancelled."""
        grid = self.grid
        if grid is None:
            return
        async with self._res_lock:
            want: dict[str, tuple[str, float]] = {}
            now = self.clock.now()
            for res in grid.reservations.values():
                if res.finished or res.active_window is None or not res.held:
                    continue
                end = res.windows[res.active_window][1]
                if end <= now:
                    continue
                nodes = ",".join(sorted({n for n, _ in res.held}))
                want[self._res_name(res.name)] = (nodes, end)
            for name in [n for n in self.reservations if n not in want]:
                await self._end_reservation(name)
                del self.reservations[name]
            for name, (nodes, end) in want.items():
                have = self.reservations.get(name)
                if have == nodes:
                    continue
                if have is None:
                    args = [
                        "scontrol",
                        "create",
                        "reservation",
                        f"ReservationName={name}",
                        "StartTime=now",
                        f"Duration={minutes(end - now)}",
                        f"Nodes={nodes}",
                        f"Users={self.user}",
                        "Flags=IGNORE_JOBS,FLEX",
                    ]
                    if self.b.account:
                        args.append(f"Accounts={self.b.account}")
                    try:
                        await self.slurm(*args)
                    except SlurmError as e:
                        if "Duplicate" not in str(e) and "exists" not in str(e):
                            raise
                        # The same reservation's earlier window, ended while a job still
                        # ran in it (Slurm keeps it a while, and a started reservation's
                        # start cannot move): its end is moved to this window's end.
                        await self.slurm(
                            "scontrol",
                            "update",
                            f"ReservationName={name}",
                            f"EndTime=now+{minutes(end - now)}minutes",
                            f"Nodes={nodes}",
                        )
                else:
                    await self.slurm(
                        "scontrol", "update", f"ReservationName={name}", f"Nodes={nodes}"
                    )
                self.reservations[name] = nodes

    async def _end_reservation(self, name: str) -> None:
        """Slurm refuses to delete a reservation a job still runs in (a lent Flex job,
        a Commit job in its stop grace): such a one is ended now instead (it goes
        inactive; the jobs run on until Skyops stops them). Held jobs leave it first."""
        for sj in self.slurm_jobs.values():
            if sj.state == "PENDING" and sj.reservation == name:
                await self.slurm(
                    "scontrol", "update", f"JobId={sj.id}", "Reservation=", check=False
                )
        try:
            await self.slurm("scontrol", "delete", f"ReservationName={name}")
        except SlurmError as e:
            if "in use" not in str(e):
                log.warning("could not delete reservation %s: %s", name, e)
            await self.slurm("scontrol", "update", f"ReservationName={name}", "EndTime=now")

    async def _reconcile(self) -> None:
        """A console that starts (or takes over) finds what Slurm runs for it: a job
        the grid holds goes on; one it does not is cancelled (never run twice); one
        that ended meanwhile is reported with its real end time."""
        self.slurm_jobs = await self._jobs()
        out = await self.slurm("scontrol", "show", "reservation", "-o", check=False)
        mine = f"ReservationName={self._res_name('')}"
        for line in out.splitlines():
            if line.startswith(mine):
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                self.reservations[fields["ReservationName"]] = fields.get("Nodes", "")
        grid = self.grid
        if grid is None:
            return
        for jid, sj in self.slurm_jobs.items():
            job = grid.jobs.get(jid)
            live = sj.state in ("RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED")
            if job is None or job.state not in HOLDING:
                if live or (sj.state == "PENDING" and (job is None or job.finished)):
                    await self.slurm("scancel", sj.id, check=False)
                continue
            run = self._run_for(job)
            run.slurm_id = sj.id
            if sj.state == "RUNNING":
                run.started = True
                if job.state is JobState.STARTING:
                    self.report(Started(jid))
                if job.stop_reason:
                    # A stop decided by a console that died before sending it.
                    if job.stop_reason == "paused":
                        self._spawn(self._preempt(run, job))
                    else:
                        self._spawn(self._stop(run, job.mode, "stop resent after restart"))
            elif sj.state in ENDED:
                run.started = True
                self._judge(run, sj)
        for jid in list(grid.holding):
            if jid not in self.slurm_jobs:
                job = grid.jobs[jid]
                run = self._run_for(job)
                run.reported = True
                self.report(Exited(jid, None, False, "not found in Slurm after a restart"))

    # ----------------------------------------------------------------- logs
    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        path = self.log_path(job.id)
        try:
            text = await asyncio.to_thread(path.read_text, errors="replace")
        except OSError:
            return ["(no run yet)"]
        return text.splitlines()[-lines:]

    async def read_log(
        self, job: Job, stream: str = "stdout", offset: int | None = None, lines: int = 100
    ) -> LogChunk | None:
        return None  # not followed yet: `logs` reads the tail

    async def last_checkpoint(self, job: Job) -> float | None:
        return None  # not read from the checkpoint folder yet: the stored time stands


def _gpu_count(gres: object) -> int:
    """GPUs in a Slurm GRES string: 'gpu:8', 'gpu:H100:4(IDX:0-3),gpu:A100:2'."""
    total = 0
    for part in str(gres or "").split(","):
        fields = part.split("(")[0].split(":")
        if fields[0] == "gpu" and fields[-1].isdigit():
            total += int(fields[-1])
    return total


def _login() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name
