"""A Priority job waiting on a victim's grace takes any GPU that frees meanwhile and
calls off the preemption it no longer needs (issue 17; docs/modes.md, *Queue, backfill
and claims*). Each test is one story, its outcome written from docs/modes.md."""

from __future__ import annotations

import json

from skyops_tui.domain.model import JobState
from skyops_tui.policy import actions as A
from skyops_tui.scheduler.executor import CalledOff
from skyops_tui.sim.simulator import EPOCH, simulate
from skyops_tui.sim.trace import parse_lines
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

# 2 nodes x 4 H100. `a` holds h100-1 until 30 s; Flex `f` holds h100-2. `p` (4 GPUs)
# arrives at 10 s and preempts `f`; `a` ends at 30 s, inside f's 120 s grace.
TRACE = [
    {"name": "a", "user": "prod", "submit": 0, "mode": "priority", "gpus": 4, "hours": 2,
     "runtime": 30},
    {"name": "f", "user": "lab", "submit": 0, "mode": "flex", "gpus": 4, "bid": 1.0,
     "runtime": 600, "checkpoint_every": 60},
    {"name": "p", "user": "prod", "submit": 10, "mode": "priority", "gpus": 4, "hours": 1,
     "runtime": 100},
]  # fmt: skip


def calloff_config(**cluster: float):
    return config(
        "2x4xH100",
        cluster={"grace_s": 120, **cluster},
        simulation={"stop_delay_s": 60},  # f takes 60 s to save and go after the signal
    )


def test_a_victim_in_its_grace_runs_on_when_its_preemptor_starts_elsewhere() -> None:
    """The trace: p starts on a's GPUs at 30 s, and f's preemption is called off: f
    never pauses, no preemption is counted against it, it loses no work (it ends at
    600 s, as if never preempted) and pays as a job that ran all along."""
    result = simulate(parse_lines(map(json.dumps, TRACE), "trace"), calloff_config())
    g = result.grid
    assert result.summary["violations"] == [] and result.refused == []
    f, p = g.job_by_ref("f"), g.job_by_ref("p")
    assert p.first_started_at - EPOCH == 30
    assert {pl.node for pl in p.placement} <= {"h100-1"}  # a's GPUs, not f's
    assert f.state is JobState.SUCCEEDED and f.runs == 1
    assert f.preemptions == 0 and f.lost_work_s == 0
    assert result.summary["preemptions"] == 0  # the summary counts what happened
    assert f.ended_at - EPOCH == 600

    alone = simulate(parse_lines(map(json.dumps, TRACE[:2]), "trace"), calloff_config())
    assert f.charged == alone.grid.job_by_ref("f").charged  # billed as running throughout


def test_the_call_off_is_an_event_on_the_victim() -> None:
    w = World(calloff_config(), stop_delay=60)
    w.priority("a", gpus=4, hours=2, runtime=30)
    w.flex("f", gpus=4, bid=1.0, runtime=600)
    w.advance(10)
    w.priority("p", gpus=4, runtime=100)
    w.advance(100)
    assert w.states("f") == ["queued", "starting", "running", "preempting", "running"]
    assert w.causes("f")[-1] == "preemption called off (p started on other GPUs)"
    assert w.job("f").stop_reason is None and w.job("f").preemptions == 0
    assert w.violations == []


def test_after_sigterm_the_preemption_is_not_called_off() -> None:
    """A grace of 10 s: a ends at 30 s, after f got SIGTERM; f pauses as today."""
    w = HandWorld(calloff_config(grace_s=10))
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    w.at(10)
    w.at(30)
    w.exited("a", 0)
    w.at(31)
    assert w.state("p") is JobState.STARTING
    assert w.acted(A.CallOff) == []
    w.stopped("f")
    assert w.state("f") is JobState.PAUSED and w.job("f").preemptions == 1


def test_a_victim_another_waiting_priority_job_can_use_is_not_called_off() -> None:
    """p starts on a's GPUs, but q (4 GPUs) waits too: it claims f's GPUs instead."""
    w = HandWorld(calloff_config())
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    w.at(10)
    w.priority("q", gpus=4)
    w.at(20)
    w.exited("a", 0)
    acts = w.at(30)
    assert w.state("p") is JobState.STARTING
    assert not [a for a in acts if isinstance(a, A.CallOff)]
    w.stopped("f")
    w.at(70)
    assert w.state("q") is JobState.STARTING
    assert w.gpus_of("q") == {("h100-2", i) for i in range(4)}


