"""Identity from the kernel, with real Unix users: the leader (`skyops serve`, run by
root here) serves its socket; alice, bob and carol are Unix users the test creates
(carol in the operators' Unix group) and removes after. What the clients set in their
environment never changes who they are."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from skyops_tui.store.db import Store
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3.11"
CLIENT = Path(__file__).with_name("api_as_user.py")


def _need_root() -> None:
    if os.geteuid() == 0 and shutil.which("useradd") and Path(SYSTEM_PYTHON).exists():
        return
    if os.environ.get("CI"):
        pytest.fail("CI runs as root with useradd and the system Python 3.11")
    pytest.skip("needs root, useradd and /usr/bin/python3.11 to act as other Unix users")


@pytest.fixture
def users():
    """alice, bob (users) and carol (in the operators' group), under fresh names."""
    _need_root()
    tag = secrets.token_hex(3)
    group = f"skops{tag}"
    names = {k: f"sk{k[:3]}{tag}" for k in ("alice", "bob", "carol")}
    subprocess.run(["groupadd", group], check=True)
    try:
        for who, name in names.items():
            extra = ["-G", group] if who == "carol" else []
            subprocess.run(["useradd", "-M", "-s", "/usr/sbin/nologin", *extra, name], check=True)
        yield names, group
    finally:
        for name in names.values():
            subprocess.run(["userdel", "-f", name], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)


class Service:
    """`skyops serve` as root, its socket in a folder everyone may enter."""

    def __init__(self, base: Path, group: str) -> None:
        self.base = base
        self.sock = base / "api.sock"
        self.db = base / "state" / "state.db"
        (base / "config.toml").write_text(
            f"""
[cluster]
name = "users"
tick_s = 0.2
api_socket = "{self.sock}"
[[node_types]]
name = "H100"
rate = 2.5
[[nodes]]
name = "node-a"
fake_gpus = "4xH100-80GB"
local = true
[accounts]
operator_group = "{group}"
default_balance = 100000
"""
        )
        self.log = base / "serve.log"
        env = {**os.environ, "XDG_DATA_HOME": str(base / "data"), "SKYOPS_USER": "svc"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skyops_tui", "--config", str(base / "config.toml"),
             "--db", str(self.db), "serve"],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=REPO,
        )  # fmt: skip

        def leading() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            return "leading" in self.log.read_text()

        wait_for(leading, "the service leading", 30)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def ask(self, user: str, type_: str, kind: str, payload: dict) -> tuple[dict, dict]:
        """One request as `user`, who claims in every variable to be someone else."""
        lie = {"SKYOPS_USER": "svc", "USER": "svc", "LOGNAME": "svc"}
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), **lie}
        r = subprocess.run(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups",
             SYSTEM_PYTHON, str(CLIENT), str(self.sock), type_, kind, json.dumps(payload)],
            capture_output=True, text=True, env=env, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        hello, reply = (json.loads(line) for line in r.stdout.splitlines())
        return hello, reply

    def as_user(self, user: str, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip


@pytest.fixture
def service(users):
    names, group = users
    base = Path(tempfile.mkdtemp(prefix="skyops-api-", dir="/tmp"))
    base.chmod(0o755)
    svc = Service(base, group)
    try:
        yield svc, names
    finally:
        svc.stop()
        shutil.rmtree(base, ignore_errors=True)


def refused(reply: dict, *words: str) -> str:
    assert reply["type"] == "error" and reply["code"] == "refused", reply
    for w in words:
        assert w in reply["message"], reply["message"]
    return reply["message"]


def test_alice_cannot_touch_bobs_work_whatever_her_environment_says(service):
    svc, u = service
    alice, bob, carol = u["alice"], u["bob"], u["carol"]
    start = time.time() + 6 * 3600
    res = {"spec": {"name": "bobres", "user": bob, "gpu_type": "H100", "gpus": 2,
                    "start": start, "hours": 2}}  # fmt: skip
    hello, reply = svc.ask(bob, "command", "reserve", res)
    assert hello["user"] == bob and hello["operator"] is False  # not "svc"
    assert reply["type"] == "ok", reply
    job = {"spec": {"name": "bobjob", "user": bob, "mode": "commit", "gpus": 2,
                    "gpu_type": "H100", "reservation": "bobres", "argv": ["true"]}}  # fmt: skip
    assert svc.ask(bob, "command", "submit", job)[1]["type"] == "ok"

    hello, _ = svc.ask(alice, "query", "whoami", {})
    assert hello["user"] == alice and hello["operator"] is False
    may_not = f"{alice} may not"
    refused(svc.ask(alice, "command", "cancel", {"ref": "bobjob"})[1], may_not, bob)
    refused(svc.ask(alice, "command", "bid", {"ref": "bobjob", "bid": 9.0})[1], may_not)
    refused(svc.ask(alice, "command", "extend", {"ref": "bobjob", "hours": 1})[1], may_not)
    refused(svc.ask(alice, "command", "cancel_reservation", {"name": "bobres"})[1], may_not)
    as_bob = {"ref": "bobjob", "as_user": bob}
    refused(svc.ask(alice, "command", "cancel", as_bob)[1], "only operators act for others")
    refused(svc.ask(alice, "query", "logs", {"ref": "bobjob"})[1], may_not, "logs")
    refused(svc.ask(alice, "query", "balance", {"user": bob})[1], may_not, "balance")
    refused(svc.ask(alice, "query", "quote", {"kind": "flex", "user": bob})[1], may_not)
    jobs = svc.ask(alice, "query", "jobs", {})[1]["result"]["jobs"]
    assert [(j["name"], j["command"], j["charged"]) for j in jobs] == [("bobjob", None, None)]
    assert svc.ask(alice, "query", "balance", {})[1]["result"]["user"] == alice

    # carol is an operator by her Unix group: she may, and the log names both.
    hello, reply = svc.ask(carol, "command", "cancel", as_bob)
    assert hello["operator"] is True and reply["type"] == "ok", reply
    store = Store(svc.db)
    try:
        assert store.job("bobjob").state.value == "cancelled"
        causes = [e.cause for e in store.events(limit=500) if e.kind == "command"]
        assert any(f"by {carol} for {bob}" in c and "cancel" in c for c in causes), causes
        res = {r.name: r for r in store.reservations()}
        assert res["bobres"].cancelled_at is None  # alice's try changed nothing
    finally:
        store.close()


def test_the_state_is_private_to_the_service_account(service):
    svc, u = service
    assert stat.S_IMODE(svc.db.stat().st_mode) == 0o600
    assert stat.S_IMODE(svc.db.parent.stat().st_mode) == 0o700
    for path in (svc.db, svc.db.parent):
        r = svc.as_user(u["alice"], SYSTEM_PYTHON, "-c", f"open({str(path)!r}, 'rb')")
        assert r.returncode != 0 and "PermissionError" in r.stderr, r.stderr
