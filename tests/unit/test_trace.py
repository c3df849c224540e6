"""Trace lines a JSON parser cannot turn into values (deeper than the stack, integers
longer than Python converts) are refused like any bad line: named by line number, the
other lines still judged, and no traceback."""

from __future__ import annotations

import json

import pytest

from skyops_tui.domain.errors import InputError
from skyops_tui.sim.trace import parse_lines, read_trace

GOOD = json.dumps({"name": "a", "mode": "flex", "bid": 1, "submit": 0})


def refusals(*lines: str) -> list[str]:
    with pytest.raises(InputError) as e:
        parse_lines(list(lines), "t.jsonl")
    return e.value.messages


def test_deep_nesting_names_the_line():
    deep = '{"name": "b", "submit": 0, "mode": "flex", "bid": 1, "x": ' + "[" * 100_000
    deep += "]" * 100_000 + "}"
    assert refusals(GOOD, deep) == ["t.jsonl:2: not valid JSON: nested too deeply"]


def test_a_giant_integer_names_the_line():
    giant = '{"name": "b", "submit": ' + "9" * 5000 + ', "mode": "flex", "bid": 1}'
    assert refusals(giant, GOOD, "[" * 10_000) == [
        "t.jsonl:1: not valid JSON: a number longer than 4300 digits",
        "t.jsonl:3: not valid JSON: nested too deeply",
    ]


def test_a_file_with_such_lines_is_refused_at_read(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(GOOD + "\n\n" + '{"gpus": ' + "1" * 4301 + "}\n")
    with pytest.raises(InputError) as e:
        read_trace(path)
    assert e.value.messages == [f"{path}:3: not valid JSON: a number longer than 4300 digits"]
