"""Access: users act only on their own jobs, reservations and bids, operators on all;
the agent does nothing outside its protocol; no secret reaches the store or the logs.

Host keys are always verified: tests/fleet/test_ssh.py (unknown and changed keys are
refused with the fingerprint and the command to trust it).
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from skyops_agent import protocol
from skyops_agent.server import Server
from skyops_tui.control import commands
from skyops_tui.demo import DEMO_EPOCH, sim_runtime
from skyops_tui.domain.config import demo_config
from skyops_tui.domain.errors import Refused

NOW = DEMO_EPOCH + 60


@pytest.fixture
def rt():
    return sim_runtime(demo_config(operator="ops"), seeded=False, user="ops")


def run(rt, kind: str, payload: dict, actor: str) -> dict:
    return commands.run(rt.engine, kind, payload, actor, NOW)


def flex(name: str, user: str) -> dict:
    spec = {"name": name, "user": user, "mode": "flex", "gpus": 1, "gpu_type": "H100"}
    return {"spec": {**spec, "bid": 1.0, "argv": ["true"]}}


def priority(name: str, user: str) -> dict:
    spec = {"name": name, "user": user, "mode": "priority", "gpus": 1, "gpu_type": "H100"}
    return {"spec": {**spec, "hours": 1, "argv": ["true"]}}


def reservation(name: str, user: str) -> dict:
    return {
        "spec": {
            "name": name,
            "user": user,
            "gpu_type": "A100",
            "gpus": 2,
            "start": NOW + 3600,
            "hours": 2,
        }
    }


def refused(rt, kind: str, payload: dict, actor: str, *words: str) -> str:
    with pytest.raises(Refused) as e:
        run(rt, kind, payload, actor)
    for w in words:
        assert w in str(e.value), str(e.value)
    return str(e.value)


def test_users_act_only_on_their_own_jobs(rt):
    run(rt, "submit", flex("kims", "kim"), "kim")
    run(rt, "submit", priority("anas", "ana"), "ana")
    refused(rt, "submit", flex("forged", "kim"), "ana", "ana may not submit jobs as kim")
    refused(rt, "cancel", {"ref": "kims"}, "ana", "ana may not", "belongs to kim")
    refused(rt, "bid", {"ref": "kims", "bid": 2.0}, "ana", "ana may not", "kims")
    refused(rt, "extend", {"ref": "anas", "hours": 1}, "kim", "kim may not", "belongs to ana")
    refused(rt, "mode", {"ref": "kims", "mode": "priority"}, "ana", "ana may not")
    assert rt.grid.job_by_ref("kims").bid == 1_000_000
    # The owner may; the mode stays locked for everyone.
    assert run(rt, "bid", {"ref": "kims", "bid": 1.5}, "kim")["bid"] == 1_500_000
    refused(rt, "mode", {"ref": "kims", "mode": "priority"}, "kim", "locked")
    assert run(rt, "cancel", {"ref": "kims"}, "kim")["name"] == "kims"


def test_operators_act_on_every_job(rt):
    run(rt, "submit", flex("kims", "kim"), "kim")
    run(rt, "submit", flex("for-kim", "kim"), "ops")  # on a user's behalf
    assert run(rt, "bid", {"ref": "kims", "bid": 2.0}, "ops")["bid"] == 2_000_000
    assert run(rt, "cancel", {"ref": "kims"}, "ops")["state"] == "cancelled"
    cancelled = [e for e in rt.feed.events if e.job == rt.grid.job_by_ref("kims").id]
    assert any("cancelled by ops" in e.cause for e in cancelled)


def test_users_act_only_on_their_own_reservations(rt):
    run(rt, "reserve", reservation("nightly", "team"), "team")
    refused(rt, "reserve", reservation("forged", "team"), "kim", "kim may not reserve as team")
    refused(rt, "cancel_reservation", {"name": "nightly"}, "kim", "kim may not", "team")
    commit = {
        "spec": {
            "name": "ride",
            "user": "kim",
            "mode": "commit",
            "gpus": 1,
            "reservation": "nightly",
            "argv": ["true"],
        }
    }
    refused(rt, "submit", commit, "kim", "use reservation nightly")
    assert rt.grid.reservations["nightly"].cancelled_at is None
    result = run(rt, "cancel_reservation", {"name": "nightly"}, "ops")
    assert result["refund"] > 0 and rt.grid.reservations["nightly"].cancelled_at is not None


def test_the_grid_itself_refuses_a_user_on_another_users_job(rt):
    """Not only the command layer: the grid's own methods check the actor."""
    run(rt, "submit", flex("kims", "kim"), "kim")
    with pytest.raises(Refused):
        rt.grid.cancel("kims", NOW, "ana")
    with pytest.raises(Refused):
        rt.grid.change_bid("kims", 2.0, NOW, "ana")
    rt.grid.cancel("kims", NOW, "ops")


