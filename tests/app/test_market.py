"""Market screen: the bid ladder per node type with the capacity line and the clearing
price, the price history chart, and snapshots."""

from __future__ import annotations

import pytest
from textual.widgets import Tabs

from skyops_tui.app.screens.market import MarketScreen
from skyops_tui.app.widgets.chart import PriceChart, sample
from skyops_tui.app.widgets.ladder import Ladder, LadderView, Rung, ladder_view, layout
from skyops_tui.demo import advance, settle, sim_runtime
from skyops_tui.domain.money import fmt
from skyops_tui.domain.specs import JobSpec
from tests.app.harness import demo_app, run_before, wait_for


def lines(widget) -> list[str]:
    return [widget.render_line(y).text.rstrip() for y in range(widget.size.height)]


def rung_names(widget) -> list[str]:
    view = widget.view
    return [r.name for r in view.rungs] if view else []


# ------------------------------------------------------------------ plain data
def test_ladder_view_of_the_demo_market() -> None:
    rt = sim_runtime()
    v = ladder_view(rt.grid, "H100")
    assert v.price == rt.grid.markets["H100"].price == 900_000
    assert [(r.name, r.state) for r in v.rungs] == [
        ("sweep-01", "running"),
        ("sweep-02", "running"),
        ("render-7", "queued"),
        ("tiny-sweep", "queued"),
    ]
    # 16 H100 GPUs, 4 held by the Priority job train-llm: Flex may use 12, holds 8.
    assert (v.gpus, v.capacity, v.in_use) == (16, 12, 8)


def test_price_line_above_the_bid_that_sets_it_capacity_line_under_the_last_that_fits() -> None:
    def rung(name: str, bid: int, gpus: int, state: str) -> Rung:
        return Rung(0, name, "u", bid, gpus, state, False)

    v = LadderView(
        "T",
        rate=100,
        floor=30,
        price=60,
        gpus=16,
        capacity=10,
        in_use=8,
        rungs=(
            rung("a", 90, 4, "running"),
            rung("b", 60, 4, "running"),  # pays its own bid: stays above the price line
            rung("c", 60, 4, "queued"),  # the highest waiting bid sets the price
            rung("d", 40, 2, "paused"),
        ),
    )
    kinds = [(k, getattr(item, "name", item), tally) for k, item, tally in layout(v)]
    assert kinds == [
        ("rung", "a", 4),
        ("rung", "b", 8),
        ("price", "clearing $0.00/GPU-h", None),
        ("rung", "c", None),  # 4 GPUs do not fit the 2 left: skipped
        ("rung", "d", 10),  # a smaller bid below does fit
        ("capacity", "Flex capacity 10 GPUs, 0 free", None),
    ]


def test_price_samples_are_a_step_function() -> None:
    points = [(10.0, 5), (20.0, 7), (25.0, 3)]
    assert sample(points, 0, 40, 8) == [None, None, 5, 5, 7, 3, 3, 3]


# ------------------------------------------------------------------ the screen
async def test_ladder_shows_the_clearing_price_and_moves_with_a_bid() -> None:
    rt = sim_runtime()
    app = demo_app(runtime=rt, start_view="market")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market screen")
        ladder = app.screen.query_one(Ladder)
        market = rt.grid.markets["H100"]
        want = f"clearing {fmt(market.price)}/GPU-h"
        await wait_for(pilot, lambda: any(want in line for line in lines(ladder)), want)
        assert rung_names(ladder) == ["sweep-01", "sweep-02", "render-7", "tiny-sweep"]
        text = lines(ladder)
        price_at = next(i for i, line in enumerate(text) if want in line)
        assert "sweep-02" in text[price_at - 1] and "render-7" in text[price_at + 1]
        assert "Flex capacity 12 GPUs" in text[price_at]

        rt.scheduler.change_bid("tiny-sweep", 1.10, actor="sam")
        settle(rt)
        assert market.price == 1_000_000  # capped at the lowest running bid
        moved = f"clearing {fmt(market.price)}/GPU-h"
        await wait_for(pilot, lambda: any(moved in line for line in lines(ladder)), moved)
        await wait_for(
            pilot,
            lambda: rung_names(ladder) == ["sweep-01", "tiny-sweep", "sweep-02", "render-7"],
            "tiny-sweep moved up the ladder",
        )
        tab = app.screen.query_one("#type-H100")
        await wait_for(pilot, lambda: str(tab.label) == "H100 $1.00", "the tab shows the price")


async def test_a_long_ladder_draws_only_the_lines_on_screen() -> None:
    """A cursor move on a ladder of 400 bids draws the lines the pane shows, not the
    whole ladder (drawn whole, each move took 130 ms at 512 nodes), and as the cursor
    goes down past the pane the lines shown follow it."""
    rt = sim_runtime()
    for i in range(400):
        bid = 0.80 + i / 10_000
        spec = JobSpec(
            name=f"bulk-{i:03d}", user="sam", mode="flex", gpus=1, gpu_type="H100", bid=bid
        )
        rt.scheduler.submit(spec)
    app = demo_app(runtime=rt, start_view="market")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market screen")
        ladder = app.screen.query_one(Ladder)
        pane = app.screen.query_one("#ladder-pane")
        await wait_for(pilot, lambda: len(rung_names(ladder)) > 400, "the long ladder")
        await pilot.pause()
        drawn = 0
        whole, one = ladder.render, getattr(ladder, "line", None)

        def render():
            nonlocal drawn
            text = whole()
            drawn += len(text.plain.splitlines())
            return text

        def line(y):
            nonlocal drawn
            drawn += 1
            return one(y)

        ladder.render = render
        if one is not None:
            ladder.line = line
        first = ladder.selected.name
        await pilot.press("down")
        await wait_for(pilot, lambda: ladder.selected.name != first, "the cursor moved")
        await pilot.pause()
        height = pane.scrollable_content_region.height
        assert 0 < drawn <= height + 2, f"{drawn} lines drawn for a pane of {height}"

        await pilot.press(*["down"] * 60)
        await wait_for(pilot, lambda: rung_names(ladder).index(ladder.selected.name) == 61, "61")
        await pilot.pause()
        top = round(pane.scroll_y)
        shown = [ladder.render_line(y).text for y in range(top, top + height)]
        assert pane.scroll_y > 0 and any(f" {ladder.selected.name} " in t for t in shown)


