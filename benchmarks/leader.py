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

GRIDS = ("local", "ssh", "slurm")


def config(name: str, grid: str = "local", node: str = "node-a") -> str:
    """One node of 8 H100s, `node`; `bench` is an operator with money to spare. The
    node is reached as `grid` says: `local` (fake GPUs, an agent started here), `ssh`
    (a box at 127.0.0.1:1, where nothing answers: the leader keeps trying) or `slurm`
    (a Slurm node of that name, through sbatch and sinfo: skyops_tui/slurm/local.py
    runs one). What a leader loads depends on it (docs/architecture.md, *What a leader
    loads*)."""
    how = {
        "local": 'fake_gpus = "8xH100-80GB"\nlocal = true\n',
        "ssh": 'fake_gpus = "8xH100-80GB"\nhost = "127.0.0.1"\nport = 1\n',
        "slurm": 'gpu_type = "H100"\ngpus = 8\n',
    }[grid]
    backend = '[backend]\nkind = "slurm"\n' if grid == "slurm" else ""
    return f"""[cluster]
name = "{name}"
tick_s = 1.0
[[node_types]]
name = "H100"
rate = 2.5
[[nodes]]
name = "{node}"
{how}[accounts]
default_balance = 1000000000
operators = ["bench"]
{backend}"""


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used: on a loaded machine, its share of
    a request without the waiting for a core."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def drained_leader(
    tmp: Path, base: list[str], env: dict[str, str], cwd: Path | None = None, node: str = "node-a"
) -> Iterator[subprocess.Popen]:
    """`[*base, "serve"]` until it says it leads, with `node` drained; stopped after.
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
        subprocess.run([*base, "nodes", "drain", node], env=env, check=True,
                       capture_output=True, cwd=cwd)  # fmt: skip
        yield leader
    finally:
        leader.terminate()
        try:
            leader.wait(30)
        except subprocess.TimeoutExpired:
            leader.kill()
            leader.wait()
