"""`skyops --connect ssh://user@head`: a laptop's client of the head node's leader,
through OpenSSH's real sshd. The leader (`skyops serve`, run by root here) serves its
socket on this machine; alice and bob are real Unix users the test creates, who log in
to the sshd with a key. Whoever runs the client locally, and whatever it sets in its
environment, the leader sees the SSH user (sshd's session process opens the socket)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from skyops_tui.api.client import ApiClient
from skyops_tui.api.remote import NoExecutor, Tunnel, fetch_state, parse_connect
from skyops_tui.control.commands import Cancel
from skyops_tui.runtime import Runtime
from skyops_tui.store.db import Store
from tests.fleet.unixusers import shared_openssh_box, unix_users  # noqa: F401 (fixtures)
from tests.integration.test_api_users import REPO, Service
from tests.waiting import until

LIE = {"SKYOPS_USER": "svc", "USER": "svc", "LOGNAME": "svc"}


@pytest.fixture
def head(unix_users, shared_openssh_box):  # noqa: F811
    """The head node: a leader serving /tmp/.../api.sock, an sshd, alice and bob."""
    alice, bob = unix_users.add("alice"), unix_users.add("bob")
    group = f"{unix_users.prefix}ops"
    subprocess.run(["groupadd", group], check=True)
    carol = unix_users.add("carol")  # an operator, by her Unix group
    subprocess.run(["usermod", "-aG", group, carol], check=True)
    base = Path(tempfile.mkdtemp(prefix="skyops-connect-", dir="/tmp"))
    base.chmod(0o755)
    svc = Service(base, group)
    try:
        svc.carol = carol
        yield svc, shared_openssh_box, alice, bob
    finally:
        svc.stop()
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["groupdel", group], capture_output=True)


def url(box, user: str, sock: Path) -> str:
    return f"ssh://{user}@{box.host}:{box.port}{sock}"


def skyops(box, user: str, sock: Path, *argv: str, known_hosts: str = "trusted"):
    return subprocess.run(
        [sys.executable, "-m", "skyops_tui", "--connect", url(box, user, sock),
         "--identity", box.identity, "--known-hosts", box.known_hosts(known_hosts), *argv],
        capture_output=True, text=True, timeout=90, cwd=REPO, env={**os.environ, **LIE},
    )  # fmt: skip


def test_connect_submits_and_watches_as_the_ssh_user(head):
    svc, box, alice, bob = head
    r = skyops(box, bob, svc.sock, "submit", "--name", "bobjob", "--bid", "1", "--", "true")
    assert r.returncode == 0, r.stderr
    r = skyops(
        box, alice, svc.sock, "submit", "--name", "alicejob", "--bid", "1", "--", "sleep", "600"
    )
    assert r.returncode == 0, r.stderr
    assert "Submitted flex job alicejob" in r.stdout

    r = skyops(box, alice, svc.sock, "jobs", "--all", "--json")
    assert r.returncode == 0, r.stderr
    rows = {j["name"]: j for j in json.loads(r.stdout)}
    assert rows["alicejob"]["user"] == alice and rows["bobjob"]["user"] == bob
    assert rows["bobjob"]["command"] is None  # bob's command line is not alice's to see
    r = skyops(box, alice, svc.sock, "cancel", "bobjob")
    assert r.returncode == 1 and f"{alice} may not cancel job bobjob" in r.stderr, r.stderr

    async def console_view() -> None:
        """What a remote console's runtime sees and does, through the tunnel."""
        with Tunnel(parse_connect(url(box, alice, svc.sock)), box.known_hosts(), box.identity) as t:
            cfg, grid, hello = await fetch_state(t.path)
            assert hello["user"] == alice and hello["operator"] is False
            assert grid.job_by_ref("alicejob").user == alice
            assert list(grid.job_by_ref("bobjob").argv) == []  # redacted for alice
            rt = Runtime(cfg, NoExecutor(), grid=grid, user=alice, remote=True,
                         socket_path=t.path, follow_s=0.2)  # fmt: skip
            await rt.start()
            try:
                await until(lambda: rt._watching, "the console receives the leader's snapshot")
                assert any("alicejob" in e.cause for e in rt.feed.events)
                await rt.call(Cancel(ref="alicejob"))
                await until(
                    lambda: str(rt.grid.job_by_ref("alicejob").state) == "cancelled",
                    "the remote console's grid shows alicejob cancelled",
                )
                await until(
                    lambda: (
                        any(e.kind == "command" and alice in e.cause for e in rt.feed.events)
                        or any("cancel" in e.cause for e in rt.feed.events)
                    ),
                    "the cancel reaches the console's event feed by watch",
                )
            finally:
                await rt.stop()
            async with ApiClient.connected(t.path) as client:
                assert (await client.query("whoami"))["user"] == alice

    asyncio.run(console_view())


