"""How long the console's grid screen takes to redraw on a big grid, and what it costs.

    python benchmarks/grid_refresh.py                     # 64, 256 and 512 nodes x 8 GPUs
    python benchmarks/grid_refresh.py --nodes 512 --refreshes 500 --profile 30

For each size, in a fresh interpreter (so memory and first paint are not the previous
size's), it builds a `Runtime` the way `skyops_tui.demo.sim_runtime` does, on simulated
agents and a manual clock, with NODES x 8 GPUs (half H100, half A100) and jobs on most
GPUs: long Priority bookings on about a fifth, Flex jobs of 1 to 8 GPUs lasting 10 to
90 simulated minutes on the rest, and a backlog of Flex bids that refills GPUs as jobs
end. It mounts the console (`SkyopsApp(runtime)` with key_latency.py's drawing
driver: not headless, so Textual renders every frame to escape sequences, which the
driver drops) on the grid screen (`App.run_test`, 120x36) and times whole frames over
many refreshes, moving simulated time 60 s between them so jobs end and start and the
simulated telemetry changes. A frame is `app.refresh_views()` (what the app runs every
second and after each batch of events: the top bar, the status line and
`GridScreen.refresh_view`) and then Textual's part until the frame is written: the
tables' idle work (column widths), layout, each widget's render and the compositor's
update, written by the driver (`pilot.pause()`, which ends by drawing). The benchmark
runs the scheduling passes itself, so the app's scheduler loop, its redraw after
events and its 1 s timer are off: one refresh per step. Left out: the terminal
emulator painting the bytes.

Prints one JSON object: per size, p50/p99 of a frame in CPU ms (this process's, judged:
the machine is shared) and wall ms (to the end of the last write), the refresh alone in
wall and CPU ms (and in wall
ms less the time the cyclic garbage collector ran inside it, with how many refreshes a
full collection landed in: those are the p99), the
process's RSS after mounting (VmRSS, and peak), first paint (from entering
`App.run_test` to the node table holding every node, and to the frame after it), the
state measured (busy GPUs, running and queued jobs, rows changed per refresh), and
whether the targets are met: at 512 nodes a frame <= 16 ms p50 and <= 33 ms p99 in CPU
time, RSS <= 200 MB, first paint <= 1 s. First paint and RSS are one sample a process, so
`--first-paints` more fresh processes (default 5 in all) measure only those; the
median first paint and the largest RSS are judged.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import pstats
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from machine import machine, summary_ms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skyops_tui.clock import ManualClock  # noqa: E402
from skyops_tui.demo import DEMO_EPOCH, settle  # noqa: E402
from skyops_tui.domain.config import Config, parse_config  # noqa: E402
from skyops_tui.domain.model import JobState, Mode  # noqa: E402
from skyops_tui.domain.specs import JobSpec  # noqa: E402
from skyops_tui.runtime import Runtime  # noqa: E402
from skyops_tui.sim.agents import SimExecutor  # noqa: E402

SIZES = (64, 256, 512)
SORT = "cumulative"  # cProfile order for --profile
SIZE = (120, 36)
STEP_S = 60.0  # simulated time between refreshes
TARGET = {
    "nodes": 512,
    "frame_p50_ms": 16.0,
    "frame_p99_ms": 33.0,
    "rss_mb": 200.0,
    "first_paint_s": 1.0,
}
TYPES = {"H100": 2.50, "A100": 1.60}
ARGV = ("python", "train.py")


def config(nodes: int) -> Config:
    half = nodes // 2
    return parse_config(
        {
            "cluster": {"name": f"bench-{nodes}"},
            "node_types": [{"name": t, "rate": r} for t, r in TYPES.items()],
            "nodes": [
                {"name": "h100", "fake_gpus": "8xH100-80GB", "count": half},
                {"name": "a100", "fake_gpus": "8xA100-80GB", "count": nodes - half},
            ],
            "accounts": {"operators": ["ops"], "default_balance": 1e9},
        },
        "benchmark config",
    )


def runtime(nodes: int) -> Runtime:
    """Like `sim_runtime()`: simulated agents, a manual clock, no store."""
    cfg = config(nodes)
    clock = ManualClock(DEMO_EPOCH)
    ex = SimExecutor(clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s)
    return Runtime(cfg, ex, clock=clock, user="ops")


class Workload:
    """Deterministic jobs: long Priority bookings, short Flex jobs and a Flex backlog."""

    def __init__(self, rt: Runtime, seed: int = 7) -> None:
        self.rt = rt
        self.rng = random.Random(seed)
        self.n = 0
        self.users = [f"user{i:02d}" for i in range(24)]
        self.gpus = sum(n.gpu_count for n in rt.grid.nodes.values())

    def submit(self, spec: JobSpec) -> None:
        self.rt.local.submit(spec, actor=spec.user)

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}-{self.n:06d}"

    def flex(self) -> JobSpec:
        r = self.rng
        t = r.choice(list(TYPES))
        return JobSpec(
            name=self.name("flex"),
            user=r.choice(self.users),
            mode=Mode.FLEX,
            gpus=r.choice((1, 2, 2, 4, 4, 8)),
            gpu_type=t,
            bid=round(TYPES[t] * r.uniform(0.3, 0.9), 2),
            argv=ARGV,
            runtime=r.uniform(600, 5400),
            checkpoint_every=300,
        )

    def fill(self) -> None:
        r = self.rng
        booked = 0
        while booked < self.gpus // 5:
            gpus = r.choice((4, 8))
            self.submit(
                JobSpec(
                    name=self.name("prio"),
                    user=r.choice(self.users),
                    mode=Mode.PRIORITY,
                    gpus=gpus,
                    gpu_type=r.choice(list(TYPES)),
                    hours=24,
                    argv=ARGV,
                    runtime=20 * 3600,
                )
            )
            booked += gpus
        asked = booked
        while asked < self.gpus:
            spec = self.flex()
            self.submit(spec)
            asked += spec.gpus or 0
        self.top_up()
        settle(self.rt)

    def queued(self) -> int:
        return sum(1 for j in self.rt.grid.jobs.values() if j.state is JobState.QUEUED)

    def top_up(self) -> None:
        """Keep a backlog of about one queued Flex job per 4 nodes."""
        for _ in range(max(0, len(self.rt.grid.nodes) // 4 - self.queued())):
            self.submit(self.flex())

    def step(self, seconds: float) -> None:
        clock = self.rt.clock
        assert isinstance(clock, ManualClock)
        clock.advance(seconds)
        settle(self.rt)
        self.top_up()
        settle(self.rt)


class GcClock:
    """Seconds spent in the cyclic garbage collector (gc.callbacks), and how often a
    full (generation 2) collection ran."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.full += info.get("generation") == 2


