"""A small built-in day of work on the demo grid, for `skyops simulate --demo`."""

from __future__ import annotations

import random

from .trace import TraceLine


def demo_trace(seed: int = 7, jobs: int = 160) -> list[TraceLine]:
    rng = random.Random(seed)
    out: list[TraceLine] = [
        TraceLine(
            name="nightly",
            user="team",
            submit=0,
            kind="reservation",
            gpu_type="A100",
            gpus=8,
            start=2 * 3600,
            hours=4,
            repeat="daily",
            count=1,
        ),
        TraceLine(
            name="nightly-train",
            user="team",
            submit=2 * 3600 + 60,
            mode="commit",
            reservation="nightly",
            gpus=8,
            runtime=3 * 3600,
        ),
    ]
    types = ["H100", "A100", "L40S"]
    for i in range(jobs):
        t = rng.uniform(0, 20 * 3600)
        mode = rng.choices(["priority", "flex"], weights=[1, 3])[0]
        gpu_type = rng.choice(types)
        gpus = rng.choice([1, 2, 4]) if gpu_type == "L40S" else rng.choice([1, 2, 4, 8])
        runtime = rng.uniform(600, 4 * 3600)
        if mode == "priority":
            out.append(
                TraceLine(
                    name=f"p{i}",
                    user=rng.choice(["ana", "raj"]),
                    submit=t,
                    mode="priority",
                    gpus=gpus,
                    gpu_type=gpu_type,
                    hours=max(1, round(runtime / 3600 + 0.5)),
                    runtime=runtime,
                )
            )
        else:
            rate = {"H100": 2.5, "A100": 1.6, "L40S": 0.9}[gpu_type]
            out.append(
                TraceLine(
                    name=f"f{i}",
                    user=rng.choice(["kim", "lee", "sam"]),
                    submit=t,
                    mode="flex",
                    gpus=gpus,
                    gpu_type=gpu_type,
                    bid=round(rate * rng.uniform(0.3, 1.0), 2),
                    runtime=runtime,
                    checkpoint_every=600,
                    max_retries=2,
                )
            )
    out.sort(key=lambda x: x.submit)
    return out
