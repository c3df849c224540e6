"""Verdicts the planner keeps across passes (policy/planner/flex.py) are those it would
reach afresh: with the check on, every kept verdict is judged again at every pass of
whole traces, and a kept one that no longer holds fails the simulation."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from skyops_tui.domain.config import load_config
from skyops_tui.sim.simulator import simulate
from skyops_tui.sim.trace import read_trace

from .test_simulator import CONFIG, mixed_trace, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
flex = sys.modules["skyops_tui.policy.planner.flex"]


@pytest.fixture
def checked(monkeypatch):
    """The check on, and how often a kept verdict stood in for a walk of the nodes."""
    monkeypatch.setattr(flex, "CHECK_KEPT", True)
    counts = {"asked": 0, "kept": 0}
    hold = flex.hold_flex_head

    def asked(s, job, nodes):
        counts["asked"] += 1
        if nodes and t_kept(s, job, nodes[0].gpu_type):
            counts["kept"] += 1
        return hold(s, job, nodes)

    def t_kept(s, job, t):
        key = (s.g.holds_rev.get(t, 0), job.bid, job.gpus, job.nodes)
        kept = flex._NO_HEAD.get(s.g, {}).get(t)
        return kept == key and t not in s.stopped_types

    monkeypatch.setattr(flex, "hold_flex_head", asked)
    return counts


def test_a_blocked_flex_head_kept_across_passes_is_what_a_fresh_walk_finds(checked):
    extra = [
        {"name": "f3", "kind": "bid", "bid": 2.49, "submit": 20_500},
        {"kind": "silent", "node": "h-2", "submit": 15000},
        {"kind": "back", "node": "h-2", "submit": 15030},
        {"kind": "silent", "node": "a-1", "submit": 30000},
        {"kind": "restart", "submit": 40000},
        {"kind": "lost", "node": "h-3", "submit": 50000},
    ]  # fmt: skip
    for seed in (5, 7, 11):
        result = run(mixed_trace(400, seed=seed) + extra)
        assert result.summary["violations"] == []
    poor = {**CONFIG, "simulation": {"initial_balance": 300}, "accounts": {"credit_limit": 10}}
    assert run(mixed_trace(200, seed=11) + extra, poor).summary["violations"] == []
    cfg = load_config(EXAMPLES / "sim-config.toml")
    for name in ("contended-day", "nightly-commit", "outbid-war"):
        assert simulate(read_trace(EXAMPLES / f"{name}.jsonl"), cfg).summary["violations"] == []
    # Kept verdicts stood in for walks (each checked against a fresh one) many times.
    assert checked["kept"] > 500, checked
