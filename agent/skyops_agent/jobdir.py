"""The on-disk job folder, shared by the agent and the shim.

<state_dir>/jobs/<job_id>/
    spec.json     what to run (written once by the agent, before the shim starts)
    shim.pid      the shim's pid (written by the agent right after launching it)
    status.json   the shim's record: state, pid, exit code/signal, times (atomic rewrite)
    stop.json     a stop request (written by the agent, then the shim gets SIGTERM);
                  marked `called_off` by the shim when an unstop cancelled it
    unstop.json   a request to call the stop off (the agent, then SIGUSR2 to the shim)
    stdout.log    the job's output
    stderr.log
    shim.log      the shim's own complaints, if any

Every JSON file is replaced atomically (tmp + rename), so a reader sees the old or the new
content, never half of one: the agent and the shim never need a lock.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

SPEC = "spec.json"
STATUS = "status.json"
STOP = "stop.json"
UNSTOP = "unstop.json"
SHIM_PID = "shim.pid"
STDOUT = "stdout.log"
STDERR = "stderr.log"
SHIM_LOG = "shim.log"


def write_json(path: str, obj: dict[str, Any]) -> None:
    """Atomic replace: write a temporary file in the same folder, fsync, rename."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    """The file's object, or None if it is missing or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def signal_number(name: str) -> int:
    """ "SIGUSR1" or "USR1" -> its number; ValueError naming the signal if unknown."""
    full = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(signal.Signals[full])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"
