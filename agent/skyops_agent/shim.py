"""The per-job shim: a tiny process that owns one job, like containerd-shim or conmon.

The agent starts it in a new session, so it outlives the agent and the SSH link. It
starts the job (an argv list, never a shell string) in the job's own process group,
records pid, exit status and times in status.json, and carries out stop requests itself
(checkpoint signal, grace, SIGTERM, grace, SIGKILL of the whole group) so a stop finishes
even when the agent is gone. A stop still in its checkpoint grace can be called off
(unstop.json, then SIGUSR2): the job runs on; once SIGTERM is out it cannot. It becomes a child subreaper (Linux) so processes the job
leaves behind are reaped here and the group can be watched until it is empty.

The shim runs as the agent's user; only the job's child drops to the job's Unix user
(setgroups, setgid, setuid before exec), after joining the job's cgroup (cgroups.py).
So the records the shim writes (status.json, in a folder the job cannot write) say what
the shim saw, whatever the job does.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from skyops_agent import identity, jobdir
from skyops_agent.cgroups import PROCESS_GROUP, Cgroup

KILL_FAILED_AFTER_S = 30.0  # a group still alive this long after SIGKILL is reported
_PR_SET_CHILD_SUBREAPER = 36


def job_env(spec: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
    """The job's environment: the agent's, the request's, then the checkpoint contract."""
    env = dict(base)
    run_as = spec.get("run_as")
    if run_as:  # not the agent's home and name
        env.update(HOME=run_as.get("home") or "/", USER=run_as["name"], LOGNAME=run_as["name"])
    env.update(spec.get("env") or {})
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in spec.get("gpus") or [])
    env["SKYOPS_JOB_ID"] = spec["job_id"]
    env["SKYOPS_MODE"] = spec["mode"]
    env["SKYOPS_CHECKPOINT_DIR"] = spec["checkpoint_dir"]
    if spec.get("resume"):
        env["SKYOPS_RESUME"] = "1"
    else:
        env.pop("SKYOPS_RESUME", None)
    return env


class StopSequence:
    """Checkpoint signal -> grace -> SIGTERM -> grace -> SIGKILL, sent to the job's group.

    A second request may only make the remaining waits shorter. `call_off` goes back to
    idle while the checkpoint grace runs: the job keeps what it saved and runs on.
    """

    def __init__(self, pgid: int, cgroup: Cgroup | None = None) -> None:
        self.pgid = pgid
        self.cgroup = cgroup
        self.phase = "idle"  # idle, checkpoint, term, kill
        self.deadline: float | None = None
        self.term_grace_s = 0.0
        self.killed_at: float | None = None

    def request(self, stop: dict[str, Any], now: float) -> None:
        grace = float(stop.get("grace_s", 0))
        self.term_grace_s = float(stop.get("term_grace_s", 0))
        ckpt = stop.get("checkpoint_signal")
        if self.phase == "idle":
            if ckpt:
                self._send(jobdir.signal_number(ckpt))
                self.phase, self.deadline = "checkpoint", now + grace
            else:
                self._send(signal.SIGTERM)
                self.phase, self.deadline = "term", now + self.term_grace_s
        elif self.deadline is not None:
            if self.phase == "checkpoint":
                wait = grace if ckpt else 0.0  # a stop without checkpoint: SIGTERM now
            else:
                wait = self.term_grace_s
            self.deadline = min(self.deadline, now + wait)
        self.advance(now)

    def call_off(self, now: float) -> bool:
        self.advance(now)
        if self.phase not in ("idle", "checkpoint"):
            return False
        self.phase, self.deadline = "idle", None
        return True

    def advance(self, now: float) -> None:
        while self.deadline is not None and now >= self.deadline:
            if self.phase == "checkpoint":
                self._send(signal.SIGTERM)
                self.phase, self.deadline = "term", now + self.term_grace_s
            else:
                self.kill(now)

    def kill(self, now: float) -> None:
        self._send(signal.SIGKILL)
        self.phase, self.deadline = "kill", None
        if self.killed_at is None:
            self.killed_at = now

    def _send(self, signum: int) -> None:
        if self.cgroup is not None:
            self.cgroup.signal(signum)  # the group, and what left it (setsid, double fork)
            return
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def group_alive(pgid: int, cgroup: Cgroup | None = None) -> bool:
    """Is anything of the job left? With a cgroup: is it non-empty."""
    if cgroup is not None:
        return bool(cgroup.pids())
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _become_subreaper() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:
        pass  # not Linux, or no ctypes: stragglers are reaped by init instead


