"""Node drain/undrain through the leader's socket (issue 11): operators only, logged
by name, and kept across a restart of the leader and the node's own reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skyops_tui.store.db import Store
from tests.helpers import one_local_node_config
from tests.integration.test_api_users import refused, service, users  # noqa: F401
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = one_local_node_config("drain", "default_balance = 100000\n")


class Leader:
    """`skyops serve` for the account that owns the state, whose Skyops user is ops."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "config.toml").write_text(CONFIG)
        self.tmp = tmp
        self.env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "SKYOPS_USER": "ops"}
        self.base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp / "config.toml")]
        self.base += ["--db", str(tmp / "state.db")]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.tmp / f"serve{self.starts}.log"
        with log.open("w") as out:
            self.proc = subprocess.Popen([*self.base, "serve"], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=REPO)  # fmt: skip
        wait_for(lambda: "leading" in log.read_text(), "the leader leading", timeout=30)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *argv], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    def json(self, *argv: str) -> dict:
        r = self.cli(*argv, "--json")
        assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def state(self, job: str) -> str | None:
        jobs = self.json("jobs", "--all")
        return next((j["state"] for j in jobs if j["name"] == job), None)


def test_drain_keeps_new_work_off_survives_a_restart_and_undrain_reopens(tmp_path):
    leader = Leader(tmp_path)
    leader.start()
    try:
        doc = leader.json("nodes", "drain", "node-a", "--reason", "swap [red]PSU[/]")
        assert doc["status"] == "drained" and doc["drained"] == "by ops: swap [red]PSU[/]"
        r = leader.cli("status")
        row = next(line for line in r.stdout.splitlines() if line.startswith("node-a"))
        assert r.returncode == 0 and "up, drained" in row, r.stdout
        r = leader.cli("nodes", "drain", "node-a")
        assert r.returncode == 1 and "node node-a is drained already" in r.stderr, r.stderr

        sub = leader.cli("submit", "--name", "waits", "--bid", "1.0", "--", "true")
        assert sub.returncode == 0, sub.stderr
        assert leader.state("waits") == "queued"

        # A restarted leader (its agent reporting the node up again) keeps the drain.
        leader.stop()
        leader.start()
        node = leader.json("status")["nodes"][0]
        assert node["drained"] == "by ops: swap [red]PSU[/]", node
        wait_for(
            lambda: leader.json("status")["nodes"][0]["status"] == "up", "node-a up", timeout=30
        )
        assert leader.state("waits") == "queued"

        r = leader.cli("nodes", "undrain", "node-a")
        assert r.returncode == 0 and "Node node-a undrained" in r.stdout, (r.stdout, r.stderr)
        wait_for(
            lambda: leader.state("waits") == "succeeded", "the job run after undrain", timeout=30
        )
    finally:
        leader.stop()
    store = Store(tmp_path / "state.db")
    try:
        causes = [e.cause for e in store.events(limit=500) if e.kind == "node"]
    finally:
        store.close()
    assert "node node-a drained by ops: swap [red]PSU[/]" in causes, causes
    assert "node node-a undrained by ops" in causes, causes


def test_only_an_operator_drains_and_the_log_names_who(service):  # noqa: F811
    svc, u = service
    alice, carol = u["alice"], u["carol"]
    _, reply = svc.ask(alice, "command", "drain", {"node": "node-a", "reason": "mine now"})
    refused(reply, f"{alice} may not drain node node-a: only operators may")
    _, reply = svc.ask(carol, "command", "drain", {"node": "node-a", "reason": "fan"})
    assert reply["type"] == "ok" and reply["result"]["drained"] == f"by {carol}: fan", reply
    _, reply = svc.ask(alice, "command", "undrain", {"node": "node-a"})
    refused(reply, "only operators may")
    _, reply = svc.ask(alice, "query", "status", {})
    assert reply["result"]["nodes"][0]["drained"] == f"by {carol}: fan", reply
    store = Store(svc.db)
    try:
        causes = [e.cause for e in store.events(limit=500) if e.kind == "node"]
    finally:
        store.close()
    assert f"node node-a drained by {carol}: fan" in causes, causes
