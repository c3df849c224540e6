"""`skyops serve` as a test's own process: the leader of a one-node grid owned by this
account, whose Skyops user is ops, and its command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers import one_local_node_config
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


class Leader:
    """`skyops serve` for the account that owns the state, whose Skyops user is ops."""

    def __init__(self, tmp: Path, config: str | None = None) -> None:
        (tmp / "config.toml").write_text(config or one_local_node_config("serve"))
        self.tmp = tmp
        self.env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data"), "SKYOPS_USER": "ops"}
        self.base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp / "config.toml")]
        self.base += ["--db", str(tmp / "state.db")]
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = self.tmp / f"serve{self.starts}.log"
        with log.open("w") as out:
            self.proc = subprocess.Popen([*self.base, "serve"], stdout=out,
                                         stderr=subprocess.STDOUT, env=self.env, cwd=REPO)  # fmt: skip
        wait_for(lambda: "leading" in log.read_text(), "the leader leading", timeout=30)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cli(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.base, *argv], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    def json(self, *argv: str) -> dict:
        r = self.cli(*argv, "--json")
        assert r.returncode == 0, (argv, r.returncode, r.stdout, r.stderr)
        return json.loads(r.stdout)

    def state(self, job: str) -> str | None:
        jobs = self.json("jobs", "--all")
        return next((j["state"] for j in jobs if j["name"] == job), None)
