"""One full scheduler step on a big busy grid: absorb reports, plan, apply, persist,
hand to the executor.

    python benchmarks/scheduler_step.py                       # 1024x20000 and 4096x50000
    python benchmarks/scheduler_step.py --sizes 1024x20000 --passes 300 --profile 30

Whole path timed: `Engine.step(now)` as the live scheduler loop calls it, on the grid
`benchmarks/policy_pass.py` builds (NODES x 8 GPUs, half H100, half A100, Commit
windows, Priority bookings, Flex bids, QUEUED waiting), with the real `Store` (SQLite
WAL file in a temp folder, the one transaction per step, fenced writes off) as its
persist hook: the executor's reports since the last step are absorbed, `plan()` runs,
its actions are applied to the grid, every change (jobs, nodes, markets, events,
ledger, prices, the actions) is written in one transaction, then each executor action
is handed to the executor. Between timed steps, untimed: the clock moves 2 s, 3 running
jobs report their exit and 3 jobs are submitted (each a command written on its own, as
a client's submit is).

Left out: the fleet. The executor here records what it is handed and reports a start
at once and a stop as exited by the next step (the simulated agents' contract, with no
simulated work); a real `FleetExecutor` sends each action to an agent over SSH
asynchronously, off this step. The group-commit fsync is not in a step (a step answers
no client; docs/store.md "Durability"). The WAL is checkpointed by the store's own
thread, as a leader's is (`Store.checkpoint_in_background`): its I/O runs beside the
steps, on this machine's other core, not inside one.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine, summary_ms  # noqa: E402
from policy_pass import build, waiting  # noqa: E402

from skyops_tui.clock import ManualClock  # noqa: E402
from skyops_tui.domain.model import JobState  # noqa: E402
from skyops_tui.policy import actions as A  # noqa: E402
from skyops_tui.policy.planner import plan  # noqa: E402
from skyops_tui.scheduler import engine as engine_module  # noqa: E402
from skyops_tui.scheduler.engine import Engine  # noqa: E402
from skyops_tui.scheduler.executor import Exited, Started  # noqa: E402
from skyops_tui.store.db import Store  # noqa: E402

TARGETS = {(1024, 20_000): {"p50_ms": 5.0, "p99_ms": 20.0}, (4096, 50_000): {"p50_ms": 20.0}}
DEFAULT_SIZES = [(1024, 20_000), (4096, 50_000)]


class Executor:
    """Takes the actions a step hands over; reports as agents would, by the next step."""

    def __init__(self) -> None:
        self.report = lambda r: None
        self.handed = 0

    def bind(self, report) -> None:  # noqa: ANN001
        self.report = report

    def execute(self, action: A.ExecutorAction, job) -> None:  # noqa: ANN001
        self.handed += 1
        if isinstance(action, A.Start):
            self.report(Started(job.id))
        else:
            self.report(Exited(job.id, None, cause="stopped"))


def measure(nodes: int, queued: int, passes: int, seed: int, folder: Path, profile: int) -> dict:
    g, w, _d, now, state = build(nodes, queued, seed)
    clock = ManualClock(now)
    store = Store(folder / f"step-{nodes}.db")
    store.checkpoint_in_background()  # as a leader's store does (Runtime._lead)
    # The store starts holding the built grid, as a console's would.
    g.dirty_jobs.update(g.jobs)
    g.dirty_nodes.update(g.nodes)
    g.dirty_reservations.update(g.reservations)
    t = time.perf_counter()
    store.persist(g, [], now)
    first_write_s = time.perf_counter() - t
    ex = Executor()
    # The step's parts, timed apart (CPU seconds): plan(), the store's write.
    parts = {"plan": 0.0, "persist": 0.0}
    write = store.persister(clock)

    def timed_plan(grid, at):  # noqa: ANN001, ANN202
        c = time.process_time()
        try:
            return plan(grid, at)
        finally:
            parts["plan"] += time.process_time() - c

    def timed_persist(grid, actions):  # noqa: ANN001, ANN202
        c = time.process_time()
        try:
            return write(grid, actions)
        finally:
            parts["persist"] += time.process_time() - c

    engine_module.plan = timed_plan  # type: ignore[assignment]
    engine = Engine(g, ex, timed_persist)  # type: ignore[arg-type]
    rng = random.Random(seed + 1)
    wall: list[float] = []
    cpu: list[float] = []
    n_actions = 0
    kinds: dict[str, int] = {}
    step_kinds: list[dict[str, int]] = []
    plan_cpu: list[float] = []
    persist_cpu: list[float] = []
    prof = cProfile.Profile() if profile else None
    gc.collect()
    for _ in range(passes):
        now += 2.0
        clock.set(now)
        running = [j for j in g.holding if g.jobs[j].state is JobState.RUNNING]
        for jid in rng.sample(running, min(3, len(running))):
            if not g.jobs[jid].stop_reason:
                engine.pending.append(Exited(jid, 0, completed=True, cause="finished"))
        for _ in range(3):
            spec = w.queued()
            try:
                engine.command(lambda grid, at, s=spec: grid.submit(s, at), now)
            except Exception:  # noqa: BLE001 - a refused spec is not part of the load
                pass
        if prof:
            prof.enable()
        parts["plan"] = parts["persist"] = 0.0
        t, c = time.perf_counter(), time.process_time()
        actions = engine.step(now)
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        if prof:
            prof.disable()
        plan_cpu.append(parts["plan"])
        persist_cpu.append(parts["persist"])
        n_actions += len(actions)
        mine: dict[str, int] = {}
        for a in actions:
            mine[type(a).__name__] = mine.get(type(a).__name__, 0) + 1
        for k, v in mine.items():
            kinds[k] = kinds.get(k, 0) + v
        step_kinds.append(mine)
    store.close()
    if prof:
        print(f"--- cProfile of Engine.step, {nodes} nodes, {queued} queued", file=sys.stderr)
        stats = pstats.Stats(prof, stream=sys.stderr)
        stats.sort_stats("tottime").print_stats(profile)
        stats.sort_stats("cumulative").print_stats(profile)
    slow = sorted(range(len(wall)), key=wall.__getitem__)[-3:]
    return {
        "nodes": nodes,
        "gpus_per_node": 8,
        "queued_target": queued,
        **state,
        "queued_after": waiting(g),
        "first_write_s": round(first_write_s, 2),
        "passes": passes,
        "actions_per_step": round(n_actions / passes, 1),
        "actions_by_kind": kinds,
        "handed_to_executor": ex.handed,
        "slowest_steps": [{"ms": round(wall[i] * 1000, 1), "actions": step_kinds[i]} for i in slow],
        **summary_ms(wall),
        "cpu": summary_ms(cpu),
        "cpu_plan": summary_ms(plan_cpu),
        "cpu_persist": summary_ms(persist_cpu),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", help="comma-separated NODESxQUEUED (default 1024x20000,4096x50000)")
    ap.add_argument("--passes", type=int, default=200, help="timed steps per size")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    a = ap.parse_args(argv)
    sizes = DEFAULT_SIZES
    if a.sizes:
        sizes = [tuple(int(x) for x in s.lower().split("x")) for s in a.sizes.split(",")]
    results = []
    with tempfile.TemporaryDirectory() as d:
        for nodes, queued in sizes:
            r = measure(nodes, queued, a.passes, a.seed, Path(d), a.profile)
            target = TARGETS.get((nodes, queued))
            if target:
                r["target"] = {
                    **target,
                    "met": r["p50_ms"] <= target["p50_ms"]
                    and r["p99_ms"] <= target.get("p99_ms", float("inf")),
                }
            print(
                f"{nodes:>5} nodes {queued:>6} queued: step p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms (CPU p50 {r['cpu']['p50_ms']:.2f}, "
                f"p99 {r['cpu']['p99_ms']:.2f}; built in {r['build_s']} s)",
                file=sys.stderr,
            )
            results.append(r)
    out = {"benchmark": "scheduler_step", "machine": machine(), "results": results}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
