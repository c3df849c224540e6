"""Rules every mode shares (docs/modes.md, Rules for every mode): the mode lock, roles, funding, the
double-entry ledger and the audit trail of job states."""

from __future__ import annotations

import pytest

from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import TERMINAL, JobState
from skyops_tui.policy import actions as A
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

OPERATORS = {"accounts": {"operators": ["root"]}}


# ------------------------------------------------------------- mode lock
@pytest.mark.parametrize("mode", ["priority", "commit", "flex"])
def test_the_mode_is_locked_at_creation(mode):
    w = HandWorld()
    w.reserve("r", gpus=1, start=T0, hours=1)
    kw = {"priority": {"hours": 1}, "commit": {"reservation": "r"}, "flex": {"bid": 1}}[mode]
    w.submit("j", mode, user="team", gpus=1, **kw)
    other = "flex" if mode != "flex" else "priority"
    with pytest.raises(Refused) as e:
        w.do(lambda g, t: g.change_mode("j", other))
    assert str(e.value) == (
        f"job j is a {mode} job: the mode is locked at creation and cannot become "
        f"{other}; cancel it and submit a new {other} job"
    )
    assert w.job("j").mode == mode


def test_only_flex_jobs_carry_a_bid():
    w = HandWorld()
    w.priority("p")
    with pytest.raises(Refused, match="job p is a priority job: only flex jobs carry a bid"):
        w.do(lambda g, t: g.change_bid("p", 1.0, t))


# ------------------------------------------------------------------ roles
def test_a_user_cannot_cancel_extend_or_rebid_another_users_job():
    w = HandWorld(config(**OPERATORS))
    w.priority("p", hours=1)
    w.flex("f", bid=1.0)
    w.at(0)
    w.run()
    for what, fn in [
        ("cancel job p", lambda g, t: g.cancel("p", t, actor="mallory")),
        ("extend job p", lambda g, t: g.extend("p", 1, t, actor="mallory")),
        ("change the bid of f", lambda g, t: g.change_bid("f", 2, t, actor="mallory")),
    ]:
        with pytest.raises(Refused, match=f"mallory may not {what}: it belongs to alice"):
            w.do(fn)
    assert w.state("p") is JobState.RUNNING and w.job("f").bid == micro(1)
    assert w.job("p").end_at == T0 + HOUR


def test_an_operator_may_act_on_every_job():
    w = HandWorld(config(**OPERATORS))
    w.priority("p", hours=1)
    w.flex("f", bid=1.0, gpus=1)
    w.at(0)
    w.run()
    w.do(lambda g, t: g.extend("p", 1, t, actor="root"))
    w.do(lambda g, t: g.change_bid("f", 2, t, actor="root"))
    stop = w.do(lambda g, t: g.cancel("p", t, actor="root"))
    assert stop[0].cause == "cancelled by root"
    assert w.job("p").end_at == T0 + 2 * HOUR and w.job("f").bid == micro(2)


def test_users_act_only_on_their_own_reservations():
    w = HandWorld(config(**OPERATORS))
    w.reserve("r", gpus=2, start=T0 + HOUR, hours=1, user="team")
    with pytest.raises(Refused, match="mallory may not use reservation r"):
        w.commit("c", "r", user="mallory")
    with pytest.raises(Refused, match="mallory may not cancel reservation r"):
        w.do(lambda g, t: g.cancel_reservation("r", t, actor="mallory"))
    with pytest.raises(Refused, match="mallory may not submit jobs as team"):
        w.submit("x", "flex", user="team", actor="mallory", gpus=1, bid=1)
    w.do(lambda g, t: g.cancel_reservation("r", t, actor="root"))
    assert w.grid.reservations["r"].cancelled_at == w.now


# ---------------------------------------------------------------- funding
def test_priority_admission_needs_the_first_hour():
    w = HandWorld()
    w.account("poor", micro(9.99))
    with pytest.raises(Refused, match=r"cannot cover the first hour \(\$10.00\); balance \$9.99"):
        w.priority("p", gpus=4, hours=3, user="poor")
    w.priority("short", gpus=4, hours=0.5, user="poor")  # a half-hour booking: 5.00
    w.account("ok", micro(10))
    w.priority("p", gpus=4, hours=3, user="ok")


