"""`skyops --apply plan.toml --wait`: the plan's jobs run on real local agents and the
command returns when they have ended, 0 if all succeeded and 3 if one did not. The
Flex job of the first plan is paused by a Commit window it shares a node with,
checkpoints, and resumes from its checkpoint when the window's job is done."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.waiting import wait_for

from .test_headless import CONFIG, Grid, argv

pytestmark = pytest.mark.integration

NODE_B = '[[nodes]]\nname = "node-b"\nfake_gpus = "4xH100-80GB"\nlocal = true\n'
ONE_NODE = CONFIG.replace(NODE_B, "")
assert ONE_NODE != CONFIG


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    g = Grid(tmp_path)
    g.config.write_text(ONE_NODE)
    return g


def test_wait_sees_a_flex_job_checkpoint_pause_and_resume(grid: Grid) -> None:
    start = time.time() + 8  # the window opens while the Flex job runs
    plan = grid.plan(
        f"""
[[reservations]]
name = "window"
gpu_type = "H100"
gpus = 4
start = {start}
hours = 0.003

[[jobs]]
name = "sweep"
mode = "flex"
gpus = 4
bid = 1.0
command = {argv(steps=60, step_s=0.2, every=5)}

[[jobs]]
name = "team-job"
mode = "commit"
reservation = "window"
gpus = 4
command = {argv(steps=3, step_s=0.2)}
"""
    )
    began = time.monotonic()
    r = grid.run("--apply", str(plan), "--wait", "--json", timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - began < 50
    doc = json.loads(r.stdout)
    assert doc["status"] == "applied" and doc["exit_code"] == 0
    jobs = {j["name"]: j for j in doc["jobs"]}
    sweep, team = jobs["sweep"], jobs["team-job"]
    assert (sweep["state"], sweep["runs"], sweep["preemptions"]) == ("succeeded", 2, 1)
    assert (team["state"], team["exit_code"]) == ("succeeded", 0)
    # Progress went to stderr as plain lines (stdout is one JSON document).
    assert "sweep: paused" in r.stderr and "team-job: running" in r.stderr

    logs = grid.json("logs", "sweep", "-n", "500")
    lines = logs["lines"]
    assert logs["job"] == "sweep" and "SKYOPS_RESUME=1" in lines
    resumed = [ln for ln in lines if ln.startswith("resumed from step ")]
    assert resumed and int(resumed[0].split()[-1]) > 0, lines
    assert lines[-1] == "done: 60 steps"

    again = grid.json("--apply", str(plan), "--wait")
    assert again["status"] == "unchanged" and again["exit_code"] == 0


def test_a_failed_job_is_exit_3(grid: Grid) -> None:
    plan = grid.plan(
        f"""
[[jobs]]
name = "ok"
mode = "priority"
gpus = 1
hours = 1
command = {argv(steps=2)}

[[jobs]]
name = "broken"
mode = "flex"
gpus = 1
bid = 1.0
command = ["{sys.executable}", "-c", "import sys; sys.exit(4)"]
"""
    )
    r = grid.run("--apply", str(plan), "--wait", timeout=60)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Applied" in r.stdout and "broken: failed (exit 4)" in r.stdout
    assert "error: job broken ended failed" in r.stderr
    doc = grid.json("--apply", str(plan), "--wait", code=3)
    states = {j["name"]: (j["state"], j["exit_code"]) for j in doc["jobs"]}
    assert states == {"ok": ("succeeded", 0), "broken": ("failed", 4)}


def test_a_plan_is_queued_for_the_console_that_leads(grid: Grid) -> None:
    """With `skyops serve` leading the grid, --apply follows: the plan goes through
    the command queue, the leader applies it, and --wait watches from outside."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "skyops_tui", "--config", str(grid.config), "serve", "--for", "60"],
        env=grid.env,
        cwd=grid.tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def leading() -> str | None:
            assert serve.poll() is None, serve.stderr.read() if serve.stderr else ""
            return grid.json("status")["leader"]

        leader = wait_for(leading, "skyops serve taking the lease", 20, interval=0.2)
        plan = grid.plan(
            f'[[jobs]]\nname = "queued-in"\nmode = "flex"\ngpus = 2\nbid = 1.0\n'
            f"command = {argv(steps=3)}\n"
        )
        doc = grid.json("--apply", str(plan), "--wait")
        assert doc["status"] == "applied"
        assert [(j["name"], j["state"]) for j in doc["jobs"]] == [("queued-in", "succeeded")]
        assert grid.json("status")["leader"] == leader, "the follower never took over"
        mode_lock = (
            plan.read_text().replace('"flex"', '"priority"').replace("bid = 1.0", "hours = 1")
        )
        doc = grid.json("--apply", str(grid.plan(mode_lock, "other.toml")), code=1)
        assert "the mode is locked" in doc["items"][0]["reason"]
    finally:
        serve.terminate()
        serve.wait(timeout=30)
