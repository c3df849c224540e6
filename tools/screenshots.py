"""Regenerate screenshots/: every screen of the console on the demo grid, as SVG and PNG.

    python tools/screenshots.py [--out DIR] [--no-png] [NAME ...]   # e.g. grid help

Each shot is a fresh `SkyopsApp(sim_runtime())` (the seeded demo grid on simulated
agents and a manual clock) driven by pilot keys, so the same commit gives the same
pictures on any machine: the clock never moves, cursors do not blink and the demo jobs'
command lines name no local paths. PNGs come from cairosvg, else `rsvg-convert`
(librsvg2-bin), else are skipped with a note; they are for people browsing the repository,
the SVGs are the record.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from skyops_tui.app.app import SkyopsApp  # noqa: E402
from skyops_tui.demo import sim_runtime  # noqa: E402
from tests.app.harness import no_blink, settle_ui, wait_for  # noqa: E402

BIG = (120, 36)
SMALL = (80, 24)
PNG_WIDTH = 1200  # pixels; the SVG's own size is about 1.25x that at 120 columns

Steps = Callable[[object], Awaitable[None]]


@dataclass(frozen=True)
class Shot:
    name: str
    title: str
    steps: Steps
    size: tuple[int, int] = BIG


def on(screen_name: str) -> Callable[[object], bool]:
    def check(pilot) -> bool:
        return type(pilot.app.screen).__name__ == screen_name

    return check


async def keys_then(pilot, keys: tuple[str, ...], screen: str) -> None:
    await pilot.press(*keys)
    await wait_for(pilot, lambda: on(screen)(pilot), f"{screen} shown after {' '.join(keys)}")


def press(*keys: str, screen: str) -> Steps:
    async def go(pilot) -> None:
        await keys_then(pilot, keys, screen)

    return go


async def grid(pilot) -> None:
    await wait_for(pilot, lambda: on("GridScreen")(pilot), "grid screen shown")


async def job_detail(pilot) -> None:
    # The fourth row of the job list: sweep-01, a Flex job with a bid and a price; `l`
    # opens its log tail.
    await keys_then(pilot, ("j",), "JobsScreen")
    await keys_then(pilot, ("down", "down", "down", "enter"), "JobScreen")
    await pilot.press("l")
    await wait_for(pilot, lambda: pilot.app.screen.query_one("#job-log").display, "log shown")


async def put(pilot, values: dict[str, str]) -> None:
    """Set form fields at once (typing them key by key takes seconds a form); each
    change still reaches the screen as an Input.Changed or Select.Changed."""
    for selector, value in values.items():
        pilot.app.screen.query_one(selector).value = value
        await pilot.pause()


FORMS = {
    "priority": {
        "#name": "finetune-7b",
        "#gpus": "2",
        "#gpu_type": "H100",
        "#argv": "python train.py --lr 3e-4",
        "#hours": "3",
    },
    "commit": {
        "#name": "nightly-eval",
        "#gpus": "4",
        "#reservation": "nightly-a100",
        "#argv": "python eval.py --suite full",
    },
    "flex": {
        "#name": "cheap-sweep",
        "#gpus": "4",
        "#gpu_type": "H100",
        "#bid": "0.85",
        "#argv": "python sweep.py --trial 12",
    },
}


def launch(mode: str) -> Steps:
    async def go(pilot) -> None:
        await keys_then(pilot, ("n",), "LaunchScreen")
        await pilot.press({"priority": "f1", "commit": "f2", "flex": "f3"}[mode])
        await pilot.pause()
        await put(pilot, FORMS[mode])

    return go


SHOTS: tuple[Shot, ...] = (
    Shot("grid", "Grid", grid),
    Shot("grid-80x24", "Grid (80x24)", grid, SMALL),
    Shot("node", "Node detail", press("enter", screen="NodeScreen")),
    Shot("jobs", "Jobs", press("j", screen="JobsScreen")),
    Shot("job", "Job detail", job_detail),
    Shot("launch-priority", "Launch: Priority", launch("priority")),
    Shot("launch-commit", "Launch: Commit", launch("commit")),
    Shot("launch-flex", "Launch: Flex", launch("flex")),
    Shot("market", "Market", press("m", screen="MarketScreen")),
    Shot("reservations", "Reservations", press("r", screen="ReservationsScreen")),
    Shot("ledger", "Ledger", press("L", screen="LedgerScreen")),
    Shot("events", "Events", press("e", screen="EventsScreen")),
    Shot("help", "Help", press("question_mark", screen="HelpScreen")),
)


def demo_app() -> SkyopsApp:
    """The demo app, its jobs' command lines free of this machine's paths.

    The once-a-second redraw is switched off: on a manual clock it changes nothing, the
    shot redraws once itself, and a tick that lands while the app is shutting down can
    raise NoMatches from a screen whose widgets are already gone (a slow machine does
    hit it)."""
    app = SkyopsApp(sim_runtime())
    app.REFRESH_S = 24 * 3600.0
    for job in app.runtime.grid.jobs.values():
        job.argv = ["python", "examples/ckpt_train.py", *job.argv[2:]]
    return app


async def take(shot: Shot) -> str:
    app = demo_app()
    async with app.run_test(size=shot.size) as pilot:
        await pilot.pause()
        await shot.steps(pilot)
        await settle_ui(pilot)
        await no_blink(app)
        app.refresh_views()
        await pilot.pause()
        return app.export_screenshot(title=f"Skyops — {shot.title}")


def png_converter() -> Callable[[Path, Path], None] | None:
    """cairosvg first: it honours the SVG's per-run `textLength` and leading no-break
    spaces, so columns line up; rsvg-convert drops both and shifts text by a cell."""
    try:
        import cairosvg
    except ImportError:
        cairosvg = None
    if cairosvg is not None:

        def cairo(svg: Path, png: Path) -> None:
            cairosvg.svg2png(url=str(svg), write_to=str(png), output_width=PNG_WIDTH)
            shrink(png)

        return cairo
    if shutil.which("rsvg-convert"):

        def rsvg(svg: Path, png: Path) -> None:
            subprocess.run(
                ["rsvg-convert", "--width", str(PNG_WIDTH), "-o", str(png), str(svg)], check=True
            )
            shrink(png)

        return rsvg
    return None


def shrink(png: Path) -> None:
    """A terminal has few colours: a 256-colour palette makes each PNG about 45 KB
    instead of 250 KB, with no visible change (median-cut at fewer colours loses the
    greens). Skipped without Pillow."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(png) as im:
        small = im.convert("RGB").quantize(
            colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
        )
    small.save(png, optimize=True)


async def main_async(out: Path, png: bool, only: set[str]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    convert = png_converter() if png else None
    if png and convert is None:
        print("no rsvg-convert or cairosvg: writing SVG only", file=sys.stderr)
    for shot in SHOTS:
        if only and shot.name not in only:
            continue
        svg = out / f"{shot.name}.svg"
        svg.write_text(await take(shot), encoding="utf-8")
        line = f"{svg.relative_to(ROOT) if svg.is_relative_to(ROOT) else svg}"
        if convert is not None:
            convert(svg, svg.with_suffix(".png"))
            line += " + .png"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "screenshots")
    p.add_argument("--no-png", action="store_true", help="write the SVGs only")
    p.add_argument("only", nargs="*", help="shot names (default: all)")
    args = p.parse_args(argv)
    names = {s.name for s in SHOTS}
    unknown = set(args.only) - names
    if unknown:
        p.error(f"unknown shot(s) {sorted(unknown)}; known: {', '.join(sorted(names))}")
    return asyncio.run(main_async(args.out, not args.no_png, set(args.only)))


if __name__ == "__main__":
    sys.exit(main())
