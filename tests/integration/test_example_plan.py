"""examples/plan.toml on the demo a new user already has, and how plan errors read.

The state is the demo's as `skyops` seeds it on first start (its jobs and reservation),
in a real SQLite file under tmp_path; each plan is applied by the real CLI, typed as
README.md and the plan's own header print it. With no console leading, the CLI runs the
scheduler itself for the apply and the demo's jobs start on local agents; they outlive
it by design, so each test kills them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyops_tui.cli.console import build_runtime
from skyops_tui.demo import seed
from tests.integration.test_tmux import kill_everything

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    env = {"XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops", "COLUMNS": "200"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SKYOPS_DB", raising=False)
    rt = build_runtime(None)
    seed(rt)
    rt.store.close()
    yield {**os.environ, **env}
    left = kill_everything(tmp_path)
    assert not left, f"processes left behind: {left}"


def skyops(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skyops_tui", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_example_plan_applies_on_the_seeded_demo(demo_env: dict[str, str]) -> None:
    dry = skyops(demo_env, "--apply", "examples/plan.toml", "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    done = skyops(demo_env, "--apply", "examples/plan.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "5 created" in done.stdout, done.stdout
    again = skyops(demo_env, "--apply", "examples/plan.toml")
    assert again.returncode == 0 and "No change" in again.stdout, again.stdout + again.stderr


def test_a_refusal_names_its_subject_once(demo_env: dict[str, str], tmp_path: Path) -> None:
    plan = tmp_path / "clash.toml"
    plan.write_text(
        '[[jobs]]\nname = "train-llm"\nuser = "ana"\nmode = "priority"\n'
        'command = ["true"]\ngpus = 4\ngpu_type = "H100"\nhours = 3\n'
    )
    done = skyops(demo_env, "--apply", str(plan))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert lines and all(line.count("job train-llm") == 1 for line in lines), done.stderr
    assert f"error: {plan}:2: job train-llm: command" in done.stderr, done.stderr


def test_a_bad_reservation_name_says_which_characters(demo_env, tmp_path: Path) -> None:
    plan = tmp_path / "bad.toml"
    plan.write_text(
        '[[reservations]]\nname = "team nights!"\ngpu_type = "A100"\ngpus = 1\n'
        "start = 2030-01-07T02:00:00Z\nhours = 1\n"
    )
    done = skyops(demo_env, "--apply", str(plan))
    assert done.returncode == 2, done.stdout + done.stderr
    line = done.stderr.strip()
    assert line.startswith(f"error: {plan}:2: reservations[0].name: "), line
    assert "letters, digits" in line and "'team nights!'" in line, line
    assert "^[" not in line and "pattern" not in line, line
