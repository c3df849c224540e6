"""How long a key takes to reach the screen: from the key press to the frame that shows
its result, in the real console with its refresh running.

    python benchmarks/key_latency.py                       # demo grid, 240 presses
    python benchmarks/key_latency.py --presses 400 --nodes 64
    python benchmarks/key_latency.py --nodes 512 --follower --changes-per-s 10

It builds the demo grid as `skyops_tui.demo.sim_runtime` does (simulated agents, a
manual clock; `--nodes N` uses the grid_refresh benchmark's N x 8-GPU busy grid
instead) and runs `SkyopsApp` in `App.run_test(size=(120, 36))` with everything on:
the scheduler loop, the redraw after each batch of events, the 1 s refresh timer and
simulated time moving 60 s per second (`sim_speed`, as a live demo does), so events
arrive and screens redraw while keys are pressed. The keys cycle through screen
switches (g j m r e L) and list moves (down/up in the job list and on the market's bid
ladder), one at a time, at a person's pace (a seeded random 50-250 ms after the
previous key's frame), so presses land at every phase of the refresh.

A press is timed from just before its key event is posted to the app (as the terminal
driver posts it) to the end of the first frame written after the app's state shows the
result (the new screen is active, the cursor is on the next row) by which the frames
since the press have shown it: the newly picked row's name; for a view, its name in
the top bar and a text only its data draws (the job list's "sort:" line, the market's
"Flex may use" summary, a reservation's name, the feed's "/ filters" status, a node's
name), so a view shown without its content is not done. The frame is drawn
for real: the app gets a driver that is not headless, so Textual renders each update
to terminal escape sequences and writes them; the driver then drops them. Left out:
reading and parsing the key's bytes from a terminal, and the terminal emulator drawing
the frame (writing to a pty and the emulator's paint), which depend on the terminal.
The first visit to a screen (building it) is included, as a person sees it; the report
gives switches and moves apart as well. The console's full garbage-collection pass runs
on a 60 s timer (docs/console.md, 50-110 ms at 512 nodes): a run of 240 presses (about
45 s) may end before it, so a press that waits for it shows only in longer runs (at
most one press a minute).

`--follower` times a console that follows instead: the same grid written to a state
file whose scheduler lease another console holds, and the console on that file, which
reloads the grid from it (as a follower does: every second, and when the leader's watch
stream announces a change). `--changes-per-s N` announces N changes a second, as a busy
leader's watch stream does (each message sets the follower's reload flag, what
`Runtime._take_watch` does); the leader itself does not run here, so its share of the
machine is left out. The report then gives the reloads made and the console's CPU per
second of the run.

Beside wall time it reports this process's CPU time from the press to its frame (the
machine is shared: wall time holds other processes' turns on the cores), and switches
apart as first visits (building the screen) and revisits (resuming it). `--profile N`
runs cProfile over each press, press to frame, and prints its top N for first visits,
revisits and list moves apart (`--profile-dump PREFIX` also writes them for pstats:
PREFIX-first.prof, -revisits.prof, -moves.prof; `--profile-by-target` splits
revisits and moves per view and per list: -revisits-jobs.prof, -moves-market.prof).

Prints one JSON object: p50/p99/mean/max ms over all presses, per kind and per
target (each view's key, each list's moves; first visits included), the number of
presses, frames written, the machine, and whether p99 <= 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from machine import machine, summary_ms

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual import events  # noqa: E402
from textual.drivers.headless_driver import HeadlessDriver  # noqa: E402

from skyops_tui.app.app import SkyopsApp  # noqa: E402

SIZE = (120, 36)
TARGET_P99_MS = 100.0
SIM_SPEED = 60.0
ANSI = re.compile(r"\x1b\[[0-9;?<>=]*[ -/]*[@-~]")
# One round of keys: (key, what it should show). Screen keys name their view.
ROUND: tuple[tuple[str, str], ...] = (
    ("j", "view:jobs"),
    ("down", "move:jobs"),
    ("down", "move:jobs"),
    ("up", "move:jobs"),
    ("up", "move:jobs"),
    ("m", "view:market"),
    ("down", "move:market"),
    ("down", "move:market"),
    ("up", "move:market"),
    ("up", "move:market"),
    ("r", "view:reservations"),
    ("e", "view:events"),
    ("L", "view:ledger"),
    ("g", "view:grid"),
)


class FrameDriver(HeadlessDriver):
    """Not headless, so the app renders every frame to escape sequences; each frame's
    text (escape sequences removed) goes to `on_frame` instead of a terminal."""

    on_frame: Callable[[str], None] | None = None

    @property
    def is_headless(self) -> bool:
        return False

    def write(self, data: str) -> None:
        if self.on_frame is not None:
            self.on_frame(data)

    def flush(self) -> None:
        pass


class BenchApp(SkyopsApp):
    """The console with a `FrameDriver` for its terminal."""

    CSS_PATH = str(ROOT / "skyops_tui" / "app" / "skyops.tcss")  # not relative to here

    def _build_driver(self, headless, inline, mouse, size):  # type: ignore[override]
        driver = self._driver = FrameDriver(self, mouse=mouse, size=size)
        return driver


@dataclass
class Expect:
    """What the press's frames must show: a state of the app and texts in its frames."""

    ready: Callable[[], bool]
    texts: tuple[str, ...]
    pressed: float
    shown: float | None = None
    pressed_cpu: float = 0.0
    shown_cpu: float = 0.0
    done: asyncio.Event | None = None
    seen: set[str] = field(default_factory=set)


