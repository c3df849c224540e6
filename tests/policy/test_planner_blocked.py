"""A pass judges once per shape what cannot change within it (issue 15): jobs queued
behind a blocked job of their shape cost no walk over the nodes each."""

from __future__ import annotations

import importlib

import pytest

from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import Job, Mode, Node
from skyops_tui.domain.specs import JobSpec
from skyops_tui.policy import actions as A
from skyops_tui.policy.grid import Grid
from skyops_tui.policy.planner import PassState, plan

T0 = 1_767_225_600.0
SIZES = [1, 2, 4, 8]
# The module, not the function `planner.priority` of the same name.
priority_part = importlib.import_module("skyops_tui.policy.planner.priority")


def _grid() -> Grid:
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}, {"name": "L40S", "rate": 0.9}],
            "nodes": [
                {"name": "h100", "fake_gpus": "8xH100-80GB", "count": 2},
                {"name": "l40s", "fake_gpus": "8xL40S", "count": 2},
            ],
            "accounts": {"default_balance": 1e9},
        },
        "test config",
    )
    g = Grid(cfg, T0)
    for name, node in g.nodes.items():
        if node.gpu_type == "L40S":
            g.drain_node(name, "maintenance", T0, "test")
    return g


def _priority(g: Grid, name: str, gpu_type: str, gpus: int) -> int:
    spec = JobSpec(
        name=name, user="alice", mode=Mode.PRIORITY, gpus=gpus, gpu_type=gpu_type, hours=4
    )
    return g.submit(spec, T0).id


def test_blocked_priority_jobs_are_judged_once_per_shape_and_the_queue_behind_them_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    g = _grid()
    for i in range(2000):
        _priority(g, f"blocked{i:04d}", "L40S", SIZES[i % 4])
    behind = _priority(g, "behind", "H100", 4)
    calls: list[int] = []
    hold = priority_part.hold_for_head

    def counted(s: PassState, job: Job, types: list[str], nodes_of: dict[str, list[Node]]):
        calls.append(job.id)
        return hold(s, job, types, nodes_of)

    monkeypatch.setattr(priority_part, "hold_for_head", counted)
    actions = plan(g, T0 + 1)
    starts = [a for a in actions if isinstance(a, A.Start)]
    assert [a.job for a in starts] == [behind]  # the drained type's queue holds nobody up
    # Each shape (1, 2, 4, 8 GPUs) looked for a node to hold once, not each of 2,000 jobs.
    assert len(calls) == len(SIZES)
