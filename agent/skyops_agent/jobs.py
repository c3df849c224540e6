"""Jobs on this box: start them under a shim, stop them, and report what they did.

Everything a job is lives in its folder under ``<state_dir>/jobs/`` (see jobdir.py), so a
new agent process on the same state dir knows every job an earlier one started, and
notices exits that happened while no agent was running.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

from skyops_agent import __version__, checkpoints, identity, jobdir, protocol, shim_wait
from skyops_agent.cgroups import Cgroup
from skyops_agent.protocol import ProtocolError
from skyops_agent.zipapp import running_zipapp, unpack_for_shims

START_TIMEOUT_S = 10.0  # how long `start` waits for the shim to launch the job
UNSTOP_TIMEOUT_S = 5.0  # how long `unstop` waits for the shim's answer
LOG_TAIL_MAX_BYTES = 1024 * 1024

_HAVE_PROC = os.path.exists("/proc/self/stat")
_LIVE = (protocol.STATE_STARTING, protocol.STATE_RUNNING, protocol.STATE_STOPPING)


def default_state_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".local", "share", "skyops-agent")


# `-I` keeps the path to this package off sys.path, so the package form names it.
_SHIM_FROM = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from skyops_agent.__main__ import main; sys.exit(main())"
)


def shim_command(
    job_dir: str, unpacked: str | None = None, wait_with: str | None = None
) -> tuple[list, str]:
    """argv and cwd that start the shim from this very copy of the agent: the package,
    its zipapp's unpacked copy (`unpacked`, see zipapp.unpack_for_shims), or the zipapp.
    `-I -S`: no site (its imports are most of a bare interpreter's memory), no user
    site, no PYTHON* variables (the job's business, not the shim's); the shim needs the
    standard library and its package only. `wait_with`: the built skyops-shim-wait the
    shim hands the wait to (shim_wait.py)."""
    tail = ["shim", "--job-dir", job_dir] + (["--wait-with", wait_with] if wait_with else [])
    pyz = running_zipapp()
    if pyz and not unpacked:
        return [sys.executable, "-I", "-S", pyz, *tail], "/"
    root = unpacked or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-I", "-S", "-c", _SHIM_FROM, root, *tail], "/"


def _pid_alive(pid: int | None, must_contain: str | None = None) -> bool:
    """Is ``pid`` a live (non-zombie) process, whose command line names ``must_contain``?"""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not _HAVE_PROC:
        return True  # kill(0) is all we can know
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return False
        if must_contain is not None:
            return must_contain.encode() in _cmdline(pid)
    except (FileNotFoundError, ProcessLookupError):
        return False  # it exited while we looked
    except (OSError, IndexError):
        pass
    return True


def _cmdline(pid: int, patience_s: float = 0.5) -> bytes:
    """/proc/<pid>/cmdline. It reads empty while the process is inside execve (a shim
    becoming skyops-shim-wait), so an empty one is read again for a moment; a kernel
    thread's stays empty."""
    deadline = time.monotonic() + patience_s
    while True:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            found = f.read()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.001)


def tail(path: str, lines: int, max_bytes: int = LOG_TAIL_MAX_BYTES) -> dict[str, Any]:
    """The last ``lines`` lines of a file, reading at most ``max_bytes`` from its end."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(0, size - max_bytes)
            f.seek(start)
            data = f.read()
    except FileNotFoundError:
        return {"lines": [], "truncated": False, "size": 0}
    if start > 0:
        data = data.split(b"\n", 1)[-1]  # drop the partial first line
    text = data.decode("utf-8", "replace").splitlines()
    kept = text[-lines:] if lines else []
    # Where an unfinished last line starts: following the file goes on from there.
    partial = 0 if data.endswith(b"\n") else len(data) - data.rfind(b"\n") - 1
    return {
        "lines": kept,
        "truncated": start > 0 or len(kept) < len(text),
        "size": size,
        "next_offset": size - partial,
    }


def read_from(path: str, offset: int, max_bytes: int = LOG_TAIL_MAX_BYTES) -> dict[str, Any]:
    """The complete lines from byte ``offset`` on (at most ``max_bytes``), and where the
    next read starts: following a log this way shows each line once, however fast it
    grows. An unfinished last line is left for the next read, and also returned as
    ``partial`` for a reader that will not come back. A file shorter than ``offset``
    was replaced, and is read from its start."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            if offset > size:
                offset = 0
            f.seek(offset)
            data = f.read(min(size - offset, max_bytes))
    except FileNotFoundError:
        return {"lines": [], "partial": "", "size": 0, "next_offset": 0}
    end = data.rfind(b"\n") + 1
    if end == 0 and len(data) == max_bytes:
        end = len(data)  # one line longer than a read: hand it over in pieces
    lines = data[:end].decode("utf-8", "replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return {
        "lines": [ln[:-1] if ln.endswith("\r") else ln for ln in lines],
        "partial": data[end:].decode("utf-8", "replace"),
        "size": size,
        "next_offset": offset + end,
    }


