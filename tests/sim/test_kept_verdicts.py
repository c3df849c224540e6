"""What the Flex market keeps across passes, or skips, is what a fresh walk finds
(policy/planner/flex.py): with CHECK_KEPT on, every kept verdict (a blocked head
finding no node, per type and per node; a bid finding no victims) is judged again, and
the book walk goes on past where it stops, at every pass of whole traces; a verdict
that no longer holds, or anything the rest of the book would have done, fails."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from skyops_tui.domain.config import load_config
from skyops_tui.sim import agents
from skyops_tui.sim.simulator import simulate
from skyops_tui.sim.trace import read_trace

from .test_simulator import CONFIG, NODE_TROUBLE, mixed_trace, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
flex = sys.modules["skyops_tui.policy.planner.flex"]
state = sys.modules["skyops_tui.policy.planner.state"]
windows = sys.modules["skyops_tui.policy.planner.windows"]
planner = sys.modules["skyops_tui.policy.planner"]


@pytest.fixture
def checked(monkeypatch):
    """The check on, and how often a kept verdict stood in for a walk: of the nodes for
    a blocked head, of the victims for a bid."""
    monkeypatch.setattr(flex, "CHECK_KEPT", True)
    counts = {"heads": 0, "outbids": 0}
    hold, outbid = flex.hold_flex_head, flex._outbid

    def held(s, job, nodes):
        if nodes:
            t = nodes[0].gpu_type
            kept = flex._NO_HEAD.get(s.g, {}).get((t, job.gpus, job.nodes))
            rev = s.g.room_rev.get(t, 0)
            ok = kept is not None and kept[0] == rev and job.bid <= kept[1]
            counts["heads"] += ok and t not in s.stopped_types
        return hold(s, job, nodes)

    def outbids(s, nodes, job, t, eligible, running):
        kept = flex._NO_ROOM.get(s.g, {}).get((t, job.gpus, job.nodes))
        clean = t not in s.touched and t not in s.stopped_types
        rev = s.g.holds_rev.get(t, 0)
        counts["outbids"] += clean and kept is not None and kept[0] == rev and job.bid <= kept[1]
        return outbid(s, nodes, job, t, eligible, running)

    monkeypatch.setattr(flex, "hold_flex_head", held)
    monkeypatch.setattr(flex, "_outbid", outbids)
    return counts


def test_flex_verdicts_kept_across_passes_are_what_a_fresh_walk_finds(checked):
    extra = [
        {"name": "f3", "kind": "bid", "bid": 2.49, "submit": 20_500},
        *NODE_TROUBLE,
    ]  # fmt: skip
    for seed in (5, 7, 11):
        lines = mixed_trace(400, seed=seed)
        # Bids changed while jobs wait and while they run (a running bid is what others
        # must outbid; a line for a job that ended first is refused).
        r = random.Random(seed)
        flex_jobs = [x["name"] for x in lines if x.get("mode") == "flex"]
        bids = [
            {"name": name, "kind": "bid", "bid": r.choice([0.8, 1.55]), "submit": x}
            for name in r.sample(flex_jobs, 80)
            for x in (r.uniform(0, 80000),)
        ]
        result = run(lines + extra + bids)
        assert result.summary["violations"] == []
    poor = {**CONFIG, "simulation": {"initial_balance": 300}, "accounts": {"credit_limit": 10}}
    assert run(mixed_trace(200, seed=11) + extra, poor).summary["violations"] == []
    cfg = load_config(EXAMPLES / "sim-config.toml")
    for name in ("contended-day", "nightly-commit", "outbid-war"):
        assert simulate(read_trace(EXAMPLES / f"{name}.jsonl"), cfg).summary["violations"] == []
    # Kept verdicts stood in for walks (each checked against a fresh one) many times.
    assert checked["heads"] > 500 and checked["outbids"] > 500, checked


def test_node_counts_kept_across_passes_are_what_a_count_of_the_nodes_finds(monkeypatch):
    """A type's free GPUs, widest node and nodes with room (state.py's `_View`) are
    kept while its `Grid.holds_rev` stands; with CHECK_VIEWS on, every kept one is
    counted again from the nodes, through node trouble, drains and restarts."""
    monkeypatch.setattr(state, "CHECK_VIEWS", True)
    kept = {"hits": 0}
    view = state.PassState._view

    def viewed(s, gpu_type):
        v = s._views.get(gpu_type)
        kept["hits"] += v is not None and v[0] == s.g.holds_rev.get(gpu_type, 0)
        return view(s, gpu_type)

    monkeypatch.setattr(state.PassState, "_view", viewed)
    for seed in (5, 11):
        assert run(mixed_trace(300, seed=seed) + NODE_TROUBLE).summary["violations"] == []
    cfg = load_config(EXAMPLES / "sim-config.toml")
    for name in ("contended-day", "nightly-commit"):
        assert simulate(read_trace(EXAMPLES / f"{name}.jsonl"), cfg).summary["violations"] == []
    assert kept["hits"] > 1000, kept


def test_windows_kept_quiet_do_nothing_when_walked(monkeypatch):
    """The window part of a pass (planner/windows.py) skips its walk of the live
    reservations while none changed (`Grid.windows_rev`) and time has reached no window
    edge or warning; with CHECK_QUIET on, such a pass walks anyway and must open, close
    and warn nothing: through windows that open, close, warn, lose a node's GPUs
    (NODE_TROUBLE), are cancelled, and a restart."""
    monkeypatch.setattr(windows, "CHECK_QUIET", True)
    quiet = {"passes": 0}
    part = planner.windows

    def counted(s):
        before = windows._QUIET.get(s.g)
        part(s)
        quiet["passes"] += before is not None and windows._QUIET.get(s.g) is before

    monkeypatch.setattr(planner, "windows", counted)
    for seed in (5, 11):
        assert run(mixed_trace(300, seed=seed) + NODE_TROUBLE).summary["violations"] == []
    for lost in ("a-1", "a-2"):
        # An open window loses its node while the other one is free: it holds spares
        # there at once, though nothing else changed and time reached no edge.
        window = {"name": "w", "kind": "reservation", "user": "team", "gpu_type": "A100",
                  "gpus": 8, "hours": 4, "start": 7200, "submit": 0}  # fmt: skip
        result = run([window, {"kind": "lost", "node": lost, "submit": 9000}])
        assert result.summary["violations"] == []
    for name in ("nightly-commit", "contended-day"):
        trace = read_trace(EXAMPLES / f"{name}.jsonl")
        cfg = load_config(EXAMPLES / "sim-config.toml")
        assert simulate(trace, cfg, tick_s=60).summary["violations"] == []
    assert quiet["passes"] > 1000, quiet


def test_a_pass_with_no_commit_job_waiting_reads_no_queue(monkeypatch):
    """The Commit part and the wait check read no reservation's queue while no owner
    job waits (`JobIndex.commit_busy`: there is a queue per reservation ever used, a
    walk of them all each step grew with the trace); with CHECK_IDLE on, such a pass
    reads them all anyway and must find each empty: through owner jobs queued and
    started in windows, node trouble and a restart (NODE_TROUBLE)."""
    commit = sys.modules["skyops_tui.policy.planner.commit"]
    monkeypatch.setattr(commit, "CHECK_IDLE", True)
    idle = {"passes": 0, "busy": 0}
    part = planner.commit

    def counted(s):
        idle["busy" if s.g.index.commit_busy else "passes"] += 1
        part(s)

    monkeypatch.setattr(planner, "commit", counted)
    for seed in (5, 11):
        result = run(mixed_trace(300, seed=seed) + NODE_TROUBLE)
        assert result.summary["violations"] == []
        queues = result.grid.commit_waiting
        assert result.grid.index.commit_busy == sum(1 for q in queues.values() if q)
    for name in ("nightly-commit", "contended-day"):
        trace = read_trace(EXAMPLES / f"{name}.jsonl")
        cfg = load_config(EXAMPLES / "sim-config.toml")
        assert simulate(trace, cfg).summary["violations"] == []
    assert idle["passes"] > 1000 and idle["busy"] > 50, idle


def test_whether_every_node_is_up_is_counted_again_when_a_status_changes(monkeypatch):
    """Billing skips a job whose node is not heard from; while every node is up the
    timers part reads no job's nodes, and it counts whether they are all up again only
    when a status may have changed (`Grid.status_rev`). With CHECK_UP on it counts them
    every pass and must agree: through nodes going silent, coming back, lost, and a
    restart that reloads their status from the store."""
    timers = sys.modules["skyops_tui.policy.planner.timers"]
    monkeypatch.setattr(timers, "CHECK_UP", True)
    monkeypatch.setattr(agents, "CHECK_LOST", True)  # the simulated agents ask too
    seen = {"down": 0, "up": 0}
    every = timers.all_up

    def counted(g):
        up = every(g)
        seen["up" if up else "down"] += 1
        return up

    monkeypatch.setattr(timers, "all_up", counted)
    for seed in (5, 11):
        assert run(mixed_trace(300, seed=seed) + NODE_TROUBLE).summary["violations"] == []
    assert seen["down"] > 100 and seen["up"] > 300, seen


def test_the_lowest_running_bid_kept_for_the_price_check_is_the_runs_lowest(monkeypatch):
    """The price check (invariants.check_actions: no Flex run pays above its bid) reads
    a type's lowest running bid kept while its `Grid.holds_rev` stands; with
    CHECK_LOWEST on, every kept one is counted again from the runs and must agree:
    through bids changed while jobs wait and while they run, preemptions, node trouble
    and a restart."""
    invariants = sys.modules["skyops_tui.policy.invariants"]
    monkeypatch.setattr(invariants, "CHECK_LOWEST", True)
    kept = {"hits": 0, "calls": 0}
    lowest = invariants._lowest_bid

    def counted(grid, gpu_type):
        got = invariants._LOWEST.get(grid, {}).get(gpu_type)
        kept["calls"] += 1
        kept["hits"] += got is not None and got[0] == grid.holds_rev.get(gpu_type, 0)
        return lowest(grid, gpu_type)

    monkeypatch.setattr(invariants, "_lowest_bid", counted)
    for seed in (5, 11):
        lines = mixed_trace(300, seed=seed)
        r = random.Random(seed)
        flex_jobs = [x["name"] for x in lines if x.get("mode") == "flex"]
        bids = [
            {"name": name, "kind": "bid", "bid": r.choice([0.8, 1.55, 2.4]), "submit": x}
            for name in r.sample(flex_jobs, 60)
            for x in (r.uniform(0, 80000),)
        ]
        assert run(lines + bids + NODE_TROUBLE).summary["violations"] == []
    cfg = load_config(EXAMPLES / "sim-config.toml")
    for name in ("contended-day", "outbid-war"):
        assert simulate(read_trace(EXAMPLES / f"{name}.jsonl"), cfg).summary["violations"] == []
    assert kept["hits"] > 500 and kept["calls"] > kept["hits"], kept
