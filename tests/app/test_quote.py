"""The launch quote's dry run: the real planner on a copy of the grid."""

from __future__ import annotations

import copy

from skyops_tui.app import quote as Q
from skyops_tui.domain.specs import JobSpec
from skyops_tui.policy.quotes import dry_run
from tests.app.harness import demo_runtime


def spec(**kw) -> JobSpec:
    base = {"name": "q", "user": "ops", "mode": "flex", "gpus": 4, "gpu_type": "H100", "bid": 0.85}
    base.update(kw)
    return JobSpec(**base)


def test_dry_run_never_touches_the_live_grid():
    rt = demo_runtime()
    before = copy.deepcopy((sorted(rt.grid.jobs), rt.grid.flex_book, rt.grid.balances))
    out = dry_run(rt.grid, spec(), rt.clock.now(), "ops")
    assert out.starts_on == "h100-b[4,5,6,7]"
    assert (sorted(rt.grid.jobs), rt.grid.flex_book, rt.grid.balances) == before
    assert "q" not in rt.grid.job_names


def test_priority_preempts_the_lowest_flex_bid():
    rt = demo_runtime()
    out = dry_run(rt.grid, spec(mode="priority", bid=None, hours=1, gpus=8), rt.clock.now(), "ops")
    assert {v.name for v in out.preempts} == {"sweep-02"}
    lines = Q.outcome_lines(out, spec(mode="priority", bid=None, hours=1, gpus=8), rt.grid, "$")
    assert "would preempt Flex sweep-02 ($1.00)" in lines[0].text


def test_refusals_are_previewed():
    rt = demo_runtime()
    out = dry_run(rt.grid, spec(name="train-llm"), rt.clock.now(), "ops")
    assert out.refused == "a job named 'train-llm' exists already"


def test_flex_ladder_rank_and_floor():
    rt = demo_runtime()
    text = [line.text for line in Q.flex_quote(rt.grid, spec(bid=0.95), "$", rt.clock.now())]
    assert "your bid $0.95 ranks #1 of 3 waiting bids" in text
    text = [line.text for line in Q.flex_quote(rt.grid, spec(bid=0.5), "$")]
    assert "bid must be between $0.75 and $2.50" in text


def test_priority_price_is_rate_times_gpus_times_hours():
    rt = demo_runtime()
    text = [
        line.text
        for line in Q.priority_quote(rt.grid, spec(mode="priority", bid=None, hours=3, gpus=4), "$")
    ]
    assert "$2.50 x 4 GPUs x 3 h = $30.00" in text
