"""`skyops submit` in a shell loop, at the speed of `sbatch`: the lean client.

A script that submits jobs one call at a time pays the client's start-up on every
call. The full command line imports pydantic, rich and the whole grid model (about
80 ms of imports before the first byte is sent); this module uses the standard library
only. It handles the common case, a submission to a leader already serving its socket,
and hands everything else to the full client (`None` from `submit`): no leader
answering (the owning account then leads for the moment), `--connect`, flags it does
not know, values argparse would refuse, and a spec the leader finds invalid, so those
get the full client's messages and exit codes. A refusal of a valid spec (a name in
use, an account that cannot pay) is printed here as the full client prints it.

The leader validates every command whoever sends it (docs/api.md), so nothing is
checked here that the leader does not check again.

JSON goes through `_json`, the C module under the standard `json`, which imports `re`
(and `re` imports enum): 5 ms of a call's start-up. The texts are `json`'s exactly
(tests/cli/test_lean_json.py); a line the C module cannot read is read again by
`json`, whose error is the one given.
"""

from __future__ import annotations

import _socket  # the C module under `socket`: 1.5 ms less start-up (no enum classes)
import math
import os
import sys

from ..locations import db_file, demo_db_file

TYPE_CHECKING = False  # typing imports re: mypy and ruff take this name as typing's
if TYPE_CHECKING:
    from collections.abc import Callable

EXIT_OK, EXIT_REFUSED, EXIT_STORE = 0, 1, 4  # cli/headless.py's codes
API_VERSION = 1  # api/protocol.py; a mismatch hands over to the full client
GLOBAL_VALUE = {"--config", "--db"}
VALUE = {"--mode", "--name", "--gpus", "--gpu-type", "--hours", "--bid", "--reservation",
         "--array", "--as"}  # fmt: skip
NUMBERS = {"--gpus": int, "--array": int, "--hours": float, "--bid": float}
MODES = ("priority", "commit", "flex")


