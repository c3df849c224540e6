"""The embedded demo grid: what `skyops` shows with no config.

`seed(runtime)` books a reservation and submits jobs in all three modes, so a new user
sees every mode at work at once. `sim_runtime()` builds the same grid on simulated
agents and a manual clock: deterministic, for tests and screenshots.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .clock import ManualClock
from .domain.config import Config, demo_config
from .domain.specs import JobSpec, ReservationSpec
from .runtime import Runtime
from .sim.agents import SimExecutor

# 2026-11-25 09:00 UTC: a fixed start so screenshots do not change from run to run.
DEMO_EPOCH = 1_795_597_200.0
# Inside the package, so a wheel install runs the demo too (skyops_tui/demo_job).
EXAMPLE_JOB = Path(__file__).resolve().parent / "demo_job" / "ckpt_train.py"


def demo_argv(steps: int = 100_000, step_seconds: float = 1.0) -> tuple[str, ...]:
    """The example checkpointing job, run by the same Python as the console."""
    return (
        sys.executable,
        str(EXAMPLE_JOB),
        "--steps",
        str(steps),
        "--step-seconds",
        str(step_seconds),
        "--checkpoint-every",
        "30",
    )


def seed(rt: Runtime, runtime_s: float | None = None) -> None:
    """Jobs in every mode: a Priority booking, a Commit window with its job, a Flex
    market with bids above and below the clearing price."""
    now = rt.clock.now()
    argv = demo_argv()
    sched = rt.local  # seeding acts as the system, before any console leads
    sched.reserve(
        actor="team",
        spec=ReservationSpec(
            name="nightly-a100",
            user="team",
            gpu_type="A100",
            gpus=4,
            start=now - 600,
            hours=4,
            repeat="daily",
            count=30,
        ),
    )
    jobs = [
        JobSpec(
            name="train-llm",
            user="ana",
            mode="priority",
            gpus=4,
            gpu_type="H100",
            hours=3,
            auto_renew=True,
            argv=argv,
            runtime=runtime_s,
        ),
        JobSpec(
            name="serve-eval",
            user="raj",
            mode="priority",
            gpus=2,
            gpu_type="L40S",
            hours=1,
            argv=argv,
            runtime=runtime_s,
        ),
        JobSpec(
            name="nightly-train",
            user="team",
            mode="commit",
            gpus=4,
            reservation="nightly-a100",
            argv=argv,
            runtime=runtime_s,
        ),
        JobSpec(
            name="sweep-01",
            user="kim",
            mode="flex",
            gpus=4,
            gpu_type="H100",
            bid=1.20,
            argv=argv,
            runtime=runtime_s,
            checkpoint_every=300,
        ),
        JobSpec(
            name="sweep-02",
            user="kim",
            mode="flex",
            gpus=4,
            gpu_type="H100",
            bid=1.00,
            argv=argv,
            runtime=runtime_s,
            checkpoint_every=300,
        ),
        JobSpec(
            name="render-7",
            user="lee",
            mode="flex",
            gpus=8,
            gpu_type="H100",
            bid=0.90,
            argv=argv,
            runtime=runtime_s,
            checkpoint_every=300,
        ),
        JobSpec(
            name="embed-batch",
            user="lee",
            mode="flex",
            gpus=2,
            gpu_type="A100",
            bid=0.60,
            argv=argv,
            runtime=runtime_s,
            checkpoint_every=300,
        ),
        JobSpec(
            name="tiny-sweep",
            user="sam",
            mode="flex",
            gpus=8,
            gpu_type="H100",
            bid=0.80,
            argv=argv,
            runtime=runtime_s,
            checkpoint_every=300,
        ),
    ]
    for spec in jobs:
        sched.submit(spec, actor=spec.user)


def sim_runtime(cfg: Config | None = None, seeded: bool = True, user: str = "ops") -> Runtime:
    """The demo grid on simulated agents and a manual clock (tests, screenshots)."""
    cfg = cfg or demo_config(operator=user)
    clock = ManualClock(DEMO_EPOCH)
    ex = SimExecutor(clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s)
    rt = Runtime(cfg, ex, clock=clock, user=user, demo=True)
    if seeded:
        seed(rt, runtime_s=8 * 3600)
        settle(rt)
    return rt


def settle(rt: Runtime, rounds: int = 5) -> None:
    """Run passes at the current time until nothing more happens (simulated agents)."""
    for _ in range(rounds):
        rt.executor.fire(rt.clock.now())
        actions = rt.engine.step(rt.clock.now())
        if not actions and not rt.engine.pending:
            break


def advance(rt: Runtime, seconds: float, step: float = 30.0) -> None:
    """Move simulated time forward, running passes as the live loop would."""
    clock = rt.clock
    assert isinstance(clock, ManualClock)
    end = clock.now() + seconds
    while clock.now() < end:
        clock.set(min(end, clock.now() + step))
        settle(rt)
