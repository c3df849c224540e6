"""Agent test harness: real agent subprocesses over stdio, and waits that say what never happened
(tests/waiting.py's, as the `wait_for` fixture).

Helpers are fixtures (not importable modules) so they cannot clash with other test folders.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from skyops_agent import jobdir, protocol
from skyops_agent.cgroups import Cgroup
from tests import waiting

REPO = Path(__file__).resolve().parents[2]
CKPT_TRAIN = str(REPO / "examples" / "ckpt_train.py")
DEADLINE_S = 15.0
POLL_S = 0.01  # replies are waited for on every request: poll them often


class AgentProcess:
    """One `skyops-agent serve --stdio` subprocess and the lines it has written."""

    def __init__(
        self, argv: list[str], stderr_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.argv = argv
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        self.messages: list[dict] = []
        self.bad_lines: list[bytes] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = protocol.decode(line)
            except protocol.ProtocolError:
                with self._lock:
                    self.bad_lines.append(line)
                continue
            with self._lock:
                self.messages.append(msg)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def send_line(self, line: bytes) -> None:
        self.proc.stdin.write(line if line.endswith(b"\n") else line + b"\n")
        self.proc.stdin.flush()

    def send(self, type: str, **fields: Any) -> int:
        rid = next(self._ids) * 10
        self.send_line(protocol.encode(protocol.request(type, rid, **fields)))
        return rid

    def reply(self, rid: int, timeout: float = DEADLINE_S) -> dict:
        return self.find(lambda m: m.get("re") == rid, f"a reply to request {rid}", timeout)

    def request(self, type: str, **fields: Any) -> dict:
        """Send a request and return its reply (ok or error)."""
        return self.reply(self.send(type, **fields))

    def call(self, type: str, **fields: Any) -> dict:
        """Send a request that must succeed; return its reply."""
        reply = self.request(type, **fields)
        assert reply["type"] == protocol.OK, f"{type} refused: {reply!r}"
        return reply

    def events(self, type: str, **match: Any) -> list[dict]:
        with self._lock:
            return [
                m
                for m in self.messages
                if m["type"] == type
                and "re" not in m
                and all(m.get(k) == v for k, v in match.items())
            ]

    def event(self, type: str, timeout: float = DEADLINE_S, **match: Any) -> dict:
        found = waiting.wait_for(
            lambda: self.events(type, **match),
            f"event {type} {match!r} from the agent (stderr: {self.stderr()[-500:]})",
            timeout,
            interval=POLL_S,
        )
        return found[0]

    def find(self, predicate: Callable[[dict], bool], description: str, timeout: float) -> dict:
        def look():
            with self._lock:
                return next((m for m in self.messages if predicate(m)), None)

        return waiting.wait_for(
            look,
            f"{description} (agent stderr: {self.stderr()[-500:]})",
            timeout,
            interval=POLL_S,
        )

    def job(self, job_id: str) -> dict:
        jobs = self.call(protocol.JOBS)["jobs"]
        return next(j for j in jobs if j["job_id"] == job_id)

    def close(self, timeout: float = 10) -> int:
        """EOF on stdin, as when the SSH channel closes; returns the exit status."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        self._stderr.close()
        return rc

    def kill9(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self._stderr.close()


def remove_cgroup(status: dict) -> None:
    """Kill what is left in a job's cgroup (a double-forked child) and remove it."""
    cgroup = Cgroup.from_json(status.get("cgroup"))
    if cgroup is None:
        return

    def emptied() -> bool:
        if not cgroup.pids():
            return True
        cgroup.signal(signal.SIGKILL)
        return False

    with contextlib.suppress(AssertionError):  # remove() fails on what is still in it
        waiting.wait_for(emptied, "the job's cgroup emptied", 5, interval=0.01)
    cgroup.remove()


def kill_leftover_jobs(state_dir: Path) -> None:
    """Tests must not leave processes behind, even when they fail half-way."""
    for status_path in state_dir.glob("jobs/*/" + jobdir.STATUS):
        status = jobdir.read_json(str(status_path)) or {}
        if status.get("state") == "exited":
            continue
        for pid, kill in ((status.get("pgid"), os.killpg), (status.get("shim_pid"), os.kill)):
            if pid:
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        remove_cgroup(status)


@pytest.fixture
def wait_for():
    """tests/waiting.py's wait_for, with the agent tests' deadline and poll."""
    return functools.partial(waiting.wait_for, timeout=DEADLINE_S, interval=POLL_S)


@pytest.fixture
def ckpt_train():
    return CKPT_TRAIN


def have_compiler() -> bool:
    """Is there a `cc` to build the C supervisor with? Under CI its absence is a
    failure of the machine, not a reason to skip."""
    if shutil.which("cc"):
        return True
    if os.environ.get("CI"):
        pytest.fail("no C compiler (`cc`) on PATH: the C supervisor cannot be tested")
    return False


@pytest.fixture
def supervisor(request) -> str | None:
    """What waits out each job in the agents `start_agent` starts: a test parametrized
    with ``indirect=True`` gets "c" (the agent must build skyops-shim-wait) and
    "python" (the fallback, forced); others get the agent's default (None)."""
    kind = getattr(request, "param", None)
    if kind == "c" and not have_compiler():
        pytest.skip("no C compiler (`cc`) to build the C supervisor")
    return kind


def supervisors_seen(state_dir: Path) -> dict[str, str | None]:
    """job id -> the supervisor its status.json names, for every job that got running."""
    seen = {}
    for status_path in state_dir.glob("jobs/*/" + jobdir.STATUS):
        status = jobdir.read_json(str(status_path)) or {}
        if status.get("pid"):
            seen[status_path.parent.name] = status.get("supervisor")
    return seen


@pytest.fixture
def start_agent(tmp_path, supervisor):
    """start_agent(state_dir=None, fake_gpus="2xH100-80GB", argv=None, extra=(), env=None)
    -> AgentProcess. Under a `supervisor` parameter every job that runs must have got
    that supervisor: the test fails at teardown otherwise."""
    agents: list[AgentProcess] = []
    state_dirs: set[Path] = set()
    counter = itertools.count(1)

    def start(
        state_dir=None, fake_gpus="2xH100-80GB", argv=None, extra=(), env=None
    ) -> AgentProcess:
        state_dir = Path(state_dir or tmp_path / "state")
        state_dirs.add(state_dir)
        base = argv or [sys.executable, "-m", "skyops_agent"]
        cmd = list(base) + ["serve", "--stdio", "--state-dir", str(state_dir), *extra]
        if fake_gpus:
            cmd += ["--fake-gpus", fake_gpus]
        if supervisor == "python":
            cmd += ["--shim-supervisor", "python"]
        agent = AgentProcess(cmd, tmp_path / f"agent-{next(counter)}.stderr", env)
        agents.append(agent)
        return agent

    yield start
    wrong = {}
    if supervisor is not None:
        for state_dir in state_dirs:
            seen = supervisors_seen(state_dir)
            wrong.update({j: s for j, s in seen.items() if s != supervisor})
    for agent in agents:
        if agent.proc.poll() is None:
            agent.kill9()
    for state_dir in state_dirs:
        kill_leftover_jobs(state_dir)
    assert not wrong, f"jobs not waited on by the {supervisor} supervisor: {wrong}"


def process_gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for a parent that does not reap."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (FileNotFoundError, ProcessLookupError):  # gone before or while reading
        return True


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


@pytest.fixture
def procs():
    class Procs:
        gone = staticmethod(process_gone)
        group = staticmethod(group_members)

    return Procs
