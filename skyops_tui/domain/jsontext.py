"""JSON text of documents that may list thousands of items: the API's answers, the
command journal's results."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def json_text(
    value: Any,
    separators: tuple[str, str] = (", ", ": "),
    default: Callable[[Any], Any] | None = None,
) -> str:
    """`json.dumps(value, separators=separators, default=default)`, the same text, with
    a long list encoded a slice at a time. CPython's encoder keeps every piece of a
    document (each key, value and comma: a string each) until it joins them: some 650
    bytes a job of a 2,000-job answer at the peak, and a process keeps the heap it grew
    (docs/architecture.md, *What a leader loads*)."""
    return _json_text(value, _encoder(separators, default), separators)


_ENCODERS: dict[tuple[tuple[str, str], Callable[[Any], Any] | None], json.JSONEncoder] = {}
LONG = 256  # items: a list is encoded this many at a time


def _encoder(separators: tuple[str, str], default: Callable[[Any], Any] | None) -> json.JSONEncoder:
    key = (separators, default)
    enc = _ENCODERS.get(key)
    if enc is None:
        enc = _ENCODERS[key] = json.JSONEncoder(separators=separators, default=default)
    return enc


def _json_text(value: Any, enc: json.JSONEncoder, seps: tuple[str, str]) -> str:
    if isinstance(value, list | tuple) and len(value) > LONG:
        chunks = [enc.encode(value[i : i + LONG])[1:-1] for i in range(0, len(value), LONG)]
        return "[" + seps[0].join(chunks) + "]"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        parts = [enc.encode(k) + seps[1] + _json_text(v, enc, seps) for k, v in value.items()]
        return "{" + seps[0].join(parts) + "}"
    return enc.encode(value)
