"""The per-job shim: a tiny process that owns one job, like containerd-shim or conmon.

The agent starts it in a new session, so it outlives the agent and the SSH link. It
starts the job (an argv list, never a shell string) in the job's own process group,
records pid, exit status and times in status.json, and carries out stop requests itself
(checkpoint signal, grace, SIGTERM, grace, SIGKILL of the whole group) so a stop finishes
even when the agent is gone. A stop still in its checkpoint grace can be called off
(unstop.json, then SIGUSR2): the job runs on; once SIGTERM is out it cannot. It becomes a
child subreaper (Linux) so processes the job leaves behind are reaped here and the group
can be watched until it is empty.

Once the job runs, the shim can hand the wait to `skyops-shim-wait` (shim_wait.c, built
by the agent; `--wait-with PATH`): it execve()s that program, which keeps this pid, the
blocked signals and the subreaper flag, and runs the same loop as `Shim._supervise` in
about 1 MB instead of an interpreter's 8. Without it, or where the execve fails, the
loop below runs here; status.json's `supervisor` says which ("c" or "python").

The shim runs as the agent's user; only the job's child drops to the job's Unix user
(setgroups, setgid, setuid before exec), after joining the job's cgroup (cgroups.py).
So the records the shim writes (status.json, in a folder the job cannot write) say what
the shim saw, whatever the job does.

There is one shim per running job for the job's whole life, so it is kept small
(docs/fleet.md, "Memory per job"): the agent starts it with ``python -I -S`` (no site,
no user site, no PYTHON* variables), and it imports builtin modules, jobdir and cgroups
only: it forks and execs the job itself, reads its arguments by hand and uses `_signal`,
as subprocess, argparse, json's Python half and signal's enums would each cost every
shim 0.6-2.5 MB.
"""

from __future__ import annotations

import os
import sys
import time
from errno import ENOENT

from skyops_agent import jobdir
from skyops_agent.cgroups import PROCESS_GROUP, Cgroup

TYPE_CHECKING = False
if TYPE_CHECKING:  # typeshed types signal's C half only through signal
    import signal
    from typing import Any
else:
    import _signal as signal

