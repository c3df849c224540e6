"""The API's wire format: versioned JSON lines, in the agent protocol's style.

One JSON object per line, UTF-8, each with ``"v": API_VERSION`` and a ``"type"``. The
server speaks first (``hello``: who the kernel says the caller is). Requests carry an
integer ``"id"``; replies carry ``"re"`` and are ``ok`` (``result``) or ``error``
(``code``, ``message``). A ``watch`` request is answered by a ``snapshot`` and then
``change`` messages with the same ``re`` until the connection closes. Unknown extra
fields are ignored; anything else that changes bumps API_VERSION (docs/api.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

from ..domain.jsontext import json_text

API_VERSION = 1
MAX_LINE_BYTES = 16 * 1024 * 1024  # a plan of a few thousand items fits many times over

HELLO, OK, ERROR = "hello", "ok", "error"
COMMAND, QUERY, WATCH = "command", "query", "watch"
SNAPSHOT, CHANGE = "snapshot", "change"
REQUESTS = (COMMAND, QUERY, WATCH)

# Error codes.
E_BAD_JSON = "bad_json"
E_BAD_MESSAGE = "bad_message"
E_VERSION = "version_mismatch"
E_UNKNOWN_TYPE = "unknown_type"
E_REFUSED = "refused"  # the command or query was refused; nothing changed
E_NOT_LEADING = "not_leading"  # this process no longer leads; nothing changed
E_STORE = "store"  # the state store cannot be written; nothing changed
E_INTERNAL = "internal"


class ProtocolError(Exception):
    def __init__(self, code: str, message: str, re: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.re = re

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def _finite(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        raise ValueError("inf and nan are not JSON")
    return x


def encode(msg: dict[str, Any]) -> bytes:
    """One line. The text is json.dumps's; `json_text` makes it with less memory at
    its peak, which a leader keeps (an answer may list thousands of jobs)."""
    return (json_text({"v": API_VERSION, **msg}, (",", ":"), str) + "\n").encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in this protocol")


def decode(line: bytes) -> dict[str, Any]:
    """One message, checked for the envelope every message shares."""
    if len(line) > MAX_LINE_BYTES:
        raise ProtocolError(E_BAD_MESSAGE, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        msg = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(E_BAD_JSON, f"not a JSON line: {e}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(E_BAD_MESSAGE, "a message is a JSON object")
    rid = msg.get("id")
    rid = rid if isinstance(rid, int) and not isinstance(rid, bool) else None
    if msg.get("v") != API_VERSION:
        raise ProtocolError(
            E_VERSION, f"protocol version {msg.get('v')!r}; this side speaks {API_VERSION}", rid
        )
    if not isinstance(msg.get("type"), str):
        raise ProtocolError(E_BAD_MESSAGE, "type: must be a string", rid)
    return msg


def check_request(msg: dict[str, Any]) -> tuple[int, str, str, dict]:
    """(id, type, kind, payload) of a request, or ProtocolError naming the field."""
    rid = msg.get("id")
    if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < 2**63:
        raise ProtocolError(E_BAD_MESSAGE, "id: must be an integer >= 0")
    kind_of = msg["type"]
    if kind_of not in REQUESTS:
        raise ProtocolError(
            E_UNKNOWN_TYPE, f"type: {kind_of!r} is not one of {', '.join(REQUESTS)}", rid
        )
    kind = msg.get("kind", "")
    if not isinstance(kind, str) or (kind_of != WATCH and not kind):
        raise ProtocolError(E_BAD_MESSAGE, "kind: must be a non-empty string", rid)
    payload = msg.get("payload", {})
    if not isinstance(payload, dict):
        raise ProtocolError(E_BAD_MESSAGE, "payload: must be an object", rid)
    return rid, kind_of, kind, payload


# The fields of a `quote` query: the CLI builds it from its flags, the server reads it.
QUOTE_KEYS = (
    "kind",
    "gpus",
    "nodes",
    "gpu_type",
    "hours",
    "hourly",
    "auto_renew",
    "bid",
    "reservation",
    "start",
    "repeat",
    "count",
    "user",
)
