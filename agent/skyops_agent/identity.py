"""Who a job runs as on this box, and whether this agent may choose.

An agent that runs as root (or as a service user holding CAP_SETUID and CAP_SETGID)
runs each job as its owner's Unix user: multi-user mode. Any other agent runs every
job as itself: single-user mode, where jobs are not isolated from each other
(docs/security.md, "Jobs on a box").

Stdlib only and Python 3.9 compatible, as the rest of the agent.
"""

from __future__ import annotations

import os
import pwd
from typing import Any, NamedTuple

_CAP_SETGID = 6
_CAP_SETUID = 7


class JobUser(NamedTuple):
    name: str
    uid: int
    gid: int
    groups: tuple
    home: str

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "gid": self.gid,
            "groups": list(self.groups),
            "home": self.home,
        }


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError, IndexError):
        pass
    return 0


def can_switch_users() -> bool:
    """Root, or a service user with the capabilities to set user and group ids."""
    if os.geteuid() == 0:
        return True
    need = (1 << _CAP_SETGID) | (1 << _CAP_SETUID)
    return _effective_caps() & need == need


def lookup(name: str) -> JobUser | None:
    """The Unix account ``name``, or None when the box has no such user."""
    try:
        pw = pwd.getpwnam(name)
    except (KeyError, ValueError):
        return None
    try:
        groups = tuple(os.getgrouplist(pw.pw_name, pw.pw_gid))
    except OSError:
        groups = (pw.pw_gid,)
    return JobUser(pw.pw_name, pw.pw_uid, pw.pw_gid, groups, pw.pw_dir or "/")


def agent_user() -> JobUser:
    uid = os.geteuid()
    try:
        pw = pwd.getpwuid(uid)
        return JobUser(pw.pw_name, uid, os.getegid(), tuple(os.getgroups()), pw.pw_dir or "/")
    except KeyError:
        return JobUser(str(uid), uid, os.getegid(), tuple(os.getgroups()), "/")


def under(path: str, roots: list) -> bool:
    """Is ``path`` (already resolved) one of ``roots`` or inside one?"""
    for root in roots:
        root = os.path.realpath(root)
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False
