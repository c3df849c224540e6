"""A simulation quiets the garbage collector for its run only: the process's own
settings (a console's frozen start-up objects, its thresholds) are as they were after
it."""

from __future__ import annotations

import gc
import json

import pytest

from skyops_tui.domain.config import parse_config
from skyops_tui.sim.simulator import simulate
from skyops_tui.sim.trace import parse_lines

CONFIG = {
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "h", "fake_gpus": "8xH100-80GB", "count": 2}],
}
LINES = [
    {"name": f"j{i}", "user": "ann", "mode": "flex", "gpus": 1, "bid": 2.0, "runtime": 600,
     "submit": 60 * i}
    for i in range(20)
]  # fmt: skip


@pytest.fixture
def collector():
    """The collector's settings as this process had them, put back after the test."""
    threshold = gc.get_threshold()
    yield threshold
    gc.set_threshold(*threshold)
    gc.unfreeze()


def _run() -> dict:
    trace = parse_lines([json.dumps(x) for x in LINES], "trace.jsonl")
    return simulate(trace, parse_config(CONFIG)).summary


def test_a_run_leaves_the_thresholds_and_nothing_frozen(collector):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert _run()["succeeded"] == 20
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def frozen(obj: object) -> bool:
    """Whether `obj` is in the permanent generation: the collector tracks it, yet none
    of its generations holds it. (The freeze count alone goes down whenever a frozen
    object is freed, which other tests' leftovers are at any time.)"""
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


def test_a_console_that_froze_its_objects_keeps_them_frozen(collector):
    startup = [object()]  # one of a console's start-up objects
    gc.freeze()  # as the console does after start-up (cli/console.py, app.py)
    assert frozen(startup)
    gc.set_threshold(10_000, 20, 1_000_000)
    assert _run()["succeeded"] == 20
    assert frozen(startup)
    assert gc.get_threshold() == (10_000, 20, 1_000_000)
