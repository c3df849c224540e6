"""The real executor: the scheduler's actions carried out by agents on the nodes.

Each run of a job has its own agent job id (`g<grid>-j<job>.<tag>-r<run>-p<part>`, one
part per node of a gang), so a start that is retried after a reconnect is recognised,
and a process of an older run found on a node is stopped rather than left running
twice. After every (re)connect the agent's list of jobs is reconciled with the grid's
intent. The grid id (the state database's) and the tag (from the job's submission
time) keep grids apart: a record of another grid, or of a job this database never
submitted (a restored copy's numbers reused), is never stopped nor adopted.

A leader that has just started has not heard from every node: GPUs that look taken may
sit beside free ones on a node about to answer. So nothing is preempted (`grid.
preempt_from`) until every node has reported (up, or declared unreachable) or
`settle_s` has passed since the start.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from skyops_agent import protocol

from ..clock import Clock
from ..domain.config import Config
from ..domain.model import HOLDING, Job, JobState, Mode, NodeStatus
from ..domain.telemetry import NodeSample
from ..policy import actions as A
from ..scheduler.executor import (
    CalledOff,
    Checkpointed,
    ExecutorAction,
    Exited,
    LogChunk,
    NodeChanged,
    Report,
    Started,
)
from .link import AgentError, LinkClosed, Transport
from .node import NodeLink

log = logging.getLogger(__name__)
AGENT_ID = re.compile(r"^(?:g([0-9a-f]+)-)?j(\d+)(?:\.([0-9a-f]+))?-r(\d+)-p(\d+)$")
LIVE = {protocol.STATE_STARTING, protocol.STATE_RUNNING, protocol.STATE_STOPPING}


def agent_id(job: int, run: int, part: int, grid: str = "", tag: str = "") -> str:
    if not grid:
        return f"j{job}-r{run}-p{part}"  # no state database: nothing to share boxes with
    return f"g{grid}-j{job}.{tag}-r{run}-p{part}"


def job_tag(job: Job) -> str:
    """Tells this job from another that a restored database numbered the same."""
    return f"{int(job.submitted_at * 1000) & 0xFFFFFFFF:08x}"


@dataclass(frozen=True)
class AgentId:
    grid: str
    job: int
    tag: str
    run: int
    part: int


def parse_agent_id(aid: str) -> AgentId | None:
    m = AGENT_ID.match(aid)
    if not m:
        return None
    return AgentId(m[1] or "", int(m[2]), m[3] or "", int(m[4]), int(m[5]))


@dataclass
class Run:
    job: int
    run: int
    parts: dict[str, str]  # agent job id -> node
    exits: dict[str, dict] = field(default_factory=dict)
    stopping: bool = False
    started: bool = False
    reported: bool = False
    starting: asyncio.Task | None = None  # the start in flight, which a stop waits for
    preempting: asyncio.Task | None = None  # the preemption in flight (a call-off waits)


class FleetExecutor:
    def __init__(
        self,
        cfg: Config,
        transports: dict[str, Transport],
        clock: Clock,
        telemetry_interval_s: float = 1.0,
    ) -> None:
        self.cfg = cfg
        self.clock = clock
        self.transports = transports
        self.telemetry_interval_s = telemetry_interval_s
        self.links: dict[str, NodeLink] = {}
        self.runs: dict[int, Run] = {}
        self.last_node: dict[int, str] = {}
        self.state_dirs: dict[str, str] = {}
        self.report: Callable[[Report], None] = lambda r: None
        self.grid = None
        self._tasks: set[asyncio.Task] = set()
        self.errors: list[str] = []
        self.copies: list[tuple[int, str, str, str]] = []  # checkpoint copies: job, from, to, how
        self.preempt_from = float("-inf")
        self.reported: set[str] = set()  # nodes heard from (or given up on) since start
        self.grid_id = ""  # the state database's (start); "" without one
        self.other_grids: dict[str, list[str]] = {}  # node -> other grids' ids seen there

    # --------------------------------------------------------------- wiring
    def bind(self, report: Callable[[Report], None]) -> None:
        self.report = report

    def attach(self, grid) -> None:
        self.grid = grid
        grid.preempt_from = self.preempt_from

    def _settle_at(self, t: float) -> None:
        self.preempt_from = t
        if self.grid is not None:
            self.grid.preempt_from = t

    async def start(self, grid_id: str = "") -> None:
        self.grid_id = grid_id
        self.reported.clear()
        if self.transports:
            self._settle_at(self.clock.now() + self.cfg.cluster.settle_s)
        for name, transport in self.transports.items():
            link = NodeLink(
                name,
                transport,
                self.clock,
                self.cfg.cluster.heartbeat_timeout_s,
                self._on_event,
                self._on_status,
                self._on_connect,
                self.telemetry_interval_s,
            )
            self.links[name] = link
            if self.grid is not None and name in self.grid.nodes:
                # Nothing is placed on a node until its agent has answered.
                self.report(NodeChanged(name, NodeStatus.DEGRADED, "connecting"))
            link.start()

    async def close(self) -> None:
        """Close the links; jobs keep running under their shims on the nodes."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*(link.stop() for link in self.links.values()), return_exceptions=True)

    def fire(self, now: float) -> int:
        return 0  # agents report on their own time

    def busy(self) -> bool:
        return bool(self._tasks)

    def nodes_settled(self) -> bool:
        return all(link.ready or link.error for link in self.links.values())

    async def open_for_reads(self, grid_id: str) -> bool:
        """A follower has no links of its own: open them just for reading logs, under
        the state's grid id (the agents know its jobs by it)."""
        if self.links:
            return False
        await self.start(grid_id)
        return True

    def status_line(self) -> str:
        waiting = [n for n, link in self.links.items() if link.status is not NodeStatus.UP]
        if not waiting:
            return ""
        return "reconnecting to " + ", ".join(waiting[:4]) + ("..." if len(waiting) > 4 else "")

    def telemetry(self, node: str) -> NodeSample | None:
        link = self.links.get(node)
        return link.sample if link else None

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(str(task.exception()))
            log.error("executor task failed", exc_info=task.exception())

    def _agent(self, node: str):
        link = self.links.get(node)
        return link.link if link is not None else None

    def aid(self, job: Job, run: int, part: int) -> str:
        """This grid's agent job id for a part of a run of `job`."""
        return agent_id(job.id, run, part, self.grid_id, job_tag(job))

    def ours(self, aid: str) -> tuple[AgentId, Job] | None:
        """The job an agent record belongs to, if this grid started it."""
        parsed = parse_agent_id(aid)
        if parsed is None or self.grid is None or parsed.grid != self.grid_id:
            return None
        job = self.grid.jobs.get(parsed.job)
        if job is None or (self.grid_id and parsed.tag != job_tag(job)):
            return None  # numbered by another copy of this database
        if parsed.run > job.runs:
            return None  # a run this copy never decided
        return parsed, job

    def checkpoint_name(self, job: int) -> str:
        known = self.grid.jobs.get(job) if self.grid is not None else None
        if not self.grid_id or known is None:
            return f"job-{job}"
        return f"g{self.grid_id}-job-{job}.{job_tag(known)}"

    def checkpoint_dir(self, node: str, job: int) -> str:
        shared = self.cfg.cluster.shared_checkpoint_path
        if shared:
            return f"{shared.rstrip('/')}/{self.checkpoint_name(job)}"
        state = self.state_dirs.get(node, ".skyops/state")
        return f"{state}/checkpoints/{self.checkpoint_name(job)}"

    # -------------------------------------------------------------- actions
    def execute(self, action: ExecutorAction, job: Job) -> None:
        if isinstance(action, A.Start):
            # The grid numbered this run when it decided the start (job.runs).
            run = Run(
                job.id,
                job.runs,
                {self.aid(job, job.runs, k): p.node for k, p in enumerate(action.placement)},
            )
            self.runs[job.id] = run
            spec = self._spec(job, action.resume)
            gpus = {p.node: list(p.gpus) for p in action.placement}
            run.starting = self._spawn(self._start(run, spec, gpus))
        elif isinstance(action, A.Preempt):
            run = self._run_for(job)
            run.preempting = self._spawn(self._stop(run, True, action.cause))
        elif isinstance(action, A.CallOff):
            self._spawn(self._call_off(self._run_for(job), action.cause))
        elif isinstance(action, A.Stop):
            self._spawn(self._stop(self._run_for(job), False, action.cause))

    def _spec(self, job: Job, resume: bool) -> dict:
        return {
            "argv": list(job.argv) or ["true"],
            "env": dict(job.env),
            "workdir": job.workdir,
            "mode": str(job.mode),
            "resume": resume,
            "user": self.cfg.cluster.unix_user(job.user),
        }

    def _configure(self) -> dict:
        """What every agent is told on connect: this grid, and what it may accept."""
        c = self.cfg.cluster
        roots = list(c.checkpoint_roots)
        if c.shared_checkpoint_path and c.shared_checkpoint_path.startswith("/"):
            roots.append(c.shared_checkpoint_path)
        return {
            "work_roots": list(c.work_roots),
            "checkpoint_roots": roots,
            "unpack_max_bytes": c.unpack_max_bytes,
            "unpack_max_ratio": c.unpack_max_ratio,
        }

    def _run_for(self, job: Job) -> Run:
        run = self.runs.get(job.id)
        if run is None or run.run != job.runs:
            n = job.runs
            run = Run(job.id, n, {self.aid(job, n, k): p.node for k, p in enumerate(job.placement)})
            self.runs[job.id] = run
        return run

    async def _start(self, run: Run, spec: dict, gpus: dict[str, list[int]]) -> None:
        nodes = list(dict.fromkeys(run.parts.values()))
        if spec["resume"] and not self.cfg.cluster.shared_checkpoint_path:
            await self._follow_checkpoint(run.job, nodes[0])
        for aid, node in run.parts.items():
            if run.stopping:
                return  # stopped before it started: its stop finds nothing to stop
            if not await self._start_part(run, aid, node, spec, gpus[node]):
                return
        run.started = True
        self.last_node[run.job] = nodes[0]
        self.report(Started(run.job))

    async def _start_part(self, run: Run, aid: str, node: str, spec: dict, gpus: list[int]) -> bool:
        agent = self._agent(node)
        if agent is None:
            return False  # the node's reconcile will start it when the link is back
        try:
            await agent.request(
                protocol.START,
                job_id=aid,
                gpus=gpus,
                checkpoint_dir=self.checkpoint_dir(node, run.job),
                grid=self.grid_id,
                **spec,
            )
        except AgentError as e:
            if e.code == protocol.E_JOB_EXISTS:
                return True
            run.reported = True
            await self._stop(run, False, f"a part failed to start: {e.message}")
            self.report(Exited(run.job, None, False, f"start failed on {node}: {e.message}"))
            return False
        except (LinkClosed, TimeoutError):
            return False
        return True

    async def _stop(self, run: Run, preempt: bool, reason: str) -> None:
        run.stopping = True
        start = run.starting
        if start is not None and start is not asyncio.current_task():
            # A stop sent while the start is still on its way (copying a checkpoint, say)
            # would find no process, and the start would then leave one running that the
            # console thinks stopped: the stop goes after the start.
            await asyncio.wait({start})
        c = self.cfg.cluster
        for aid, node in run.parts.items():
            if aid in run.exits:
                continue
            agent = self._agent(node)
            if agent is None:
                continue
            try:
                await agent.request(
                    protocol.STOP,
                    job_id=aid,
                    reason=reason[:200] or "stop",
                    checkpoint_signal=c.checkpoint_signal if preempt else None,
                    grace_s=c.grace_s if preempt else 0.0,
                    term_grace_s=c.stop_grace_s,
                )
            except AgentError as e:
                if e.code in (protocol.E_UNKNOWN_JOB, protocol.E_NOT_RUNNING):
                    self._part_exited(run, aid, {"exit_code": None, "stop_reason": reason})
            except (LinkClosed, TimeoutError):
                pass

    async def _call_off(self, run: Run, cause: str) -> None:
        """Ask each part's agent to call its stop off (`unstop`; it can while the
        checkpoint grace runs). All did: the job runs on (`CalledOff`). One part too
        late: the job pauses as preempted, and the parts that ran on are stopped again."""
        pending = run.preempting
        if pending is not None and pending is not asyncio.current_task():
            await asyncio.wait({pending})  # an unstop before its stop would undo nothing
        if not run.stopping or run.reported:
            return
        called, ok = 0, True
        for aid, node in run.parts.items():
            agent = self._agent(node)
            if aid in run.exits or agent is None:
                ok = False
                continue
            try:
                await agent.request(protocol.UNSTOP, job_id=aid, reason=cause[:200] or "called off")
                called += 1
            except (AgentError, LinkClosed, TimeoutError):
                ok = False
        if ok:
            run.stopping = False
            self.report(CalledOff(run.job, cause))
        elif called:
            await self._stop(run, True, "preempted (too late to call off on every node)")

    async def _follow_checkpoint(self, job: int, target: str) -> None:
        """Copy the job's checkpoint folder to the node it resumes on, from the node
        that holds the newest one, through the agents (no shared filesystem)."""
        sources = [self.last_node[job]] if job in self.last_node else list(self.links)
        best = None
        for node in sources:
            agent = self._agent(node)
            if node == target or agent is None:
                continue
            try:
                info = await agent.request(
                    protocol.CHECKPOINT_LIST,
                    job_id=f"j{job}-ckpt",
                    checkpoint_dir=self.checkpoint_dir(node, job),
                )
            except (AgentError, LinkClosed, TimeoutError):
                continue
            newest = info.get("newest_mtime")
            if info.get("files") and newest is not None and (best is None or newest > best[0]):
                best = (newest, node)
        if best is None:
            return
        src, dst = self._agent(best[1]), self._agent(target)
        if src is None or dst is None:
            return
        src_t, dst_t = self.transports.get(best[1]), self.transports.get(target)
        # An SshTransport exists only once fleet.ssh is loaded (a grid with SSH nodes): a
        # local grid does not load asyncssh to find out.
        ssh = sys.modules.get(f"{__package__}.ssh")
        if ssh and isinstance(src_t, ssh.SshTransport) and isinstance(dst_t, ssh.SshTransport):
            from .ssh import asyncssh, sftp_copy_dir

            try:
                # SFTP starts in the login's home, where the agent's state folder lives.
                size = await sftp_copy_dir(
                    src_t,
                    src_t.checkpoint_path(self.checkpoint_name(job)),
                    dst_t,
                    dst_t.checkpoint_path(self.checkpoint_name(job)),
                )
                log.info(
                    "job %s: checkpoint copied %s -> %s over SFTP (%s bytes)",
                    job,
                    best[1],
                    target,
                    size,
                )
                self.copies.append((job, best[1], target, "sftp"))
                return
            except (OSError, asyncssh.Error) as e:
                self.errors.append(f"job {job}: SFTP copy {best[1]} -> {target} failed: {e}")
        try:
            packed = await src.request(
                protocol.CHECKPOINT_PACK,
                job_id=f"j{job}-ckpt",
                checkpoint_dir=self.checkpoint_dir(best[1], job),
            )
            await dst.request(
                protocol.CHECKPOINT_UNPACK,
                job_id=f"j{job}-ckpt",
                checkpoint_dir=self.checkpoint_dir(target, job),
                data=packed["data"],
            )
            log.info(
                "job %s: checkpoint copied %s -> %s (%s bytes)",
                job,
                best[1],
                target,
                packed.get("bytes"),
            )
            self.copies.append((job, best[1], target, "agent"))
        except (AgentError, LinkClosed, TimeoutError) as e:
            self.errors.append(f"job {job}: checkpoint copy {best[1]} -> {target} failed: {e}")

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        run = self.runs.get(job.id)
        node = job.placement[0].node if job.placement else self.last_node.get(job.id)
        if node is None:
            return ["(no run yet)"]
        agent = self._agent(node)
        if agent is None:
            return [f"(node {node} is not connected)"]
        aid = next(iter(run.parts)) if run else self.aid(job, max(job.runs, 1), 0)
        try:
            reply = await agent.request(protocol.LOGS, job_id=aid, stream=stream, tail_lines=lines)
        except (AgentError, LinkClosed, TimeoutError) as e:
            return [f"(logs unavailable: {e})"]
        text = reply.get("lines") or reply.get("text") or []
        return text.splitlines() if isinstance(text, str) else [str(x) for x in text]

    async def read_log(
        self, job: Job, stream: str = "stdout", offset: int | None = None, lines: int = 100
    ) -> LogChunk | None:
        """To follow a log: from byte `offset` of the job's latest run's file (its last
        `lines` lines when None), with `run` (which file) and `next_offset`. None while
        there is no run, or its node does not answer."""
        run = self.runs.get(job.id)
        node = job.placement[0].node if job.placement else self.last_node.get(job.id)
        agent = self._agent(node) if node is not None else None
        if agent is None:
            return None
        aid = next(iter(run.parts)) if run else self.aid(job, max(job.runs, 1), 0)
        try:
            reply = await agent.request(
                protocol.LOGS, job_id=aid, stream=stream, tail_lines=lines, offset=offset
            )
        except (AgentError, LinkClosed, TimeoutError):
            return None
        return {
            "run": aid,
            "lines": [str(x) for x in reply.get("lines") or []],
            "partial": str(reply.get("partial") or ""),
            "size": int(reply.get("size") or 0),
            "next_offset": int(reply.get("next_offset") or 0),
        }

    # ---------------------------------------------------------------- events
    def _on_status(self, node: str, status: NodeStatus, cause: str) -> None:
        since = None
        if status is NodeStatus.UNREACHABLE and node in self.links:
            since = self.links[node].last_heartbeat  # nothing ran for us after that
        if status is not NodeStatus.DEGRADED and self.preempt_from != float("-inf"):
            self.reported.add(node)
            if self.reported >= self.transports.keys():
                log.info("every node has reported: preemption allowed")
                self._settle_at(float("-inf"))
        self.report(NodeChanged(node, status, cause, since))

    def _on_event(self, node: str, msg: dict) -> None:
        if msg.get("type") != protocol.JOB_EXITED:
            return
        aid = str(msg.get("job_id", ""))
        found = self.ours(aid)
        if found is None:
            return  # another grid's job, or one this database never started
        job, run_no = found[0].job, found[0].run
        run = self.runs.get(job)
        if run is None:
            run = self._run_for(found[1])
        if run.run != run_no or aid not in run.parts:
            return  # an older run, already accounted for
        self._part_exited(run, aid, msg)

    def _part_exited(self, run: Run, aid: str, rec: dict) -> None:
        if aid in run.exits or run.reported:
            return
        run.exits[aid] = rec
        code = rec.get("exit_code")
        if len(run.exits) < len(run.parts):
            if code != 0 and not run.stopping:
                # A gang whose part failed stops as a whole.
                self._spawn(self._stop(run, False, f"part {aid} exited with {code}"))
            return
        run.reported = True
        codes = [r.get("exit_code") for r in run.exits.values()]
        worst = next((c for c in codes if c != 0), 0) if None not in codes else None
        on_its_own = all(not r.get("stop_reason") for r in run.exits.values())
        sig = next((r.get("signal") for r in run.exits.values() if r.get("signal")), None)
        cause = f"exited with status {worst}" if worst is not None else f"ended by {sig or 'stop'}"
        ended = [r.get("ended_at") for r in run.exits.values()]
        # Billing stops when the agent recorded the end, not when the news arrived.
        ended_at = max(e for e in ended if e is not None) if None not in ended else None
        job = self.grid.jobs.get(run.job) if self.grid is not None else None
        started = job.started_at if job is not None else None
        preempted = job is not None and job.stop_reason == "paused"
        self.report(Exited(run.job, worst, on_its_own and worst == 0, cause, ended_at))
        node = next(iter(run.parts.values()), None)
        if node is not None and started is not None:
            end = ended_at if ended_at is not None else self.clock.now()
            self._spawn(self._checkpoint_facts(run.job, node, started, end, preempted))

    async def last_checkpoint(self, job: Job) -> float | None:
        """When the job's checkpoint folder last changed on the node it runs or last ran
        on; None while it has none, or the node does not answer."""
        node = job.placement[0].node if job.placement else self.last_node.get(job.id)
        return await self._newest_checkpoint(node, job.id) if node is not None else None

    async def _newest_checkpoint(self, node: str, job: int) -> float | None:
        """The newest file's mtime in the job's checkpoint folder on `node` (docs/fleet.md)."""
        agent = self._agent(node)
        if agent is None:
            return None
        try:
            info = await agent.request(
                protocol.CHECKPOINT_LIST,
                job_id=f"j{job}-ckpt",
                checkpoint_dir=self.checkpoint_dir(node, job),
            )
        except (AgentError, LinkClosed, TimeoutError):
            return None
        newest = info.get("newest_mtime") if info.get("files") else None
        return float(newest) if newest is not None else None

    async def _checkpoint_facts(
        self, job: int, node: str, started: float, ended: float, preempted: bool
    ) -> None:
        """After a run ends: its last checkpoint and, for a preemption, the work it lost:
        from its last checkpoint in this run (else the run's start) to its end."""
        at = await self._newest_checkpoint(node, job)
        saved_from = at if at is not None and at >= started else started
        lost = max(0.0, ended - saved_from) if preempted else 0.0
        if at is not None or lost:
            self.report(Checkpointed(job, at, lost))

    def _orphan_grace(self, job: Job | None) -> dict:
        """A Flex run left on a box that was cut off (its job paused, or resumed
        elsewhere) has work to save: it is stopped as a preemption is, checkpoint signal
        and grace first. Anything else ends with SIGTERM, as a stop does."""
        c = self.cfg.cluster
        if job is not None and job.mode is Mode.FLEX and not job.finished:
            return {"checkpoint_signal": c.checkpoint_signal, "grace_s": c.grace_s}
        return {"checkpoint_signal": None, "grace_s": 0.0}

    async def _on_connect(self, link: NodeLink) -> None:
        """Reconcile what the agent runs with what the grid intends on this node."""
        agent = link.link
        assert agent is not None
        self.state_dirs[link.name] = str(agent.hello.get("state_dir") or ".skyops/state")
        configured = await agent.request(protocol.CONFIGURE, grid=self.grid_id, **self._configure())
        self.other_grids[link.name] = list(configured.get("other_grids") or [])
        # Only what was intended before the listing was taken can be judged by it.
        intended: dict[int, int] = (
            {jid: self._run_for(self.grid.jobs[jid]).run for jid in self.grid.holding}
            if self.grid is not None
            else {}
        )
        listing = (await agent.request(protocol.JOBS)).get("jobs", [])
        seen: set[str] = set()
        grid = self.grid
        for rec in listing:
            aid = str(rec.get("job_id", ""))
            found = self.ours(aid)
            if found is None:
                continue  # not started by this grid: never stopped nor adopted here
            seen.add(aid)
            job = found[1]
            current = None
            if job.state in HOLDING:
                run = self._run_for(job)
                if run.run == found[0].run and aid in run.parts:
                    current = run
            state = rec.get("state")
            if current is None:
                if state in LIVE:  # not scheduled here (any more): never run twice
                    await agent.request(
                        protocol.STOP,
                        job_id=aid,
                        reason="not scheduled here",
                        term_grace_s=self.cfg.cluster.stop_grace_s,
                        **self._orphan_grace(job),
                    )
                continue
            if state in (protocol.STATE_EXITED, protocol.STATE_LOST):
                # Ended while nobody listened: billing stops when it ended (the agent's
                # record), not now.
                self._part_exited(current, aid, dict(rec, found_late=True))
                continue
            if job.stop_reason and state in (protocol.STATE_STARTING, protocol.STATE_RUNNING):
                # A stop decided while this node was out of reach (or by a console that
                # died before sending it): send it now.
                self._spawn(
                    self._stop(current, job.stop_reason == "paused", "stop resent after reconnect")
                )
            elif not current.started and all(
                a in seen or self.runs[current.job].parts[a] != link.name for a in current.parts
            ):
                current.started = True
                self.report(Started(current.job))
        if grid is None:
            return
        for jid in list(grid.holding):
            job = grid.jobs[jid]
            run = self._run_for(job)
            if intended.get(jid) != run.run:
                continue  # started after the listing: not ours to judge
            for aid, node in run.parts.items():
                if node != link.name or aid in seen or aid in run.exits:
                    continue
                if job.state is JobState.STARTING and not run.stopping:
                    spec = self._spec(job, job.runs > 1)
                    gpus = next(list(p.gpus) for p in job.placement if p.node == node)
                    if await self._start_part(run, aid, node, spec, gpus) and all(
                        a in seen or a == aid for a in run.parts
                    ):
                        run.started = True
                        self.report(Started(job.id))
                else:
                    self._part_exited(
                        run, aid, {"exit_code": None, "stop_reason": "lost", "signal": None}
                    )
