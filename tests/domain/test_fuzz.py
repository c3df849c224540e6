"""Bad input never crashes a reader: each one refuses with its own clear error.

- the agent protocol decoder: only `ProtocolError`;
- the config loader: only `InputError`, each message naming the source and the key;
- the trace reader: only `InputError`, each message naming the line;
- the plan parser: only `InputError`, each message naming the file.

CI-sized (a few hundred examples each); `benchmarks/fuzz.py` runs 100,000+ inputs.
"""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skyops_agent import protocol
from skyops_tui.domain.config import DEMO_CONFIG, parse_config
from skyops_tui.domain.errors import InputError
from skyops_tui.plan import schema
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
    try:
        schema.parse_plan_text(text, "plan.toml")
    except InputError as e:
        assert e.messages
        for m in e.messages:
            assert m.startswith("plan.toml"), m


# -- raw text: what arrives, before any parser has turned it into values -------------------

DEEP = 100_000
GIANT = "9" * 5000  # more digits than Python turns into an int
HUGE = "9" * 400  # an int, but past float's range and SQLite's INTEGER
HOSTILE_TOML = [
    "[" * DEEP + "]" * DEEP,
    "{a = " * DEEP + "1" + "}" * DEEP,
    GIANT,
    "-" + GIANT,
    HUGE,
    "inf",
    "-inf",
    "nan",
    "1e300",
    '"a\\u0000b"',
    '["a\\u0000"]',
    '"[bold]x"',
    '"[/x]"',
    '"\\u001b[2J"',
    "[]",
    '[""]',
    "4097",
]
HOSTILE_JSON = [
    "[" * DEEP + "]" * DEEP,
    '{"a": ' * DEEP + "1" + "}" * DEEP,
    GIANT,
    "-" + GIANT,
    HUGE,
    "-" + HUGE,
    "NaN",
    "Infinity",
    "1e999",
    '"a\\u0000b"',
    '"[bold]x"',
]

CONFIG_TEXT = """[cluster]
name = "lab"
currency = "$"
grace_s = 20
stop_grace_s = 5

[[node_types]]
name = "H100"
rate = 2.5

[[nodes]]
name = "h"
fake_gpus = "8xH100-80GB"
count = 2

[accounts]
operators = ["ops"]
credit_limit = 0
"""


def plant(text: str, key: str, value: str) -> str:
    """The text with the value of the first `key = ...` line replaced."""
    lines = text.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
    lines[i] = f"{key} = {value}"
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("value", HOSTILE_TOML, ids=lambda v: v[:12])
@pytest.mark.parametrize(
    "key", ["name", "currency", "grace_s", "stop_grace_s", "rate", "count", "credit_limit"]
)
def test_config_text_with_a_hostile_value_is_refused_naming_where(tmp_path, key, value):
    from skyops_tui.domain.config import load_config

    path = tmp_path / "cfg.toml"
    path.write_text(plant(CONFIG_TEXT, key, value))
    try:
        cfg = load_config(path)
    except InputError as e:
        for m in e.messages:
            assert re.match(rf"^{re.escape(str(path))}(:\d+)?: \S", m), m
        return
    # What is accepted is what the grid can use and show
    numbers = [cfg.cluster.grace_s, cfg.cluster.stop_grace_s, cfg.accounts.credit_limit]
    assert all(math.isfinite(x) and 0 <= x <= 1e9 for x in numbers), numbers
    assert cfg.rate("H100") < 2**63 // (64 * 24 * 366)
    assert len(cfg.all_nodes()) <= 4096
    for text in (cfg.cluster.name, cfg.cluster.currency):
        assert all(c not in "[]" and c.isprintable() for c in text), text


PLAN_TEXT = """[[nodes]]
name = "h"
fake_gpus = "8xH100-80GB"
count = 2

[[jobs]]
name = "train"
mode = "flex"
gpus = 1
bid = 1.0
command = ["python", "train.py"]
workdir = "/data"

[[reservations]]
name = "nightly"
gpu_type = "H100"
gpus = 2
start = 2030-01-01T02:00:00
hours = 4
"""


@pytest.mark.parametrize("value", HOSTILE_TOML, ids=lambda v: v[:12])
@pytest.mark.parametrize("key", ["count", "gpus", "bid", "command", "workdir", "start"])
def test_plan_text_with_a_hostile_value_is_refused_naming_the_file(key, value):
    try:
        plan = schema.parse_plan_text(plant(PLAN_TEXT, key, value), "plan.toml")
    except InputError as e:
        for m in e.messages:
            assert re.match(r"^plan\.toml(:\d+)?: \S", m), m
        return
    job = plan.jobs[0]
    assert job.argv and not any("\0" in a for a in [*job.argv, job.workdir or ""])


def json_with(line: str, key: str, value: str) -> str:
    obj = json.loads(line)
    obj[key] = "\x01here\x01"
    return json.dumps(obj).replace(json.dumps("\x01here\x01"), value)


TRACE_LINE = '{"name": "a", "submit": 0, "mode": "flex", "gpus": 1, "bid": 1.0, "runtime": 60}'


@pytest.mark.parametrize("value", HOSTILE_JSON, ids=lambda v: v[:12])
@pytest.mark.parametrize("key", ["submit", "gpus", "name", "runtime"])
def test_trace_text_with_a_hostile_value_is_refused_naming_the_line(key, value):
    lines = [TRACE_LINE.replace('"a"', '"first"'), json_with(TRACE_LINE, key, value)]
    with pytest.raises(InputError) as e:
        parse_lines(lines, "t.jsonl")
    assert e.value.messages and all(m.startswith("t.jsonl:2: ") for m in e.value.messages)


@pytest.mark.parametrize("value", HOSTILE_JSON, ids=lambda v: v[:12])
@pytest.mark.parametrize("key", ["id", "protocol", "ended_at", "exit_code", "job_id"])
def test_protocol_bytes_with_a_hostile_value_are_refused(key, value):
    hello = protocol.encode(protocol.request(protocol.HELLO, 1, protocol=1)).decode()
    exited = protocol.encode(
        protocol.event(
            protocol.JOB_EXITED,
            job_id="j1-r1-p0",
            exit_code=0,
            signal=None,
            stop_reason=None,
            ended_at=1.0,
        )
    ).decode()
    base = hello if key in ("id", "protocol") else exited
    with pytest.raises(protocol.ProtocolError) as e:
        protocol.decode(json_with(base, key, value).encode())
    assert e.value.code and e.value.message


def test_the_benchmark_fuzzer_finds_nothing_in_a_ci_sized_run(capsys):
    """benchmarks/fuzz.py itself, raw text and planted values included, at 2,000 inputs."""
    from benchmarks import fuzz

    code = fuzz.main(["--inputs", "2000", "--seed", "7"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["inputs"] == 2000
    assert set(summary["readers"]) == {
        "protocol.decode",
        "parse_config",
        "parse_config_text",
        "parse_lines",
        "parse_plan_text",
    }
    examples = [x for r in summary["readers"].values() for x in r.get("examples", [])]
    assert code == 0 and summary["crashes"] == 0, examples