def rss_mb() -> tuple[float, float]:
    """(current VmRSS, peak ru_maxrss) of this process in MB."""
    now = 0.0
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return round(now, 1), round(peak, 1)


def grid_state(rt: Runtime) -> dict:
    g = rt.grid
    busy = sum(1 for n in g.nodes.values() for h in n.holders if h is not None)
    states = [j.state for j in g.jobs.values()]
    return {
        "gpus": sum(n.gpu_count for n in g.nodes.values()),
        "busy_gpus": busy,
        "running_jobs": sum(1 for s in states if s is JobState.RUNNING),
        "queued_jobs": sum(1 for s in states if s is JobState.QUEUED),
        "jobs_ever": len(states),
    }


def node_rows(app) -> dict[str, tuple]:
    from skyops_tui.app.widgets.tables import GridTable

    table = app.screen.query_one("#nodes", GridTable)
    return {row.key.value: tuple(map(str, table.get_row(row.key))) for row in table.ordered_rows}


async def measure(nodes: int, refreshes: int, profile: int) -> dict:
    t_import = time.perf_counter()
    from skyops_tui.app.app import SkyopsApp  # noqa: F401  (timed: importing the app)
    from skyops_tui.app.widgets.tables import GridTable

    t_import = time.perf_counter() - t_import
    from key_latency import BenchApp  # the console with a driver that draws for real

    rt = runtime(nodes)
    load = Workload(rt)
    load.fill()
    app = BenchApp(rt)
    written: list[tuple[float, float]] = []  # (wall, CPU) at the end of each frame written

    def on_frame(data: str) -> None:
        written.append((time.perf_counter(), time.process_time()))

    profiler = cProfile.Profile() if profile else None
    out: dict = {"nodes": nodes, "size": f"{SIZE[0]}x{SIZE[1]}"}

    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        app._driver.on_frame = on_frame  # type: ignore[union-attr]

        def populated() -> bool:
            try:
                return app.screen.query_one("#nodes", GridTable).row_count == nodes
            except Exception:
                return False

        while not populated():
            await pilot.pause(0)
        t_rows = time.perf_counter() - t0
        await pilot.pause()
        t_frame = time.perf_counter() - t0
        out["first_paint_s"] = {
            "rows": round(t_rows, 3),
            "frame": round(t_frame, 3),
            "import_app_before": round(t_import, 3),
        }
        await app.workers.wait_for_complete()
        await pilot.pause()
        out["rss_after_mount_mb"], _ = rss_mb()
        if not refreshes:
            return out

        # One refresh per simulated step, and nothing else: the benchmark runs the
        # scheduling passes itself (as demo.advance does), so the app's own loop, its
        # redraw after each batch of events and its 1 s timer are switched off.
        await rt.local.stop()
        rt.feed.listeners.remove(app._on_events)
        for timer in list(app._timers):
            if timer.name == "refresh":
                timer.stop()

        idle, idle_cpu = [], []
        for _ in range(20):
            w0, c0 = time.perf_counter(), time.process_time()
            await pilot.pause()
            idle.append(time.perf_counter() - w0)
            idle_cpu.append(time.process_time() - c0)

        wall, cpu, frame, changed, in_gc = [], [], [], [], []
        frame_wall, frame_cpu, frames_per_step = [], [], []
        full_gcs = 0
        collector = GcClock()
        before = node_rows(app)
        for _ in range(refreshes):
            load.step(STEP_S)
            g0, full0 = collector.seconds, collector.full
            written.clear()
            c0, w0 = time.process_time(), time.perf_counter()
            if profiler is not None:
                profiler.enable()
            app.refresh_views()
            w1, c1 = time.perf_counter(), time.process_time()
            # The frame: Textual's idle work (the tables' widths), layout, render and the
            # compositor's update written by the driver. pause() ends by drawing it.
            await pilot.pause()
            w2, c2 = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.disable()
            in_gc.append(collector.seconds - g0)
            full_gcs += collector.full - full0
            wall.append(w1 - w0)
            cpu.append(c1 - c0)
            frame.append(w2 - w1)
            # Wall to the end of the last frame written (not pause()'s idle wait after
            # it); CPU over the refresh and the whole pause, idle polling included.
            frame_wall.append((written[-1][0] if written else w1) - w0)
            frame_cpu.append(c2 - c0)
            frames_per_step.append(len(written))
            after = node_rows(app)
            changed.append(sum(1 for k, v in after.items() if before.get(k) != v))
            before = after
        out["frame_wall"] = summary_ms(frame_wall)
        out["frame_cpu"] = summary_ms(frame_cpu)
        out["frames_written_per_refresh"] = {
            "mean": round(sum(frames_per_step) / len(frames_per_step), 2),
            "none": sum(1 for f in frames_per_step if not f),
        }
        out["refresh_wall"] = summary_ms(wall)
        out["refresh_cpu"] = summary_ms(cpu)
        out["refresh_wall_less_gc"] = summary_ms([w - g for w, g in zip(wall, in_gc, strict=True)])
        out["gc_in_refreshes"] = {
            "refreshes_with_a_full_collection": full_gcs,
            "total_ms": round(sum(in_gc) * 1000, 1),
            "max_ms": round(max(in_gc) * 1000, 1),
        }
        out["next_frame_wall"] = summary_ms(frame)
        out["idle_pause_wall"] = summary_ms(idle)
        out["idle_pause_cpu"] = summary_ms(idle_cpu)  # the harness's own share of frame_cpu
        out["rows_changed_per_refresh"] = {
            "mean": round(sum(changed) / len(changed), 1),
            "max": max(changed),
        }
        out["rss_end_mb"], out["rss_peak_mb"] = rss_mb()
        out["state_at_end"] = grid_state(rt)
        out["simulated_s"] = refreshes * STEP_S
        out["events_in_feed"] = len(rt.feed.events)
    if profiler is not None:  # after run_test, which redirects stderr while it runs
        buf = io.StringIO()
        pstats.Stats(profiler, stream=buf).sort_stats(SORT).print_stats(profile)
        print(f"--- profile of a frame (refresh and paint) at {nodes} nodes ---", file=sys.stderr)
        print(buf.getvalue(), file=sys.stderr)
    return out


