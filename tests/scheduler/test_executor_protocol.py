"""Every executor implements the whole `Executor` protocol (scheduler/executor.py), with
the protocol's signatures, so no caller probes for a member (issue 13)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import skyops_tui
from skyops_tui.api.remote import NoExecutor
from skyops_tui.clock import ManualClock
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.scheduler.executor import Executor
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.slurm.executor import SlurmExecutor

EXECUTORS = [FleetExecutor, SlurmExecutor, SimExecutor, NoExecutor]
PROBE = re.compile(r"\b(?:get|has)attr\([^)]*(?:executor|\bex\b)")


def members() -> dict[str, object]:
    return {
        name: value
        for name, value in vars(Executor).items()
        if not name.startswith("_") and inspect.isfunction(value)
    }


def shape(fn: object) -> tuple[bool, list[tuple[str, object]]]:
    """Whether it is a coroutine function, and its parameters' names and defaults."""
    params = inspect.signature(fn).parameters.values()  # type: ignore[arg-type]
    return inspect.iscoroutinefunction(fn), [(p.name, p.default) for p in params]


def missing(cls: type) -> list[str]:
    """The protocol's members `cls` lacks or declares otherwise (sync for async, other
    parameter names or defaults)."""
    wrong = []
    for name, proto in members().items():
        fn = getattr(cls, name, None)
        if fn is None or not callable(fn):
            wrong.append(f"{name}: missing")
        elif shape(fn) != shape(proto):
            wrong.append(f"{name}: {shape(fn)} instead of {shape(proto)}")
    return wrong


def test_the_protocol_declares_what_callers_use():
    expected = {
        "bind",
        "attach",
        "start",
        "close",
        "execute",
        "fire",
        "busy",
        "status_line",
        "nodes_settled",
        "open_for_reads",
        "telemetry",
        "logs",
        "read_log",
        "last_checkpoint",
    }
    assert set(members()) == expected


@pytest.mark.parametrize("cls", EXECUTORS, ids=lambda c: c.__name__)
def test_each_executor_implements_every_member(cls: type):
    assert missing(cls) == []


def test_instances_satisfy_the_runtime_checkable_protocol():
    assert isinstance(SimExecutor(ManualClock(0.0), 5.0, 30.0), Executor)
    assert isinstance(NoExecutor(), Executor)


def test_an_executor_short_of_a_member_fails_the_check():
    half = type("Half", (), {k: v for k, v in vars(SimExecutor).items() if k != "busy"})
    assert missing(half) == ["busy: missing"]
    assert not isinstance(half.__new__(half), Executor)

    class SyncLogs(NoExecutor):
        def logs(self, job, stream="stdout", lines=100):  # not a coroutine
            return []

    assert [w.split(":")[0] for w in missing(SyncLogs)] == ["logs"]


def test_no_caller_probes_an_executor_with_getattr():
    root = Path(skyops_tui.__file__).parent
    probes = [
        f"{path.relative_to(root)}:{n}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if PROBE.search(line)
    ]
    assert probes == []
