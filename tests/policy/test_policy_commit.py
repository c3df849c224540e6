"""Commit mode (docs/modes.md, Commit): prepaid, discounted reservations of GPUs for windows."""

from __future__ import annotations

import pytest

from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import JobState, NodeStatus, held_account
from skyops_tui.policy import actions as A
from skyops_tui.policy import pricing
from tests.helpers import HOUR, T0, HandWorld, World, config, micro

DAY = 24 * HOUR


def test_reservation_is_refused_when_the_calendar_has_no_room():
    w = HandWorld()
    w.reserve("first", gpus=8, start=T0 + HOUR, hours=2)
    with pytest.raises(Refused, match=r"no room on H100 .* 0 of 8 GPUs left .* 4 asked"):
        w.reserve("clash", gpus=4, start=T0 + 2 * HOUR, hours=1)
    assert "clash" not in w.grid.reservations
    w.reserve("after", gpus=8, start=T0 + 3 * HOUR, hours=1)  # windows may touch


def test_reservation_counts_every_occurrence_of_a_recurrence():
    w = HandWorld()
    w.reserve("tuesdays", gpus=6, start=T0 + 5 * DAY, hours=4)
    with pytest.raises(Refused, match="no room"):
        # nights 1-5 are free, the sixth clashes with the Tuesday window
        w.reserve("nightly", gpus=4, start=T0 + 2 * HOUR, hours=4, repeat="daily", count=10)
    w.reserve("nightly", gpus=4, start=T0 + 2 * HOUR, hours=4, repeat="daily", count=5)
    w.reserve("others", gpus=2, start=T0 + 2 * HOUR, hours=4, repeat="daily", count=10)


def test_reservation_counts_priority_bookings_with_known_ends():
    w = HandWorld()
    w.priority("p", gpus=6, hours=2)
    w.at(0)
    w.run()
    with pytest.raises(Refused, match="2 of 8 GPUs left"):
        w.reserve("early", gpus=4, start=T0 + HOUR, hours=1)
    w.reserve("late", gpus=8, start=T0 + 2 * HOUR, hours=1)


def test_flex_never_blocks_a_reservation():
    w = HandWorld()
    w.flex("f", gpus=8, bid=2.5)
    w.at(0)
    w.run()
    w.reserve("r", gpus=8, start=T0 + 60, hours=1)


def test_recurrence_daily_and_weekly_make_count_windows():
    w = HandWorld()
    daily = w.reserve("d", gpus=1, start=T0 + 2 * HOUR, hours=4, repeat="daily", count=30)
    assert len(daily.windows) == 30
    assert daily.windows[0] == (T0 + 2 * HOUR, T0 + 6 * HOUR)
    assert daily.windows[29] == (T0 + 29 * DAY + 2 * HOUR, T0 + 29 * DAY + 6 * HOUR)
    weekly = w.reserve("w", gpus=1, start=T0, hours=8, repeat="weekly", count=3)
    assert [s for s, _ in weekly.windows] == [T0, T0 + 7 * DAY, T0 + 14 * DAY]


@pytest.mark.parametrize(
    ("gpus", "hours", "count", "discount_bp", "price"),
    [
        (1, 23, 1, 0, micro(57.50)),  # 23 GPU-h x 2.50, no tier
        (8, 3, 1, 1500, micro(51.00)),  # 24 GPU-h: 60.00 - 15 %
        (1, 167, 1, 1500, micro(354.875)),  # 167 GPU-h: 417.50 - 15 %
        (7, 24, 1, 3000, micro(294.00)),  # 168 GPU-h: 420.00 - 30 %
        (8, 4, 30, 5000, micro(1200.00)),  # 960 GPU-h: 2400.00 - 50 %
    ],
)
def test_commit_discount_tiers_are_15_30_50_percent_at_24_168_720_gpu_hours(
    gpus, hours, count, discount_bp, price
):
    w = HandWorld()
    repeat = "daily" if count > 1 else None
    res = w.reserve("r", gpus=gpus, start=T0, hours=hours, repeat=repeat, count=count)
    assert res.discount_bp == discount_bp
    assert res.prepaid == price