class JobRunner:
    """The jobs of one state folder. In multi-user mode (an agent that may switch users,
    not told --single-user) each job runs as the Unix user its start names; its folder,
    records and checkpoints are kept out of other users' reach (docs/security.md).

    `supervisor`: "c" (the default) has each shim hand its wait to skyops-shim-wait where
    the box can build it (shim_wait.py); "python" keeps every shim waiting in Python.
    """

    def __init__(self, state_dir: str, single_user: bool = False, supervisor: str = "c") -> None:
        if supervisor not in ("c", "python"):
            raise ValueError(f"supervisor must be 'c' or 'python', not {supervisor!r}")
        self.state_dir = os.path.abspath(os.path.expanduser(state_dir))
        self.jobs_dir = os.path.join(self.state_dir, "jobs")
        self.checkpoints_dir = os.path.join(self.state_dir, "checkpoints")
        self.multi_user = not single_user and identity.can_switch_users()
        self.agent_user = identity.agent_user()
        # Set by `configure`; empty work roots: the job user's home and the temp folder.
        self.work_roots: list[str] = []
        self.checkpoint_roots: list[str] = []
        self.unpack_max_bytes = checkpoints.UNPACK_MAX_TOTAL_BYTES
        self.unpack_max_ratio = checkpoints.UNPACK_MAX_RATIO
        for folder in (self.state_dir, self.jobs_dir, self.checkpoints_dir):
            os.makedirs(folder, exist_ok=True)
            if self.multi_user:  # users reach their own logs and checkpoints by path
                os.chmod(folder, 0o711)
        self._shims: list[subprocess.Popen] = []
        self._shims_lock = threading.Lock()
        self._shim_root = unpack_for_shims(self.state_dir)
        self.supervisor = supervisor
        self._waiter: str | None = None
        self._waiter_tried = False
        self._waiter_why = ""  # the line the failed build said
        self._waiter_lock = threading.Lock()
        # What poll_events() has told the console: job_id -> (run_id, phase, status stamp).
        self._seen: dict[str, tuple] = {}
        self._scan(announce=False)  # learn what is already there; `jobs` reports old exits

    # -- paths and records ----------------------------------------------------------

    def job_dir(self, job_id: str) -> str:
        return os.path.join(self.jobs_dir, job_id)

    def _file(self, job_id: str, name: str) -> str:
        return os.path.join(self.jobs_dir, job_id, name)

    def default_checkpoint_dir(self, job_id: str) -> str:
        return os.path.join(self.checkpoints_dir, job_id)

    def configure(self, req: dict[str, Any]) -> None:
        self.work_roots = [os.path.realpath(r) for r in req["work_roots"]]
        self.checkpoint_roots = [os.path.realpath(r) for r in req["checkpoint_roots"]]
        self.unpack_max_bytes = req["unpack_max_bytes"]
        self.unpack_max_ratio = req["unpack_max_ratio"]

    def job_user(self, name: str) -> identity.JobUser:
        """Whom a job of Unix user ``name`` runs as; refused when the box has no such user."""
        if not self.multi_user:
            return self.agent_user  # single-user mode: every job runs as the agent
        user = identity.lookup(name or self.agent_user.name)
        if user is None:
            raise ProtocolError(
                protocol.E_UNKNOWN_USER,
                f"no Unix user {name!r} on this box; create it, or map the Skyops user "
                "to an account here with [cluster] unix_users",
            )
        return user

    def resolve_checkpoint_dir(self, job_id: str, requested: str, home: str | None = None) -> str:
        """Empty: the agent's own per-job folder; relative: under the user's home. Only
        under the agent's checkpoints folder or a configured root: the agent packs,
        ships and unpacks what is there with its own rights."""
        if not requested:
            return self.default_checkpoint_dir(job_id)
        home = home or self.agent_user.home
        path = os.path.realpath(os.path.join(home, os.path.expanduser(requested)))
        if not identity.under(path, [self.checkpoints_dir, *self.checkpoint_roots]):
            raise ProtocolError(
                protocol.E_BAD_FIELD,
                f"checkpoint dir {path} is outside the allowed roots "
                f"({', '.join([self.checkpoints_dir, *self.checkpoint_roots])}); "
                "add it to [cluster] checkpoint_roots",
            )
        return path

    def _check_workdir(self, workdir: str, user: identity.JobUser) -> str:
        path = os.path.realpath(workdir)
        roots = self.work_roots or [user.home, tempfile.gettempdir()]
        if not identity.under(path, roots):
            raise ProtocolError(
                protocol.E_BAD_FIELD,
                f"workdir {path} is outside the allowed roots ({', '.join(roots)}); "
                "add it to [cluster] work_roots",
            )
        return path

    def _own_checkpoint_dir(self, path: str, user: identity.JobUser) -> None:
        """The folder is the job user's alone (0700). What the agent put there (a copy
        from another box) is handed over; links and files with other names are not."""
        if os.path.islink(path):
            raise ProtocolError(protocol.E_BAD_FIELD, f"checkpoint dir {path} is a symlink")
        os.makedirs(path, exist_ok=True)
        if not self.multi_user:
            return
        me = os.geteuid()
        for current, dirs, files in os.walk(path):
            for name in dirs + files:
                full = os.path.join(current, name)
                st = os.lstat(full)
                if st.st_uid == me and (stat.S_ISDIR(st.st_mode) or st.st_nlink == 1):
                    if not stat.S_ISLNK(st.st_mode):
                        os.lchown(full, user.uid, user.gid)
        os.lchown(path, user.uid, user.gid)
        os.chmod(path, 0o700)

    def record(self, job_id: str, with_checkpoint: bool = True) -> dict[str, Any] | None:
        """Everything known about a job, or None if there is no such job."""
        spec = jobdir.read_json(self._file(job_id, jobdir.SPEC))
        if spec is None:
            return None
        status_path = self._file(job_id, jobdir.STATUS)
        status = jobdir.read_json(status_path) or {}
        stop = jobdir.read_json(self._file(job_id, jobdir.STOP))
        if stop is not None and stop.get("called_off"):
            stop = None  # the job runs on
        shim_pid = status.get("shim_pid") or self._read_shim_pid(job_id)
        state = status.get("state", protocol.STATE_STARTING)
        if state != protocol.STATE_EXITED:
            if not _pid_alive(shim_pid, must_contain=self.job_dir(job_id)):
                status = jobdir.read_json(status_path) or {}  # it may have just finished
                state = status.get("state", protocol.STATE_STARTING)
                # Before its first status the shim may still be between fork and exec.
                overdue = time.time() - spec["created_at"] > START_TIMEOUT_S
                if state != protocol.STATE_EXITED and (state != protocol.STATE_STARTING or overdue):
                    state = protocol.STATE_LOST
            elif state == protocol.STATE_RUNNING and stop is not None:
                state = protocol.STATE_STOPPING
        rec = {
            "job_id": job_id,
            "run_id": spec["run_id"],
            "state": state,
            "pid": status.get("pid"),
            "pgid": status.get("pgid"),
            "shim_pid": shim_pid,
            "exit_code": status.get("exit_code"),
            "signal": status.get("signal"),
            "stop_reason": status.get("stop_reason"),
            "error": status.get("error"),
            "exec_failed": bool(status.get("exec_failed")),
            "kill_failed": bool(status.get("kill_failed")),
            "created_at": spec["created_at"],
            "started_at": status.get("started_at"),
            "ended_at": status.get("ended_at"),
            "argv": spec["argv"],
            "gpus": spec["gpus"],
            "mode": spec["mode"],
            "resume": spec["resume"],
            "workdir": spec["workdir"],
            "checkpoint_dir": spec["checkpoint_dir"],
            "stop_requested": stop,
            "user": spec.get("user"),
            "grid": spec.get("grid") or "",
            "tracking": status.get("tracking"),
            "supervisor": status.get("supervisor"),
        }
        if with_checkpoint:
            rec["last_checkpoint_at"] = checkpoints.newest_mtime(spec["checkpoint_dir"])
        return rec

    def _read_shim_pid(self, job_id: str) -> int | None:
        try:
            with open(self._file(job_id, jobdir.SHIM_PID)) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _job_ids(self) -> list[str]:
        try:
            names = os.listdir(self.jobs_dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in names if protocol.JOB_ID_PATTERN.fullmatch(n))

    def _existing(self, job_id: str) -> dict[str, Any]:
        rec = self.record(job_id)
        if rec is None:
            raise ProtocolError(protocol.E_UNKNOWN_JOB, f"no job {job_id!r} on this node")
        return rec

    def list_jobs(self, with_checkpoint: bool = True) -> list[dict[str, Any]]:
        records = [self.record(job_id, with_checkpoint) for job_id in self._job_ids()]
        return sorted((r for r in records if r), key=lambda r: r["created_at"])

    def busy_gpus(self) -> dict[int, list[int]]:
        busy: dict[int, list[int]] = {}
        for rec in self.list_jobs(with_checkpoint=False):
            if rec["state"] in _LIVE and rec["pid"]:
                for index in rec["gpus"]:
                    busy.setdefault(index, []).append(rec["pid"])
        return busy

    # -- requests -------------------------------------------------------------------

    def start(self, req: dict[str, Any]) -> dict[str, Any]:
        job_id = req["job_id"]
        existing = self.record(job_id, with_checkpoint=False)
        if existing is None:
            self._remove_half_created(job_id)
        if existing is not None or os.path.exists(self.job_dir(job_id)):
            state = existing["state"] if existing else "being created"
            raise ProtocolError(
                protocol.E_JOB_EXISTS,
                f"job {job_id!r} already exists here ({state}); forget it first or use a new id",
            )
        user = self.job_user(req["user"])
        workdir = req["workdir"] or "~"
        if workdir == "~" or workdir.startswith("~/"):
            workdir = user.home + workdir[1:]
        workdir = os.path.join(user.home, workdir)
        if not os.path.isdir(workdir):
            raise ProtocolError(protocol.E_BAD_FIELD, f"workdir {workdir} is not a directory")
        workdir = self._check_workdir(workdir, user)
        ckpt_dir = self.resolve_checkpoint_dir(job_id, req["checkpoint_dir"], user.home)
        try:
            self._own_checkpoint_dir(ckpt_dir, user)
        except OSError as exc:
            raise ProtocolError(
                protocol.E_BAD_FIELD,
                f"cannot create checkpoint dir {ckpt_dir}: {exc.strerror or exc}",
            ) from None
        job_dir = self.job_dir(job_id)
        try:
            os.mkdir(job_dir, 0o700)
        except FileExistsError:
            raise ProtocolError(protocol.E_JOB_EXISTS, f"job {job_id!r} already exists") from None
        if self.multi_user:
            os.chmod(job_dir, 0o711)  # the owner opens its logs by name; lists nothing
        spec = {
            "job_id": job_id,
            "run_id": uuid.uuid4().hex,
            "created_at": time.time(),
            "argv": req["argv"],
            "env": req["env"],
            "gpus": req["gpus"],
            "workdir": workdir,
            "checkpoint_dir": ckpt_dir,
            "resume": req["resume"],
            "mode": req["mode"],
            "agent_version": __version__,
            "user": user.name,
            "run_as": user.to_json() if self.multi_user else None,
            "grid": req["grid"],
        }
        jobdir.write_json(os.path.join(job_dir, jobdir.SPEC), spec)
        argv, cwd = shim_command(job_dir, self._shim_root, self._wait_with())
        with open(os.path.join(job_dir, jobdir.SHIM_LOG), "ab") as shim_log:
            shim = subprocess.Popen(
                argv,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=shim_log,
                stderr=shim_log,
                close_fds=True,
                start_new_session=True,  # outlives the agent and the SSH session
            )
        with open(os.path.join(job_dir, jobdir.SHIM_PID), "w") as f:
            f.write(f"{shim.pid}\n")
        with self._shims_lock:
            self._shims.append(shim)
        rec = self._wait_launched(job_id, shim)
        if rec["exec_failed"]:
            shutil.rmtree(job_dir, ignore_errors=True)
            raise ProtocolError(protocol.E_EXEC_FAILED, rec["error"] or "the job did not start")
        return rec

    def _wait_with(self) -> str | None:
        """The waiter binary for new shims, built on the first start that needs one; a
        build that failed is not tried again by this agent (it said why, once)."""
        if self.supervisor == "python":
            return None
        with self._waiter_lock:
            if not self._waiter_tried:
                self._waiter = shim_wait.build(self.state_dir, log=self._waiter_said)
                self._waiter_tried = True
            if self._waiter is not None and not os.access(self._waiter, os.X_OK):
                # someone removed it
                self._waiter = shim_wait.build(self.state_dir, log=self._waiter_said)
            return self._waiter

    def _waiter_said(self, line: str) -> None:
        self._waiter_why = line.removeprefix("skyops-agent: ")
        shim_wait.say(line)

    def waiter_outlook(self) -> tuple[str, str]:
        """What the next job's shim will wait with, without building anything: ("c", "")
        where the waiter is built or the box has `cc` to build it; ("python", why)
        otherwise. `hello` reports it, so `nodes check` can say so before any job runs."""
        if self.supervisor == "python":
            return "python", "the agent was started with --shim-supervisor python"
        # No lock: a build in progress holds it (up to shim_wait.BUILD_TIMEOUT_S), and
        # `_wait_with` sets `_waiter` (and `_waiter_why`) before `_waiter_tried`.
        if self._waiter_tried:
            if self._waiter is not None:
                return "c", ""
            return "python", self._waiter_why
        if shutil.which("cc") is None:
            return "python", f"no C compiler (cc) on the box to build {shim_wait.BINARY}"
        return "c", ""

    def _remove_half_created(self, job_id: str) -> None:
        """A folder without spec.json, left by an agent that died in `start`, is garbage."""
        try:
            age = time.time() - os.stat(self.job_dir(job_id)).st_mtime
        except FileNotFoundError:
            return
        if age > START_TIMEOUT_S:
            shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def _wait_launched(self, job_id: str, shim: subprocess.Popen) -> dict[str, Any]:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            rec = self._existing(job_id)
            if rec["state"] != protocol.STATE_STARTING or time.monotonic() > deadline:
                return rec
            exited = shim.poll() is not None  # then re-read: its last status is on disk
            if exited and self._existing(job_id)["state"] == protocol.STATE_STARTING:
                complaint = tail(self._file(job_id, jobdir.SHIM_LOG), 5)["lines"]
                why = " / ".join(complaint) or f"exit status {shim.returncode}"
                shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
                raise ProtocolError(
                    protocol.E_INTERNAL, f"the shim exited before starting the job: {why}"
                )
            time.sleep(0.005)

    def stop(self, req: dict[str, Any]) -> dict[str, Any]:
        job_id = req["job_id"]
        rec = self._existing(job_id)
        if rec["state"] == protocol.STATE_EXITED:
            return rec
        ckpt = req["checkpoint_signal"]
        if ckpt is not None:
            ckpt = jobdir.signal_name(self._signal(ckpt))
        stop = {
            "checkpoint_signal": ckpt,
            "grace_s": req["grace_s"],
            "term_grace_s": req["term_grace_s"],
            "reason": req["reason"],
            "requested_at": time.time(),
        }
        jobdir.write_json(self._file(job_id, jobdir.STOP), stop)
        if rec["state"] == protocol.STATE_LOST:
            self._stop_lost(rec, stop)
        elif os.path.exists(self._file(job_id, jobdir.STATUS)):
            # No status yet means the shim has not set its handler; it reads stop.json itself.
            try:
                os.kill(rec["shim_pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        return self._existing(job_id)

    def unstop(self, req: dict[str, Any]) -> dict[str, Any]:
        """Call off a stop whose job is still in its checkpoint grace: the shim decides
        (only it knows whether SIGTERM is out) and answers in status.json."""
        job_id = req["job_id"]
        rec = self._existing(job_id)
        if rec["state"] not in (protocol.STATE_RUNNING, protocol.STATE_STOPPING):
            raise ProtocolError(
                protocol.E_TOO_LATE,
                "job {!r} is {}: there is no stop to call off".format(job_id, rec["state"]),
            )
        if rec["stop_requested"] is None:
            return rec  # nothing to call off: it runs
        token = uuid.uuid4().hex
        ask = {"token": token, "reason": req["reason"], "requested_at": time.time()}
        jobdir.write_json(self._file(job_id, jobdir.UNSTOP), ask)
        try:
            os.kill(rec["shim_pid"], signal.SIGUSR2)
        except ProcessLookupError:
            pass
        status_path = self._file(job_id, jobdir.STATUS)
        deadline = time.monotonic() + UNSTOP_TIMEOUT_S
        while True:
            status = jobdir.read_json(status_path) or {}
            answer = status.get("unstop")
            if isinstance(answer, dict) and answer.get("token") == token:
                break
            ended = status.get("state") == protocol.STATE_EXITED
            if ended or time.monotonic() > deadline:
                try:
                    os.unlink(self._file(job_id, jobdir.UNSTOP))
                except FileNotFoundError:
                    pass
                if not ended:
                    raise ProtocolError(
                        protocol.E_INTERNAL,
                        f"job {job_id!r}: its shim did not answer within {UNSTOP_TIMEOUT_S:.0f} s",
                    )
                answer = None
                break
            time.sleep(0.005)
        if answer is None or not answer.get("ok"):
            phase = (answer or {}).get("phase")
            why = "SIGTERM was sent" if phase in ("term", "kill") else "it has ended"
            raise ProtocolError(
                protocol.E_TOO_LATE, f"job {job_id!r}: too late to call its stop off ({why})"
            )
        return self._existing(job_id)

    def _stop_lost(self, rec: dict[str, Any], stop: dict[str, Any]) -> None:
        """No shim to carry out the stop: kill what is left and close the record here."""
        if rec["pgid"]:
            try:
                os.killpg(rec["pgid"], signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        status = jobdir.read_json(self._file(rec["job_id"], jobdir.STATUS)) or {}
        cgroup = Cgroup.from_json(status.get("cgroup"))
        if cgroup is not None:
            deadline = time.monotonic() + 1.0
            while cgroup.pids() and time.monotonic() < deadline:
                cgroup.signal(signal.SIGKILL)
                time.sleep(0.01)
            cgroup.remove()
        status = jobdir.read_json(self._file(rec["job_id"], jobdir.STATUS)) or {
            "run_id": rec["run_id"]
        }
        status.update(
            state=protocol.STATE_EXITED,
            stop_reason=stop["reason"],
            ended_at=time.time(),
            error="the shim was gone; the agent killed the job's process group",
        )
        jobdir.write_json(self._file(rec["job_id"], jobdir.STATUS), status)

    @staticmethod
    def _signal(name: str) -> int:
        try:
            return jobdir.signal_number(name)
        except ValueError as exc:
            raise ProtocolError(protocol.E_BAD_FIELD, str(exc)) from None

    def send_signal(self, job_id: str, name: str) -> dict[str, Any]:
        signum = self._signal(name)
        rec = self._existing(job_id)
        if rec["state"] not in (protocol.STATE_RUNNING, protocol.STATE_STOPPING):
            raise ProtocolError(
                protocol.E_NOT_RUNNING, "job {!r} is {}, not running".format(job_id, rec["state"])
            )
        try:
            os.killpg(rec["pgid"], signum)
        except ProcessLookupError:
            pass
        return {"job_id": job_id, "signal": jobdir.signal_name(signum)}

    def logs(
        self, job_id: str, stream: str, tail_lines: int, offset: int | None = None
    ) -> dict[str, Any]:
        self._existing(job_id)
        path = self._file(job_id, jobdir.STDOUT if stream == "stdout" else jobdir.STDERR)
        got = tail(path, tail_lines) if offset is None else read_from(path, offset)
        return dict(got, job_id=job_id, stream=stream)

    def checkpoint_dir_for(self, job_id: str, requested: str | None) -> str:
        """The folder to list or pack: a job's own, or one under the allowed roots."""
        if requested:
            return self.resolve_checkpoint_dir(job_id, requested)
        rec = self.record(job_id, with_checkpoint=False)
        return rec["checkpoint_dir"] if rec else self.default_checkpoint_dir(job_id)

    def check_unpack_target(self, target: str) -> None:
        for rec in self.list_jobs(with_checkpoint=False):
            if rec["state"] in _LIVE and rec["checkpoint_dir"] == target:
                raise ProtocolError(
                    protocol.E_JOB_RUNNING,
                    "checkpoint dir {} belongs to running job {!r}".format(target, rec["job_id"]),
                )

    def forget(self, job_id: str, remove_checkpoint: bool) -> dict[str, Any]:
        rec = self._existing(job_id)
        if rec["state"] in _LIVE or (
            rec["state"] == protocol.STATE_LOST and _pid_alive(rec["pid"])
        ):
            raise ProtocolError(
                protocol.E_JOB_RUNNING, "job {!r} is {}; stop it first".format(job_id, rec["state"])
            )
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)
        removed = False
        ckpt = rec["checkpoint_dir"]
        if remove_checkpoint and os.path.dirname(ckpt) == self.checkpoints_dir:
            shutil.rmtree(ckpt, ignore_errors=True)
            removed = True
        return {"job_id": job_id, "checkpoint_removed": removed}

    # -- watching -------------------------------------------------------------------

    def _reap_shims(self) -> None:
        with self._shims_lock:
            self._shims = [s for s in self._shims if s.poll() is None]

    def poll_events(self) -> list[dict[str, Any]]:
        """job_started / job_exited events for what changed since the last call."""
        return self._scan(announce=True)

    def _scan(self, announce: bool) -> list[dict[str, Any]]:
        self._reap_shims()
        events: list[dict[str, Any]] = []
        seen: dict[str, tuple] = {}
        for job_id in self._job_ids():
            try:
                st = os.stat(self._file(job_id, jobdir.STATUS))
                stamp: tuple | None = (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            old = self._seen.get(job_id)
            if old is not None and old[1] == "exited" and old[2] == stamp:
                seen[job_id] = old
                continue
            rec = self.record(job_id, with_checkpoint=False)
            if rec is None:
                continue
            phase = old[1] if old is not None and old[0] == rec["run_id"] else None
            if rec["exec_failed"]:
                phase = "exited"  # refused at start: the console got an error, not a job
            if rec["pid"] and phase is None:
                if announce:
                    events.append(
                        protocol.event(
                            protocol.JOB_STARTED,
                            job_id=job_id,
                            pid=rec["pid"],
                            started_at=rec["started_at"],
                        )
                    )
                phase = "started"
            if rec["state"] == protocol.STATE_EXITED and phase != "exited":
                if announce:
                    events.append(
                        protocol.event(
                            protocol.JOB_EXITED,
                            job_id=job_id,
                            exit_code=rec["exit_code"],
                            signal=rec["signal"],
                            stop_reason=rec["stop_reason"],
                            ended_at=rec["ended_at"],
                        )
                    )
                phase = "exited"
            seen[job_id] = (rec["run_id"], phase, stamp)
        self._seen = seen
        return events
