"""`skyops simulate`: the real engine through simulated time (docs/simulator.md)."""

from __future__ import annotations

import json
import random
import re

import pytest

from skyops_tui.domain.config import parse_config
from skyops_tui.domain.errors import InputError
from skyops_tui.sim import simulator as sim
from skyops_tui.sim.simulator import simulate
from skyops_tui.sim.trace import parse_lines, read_trace

CONFIG = {
    "node_types": [{"name": "H100", "rate": 2.5}, {"name": "A100", "rate": 1.6}],
    "nodes": [
        {"name": "h", "fake_gpus": "8xH100-80GB", "count": 4},
        {"name": "a", "fake_gpus": "8xA100-80GB", "count": 2},
    ],
    "cluster": {"grace_s": 60},
    "pricing": {"min_slice_s": 120},
}
SUMMARY_KEYS = {
    "jobs",
    "succeeded",
    "failed",
    "expired",
    "cancelled",
    "preemptions",
    "gpu_hours_used",
    "gpu_utilization",
    "mean_wait_s",
    "p95_wait_s",
    "lost_work_gpu_hours",
    "revenue",
    "refunds",
    "ledger_sum",
    "wall_s",
    "violations",
}


# Node trouble and a restart over a mixed trace: a node silent then back, one silent
# for good, the console restarted from its file, a node declared lost.
NODE_TROUBLE = [
    {"kind": "silent", "node": "h-2", "submit": 15000},
    {"kind": "back", "node": "h-2", "submit": 15030},
    {"kind": "silent", "node": "a-1", "submit": 30000},
    {"kind": "restart", "submit": 40000},
    {"kind": "lost", "node": "h-3", "submit": 50000},
]


def mixed_trace(n: int = 300, seed: int = 7) -> list[dict]:
    """A day of work in every mode, with reservations, cancels and bid changes."""
    r = random.Random(seed)
    lines: list[dict] = [
        {"name": "nightly", "kind": "reservation", "user": "team", "gpu_type": "A100",
         "gpus": 8, "hours": 4, "start": 7200, "repeat": "daily", "count": 3, "submit": 0},
        {"name": "burst", "kind": "reservation", "user": "lab", "gpu_type": "H100",
         "gpus": 8, "hours": 2, "start": 20000, "submit": 100},
    ]  # fmt: skip
    flex: list[str] = []
    for i in range(n):
        t = r.uniform(0, 80000)
        x = r.random()
        if x < 0.15:
            lines.append({"name": f"p{i}", "mode": "priority", "user": "prod", "submit": t,
                          "gpus": r.choice([1, 2, 4, 8]), "hours": r.choice([0.5, 1, 2]),
                          "runtime": r.uniform(600, 9000), "auto_renew": r.random() < 0.3})  # fmt: skip
        elif x < 0.25:
            res, start = r.choice([("nightly", 7200), ("burst", 20000)])
            lines.append({"name": f"c{i}", "mode": "commit", "reservation": res,
                          "user": "team" if res == "nightly" else "lab",
                          "submit": start + r.uniform(-600, 3600), "gpus": r.choice([4, 8]),
                          "runtime": r.uniform(600, 20000)})  # fmt: skip
        else:
            gtype = r.choice(["H100", "A100", None])
            rate = {"H100": 2.5, "A100": 1.6, None: 1.6}[gtype]
            floor = 0.75 if gtype != "A100" else 0.48
            line = {"name": f"f{i}", "mode": "flex", "user": r.choice(["ann", "bob"]),
                    "submit": t, "gpus": r.choice([1, 2, 4, 8]),
                    "bid": round(r.uniform(floor, rate), 2), "runtime": r.uniform(300, 14400),
                    "checkpoint_every": r.choice([60, 300, 900])}  # fmt: skip
            if gtype:
                line["gpu_type"] = gtype
            if r.random() < 0.05:
                line["nodes"] = 2
                del line["gpus"]
            lines.append(line)
            flex.append(line["name"])
    for name in r.sample(flex, 10):
        lines.append({"name": name, "kind": "cancel", "submit": r.uniform(0, 80000)})
    for name in r.sample(flex, 10):
        lines.append({"name": name, "kind": "bid", "bid": 1.59, "submit": r.uniform(0, 80000)})
    lines.append({"name": "nightly", "kind": "cancel", "user": "team", "submit": 100_000})
    return lines


def run(lines: list[dict], cfg: dict = CONFIG):
    trace = parse_lines([json.dumps(x) for x in lines], "trace.jsonl")
    return simulate(trace, parse_config(cfg))


