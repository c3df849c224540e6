"""Real Unix users for the isolation tests, made with useradd and removed with their
processes after; and an OpenSSH box in a folder other users can traverse (pytest's
own temp folders are 0700, so a job running as alice could not reach its checkpoint).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from .sshd import SSHD, OpenSshBox


def need_root() -> None:
    why = ""
    if os.geteuid() != 0:
        why = "needs root to create Unix users (useradd)"
    elif not shutil.which("useradd") or not Path(SSHD).exists():
        why = f"needs useradd and OpenSSH's {SSHD}"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why + " -- CI runs as root and must run the isolation tests")
        pytest.skip(why)


def _pids_of(uid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    found.append(int(entry))
    return found


class Users:
    """Creates users named <prefix><name>; remove() kills what they run and deletes them."""

    def __init__(self) -> None:
        self.prefix = "sk" + secrets.token_hex(3)
        self.made: list[str] = []

    def add(self, name: str) -> str:
        login = f"{self.prefix}{name}"
        subprocess.run(
            # "*": no password, but not locked, so sshd lets the key in
            ["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", "-p", "*", login],
            check=True,
            capture_output=True,
        )
        self.made.append(login)
        return login

    def remove(self) -> None:
        for login in self.made:
            with contextlib.suppress(KeyError):
                uid = pwd.getpwnam(login).pw_uid
                for pid in _pids_of(uid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            subprocess.run(["userdel", "--remove", "--force", login], capture_output=True)


@pytest.fixture
def unix_users():
    need_root()
    users = Users()
    try:
        yield users
    finally:
        users.remove()


@pytest.fixture
def shared_openssh_box():
    """OpenSSH's sshd with its agent folder under a 0711 temp folder."""
    need_root()
    root = Path(tempfile.mkdtemp(prefix="skyops-iso-", dir="/tmp"))
    root.chmod(0o711)
    box = OpenSshBox(root / "box")
    (root / "box").chmod(0o711)
    try:
        box.start()
        yield box
    finally:
        box.close()
        shutil.rmtree(root, ignore_errors=True)