def verdict(results: list[dict]) -> dict:
    big = next((r for r in results if r["nodes"] == TARGET["nodes"]), None)
    if big is None:
        return {"measured": False, "why": f"no {TARGET['nodes']}-node size in this run"}
    cpu, wall = big["frame_cpu"], big["frame_wall"]
    runs = big.get("first_paint_frame_s_runs")
    paint = runs["median"] if runs else big["first_paint_s"]["frame"]
    rss = big.get("rss_after_mount_mb_runs", {}).get("max", big["rss_after_mount_mb"])
    # CPU time is judged: on a shared, loaded machine wall time holds other work.
    return {
        "frame_p50_ms": {
            "cpu": cpu["p50_ms"],
            "wall": wall["p50_ms"],
            "target": TARGET["frame_p50_ms"],
            "met": cpu["p50_ms"] <= TARGET["frame_p50_ms"],
        },
        "frame_p99_ms": {
            "cpu": cpu["p99_ms"],
            "wall": wall["p99_ms"],
            "target": TARGET["frame_p99_ms"],
            "met": cpu["p99_ms"] <= TARGET["frame_p99_ms"],
        },
        "rss_mb": {"value": rss, "target": TARGET["rss_mb"], "met": rss <= TARGET["rss_mb"]},
        "first_paint_s_median": {
            "value": paint,
            "target": TARGET["first_paint_s"],
            "met": paint <= TARGET["first_paint_s"],
        },
    }