def agent_answers(tmp_path, *lines: bytes) -> list[dict]:
    out = io.BytesIO()
    server = Server(str(tmp_path / "agent"), out, fake_gpus="2xH100-80GB")
    server.serve(io.BytesIO(b"".join(lines)))
    return [json.loads(x) for x in out.getvalue().splitlines()]


def test_the_agent_refuses_what_is_not_in_the_protocol(tmp_path):
    def line(obj) -> bytes:
        return json.dumps(obj).encode() + b"\n"

    v = protocol.PROTOCOL_VERSION
    replies = agent_answers(
        tmp_path,
        line({"v": v, "type": "exec", "id": 1, "command": "touch /tmp/pwned"}),
        line({"v": v, "type": "shell", "id": 2, "argv": ["sh"]}),
        line({"v": v, "type": "start", "id": 3, "job_id": "../../etc", "argv": ["true"]}),
        line({"v": v, "type": "start", "id": 4, "job_id": "j1", "argv": "rm -rf /"}),
        line({"v": v + 1, "type": "jobs", "id": 5}),
        b"not json at all\n",
        line({"v": v, "type": "jobs", "id": 6}),
    )
    errors = {r.get("re"): r for r in replies if r["type"] == "error"}
    assert errors[1]["code"] == protocol.E_UNKNOWN_TYPE
    assert errors[2]["code"] == protocol.E_UNKNOWN_TYPE
    assert errors[3]["code"] == protocol.E_BAD_FIELD and "job_id" in errors[3]["message"]
    assert errors[4]["code"] == protocol.E_BAD_FIELD and "argv" in errors[4]["message"]
    assert errors[5]["code"] == protocol.E_VERSION_MISMATCH
    assert any(r["type"] == "error" and r["code"] == protocol.E_BAD_JSON for r in replies)
    jobs = next(r for r in replies if r.get("re") == 6 and r["type"] == "ok")
    assert jobs["jobs"] == []  # nothing was started


def test_no_secret_reaches_the_store_or_the_logs(tmp_path, monkeypatch, caplog):
    """An SSH node with an identity file, secrets in the console's environment: none of
    them is in any table of the state database or in the log. Job env values are
    stored (a job restarts with them after a crash): they are not a place for secrets,
    see docs/reliability.md."""
    from skyops_tui.domain.config import parse_config
    from skyops_tui.fleet.executor import FleetExecutor
    from skyops_tui.runtime import Runtime
    from skyops_tui.store.db import Store
    from tests.fleet.sshd import AsyncsshBox
    from tests.waiting import until

    box = AsyncsshBox(tmp_path / "box").start()
    try:
        token = "tok-" + "7" * 24
        passphrase = "correct horse battery staple 42"
        monkeypatch.setenv("HF_TOKEN", token)
        monkeypatch.setenv("SSH_KEY_PASSPHRASE", passphrase)
        key_body = [
            ln for ln in open(box.identity).read().splitlines() if ln and not ln.startswith("-")
        ]
        node = box.node("gpu1").model_dump(exclude={"count"})
        cfg = parse_config(
            {
                "cluster": {"heartbeat_timeout_s": 5, "tick_s": 0.2},
                "node_types": [{"name": "H100", "rate": 2.5}],
                "nodes": [node],
                "accounts": {"operators": ["ops"]},
            },
            "cfg",
        )
        from skyops_tui.clock import SystemClock

        ex = FleetExecutor(cfg, {"gpu1": box.transport(cfg.nodes[0])}, SystemClock(), 0.2)
        store = Store(tmp_path / "state.db")
        rt = Runtime(cfg, ex, store=store, user="ops")
        caplog.set_level(logging.DEBUG)

        async def scenario():
            await rt.start()
            try:
                await until(lambda: ex.links["gpu1"].ready, "the node connected")
                job = rt.scheduler.submit(
                    commands.JobSpec.model_validate(
                        {
                            "name": "env",
                            "user": "ops",
                            "mode": "priority",
                            "gpus": 1,
                            "gpu_type": "H100",
                            "hours": 1,
                            "argv": ["true"],
                        }
                    )
                )
                await until(lambda: job.finished, "the job done")
            finally:
                await rt.stop()

        import asyncio

        asyncio.run(scenario())
        dump = "\n".join(store.conn.iterdump())
        store.close()
        logs = caplog.text
        for secret in (token, passphrase, *key_body):
            assert secret not in dump, f"{secret[:12]}... is in the state database"
            assert secret not in logs, f"{secret[:12]}... is in the log"
        assert "gpu1" in dump  # the node itself is recorded
    finally:
        box.close()
