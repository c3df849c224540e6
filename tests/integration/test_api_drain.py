"""Node drain/undrain through the leader's socket (issue 11): operators only, logged
by name, and kept across a restart of the leader and the node's own reports."""

from __future__ import annotations

from pathlib import Path

from skyops_tui.store.db import Store
from tests.helpers import one_local_node_config
from tests.integration.serve import Leader
from tests.integration.test_api_users import refused, service, users  # noqa: F401
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = one_local_node_config("drain", "default_balance = 100000\n")


def test_drain_keeps_new_work_off_survives_a_restart_and_undrain_reopens(tmp_path):
    leader = Leader(tmp_path, CONFIG)
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
