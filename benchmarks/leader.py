"""A `skyops serve` process leading a grid of one drained node, for the benchmarks that
talk to a leader as clients do (cli_submit, serve_memory): jobs submitted to it queue
and never start, so what they time is the leader's acceptance and its memory, not
placement or the jobs' processes."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def config(name: str) -> str:
    """One local node of 8 fake H100s; `bench` is an operator with money to spare."""
    return f"""[cluster]
name = "{name}"
tick_s = 1.0
[[node_types]]
name = "H100"
rate = 2.5
[[nodes]]
name = "node-a"
fake_gpus = "8xH100-80GB"
local = true
[accounts]
default_balance = 1000000000
operators = ["bench"]
"""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: on a loaded machine, its share of
    a request without the waiting for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def drained_leader(
    tmp: Path, base: list[str], env: dict[str, str], cwd: Path | None = None
) -> Iterator[subprocess.Popen]:
    """`[*base, "serve"]` until it says it leads, with node-a drained; stopped after.
    `base` is the command line up to the subcommand (`skyops --config C --db D`)."""
    log_path = tmp / "serve.log"
    with log_path.open("w") as log:
        leader = subprocess.Popen(
            [*base, "serve"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd
        )
    try:
        deadline = time.monotonic() + 60
        while "leading" not in log_path.read_text():
            if time.monotonic() > deadline or leader.poll() is not None:
                raise RuntimeError("skyops serve did not start: " + log_path.read_text())
            time.sleep(0.05)
        subprocess.run([*base, "nodes", "drain", "node-a"], env=env, check=True,
                       capture_output=True, cwd=cwd)  # fmt: skip
        yield leader
    finally:
        leader.terminate()
        try:
            leader.wait(30)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()
