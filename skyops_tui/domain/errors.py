"""Errors people see: each names the file, the key path and the reason."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


class InputError(Exception):
    """Bad input (config, plan, trace): one or more messages, each naming where and why."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("\n".join(messages))


class Refused(Exception):
    """A command that is valid but not allowed now (mode lock, no capacity, funds...)."""


def key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


NAME_RULE = "letters, digits and _ . : - only, starting with a letter or digit (max 100)"


def _is_name(err: ErrorDetails) -> bool:
    from .specs import NAME

    return (err.get("ctx") or {}).get("pattern") == NAME


def validation_messages(source: str, exc: ValidationError) -> list[str]:
    messages = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        if err["type"] == "string_pattern_mismatch" and _is_name(err):
            msg = NAME_RULE
        got = err.get("input")
        if err["type"] not in ("missing", "extra_forbidden") and not isinstance(got, dict | list):
            msg = f"{msg} (got {got!r})"
        messages.append(f"{source}: {key_path(loc)}: {msg}")
    return messages


def read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError([f"{path}: cannot read: {e}"]) from None
    return loads_toml(text, str(path))


def loads_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads, with every way it can fail on bad text answered as an InputError:
    nesting deeper than Python's stack (RecursionError) and an integer of more digits
    than Python converts (ValueError) are not TOMLDecodeErrors."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError([f"{source}: not valid TOML: {e}"]) from None
    except RecursionError:
        raise InputError([f"{source}: not valid TOML: nested too deeply"]) from None
    except ValueError:  # an integer longer than Python converts (sys.get_int_max_str_digits)
        digits = sys.get_int_max_str_digits()
        m = re.search(rf"[0-9][0-9_]{{{digits},}}", text)
        where = f"{source}:{text.count(chr(10), 0, m.start()) + 1}" if m else source
        raise InputError(
            [f"{where}: not valid TOML: a number longer than {digits} digits"]
        ) from None
