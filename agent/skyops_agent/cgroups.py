"""A job's processes, tracked by a cgroup where the box lets the agent make one.

A process group loses a child that calls setsid() or double-forks; a cgroup does not:
every descendant stays in it, whatever it does. So the shim puts the job in its own
cgroup (cgroup v2 where it is mounted and writable, else a v1 ``pids`` or ``freezer``
hierarchy), signals every process in it, and calls the job gone only when it is
empty. Where no cgroup can be made (an unprivileged agent), the process group is all
there is, and `hello` says so.

Stdlib only and Python 3.9 compatible, as the rest of the agent. The shim imports it,
so it imports no more than it needs (jobdir.py says why).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typeshed types signal's C half only through signal
    import signal as _signal
    from typing import Any
else:
    import _signal

PARENT = "skyops"
PROCESS_GROUP = "process group"
_CANDIDATES = (
    ("cgroup2", "/sys/fs/cgroup"),
    ("cgroup2", "/sys/fs/cgroup/unified"),
    ("cgroup1", "/sys/fs/cgroup/pids"),
    ("cgroup1", "/sys/fs/cgroup/freezer"),
)


def _usable(kind: str, base: str) -> bool:
    marker = "cgroup.controllers" if kind == "cgroup2" else "tasks"
    if not os.path.exists(os.path.join(base, marker)):
        return False
    parent = os.path.join(base, PARENT)
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError:
        return False
    return os.access(parent, os.W_OK)


def detect() -> tuple[str, str] | None:
    """(kind, parent folder) of the first hierarchy this process can make cgroups in."""
    if os.environ.get("SKYOPS_AGENT_NO_CGROUP"):
        return None  # for a box whose cgroups belong to someone else
    for kind, base in _CANDIDATES:
        if _usable(kind, base):
            return kind, os.path.join(base, PARENT)
    return None


def tracking() -> str:
    """How this agent's jobs are tracked: 'cgroup2', 'cgroup1' or 'process group'."""
    found = detect()
    return found[0] if found else PROCESS_GROUP


class Cgroup:
    def __init__(self, kind: str, path: str) -> None:
        self.kind = kind
        self.path = path

    @classmethod
    def create(cls, name: str) -> Cgroup | None:
        found = detect()
        if found is None:
            return None
        path = os.path.join(found[1], name)
        try:
            os.makedirs(path, exist_ok=True)
        except OSError:
            return None
        return cls(found[0], path)

    @classmethod
    def from_json(cls, obj: Any) -> Cgroup | None:
        if isinstance(obj, dict) and isinstance(obj.get("path"), str):
            return cls(str(obj.get("kind")), obj["path"])
        return None

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "path": self.path}

    def add_self(self) -> None:
        """Called in the job's child before exec: it and all it starts belong here."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def pids(self) -> list[int]:
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            return []

    def signal(self, signum: int) -> None:
        if signum == _signal.SIGKILL and self.kind == "cgroup2":
            try:
                with open(os.path.join(self.path, "cgroup.kill"), "w") as f:
                    f.write("1")
                return
            except OSError:
                pass  # before Linux 5.14: one by one
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except (ProcessLookupError, PermissionError):
                pass

    def remove(self) -> None:
        try:
            os.rmdir(self.path)
        except OSError:
            pass