def test_commit_admission_needs_the_whole_prepay():
    w = HandWorld()
    w.account("team", micro(50.99))
    with pytest.raises(Refused, match=r"cannot prepay \$51.00; balance \$50.99"):
        w.reserve("r", gpus=8, start=T0, hours=3)
    assert w.grid.reservations == {} and w.grid.balance("team") == micro(50.99)
    w.do(lambda g, t: g.deposit("team", micro(0.01), t))
    w.reserve("r", gpus=8, start=T0, hours=3)


def test_flex_admission_needs_min_funded_minutes_at_the_bid():
    w = HandWorld(config(pricing={"min_funded_minutes": 10}))
    # 8 GPUs x 1.00 x 10 min = 1.333333
    w.account("poor", 1_333_332)
    with pytest.raises(Refused, match=r"cannot fund 10 minutes at the bid \(\$1.33\)"):
        w.flex("f", gpus=8, bid=1.0, user="poor")
    w.account("ok", 1_333_333)
    w.flex("f", gpus=8, bid=1.0, user="ok")


def test_the_credit_limit_counts_toward_funding():
    w = HandWorld(config(accounts={"credit_limit": 10}))
    w.account("alice", 0)
    with pytest.raises(Refused, match="cannot cover the first hour"):
        w.priority("q", gpus=5, hours=1)  # 12.50
    w.priority("p", gpus=4, hours=1)  # 10.00 on credit


def test_a_flex_job_pauses_when_its_account_runs_dry_and_resumes_after_a_deposit():
    w = World(config(cluster={"grace_s": 120, "stop_grace_s": 30}))
    w.account("alice", micro(5))
    w.flex("f", gpus=8, bid=1.0, runtime=10 * HOUR, checkpoint_every=60)
    w.run_until(T0 + 2 * HOUR)
    job = w.job("f")
    assert job.state is JobState.PAUSED
    pre = w.acted(A.Preempt, "f")
    assert pre and all(a.cause.startswith("account alice cannot pay") for a in pre)
    # It is told to stop with enough left for its checkpoint grace (it may resume
    # while the account can fund min_funded_minutes at its bid); never under zero.
    assert 0 <= w.grid.balance("alice") < micro(1.34)
    runs = w.job("f").runs
    w.do(lambda g, t: g.deposit("alice", micro(100), t))
    w.advance(60)
    assert w.state("f") is JobState.RUNNING and w.job("f").runs == runs + 1
    assert w.violations == []


def test_a_priority_job_expires_when_its_account_runs_dry():
    w = World(config(cluster={"stop_grace_s": 30}))
    w.account("alice", micro(12))  # 4 x 2.50 = 10.00 an hour: 1 h 12 min
    w.priority("p", gpus=4, hours=3, runtime=3 * HOUR)
    w.run_until(T0 + 3 * HOUR)
    stop = w.acted(A.Stop, "p")
    assert len(stop) == 1 and stop[0].outcome is JobState.EXPIRED
    assert stop[0].cause.startswith("account alice cannot pay")
    assert w.state("p") is JobState.EXPIRED
    assert 71 * 60 < w.job("p").ended_at - T0 < 72 * 60
    assert 0 <= w.grid.balance("alice") < micro(0.2)


def test_a_job_waiting_for_funds_does_not_hold_up_the_priority_queue():
    w = HandWorld()
    w.priority("hog", gpus=8, hours=1)
    w.at(0)
    w.run()
    w.account("bob", micro(10))
    w.priority("broke", gpus=4, hours=1, user="bob")  # 10.00: admitted
    w.reserve("r", gpus=1, start=T0 + DAY_AND_A_BIT, hours=2, user="bob")  # 5.00 prepaid
    w.priority("next", gpus=4, hours=1)
    w.at(600)
    w.exited("hog", 0)
    w.at(601)
    assert w.state("broke") is JobState.QUEUED  # can no longer fund its first hour
    assert w.state("next") is JobState.STARTING


