"""Flex mode (docs/modes.md, Flex): interruptible compute by bid, at the clearing price."""

from __future__ import annotations

import pytest

from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState
from skyops_tui.policy import actions as A
from skyops_tui.policy.pricing import clearing_price
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

FLOOR = micro(0.75)  # 30 % of the H100 rate 2.50


# ------------------------------------------------------------------ bids
def test_flex_bid_under_the_floor_is_refused():
    w = HandWorld()
    with pytest.raises(Refused, match=r"bid \$0.74 is under the floor \$0.75 per GPU-hour"):
        w.flex("f", bid=0.74)
    assert "f" not in w.grid.job_names


def test_flex_bid_over_the_standard_rate_is_refused():
    w = HandWorld()
    with pytest.raises(Refused, match=r"over the standard rate \$2.50"):
        w.flex("f", bid=2.51)


def test_flex_bid_at_the_floor_and_at_the_cap_is_accepted():
    w = HandWorld()
    assert w.flex("low", bid=0.75).bid == FLOOR
    assert w.flex("high", bid=2.5).bid == micro(2.5)


def test_flex_floor_follows_the_configured_fraction():
    w = HandWorld(config(pricing={"flex_floor": 0.5}))
    with pytest.raises(Refused, match="under the floor"):
        w.flex("f", bid=1.24)
    w.flex("g", bid=1.25)


def test_changing_a_bid_keeps_the_floor_and_the_cap():
    w = HandWorld()
    w.flex("f", bid=1.0)
    with pytest.raises(Refused, match=r"between \$0.75 and \$2.50"):
        w.do(lambda g, t: g.change_bid("f", 0.5, t))
    with pytest.raises(Refused, match=r"between \$0.75 and \$2.50"):
        w.do(lambda g, t: g.change_bid("f", 3, t))
    w.do(lambda g, t: g.change_bid("f", 2, t))
    assert w.job("f").bid == micro(2)
    assert w.events_of("f", "bid")[-1].cause == "bid changed from $1.00 to $2.00"


# ------------------------------------------------------- clearing price
@pytest.mark.parametrize(
    ("waiting", "running", "price"),
    [
        (None, None, 750_000),  # nothing waits: the floor
        (None, 1_000_000, 750_000),  # nothing waits: the floor, whatever runs
        (900_000, 1_000_000, 900_000),  # the highest waiting bid
        (1_020_000, 1_000_000, 1_000_000),  # ... capped at the lowest running bid
        (2_000_000, None, 2_000_000),  # nothing runs: the waiting bid
        (700_000, 1_000_000, 750_000),  # never under the floor
    ],
)
def test_clearing_price_rule(waiting, running, price):
    assert clearing_price(waiting, running, 750_000) == price


def _book(w: HandWorld, running: list[tuple[int, float]], waiting: list[tuple[int, float]]):
    for k, (gpus, bid) in enumerate(running):
        w.flex(f"r{k}", gpus=gpus, bid=bid)
    w.at(0)
    w.run()
    for k, (gpus, bid) in enumerate(waiting):
        w.flex(f"w{k}", gpus=gpus, bid=bid)
    w.at(10)
    assert all(w.state(f"r{k}") is JobState.RUNNING for k in range(len(running)))
    assert all(w.state(f"w{k}") is JobState.QUEUED for k in range(len(waiting)))
    return w.price()


@pytest.mark.parametrize(
    ("running", "waiting", "price"),
    [
        # one node of 8 H100; (gpus, bid) per job
        ([(8, 1.0)], [], 0.75),  # nothing waits: the floor
        ([(8, 1.0)], [(8, 0.9), (2, 0.8)], 0.9),  # highest waiting bid
        ([(8, 1.0)], [(4, 1.02)], 1.0),  # capped at the lowest running bid
        ([(4, 1.2), (4, 0.9)], [(4, 1.1), (4, 1.0)], 0.9),  # lowest running of two
        ([(6, 2.0), (2, 1.5)], [(4, 1.6)], 1.5),  # outbids by 7 %, but inside min_slice
        ([(8, 1.0)], [(1, 0.75)], 0.75),  # a waiting bid at the floor
    ],
)
def test_clearing_price_of_hand_built_books(running, waiting, price):
    w = HandWorld()
    assert _book(w, running, waiting) == micro(price)
    assert w.violations == []


