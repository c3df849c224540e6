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


def test_each_line_kind_says_what_it_lacks_naming_the_line():
    lines = [
        {"kind": "extend", "name": "p", "submit": 1},
        {"kind": "deposit", "user": "ann", "submit": 1},
        {"kind": "silent", "submit": 1},
        {"kind": "fail", "submit": 1},
        {"name": "f", "mode": "flex", "bid": 1, "submit": 0, "renew_hours": 1},
        {"kind": "fail", "name": "f", "submit": 1, "exit_code": 0},
        {"kind": "lost", "node": "h", "submit": 1, "nodee": "x"},
    ]
    msgs = refusals(*(json.dumps(x) for x in lines))
    assert msgs[0] == "t.jsonl:1: (top level): an extend line needs hours"
    assert msgs[1] == "t.jsonl:2: (top level): a deposit line needs amount (currency, > 0) and user"
    assert msgs[2] == "t.jsonl:3: (top level): a silent line needs node (the node's name)"
    assert msgs[3] == "t.jsonl:4: (top level): a fail line needs name"
    assert msgs[4] == "t.jsonl:5: (top level): renew_hours belongs to priority job lines"
    assert msgs[5].startswith("t.jsonl:6: exit_code: ")
    assert msgs[6] == "t.jsonl:7: nodee: unknown key"


def test_every_kind_reads_with_its_line_number(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [
        {"name": "p", "mode": "priority", "hours": 1, "auto_renew": True, "renew_hours": 0.5,
         "submit": 0},
        {"kind": "deposit", "user": "ann", "amount": 5, "submit": 1},
        {"kind": "extend", "name": "p", "hours": 0.25, "submit": 2},
        {"kind": "fail", "name": "p", "exit_code": 3, "submit": 3},
        {"kind": "silent", "node": "h", "submit": 4},
        {"kind": "back", "node": "h", "submit": 5},
        {"kind": "lost", "node": "h", "submit": 6},
    ]  # fmt: skip
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    trace = read_trace(path)
    assert [(t.kind, t.line) for t in trace] == [
        ("job", 1), ("deposit", 2), ("extend", 3), ("fail", 4), ("silent", 5), ("back", 6),
        ("lost", 7),
    ]  # fmt: skip
    assert trace[0].job_spec().renew_hours == 0.5