def test_a_prepay_leaves_what_running_jobs_may_still_cost():
    w = HandWorld()
    w.account("alice", micro(10))
    w.priority("p", gpus=2, hours=1)  # 5.00 an hour
    w.at(0)
    w.run()
    w.at(1800)  # 2.50 billed, 7.50 left
    with pytest.raises(Refused, match=r"cannot prepay \$7.50; balance \$7.50; its running jobs"):
        w.reserve("r", gpus=3, start=T0 + HOUR, hours=1, user="alice")
    w.reserve("r", gpus=2, start=T0 + HOUR, hours=1, user="alice")  # 5.00 leaves enough


# ----------------------------------------------------------------- ledger
def test_every_ledger_transaction_sums_to_zero():
    w = World(config("2x8xH100"))
    w.reserve("r", gpus=4, start=T0 + 600, hours=1, repeat="daily", count=3)
    w.commit("c", "r", gpus=4, runtime=1800)
    w.flex("f1", gpus=8, bid=1.0, runtime=3 * HOUR, checkpoint_every=300)
    w.flex("f2", gpus=4, bid=0.8, runtime=2 * HOUR)
    w.priority("p", gpus=8, hours=1, runtime=HOUR / 2)
    w.run_until(T0 + DAY_AND_A_BIT)
    w.do(lambda g, t: g.cancel_reservation("r", t))
    assert w.transactions
    assert all(sum(a for _, a in tx.entries) == 0 for tx in w.transactions)
    assert sum(w.grid.balances.values()) == 0
    assert w.violations == []


DAY_AND_A_BIT = 26 * HOUR


def test_every_money_movement_names_its_reason():
    w = World()
    w.flex("f", gpus=2, bid=1.0, runtime=600)
    w.run_until(T0 + HOUR)
    usage = [tx for tx in w.transactions if tx.job == w.job("f").id]
    assert usage and all(tx.reason.startswith("flex usage f:") for tx in usage)
    assert all(tx.reason for tx in w.transactions)


# ------------------------------------------------------------ audit trail
def test_every_transition_is_an_event_with_its_cause():
    w = World(config(cluster={"grace_s": 60}))
    w.flex("f", gpus=8, bid=1.0, runtime=2 * HOUR, checkpoint_every=60)
    w.run_until(T0 + 600)
    w.priority("p", gpus=8, hours=1, runtime=600)
    w.run_until(T0 + 5 * HOUR)
    assert w.states("f") == [
        "queued",
        "starting",
        "running",
        "preempting",
        "paused",
        "starting",
        "running",
        "succeeded",
    ]
    evs = w.events_of("f", "state")
    assert all(e.cause for e in evs)
    assert all(a.new == b.old for a, b in zip(evs, evs[1:], strict=False))
    causes = [e.cause for e in evs]
    assert causes[0].startswith("placed on h100-1[")
    assert causes[2] == "preempted for priority job p"
    assert causes[4].startswith("resumed on h100-1[")
    assert w.events_of("f", "submitted")[0].cause == "flex job submitted by alice"


def test_cancelling_a_waiting_job_ends_it_at_once_and_a_running_one_after_it_stops():
    w = HandWorld()
    w.priority("run", gpus=8)
    w.priority("wait", gpus=8)
    w.at(0)
    w.run("run")
    assert w.do(lambda g, t: g.cancel("wait", t)) == []
    assert w.state("wait") is JobState.CANCELLED
    stop = w.do(lambda g, t: g.cancel("run", t))
    assert isinstance(stop[0], A.Stop) and stop[0].outcome is JobState.CANCELLED
    assert w.state("run") is JobState.RUNNING  # until its processes are gone
    w.at(20)
    w.stopped("run")
    assert w.state("run") is JobState.CANCELLED
    with pytest.raises(Refused, match=r"job run has already ended \(cancelled\)"):
        w.do(lambda g, t: g.cancel("run", t))


def test_job_states_are_the_nine_of_the_spec():
    assert [s.value for s in JobState] == [
        "queued",
        "starting",
        "running",
        "preempting",
        "paused",
        "succeeded",
        "failed",
        "cancelled",
        "expired",
    ]
    assert {s.value for s in TERMINAL} == {"succeeded", "failed", "cancelled", "expired"}