class _Decoding:
    """What `_json.make_scanner` reads off a `json.JSONDecoder`: `json.loads`'s defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(
        {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.__getitem__
    )


def _unencodable(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_scan: Callable[[str, int], tuple[object, int]] | None = None
_encode: Callable[[object, int], list[str]] | None = None
try:
    from _json import encode_basestring_ascii as _quote
    from _json import make_encoder, make_scanner

    _scan = make_scanner(_Decoding())  # type: ignore[arg-type]  # reads the attributes
    # json.dumps(value, separators=(",", ":")): no circular check, ASCII, NaN allowed.
    _encode = make_encoder(None, _unencodable, _quote, None, ":", ",", False, False, True)
except (ImportError, TypeError):  # an interpreter without it: the json module's own
    _scan = _encode = None


def _loads(line: bytes) -> object:
    """`json.loads(line)`."""
    try:
        if _scan is None:
            raise ValueError
        text = line.decode()
        value, end = _scan(text, 0)
        if text[end:].strip():
            raise ValueError
        return value
    except Exception:  # noqa: BLE001  # json reads it again and says what is wrong
        import json

        return json.loads(line)


def _dumps(value: object, indent: int | None = None) -> str:
    """`json.dumps(value, indent=indent)`, compact (`separators=(",", ":")`) without an
    indent."""
    try:
        if _encode is None:
            raise TypeError
        if indent is None:
            return "".join(_encode(value, 0))
        return _indented(value, " " * indent, 0)
    except (TypeError, ValueError):
        import json

        if indent is None:
            return json.dumps(value, separators=(",", ":"))
        return json.dumps(value, indent=indent)


def _indented(value: object, step: str, level: int) -> str:
    if isinstance(value, dict) and value:
        if not all(isinstance(k, str) for k in value):
            raise TypeError  # json's own rules for other keys
        pad = "\n" + step * (level + 1)
        items = (f"{_quote(k)}: {_indented(v, step, level + 1)}" for k, v in value.items())
        return "{" + pad + ("," + pad).join(items) + "\n" + step * level + "}"
    if isinstance(value, (list, tuple)) and value:
        pad = "\n" + step * (level + 1)
        items = (_indented(v, step, level + 1) for v in value)
        return "[" + pad + ("," + pad).join(items) + "\n" + step * level + "]"
    return "".join(_encode(value, 0))  # type: ignore[misc]  # a scalar, {} or []: as compact


def _parse(argv: list[str]) -> dict | None:
    """The flags of `[--config F] [--db P] submit [FLAGS] -- COMMAND...`, or None."""
    opts: dict[str, object] = {}
    seen_submit = False
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--" and seen_submit:
            opts["argv"] = argv[i + 1 :]
            break
        if a == "submit" and not seen_submit:
            seen_submit = True
            i += 1
            continue
        key, eq, val = a.partition("=")
        if key in GLOBAL_VALUE or (seen_submit and key in VALUE):
            if not eq:
                if i + 1 >= len(argv):
                    return None
                i += 1
                val = argv[i]
            if key in opts:
                return None
            opts[key] = val
        elif a == "--json" and seen_submit:
            opts["--json"] = True
        else:
            return None
        i += 1
    command = opts.get("argv")
    if not seen_submit or not command:
        return None
    for key, kind in NUMBERS.items():
        if key in opts:
            try:
                opts[key] = kind(opts[key])
            except ValueError:
                return None
            if kind is float and not math.isfinite(opts[key]):  # type: ignore[arg-type]
                return None
    if opts.get("--mode", "flex") not in MODES:
        return None
    return opts


def _socket_path(opts: dict) -> str | None:
    """Where the leader listens, by the rule of docs/api.md ("Where the socket is").

    The config file is read for `[cluster] api_socket` alone, and parsed only when that
    key is in its text: tomllib costs a shell loop 7 ms a call. The leader judges the
    submission under its own config; a config the full client cannot read still hands
    over when it names a socket or cannot be opened."""
    given = os.environ.get("SKYOPS_SOCKET")
    config = opts.get("--config")
    if not given and config:
        try:
            with open(os.path.expanduser(str(config)), "rb") as f:
                text = f.read()
        except OSError:
            return None  # the full client names the file and the reason
        if b"api_socket" in text:
            import tomllib

            try:
                cluster = tomllib.loads(text.decode()).get("cluster", {})
            except ValueError:
                return None
            given = cluster.get("api_socket") if isinstance(cluster, dict) else None
            if given is not None and not isinstance(given, str):
                return None
    if given:
        return os.path.expanduser(given)
    if opts.get("--db"):
        db = os.path.expanduser(str(opts["--db"]))
    else:  # as cli/headless.db_of: a real grid's state file, or the demo's
        db = db_file() if config else demo_db_file()
    return _with_suffix(db, ".sock")


def _with_suffix(path: str, suffix: str) -> str:
    """`Path(path).with_suffix(suffix)` without pathlib."""
    head, name = os.path.split(path.rstrip("/") or path)
    stem = os.path.splitext(name)[0]
    return os.path.join(head, stem + suffix)


def _readline(s: _socket.socket, buf: bytearray) -> bytes:
    """One newline-ended line from s (the rest stays in buf); b"" when s closed first."""
    while True:
        end = buf.find(b"\n")
        if end >= 0:
            line = bytes(buf[: end + 1])
            del buf[: end + 1]
            return line
        chunk = s.recv(65536)
        if not chunk:
            return b""
        buf += chunk


def _exchange(path: str, payload: dict, opts: dict) -> dict:
    """Hello (the kernel's name for the caller), one command, its answer. Until the
    command is sent, any trouble hands over (_Handover); after, it is the full
    client's exit 4 (_Gone): a new leader settles an unanswered command as not
    applied (docs/api.md, "Exactly once"), so the caller is told to try again."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    buf = bytearray()
    try:
        try:
            s.connect(path)
            hello = _loads(_readline(s, buf) or b"null")
        except (OSError, ValueError):
            raise _Handover from None
        if not isinstance(hello, dict) or hello.get("v") != API_VERSION:
            raise _Handover
        spec = payload["spec"]
        assert isinstance(spec, dict)
        spec["user"] = opts.get("--as") or hello.get("user")  # the kernel's, said first
        request = {"v": API_VERSION, "type": "command", "id": 1, "kind": "submit",
                   "payload": payload}  # fmt: skip
        try:
            s.sendall(_dumps(request).encode() + b"\n")
            reply = _loads(_readline(s, buf) or b"null")
        except (OSError, ValueError):
            reply = None
        if not isinstance(reply, dict):
            raise _Gone
        return reply
    finally:
        s.close()


class _Handover(Exception):
    """The full client must take this call: nothing has been changed."""


class _Gone(Exception):
    """The leader went away after the command was sent, before it answered."""


def submit(argv: list[str]) -> int | None:
    """Exit code of `skyops submit` handled here, or None for the full client."""
    opts = _parse(argv)
    if opts is None:
        return None
    path = _socket_path(opts)
    if path is None:
        return None
    spec: dict[str, object] = {
        "name": opts.get("--name", "job"),
        "mode": opts.get("--mode", "flex"),
    }
    spec["argv"] = opts["argv"]
    spec["gpus"] = opts.get("--gpus", 1)
    for flag, key in (("--gpu-type", "gpu_type"), ("--hours", "hours"), ("--bid", "bid"),
                      ("--reservation", "reservation")):  # fmt: skip
        if flag in opts:
            spec[key] = opts[flag]
    payload: dict[str, object] = {"spec": spec}
    if "--name" not in opts:
        payload["auto_name"] = True
    if "--array" in opts:
        payload["count"] = opts["--array"]
    if "--as" in opts:
        payload["as_user"] = opts["--as"]
    try:
        reply = _exchange(path, payload, opts)
    except _Handover:
        return None
    except _Gone:
        message = ("the scheduler went away before answering; nothing was applied "
                   "(see `skyops jobs`), try again")  # fmt: skip
        if opts.get("--json"):
            sys.stdout.write(_dumps({"status": "unavailable", "errors": [message]}, indent=2))
            sys.stdout.write("\n")
        sys.stderr.write(f"error: {message}\n")
        return EXIT_STORE
    if reply.get("type") == "ok":
        result = reply.get("result") or {}
        jobs = result["jobs"] if "--array" in opts else [result]
        if opts.get("--json"):
            out = _dumps({"status": "submitted", "jobs": jobs}, indent=2)
            sys.stdout.write(out + "\n")
        else:
            sys.stdout.write(
                "".join(
                    f"Submitted {j['mode']} job {j['name']} (id {j['id']}): {j['state']}.\n"
                    for j in jobs
                )
            )
        sys.stdout.flush()
        return EXIT_OK
    if reply.get("code") == "refused" and not reply.get("invalid"):
        message = str(reply.get("message", ""))
        if opts.get("--json"):
            sys.stdout.write(_dumps({"status": "refused", "errors": [message]}, indent=2) + "\n")
        sys.stderr.write(f"refused: {message}\n")
        return EXIT_REFUSED
    return None  # invalid flags, a store fault, a leader stepping down: the full client's words