def test_a_lower_bid_waiting_for_the_gpus_does_not_keep_the_victim_stopping() -> None:
    """A Flex job whose bid could not outbid f gains nothing from f's preemption."""
    w = HandWorld(calloff_config())
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=2.0)
    w.at(0)
    w.run()
    w.flex("low", gpus=4, bid=1.0)
    w.priority("p", gpus=4)
    w.at(10)
    w.exited("a", 0)
    acts = w.at(30)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.CallOff)] == ["f"]
    assert w.state("low") is JobState.QUEUED


def test_an_unpaid_flex_job_is_not_called_off() -> None:
    """A preemption for an account that cannot pay makes no room for anyone: it is
    never called off, and the job pauses."""
    w = World(calloff_config(), stop_delay=60)
    w.account("alice", micro(5))
    w.flex("f", gpus=4, bid=1.0, runtime=10 * HOUR, checkpoint_every=60)
    w.run_until(T0 + 2 * HOUR)
    assert w.acted(A.Preempt, "f") and w.acted(A.CallOff, "f") == []
    assert w.state("f") is JobState.PAUSED


def test_a_victim_called_off_caps_the_clearing_price_again() -> None:
    """While f (bid 1.00) was stopping, a waiting bid of 1.04 set the price; f back in
    the market caps it at its own bid, as any running bid does, so it never pays more
    than it bid. 1.04 could not outbid f, so it did not keep f stopping."""
    w = HandWorld(calloff_config())
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.priority("p", gpus=4)
    w.at(10)
    w.flex("h", gpus=4, bid=1.04)
    w.at(20)
    assert w.price() == micro(1.04)
    w.exited("a", 0)
    acts = w.at(30)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.CallOff)] == ["f"]
    w.engine.pending.append(CalledOff(w.job("f").id, "p started on other GPUs"))
    w.at(31)
    assert w.state("f") is JobState.RUNNING and w.price() == micro(1.0)
    assert w.violations == []


def outbid_in_grace() -> HandWorld:
    """Priority `a` on h100-1; Flex `f` (1.00) on h100-2, outbid by `p` (2.00) at 300 s,
    once f's `min_slice` is up: f is in its 120 s grace."""
    w = HandWorld(calloff_config())
    w.priority("a", gpus=4, hours=2)
    w.flex("f", gpus=4, bid=1.0)
    w.at(0)
    w.run()
    w.flex("p", gpus=4, bid=2.0)
    w.at(300)
    assert w.acted(A.Preempt, "f") and w.state("f") is JobState.PREEMPTING
    return w


def test_a_flex_preemptor_that_lowered_its_bid_below_its_victim_calls_the_preemption_off():
    """In f's grace p's owner lowers p's bid to 0.80. p can no longer outbid f, so
    pausing f would give p GPUs that f, the higher bid, takes back once p's own slice is
    up: two preemptions for nothing. f's preemption is called off, f runs on, and p
    waits behind it."""
    w = outbid_in_grace()
    w.do(lambda g, t: g.change_bid("p", 0.8, t))
    acts = w.at(310)
    assert [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.CallOff)] == ["f"]
    w.engine.pending.append(CalledOff(w.job("f").id))  # the reason the pass gave
    w.at(311)
    assert w.state("f") is JobState.RUNNING and w.job("f").preemptions == 0
    assert w.causes("f")[-1] == "preemption called off (p's bid no longer outbids it)"
    assert w.state("p") is JobState.QUEUED
    w.at(900)  # long past the grace and any slice: f still runs, p still waits
    assert w.state("f") is JobState.RUNNING and w.state("p") is JobState.QUEUED
    assert w.violations == []


def test_a_flex_preemptor_that_still_outbids_its_victim_keeps_the_preemption():
    """p's owner lowers its bid only to 1.50, still 5 % above f's: the preemption
    stands and p takes f's GPUs once f has stopped."""
    w = outbid_in_grace()
    w.do(lambda g, t: g.change_bid("p", 1.5, t))
    acts = w.at(310)
    assert not [a for a in acts if isinstance(a, A.CallOff)]
    w.stopped("f")
    w.at(320)
    assert w.state("f") is JobState.PAUSED and w.state("p") is JobState.STARTING
    assert w.violations == []
