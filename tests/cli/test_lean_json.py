"""The lean client's JSON (cli/lean.py) is the standard `json`'s, byte for byte: what it
sends the leader and what a script reads from `skyops submit --json` must not depend on
which client took the call."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyops_tui.cli import lean

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal, with NaN equal to itself (json writes and reads it as NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_the_c_module_is_what_runs_here():
    """Otherwise every comparison below would be json against itself."""
    assert lean._scan is not None and lean._encode is not None


@given(values)
def test_written_as_json_writes_it(value):
    assert lean._dumps(value) == json.dumps(value, separators=(",", ":"))
    assert lean._dumps(value, indent=2) == json.dumps(value, indent=2)


@given(values)
def test_read_as_json_reads_it(value):
    for text in (json.dumps(value), json.dumps(value, indent=2) + "\n"):
        assert same(lean._loads(text.encode()), json.loads(text))


@pytest.mark.parametrize(
    "line",
    [b'{"a": "\x01"}', b'{"a": 1} x', b"", b"{", b'"\\q"', b"\xff", b"  {}", b"[1,]"],
)
def test_what_json_refuses_is_refused_with_its_error(line):
    try:
        expected = json.loads(line)
    except ValueError as e:
        with pytest.raises(type(e)) as got:
            lean._loads(line)
        assert str(got.value) == str(e)
    else:  # json reads it (leading blanks): so does the lean client
        assert lean._loads(line) == expected


def test_keys_json_converts_are_converted_as_json_does():
    value = {1: "a", None: [1.5, {True: math.inf}]}
    assert lean._dumps(value) == json.dumps(value, separators=(",", ":"))
    assert lean._dumps(value, indent=2) == json.dumps(value, indent=2)
