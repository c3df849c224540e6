"""A client of a running leader when the state database is locked: a clear error,
exit 4, and nothing it was told failed is applied once the lock is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.crash_harness import LockHolder
from skyops_tui.store.db import Store
from tests.helpers import one_local_node_config
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
CONFIG = one_local_node_config("faults")
PLAN = """
[[jobs]]
name = "told-no"
user = "ops"
mode = "flex"
gpus = 1
gpu_type = "H100"
bid = 1.0
command = ["true"]
"""


def test_a_locked_store_is_exit_4_through_the_leader_and_never_applied_later(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG)
    (tmp_path / "plan.toml").write_text(PLAN)
    db = tmp_path / "state.db"
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops",
           "SKYOPS_BUSY_TIMEOUT_S": "1"}  # fmt: skip
    base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp_path / "config.toml")]
    base += ["--db", str(db)]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        leader = subprocess.Popen([*base, "serve"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, cwd=REPO)  # fmt: skip
    try:
        wait_for(lambda: "leading" in log.read_text(), "the leader leading", timeout=30)
        with LockHolder(db):
            r = subprocess.run([*base, "--apply", str(tmp_path / "plan.toml")], env=env,
                               cwd=REPO, capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 4, (r.returncode, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        assert "not applied" in r.stderr and "scheduler cannot act now" in r.stderr, r.stderr
        # Commands are applied in the order received: once a later plan is applied, the
        # refused one would have been too, had it been kept.
        (tmp_path / "after.toml").write_text(PLAN.replace("told-no", "after"))
        ok = wait_for(
            lambda: (p := subprocess.run([*base, "--apply", str(tmp_path / "after.toml")],
                     env=env, cwd=REPO, capture_output=True, text=True, timeout=120))
            .returncode == 0 and p,
            "a later plan applied once the lock is gone",
            timeout=30,
        )  # fmt: skip
        assert "Applied" in ok.stdout
        store = Store(db)
        try:
            assert store.job("after") is not None and store.job("told-no") is None
        finally:
            store.close()
    finally:
        leader.terminate()
        try:
            leader.wait(15)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()


def test_logs_follow_through_the_leader_prints_each_line_once(tmp_path):
    """With a leader running, `logs -f` reads through its socket (the leader holds the
    links to the nodes): every line once, in order, and it ends when the job does."""
    (tmp_path / "config.toml").write_text(CONFIG)
    flag = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "for i in range(300): print(f'line {i}', flush=True)\n"
        f"while not os.path.exists({str(flag)!r}): time.sleep(0.05)\n"
        "for i in range(300, 3000): print(f'line {i}', flush=True)\n"
    )
    (tmp_path / "chatty.py").write_text(script)
    plan = PLAN.replace("told-no", "chatty").replace(
        'command = ["true"]', f"command = [{sys.executable!r}, {str(tmp_path / 'chatty.py')!r}]"
    )
    (tmp_path / "plan.toml").write_text(plan)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops"}
    base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp_path / "config.toml")]
    base += ["--db", str(tmp_path / "state.db")]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        leader = subprocess.Popen([*base, "serve"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, cwd=REPO)  # fmt: skip
    try:
        wait_for(lambda: "leading" in log.read_text(), "the leader leading", timeout=30)
        r = subprocess.run([*base, "--apply", str(tmp_path / "plan.toml")], env=env, cwd=REPO,
                           capture_output=True, text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr

        def last_line() -> bool:
            r = subprocess.run([*base, "logs", "chatty", "-n", "1", "--json"], env=env,
                               cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
            return r.returncode == 0 and json.loads(r.stdout)["lines"][-1:] == ["line 299"]

        wait_for(last_line, "the job's first 300 lines written", timeout=30)
        follow = subprocess.Popen([*base, "logs", "chatty", "-f", "-n", "5", "--json"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env, cwd=REPO)  # fmt: skip
        try:
            assert follow.stdout is not None
            first = [json.loads(follow.stdout.readline())["line"] for _ in range(5)]
            assert first == [f"line {i}" for i in range(295, 300)]
            flag.touch()
            rest, err = follow.communicate(timeout=120)
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()
        assert follow.returncode == 0 and "Traceback" not in err, err
        printed = first + [json.loads(line)["line"] for line in rest.splitlines()]
        assert printed == [f"line {i}" for i in range(295, 3000)]
    finally:
        leader.terminate()
        try:
            leader.wait(15)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()


def test_submit_an_array_through_the_leader(tmp_path):
    """`skyops submit --array N -- COMMAND` sends N jobs to the leader's socket, as
    the user the leader names the caller (the service account's user here)."""
    (tmp_path / "config.toml").write_text(CONFIG)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops"}
    base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp_path / "config.toml")]
    base += ["--db", str(tmp_path / "state.db")]
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        leader = subprocess.Popen([*base, "serve"], stdout=out, stderr=subprocess.STDOUT,
                                  env=env, cwd=REPO)  # fmt: skip
    try:
        wait_for(lambda: "leading" in log.read_text(), "the leader leading", timeout=30)
        cli = {**env, "SKYOPS_USER": "someone-else"}  # the socket, not this, names the caller
        r = subprocess.run([*base, "submit", "--name", "arr", "--bid", "1.5", "--array", "3",
                            "--json", "--", "true"], env=cli, cwd=REPO, capture_output=True,
                           text=True, timeout=120)  # fmt: skip
        assert r.returncode == 0, r.stderr
        jobs = json.loads(r.stdout)["jobs"]
        assert [j["name"] for j in jobs] == ["arr-0", "arr-1", "arr-2"]
        store = Store(tmp_path / "state.db")
        try:
            assert {store.job(f"arr-{i}").user for i in range(3)} == {"ops"}
        finally:
            store.close()
        bad = subprocess.run([*base, "submit", "--gpus", "0", "--", "true"], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert bad.returncode == 2 and "--gpus" in bad.stderr, bad.stderr
    finally:
        leader.terminate()
        try:
            leader.wait(15)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()
