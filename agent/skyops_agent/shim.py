"""The per-job shim: a tiny process that owns one job, like containerd-shim or conmon.

The agent starts it in a new session, so it outlives the agent and the SSH link. It
starts the job (an argv list, never a shell string) in the job's own process group,
records pid, exit status and times in status.json, and carries out stop requests itself
(checkpoint signal, grace, SIGTERM, grace, SIGKILL of the whole group) so a stop finishes
even when the agent is gone. It becomes a child subreaper (Linux) so processes the job
leaves behind are reaped here and the group can be watched until it is empty.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Any

from skyops_agent import jobdir

KILL_FAILED_AFTER_S = 30.0  # a group still alive this long after SIGKILL is reported
_PR_SET_CHILD_SUBREAPER = 36


def job_env(spec: dict[str, Any], base: dict[str, str]) -> dict[str, str]:
    """The job's environment: the agent's, the request's, then the checkpoint contract."""
    env = dict(base)
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

    A second request may only make the remaining waits shorter.
    """

    def __init__(self, pgid: int) -> None:
        self.pgid = pgid
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

    def advance(self, now: float) -> None:
        while self.deadline is not None and now >= self.deadline:
            if self.phase == "checkpoint":
                self._send(signal.SIGTERM)
                self.phase, self.deadline = "term", now + self.term_grace_s
            else:
                self.kill(now)

    def kill(self, now: float) -> None:
        self._send(signal.SIGKILL)
        self.phase, self.deadline, self.killed_at = "kill", None, now

    def _send(self, signum: int) -> None:
        try:
            os.killpg(self.pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _group_alive(pgid: int) -> bool:
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
        self.spec = jobdir.read_json(self._path(jobdir.SPEC))
        if self.spec is None:
            raise SystemExit(f"shim: no readable {jobdir.SPEC} in {job_dir}")
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
        }
        self.stop_requested = False

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

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_term)
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
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM})
        self._supervise(proc.pid)
        return 0

    def _launch(self) -> subprocess.Popen | None:
        spec = self.spec
        with (
            open(self._path(jobdir.STDOUT), "ab") as out,
            open(self._path(jobdir.STDERR), "ab") as err,
        ):
            try:
                proc = subprocess.Popen(
                    spec["argv"],
                    env=job_env(spec, dict(os.environ)),
                    cwd=spec["workdir"],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    start_new_session=True,  # its own process group, apart from the shim's
                )
            except OSError as exc:
                message = "cannot start {!r}: {}".format(spec["argv"][0], exc.strerror or exc)
                err.write((f"skyops: {message}\n").encode())
                code = 127 if isinstance(exc, FileNotFoundError) else 126
                self._save(
                    state="exited",
                    exit_code=code,
                    error=message,
                    exec_failed=True,
                    ended_at=time.time(),
                )
                return None
        self._save(state="running", pid=proc.pid, pgid=proc.pid, started_at=time.time())
        return proc

    def _supervise(self, pid: int) -> None:
        """Wait for the job and its group with sigtimedwait: no polling loop, no threads."""
        stop = StopSequence(pgid=pid)
        exit_status: int | None = None
        while True:
            exit_status = self._reap(pid, exit_status)
            now = time.monotonic()
            if self.stop_requested:
                self.stop_requested = False
                request = self._stop_request()
                self.status["stop_reason"] = request.get("reason")
                stop.request(request, now)
            if exit_status is not None:
                if not _group_alive(pid):
                    break
                if stop.phase == "idle":
                    stop.kill(now)  # the job ended on its own: nothing it left may linger
            if stop.killed_at is not None and now - stop.killed_at > KILL_FAILED_AFTER_S:
                if not self.status["kill_failed"]:
                    self._save(kill_failed=True)
                if exit_status is not None:
                    break
            timeout = 1.0 if stop.deadline is None else max(0.0, min(1.0, stop.deadline - now))
            info = signal.sigtimedwait({signal.SIGCHLD, signal.SIGTERM}, timeout)
            if info is not None and info.si_signo == signal.SIGTERM:
                self.stop_requested = True
            stop.advance(time.monotonic())
        code = os.waitstatus_to_exitcode(exit_status)
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
    return Shim(os.path.abspath(args.job_dir)).run()


if __name__ == "__main__":
    sys.exit(main())