class Shim:
    def __init__(self, job_dir: str) -> None:
        self.dir = job_dir
        spec = jobdir.read_json(self._path(jobdir.SPEC))
        if spec is None:
            raise SystemExit(f"shim: no readable {jobdir.SPEC} in {job_dir}")
        self.spec: dict[str, Any] = spec
        self.status: dict[str, Any] = {
            "run_id": self.spec["run_id"],
            "state": "starting",
            "shim_pid": os.getpid(),
            "pid": None,
            "pgid": None,
            "started_at": None,
            "ended_at": None,
            "exit_code": None,
            "signal": None,
            "stop_reason": None,
            "error": None,
            "exec_failed": False,
            "kill_failed": False,
            "user": self.spec.get("user"),
            "tracking": PROCESS_GROUP,
            "cgroup": None,
        }
        self.stop_requested = False
        self.unstop_requested = False
        self.stop_handled: Any = None  # requested_at of the last stop request carried out
        self.cgroup: Cgroup | None = None

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _save(self, **changes: Any) -> None:
        self.status.update(changes)
        jobdir.write_json(self._path(jobdir.STATUS), self.status)

    def _stop_request(self) -> dict[str, Any]:
        stop = jobdir.read_json(self._path(jobdir.STOP))
        if stop is None:  # SIGTERM from someone other than the agent: stop without a checkpoint
            stop = {"reason": "shim terminated", "grace_s": 0, "term_grace_s": 10.0}
        return stop

    def _on_term(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def _on_unstop(self, signum: int, frame: Any) -> None:
        self.unstop_requested = True

    def _take_stop(self, stop: StopSequence, now: float) -> None:
        """Carry out the stop request on disk, once: a SIGTERM whose request was already
        carried out, or called off, changes nothing."""
        request = self._stop_request()
        if request.get("called_off"):
            return
        at = request.get("requested_at")
        if at is not None and at == self.stop_handled:
            return
        self.stop_handled = at
        self.status["stop_reason"] = request.get("reason")
        stop.request(request, now)

    def _take_unstop(self, stop: StopSequence, exited: bool, now: float) -> None:
        """Call the stop off if its job still runs in the checkpoint grace; the answer
        goes into status.json (`unstop`), which the agent waits for."""
        ask = jobdir.read_json(self._path(jobdir.UNSTOP))
        if ask is None:
            return
        if os.path.exists(self._path(jobdir.STOP)):
            self._take_stop(stop, now)  # a stop whose SIGTERM is still on its way
        was = stop.phase
        ok = not exited and stop.call_off(now)
        if ok:
            request = jobdir.read_json(self._path(jobdir.STOP))
            if request is not None:
                request.update(called_off=True, called_off_at=time.time())
                jobdir.write_json(self._path(jobdir.STOP), request)
            self.status["stop_reason"] = None
        try:
            os.unlink(self._path(jobdir.UNSTOP))
        except FileNotFoundError:
            pass
        self._save(unstop={"token": ask.get("token"), "ok": ok, "phase": was})

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR2, self._on_unstop)
        for signum in (signal.SIGHUP, signal.SIGINT):  # a handler, not SIG_IGN: jobs inherit that
            signal.signal(signum, lambda s, f: None)
        _become_subreaper()
        self._save()
        if self.stop_requested or os.path.exists(self._path(jobdir.STOP)):
            reason = self._stop_request().get("reason")
            self._save(state="exited", stop_reason=reason, ended_at=time.time())
            return 0
        proc = self._launch()
        if proc is None:
            return 0
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR2})
        self._supervise(proc.pid)
        return 0

    def _launch(self) -> subprocess.Popen | None:
        spec = self.spec
        run_as = spec.get("run_as")  # None: the job runs as the agent's user
        user = None
        if run_as:
            user = identity.JobUser(
                run_as["name"], run_as["uid"], run_as["gid"], tuple(run_as["groups"]), "/"
            )
        self.cgroup = Cgroup.create(spec["job_id"] + "-" + spec["run_id"][:12])
        cgroup = self.cgroup

        def in_child() -> None:
            if cgroup is not None:
                cgroup.add_self()
            if run_as:
                identity.drop_to(run_as)

        with (
            open(self._path(jobdir.STDOUT), "ab") as out,
            open(self._path(jobdir.STDERR), "ab") as err,
        ):
            if user is not None:
                for f in (out, err):  # the owner reads them; the agent (group) too
                    os.fchown(f.fileno(), user.uid, os.getegid())
                    os.fchmod(f.fileno(), 0o640)
            try:
                with identity.BecomeUser(user):
                    os.chdir(spec["workdir"])  # with the job user's rights; the child inherits it
            except OSError as exc:
                self._not_started(
                    err, "cannot enter workdir {}: {}".format(spec["workdir"], exc.strerror or exc)
                )
                return None
            try:
                proc = subprocess.Popen(
                    spec["argv"],
                    env=job_env(spec, dict(os.environ)),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    start_new_session=True,  # its own process group, apart from the shim's
                    preexec_fn=in_child if (cgroup is not None or run_as) else None,
                )
            except OSError as exc:
                message = "cannot start {!r}: {}".format(spec["argv"][0], exc.strerror or exc)
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                self._not_started(err, message, code)
                return None
            except subprocess.SubprocessError:
                who = run_as["name"] if run_as else "the agent's user"
                self._not_started(err, f"cannot join the job's cgroup or become {who}")
                return None
            finally:
                os.chdir("/")
        self._save(
            state="running",
            pid=proc.pid,
            pgid=proc.pid,
            started_at=time.time(),
            tracking=cgroup.kind if cgroup is not None else PROCESS_GROUP,
            cgroup=cgroup.to_json() if cgroup is not None else None,
        )
        return proc

    def _not_started(self, err: Any, message: str, code: int = 126) -> None:
        err.write((f"skyops: {message}\n").encode())
        if self.cgroup is not None:
            self.cgroup.remove()
        self._save(
            state="exited", exit_code=code, error=message, exec_failed=True, ended_at=time.time()
        )
        return None

    def _supervise(self, pid: int) -> None:
        """Wait for the job and its group with sigtimedwait: no polling loop, no threads."""
        stop = StopSequence(pgid=pid, cgroup=self.cgroup)
        exit_status: int | None = None
        while True:
            exit_status = self._reap(pid, exit_status)
            now = time.monotonic()
            if self.stop_requested:
                self.stop_requested = False
                self._take_stop(stop, now)
            if self.unstop_requested:
                self.unstop_requested = False
                self._take_unstop(stop, exit_status is not None, now)
            if exit_status is not None or stop.phase == "kill":
                if exit_status is not None and not group_alive(pid, self.cgroup):
                    break
                if stop.phase == "idle" or (stop.phase == "kill" and self.cgroup is not None):
                    stop.kill(now)  # nothing the job left may linger; forks race a kill
            if stop.killed_at is not None and now - stop.killed_at > KILL_FAILED_AFTER_S:
                if not self.status["kill_failed"]:
                    self._save(kill_failed=True)
                if exit_status is not None:
                    break
            timeout = 1.0 if stop.deadline is None else max(0.0, min(1.0, stop.deadline - now))
            info = signal.sigtimedwait({signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR2}, timeout)
            if info is not None and info.si_signo == signal.SIGTERM:
                self.stop_requested = True
            elif info is not None and info.si_signo == signal.SIGUSR2:
                self.unstop_requested = True
            stop.advance(time.monotonic())
        code = os.waitstatus_to_exitcode(exit_status)
        if self.cgroup is not None and not self.cgroup.pids():
            self.cgroup.remove()
        self._save(
            state="exited",
            exit_code=code if code >= 0 else None,
            signal=jobdir.signal_name(-code) if code < 0 else None,
            ended_at=time.time(),
        )

    @staticmethod
    def _reap(pid: int, exit_status: int | None) -> int | None:
        """Reap every exited child (the job, and orphans we adopted); keep the job's status."""
        while True:
            try:
                child, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return exit_status
            if child == 0:
                return exit_status
            if child == pid:
                exit_status = status


def main(argv: list | None = None) -> int:
    parser = argparse.ArgumentParser(prog="skyops-agent shim")
    parser.add_argument("--job-dir", required=True)
    args = parser.parse_args(argv)
    os.umask(0o077)  # its records: the agent's alone
    return Shim(os.path.abspath(args.job_dir)).run()


if __name__ == "__main__":
    sys.exit(main())
