"""Screenshots of the console's own screens at 80x24 and 160x48, on the seeded demo grid
with its manual clock: the same pixels every run. Accept changes with
`pytest tests/app/test_snapshots.py --snapshot-update`, then look at them."""

from __future__ import annotations

import pytest

from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.launch import LaunchScreen
from tests.app.harness import demo_app, fill, run_before, wait_for

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


def app_for_snapshot():
    """The demo app with machine-independent command lines (the demo's argv names the
    interpreter and checkout it runs from)."""
    app = demo_app()
    for job in app.runtime.grid.jobs.values():
        job.argv = ["python", "examples/ckpt_train.py", *job.argv[2:]]
    return app


@pytest.mark.parametrize("size", SIZES)
def test_grid(snap_compare, size):
    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before())


@pytest.mark.parametrize("size", SIZES)
def test_jobs(snap_compare, size):
    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before("j", "down"))


@pytest.mark.parametrize("size", SIZES)
def test_job_detail(snap_compare, size):
    async def open_detail(pilot):
        await pilot.press("j", "down", "down", "down", "enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, JobScreen), "job detail")

    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before(open_detail))


@pytest.mark.parametrize("size", SIZES)
def test_launch_flex(snap_compare, size):
    async def flex_form(pilot):
        from tests.app.harness import choose

        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen), "launch")
        await pilot.press("f3")
        await fill(pilot, "#name", "cheap-sweep")
        await fill(pilot, "#gpus", "4")
        await choose(pilot, "#gpu_type", "H100")
        await fill(pilot, "#bid", "0.85")
        await fill(pilot, "#argv", "python train.py --lr 3e-4")

    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before(flex_form))


@pytest.mark.parametrize("size", SIZES)
def test_launch_errors(snap_compare, size):
    async def bad_form(pilot):
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, LaunchScreen), "launch")
        await fill(pilot, "#name", "bad name!")
        await fill(pilot, "#gpus", "0")
        await fill(pilot, "#hours", "")

    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before(bad_form))


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare, size):
    assert snap_compare(
        app_for_snapshot(), terminal_size=size, run_before=run_before("question_mark")
    )


@pytest.mark.parametrize("size", SIZES)
def test_node_detail(snap_compare, size):
    assert snap_compare(app_for_snapshot(), terminal_size=size, run_before=run_before("enter"))