def test_discount_tiers_may_differ_per_node_type():
    cfg = config(
        "8xH100,8xA100",
        node_types=[
            {"name": "H100", "rate": 2.5},
            {"name": "A100", "rate": 1.6, "tiers": [{"gpu_hours": 8, "discount": 0.1}]},
        ],
    )
    w = HandWorld(cfg)
    assert w.reserve("a", gpus=8, start=T0, hours=1, gpu_type="A100").discount_bp == 1000
    assert w.reserve("h", gpus=8, start=T0, hours=1, gpu_type="H100").discount_bp == 0


def test_commit_prepay_is_posted_to_the_ledger_at_creation():
    w = HandWorld()
    w.account("team", micro(100))
    res = w.reserve("r", gpus=8, start=T0 + DAY, hours=3)
    tx = [t for t in w.transactions if t.reservation == "r"]
    assert len(tx) == 1 and tx[0].reason.startswith("prepay r:")
    assert sorted(tx[0].entries) == sorted(
        [("user:team", -micro(51)), (held_account("r"), micro(51))]
    )
    assert res.prepaid == micro(51)
    assert w.grid.balance("team") == micro(49)


def test_commit_quote_is_the_prepay_before_anything_is_booked():
    from skyops_tui.domain.specs import ReservationSpec

    w = HandWorld()
    spec = ReservationSpec(name="r", user="team", gpu_type="H100", gpus=8, start=T0, hours=3)
    q = w.grid.quote(spec)
    assert (q.discount_bp, q.price, q.list_price) == (1500, micro(51), micro(60))
    assert w.grid.reservations == {}


def test_commit_job_starts_at_once_when_its_window_opens_on_held_gpus():
    w = HandWorld(config("2x8xH100"))
    w.reserve("r", gpus=4, start=T0 + HOUR, hours=2)
    w.commit("c", "r", gpus=4)
    w.at(0)
    w.at(HOUR - 1)
    assert w.state("c") is JobState.QUEUED  # nothing of theirs runs outside the window
    w.at(HOUR)
    assert w.state("c") is JobState.STARTING
    assert w.gpus_of("c") == set(w.grid.reservations["r"].held)


def test_commit_job_submitted_inside_the_window_starts_at_once():
    w = World()
    w.reserve("r", gpus=4, start=T0, hours=2)
    w.run_until(T0 + 600)
    w.commit("c", "r", gpus=2, runtime=600)
    w.advance(0)
    assert w.state("c") is JobState.RUNNING
    assert w.job("c").first_started_at == T0 + 600


def test_idle_reserved_gpus_are_lent_to_flex_and_reclaimed_when_the_owner_submits():
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.reserve("r", gpus=4, start=T0, hours=4)
    w.at(0)
    w.flex("f", gpus=8, bid=0.8)  # needs the idle reserved GPUs too
    w.at(1)
    w.run()
    assert w.state("f") is JobState.RUNNING
    w.commit("c", "r", gpus=4)
    acts = w.at(600)
    pre = [a for a in acts if isinstance(a, A.Preempt)]
    assert [a.job for a in pre] == [w.job("f").id]
    assert "reclaimed for Commit job c" in pre[0].cause
    w.at(700)
    w.stopped("f")
    w.at(700)
    assert w.state("c") is JobState.STARTING
    assert w.gpus_of("c") == set(w.grid.reservations["r"].held)
    assert w.state("f") is JobState.PAUSED  # keeps its place in the book


def lent_window(cheap_first: bool) -> HandWorld:
    """One 8-GPU node, a window of one GPU lent to Flex, and two Flex jobs filling the
    node: `cheap` (1 GPU, the lowest bid) and `dear` (7 GPUs). Flex takes unreserved
    GPUs first, so the one submitted second holds the window's GPU."""
    w = HandWorld(config(cluster={"grace_s": 120}))
    w.reserve("r", gpus=1, start=T0, hours=4)
    w.at(0)
    jobs = [("cheap", 1, 0.8), ("dear", 7, 1.5)]
    for k, (name, gpus, bid) in enumerate(jobs if cheap_first else jobs[::-1], 1):
        w.flex(name, gpus=gpus, bid=bid)
        w.at(k)
        w.run()
    return w


def preempted(w: HandWorld, acts: list[A.Action]) -> list[str]:
    return [w.grid.jobs[a.job].name for a in acts if isinstance(a, A.Preempt)]