def runtime(nodes: int):
    if not nodes:
        from skyops_tui.demo import sim_runtime

        return sim_runtime()
    from grid_refresh import Workload
    from grid_refresh import runtime as busy_runtime

    rt = busy_runtime(nodes)
    Workload(rt).fill()
    return rt


def follower_runtime(nodes: int, folder: Path):
    """A console that follows: the busy grid (or the demo's) written to a state file
    whose scheduler lease another console holds, and a Runtime on that file, which
    then reloads the grid from it every `follow_s` (1 s), as a follower console does
    while its leader runs (a busy leader's changes make it reload as often)."""
    from skyops_tui.runtime import Runtime
    from skyops_tui.sim.agents import SimExecutor
    from skyops_tui.store.control import acquire_lease
    from skyops_tui.store.db import KEEP_ENDED, Store

    built = runtime(nodes)
    grid, clock = built.grid, built.clock
    outbox = grid.outbox
    outbox.dirty_jobs.update(grid.jobs)
    outbox.dirty_nodes.update(grid.nodes)
    outbox.dirty_reservations.update(grid.reservations)
    path = folder / "state.db"
    with Store(path) as writer:
        writer.persist(grid, [], clock.now())
        assert acquire_lease(writer, "the-leader", clock.now(), 24 * 3600) is not None
    cfg = built.cfg
    ex = SimExecutor(clock, cfg.simulation.stop_delay_s, cfg.cluster.grace_s)
    return Runtime(cfg, ex, clock=clock, store=Store(path), user="ops", keep_ended=KEEP_ENDED)


def content(app: BenchApp, view: str) -> str:
    """A text that only the view's drawing from the grid puts on screen."""
    g = app.runtime.grid
    if view == "grid":
        return next(iter(g.nodes))
    if view == "reservations":
        if not g.reservations:
            return "No Commit reservations yet"
        return min(g.reservations.values(), key=lambda r: r.id).name
    return {"jobs": "sort: ", "market": "Flex may use"}.get(view, "/ filters")


def expectation(
    app: BenchApp, what: str, key: str
) -> tuple[str, Callable[[], bool], tuple[str, ...]] | None:
    """The key to press (a move at the end of a list goes the other way), the state
    that shows it done, and the texts its frames hold; None for a move in a list too
    short to move in (a market whose bids have all gone)."""
    kind, name = what.split(":")
    if kind == "view":
        shown = (f"› {name}", content(app, name))
        return key, (lambda: app.current_mode == name and len(app.screen_stack) == 1), shown
    if name == "jobs":
        table = app.screen.query_one("#jobs")
        at, count = table.cursor_row, table.row_count
    else:
        from skyops_tui.app.widgets.ladder import Ladder

        ladder = app.screen.query_one(Ladder)
        rungs = ladder.view.rungs if ladder.view else ()
        ids = [r.job for r in rungs]
        at, count = (ids.index(ladder.cursor) if ladder.cursor in ids else 0), len(ids)
    if count < 2:
        return None
    step = 1 if key == "down" else -1
    if not 0 <= at + step < count:
        key, step = ("up", -1) if key == "down" else ("down", 1)
    want = at + step
    if name == "jobs":
        row_key = table.ordered_rows[want].key
        cell = table.get_cell(row_key, "name")
        return key, (lambda: table.cursor_row == want), (str(getattr(cell, "plain", cell))[:12],)
    job = rungs[want].job
    return key, (lambda: ladder.cursor == job), (rungs[want].name[:12],)


