"""The example traces in examples/ simulate cleanly and tell the story examples/README.md
says they tell."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest

from skyops_tui.domain.config import load_config
from skyops_tui.domain.model import JobState, Mode
from skyops_tui.sim.simulator import SimResult, simulate
from skyops_tui.sim.trace import read_trace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TRACES = ["contended-day", "nightly-commit", "outbid-war", "early-exit"]


@functools.cache
def run(name: str) -> SimResult:
    cfg = load_config(EXAMPLES / "sim-config.toml")
    return simulate(read_trace(EXAMPLES / f"{name}.jsonl"), cfg)


def jobs(result: SimResult, prefix: str = "", mode: Mode | None = None) -> list:
    return [
        j
        for j in result.grid.jobs.values()
        if j.name.startswith(prefix) and (mode is None or j.mode is mode)
    ]


@pytest.mark.parametrize("name", TRACES)
def test_example_simulates_cleanly(name: str) -> None:
    result = run(name)
    s = result.summary
    assert s["violations"] == []
    assert s["ledger_sum"] == 0
    assert result.refused == []
    assert s["unfinished"] == 0


def test_examples_are_what_the_generator_writes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(EXAMPLES / "gen_trace.py"), "--stories", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in TRACES:
        assert (tmp_path / f"{name}.jsonl").read_text() == (
            EXAMPLES / f"{name}.jsonl"
        ).read_text(), f"examples/{name}.jsonl is stale: rerun gen_trace.py --stories"


def test_contended_day_priority_preempts_flex_and_never_waits() -> None:
    result = run("contended-day")
    assert result.summary["preemptions"] > 50
    priority = jobs(result, mode=Mode.PRIORITY)
    assert len(priority) == 18
    waits = [j.first_started_at - j.submitted_at for j in priority]
    assert max(waits) <= 60, "a Priority booking waited behind Flex"
    assert all(j.preemptions == 0 for j in priority)
    expired = [j.name for j in result.grid.jobs.values() if j.state is JobState.EXPIRED]
    assert expired == ["release-a100-1"]
    assert all(j.state is JobState.SUCCEEDED for j in jobs(result, mode=Mode.FLEX))
    assert sum(j.preemptions for j in jobs(result, mode=Mode.FLEX)) > 0


def test_nightly_commit_settles_thirty_windows() -> None:
    result = run("nightly-commit")
    res = result.grid.reservations["nightly"]
    assert res.settled_windows == 30
    assert result.grid.balances.get("held:nightly", 0) == 0  # each window recognised once
    team = jobs(result, "train-night-")
    assert len(team) == 30
    assert all(j.first_started_at - j.submitted_at <= 60 for j in team)
    assert sorted(j.name for j in team if j.state is JobState.EXPIRED) == [
        "train-night-07",
        "train-night-21",
    ]
    assert sum(j.state is JobState.SUCCEEDED for j in team) == 28
    # One bid among the sweep: every preemption is a reclaim for the window or the job.
    assert result.summary["preemptions"] >= 30


def test_outbid_war_moves_only_on_big_enough_raises() -> None:
    result = run("outbid-war")
    g = result.grid
    alice, bob = g.job_by_ref("alice-train"), g.job_by_ref("bob-train")
    assert (alice.preemptions, bob.preemptions) == (3, 3)
    assert result.summary["preemptions"] == 6
    assert (alice.bid, bob.bid) == (1_250_000, 1_200_000)
    assert all(j.state is JobState.SUCCEEDED for j in g.jobs.values())
    # Alice's 1.25 beat Bob's 1.20 once Carol was done: she finished first.
    assert alice.ended_at < bob.ended_at


def test_early_exit_refunds_half_the_unused_future() -> None:
    result = run("early-exit")
    res = result.grid.reservations["pilot"]
    assert res.cancelled_at is not None
    assert res.settled_windows == 4
    unused_gpu_h = 16 * (4 + 9 * 6)  # cancelled at 12:00 of a 10:00-16:00 window, 9 to come
    expected = int(Fraction(res.prepaid) * unused_gpu_h / (16 * 6 * 14) / 2)
    assert expected == 580_000_000
    assert res.refunded == expected
    assert result.summary["refunds"] == expected
    assert result.grid.balances.get("held:pilot", 0) == 0
    day5 = jobs(result, "pilot-d5-")
    assert [j.state for j in day5] == [JobState.CANCELLED, JobState.CANCELLED]


def test_mixed_generator_is_deterministic_and_valid(tmp_path: Path) -> None:
    sys.path.insert(0, str(EXAMPLES))
    try:
        import gen_trace
    finally:
        sys.path.remove(str(EXAMPLES))
    cfg = load_config(EXAMPLES / "sim-config.toml")
    a = gen_trace.mixed(cfg, 300, seed=3)
    assert a == gen_trace.mixed(cfg, 300, seed=3)
    assert sum(line.get("kind", "job") == "job" for line in a) == 300
    kinds = {line.get("kind", "job") for line in a}
    modes = {line["mode"] for line in a if "mode" in line}
    assert {"job", "reservation", "bid", "cancel"} <= kinds
    assert modes == {"priority", "commit", "flex"}
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in a))
    result = simulate(read_trace(path), cfg)
    assert result.summary["jobs"] == 300
    assert result.summary["ledger_sum"] == 0


ROOT = EXAMPLES.parent


def printed_command_lines() -> list[str]:
    """Every `skyops ...` and `python examples/...` line in a code block of README.md and
    examples/README.md, comments cut, placeholder lines (`[...]`, `a | b`, `...`) left out."""
    out = []
    for doc in (ROOT / "README.md", EXAMPLES / "README.md"):
        fenced = False
        for line in doc.read_text().splitlines():
            if line.startswith("```"):
                fenced = not fenced
                continue
            cmd = line.split("#", 1)[0].strip()
            if fenced and (cmd.startswith("skyops ") or cmd.startswith("python examples/")):
                if not any(mark in cmd for mark in ("[", " | ", "...")):
                    out.append(cmd)
    return out


def test_every_printed_command_line_parses_and_the_runnable_ones_run(tmp_path: Path) -> None:
    import shlex

    from skyops_tui.cli.main import build_parser

    lines = printed_command_lines()
    assert "skyops simulate examples/contended-day.jsonl --config examples/sim-config.toml" in lines
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line)
        if argv[0] == "skyops":
            parser.parse_args(argv[1:])  # exits 2 on "unrecognized arguments"
        files = [a for a in argv if "/" in a and not a.startswith("/")]
        if all((ROOT / f).exists() for f in files) and "config.toml" not in argv:
            if argv[0] == "skyops":
                argv = [sys.executable, "-m", "skyops_tui.cli.main", *argv[1:]]
            else:
                argv = [sys.executable, *argv[1:]]
            done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (line, done.stderr[-2000:])


def test_billing_rules_example_bills_what_docs_modes_md_says() -> None:
    """examples/billing-rules.jsonl, every figure worked by hand in examples/README.md."""
    from skyops_tui.sim.simulator import EPOCH
    from tests import billing_oracle

    cfg = load_config(EXAMPLES / "billing-rules.toml")
    r = simulate(read_trace(EXAMPLES / "billing-rules.jsonl"), cfg, record=True)
    s = r.summary
    assert s["violations"] == [] and s["ledger_sum"] == 0
    # p0 comes before prod's deposit: 2.00 cannot cover its first hour at 2.50.
    assert s["refused"] == [
        {
            "line": 1,
            "kind": "job",
            "name": "p0",
            "reason": "account prod cannot cover the first hour ($2.50); balance $2.00",
        }
    ]
    b = s["bills"]
    # p: 1 h booked, extended by 0.25 h at 1,800 s, auto-renewed by 0.5 h at 4,500 s,
    # done at 6,000 s: 6,000 x 2,500,000 / 3600 = 4,166,666.
    assert (b["p"]["state"], b["p"]["charged"]) == ("succeeded", 4_166_666)
    assert r.grid.job_by_ref("p").end_at == EPOCH + 6300
    # f: exits 3 at 250 s (checkpoint at 200), retried 30 s later for its 800 s left;
    # each run floored: 52,083 + 166,666 = 218,749 at the floor 0.75.
    f = b["f"]
    assert (f["runs"], f["retries"], f["lost_work_s"], f["charged"]) == (2, 1, 50, 218_749)
    # g: its node is silent 2,300-2,340 s (degraded, not lost): billed in full, 375,000.
    assert (b["g"]["charged"], b["g"]["preemptions"]) == (375_000, 0)
    # q: its node is silent from 4,600 s and declared lost at 4,630 s: failed, billed
    # to 4,600: 600 x 2,500,000 / 3600 = 416,666.
    assert (b["q"]["state"], b["q"]["charged"]) == ("failed", 416_666)
    assert s["balances"] == {
        "ann": 2_000_000 - 218_749 - 375_000,
        "prod": 2_000_000 + 10_000_000 - 4_166_666 - 416_666,
    }
    m = r.grid.markets["H100"]
    lost = {"h100-2": EPOCH + 4600}
    for job in r.grid.jobs.values():
        expected = billing_oracle.charge(job, r.events, r.prices, m.floor, m.rate, lost)
        assert job.charged == expected, job.name
