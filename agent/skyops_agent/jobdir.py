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

The shim imports this module and stays resident for the whole job, so it imports no
more than it needs (docs/fleet.md, "Memory per job"): JSON goes through the `_json`
accelerator the `json` package itself uses (its Python half pulls in `re` and `enum`,
about 1.3 MB a process), signal names come from `_signal`, not the `signal.Signals` enum.
`json` is the fallback where `_json` is missing or a file does not parse.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:  # typeshed types signal's C half only through signal
    import signal as _signal
    from typing import Any
else:
    import _signal

_accel: Any
try:
    import _json as _accel
except ImportError:  # an interpreter without the accelerator: `json` does it all
    _accel = None

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
    text = dumps(obj)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: str) -> dict[str, Any] | None:
    """The file's object, or None if it is missing or not a JSON object."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _not_json(obj: object) -> None:
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def dumps(obj: object) -> str:
    """`json.dumps(obj, sort_keys=True)`, character for character."""
    if _accel is None:
        import json

        return json.dumps(obj, sort_keys=True)
    encode = _accel.make_encoder(
        {}, _not_json, _accel.encode_basestring_ascii, None, ": ", ", ", True, False, True
    )
    return "".join(encode(obj, 0))


class _Options:
    """What `_json.make_scanner` reads off a JSONDecoder: `json.loads`' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {
        "-Infinity": float("-inf"),
        "Infinity": float("inf"),
        "NaN": float("nan"),
    }.__getitem__


_scan = _accel.make_scanner(_Options()) if _accel is not None else None
_WHITESPACE = " \t\n\r"


def loads(text: str) -> Any:
    """`json.loads(text)`. What the scanner cannot read is read again by `json`, for
    its error (the scanner's own needs `json.decoder` loaded)."""
    if _scan is not None:
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            obj, end = _scan(text, start)
        except Exception:
            pass
        else:
            if not text[end:].strip(_WHITESPACE):
                return obj
    import json

    return json.loads(text)


def _signal_names() -> dict[str, int]:
    """SIG* names, as `signal.Signals` has them (SIG_DFL and SIG_IGN are not signals)."""
    return {
        name: getattr(_signal, name)
        for name in dir(_signal)
        if name.startswith("SIG") and not name.startswith("SIG_") and name.isupper()
    }


def signal_number(name: str) -> int:
    """ "SIGUSR1" or "USR1" -> its number; ValueError naming the signal if unknown."""
    full = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(_signal_names()[full])
    except KeyError:
        raise ValueError(f"unknown signal {name!r}") from None


def signal_name(number: int) -> str:
    """The name `signal.Signals(number).name` gives: of aliases (SIGIOT, SIGABRT), the
    first in alphabetical order."""
    names = sorted(n for n, v in _signal_names().items() if v == number)
    return names[0] if names else f"SIG{number}"
