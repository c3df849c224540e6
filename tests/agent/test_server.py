"""`skyops-agent serve --stdio` as the console sees it: a subprocess speaking JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys

from skyops_agent import protocol


def test_hello_reports_versions_and_fake_gpus(start_agent):
    agent = start_agent()
    reply = agent.call(protocol.HELLO, protocol=protocol.PROTOCOL_VERSION, console_version="t")
    assert reply["protocol"] == 3 and reply["agent_version"]
    assert reply["fake_gpus"] is True and reply["zipapp"] is None
    assert agent.close() == 0


def test_version_mismatch_is_refused_naming_both_versions(start_agent):
    agent = start_agent()
    reply = agent.request(protocol.HELLO, protocol=1)
    assert reply["type"] == protocol.ERROR and reply["code"] == protocol.E_VERSION_MISMATCH
    assert reply["message"] == "console speaks protocol 1, agent speaks protocol 3"
    agent.send_line(b'{"v": 1, "type": "hello", "id": 77, "protocol": 1}')
    envelope = agent.reply(77)
    assert envelope["code"] == protocol.E_VERSION_MISMATCH
    assert "protocol 3" in envelope["message"] and "protocol 1" in envelope["message"]
    agent.call(protocol.HELLO, protocol=3)


def test_bad_input_gets_error_replies_and_the_agent_keeps_serving(start_agent):
    agent = start_agent()
    agent.send_line(b"this is not json")
    agent.send_line(b"\xff\xfe\xfd")
    agent.send_line(b'{"v": 3, "type": "format_disks", "id": 5}')
    agent.send_line(b'{"v": 3, "type": "start", "id": 6, "job_id": "j", "mode": "flex"}')
    agent.send_line(b'{"v": 3, "type": "ok", "re": 3}')
    agent.send_line(b"")
    agent.call(protocol.HELLO, protocol=3)
    errors = [m for m in agent.messages if m["type"] == protocol.ERROR]
    assert [e["code"] for e in errors] == [
        protocol.E_BAD_JSON,
        protocol.E_BAD_JSON,
        protocol.E_UNKNOWN_TYPE,
        protocol.E_BAD_FIELD,
        protocol.E_BAD_MESSAGE,
    ]
    assert "re" not in errors[0] and errors[2]["re"] == 5 and errors[3]["re"] == 6
    assert "format_disks" in errors[2]["message"] and "'argv'" in errors[3]["message"]
    assert agent.bad_lines == [], "every line the agent writes must decode"
    assert agent.close() == 0
    assert "Traceback" not in agent.stderr()


def test_inventory_and_telemetry_with_fake_gpus_are_marked_fake(start_agent, wait_for):
    agent = start_agent(fake_gpus="4xL40S-48GB,1xA100-40GB")
    inv = agent.call(protocol.INVENTORY)
    assert inv["fake"] is True and len(inv["gpus"]) == 5
    assert inv["gpus"][4]["name"] == "NVIDIA A100 40GB (fake)"
    sample = agent.call(protocol.TELEMETRY)
    assert sample["fake"] is True and len(sample["gpus"]) == 5
    assert agent.call(protocol.SUBSCRIBE, interval_s=0.1)["interval_s"] == 0.1
    wait_for(
        lambda: len(agent.events(protocol.TELEMETRY_EVENT)) >= 3,
        "three telemetry events after subscribing",
    )
    assert all(e["fake"] is True for e in agent.events(protocol.TELEMETRY_EVENT))
    agent.call(protocol.SUBSCRIBE, interval_s=0)
    assert agent.close() == 0


def test_inventory_without_a_driver_says_so_plainly(start_agent):
    agent = start_agent(fake_gpus=None)
    inv = agent.call(protocol.INVENTORY)
    assert inv["fake"] is False
    if not inv["available"]:
        assert inv["gpus"] == []
        assert "NVIDIA" in inv["message"] or "NVML" in inv["message"]
        assert inv["hint"].startswith("HINT: ")
    text = json.dumps(inv)
    assert "NVMLError" not in text and "Traceback" not in text
    tel = agent.call(protocol.TELEMETRY)
    assert tel["fake"] is False
    agent.close()
    assert "Traceback" not in agent.stderr()


def test_shutdown_answers_then_exits(start_agent):
    agent = start_agent()
    assert agent.call(protocol.SHUTDOWN)["jobs_left_running"] is True
    assert agent.proc.wait(10) == 0


def test_requests_about_unknown_jobs_are_refused(start_agent):
    agent = start_agent()
    for type, fields in [
        (protocol.STOP, {"reason": "x"}),
        (protocol.SIGNAL, {"signal": "SIGUSR1"}),
        (protocol.LOGS, {}),
        (protocol.FORGET, {}),
    ]:
        reply = agent.request(type, job_id="ghost", **fields)
        assert reply["code"] == protocol.E_UNKNOWN_JOB, reply
        assert "ghost" in reply["message"]


def test_version_command(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "skyops_agent", "version", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    info = json.loads(out.stdout)
    assert info["protocol"] == protocol.PROTOCOL_VERSION and info["zipapp"] is None