def test_clearing_price_is_recorded_as_price_history():
    w = HandWorld()
    _book(w, [(8, 1.0)], [(8, 0.9)])
    assert w.prices[-1] == (T0 + 10, "H100", micro(0.9))
    w.do(lambda g, t: g.cancel("w0", t))
    w.at(20)
    assert w.prices[-1] == (T0 + 20, "H100", FLOOR)


def test_flex_is_charged_per_second_at_the_clearing_price():
    w = HandWorld()
    w.flex("a", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.at(600)  # 600 s at the floor
    w.flex("b", gpus=8, bid=0.9)
    w.at(600)  # price 0.90 from here
    w.at(1200)
    w.exited("a", 0)
    assert w.job("a").charged == 8 * (FLOOR * 600 + micro(0.9) * 600) // 3600


def test_a_flex_job_never_pays_more_than_its_bid_while_it_is_preempted():
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.flex("low", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.flex("high", gpus=8, bid=2.0)
    acts = w.at(400)  # past min_slice: `high` displaces `low`
    assert [a.job for a in acts if isinstance(a, A.Preempt)] == [w.job("low").id]
    w.at(520)  # the whole grace period
    w.stopped("low")
    # 400 s at the floor, then at most its own bid while it checkpoints
    assert w.job("low").charged <= 8 * (FLOOR * 400 + micro(1.0) * 120) // 3600
    assert w.violations == []


def test_lowering_a_running_bid_never_charges_above_the_new_bid():
    w = HandWorld()
    w.flex("a", gpus=8, bid=2.0)
    w.flex("b", gpus=8, bid=1.5)
    w.at(0)
    w.run()
    assert w.price() == micro(1.5)
    w.at(400)
    w.do(lambda g, t: g.change_bid("a", 1.0, t))
    w.at(460)  # before the next pass the price was still 1.50
    w.exited("a", 0)
    assert w.job("a").charged <= 8 * (micro(1.5) * 400 + micro(1.0) * 60) // 3600


# ------------------------------------------------------------ preemption
def test_a_higher_bid_displaces_only_by_min_outbid_after_min_slice():
    w = HandWorld()
    w.flex("run", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.flex("close", gpus=8, bid=1.04)  # under 5 % more: never displaces
    w.flex("higher", gpus=8, bid=1.05)  # 5 % more: displaces after min_slice
    w.at(100)
    w.at(299)
    assert not w.acted(A.Preempt)
    acts = w.at(300)
    pre = [a for a in acts if isinstance(a, A.Preempt)]
    assert [a.job for a in pre] == [w.job("run").id]
    assert pre[0].cause == "outbid by higher"
    w.at(400)
    w.stopped("run")
    w.at(400)
    assert w.state("higher") is JobState.STARTING
    assert w.state("close") is JobState.QUEUED
    assert w.state("run") is JobState.PAUSED


def test_min_outbid_and_min_slice_follow_the_config():
    w = HandWorld(config(pricing={"min_outbid": 0.5, "min_slice_s": 60}))
    w.flex("run", gpus=8, bid=1.0)
    w.at(0)
    w.run()
    w.flex("x", gpus=8, bid=1.49)
    w.at(120)
    assert not w.acted(A.Preempt)
    w.flex("y", gpus=8, bid=1.5)
    w.at(121)
    assert [a.job for a in w.acted(A.Preempt)] == [w.job("run").id]


def test_victims_are_lowest_bid_then_newest_checkpoint_then_youngest():
    w = HandWorld()
    w.flex("rich", gpus=2, bid=2.0)
    w.flex("old_ckpt", gpus=2, bid=1.0)
    w.flex("new_ckpt", gpus=2, bid=1.0)
    w.flex("no_ckpt", gpus=2, bid=1.0)
    w.at(0)
    w.run()
    w.checkpointed("old_ckpt", 100)
    w.checkpointed("new_ckpt", 250)
    w.priority("p1", gpus=2)
    w.at(300)
    # equal bids: the one that loses the least work (newest checkpoint) goes first
    assert [a.job for a in w.acted(A.Preempt)] == [w.job("new_ckpt").id]
    w.stopped("new_ckpt")
    w.priority("p2", gpus=2)
    w.at(301)
    assert w.acted(A.Preempt)[-1].job == w.job("old_ckpt").id
    assert not w.acted(A.Preempt, "rich")


def test_equal_bids_and_no_checkpoints_preempt_the_youngest_run_first():
    w = HandWorld(config(nodes=[("n", "4xH100")]))
    w.flex("elder", gpus=2, bid=1.0)
    w.at(0)
    w.run()
    w.flex("young", gpus=2, bid=1.0)
    w.at(100)
    w.run()
    w.priority("p", gpus=2)
    w.at(200)
    assert [a.job for a in w.acted(A.Preempt)] == [w.job("young").id]


def test_a_gang_is_preempted_whole_and_resumed_whole():
    w = HandWorld(config("3x8xH100"))
    w.flex("gang", nodes=2, bid=1.0)
    w.at(0)
    w.run()
    assert len(w.job("gang").placement) == 2
    w.priority("p", gpus=8, hours=1)
    w.priority("q", gpus=8, hours=1)
    w.at(10)
    w.run("p")
    w.at(20)
    pre = w.acted(A.Preempt, "gang")
    assert len(pre) == 1  # one action: the agent stops every part of it
    w.at(100)
    w.stopped("gang")
    assert w.state("gang") is JobState.PAUSED
    assert w.job("gang").placement == []  # no half left running
    w.at(100)
    w.run("q")
    w.at(200)
    assert w.state("gang") is JobState.PAUSED  # one whole node free: not enough
    assert sum(n.n_free == 8 for n in w.grid.nodes.values()) == 1
    w.at(HOUR)
    w.exited("p", 0)
    acts = w.at(HOUR + 1)
    start = [a for a in acts if isinstance(a, A.Start) and a.job == w.job("gang").id]
    assert start and start[0].resume is True and len(start[0].placement) == 2
    assert all(len(p.gpus) == 8 for p in start[0].placement)


def test_a_paused_job_resumes_when_its_bid_clears_again():
    w = World(config(cluster={"grace_s": 60}))
    w.flex("f", gpus=8, bid=1.0, runtime=2 * HOUR, checkpoint_every=300)
    w.run_until(T0 + 1000)
    w.priority("p", gpus=8, hours=1, runtime=1800)
    w.run_until(T0 + 6 * HOUR)
    job = w.job("f")
    assert job.state is JobState.SUCCEEDED
    assert job.preemptions == 1 and job.runs == 2
    starts = w.acted(A.Start, "f")
    assert [s.resume for s in starts] == [False, True]
    assert starts[1] == w.acted(A.Start, "f")[-1]
    # it went back to work as soon as the priority job was done
    p = w.job("p")
    resumed = [e.at for e in w.events_of("f", "state") if e.new == "starting"][-1]
    assert resumed == p.ended_at
    assert "paused" in w.states("f") and w.violations == []


def test_a_large_job_that_does_not_fit_does_not_block_smaller_lower_bids():
    w = HandWorld()
    w.priority("p", gpus=4, hours=4)
    w.at(0)
    w.run()
    w.flex("big", gpus=8, bid=2.0)
    w.flex("small", gpus=2, bid=0.8)
    w.at(10)
    assert w.state("big") is JobState.QUEUED
    assert w.state("small") is JobState.STARTING
    assert w.violations == []


# ---------------------------------------------------------------- retries
def test_flex_failures_are_retried_with_exponential_backoff_up_to_max_retries():
    w = HandWorld(config(pricing={"retry_backoff_s": 30}))
    w.flex("f", gpus=1, max_retries=2)
    w.at(0)
    w.run()
    w.at(100)
    w.exited("f", 1)
    job = w.job("f")
    assert job.state is JobState.QUEUED and job.retries == 1
    assert job.retry_at == T0 + 130
    assert w.causes("f")[-1] == "exited with status 1; retry 1/2 in 30 s"
    w.at(129)
    assert w.state("f") is JobState.QUEUED  # backing off
    w.at(130)
    w.run()
    w.at(200)
    w.exited("f", 1)
    assert w.job("f").retry_at == T0 + 260  # 30 s, then 60 s
    w.at(260)
    w.run()
    w.at(300)
    w.exited("f", 1)
    assert w.state("f") is JobState.FAILED
    assert w.job("f").retries == 2


def test_preemptions_do_not_count_as_retries():
    w = HandWorld()
    w.flex("f", gpus=8, max_retries=1)
    w.at(0)
    w.run()
    for k in range(3):
        w.priority(f"p{k}", gpus=8, hours=1)
        w.at(10 + 1000 * k)
        w.stopped("f")
        w.at(11 + 1000 * k)
        w.run(f"p{k}")
        w.exited(f"p{k}", 0)
        w.at(12 + 1000 * k)
        w.run("f")
    job = w.job("f")
    assert job.preemptions == 3 and job.retries == 0
    w.at(5000)
    w.exited("f", 1)
    assert w.state("f") is JobState.QUEUED and w.job("f").retries == 1


def test_priority_and_commit_jobs_are_not_retried():
    w = HandWorld()
    w.priority("p", gpus=1, hours=1)
    w.at(0)
    w.run()
    w.exited("p", 3)
    assert w.state("p") is JobState.FAILED


# ------------------------------------------------------------ untyped jobs
def test_an_untyped_flex_job_runs_in_any_market_at_that_markets_price():
    w = HandWorld(config("8xH100,4xL40S"))
    w.flex("h", gpus=8, bid=2.0, gpu_type="H100")
    w.at(0)
    w.run()
    w.flex("any", gpus=4, bid=0.8)  # H100 is full: it runs on the L40S
    w.at(10)
    w.run()
    job = w.job("any")
    assert job.market == "L40S" and job.state is JobState.RUNNING
    w.at(10 + HOUR)
    w.exited("any", 0)
    # L40S floor: 30 % of 0.90 = 0.27 per GPU-hour, nothing waiting there
    assert w.grid.markets["L40S"].price == micro(0.27)
    assert job.charged == 4 * micro(0.27)


def test_an_untyped_bid_under_a_markets_floor_runs_only_where_it_clears():
    w = HandWorld(config("8xH100,4xL40S"))
    w.flex("cheap", gpus=2, bid=0.5)  # above the L40S floor, under the H100 one
    w.at(0)
    assert w.job("cheap").market == "L40S"


def test_no_market_price_exceeds_its_standard_rate():
    w = HandWorld(config("4xL40S,8xH100"))
    w.flex("h", gpus=8, bid=2.5, gpu_type="H100")
    w.flex("a", gpus=4, bid=2.0)
    w.flex("b", gpus=4, bid=2.2)
    w.at(0)
    w.run()
    assert w.job("b").market == "L40S"
    assert w.state("a") is JobState.QUEUED
    assert w.grid.markets["L40S"].price <= micro(0.9)
    w.at(HOUR)
    w.exited("b", 0)
    assert w.job("b").charged <= 4 * micro(0.9)


def test_an_untyped_job_does_not_preempt_in_one_market_while_another_has_room():
    w = HandWorld(config("8xH100,4xL40S"))
    w.flex("h", gpus=8, bid=1.0, gpu_type="H100")
    w.at(0)
    w.run()
    w.flex("any", gpus=4, bid=2.0)  # outbids `h`, but fits on the idle L40S
    w.at(400)
    assert not w.acted(A.Preempt)
    assert w.job("any").market == "L40S"


def test_the_price_counts_jobs_started_in_the_same_pass_as_a_preemption():
    w = HandWorld(config("2x8xH100"))
    w.flex("v1", gpus=8, bid=1.0)
    w.flex("v2", gpus=4, bid=2.4)
    w.at(0)
    w.run()
    w.flex("gang", nodes=2, bid=2.0)  # waits: v2 cannot be outbid
    w.flex("fits", gpus=4, bid=1.5)  # starts on the 4 free GPUs
    w.flex("outbids", gpus=8, bid=1.2)  # displaces v1
    w.at(400)
    assert w.state("fits") is JobState.STARTING
    assert [a.job for a in w.acted(A.Preempt)] == [w.job("v1").id]
    assert w.price() == micro(1.5)  # never above a running bid, `fits` included
    assert w.violations == []


def test_a_window_opening_lends_its_idle_gpus_in_the_same_step_at_a_fair_price():
    w = HandWorld(config("2x8xH100"))
    w.priority("p", gpus=8, hours=4)
    w.at(0)
    w.run()
    w.reserve("r", gpus=8, start=T0 + 600, hours=1)
    w.flex("gang", nodes=2, bid=2.0)  # waits: p holds a node
    w.flex("b", gpus=4, bid=1.0)
    acts = w.at(600)  # the window takes the free node; b runs on its idle GPUs
    assert w.state("b") is JobState.STARTING
    assert [a.price for a in acts if isinstance(a, A.SetPrice)][-1] == micro(1.0)
    assert w.violations == []