def test_a_reclaim_preempts_no_flex_job_beside_the_window_however_low_its_bid():
    """Found by tests/policy/test_policy_properties.py: the cheapest Flex job on the
    window's node was preempted first even where none of its GPUs was the window's, so
    a one-GPU Commit job stopped two jobs, and the one that gave it nothing came back on
    its own GPU while the owner job waited."""
    w = lent_window(cheap_first=True)
    (window_gpu,) = w.grid.reservations["r"].held
    assert window_gpu in w.gpus_of("dear") and window_gpu not in w.gpus_of("cheap")
    w.commit("c", "r", gpus=1)
    assert preempted(w, w.at(600)) == ["dear"]


def test_a_priority_job_preempts_no_flex_job_that_holds_only_window_gpus():
    """The same rule for Priority: a Flex job on GPUs lent from a window gives a
    Priority job nothing (they go back to the window's owner), so it is not a victim."""
    w = lent_window(cheap_first=False)
    (window_gpu,) = w.grid.reservations["r"].held
    assert w.gpus_of("cheap") == {window_gpu}
    w.priority("p", gpus=1, hours=1)
    assert preempted(w, w.at(600)) == ["dear"]


def test_window_end_warns_then_stops_the_owners_jobs_as_expired():
    w = World()
    w.reserve("r", gpus=4, start=T0 + HOUR, hours=2)
    w.commit("c", "r", gpus=4, runtime=10 * HOUR)
    w.run_until(T0 + 4 * HOUR)
    warns = w.acted(A.Warn, "c")
    assert [round(a.seconds_left) for a in warns] == [600, 60]
    assert [e.cause for e in w.events_of("c", "warning")] == [
        "window ends in 10 min",
        "window ends in 1 min",
    ]
    stop = w.acted(A.Stop, "c")
    assert len(stop) == 1 and stop[0].outcome is JobState.EXPIRED
    assert stop[0].cause == "window 1 of r ended"
    assert w.state("c") is JobState.EXPIRED
    assert w.violations == []


def test_each_window_is_recognised_as_revenue_once():
    w = HandWorld()
    res = w.reserve("r", gpus=8, start=T0 + HOUR, hours=1, repeat="daily", count=2)
    assert res.prepaid == micro(40)  # 16 GPU-h x 2.50, no tier
    w.at(HOUR)
    w.at(2 * HOUR)  # window 1 closes
    assert w.grid.balances["revenue"] == micro(20)
    w.at(3 * DAY)  # window 2 opened and closed unseen
    assert w.grid.balances["revenue"] == micro(40)
    assert w.grid.balances[held_account("r")] == 0
    closes = [t for t in w.transactions if t.reason.startswith("commit usage r")]
    assert len(closes) == 2


# 8 x A100 (1.60/GPU-h) daily 02:00-06:00 for 30 nights: 960 GPU-h, the 50 % tier.
# prepay 960 x 1.60 x 0.5 = 768.00; what the owner paid is 0.80 per GPU-hour.
NIGHTLY = dict(gpus=8, start=T0 + 2 * HOUR, hours=4, repeat="daily", count=30, gpu_type="A100")


def _night(k: int, hour: float) -> float:
    """Seconds after T0 of `hour` o'clock in the morning of night k (1-based)."""
    return (k - 1) * DAY + hour * HOUR