def child(nodes: int, refreshes: int, profile: int = 0) -> dict:
    """One size in a fresh interpreter, so no size inherits another's heap or warm-up."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", "--nodes", str(nodes)]
        + ["--refreshes", str(refreshes), "--profile", str(profile)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--nodes", default=",".join(map(str, SIZES)), help="comma-separated sizes (8 GPUs each)"
    )
    ap.add_argument("--refreshes", type=int, default=300, help="timed refreshes per size")
    ap.add_argument(
        "--first-paints",
        type=int,
        default=5,
        help="fresh processes per size that measure first paint and RSS only",
    )
    ap.add_argument("--profile", type=int, default=0, help="cProfile's top N to stderr")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    sizes = [int(s) for s in a.nodes.split(",") if s.strip()]
    if a.one:
        result = asyncio.run(measure(sizes[0], a.refreshes, a.profile))
        print(json.dumps(result))
        return 0
    report: dict = {"benchmark": "grid_refresh", "machine": machine(), "sizes": []}
    for n in sizes:
        print(f"grid refresh: {n} nodes x 8 GPUs, {a.refreshes} refreshes", file=sys.stderr)
        result = child(n, a.refreshes, a.profile)
        # First paint is one sample a process, and load on a shared machine moves it:
        # take a few more processes and report the spread; the median is judged.
        paints = [result["first_paint_s"]["frame"]]
        rss = [result["rss_after_mount_mb"]]
        for _ in range(max(0, a.first_paints - 1)):
            extra = child(n, 0)
            paints.append(extra["first_paint_s"]["frame"])
            rss.append(extra["rss_after_mount_mb"])
        result["first_paint_frame_s_runs"] = {
            "runs": len(paints),
            "min": min(paints),
            "median": statistics.median(paints),
            "max": max(paints),
        }
        result["rss_after_mount_mb_runs"] = {"min": min(rss), "max": max(rss)}
        report["sizes"].append(result)
    report["target"] = verdict(report["sizes"])
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
