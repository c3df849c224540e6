"""The grid and a node's detail."""

from __future__ import annotations

import pytest

from skyops_tui.app.screens.grid import GridScreen
from skyops_tui.app.screens.job import JobScreen
from skyops_tui.app.screens.node import NodeScreen
from skyops_tui.demo import advance
from skyops_tui.domain.model import NodeStatus
from skyops_tui.scheduler.executor import NodeChanged
from tests.app.harness import demo_app, row_texts, screen_text, settle_ui, wait_for


async def grid(pilot, app):
    await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "grid screen")
    return app.screen.query_one("#nodes")


async def test_one_row_per_node_with_gpu_cells_by_holder_wide():
    app = demo_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await grid(pilot, app)
        rows = {r[0]: r for r in row_texts(table)}
        assert list(rows) == ["h100-a", "h100-b", "a100-a", "l40s-a"]
        assert rows["h100-a"][1] == "H100 FAKE"
        assert rows["h100-a"][2].split() == list("PPPPFFFF")
        assert rows["h100-b"][2].split() == list("FFFF····")
        assert rows["a100-a"][2].split() == list("CCCCFF··")
        assert "92%" in rows["h100-a"][3] and "480/640G" in rows["h100-a"][4]
        assert rows["h100-a"][7] == "up"
        text = screen_text(app)
        assert "Recent events" in text and "flex $0.90" in text


async def test_each_node_shows_its_hottest_gpu_power_and_which_job_holds_each_gpu():
    """nvitop's density: temperature and power beside utilisation and memory, and the
    jobs named by the GPUs they hold, in cell order (not a sorted list of names)."""
    app = demo_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await grid(pilot, app)
        rows = {r[0]: r for r in row_texts(table)}
        # Simulated agents: 71 °C and 610 W busy, 34 °C and 70 W idle.
        assert (rows["h100-a"][5], rows["h100-a"][6]) == ("71°C", "4880W")
        assert (rows["h100-b"][5], rows["h100-b"][6]) == ("71°C", "2720W")
        assert rows["a100-a"][2].split() == list("CCCCFF··")
        assert rows["a100-a"][9] == "0-3 nightly-train  4-5 embed-batch"
        assert rows["h100-a"][9] == "0-3 train-llm  4-7 sweep-01"


async def test_compact_cells_at_80_columns_still_mark_fake():
    app = demo_app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = await grid(pilot, app)
        rows = {r[0]: r for r in row_texts(table)}
        assert rows["h100-a*"][1] == "PPPPFFFF"
        assert (rows["h100-a*"][4], rows["h100-a*"][5]) == ("71°", "4880W")
        text = screen_text(app)
        assert "* FAKE" in text
        # The demo banner takes one row at 80x24, not two.
        banner = [line for line in text.splitlines() if "Demo grid" in line]
        assert banner == ["Demo grid: simulated GPUs. Your cluster: skyops --config FILE"], text
        assert "Point it at" not in text


async def test_reserved_idle_and_down_nodes():
    app = demo_app()
    async with app.run_test(size=(160, 48)) as pilot:
        table = await grid(pilot, app)
        rt = app.runtime
        rt.grid.jobs[3].argv = []  # nightly-train
        rt.scheduler.cancel("nightly-train")
        advance(rt, 30)
        await wait_for(
            pilot, lambda: row_texts(table)[2][2].split()[:4] == list("rrrr"), "reserved idle GPUs"
        )
        rt.engine.pending.append(NodeChanged("l40s-a", NodeStatus.UNREACHABLE, "heartbeat lost"))
        advance(rt, 1)
        await wait_for(pilot, lambda: row_texts(table)[3][2].split() == list("xxxx"), "down node")
        assert row_texts(table)[3][7] == "unreachable"