KILL_FAILED_AFTER_S = 30.0  # a group still alive this long after SIGKILL is reported
_PR_SET_CHILD_SUBREAPER = 36
_WAITED = {signal.SIGCHLD, signal.SIGTERM, signal.SIGUSR2}
_HUSHED = {signal.SIGHUP, signal.SIGINT}  # no-op handlers here; the waiter ignores them
# What skyops-shim-wait writes in status.json; the rest it is handed as they are.
_WAITER_WRITES = (
    "state",
    "exit_code",
    "signal",
    "stop_reason",
    "ended_at",
    "kill_failed",
    "unstop",
)


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
    """prctl(PR_SET_CHILD_SUBREAPER) through `_ctypes` alone: the `ctypes` package on top
    of it costs the shim about 0.4 MB for one call."""
    try:
        import _ctypes

        prctl = _ctypes.dlsym(_ctypes.dlopen(None), "prctl")  # type: ignore[arg-type]
        _ctypes.call_function(prctl, (_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
        return
    except Exception:
        pass
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except Exception:
        pass  # not Linux, or no ctypes: stragglers are reaped by init instead


class AsUser:
    """Take the job user's ids as the effective ids for a moment (``with``), so a path is
    opened with the user's rights, not the agent's; then take the agent's back."""

    def __init__(self, run_as: dict[str, Any] | None) -> None:
        self.run_as = run_as
        self._saved: tuple | None = None

    def __enter__(self) -> AsUser:
        if self.run_as:
            self._saved = (os.geteuid(), os.getegid(), os.getgroups())
            os.setgroups([int(g) for g in self.run_as["groups"]])
            os.setegid(int(self.run_as["gid"]))
            os.seteuid(int(self.run_as["uid"]))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._saved is not None:
            euid, egid, groups = self._saved
            os.seteuid(euid)
            os.setegid(egid)
            os.setgroups(groups)


def drop_to(run_as: dict[str, Any]) -> None:
    """In the job's child, before exec: become the user for good (no way back)."""
    os.setgroups([int(g) for g in run_as["groups"]])
    os.setgid(int(run_as["gid"]))
    os.setuid(int(run_as["uid"]))


def spawn(
    argv: list,
    env: dict[str, str],
    stdout: int,
    stderr: int,
    cgroup: Cgroup | None,
    run_as: dict[str, Any] | None,
) -> tuple[int, str, str, int]:
    """fork and exec the job as `subprocess.Popen(start_new_session=True, close_fds=True,
    stdin=DEVNULL)` would, without importing subprocess (2.5 MB a shim). The child joins
    the cgroup and drops to the job's user before exec. Returns (pid, "", "", 0), or
    (pid, stage, why, errno) when the child failed in "setup" or "exec" (it has exited
    and been reaped then).
    """
    devnull = os.open(os.devnull, os.O_RDONLY)
    report_r, report_w = os.pipe()  # close-on-exec: EOF says the exec went through
    try:
        pid = os.fork()
    except BaseException:
        for fd in (devnull, report_r, report_w):
            os.close(fd)
        raise
    if pid == 0:  # the child: never returns
        stage = "setup"
        try:
            os.setsid()
            for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; jobs must not
                signal.signal(signum, signal.SIG_DFL)
            if cgroup is not None:
                cgroup.add_self()
            if run_as:
                drop_to(run_as)
            for fd, to in ((devnull, 0), (stdout, 1), (stderr, 2)):
                os.dup2(fd, to)
            try:  # what is open, not every number up to RLIMIT_NOFILE
                top = max(int(fd) for fd in os.listdir("/proc/self/fd")) + 1
            except (OSError, ValueError):
                top = os.sysconf("SC_OPEN_MAX")
            os.closerange(3, report_w)
            os.closerange(report_w + 1, top)
            stage = "exec"
            os.execvpe(argv[0], argv, env)
        except BaseException as exc:
            try:
                errno = getattr(exc, "errno", None) or 0
                os.write(report_w, f"{stage}:{errno}:{exc}".encode(errors="replace"))
            finally:
                os._exit(127)
    os.close(report_w)
    os.close(devnull)
    report = b""
    while True:
        chunk = os.read(report_r, 64)
        if not chunk:
            break
        report += chunk
    os.close(report_r)
    if not report:
        return pid, "", "", 0
    os.waitpid(pid, 0)
    stage, errno, why = report.decode(errors="replace").split(":", 2)
    return pid, stage, os.strerror(int(errno)) if int(errno) else why, int(errno)


class Shim:
    def __init__(self, job_dir: str, wait_with: str | None = None) -> None:
        self.dir = job_dir
        self.wait_with = wait_with
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
            "supervisor": "c" if wait_with else "python",
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
        pid = self._launch()
        if pid is None:
            return 0
        signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)  # runs the handlers of any caught
        if self.wait_with:
            self._hand_over(pid, self.wait_with)  # returns only when the execve failed
        self._supervise(pid)
        return 0

    def _hand_over(self, pid: int, waiter: str) -> None:
        """execve skyops-shim-wait. SIGHUP and SIGINT are blocked across it (the default
        would end the waiter before it ignores them); SIGTERM and SIGUSR2 the handlers
        caught go along as flags."""
        cgroup = self.cgroup
        fixed = {k: v for k, v in self.status.items() if k not in _WAITER_WRITES}
        signal.pthread_sigmask(signal.SIG_BLOCK, _HUSHED)
        argv = [
            waiter,
            "--job-dir",
            self.dir,
            str(pid),
            cgroup.kind if cgroup is not None else "-",
            cgroup.path if cgroup is not None else "-",
            "1" if self.stop_requested else "0",
            "1" if self.unstop_requested else "0",
            jobdir.dumps(fixed),
        ]
        try:
            os.execv(argv[0], argv)
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HUSHED)
            print(f"shim: cannot run {argv[0]} ({exc}); waiting in Python", file=sys.stderr)
            self._save(supervisor="python")

    def _launch(self) -> int | None:
        spec = self.spec
        run_as = spec.get("run_as")  # None: the job runs as the agent's user
        self.cgroup = Cgroup.create(spec["job_id"] + "-" + spec["run_id"][:12])
        cgroup = self.cgroup
        with (
            open(self._path(jobdir.STDOUT), "ab") as out,
            open(self._path(jobdir.STDERR), "ab") as err,
        ):
            if run_as:
                for f in (out, err):  # the owner reads them; the agent (group) too
                    os.fchown(f.fileno(), int(run_as["uid"]), os.getegid())
                    os.fchmod(f.fileno(), 0o640)
            try:
                with AsUser(run_as):
                    os.chdir(spec["workdir"])  # with the job user's rights; the child inherits it
            except OSError as exc:
                self._not_started(
                    err, "cannot enter workdir {}: {}".format(spec["workdir"], exc.strerror or exc)
                )
                return None
            try:
                env = job_env(spec, dict(os.environ))
                pid, stage, why, errno = spawn(
                    spec["argv"], env, out.fileno(), err.fileno(), cgroup, run_as
                )
            except OSError as exc:  # fork itself failed
                self._not_started(err, f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}")
                return None
            finally:
                os.chdir("/")
            if stage == "exec":
                message = "cannot start {!r}: {}".format(spec["argv"][0], why)
                self._not_started(err, message, 127 if errno == ENOENT else 126)
                return None
            if stage:
                who = run_as["name"] if run_as else "the agent's user"
                self._not_started(err, f"cannot join the job's cgroup or become {who}")
                return None
        self._save(
            state="running",
            pid=pid,
            pgid=pid,
            started_at=time.time(),
            tracking=cgroup.kind if cgroup is not None else PROCESS_GROUP,
            cgroup=cgroup.to_json() if cgroup is not None else None,
        )
        return pid

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
            info = signal.sigtimedwait(_WAITED, timeout)
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
    """``--job-dir DIR [--wait-with PATH]``; parsed by hand, as argparse would cost every
    shim 0.6 MB."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) not in (2, 4) or args[0] != "--job-dir" or args[2:3] not in ([], ["--wait-with"]):
        print("usage: skyops-agent shim --job-dir DIR [--wait-with PATH]", file=sys.stderr)
        return 2
    os.umask(0o077)  # its records: the agent's alone
    wait_with = args[3] if len(args) == 4 else None
    return Shim(os.path.abspath(args[1]), wait_with).run()


if __name__ == "__main__":
    sys.exit(main())