def test_connect_refuses_an_unknown_or_changed_host_key(head):
    svc, box, alice, _ = head
    for kind in ("empty", "changed"):
        r = skyops(box, alice, svc.sock, "jobs", known_hosts=kind)
        assert r.returncode == 1, (kind, r.stdout, r.stderr)
        err = " ".join(r.stderr.split())
        assert box.fingerprint in err and "ssh-keyscan" in err and "refused" in err, err
        assert "Traceback" not in r.stderr
    r = skyops(box, alice, svc.sock, "jobs", known_hosts="changed")
    assert "ssh-keygen" in " ".join(r.stderr.split())  # how to remove the old key


def test_operators_act_for_others_with_as_and_the_log_names_both(head, tmp_path):
    svc, box, alice, bob = head
    carol = svc.carol
    plan = tmp_path / "plan.toml"
    plan.write_text('[[jobs]]\nname = "planned"\nmode = "flex"\nbid = 1.0\ncommand = ["true"]\n')
    submit = ("submit", "--name", "forbob", "--bid", "1", "--as", bob, "--", "true")
    r = skyops(box, alice, svc.sock, *submit)
    assert r.returncode == 1 and "only operators act for others" in r.stderr, r.stderr
    r = skyops(box, alice, svc.sock, "--apply", str(plan), "--as", bob)
    assert r.returncode == 1 and "only operators act for others" in r.stderr, r.stderr

    r = skyops(box, carol, svc.sock, *submit)
    assert r.returncode == 0, r.stderr
    r = skyops(box, carol, svc.sock, "--apply", str(plan), "--as", bob)
    assert r.returncode == 0, r.stderr
    r = skyops(box, carol, svc.sock, "jobs", "--all", "--json")
    users = {j["name"]: j["user"] for j in json.loads(r.stdout)}
    assert users == {"forbob": bob, "planned": bob}  # alice's tries made nothing
    store = Store(svc.db)
    try:
        causes = [e.cause for e in store.events(limit=500) if e.kind == "command"]
    finally:
        store.close()
    for kind in ("submit job forbob", "apply_plan"):
        assert any(kind in c and f"by {carol} for {bob}" in c for c in causes), causes


def test_a_client_waits_on_its_plan_through_the_socket(head, tmp_path):
    svc, box, alice, _ = head
    plan = tmp_path / "plan.toml"
    job = '[[jobs]]\nname = "{}"\nmode = "flex"\nbid = 1.0\ncommand = ["{}"]\n'
    plan.write_text(job.format("ok", "true") + job.format("bad", "false"))
    r = skyops(box, alice, svc.sock, "--json", "--apply", str(plan), "--wait")
    assert r.returncode == 3, r.stderr  # a waited job did not succeed
    doc = json.loads(r.stdout)
    assert {j["name"]: j["state"] for j in doc["jobs"]} == {"ok": "succeeded", "bad": "failed"}
    assert doc["exit_code"] == 3 and "bad: failed" in r.stderr  # progress on stderr


def test_connect_url_is_checked():
    with pytest.raises(Exception, match="--connect"):
        parse_connect("http://head")
    t = parse_connect("ssh://ana@head:2222")
    assert (t.user, t.host, t.port, t.socket) == ("ana", "head", 2222, "/run/skyops/api.sock")