async def test_node_detail_lists_gpus_and_jobs_and_opens_a_job():
    app = demo_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await grid(pilot, app)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), "node detail on enter")
        gpus = row_texts(app.screen.query_one("#gpus"))
        assert len(gpus) == 8
        assert "Priority train-llm" in gpus[0][1] and "Flex sweep-01" in gpus[7][1]
        assert "92%" in gpus[0][2] and gpus[0][4] == "71°C" and gpus[0][5] == "610 W"
        jobs = row_texts(app.screen.query_one("#node-jobs"))
        assert [r[3] for r in jobs] == ["train-llm", "sweep-01"]
        assert "FAKE GPUs (simulated)" in screen_text(app)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "d opens the GPU's job")
        assert app.screen.job_id == 1
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, NodeScreen), "back to the node")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, GridScreen), "back to the grid")


async def test_recent_events_keep_showing_the_newest_once_they_outnumber_the_rows():
    """The panel is reported to freeze once more events came than it has rows: each new
    event must still appear at its top, as they arrive one by one."""
    from skyops_tui.app import format as F
    from skyops_tui.domain.specs import JobSpec

    app = demo_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await grid(pilot, app)
        recent = app.screen.query_one("#recent")
        rt = app.runtime
        rows = recent.size.height
        # Bids too big for the free GPUs: each stays queued, so its submission (a command
        # and a state event) is the newest.
        for i in range(3 * 40):  # more events than rows, and than the screen's height
            rt.scheduler.submit(
                JobSpec(
                    name=f"late-{i:03d}", user="kim", mode="flex", gpus=8, gpu_type="H100", bid=0.75
                )
            )
            if i % 10 == 9:
                newest = [F.clock(rt.clock.now()), f"late-{i:03d}"]
                await wait_for(
                    pilot,
                    lambda n=newest: row_texts(recent)[0][:2] == n,
                    f"{newest} at the top of Recent events ({rows} rows)",
                )
                advance(rt, 60)
        assert len(rt.feed.events) > 2 * rows


@pytest.mark.parametrize("size", [(80, 24), (120, 36), (160, 48), (220, 60)], ids=str)
async def test_the_grid_fits_the_terminal_without_a_horizontal_scrollbar(size):
    """At 120 columns the Jobs column ran past the edge behind a horizontal scrollbar:
    every column must be on screen, the last cut with an ellipsis if it must be."""
    app = demo_app()
    async with app.run_test(size=size) as pilot:
        table = await grid(pilot, app)
        await settle_ui(pilot)
        for name in ("#nodes", "#recent"):
            t = app.screen.query_one(name)
            await wait_for(
                pilot,
                lambda t=t: t.virtual_size.width <= t.scrollable_content_region.width,
                f"{name} no wider than the terminal at {size}",
            )
            assert not t.show_horizontal_scrollbar, name
        if size[0] >= 120:
            assert table.ordered_columns[-1].label.plain == "Jobs"
            assert "train-llm" in screen_text(app) or "train-…" in screen_text(app)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=str)
async def test_each_meaning_has_its_own_colour_and_the_legend_names_them(size):
    """Moderate load was drawn in the Priority orange, as were preempting and the
    clearing price: each must have its own colour, named in a legend on the screen."""
    from skyops_tui.app.screens.market import MarketScreen
    from skyops_tui.app.widgets.ladder import Ladder

    app = demo_app()
    async with app.run_test(size=size) as pilot:
        await grid(pilot, app)
        paint = app.screen.paint
        colours = {
            "Priority": paint("gpu--priority").bgcolor,
            "moderate load": paint("load--moderate").color,
            "preempting": paint("state--preempting").color,
        }
        text = screen_text(app)
        for words in ("Priority", "moderate", "heavy", "preempting"):
            assert words in text, words

        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market")
        ladder = app.screen.query_one(Ladder)
        colours["clearing price"] = ladder.get_component_rich_style("ladder--price").color
        assert (
            ladder.get_component_rich_style("ladder--preempting").color == (colours["preempting"])
        )
        assert "┃ clearing" in screen_text(app) and "preempting" in screen_text(app)
        assert None not in colours.values(), colours
        assert len(set(colours.values())) == len(colours), colours