async def test_left_and_right_switch_node_type() -> None:
    rt = sim_runtime()
    app = demo_app(runtime=rt, start_view="market")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market screen")
        ladder = app.screen.query_one(Ladder)
        await pilot.press("right")
        await wait_for(pilot, lambda: rung_names(ladder) == ["embed-batch"], "A100 market")
        assert app.screen.query_one(Tabs).active == "type-A100"
        assert any("clearing $0.48/GPU-h" in line for line in lines(ladder))
        await pilot.press("right")
        await wait_for(pilot, lambda: ladder.view and ladder.view.gpu_type == "L40S", "L40S")
        assert any("no Flex bids" in line for line in lines(ladder))
        await pilot.press("left", "left")
        await wait_for(pilot, lambda: ladder.view.gpu_type == "H100", "back to H100")


async def test_price_history_is_charted() -> None:
    rt = busy_runtime()
    app = demo_app(runtime=rt, start_view="market")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market screen")
        chart = app.screen.query_one(PriceChart)
        await wait_for(pilot, lambda: any("█" in line for line in lines(chart)), "bars drawn")
        text = lines(chart)
        assert text[0].lstrip().startswith("$2.50"), "scaled to the standard rate"
        assert any(line.lstrip().startswith("$0.75") for line in text), "the floor is marked"
        assert "09:00" in text[-1] and "09:50" in text[-1]
        title = str(app.screen.query_one("#chart-title").render())
        assert "last 50m 00s" in title
        await pilot.press("z")
        await wait_for(
            pilot,
            lambda: "last 1h 00m" in str(app.screen.query_one("#chart-title").render()),
            "z changes the span",
        )


def busy_runtime():
    """Fifty minutes of the demo: a bid raised past a running one, a Priority burst."""
    rt = sim_runtime()
    advance(rt, 600)
    rt.scheduler.change_bid("tiny-sweep", 1.10)
    advance(rt, 900)
    rt.scheduler.submit(
        JobSpec(
            name="deadline-run",
            user="ana",
            mode="priority",
            gpus=8,
            gpu_type="H100",
            hours=1,
            runtime=3000,
        )
    )
    advance(rt, 600)
    rt.scheduler.change_bid("render-7", 1.30)
    advance(rt, 900)
    rt.scheduler.submit(
        JobSpec(name="any-gpu", user="sam", mode="flex", gpus=2, bid=0.95, runtime=9000)
    )
    settle(rt)
    return rt


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_snapshot(snap_compare, size) -> None:
    app = demo_app(runtime=busy_runtime(), start_view="market")
    assert snap_compare(app, terminal_size=size, run_before=run_before())


async def test_own_bids_are_marked_and_b_on_one_changes_it():
    """kim (not an operator) sees her two bids marked, `b` on the picked one opens its
    bid dialog, and `b` on someone else's bid says whose it is instead."""
    from skyops_tui.app.screens.dialogs import AskDialog
    from skyops_tui.domain.config import demo_config
    from tests.app.harness import fill, screen_text, toasts

    rt = sim_runtime(cfg=demo_config(), user="kim")
    app = demo_app(runtime=rt, start_view="market")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MarketScreen), "market screen")
        ladder = app.screen.query_one(Ladder)
        await wait_for(pilot, lambda: any("sweep-01" in line for line in lines(ladder)), "ladder")
        marked = {
            name: line.lstrip().startswith("▶")
            for line in lines(ladder)
            for name in ("sweep-01", "sweep-02", "render-7", "tiny-sweep")
            if f" {name} " in line
        }
        assert marked == {
            "sweep-01": True,
            "sweep-02": True,
            "render-7": False,
            "tiny-sweep": False,
        }
        text = screen_text(app)
        assert "┃ clearing $0.90 on each bar (bar: bid of standard $2.50)" in text
        assert "▶ your bid" in text

        await pilot.press("b")  # the cursor starts on kim's first bid
        await wait_for(pilot, lambda: isinstance(app.screen, AskDialog), "the bid dialog")
        assert "sweep-01 bids $1.20" in screen_text(app)
        await fill(pilot, "#value", "1.5")
        await pilot.press("enter")
        job = rt.grid.job_by_ref("sweep-01")
        await wait_for(pilot, lambda: job.bid == 1_500_000, "sweep-01's bid changed")
        await wait_for(
            pilot, lambda: any("$1.50" in line for line in lines(ladder)), "ladder shows it"
        )

        await pilot.press("down", "down")  # sweep-02, then lee's render-7
        await wait_for(pilot, lambda: ladder.selected.name == "render-7", "cursor on render-7")
        await pilot.press("b")
        await wait_for(pilot, lambda: toasts(app, "warning"), "told it is not hers")
        assert "render-7 is lee's bid" in toasts(app, "warning")[-1]
        assert isinstance(app.screen, MarketScreen), "no dialog for another's bid"
