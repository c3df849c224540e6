"""A console (Runtime with its SQLite store) on the localhost Slurm."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from skyops_tui.clock import Clock, SystemClock
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import NodeStatus
from skyops_tui.domain.specs import JobSpec
from skyops_tui.runtime import Runtime
from skyops_tui.slurm.executor import SlurmExecutor
from skyops_tui.slurm.local import LocalSlurm
from skyops_tui.store.db import Store
from tests.waiting import until

CKPT_TRAIN = str(Path(__file__).resolve().parents[2] / "examples" / "ckpt_train.py")


def train(steps: int = 2000, step_s: float = 0.05, every: int = 5) -> tuple[str, ...]:
    return (
        sys.executable,
        CKPT_TRAIN,
        "--steps",
        str(steps),
        "--step-seconds",
        str(step_s),
        "--checkpoint-every",
        str(every),
    )


def config(slurm: LocalSlurm, tmp: Path, name: str, nodes: int = 8, **over) -> dict:
    data = {
        "cluster": {
            "name": name,
            "grace_s": 3,
            "stop_grace_s": 2,
            "heartbeat_timeout_s": 5,
            "tick_s": 0.2,
            "settle_s": 0,
        },
        "pricing": {"min_slice_s": 0},
        "node_types": [{"name": "H100", "rate": 2.5}],
        "nodes": [{"name": f"n{i}", "gpu_type": "H100", "gpus": 8} for i in range(1, nodes + 1)],
        "accounts": {"operators": ["ops"], "default_balance": 10000},
        "backend": {
            "kind": "slurm",
            "slurm_conf": str(slurm.conf),
            "state_dir": str(tmp / "skyops-slurm"),
            "poll_s": 0.2,
        },
    }
    for k, v in over.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return data


def console(
    slurm: LocalSlurm, tmp: Path, name: str, nodes: int = 8, clock: Clock | None = None, **over
) -> Runtime:
    cfg = parse_config(config(slurm, tmp, name, nodes, **over), "test config")
    clock = clock or SystemClock()
    ex = SlurmExecutor(cfg, clock)
    return Runtime(cfg, ex, clock=clock, store=Store(tmp / "state.db"), user="ops")


class JumpClock:
    """Wall time plus an offset the test moves forward: a daily window's next opening
    is reached without waiting a day (Slurm's own times stay wall times)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def now(self) -> float:
        return time.time() + self.offset


async def up(rt: Runtime) -> None:
    await until(
        lambda: all(n.status is NodeStatus.UP for n in rt.grid.nodes.values()),
        "every Slurm node up",
    )


def flex(name: str, gpus: int, bid: float, argv, user: str = "kim") -> JobSpec:
    return JobSpec(name=name, user=user, mode="flex", gpus=gpus, bid=bid, argv=tuple(argv))


def priority(name: str, argv, gpus: int = 4, hours: float = 1, **kw) -> JobSpec:
    return JobSpec(
        name=name, user="ana", mode="priority", gpus=gpus, hours=hours, argv=tuple(argv), **kw
    )


async def log_contains(rt: Runtime, job, text: str, timeout: float = 30.0) -> str:
    out = ""

    async def check() -> bool:
        nonlocal out
        out = "\n".join(await rt.executor.logs(job, "stdout", 100_000))
        return text in out

    await until(check, f"{text!r} in the log of {job.name}", timeout, interval=0.1)
    return out