@pytest.mark.parametrize(
    ("down", "cancel_at", "refund", "credit"),
    [
        # Cancelled after 10 nights, before the 11th opens: 20 windows x 8 x 4 h unused
        # = 640 GPU-h x 0.80 = 512.00, refunded at 0.5: 256.00. No downtime.
        (None, _night(11, 0), 256_000_000, 0),
        # Cancelled at 03:30 in night 11: unused 2.5 h x 8 + 19 x 32 = 628 GPU-h
        # x 0.80 x 0.5 = 251.20; the node was down 02:10-02:40 in that window:
        # 0.5 h x 8 = 4 GPU-h x 0.80 = 3.20 credited in full.
        (
            (_night(11, 2 + 10 / 60), _night(11, 2 + 40 / 60)),
            _night(11, 3.5),
            251_200_000,
            3_200_000,
        ),
    ],
)
def test_commit_early_exit_refund_matches_the_hand_computed_table(down, cancel_at, refund, credit):
    w = HandWorld(config("8xA100"))
    w.account("team", micro(1000))
    res = w.reserve("nightly", **NIGHTLY)
    assert (res.discount_bp, res.prepaid) == (5000, 768_000_000)
    for k in range(1, 11):  # ten nights used
        w.at(_night(k, 2))
        w.at(_night(k, 6))
    if down:
        w.at(_night(11, 2))
        w.at(down[0])
        w.node("a100-1", NodeStatus.UNREACHABLE)
        w.at(down[1])
        w.node("a100-1", NodeStatus.UP)
        w.at(down[1])
    w.at(cancel_at)
    assert w.grid.refund_preview("nightly", w.now) == (refund, credit)
    w.do(lambda g, t: g.cancel_reservation("nightly", t))
    assert (res.refunded, res.credited) == (refund, credit)
    reasons = {t.reason: t for t in w.transactions if t.reservation == "nightly"}
    refund_tx = reasons["early exit refund nightly: unused future GPU-hours x 0.5"]
    assert ("user:team", refund) in refund_tx.entries
    if credit:
        assert ("user:team", credit) in reasons["downtime credit nightly"].entries
    # Used time is never refunded; what is not refunded is revenue; nothing stays held.
    assert w.grid.balance("team") == micro(1000) - 768_000_000 + refund + credit
    assert w.grid.balances["revenue"] == 768_000_000 - refund - credit
    assert w.grid.balances[held_account("nightly")] == 0
    assert w.violations == []


def test_early_exit_refund_formula_in_micro_units():
    w = HandWorld(config("8xA100"))
    res = w.reserve("nightly", **NIGHTLY)
    rate = pricing.effective_rate_per_gpu_second(res)
    assert rate * 3600 == 800_000  # 0.80 per GPU-hour
    assert pricing.early_exit_refund(res, T0 + _night(11, 0), 0.5) == (256_000_000, 0)
    # Rounding is a floor to the micro-unit: one GPU-second is 222.2... micro-units.
    assert pricing.early_exit_refund(res, T0 + _night(30, 6) - 1 / 8, 1.0) == (222, 0)


def test_downtime_in_a_window_is_credited_when_it_closes():
    w = HandWorld(config("8xA100"))
    res = w.reserve("nightly", **NIGHTLY)
    w.at(_night(1, 2))
    w.at(_night(1, 3))
    w.node("a100-1", NodeStatus.UNREACHABLE)
    w.at(_night(1, 4))
    w.node("a100-1", NodeStatus.UP)
    w.at(_night(1, 4))
    w.at(_night(1, 6))
    # 1 h x 8 GPUs lost at 0.80 per GPU-hour
    credit = [t for t in w.transactions if t.reason == "downtime credit nightly window 1"]
    assert credit and ("user:team", 6_400_000) in credit[0].entries
    assert res.credited == 6_400_000
    assert w.grid.balances["revenue"] == 25_600_000 - 6_400_000


def test_a_commit_job_is_never_preempted():
    w = HandWorld()
    w.reserve("r", gpus=8, start=T0, hours=4)
    w.commit("c", "r", gpus=8)
    w.at(0)
    w.run()
    w.priority("p", gpus=8)
    w.flex("f", gpus=8, bid=2.5)
    for t in (10, 600, 3000):
        w.at(t)
        w.run()
    assert w.state("c") is JobState.RUNNING
    assert not w.acted(A.Preempt, "c") and not w.acted(A.Stop, "c")
    assert w.state("p") is JobState.QUEUED and w.state("f") is JobState.QUEUED


def test_reserved_node_failure_moves_the_reservation_to_spare_gpus():
    w = HandWorld(config("2x8xA100,8xH100"))
    w.reserve("r", gpus=8, start=T0, hours=4, gpu_type="A100")
    w.commit("c", "r", gpus=8)
    w.at(0)
    w.run()
    res = w.grid.reservations["r"]
    lost = res.held[0][0]
    spare = "a100-2" if lost == "a100-1" else "a100-1"
    w.at(600)
    w.node(lost, NodeStatus.UNREACHABLE)
    assert w.state("c") is JobState.QUEUED  # restarts on the reservation's new GPUs
    w.at(600)
    assert {n for n, _ in res.held} == {spare}
    assert res.missing == 0
    assert w.state("c") is JobState.STARTING
    assert {n for n, _ in w.gpus_of("c")} == {spare}
    w.at(4 * HOUR)
    assert res.credited == 0  # moved at once: nothing lost


