"""A real grid of local agents (subprocesses over pipes) for fleet tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from skyops_tui.clock import SystemClock
from skyops_tui.domain.config import parse_config
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.fleet.link import LocalTransport
from skyops_tui.runtime import Runtime
from tests.waiting import until

CONFIG = {
    "cluster": {
        "name": "test",
        "grace_s": 2,
        "stop_grace_s": 1,
        "heartbeat_timeout_s": 5,
        "tick_s": 0.2,
    },
    "pricing": {"min_slice_s": 0},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [
        {"name": "node-a", "fake_gpus": "4xH100-80GB", "local": True},
        {"name": "node-b", "fake_gpus": "4xH100-80GB", "local": True},
    ],
    "accounts": {"operators": ["ops"], "default_balance": 10000},
}


class Box:
    """A node's transport that can be unplugged: while it is, connecting fails, as to a
    box that is off the network (its agent and jobs, if any, run on)."""

    def __init__(self, inner: LocalTransport) -> None:
        self.inner = inner
        self.unplugged = False
        self.connects = 0

    async def connect(self, on_event):
        if self.unplugged:
            raise ConnectionRefusedError(f"{self.inner.node}: no route to host (unplugged)")
        self.connects += 1
        return await self.inner.connect(on_event)

    def describe(self) -> str:
        return self.inner.describe()

    def kill_agent(self) -> None:
        assert self.inner.process is not None
        os.kill(self.inner.process.pid, signal.SIGKILL)


def make_runtime(tmp: Path, overrides: dict | None = None) -> Runtime:
    data = {**CONFIG, **(overrides or {})}
    cfg = parse_config(data, "test config")
    transports = {
        n.name: LocalTransport(n.name, str(tmp / n.name), n.fake_gpus) for n in cfg.all_nodes()
    }
    ex = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, user="ops")


def make_grid(tmp: Path, overrides: dict | None = None) -> tuple[Runtime, dict[str, Box]]:
    """A runtime over local agents, each behind a Box the test can unplug."""
    data = {**CONFIG, **(overrides or {})}
    cfg = parse_config(data, "test config")
    boxes = {
        n.name: Box(LocalTransport(n.name, str(tmp / n.name), n.fake_gpus)) for n in cfg.all_nodes()
    }
    ex = FleetExecutor(cfg, dict(boxes), SystemClock(), telemetry_interval_s=0.2)
    return Runtime(cfg, ex, user="ops"), boxes


async def up(rt: Runtime) -> None:
    await until(
        lambda: all(n.status.value == "up" for n in rt.grid.nodes.values()), "every node up"
    )


async def log_text(rt: Runtime, job) -> str:
    return "\n".join(await rt.executor.logs(job, "stdout", 1000))


async def log_contains(rt: Runtime, job, text: str, timeout: float = 20.0) -> str:
    out = ""

    async def check() -> bool:
        nonlocal out
        out = await log_text(rt, job)
        return text in out

    await until(check, f"{text!r} in the log of {job.name}", timeout, interval=0.1)
    return out
