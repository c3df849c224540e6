"""The protocol module alone: building, encoding, decoding and refusing messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from skyops_agent import protocol
from skyops_agent.protocol import ProtocolError, decode, encode


def refused(line) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode(line)
    return info.value


def test_messages_round_trip_through_one_line_each():
    messages = [
        protocol.request(protocol.HELLO, 1, protocol=1, console_version="0.1"),
        protocol.ok(1, agent_version="0.1.0", note="ünïcode ✓"),
        protocol.error(2, protocol.E_UNKNOWN_JOB, "no job 'x'"),
        protocol.event(protocol.JOB_STARTED, job_id="j1", pid=42),
        protocol.event(
            protocol.JOB_EXITED,
            job_id="j1",
            exit_code=None,
            signal="SIGKILL",
            stop_reason="preempted",
            ended_at=1.5,
        ),
        protocol.event(protocol.TELEMETRY_EVENT, gpus=[], fake=True, at=2.0),
    ]
    for msg in messages:
        line = encode(msg)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        decoded = decode(line)
        for key, value in msg.items():
            assert decoded[key] == value
        assert decoded["v"] == protocol.PROTOCOL_VERSION


def test_request_defaults_are_filled_in_and_not_shared():
    first = decode(encode(protocol.request(protocol.START, 7, job_id="a", argv=["x"], mode="flex")))
    assert first["env"] == {} and first["gpus"] == [] and first["resume"] is False
    assert first["workdir"] is None and first["checkpoint_dir"] == ""
    first["env"]["X"] = "1"
    second = decode(
        encode(protocol.request(protocol.START, 8, job_id="b", argv=["x"], mode="flex"))
    )
    assert second["env"] == {}
    stop = decode(encode(protocol.request(protocol.STOP, 9, job_id="a", reason="preempted")))
    assert stop["grace_s"] == protocol.DEFAULT_GRACE_S and stop["checkpoint_signal"] is None


@pytest.mark.parametrize(
    "line, code",
    [
        (b"not json", protocol.E_BAD_JSON),
        (b"\xff\xfe", protocol.E_BAD_JSON),
        (b'{"v": 3, "type": "hello", "id": 1, "protocol": NaN}', protocol.E_BAD_JSON),
        (b"[1, 2]", protocol.E_BAD_MESSAGE),
        (b'"hello"', protocol.E_BAD_MESSAGE),
        (b'{"v": 3, "id": 1}', protocol.E_BAD_MESSAGE),
        (b'{"type": "hello", "id": 1, "protocol": 1}', protocol.E_BAD_MESSAGE),
        (b'{"v": "1", "type": "jobs", "id": 1}', protocol.E_BAD_MESSAGE),
        (b'{"v": 3, "type": "jobs", "id": true}', protocol.E_BAD_MESSAGE),
        (b'{"v": 3, "type": "start"}', protocol.E_BAD_MESSAGE),
        (b'{"v": 3, "type": "ok"}', protocol.E_BAD_MESSAGE),
        (b'{"v": 3, "type": "launch_missiles"}', protocol.E_UNKNOWN_TYPE),
    ],
)
def test_malformed_lines_are_refused_with_a_code(line, code):
    assert refused(line).code == code


def test_unknown_request_type_is_refused_naming_it_and_keeping_the_id():
    err = refused(encode(protocol.request("rm_rf", 5)))
    assert err.code == protocol.E_UNKNOWN_TYPE and err.re == 5
    assert "rm_rf" in err.message and "start" in err.message


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"argv": ["x"], "mode": "flex"}, "job_id"),
        ({"job_id": "j", "mode": "flex"}, "argv"),
        ({"job_id": "j", "argv": [], "mode": "flex"}, "argv"),
        ({"job_id": "j", "argv": "echo hi", "mode": "flex"}, "argv"),
        ({"job_id": "j", "argv": ["x"], "mode": "turbo"}, "mode"),
        ({"job_id": "../etc", "argv": ["x"], "mode": "flex"}, "job_id"),
        ({"job_id": "j", "argv": ["x"], "mode": "flex", "gpus": [0, 0]}, "gpus"),
        ({"job_id": "j", "argv": ["x"], "mode": "flex", "gpus": [True]}, "gpus"),
        ({"job_id": "j", "argv": ["x"], "mode": "flex", "env": {"A": 1}}, "env"),
        ({"job_id": "j", "argv": ["x"], "mode": "flex", "resume": "yes"}, "resume"),
    ],
)
def test_start_fields_are_checked_against_the_table(fields, field):
    err = refused(encode(protocol.request(protocol.START, 3, **fields)))
    assert err.code == protocol.E_BAD_FIELD and err.re == 3
    assert f"'{field}'" in err.message


def test_version_mismatch_names_both_versions_on_either_side():
    request = refused(b'{"v": 1, "type": "hello", "id": 4, "protocol": 1}')
    assert request.code == protocol.E_VERSION_MISMATCH and request.re == 4
    assert request.message == "console speaks protocol 1, agent speaks protocol 3"
    older = refused(b'{"v": 2, "type": "jobs", "id": 5}')  # before `unstop`
    assert older.message == "console speaks protocol 2, agent speaks protocol 3"
    reply = refused(b'{"v": 4, "type": "ok", "re": 4}')
    assert reply.message == "agent speaks protocol 4, console speaks protocol 3"


def test_an_error_without_re_answers_an_unreadable_request():
    msg = decode(encode(protocol.error(None, protocol.E_BAD_JSON, "line is not JSON")))
    assert "re" not in msg and msg["code"] == protocol.E_BAD_JSON


def test_telemetry_without_id_is_the_event_and_with_id_the_request():
    assert decode(encode(protocol.request(protocol.TELEMETRY, 1)))["id"] == 1
    err = refused(encode(protocol.event(protocol.TELEMETRY_EVENT, gpus=[])))
    assert err.code == protocol.E_BAD_FIELD and "'fake'" in err.message


def test_decode_request_refuses_replies_and_events():
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(encode(protocol.ok(1)))
    assert info.value.code == protocol.E_BAD_MESSAGE
    with pytest.raises(ProtocolError):
        protocol.decode_request(encode(protocol.event(protocol.JOB_STARTED, job_id="j", pid=1)))
    with pytest.raises(ProtocolError) as info:
        protocol.decode_request(encode(protocol.request(protocol.START, 1)))
    assert info.value.re == 1


def test_unknown_extra_fields_are_ignored_for_forward_compatibility():
    msg = decode(encode(protocol.request(protocol.JOBS, 1, newer_field={"x": 1})))
    assert msg["newer_field"] == {"x": 1}


def test_deeply_nested_json_is_refused_not_crashed():
    assert refused(b"[" * 100_000 + b"]" * 100_000).code in (
        protocol.E_BAD_JSON,
        protocol.E_BAD_MESSAGE,
    )


def _decode_or_protocol_error(line):
    try:
        msg = decode(line)
    except ProtocolError as exc:
        assert exc.code and isinstance(exc.message, str)
        return None
    assert isinstance(msg, dict) and msg["v"] == protocol.PROTOCOL_VERSION
    return msg


@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_raise_protocol_error(data):
    _decode_or_protocol_error(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
any_type = st.sampled_from(
    sorted(protocol.REQUEST_TYPES | protocol.EVENT_TYPES | {protocol.OK, protocol.ERROR, "x"})
)
field_names = st.sampled_from(
    sorted({name for table in protocol.REQUESTS.values() for name in table} | {"re", "id"})
)


@given(json_values)
def test_fuzz_random_json_only_raises_protocol_error(value):
    _decode_or_protocol_error(json.dumps(value))


@given(
    any_type,
    st.one_of(st.just(1), st.integers(), st.text(max_size=3)),
    st.dictionaries(field_names, json_values, max_size=8),
)
def test_fuzz_near_valid_messages_only_raise_protocol_error(mtype, version, fields):
    msg = dict(fields, v=version, type=mtype)
    _decode_or_protocol_error(json.dumps(msg).encode())


def test_docs_name_every_message_field_and_error_code():
    """docs/protocol.md is the protocol's human form: it must not fall behind the tables."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    codes = [v for k, v in vars(protocol).items() if k.startswith("E_")]
    tables = list(protocol.REQUESTS.items()) + list(protocol.EVENTS.items())
    for mtype, fields in tables:
        assert f"`{mtype}`" in doc, mtype
        for name in fields:
            assert f"`{name}`" in doc, f"{mtype}.{name}"
    for code in codes:
        assert f"`{code}`" in doc, code
