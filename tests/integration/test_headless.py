"""`skyops --apply` and the scripting commands as a pipeline runs them: real `skyops`
processes on a real SQLite file, a grid of local agents, exit codes and `--json` read
from the outside (SCENARIOS.md story 6)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "examples" / "ckpt_train.py"

CONFIG = """
[cluster]
name = "ci"
grace_s = 2
stop_grace_s = 1
heartbeat_timeout_s = 5
tick_s = 0.2

[pricing]
min_slice_s = 0

[[node_types]]
name = "H100"
rate = 2.5

[[nodes]]
name = "node-a"
fake_gpus = "4xH100-80GB"
local = true

[[nodes]]
name = "node-b"
fake_gpus = "4xH100-80GB"
local = true

[accounts]
operators = ["ops"]
default_balance = 10000
"""


def argv(steps: int = 3, step_s: float = 0.1, every: int = 5) -> str:
    args = [sys.executable, str(CKPT), "--steps", str(steps), "--step-seconds", str(step_s)]
    args += ["--checkpoint-every", str(every)]
    return json.dumps(args)


class Grid:
    """One test's grid: its config, state file and environment."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.config = tmp / "config.toml"
        self.config.write_text(CONFIG)
        self.db = tmp / "state.db"
        self.env = {
            **os.environ,
            "XDG_DATA_HOME": str(tmp / "data"),
            "SKYOPS_DB": str(self.db),
            "SKYOPS_USER": "ops",
            "COLUMNS": "200",
        }

    def plan(self, text: str, name: str = "plan.toml") -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "skyops_tui", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=REPO,
            timeout=timeout,
        )

    def json(self, *args: str, code: int = 0) -> dict | list:
        r = self.run(*args, "--json")
        assert r.returncode == code, r.stdout + r.stderr
        return json.loads(r.stdout)

    def rows(self) -> dict[str, list]:
        """What the grid intends, table by table: jobs, reservations, money, counters,
        and every event and action but the fleet's own (node links, price ticks)."""
        conn = sqlite3.connect(self.db)
        try:
            out = {}
            for t in ("jobs", "reservations", "ledger_tx", "ledger_entries", "accounts"):
                out[t] = conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            out["counters"] = conn.execute("SELECT * FROM counters ORDER BY 1").fetchall()
            out["events"] = conn.execute(
                "SELECT * FROM events WHERE kind != 'node' ORDER BY id"
            ).fetchall()
            out["actions"] = conn.execute(
                "SELECT * FROM actions WHERE kind != 'SetPrice' ORDER BY id"
            ).fetchall()
            return out
        finally:
            conn.close()


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path)


def quick_job(name: str = "hello", steps: int = 3) -> str:
    return (
        f'[[jobs]]\nname = "{name}"\nmode = "flex"\ngpus = 2\nbid = 1.0\ncommand = {argv(steps)}\n'
    )


def later_reservation(name: str = "later") -> str:
    return (
        f'[[reservations]]\nname = "{name}"\ngpu_type = "H100"\ngpus = 2\n'
        "start = 2030-01-07T02:00:00Z\nhours = 1\n"
    )


def waiting_job(name: str = "waits") -> str:
    return (
        f'[[jobs]]\nname = "{name}"\nmode = "commit"\nreservation = "later"\ngpus = 2\n'
        f"command = {argv()}\n"
    )


# ---------------------------------------------------------------------- apply
def test_apply_then_apply_again_reports_no_change(grid: Grid) -> None:
    plan = grid.plan(later_reservation() + waiting_job() + quick_job())
    doc = grid.json("--apply", str(plan))
    assert doc["status"] == "applied" and doc["applied"] is True and doc["exit_code"] == 0
    assert doc["plan"] == str(plan) and doc["dry_run"] is False
    assert doc["counts"] == {"create": 3, "change": 0, "unchanged": 0, "refuse": 0}
    assert [(i["kind"], i["name"], i["action"], i["line"]) for i in doc["items"]] == [
        ("reservation", "later", "create", 2),
        ("job", "waits", "create", 8),
        ("job", "hello", "create", 14),
    ]
    job = doc["items"][1]
    assert set(job) == {"kind", "name", "action", "summary", "changes", "reason", "id", "line"}
    assert job["id"] == 1 and job["summary"] == "commit in later, 2 GPUs"

    again = grid.json("--apply", str(plan))
    assert again["status"] == "unchanged" and again["applied"] is False
    assert {i["action"] for i in again["items"]} == {"unchanged"}

    human = grid.run("--apply", str(plan))
    assert human.returncode == 0, human.stderr
    assert f"No change: the grid already matches {plan}." in human.stdout


def test_dry_run_prints_and_changes_nothing(grid: Grid) -> None:
    plan = grid.plan(later_reservation() + waiting_job())
    r = grid.run("--apply", str(plan), "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "+  reservation  later" in r.stdout and "+  job          waits" in r.stdout
    assert "Dry run: 2 to create, 0 to change, 0 unchanged; nothing was applied." in r.stdout
    doc = grid.json("--apply", str(plan), "--dry-run")
    assert doc["status"] == "planned" and doc["dry_run"] is True and not doc["applied"]
    assert grid.rows()["jobs"] == [] and grid.rows()["reservations"] == []


def test_a_typo_is_exit_2_naming_file_line_key_and_reason(grid: Grid) -> None:
    text = later_reservation() + waiting_job().replace("gpus = 2", "gpus = 2\ngpu = 2")
    plan = grid.plan(text.replace("hours = 1", "hours = -1"))
    r = grid.run("--apply", str(plan))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f"error: {plan}:6: reservations[0].hours: Input should be greater than 0 (got -1)",
        f"error: {plan}:12: jobs[0].gpu: unknown key",
    ]
    doc = grid.json("--apply", str(plan), code=2)
    assert doc == {
        "status": "invalid",
        "errors": [
            f"{plan}:6: reservations[0].hours: Input should be greater than 0 (got -1)",
            f"{plan}:12: jobs[0].gpu: unknown key",
        ],
    }
    assert not grid.db.exists(), "an invalid plan never opens the grid"