def test_reservation_without_spares_is_short_and_credited_until_the_node_returns():
    w = HandWorld(config("8xA100"))
    w.reserve("r", gpus=8, start=T0, hours=4, gpu_type="A100")
    w.commit("c", "r", gpus=8)
    w.at(0)
    w.run()
    w.at(HOUR)
    w.node("a100-1", NodeStatus.UNREACHABLE)
    w.at(HOUR)
    assert w.grid.reservations["r"].missing == 8
    w.at(2 * HOUR)
    w.node("a100-1", NodeStatus.UP)
    w.at(2 * HOUR)
    assert w.grid.reservations["r"].missing == 0
    assert w.state("c") is JobState.STARTING
    w.run()
    w.at(4 * HOUR)
    # 1 h x 8 GPUs of 32 GPU-h at 1.60 x 0.85: 8/32 of 43.52
    assert w.grid.reservations["r"].credited == micro(10.88)


def test_a_window_is_held_on_one_node_so_the_owners_job_can_run():
    w = HandWorld(config("2x8xA100"))
    w.flex("f1", gpus=6, bid=1.0, gpu_type="A100")
    w.flex("f2", gpus=6, bid=1.0, gpu_type="A100")
    w.at(0)
    w.run()  # 2 GPUs free on each node
    w.reserve("r", gpus=4, start=T0 + 600, hours=2, gpu_type="A100")
    w.commit("c", "r", gpus=4)
    w.at(600)
    held = w.grid.reservations["r"].held
    assert len({n for n, _ in held}) == 1  # not 2 + 2, where a 4-GPU job never fits
    victim = [w.grid.jobs[a.job].name for a in w.acted(A.Preempt)]
    assert len(victim) == 1
    w.at(660)
    w.stopped(victim[0])
    w.at(660)
    assert w.state("c") is JobState.STARTING
    assert w.gpus_of("c") == set(held)


def test_a_commit_job_wider_than_any_node_of_its_type_is_refused_at_submit():
    """A job runs on one node: 5 GPUs in an 8-GPU reservation on 4-GPU nodes could never
    start, so it is refused when submitted, saying why, and nothing is queued."""
    w = HandWorld(config("2x4xH100,1x8xA100"))
    w.reserve("r", gpus=8, start=T0 + HOUR, hours=1)
    with pytest.raises(
        Refused, match=r"^asks for 5 GPUs on one node; the largest H100 node.* has 4$"
    ):
        w.commit("c", "r", gpus=5)
    assert "c" not in w.grid.job_names
    w.commit("fits", "r", gpus=4)
    assert w.state("fits") is JobState.QUEUED


def test_a_node_still_connecting_counts_for_a_future_window_a_lost_one_does_not():
    """A leader that has just started, its nodes still connecting, sells next week's
    window as the count by type does; a node declared lost is not counted."""
    w = World(config([("n0", "4xH100"), ("n1", "4xH100")]))
    w.node("n0", NodeStatus.DEGRADED, "connecting")
    w.node("n1", NodeStatus.DEGRADED, "connecting")
    res = w.reserve("later", gpus=4, start=w.now + 7 * 24 * HOUR, hours=1)
    assert res.name == "later"
    w.node("n0", NodeStatus.UNREACHABLE, "lost")
    w.node("n1", NodeStatus.UNREACHABLE, "lost")
    with pytest.raises(Refused, match="no room on H100"):
        w.reserve("after", gpus=4, start=w.now + 8 * 24 * HOUR, hours=1)


def test_windows_open_for_reservations_booked_one_after_another():
    """Admission judges a reservation by placing a trial copy of it and taking it out
    again; the planner's list of live reservations (policy/windows.py, kept between
    passes) must hold each booked one and never that trial copy."""
    w = HandWorld(config("2x8xH100"))
    w.at(0)
    w.reserve("r1", gpus=4, start=T0 + HOUR, hours=2)
    w.at(60)  # a pass reads the live reservations between the two bookings
    w.reserve("r2", gpus=4, start=T0 + HOUR, hours=2)
    w.commit("c1", "r1", gpus=4)
    w.commit("c2", "r2", gpus=4)
    w.at(HOUR)
    opened = {a.reservation for _, a in w.actions if isinstance(a, A.OpenWindow)}
    assert opened == {"r1", "r2"}
    assert w.state("c1") is JobState.STARTING and w.state("c2") is JobState.STARTING