async def measure(
    presses: int,
    nodes: int,
    seed: int,
    profile: int = 0,
    dump: str = "",
    by_target: bool = False,
    follower: Path | None = None,
    changes_per_s: float = 0.0,
) -> dict:
    rt = runtime(nodes) if follower is None else follower_runtime(nodes, follower)
    # One profiler each for first visits, revisits and list moves: different work,
    # different fixes.
    # With by_target, revisits and moves apart per view and per list as well.
    profilers: dict[str, cProfile.Profile] | None = {} if profile else None
    app = BenchApp(rt, sim_speed=SIM_SPEED if follower is None else None)
    rng = random.Random(seed)
    waiting: list[Expect] = []
    frames = 0

    def on_frame(data: str) -> None:
        nonlocal frames
        frames += 1
        if not waiting:
            return
        e = waiting[0]
        if e.shown is None and e.ready():
            text = ANSI.sub("", data)
            e.seen.update(t for t in e.texts if t in text)
        if e.shown is None and e.ready() and len(e.seen) == len(e.texts):
            e.shown = time.perf_counter()
            e.shown_cpu = time.process_time()
            waiting.clear()
            assert e.done is not None
            e.done.set()

    latencies: dict[str, list[float]] = {"view": [], "move": []}
    # CPU time of this process from the press to its frame: the console's own work
    # (and anything else it ran meanwhile), without other processes' share of the cores.
    cpu: dict[str, list[float]] = {"view": [], "move": []}
    visited = {"view:grid"}  # the app starts on the grid
    first_visits: list[tuple[float, float]] = []  # (wall, CPU)
    revisits: list[tuple[float, float]] = []
    slow: list[tuple[str, float]] = []
    slow_cpu: list[tuple[str, float]] = []
    by_what: dict[str, list[tuple[float, float]]] = {}  # (wall, CPU) per view or list
    reloads = 0
    if follower is not None:  # count the grids it loads (a reload), whoever calls it
        load = rt.store.load_grid

        def counted(*args, **kwargs):
            nonlocal reloads
            reloads += 1
            return load(*args, **kwargs)

        rt.store.load_grid = counted

    async def announce() -> None:
        """What the leader's watch stream does on each message (`_take_watch`)."""
        while True:
            await asyncio.sleep(1 / changes_per_s)
            rt._reload_now.set()

    async with app.run_test(size=SIZE) as pilot:
        if follower is not None and changes_per_s:
            announcing = asyncio.get_running_loop().create_task(announce())
        app._driver.on_frame = on_frame  # type: ignore[union-attr]
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        n = 0
        run_wall, run_cpu = time.perf_counter(), time.process_time()
        while n < presses:
            for key, what in ROUND:
                if n >= presses:
                    break
                if what.startswith("move:") and app.current_mode != what.split(":")[1]:
                    continue
                expected = expectation(app, what, key)
                if expected is None:
                    continue
                key, ready, texts = expected
                e = Expect(ready, texts, time.perf_counter(), done=asyncio.Event())
                waiting[:] = [e]
                switch = what.startswith("view:")
                kind = ("first" if what not in visited else "revisits") if switch else "moves"
                if by_target and kind != "first":
                    kind = f"{kind}-{what.split(':')[1]}"
                profiler = None
                if profilers is not None:
                    profiler = profilers.setdefault(kind, cProfile.Profile())
                if profiler is not None:
                    profiler.enable()
                e.pressed, e.pressed_cpu = time.perf_counter(), time.process_time()
                app.post_message(events.Key(key, key if len(key) == 1 else None))
                try:
                    await asyncio.wait_for(e.done.wait(), timeout=10)
                except TimeoutError:
                    why = f"key {key!r} ({what}): no frames showed {texts!r} in 10 s"
                    raise SystemExit(why) from None
                finally:
                    if profiler is not None:
                        profiler.disable()
                ms = e.shown - e.pressed
                if switch:  # a first visit builds the screen; later ones resume it
                    first = what not in visited
                    visited.add(what)
                    (first_visits if first else revisits).append((ms, e.shown_cpu - e.pressed_cpu))
                latencies[what.split(":")[0]].append(ms)
                cpu[what.split(":")[0]].append(e.shown_cpu - e.pressed_cpu)
                slow.append((f"{key} ({what})", ms))
                slow_cpu.append((f"{key} ({what})", e.shown_cpu - e.pressed_cpu))
                by_what.setdefault(what, []).append((ms, e.shown_cpu - e.pressed_cpu))
                n += 1
                await asyncio.sleep(rng.uniform(0.05, 0.25))
        if follower is not None and changes_per_s:
            announcing.cancel()
        run_wall, run_cpu = time.perf_counter() - run_wall, time.process_time() - run_cpu
    every = latencies["view"] + latencies["move"]
    slow.sort(key=lambda s: -s[1])
    slow_cpu.sort(key=lambda s: -s[1])
    if profilers is not None:  # after run_test, which redirects stderr while it runs
        for kind, profiler in profilers.items():
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats("cumulative").print_stats(profile)
            if dump:
                profiler.dump_stats(f"{dump}-{kind}.prof")
            print(f"--- profile of the presses, {kind}, press to frame ---", file=sys.stderr)
            print(buf.getvalue(), file=sys.stderr)
    return {
        "benchmark": "key_latency",
        "machine": machine(),
        "grid": f"{nodes} nodes x 8 GPUs" if nodes else "demo (4 nodes, 28 GPUs)",
        "console": "leader" if follower is None else "follower (reloads the grid each second)",
        "follower_reloads": reloads,
        "changes_announced_per_s": changes_per_s if follower is not None else None,
        # The console's whole CPU while the keys were pressed (its refresh, reloads and
        # the presses), per second of the run.
        "console_cpu_per_s": round(run_cpu / run_wall, 3),
        "size": f"{SIZE[0]}x{SIZE[1]}",
        "presses": len(every),
        "presses_by_kind": {
            "screen_switches": len(latencies["view"]),
            "list_moves": len(latencies["move"]),
        },
        "frames_written": frames,
        "all": summary_ms(every),
        "screen_switches": summary_ms(latencies["view"]),
        "list_moves": summary_ms(latencies["move"]),
        "cpu": {
            "all": summary_ms(cpu["view"] + cpu["move"]),
            "screen_switches": summary_ms(cpu["view"]),
            "list_moves": summary_ms(cpu["move"]),
        },
        "screen_switches_apart": {
            "first_visits": {
                "count": len(first_visits),
                "wall": summary_ms([w for w, _ in first_visits]),
                "cpu": summary_ms([c for _, c in first_visits]),
            },
            "revisits": {
                "count": len(revisits),
                "wall": summary_ms([w for w, _ in revisits]),
                "cpu": summary_ms([c for _, c in revisits]),
            },
        },
        "by_target": {
            what: {
                "count": len(got),
                "wall": summary_ms([w for w, _ in got]),
                "cpu": summary_ms([c for _, c in got]),
            }
            for what, got in sorted(by_what.items())
        },
        "slowest": [{"key": k, "ms": round(s * 1000, 1)} for k, s in slow[:5]],
        "slowest_cpu": [{"key": k, "ms": round(s * 1000, 1)} for k, s in slow_cpu[:8]],
        "target": {
            "p99_ms": summary_ms(every)["p99_ms"],
            "target_ms": TARGET_P99_MS,
            "met": summary_ms(every)["p99_ms"] <= TARGET_P99_MS,
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presses", type=int, default=240, help="timed key presses (>= 200)")
    ap.add_argument("--nodes", type=int, default=0, help="N x 8-GPU busy grid (0: the demo)")
    ap.add_argument("--seed", type=int, default=7, help="seed of the pauses between keys")
    ap.add_argument("--profile", type=int, default=0, help="cProfile's top N of the presses")
    ap.add_argument(
        "--profile-dump",
        default="",
        help="with --profile: write PREFIX-{first,revisits,moves}.prof",
    )
    ap.add_argument(
        "--profile-by-target",
        action="store_true",
        help="with --profile: revisits and moves apart per view and per list",
    )
    ap.add_argument(
        "--follower",
        action="store_true",
        help="time a follower console: the grid in a state file another console leads",
    )
    ap.add_argument(
        "--changes-per-s",
        type=float,
        default=0.0,
        help="with --follower: changes a second announced to it, as a busy leader's watch does",
    )
    a = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="skyops-keys-") as tmp:
        got = asyncio.run(
            measure(
                a.presses,
                a.nodes,
                a.seed,
                a.profile,
                a.profile_dump,
                a.profile_by_target,
                Path(tmp) if a.follower else None,
                a.changes_per_s,
            )
        )
    print(json.dumps(got, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
