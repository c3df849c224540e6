"""Bad input never crashes a reader: each one refuses with its own clear error.

- the agent protocol decoder: only `ProtocolError`;
- the config loader: only `InputError`, each message naming the source and the key;
- the trace reader: only `InputError`, each message naming the line;
- the plan parser: only `InputError`, each message naming the file.

CI-sized (a few hundred examples each); `benchmarks/fuzz.py` runs 100,000+ inputs.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyops_agent import protocol
from skyops_tui.domain.config import DEMO_CONFIG, parse_config
from skyops_tui.domain.errors import InputError
from skyops_tui.sim.trace import parse_lines

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = sorted({f for t in protocol.REQUESTS.values() for f in t} | {"v", "id", "type", "re"})


def near_messages() -> st.SearchStrategy[dict]:
    """Objects shaped like protocol messages, with fields of the wrong kind."""
    types = sorted(protocol.REQUESTS) + sorted(protocol.EVENTS) + ["ok", "error", "nope"]
    return st.fixed_dictionaries(
        {"type": st.sampled_from(types) | st.text(max_size=5)},
        optional={
            "v": st.just(protocol.PROTOCOL_VERSION) | scalars,
            "id": st.integers(0, 10**6) | scalars,
            **{f: json_values for f in FIELDS if f not in ("v", "id", "type")},
        },
    )


def decodes_or_refuses(line: bytes | str) -> None:
    try:
        msg = protocol.decode(line)
    except protocol.ProtocolError as e:
        assert e.code and e.message, e
        return
    assert isinstance(msg, dict) and msg["v"] == protocol.PROTOCOL_VERSION


@FAST
@given(st.binary(max_size=200))
def test_protocol_decoder_refuses_any_bytes_with_a_protocol_error(data):
    decodes_or_refuses(data)


@FAST
@given(near_messages())
def test_protocol_decoder_refuses_wrong_fields_with_a_protocol_error(msg):
    try:
        line = json.dumps(msg)
    except ValueError:
        return
    decodes_or_refuses(line)
    try:
        protocol.decode_request(line)
    except protocol.ProtocolError:
        pass


def test_protocol_decoder_refuses_deep_nesting():
    decodes_or_refuses("[" * 100_000 + "]" * 100_000)
    decodes_or_refuses(
        '{"v": 1, "type": "hello", "id": 1, "protocol": ' + "[" * 50_000 + "]" * 50_000 + "}"
    )


CONFIG_KEYS = {
    "cluster": ["name", "grace_s", "stop_grace_s", "tick_s", "heartbeat_timeout_s", "bogus"],
    "pricing": ["flex_floor", "min_outbid", "warn_before_s", "tiers", "bogus"],
    "accounts": ["operators", "default_balance", "credit_limit", "users"],
}


def configs() -> st.SearchStrategy[dict]:
    """The demo config with values replaced, keys added or tables of the wrong kind."""
    section = st.sampled_from(sorted(CONFIG_KEYS))

    def mutate(base: dict, sec: str, key: str, value, drop: bool) -> dict:
        data = json.loads(json.dumps(base))
        if drop:
            data.pop(sec, None)
            data[sec] = value
        else:
            data.setdefault(sec, {})
            if isinstance(data[sec], dict):
                data[sec][key] = value
        return data

    one = st.builds(
        mutate,
        st.just(DEMO_CONFIG),
        section,
        st.sampled_from(sorted({k for ks in CONFIG_KEYS.values() for k in ks})),
        json_values,
        st.booleans(),
    )
    nodes = st.builds(
        lambda v: {**DEMO_CONFIG, "nodes": v},
        st.lists(
            st.dictionaries(
                st.sampled_from(["name", "fake_gpus", "gpus", "port", "x"]), json_values, max_size=4
            ),
            max_size=3,
        ),
    )
    return one | nodes | st.dictionaries(st.text(max_size=8), json_values, max_size=4)


@FAST
@given(configs())
def test_config_loader_refuses_with_messages_naming_the_key(data):
    try:
        parse_config(data, "cfg.toml")
    except InputError as e:
        assert e.messages
        for m in e.messages:
            assert m.startswith("cfg.toml: "), m
            where = m[len("cfg.toml: ") :].split(": ", 1)
            assert len(where) == 2 and where[0] and where[1], m  # the key, then why


TRACE_KEYS = [
    "name",
    "user",
    "submit",
    "kind",
    "mode",
    "gpus",
    "nodes",
    "gpu_type",
    "runtime",
    "hours",
    "start",
    "repeat",
    "count",
    "reservation",
    "bid",
    "checkpoint_every",
    "zzz",
]


def trace_lines() -> st.SearchStrategy[list[str]]:
    obj = st.dictionaries(st.sampled_from(TRACE_KEYS), json_values, max_size=6)
    good = st.just('{"name": "a", "submit": 0, "mode": "flex", "gpus": 1, "bid": 1.0}')
    line = st.one_of(obj.map(lambda o: json.dumps(o, default=str)), st.text(max_size=40), good)
    return st.lists(line, min_size=1, max_size=6)


@FAST
@given(trace_lines())
def test_trace_reader_refuses_with_messages_naming_the_line(lines):
    try:
        parse_lines(lines, "t.jsonl")
    except InputError as e:
        assert e.messages
        for m in e.messages:
            assert re.match(r"^t\.jsonl:\d+: \S", m), m


def test_trace_reader_names_the_line_of_an_unknown_key():
    with pytest.raises(InputError) as e:
        parse_lines(['{"name": "a", "submit": 0, "mode": "flex", "bid": 1}', '{"nmae": "b"}'], "t")
    assert any(m.startswith("t:2: ") and "nmae" in m for m in e.value.messages), e.value.messages


PLAN_WORDS = [
    "[[jobs]]",
    "[[reservations]]",
    "[[bids]]",
    "[[nodes]]",
    "name",
    "mode",
    "gpus",
    "bid",
    "command",
    "user",
    "start",
    "hours",
    "=",
    '"x"',
    "1",
    "-1",
    "1e400",
    "nan",
    "[",
    "]",
    "{",
    "}",
    "\n",
    "true",
    '"flex"',
    '"priority"',
    "2026-01-01T00:00:00",
]


@FAST
@given(st.lists(st.sampled_from(PLAN_WORDS), max_size=30).map(" ".join) | st.text(max_size=80))
def test_plan_parser_refuses_with_messages_naming_the_file(text):
    schema = pytest.importorskip("skyops_tui.plan.schema")
    try:
        schema.parse_plan_text(text, "plan.toml")
    except InputError as e:
        assert e.messages
        for m in e.messages:
            assert m.startswith("plan.toml"), m
