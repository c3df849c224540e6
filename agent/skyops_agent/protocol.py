"""The agent protocol: versioned JSON lines, the one definition shared by agent and console.

One JSON object per line, UTF-8. Every message carries ``"v": PROTOCOL_VERSION`` and a
``"type"``. Requests (console -> agent) carry an integer ``"id"``; replies carry
``"re": <id>`` and are ``ok`` (with a payload) or ``error`` (``code``, ``message``).
Events (agent -> console) carry neither. Unknown extra fields are ignored, so fields can
be added without a version bump; anything else that changes bumps PROTOCOL_VERSION.
docs/protocol.md is the human-readable form of the tables below.

Stdlib only and Python 3.9 compatible: the agent ships as a zipapp to arbitrary boxes.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, NamedTuple

# 2: jobs run as a Unix user (start.user), carry their grid (start.grid), `configure`.
# 3: `unstop` calls off a stop still in its checkpoint grace.
PROTOCOL_VERSION = 3

# Requests, console -> agent.
HELLO = "hello"
CONFIGURE = "configure"
INVENTORY = "inventory"
TELEMETRY = "telemetry"
SUBSCRIBE = "subscribe"
START = "start"
STOP = "stop"
UNSTOP = "unstop"
SIGNAL = "signal"
JOBS = "jobs"
LOGS = "logs"
CHECKPOINT_LIST = "checkpoint_list"
CHECKPOINT_PACK = "checkpoint_pack"
CHECKPOINT_UNPACK = "checkpoint_unpack"
FORGET = "forget"
SHUTDOWN = "shutdown"

# Replies.
OK = "ok"
ERROR = "error"

# Events, agent -> console. A telemetry event shares its name with the one-shot request;
# the event has no "id".
JOB_STARTED = "job_started"
JOB_EXITED = "job_exited"
TELEMETRY_EVENT = TELEMETRY

# Error codes.
E_BAD_JSON = "bad_json"
E_BAD_MESSAGE = "bad_message"
E_UNKNOWN_TYPE = "unknown_type"
E_VERSION_MISMATCH = "version_mismatch"
E_BAD_FIELD = "bad_field"
E_UNKNOWN_JOB = "unknown_job"
E_JOB_EXISTS = "job_exists"
E_JOB_RUNNING = "job_running"
E_NOT_RUNNING = "not_running"
E_EXEC_FAILED = "exec_failed"
E_TOO_LARGE = "too_large"
E_LINE_TOO_LONG = "line_too_long"
E_INTERNAL = "internal"
E_UNKNOWN_USER = "unknown_user"
E_OTHER_GRID = "other_grid"
E_TOO_LATE = "too_late"

MODES = ("priority", "commit", "flex")
STREAMS = ("stdout", "stderr")

# Job states in a `jobs` reply.
STATE_STARTING = "starting"
STATE_RUNNING = "running"
STATE_STOPPING = "stopping"
STATE_EXITED = "exited"
STATE_LOST = "lost"  # the shim vanished without recording an exit (e.g. the box rebooted)

DEFAULT_GRACE_S = 120.0
DEFAULT_TERM_GRACE_S = 10.0
DEFAULT_TAIL_LINES = 100
DEFAULT_PACK_MAX_BYTES = 64 * 1024 * 1024
# A checkpoint_unpack line carries base64 of up to DEFAULT_PACK_MAX_BYTES and then some.
MAX_LINE_BYTES = 128 * 1024 * 1024
DEFAULT_UNPACK_MAX_BYTES = 16 * 1024**3
DEFAULT_UNPACK_MAX_RATIO = 200.0

JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SIGNAL_PATTERN = re.compile(r"(SIG)?[A-Z][A-Z0-9+-]*")

Message = dict[str, Any]


class ProtocolError(Exception):
    """A message that cannot be accepted. ``re`` is the request id when one could be read."""

    def __init__(self, code: str, message: str, re: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.re = re

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class Kind(NamedTuple):
    """A field type: what it must be (for the error message) and a check."""

    description: str
    check: Callable[[Any], bool]


class Field(NamedTuple):
    kind: Kind
    required: bool = True
    default: Any = None


def _is_int(x: Any) -> bool:
    # Signed 64-bit, as the console's SQLite store keeps it; a larger one also breaks
    # math.isfinite (OverflowError) where a number is asked for.
    return isinstance(x, int) and not isinstance(x, bool) and -(2**63) <= x < 2**63


def _is_number(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def _is_env(x: Any) -> bool:
    return isinstance(x, dict) and all(
        isinstance(k, str) and k and "=" not in k and "\0" not in k and isinstance(v, str)
        for k, v in x.items()
    )


def _is_gpu_list(x: Any) -> bool:
    return isinstance(x, list) and all(_is_int(i) and i >= 0 for i in x) and len(set(x)) == len(x)


def _optional(kind: Kind) -> Kind:
    return Kind(kind.description + " or null", lambda x: x is None or kind.check(x))


def _one_of(*values: str) -> Kind:
    return Kind("one of " + ", ".join(repr(v) for v in values), lambda x: x in values)


STR = Kind("a string", lambda x: isinstance(x, str))
TEXT = Kind("a non-empty string", lambda x: isinstance(x, str) and x.strip() != "")
INT = Kind("an integer", _is_int)
NONNEG_INT = Kind("an integer >= 0", lambda x: _is_int(x) and x >= 0)
POS_INT = Kind("an integer > 0", lambda x: _is_int(x) and x > 0)
NUMBER = Kind("a number", _is_number)
NONNEG_NUMBER = Kind("a number >= 0", lambda x: _is_number(x) and x >= 0)
BOOL = Kind("true or false", lambda x: isinstance(x, bool))
LIST = Kind("a list", lambda x: isinstance(x, list))
OBJECT = Kind("an object", lambda x: isinstance(x, dict))
JOB_ID = Kind(
    "a job id (letters, digits, '.', '_', '-'; at most 128; not starting with '.', '_' or '-')",
    lambda x: isinstance(x, str) and JOB_ID_PATTERN.fullmatch(x) is not None,
)
ARGV = Kind(
    "a non-empty list of strings",
    lambda x: (
        isinstance(x, list)
        and len(x) > 0
        and all(isinstance(a, str) and "\0" not in a for a in x)
        and x[0] != ""
    ),
)
ENV = Kind("an object of string to string", _is_env)
GPU_LIST = Kind("a list of distinct GPU indices (integers >= 0)", _is_gpu_list)
SIGNAL_NAME = Kind(
    "a signal name such as 'SIGUSR1'",
    lambda x: isinstance(x, str) and _SIGNAL_PATTERN.fullmatch(x) is not None,
)
PATHS = Kind(
    "a list of absolute paths",
    lambda x: (
        isinstance(x, list)
        and all(isinstance(p, str) and p.startswith("/") and "\0" not in p for p in x)
    ),
)
GRID_ID = Kind(
    "a grid id (letters and digits, at most 32) or empty",
    lambda x: isinstance(x, str) and re.fullmatch(r"[A-Za-z0-9]{0,32}", x) is not None,
)
RATIO = Kind("a number >= 1", lambda x: _is_number(x) and x >= 1)
MODE = _one_of(*MODES)
STREAM = _one_of(*STREAMS)


def req(kind: Kind) -> Field:
    return Field(kind)


def opt(kind: Kind, default: Any = None) -> Field:
    return Field(kind, required=False, default=default)


REQUESTS: dict[str, dict[str, Field]] = {
    HELLO: {"protocol": req(INT), "console_version": opt(STR, "")},
    CONFIGURE: {
        "grid": opt(GRID_ID, ""),
        "work_roots": opt(PATHS, []),
        "checkpoint_roots": opt(PATHS, []),
        "unpack_max_bytes": opt(POS_INT, DEFAULT_UNPACK_MAX_BYTES),
        "unpack_max_ratio": opt(RATIO, DEFAULT_UNPACK_MAX_RATIO),
    },
    INVENTORY: {},
    TELEMETRY: {},
    SUBSCRIBE: {"interval_s": req(NONNEG_NUMBER)},
    START: {
        "job_id": req(JOB_ID),
        "argv": req(ARGV),
        "env": opt(ENV, {}),
        "gpus": opt(GPU_LIST, []),
        "workdir": opt(_optional(STR), None),
        "checkpoint_dir": opt(STR, ""),
        "resume": opt(BOOL, False),
        "mode": req(MODE),
        "user": opt(STR, ""),
        "grid": opt(GRID_ID, ""),
    },
    STOP: {
        "job_id": req(JOB_ID),
        "checkpoint_signal": opt(_optional(SIGNAL_NAME), None),
        "grace_s": opt(NONNEG_NUMBER, DEFAULT_GRACE_S),
        "term_grace_s": opt(NONNEG_NUMBER, DEFAULT_TERM_GRACE_S),
        "reason": req(TEXT),
    },
    UNSTOP: {"job_id": req(JOB_ID), "reason": req(TEXT)},
    SIGNAL: {"job_id": req(JOB_ID), "signal": req(SIGNAL_NAME)},
    JOBS: {},
    LOGS: {
        "job_id": req(JOB_ID),
        "stream": opt(STREAM, "stdout"),
        "tail_lines": opt(NONNEG_INT, DEFAULT_TAIL_LINES),
        "offset": opt(_optional(NONNEG_INT), None),
    },
    CHECKPOINT_LIST: {"job_id": req(JOB_ID), "checkpoint_dir": opt(_optional(STR), None)},
    CHECKPOINT_PACK: {
        "job_id": req(JOB_ID),
        "checkpoint_dir": opt(_optional(STR), None),
        "max_bytes": opt(POS_INT, DEFAULT_PACK_MAX_BYTES),
    },
    CHECKPOINT_UNPACK: {
        "job_id": req(JOB_ID),
        "checkpoint_dir": opt(STR, ""),
        "data": req(STR),
    },
    FORGET: {"job_id": req(JOB_ID), "remove_checkpoint": opt(BOOL, False)},
    SHUTDOWN: {},
}

EVENTS: dict[str, dict[str, Field]] = {
    JOB_STARTED: {"job_id": req(JOB_ID), "pid": req(INT), "started_at": opt(NUMBER)},
    JOB_EXITED: {
        "job_id": req(JOB_ID),
        "exit_code": req(_optional(INT)),
        "signal": req(_optional(STR)),
        "stop_reason": req(_optional(STR)),
        "ended_at": req(NUMBER),
    },
    TELEMETRY_EVENT: {"gpus": req(LIST), "fake": req(BOOL), "at": req(NUMBER)},
}

REPLIES: dict[str, dict[str, Field]] = {
    OK: {},
    ERROR: {"code": req(STR), "message": req(STR)},
}

REQUEST_TYPES = frozenset(REQUESTS)
EVENT_TYPES = frozenset(EVENTS)


# -- building messages --------------------------------------------------------------


def request(type: str, id: int, **fields: Any) -> Message:
    return dict({"v": PROTOCOL_VERSION, "type": type, "id": id}, **fields)


def ok(re: int, **payload: Any) -> Message:
    return dict({"v": PROTOCOL_VERSION, "type": OK, "re": re}, **payload)


def error(re: int | None, code: str, message: str) -> Message:
    """An error reply; ``re`` is None when the request's id could not be read."""
    msg: Message = {"v": PROTOCOL_VERSION, "type": ERROR}
    if re is not None:
        msg["re"] = re
    msg["code"] = code
    msg["message"] = message
    return msg