def test_a_mixed_trace_keeps_every_invariant_and_reports_the_summary():
    result = run(mixed_trace())
    s = result.summary
    assert SUMMARY_KEYS <= s.keys()
    assert s["violations"] == []
    assert s["ledger_sum"] == 0
    assert set(s["mean_wait_s"]) == set(s["p95_wait_s"]) == {"priority", "commit", "flex"}
    assert s["jobs"] > 250 and s["succeeded"] > 100 and s["preemptions"] > 0
    assert 0 < s["gpu_utilization"] <= 1
    assert s["revenue"] > 0 and s["refunds"] > 0  # the nightly reservation was cancelled
    assert (
        s["succeeded"] + s["failed"] + s["expired"] + s["cancelled"] + s["unfinished"] == s["jobs"]
    )


def test_small_accounts_in_a_simulated_day_stay_within_their_credit_limit():
    cfg = {**CONFIG, "simulation": {"initial_balance": 300}, "accounts": {"credit_limit": 10}}
    result = run(mixed_trace(seed=11), cfg)
    assert result.summary["violations"] == [] and result.summary["ledger_sum"] == 0
    assert any("cannot" in r for r in result.refused)  # funding did refuse some
    balances = [b for a, b in result.grid.balances.items() if a.startswith("user:")]
    assert min(balances) >= -10_000_000
    assert min(balances) < 0  # some account did run down into its credit


def test_the_simulation_is_deterministic():
    a = run(mixed_trace(80, seed=3)).summary
    b = run(mixed_trace(80, seed=3)).summary
    a.pop("wall_s"), b.pop("wall_s"), a.pop("jobs_per_wall_s"), b.pop("jobs_per_wall_s")
    assert a == b


def test_refused_lines_are_reported_not_fatal():
    lines = [
        {"name": "low", "mode": "flex", "gpus": 1, "bid": 0.1, "submit": 0, "runtime": 10},
        {"name": "ok", "mode": "flex", "gpus": 1, "bid": 1.0, "submit": 0, "runtime": 10},
    ]
    result = run(lines)
    assert len(result.refused) == 1
    assert result.refused[0].startswith("line 1 (low): bid $0.10 is under")
    assert result.summary["succeeded"] == 1
    (refusal,) = result.summary["refused"]
    assert refusal["line"] == 1 and refusal["name"] == "low"
    assert refusal["reason"].startswith("bid $0.10 is under")
    assert result.summary["refused_lines"] == 1


def test_a_commit_job_runs_in_its_window_from_the_trace():
    lines = [
        {"name": "r", "kind": "reservation", "user": "team", "gpu_type": "A100", "gpus": 8,
         "hours": 1, "start": 3600, "submit": 0},
        {"name": "c", "mode": "commit", "reservation": "r", "user": "team", "gpus": 8,
         "submit": 10, "runtime": 600},
    ]  # fmt: skip
    result = run(lines)
    job = result.grid.job_by_ref("c")
    assert job.state == "succeeded"
    assert job.first_started_at - 1_767_225_600 == 3600  # the moment its window opened


# ------------------------------------------------------------- trace reader
def bad(*lines: str) -> list[str]:
    with pytest.raises(InputError) as e:
        parse_lines(list(lines), "t.jsonl")
    return e.value.messages


def test_an_unknown_key_names_the_line_and_the_key():
    ok = json.dumps({"name": "a", "mode": "flex", "bid": 1, "submit": 0})
    assert bad(ok, json.dumps({"name": "b", "mode": "flex", "submit": 0, "bidd": 1})) == [
        "t.jsonl:2: bidd: unknown key"
    ]


def test_a_bad_type_names_the_line_the_key_and_the_value():
    (msg,) = bad(json.dumps({"name": "a", "mode": "flex", "bid": 1, "submit": "soon"}))
    assert msg.startswith("t.jsonl:1: submit: ") and "'soon'" in msg


def test_bad_json_names_the_line():
    (msg,) = bad('{"name": "a"', "")
    assert msg.startswith("t.jsonl:1: not valid JSON")


def test_a_line_must_be_an_object():
    assert bad("[1, 2]") == ["t.jsonl:1: a line must be a JSON object"]


def test_mode_rules_are_checked_per_line():
    (msg,) = bad(json.dumps({"name": "p", "mode": "priority", "submit": 0, "gpus": 1}))
    assert msg.startswith("t.jsonl:1: ") and "hours = N or hourly = true" in msg


def test_every_bad_line_is_reported_at_once():
    msgs = bad('{"x": 1', json.dumps({"name": "a", "submit": 0, "kind": "nope"}), "{}")
    assert [m.split(":")[1] for m in msgs][:2] == ["1", "2"] and any(":3:" in m for m in msgs)


def test_lines_are_ordered_by_submit_time(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"name": n, "mode": "flex", "bid": 1, "submit": t})
            for n, t in [("late", 50), ("early", 5)]
        )
    )
    assert [t.name for t in read_trace(path)] == ["early", "late"]
    with pytest.raises(InputError, match="file not found"):
        read_trace(tmp_path / "missing.jsonl")


