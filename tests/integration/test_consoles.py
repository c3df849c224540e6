"""Several consoles on one store, as real processes: exactly one leads the scheduler,
the others stand by and take over when the leader dies; commands from anywhere reach
the leader."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from skyops_tui.domain.model import JobState
from skyops_tui.store.control import command, enqueue, lease_holder
from skyops_tui.store.db import Store

CONFIG = """
[cluster]
name = "two-consoles"
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
[accounts]
operators = ["ops"]
default_balance = 10000
"""


class Console:
    def __init__(self, tmp: Path, name: str) -> None:
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(tmp / "data"),
            "SKYOPS_USER": "ops",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = tmp / f"{name}.log"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "skyops_tui",
                "--config",
                str(tmp / "config.toml"),
                "--db",
                str(tmp / "state.db"),
                "serve",
            ],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=env,
        )

    def output(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"within {timeout:.0f} s, never: {what}")
        time.sleep(0.1)


def ask(store: Store, kind: str, payload: dict, actor: str = "ops"):
    cid = enqueue(store, kind, payload, actor, time.time())
    return wait_for(
        lambda: (r := command(store, cid)) and r.status != "pending" and r, f"an answer to {kind}"
    )


def test_one_leads_another_takes_over_and_commands_reach_the_leader(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG)
    a = Console(tmp_path, "a")
    b = None
    try:
        wait_for(lambda: "leading" in a.output(), "console A leading")
        b = Console(tmp_path, "b")
        wait_for(lambda: "standing by" in b.output(), "console B standing by")
        store = Store(tmp_path / "state.db")
        holder = lease_holder(store, time.time())
        assert holder and f":{a.proc.pid}:" in holder

        # A command queued by a third process is applied by the leader.
        spec = {
            "name": "long",
            "user": "ops",
            "mode": "flex",
            "gpus": 4,
            "gpu_type": "H100",
            "bid": 1.0,
            "argv": [
                sys.executable,
                str(Path("examples/ckpt_train.py").resolve()),
                "--steps",
                "100000",
                "--step-seconds",
                "0.2",
            ],
        }
        done = ask(store, "submit", {"spec": spec})
        assert done.status == "done", done.result
        refused = ask(store, "mode", {"ref": "long", "mode": "priority"})
        assert refused.status == "refused" and "locked" in refused.result["message"]
        job = wait_for(
            lambda: (j := store.job("long")) and j.state is JobState.RUNNING and j,
            "the job running under console A",
        )
        assert job.runs == 1

        # The leader dies without a word: B takes over within the lease time.
        a.proc.kill()
        a.proc.wait()
        killed_at = time.monotonic()
        wait_for(lambda: "leading" in b.output(), "console B leading", timeout=20)
        assert time.monotonic() - killed_at < 5.0 + 1.0 + 3.0  # lease + follow poll + start
        assert f":{b.proc.pid}:" in (lease_holder(store, time.time()) or "")

        # The job kept running and was not started twice; B answers commands now.
        cancel = ask(store, "cancel", {"ref": "long"})
        assert cancel.status == "done", cancel.result
        final = wait_for(
            lambda: (j := store.job("long")) and j.state is JobState.CANCELLED and j,
            "the job cancelled by console B",
            timeout=30,
        )
        assert final.runs == 1
        store.close()
    finally:
        a.stop()
        if b is not None:
            b.stop()