def event(type: str, **fields: Any) -> Message:
    return dict({"v": PROTOCOL_VERSION, "type": type}, **fields)


def encode(msg: Message) -> bytes:
    """One line of UTF-8 JSON, newline included. NaN and infinity are refused."""
    return (
        json.dumps(msg, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
        + b"\n"
    )


# -- reading messages ---------------------------------------------------------------


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse(line: bytes | str) -> Any:
    if isinstance(line, (bytes, bytearray)):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(E_BAD_JSON, "line is not UTF-8") from None
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(E_BAD_JSON, f"line is not JSON ({_short(exc)})") from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _check_fields(msg: Message, table: dict[str, Field], what: str, re: int | None) -> None:
    for name, field in table.items():
        if name not in msg:
            if field.required:
                raise ProtocolError(E_BAD_FIELD, f"{what}: missing field '{name}'", re)
            default = field.default
            msg[name] = (
                dict(default)
                if isinstance(default, dict)
                else (list(default) if isinstance(default, list) else default)
            )
        elif not field.kind.check(msg[name]):
            raise ProtocolError(
                E_BAD_FIELD,
                f"{what}: field '{name}' must be {field.kind.description}",
                re,
            )


def mismatch_message(peer: str, peer_version: Any) -> str:
    """Names both versions, e.g. "console speaks protocol 2, agent speaks protocol 1"."""
    me = "agent" if peer == "console" else "console"
    return f"{peer} speaks protocol {peer_version}, {me} speaks protocol {PROTOCOL_VERSION}"


def decode(line: bytes | str) -> Message:
    """Parse and validate one line into a message dict, defaults filled in.

    Raises ProtocolError (and nothing else) for anything that is not a valid message of
    this protocol version; its ``re`` is set when the line was a request with a readable id.
    """
    msg = _parse(line)
    if not isinstance(msg, dict):
        raise ProtocolError(E_BAD_MESSAGE, "a message must be a JSON object")
    raw_id = msg.get("id")
    re_id = raw_id if _is_int(raw_id) else None
    mtype = msg.get("type")
    if not isinstance(mtype, str):
        raise ProtocolError(E_BAD_MESSAGE, "missing field 'type' (a string)", re_id)
    table: dict[str, Field] | None  # None: a type this protocol does not know
    if mtype in (OK, ERROR):
        kind, table, peer = "reply", REPLIES[mtype], "agent"
    elif "id" in msg:
        kind, table, peer = "request", REQUESTS.get(mtype), "console"
    else:
        kind, table, peer = "event", EVENTS.get(mtype), "agent"
    version = msg.get("v")
    if not _is_int(version):
        raise ProtocolError(E_BAD_MESSAGE, "missing field 'v' (the protocol version)", re_id)
    if version != PROTOCOL_VERSION:
        raise ProtocolError(E_VERSION_MISMATCH, mismatch_message(peer, version), re_id)
    if kind == "request" and re_id is None:
        raise ProtocolError(E_BAD_MESSAGE, "field 'id' must be an integer")
    if table is None:
        if kind == "event" and mtype in REQUESTS:
            raise ProtocolError(E_BAD_MESSAGE, f"request '{_clip(mtype)}' has no 'id'")
        known = sorted(REQUESTS) if kind == "request" else sorted(EVENTS)
        raise ProtocolError(
            E_UNKNOWN_TYPE,
            "unknown {} type '{}' (known: {})".format(kind, _clip(mtype), ", ".join(known)),
            re_id,
        )
    if kind == "reply":
        raw_re = msg.get("re")
        if not (_is_int(raw_re) or (mtype == ERROR and raw_re is None)):
            raise ProtocolError(E_BAD_MESSAGE, "reply: field 're' must be an integer")
    _check_fields(msg, table, mtype, re_id)
    return msg


def decode_request(line: bytes | str) -> Message:
    """decode() for the agent's side: anything but a request is refused."""
    msg = decode(line)
    if "id" not in msg or msg["type"] in (OK, ERROR):
        re_id = msg.get("id")
        raise ProtocolError(
            E_BAD_MESSAGE,
            "the agent only accepts requests (with an 'id')",
            re_id if _is_int(re_id) else None,
        )
    return msg


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# The --fake-gpus grammar: the console checks a config's `fake_gpus` with the parser the
# agent runs, so a spec the console accepts is one the agent starts with.
_SPEC_PART = re.compile(r"(\d+)[xX]([A-Za-z][A-Za-z0-9]*)(?:-(\d+)GB)?", re.IGNORECASE)
# Memory when a spec leaves it out ("8xH100"): the common size of that model.
_DEFAULT_MEM_GB = {"H100": 80, "H200": 141, "A100": 80, "L40S": 48, "L4": 24, "A10": 24}


def parse_fake_spec(spec: str) -> list[tuple[str, int]]:
    """ "8xH100-80GB" or "4xL40S-48GB,2xA100-40GB" -> [(model, memory GB), ...] per GPU."""
    gpus: list[tuple[str, int]] = []
    for part in spec.split(","):
        match = _SPEC_PART.fullmatch(part.strip())
        mem = match.group(3) if match else None
        if not match or not 1 <= int(match.group(1)) <= 64 or mem == "0" or (mem and int(mem) == 0):
            raise ValueError(
                f"bad fake GPU spec {part.strip()!r}: expected COUNTxMODEL[-MEMGB] such as 8xH100-80GB, "
                "comma-separated for a mix (4xL40S-48GB,2xA100-40GB)"
            )
        model = match.group(2).upper()
        mem_gb = int(mem) if mem else _DEFAULT_MEM_GB.get(model, 24)
        gpus.extend([(model, mem_gb)] * int(match.group(1)))
    return gpus