# ------------------------------------------------------------- the whole bill
ONE_GPU = """
[simulation]
initial_balance = 10

[[node_types]]
name = "H100"
rate = 2.50

[[nodes]]
name = "h1"
fake_gpus = "1xH100-80GB"
"""


def _cli(tmp_path, lines: list[dict], *flags: str, capsys) -> tuple[int, str, str]:
    from skyops_tui.cli.main import main

    trace = tmp_path / "t.jsonl"
    trace.write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = tmp_path / "c.toml"
    cfg.write_text(ONE_GPU)
    code = main(["simulate", str(trace), "--config", str(cfg), *flags])
    out, err = capsys.readouterr()
    return code, out, err


BILL_TRACE = [
    {"name": "a", "user": "ann", "mode": "flex", "bid": 1.0, "submit": 0, "runtime": 3000,
     "checkpoint_every": 100},
    {"name": "p", "user": "bob", "mode": "priority", "hours": 1, "submit": 650, "runtime": 1000},
    {"name": "p", "kind": "bid", "bid": 2.0, "submit": 700},
]  # fmt: skip


def test_the_json_summary_tells_each_jobs_bill_each_balance_and_each_refused_line(tmp_path, capsys):
    # 1 H100 at 2.50, floor 0.75. a (bid 1.00) runs alone at the floor from 0; p
    # (Priority) preempts it at 650; a stops 5 s later, having checkpointed at 600:
    # 655 s x 750,000 / 3600 = 136,458, 55 s of work lost. p runs 655-1655: 1000 s x
    # 2,500,000 / 3600 = 694,444. a resumes for its 2,400 s left: 500,000; in all
    # 636,458 over 2 runs and 3,055 GPU-seconds. Line 3 (a bid on a Priority job) is refused.
    code, out, err = _cli(tmp_path, BILL_TRACE, "--json", capsys=capsys)
    assert code == 0
    s = json.loads(out)
    a, p = s["bills"]["a"], s["bills"]["p"]
    assert (a["runs"], a["gpu_seconds"], a["charged"], a["refunded"]) == (2, 3055, 636_458, 0)
    assert (a["preemptions"], a["lost_work_s"], a["state"]) == (1, 55, "succeeded")
    assert (p["runs"], p["gpu_seconds"], p["charged"], p["preemptions"]) == (1, 1000, 694_444, 0)
    assert s["balances"] == {"ann": 10_000_000 - 636_458, "bob": 10_000_000 - 694_444}
    assert s["refused_lines"] == 1
    assert s["refused"] == [
        {
            "line": 3,
            "kind": "bid",
            "name": "p",
            "reason": "job p is a priority job: only flex jobs carry a bid",
        }
    ]


def test_without_json_refused_lines_go_to_stderr_and_the_summary_counts_them(tmp_path, capsys):
    code, out, err = _cli(tmp_path, BILL_TRACE, capsys=capsys)
    assert code == 0
    trace = tmp_path / "t.jsonl"
    assert f"refused: {trace}:3: p: job p is a priority job" in " ".join(err.split())
    assert re.search(r"refused lines\s*│\s*1\s*│", out)


def test_the_wakeups_kept_from_events_are_those_a_walk_of_every_job_finds(monkeypatch):
    """The simulator keeps the jobs that can have a timer from each step's events
    instead of walking every job each step (`_Wakeups`); here every step also walks
    them all and must find the same next pass: retries, renewals, funds running low,
    a restart and nodes going silent or lost included."""
    monkeypatch.setattr(sim, "CHECK_WAKEUPS", True)
    extra = [
        {"name": "retry", "mode": "flex", "user": "sweep", "submit": 50, "gpus": 2,
         "bid": 2.4, "runtime": 20000, "max_retries": 2, "checkpoint_every": 600},
        {"name": "retry", "kind": "fail", "submit": 3000},
        {"name": "retry", "kind": "fail", "submit": 9000},
        {"name": "renew", "mode": "priority", "user": "prod", "submit": 70, "gpus": 2,
         "hours": 1, "auto_renew": True, "runtime": 9000},
        *NODE_TROUBLE,
    ]  # fmt: skip
    ok = run(mixed_trace(200, seed=5) + extra)
    assert ok.summary["violations"] == [] and ok.summary["steps"] > 500
    assert ok.grid.jobs[ok.grid.job_names["retry"]].retries == 2
    poor = {**CONFIG, "simulation": {"initial_balance": 300}, "accounts": {"credit_limit": 10}}
    assert run(mixed_trace(120, seed=11) + extra, poor).summary["violations"] == []
