"""Draining a node (issue 11): an operator's command that stops new placements there
while the jobs on it run until they end; Undrain opens it again."""

from __future__ import annotations

import pytest

from skyops_tui.control import commands
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState, NodeStatus
from tests.helpers import HOUR, T0, HandWorld, config

OPS = {"accounts": {"operators": ["ops"]}}


def drain(w: HandWorld, kind: str, actor: str = "ops", **payload) -> dict:
    out = commands.run(w.engine, kind, payload, actor=actor, now=w.now)
    w._drain()
    return out


def node_of(w: HandWorld, name: str) -> str:
    return w.job(name).placement[0].node


def test_a_drained_node_gets_no_placement_its_jobs_run_on_and_undrain_reopens_it():
    w = HandWorld(config("2x8xH100", **OPS))
    w.priority("a", gpus=4)
    w.at(0)
    w.run()
    x = node_of(w, "a")
    y = "h100-2" if x == "h100-1" else "h100-1"
    doc = drain(w, "drain", node=x, reason="fan failing")
    assert doc["drained"] == "by ops: fan failing"
    assert w.grid.nodes[x].drained == "by ops: fan failing"
    assert any(e.node == x and "drained by ops: fan failing" in e.cause for e in w.events)

    # Jobs that fit only on the drained node's free GPUs wait; others go elsewhere.
    w.priority("b", gpus=8)
    w.flex("f", gpus=4, bid=2.0)
    w.at(10)
    w.run()
    assert node_of(w, "b") == y
    assert w.state("f") is JobState.QUEUED
    assert w.state("a") is JobState.RUNNING  # the running job stays
    w.at(60)
    assert w.state("a") is JobState.RUNNING and node_of(w, "a") == x

    # A node report does not undo the drain (unlike a degraded status).
    w.node(x, NodeStatus.DEGRADED, "no heartbeat")
    w.node(x, NodeStatus.UP, "heartbeat resumed")
    w.at(70)
    assert w.grid.nodes[x].drained is not None and w.state("f") is JobState.QUEUED

    drain(w, "undrain", node=x)
    assert w.grid.nodes[x].drained is None
    w.at(80)
    w.run()
    assert w.state("f") is JobState.RUNNING and node_of(w, "f") == x
    assert not w.violations


def test_only_operators_drain_and_twice_is_refused():
    w = HandWorld(config("2x8xH100", **OPS))
    with pytest.raises(Refused, match="alice may not drain node h100-1: only operators may"):
        drain(w, "drain", actor="alice", node="h100-1")
    assert w.grid.nodes["h100-1"].drained is None
    drain(w, "drain", node="h100-1", reason="")
    assert w.grid.nodes["h100-1"].drained == "by ops"
    with pytest.raises(Refused, match="node h100-1 is drained already"):
        drain(w, "drain", node="h100-1")
    with pytest.raises(Refused, match="alice may not undrain node h100-1: only operators may"):
        drain(w, "undrain", actor="alice", node="h100-1")
    with pytest.raises(Refused, match="no node 'nope'"):
        drain(w, "drain", node="nope")
    drain(w, "undrain", node="h100-1")
    with pytest.raises(Refused, match="node h100-1 is not drained"):
        drain(w, "undrain", node="h100-1")


def test_an_open_commit_window_moves_off_a_drained_node_its_jobs_there_run_on():
    w = HandWorld(config("2x8xH100", **OPS))
    w.reserve("r", gpus=4, start=T0 + 60, hours=2)
    w.at(60)
    w.commit("c", "r", gpus=4)
    w.at(61)
    w.run()
    res = w.grid.reservations["r"]
    x = node_of(w, "c")
    assert {n for n, _ in res.held} == {x}
    drain(w, "drain", node=x, reason="maintenance")
    w.at(70)
    w.run()
    held = {n for n, _ in res.held}
    assert x not in held and len(res.held) == 4  # held again on spare GPUs
    assert w.state("c") is JobState.RUNNING and node_of(w, "c") == x
    w.commit("c2", "r", gpus=4)  # the owner's next job starts in the moved window
    w.at(80)
    w.run()
    assert w.state("c2") is JobState.RUNNING and node_of(w, "c2") != x
    w.at(HOUR)
    assert not w.violations
