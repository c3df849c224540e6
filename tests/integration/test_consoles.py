"""Several consoles on one store, as real processes: exactly one leads the scheduler,
the others stand by and take over when the leader dies; commands from anywhere reach
the leader."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from skyops_tui.api.client import ApiClient, NoLeader
from skyops_tui.domain.errors import Refused
from skyops_tui.domain.model import Event, JobState
from skyops_tui.store.control import lease_holder
from skyops_tui.store.db import Store
from tests.waiting import wait_for

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


def ask(sock: Path, kind: str, payload: dict) -> tuple[str, dict]:
    """A command to the leader's socket, as a third process sends it."""

    async def go() -> tuple[str, dict]:
        try:
            async with ApiClient.connected(sock) as client:
                return "done", await client.command(kind, payload)
        except Refused as e:
            return "refused", {"message": str(e)}

    return asyncio.run(go())


def serving(sock: Path) -> dict | None:
    async def go() -> dict | None:
        try:
            async with ApiClient.connected(sock) as client:
                return await client.query("whoami")
        except NoLeader:
            return None

    return asyncio.run(go())


def first_watch_message(sock: Path) -> dict:
    async def go() -> dict:
        async with ApiClient.connected(sock) as client:
            async for msg in client.watch():
                return msg
        raise AssertionError("the leader closed the watch before its snapshot")

    return asyncio.run(go())


def test_one_leads_another_takes_over_and_commands_reach_the_leader(tmp_path):
    (tmp_path / "config.toml").write_text(CONFIG)
    a = Console(tmp_path, "a")
    b = None
    try:
        wait_for(lambda: "leading" in a.output(), "console A leading", timeout=30)
        b = Console(tmp_path, "b")
        wait_for(lambda: "standing by" in b.output(), "console B standing by", timeout=30)
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
        sock = tmp_path / "state.sock"
        status, result = ask(sock, "submit", {"spec": spec})
        assert status == "done", result
        status, result = ask(sock, "mode", {"ref": "long", "mode": "priority"})
        assert status == "refused" and "locked" in result["message"]
        job = wait_for(
            lambda: (j := store.job("long")) and j.state is JobState.RUNNING and j,
            "the job running under console A",
            timeout=30,
        )
        assert job.runs == 1

        # The leader dies without a word: B takes over within the lease time.
        a.proc.kill()
        a.proc.wait()
        killed_at = time.monotonic()
        wait_for(lambda: "leading" in b.output(), "console B leading", timeout=20)
        assert time.monotonic() - killed_at < 5.0 + 1.0 + 3.0  # lease + follow poll + start
        assert f":{b.proc.pid}:" in (lease_holder(store, time.time()) or "")

        # The job kept running and was not started twice; B serves the socket now.
        assert wait_for(lambda: serving(sock), "B serving the socket", timeout=10)["user"] == "ops"
        assert time.monotonic() - killed_at < 5.0 + 1.0 + 3.0
        # A console following B gets B's history: events as the protocol defines them
        # (a follower's store records, with their row ids, once broke every watcher).
        snapshot = first_watch_message(sock)
        assert snapshot["type"] == "snapshot" and snapshot["events"]
        events = [Event(**e) for e in snapshot["events"]]
        assert any(e.job is not None and "submitted" in e.cause for e in events)
        status, result = ask(sock, "cancel", {"ref": "long"})
        assert status == "done", result
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