def test_a_refused_plan_is_exit_1_and_changes_nothing(grid: Grid) -> None:
    grid.json("--apply", str(grid.plan(later_reservation() + waiting_job())))
    before = grid.rows()
    # `waits` becomes a flex job (the mode lock), and a new job rides along.
    text = later_reservation() + quick_job("new-one")
    text += waiting_job().replace('"commit"', '"flex"').replace('reservation = "later"', "bid = 1")
    plan = grid.plan(text)
    r = grid.run("--apply", str(plan))
    assert r.returncode == 1
    assert (
        f"error: {plan}:14: job waits: job waits is a commit job: the mode is locked at "
        "creation and cannot become flex; cancel it and submit a new flex job"
    ) in r.stderr
    assert "Refused: 1 item cannot be applied; nothing was changed." in r.stdout
    doc = grid.json("--apply", str(plan), code=1)
    assert doc["status"] == "refused" and doc["exit_code"] == 1
    assert [i["action"] for i in doc["items"]] == ["unchanged", "create", "refuse"]
    assert grid.rows() == before


def test_flag_misuse_is_exit_2(grid: Grid) -> None:
    r = grid.run("--dry-run")
    assert r.returncode == 2 and "--dry-run: goes with --apply PLAN" in r.stderr
    plan = grid.plan(quick_job())
    r = grid.run("--apply", str(plan), "--dry-run", "--wait")
    assert r.returncode == 2 and "--wait: nothing to wait for in a --dry-run" in r.stderr
    r = grid.run("--apply", str(grid.tmp / "missing.toml"))
    assert r.returncode == 2 and f"{grid.tmp / 'missing.toml'}: file not found" in r.stderr
    r = grid.run("--readonly", "--apply", str(plan))
    assert r.returncode == 1 and "--readonly" in r.stderr
    assert "Traceback" not in r.stderr


# ------------------------------------------------------------ scripting commands
def test_status_jobs_quote_and_cancel(grid: Grid) -> None:
    grid.json("--apply", str(grid.plan(later_reservation() + waiting_job())))

    status = grid.json("status")
    assert status["cluster"] == "ci" and status["leader"] is None
    assert [n["name"] for n in status["nodes"]] == ["node-a", "node-b"]
    node = status["nodes"][0]
    assert set(node) == {
        "name",
        "gpu_type",
        "gpus",
        "status",
        "drained",
        "fake",
        "held",
        "reserved",
        "reserved_idle",
        "free",
    }
    assert node["held"] == {"priority": 0, "commit": 0, "flex": 0} and node["fake"] is True
    assert node["drained"] is None
    (h100,) = status["capacity"]
    assert (h100["gpus"], h100["price"], h100["floor"], h100["rate"]) == (
        8,
        750_000,
        750_000,
        2_500_000,
    )
    assert h100["waiting"] == {"priority": 0, "commit": 1, "flex": 0}
    assert grid.run("status").returncode == 0

    jobs = grid.json("jobs")
    assert [(j["name"], j["mode"], j["state"]) for j in jobs] == [("waits", "commit", "queued")]
    assert jobs[0]["command"][1] == str(CKPT) and jobs[0]["reservation"] == "later"
    assert grid.json("jobs", "--mode", "flex") == []
    assert "waits" in grid.run("jobs").stdout

    q = grid.json("quote", "reservation", "--gpu-type", "H100", "--gpus", "8", code=2)
    assert q["errors"] == [
        "skyops quote: --start: Field required",
        "skyops quote: --hours: Field required",
    ]
    q = grid.json(
        "quote",
        "reservation",
        "--gpu-type",
        "H100",
        "--gpus",
        "4",
        "--start",
        "2030-02-01T00:00:00Z",
        "--hours",
        "8",
        "--repeat",
        "daily",
        "--count",
        "7",
    )
    assert (q["gpu_hours"], q["discount_bp"], q["refused"]) == (224.0, 3000, None)
    assert q["price"] == 224 * 2_500_000 * 7 // 10 and q["list_price"] == 224 * 2_500_000
    q = grid.json("quote", "flex", "--gpus", "2", "--bid", "0.5", code=1)
    assert q["refused"] == "bid $0.50 is under the floor $0.75 per GPU-hour"
    q = grid.json("quote", "priority", "--gpus", "4", "--hours", "2")
    assert (q["price"], q["refused"]) == (4 * 2 * 2_500_000, None)
    assert q["outcome"].startswith("starts now on node-")
    r = grid.run("quote", "priority", "--gpus", "4")
    assert r.returncode == 2
    assert "skyops quote: a priority job needs hours = N or hourly = true" in r.stderr

    doc = grid.json("cancel", "waits")
    assert (doc["status"], doc["name"], doc["state"]) == ("cancelled", "waits", "cancelled")
    assert grid.json("cancel", "waits", code=1) == {
        "status": "refused",
        "errors": ["job waits has already ended (cancelled)"],
    }
    doc = grid.json("cancel", "--reservation", "later")
    assert doc["name"] == "later" and doc["refund"] > 0
    assert grid.json("jobs") == [] and len(grid.json("jobs", "--all")) == 1
