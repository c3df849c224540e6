"""Fleet fixtures: SSH servers the real SshTransport connects to (see sshd.py).

`asyncssh_box` is always there. `openssh_box` is OpenSSH's sshd; where it is not
installed the test is skipped, except under CI (the CI variable set), where a missing
sshd fails: CI must not pass by skipping. `ssh_box` runs a test over both.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .sshd import SSHD, AsyncsshBox, OpenSshBox
from .unixusers import shared_openssh_box, unix_users  # noqa: F401 (fixtures)


@pytest.fixture
def asyncssh_boxes(tmp_path):
    """asyncssh_boxes(name) -> a fresh in-process box, for tests that need several."""
    boxes: list[AsyncsshBox] = []

    def make(name: str = "asyncssh") -> AsyncsshBox:
        boxes.append(AsyncsshBox(tmp_path / name).start())
        return boxes[-1]

    try:
        yield make
    finally:
        for box in boxes:
            box.close()


@pytest.fixture
def asyncssh_box(asyncssh_boxes):
    return asyncssh_boxes()


@pytest.fixture
def openssh_box(tmp_path):
    if not Path(SSHD).exists():
        why = f"OpenSSH server not installed ({SSHD} missing): apt-get install openssh-server"
        if os.environ.get("CI"):
            pytest.fail(why + " -- CI must run the real-sshd tests")
        pytest.skip(why)
    box = OpenSshBox(tmp_path / "openssh").start()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture(
    params=["asyncssh", pytest.param("openssh", marks=pytest.mark.integration)],
)
def ssh_box(request):
    """The test runs against the in-process server and against OpenSSH's sshd."""
    return request.getfixturevalue(f"{request.param}_box")
