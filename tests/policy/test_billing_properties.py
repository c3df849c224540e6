"""Issue 10's done-when, as properties of generated traces (docs/modes.md, *Billing*):

- billed every second, every minute or every hour (`billing_interval_s`, with a pass
  every second as production runs them, and with passes only when something happens,
  as `skyops simulate` runs them), every job pays the same, is preempted as often and
  every account closes on the same balance;
- every job's charge is what the per-second oracle (tests/billing_oracle.py) computes
  from the recorded prices and bids, to the micro-unit;
- a console that restarts (a `restart` line: the grid written to a real SQLite store
  and loaded back, prices from its rows) bills, preempts and closes balances exactly as
  one that ran throughout.

The traces mix bid changes, Flex jobs outbid during their grace (by higher bids and by
Priority jobs), nodes that go silent and come back or are lost, runs that fail and are
retried, deposits and small accounts that run dry, on two markets. Every job pins its
`gpu_type`: the oracle prices a job in one market, so an untyped job whose runs land in
two markets is beyond it. The reference run has no restarts; every other run restarts
the console where the trace says (up to three times, anywhere: during a grace, a
node's silence, a retry's backoff).
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from skyops_tui.domain.config import parse_config
from skyops_tui.sim.simulator import EPOCH, SimResult, simulate
from skyops_tui.sim.trace import parse_lines
from tests import billing_oracle

RANGES = {"H100": (0.75, 2.5), "A100": (0.48, 1.6), None: (0.48, 2.5)}
NODES = ["h100-1", "h100-2", "a100-1"]
HEARTBEAT = 15


def config(interval: float, balance: float) -> dict:
    return {
        "node_types": [{"name": "H100", "rate": 2.5}, {"name": "A100", "rate": 1.6}],
        "nodes": [
            {"name": "h100-1", "fake_gpus": "2xH100-80GB"},
            {"name": "h100-2", "fake_gpus": "2xH100-80GB"},
            {"name": "a100-1", "fake_gpus": "2xA100-80GB"},
        ],
        "cluster": {
            "grace_s": 60,
            "stop_grace_s": 30,
            "billing_interval_s": interval,
            "heartbeat_timeout_s": HEARTBEAT,
        },
        "pricing": {"min_slice_s": 60, "retry_backoff_s": 20},
        "simulation": {"initial_balance": balance, "stop_delay_s": 20},
    }


def bid_in(gtype: str | None, x: float) -> float:
    lo, hi = RANGES[gtype]
    return round(lo + 0.01 + x * (hi - lo - 0.02), 2)


t = st.integers(0, 1800)
flex = st.builds(
    lambda user, gtype, gpus, x, submit, runtime, every, retries: {
        "user": user, "mode": "flex", "gpu_type": gtype, "gpus": gpus,
        "bid": bid_in(gtype, x), "submit": submit, "runtime": runtime,
        "checkpoint_every": every, "max_retries": retries,
    },
    st.sampled_from(["ann", "bob"]), st.sampled_from(["H100", "A100"]),
    st.integers(1, 2), st.floats(0, 1), t, st.integers(100, 2400),
    st.sampled_from([30, 120, 600]), st.integers(0, 1),
)  # fmt: skip
priority = st.builds(
    lambda gtype, gpus, hours, submit, runtime, renew: {
        "user": "cy", "mode": "priority", "gpu_type": gtype, "gpus": gpus, "hours": hours,
        "submit": submit, "runtime": runtime, "auto_renew": renew,
    },
    st.sampled_from(["H100", "A100"]), st.integers(1, 2), st.sampled_from([0.1, 0.25]),
    t, st.integers(100, 1200), st.booleans(),
)  # fmt: skip
node_event = st.tuples(
    st.sampled_from(NODES), t, st.sampled_from(["back", "lost", None]), st.integers(5, 100)
)


@st.composite
def traces(draw) -> tuple[list[dict], dict[str, float]]:
    """Lines, and for each node lost in them when it was last heard from."""
    lines: list[dict] = []
    for i, x in enumerate(draw(st.lists(flex, min_size=2, max_size=8))):
        lines.append({"name": f"f{i}", **{k: v for k, v in x.items() if v is not None}})
    for i, x in enumerate(draw(st.lists(priority, max_size=2))):
        lines.append({"name": f"p{i}", **x})
    flexes = [(x["name"], x.get("gpu_type")) for x in lines if x["mode"] == "flex"]
    for name, gtype in draw(st.lists(st.sampled_from(flexes), max_size=4)):
        bid = bid_in(gtype, draw(st.floats(0, 1)))
        lines.append({"name": name, "kind": "bid", "bid": bid, "submit": draw(t)})
    for name, _ in draw(st.lists(st.sampled_from(flexes), max_size=2)):
        lines.append({"name": name, "kind": "fail", "exit_code": 2, "submit": draw(t)})
    if draw(st.booleans()):
        lines.append({"kind": "deposit", "user": "ann", "amount": 0.5, "submit": draw(t)})
    lost: dict[str, float] = {}
    for node, at, then, after in draw(st.lists(node_event, max_size=2, unique_by=lambda e: e[0])):
        lines.append({"kind": "silent", "node": node, "submit": at})
        if then is not None:
            lines.append({"kind": then, "node": node, "submit": at + after})
        if then == "lost" or (then is None or after >= 4 * HEARTBEAT):
            lost[node] = EPOCH + at
    # Last, so that the other lines keep their numbers when the restarts are left out.
    for at in draw(st.lists(st.integers(1, 2400), min_size=1, max_size=3)):
        lines.append({"kind": "restart", "submit": at})
    return lines, lost


def run(lines: list[dict], interval: float, balance: float, tick: float | None) -> SimResult:
    trace = parse_lines([json.dumps(x) for x in lines], "generated.jsonl")
    return simulate(trace, parse_config(config(interval, balance)), record=True, tick_s=tick)


def outcome(r: SimResult) -> dict:
    bills = {
        name: (b["charged"], b["preemptions"], b["runs"], b["state"])
        for name, b in r.summary["bills"].items()
    }
    # A refusal's text shows the balance billed so far, which the cadence moves; which
    # lines are refused must not move.
    refused = [
        (x["line"], x["name"], x["reason"].split("; balance")[0]) for x in r.summary["refused"]
    ]
    return {"bills": bills, "balances": r.summary["balances"], "refused": refused}


def agrees_with_the_oracle(r: SimResult, lost: dict[str, float]) -> None:
    for job in r.grid.jobs.values():
        if job.market is None:
            continue
        m = r.grid.markets[job.market]
        expected = billing_oracle.charge(job, r.events, r.prices, m.floor, m.rate, lost)
        assert job.charged == expected, job.name


def flex_line(name, user, gtype, gpus, bid, submit, runtime, every, retries) -> dict:
    return {
        "name": name, "user": user, "mode": "flex", "gpu_type": gtype, "gpus": gpus,
        "bid": bid, "submit": submit, "runtime": runtime, "checkpoint_every": every,
        "max_retries": retries,
    }  # fmt: skip


# Admission weighs usage not yet billed: at 126 s f1 (still running) owes 26,250 µ, billed
# or not, so f2 (2 x 0.76 for 10 minutes = 253,333 µ) is refused whatever the cadence; it
# was admitted when billing last ran at 120 s or earlier (docs/modes.md, *Accounts*).
ADMISSION = [
    flex_line("f0", "ann", "H100", 1, 0.76, 0, 100, 30, 0),
    flex_line("f1", "ann", "H100", 1, 0.76, 0, 126, 30, 0),
    flex_line("f2", "ann", "H100", 2, 0.76, 126, 100, 30, 0),
]
# bob's f0, outbid on A100 at 1034 s, waits at 0.63 and sets the clearing price f6 pays;
# at 1337 s bob's f7, running on h100-2, has spent what f0 needs to start again, so f0
# stops bidding and the price falls to the floor. Passes only on events missed that
# moment and charged f6 456,400 µ instead of 435,900 µ.
PRICE_FALLS = [
    flex_line("f0", "bob", "A100", 2, 0.63, 579, 690, 120, 1),
    flex_line("f1", "ann", "H100", 2, 1.7, 1634, 596, 30, 0),
    flex_line("f2", "ann", "H100", 2, 0.88, 412, 156, 30, 1),
    flex_line("f3", "bob", "A100", 1, 1.24, 221, 688, 30, 0),
    flex_line("f4", "ann", "A100", 2, 0.93, 1583, 364, 120, 1),
    flex_line("f5", "bob", "H100", 1, 0.76, 975, 635, 30, 0),
    flex_line("f6", "ann", "A100", 2, 1.48, 1034, 1054, 120, 1),
    flex_line("f7", "bob", "H100", 2, 0.76, 35, 1585, 120, 1),
    {"name": "f7", "kind": "bid", "bid": 0.91, "submit": 596},
    {"name": "f7", "kind": "bid", "bid": 1.19, "submit": 1208},
    {"name": "f7", "kind": "bid", "bid": 1.79, "submit": 122},
    {"name": "f5", "kind": "fail", "exit_code": 2, "submit": 674},
    {"kind": "silent", "node": "h100-1", "submit": 190},
    {"kind": "silent", "node": "h100-2", "submit": 1800},
    {"kind": "lost", "node": "h100-2", "submit": 1898},
]
PRICE_FALLS_LOST = {"h100-1": EPOCH + 190, "h100-2": EPOCH + 1800}
# p0's booking expires at 360 s; the pass that stops it counts its GPUs as being freed, so
# p1 claims them in that pass, booked from 360 s. It was claimed by whichever pass came
# next: at 361 s with a pass every second, at p0's stop (362 s) with passes only on events.
CLAIM = [
    {"name": "p0", "user": "cy", "mode": "priority", "gpu_type": "A100", "gpus": 1,
     "hours": 0.1, "submit": 0, "runtime": 362},
    {"name": "p1", "user": "cy", "mode": "priority", "gpu_type": "A100", "gpus": 2,
     "hours": 0.1, "submit": 0, "runtime": 360},
]  # fmt: skip

# At 585 s bob's f0 starts on A100 in the same pass that prices H100; before it started,
# bob's waiting f3 (2 x 1.40) looked fundable, so the pass set H100's price to 1.40; after
# it, f3 cannot fund its first period and bids nothing. A pass every second dropped the
# price to the floor at 586 s; passes only on events kept 1.40 until 990 s and billed
# f2 more. The price a pass sets is judged after its own starts.
SAME_PASS_START = [
    flex_line("f0", "bob", "A100", 1, 1.52, 258, 675, 30, 0),
    flex_line("f1", "bob", "A100", 2, 1.57, 92, 493, 30, 0),
    flex_line("f2", "bob", "H100", 1, 2.4, 322, 2399, 30, 0),
    flex_line("f3", "bob", "H100", 2, 1.4, 179, 244, 30, 0),
    flex_line("f7", "ann", "H100", 1, 0.76, 322, 101, 30, 0),
    {"kind": "silent", "node": "h100-1", "submit": 141},
]
SAME_PASS_START_LOST = {"h100-1": EPOCH + 141}
# p0's booking expires at 1141 s (booked at its claim, 781 s); f5 (2 x 1.53) waits beside
# f2 (0.49). The pass that expires p0 counts p0's GPU as being freed, so f5 outbids f2
# then; it was judged by whichever pass came next (1142 s every second, 1151 s when p0
# stopped with passes only on events), and f2 paid 1,225 µ more on events.
SAME_PASS_STOP = [
    flex_line("f2", "ann", "A100", 1, 0.49, 410, 1357, 30, 0),
    flex_line("f5", "ann", "A100", 2, 1.53, 375, 543, 30, 0),
    {"name": "p0", "user": "cy", "mode": "priority", "gpu_type": "A100", "gpus": 1,
     "hours": 0.1, "submit": 781, "runtime": 350},
]  # fmt: skip


def restarts(*at: int) -> list[dict]:
    return [{"kind": "restart", "submit": t} for t in at]


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces(), st.sampled_from([0.3, 1.0, 50.0]))
@example(case=(ADMISSION, {}), balance=0.3)
@example(case=(ADMISSION + restarts(100, 126), {}), balance=0.3)
@example(case=(PRICE_FALLS, PRICE_FALLS_LOST), balance=1.0)
# During h100-1's silence, at f0's outbid (its grace), at f0's withdrawal, during
# h100-2's silence.
@example(case=(PRICE_FALLS + restarts(200, 1034, 1050, 1337, 1850), PRICE_FALLS_LOST), balance=1.0)
@example(case=(CLAIM + restarts(360, 361), {}), balance=1.0)
@example(case=(SAME_PASS_START, SAME_PASS_START_LOST), balance=1.0)
@example(case=(SAME_PASS_STOP, {}), balance=50.0)
def test_billing_every_second_minute_or_hour_gives_the_same_bills(case, balance) -> None:
    lines, lost = case
    plain = [x for x in lines if x.get("kind") != "restart"]
    every_second = run(plain, 1, balance, tick=1)
    want = outcome(every_second)
    assert every_second.summary["violations"] == []
    assert every_second.summary["ledger_sum"] == 0
    agrees_with_the_oracle(every_second, lost)
    for interval in (1, 60, 3600):
        r = run(lines, interval, balance, tick=1)
        assert outcome(r) == want, f"billing every {interval} s, restarting"
        agrees_with_the_oracle(r, lost)
    for interval in (1, 60, 3600):
        r = run(lines, interval, balance, tick=None)
        assert outcome(r) == want, f"billing every {interval} s, passes only on events, restarting"
        agrees_with_the_oracle(r, lost)


def test_a_price_set_in_the_pass_that_starts_a_job_is_judged_after_that_start() -> None:
    every_second = run(SAME_PASS_START, 1, 1.0, tick=1)
    on_events = run(SAME_PASS_START, 1, 1.0, tick=None)
    assert outcome(on_events) == outcome(every_second)
    agrees_with_the_oracle(on_events, SAME_PASS_START_LOST)
    # The same price history, segment by segment, in both markets.
    for t in ("H100", "A100"):
        a, b = on_events.grid.markets[t], every_second.grid.markets[t]
        assert (a.starts, a.levels) == (b.starts, b.levels), t


def test_gpus_a_pass_frees_count_as_being_freed_in_that_pass() -> None:
    every_second = run(SAME_PASS_STOP, 1, 50.0, tick=1)
    on_events = run(SAME_PASS_STOP, 1, 50.0, tick=None)
    assert outcome(on_events) == outcome(every_second)
    agrees_with_the_oracle(on_events, {})
    outbid = [e.at - EPOCH for e in on_events.events if e.cause == "outbid by f5"]
    assert outbid == [1141]  # in the pass that expired p0's booking
