"""Jobs of different users on one box, over OpenSSH's sshd with real Unix users: each
runs as its owner, cannot read, damage or signal another's, and cannot rewrite what the
shim recorded about it. The agent runs as root, as CI does (docs/security.md).
"""

from __future__ import annotations

import io
import json
import os
import pwd
import stat
from pathlib import Path

from rich.console import Console

from skyops_agent import protocol
from skyops_tui.cli.nodes import run_nodes_check
from skyops_tui.clock import SystemClock
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.fleet.link import AgentLink
from skyops_tui.runtime import Runtime
from tests.waiting import until

from .sshd import Box, process_gone

SH = "/bin/sh"


def ignore(msg: dict) -> None:
    pass


async def connect(box: Box) -> AgentLink:
    return await box.transport().connect(ignore)


def state_dir(box: Box) -> Path:
    return Path(box.agent_dir) / "state"


async def log_of(link: AgentLink, job_id: str, stream: str = "stdout") -> list[str]:
    return (await link.request(protocol.LOGS, job_id=job_id, stream=stream, tail_lines=50))["lines"]


async def job(link: AgentLink, job_id: str) -> dict:
    jobs = (await link.request(protocol.JOBS))["jobs"]
    return next(j for j in jobs if j["job_id"] == job_id)


async def busy_pids(link: AgentLink) -> set[int]:
    gpus = (await link.request(protocol.TELEMETRY))["gpus"]
    return {p["pid"] for g in gpus for p in g["processes"]}


async def test_alice_cannot_read_damage_or_signal_bobs_job(shared_openssh_box, unix_users):
    box = shared_openssh_box
    alice, bob = unix_users.add("alice"), unix_users.add("bob")
    link = await connect(box)
    try:
        assert link.hello["multi_user"] is True
        bobs = await link.request(
            protocol.START,
            job_id="bob-1",
            argv=["/bin/sleep", "300"],
            env={"HF_TOKEN": "bob-secret-token"},
            mode="priority",
            user=bob,
            gpus=[0],
        )
        assert bobs["user"] == bob
        bob_ckpt = bobs["checkpoint_dir"]
        bob_spec = state_dir(box) / "jobs" / "bob-1" / "spec.json"
        probe = (
            f"cat {bob_spec} >/dev/null 2>&1 && echo read-spec || echo no-spec; "
            f"cat /proc/{bobs['pid']}/environ >/dev/null 2>&1 && echo read-env || echo no-env; "
            f"touch {bob_ckpt}/stolen 2>/dev/null && echo wrote-ckpt || echo no-ckpt; "
            f"kill -TERM {bobs['pid']} 2>/dev/null && echo killed || echo no-kill; "
            "id -un"
        )
        await link.request(
            protocol.START, job_id="alice-1", argv=[SH, "-c", probe], mode="flex", user=alice
        )
        await until(lambda: _exited(link, "alice-1"), "alice's probe finishing")
        said = await log_of(link, "alice-1")
        assert said == ["no-spec", "no-env", "no-ckpt", "no-kill", alice], said
        assert (await job(link, "bob-1"))["state"] == protocol.STATE_RUNNING
        assert not process_gone(bobs["pid"])
        assert not os.path.exists(os.path.join(bob_ckpt, "stolen"))

        # What the agent made on disk: nothing for other users to read or write.
        ckpt = os.stat(bob_ckpt)
        assert stat.S_IMODE(ckpt.st_mode) == 0o700 and ckpt.st_uid == pwd.getpwnam(bob).pw_uid
        spec = os.stat(bob_spec)
        assert stat.S_IMODE(spec.st_mode) == 0o600 and spec.st_uid == os.geteuid()
        log = os.stat(bob_spec.parent / "stdout.log")
        assert stat.S_IMODE(log.st_mode) == 0o640
        await link.request(protocol.STOP, job_id="bob-1", reason="done", term_grace_s=1)
        await until(lambda: _exited(link, "bob-1"), "bob's job stopping")
    finally:
        await link.close()


async def _exited(link: AgentLink, job_id: str) -> dict | None:
    rec = await job(link, job_id)
    return rec if rec["state"] == protocol.STATE_EXITED else None


async def test_a_job_cannot_forge_its_records(shared_openssh_box, unix_users):
    """The forger rewrites every record it can reach to say it exited 0, and runs on:
    the agent still reports it running on its GPU, as the shim saw it."""
    box = shared_openssh_box
    alice = unix_users.add("alice")
    folder = state_dir(box) / "jobs" / "forger"
    forged = '{"state": "exited", "exit_code": 0, "ended_at": 1}'
    attempts = " ".join(
        f"(echo '{forged}' > {folder / name}) 2>/dev/null && echo wrote-{name} || echo no-{name};"
        for name in ("status.json", "spec.json", "shim.pid", "stop.json", "new.json")
    )
    link = await connect(box)
    try:
        started = await link.request(
            protocol.START,
            job_id="forger",
            argv=[SH, "-c", attempts + " echo forged; exec /bin/sleep 300"],
            mode="flex",
            user=alice,
            gpus=[1],
        )
        said = await until(
            lambda: _having(log_of(link, "forger"), "forged"), "the forger done forging"
        )
        assert not [line for line in said if line.startswith("wrote-")], said
        rec = await job(link, "forger")
        assert rec["state"] == protocol.STATE_RUNNING and rec["pid"] == started["pid"]
        assert rec["exit_code"] is None and rec["user"] == alice
        assert started["pid"] in await busy_pids(link)  # its GPU stays taken
        await link.request(protocol.STOP, job_id="forger", reason="done", term_grace_s=1)
        ended = await until(lambda: _exited(link, "forger"), "the forger stopped")
        assert ended["signal"] == "SIGTERM" and ended["stop_reason"] == "done"
    finally:
        await link.close()


async def test_a_double_forked_job_ignoring_sigterm_is_gone_after_cancel(
    shared_openssh_box, unix_users
):
    box = shared_openssh_box
    alice = unix_users.add("alice")
    escape = "setsid /bin/sh -c 'trap \"\" TERM; echo escaped $$; exec /bin/sleep 300' &"
    link = await connect(box)
    try:
        assert link.hello["tracking"] in ("cgroup2", "cgroup1")
        started = await link.request(
            protocol.START,
            job_id="escaper",
            argv=[SH, "-c", escape + " exec /bin/sleep 300"],
            mode="flex",
            user=alice,
            gpus=[0],
        )
        said = await until(lambda: _having(log_of(link, "escaper"), None), "the escape")
        escaped = int(said[0].split()[1])
        await link.request(protocol.STOP, job_id="escaper", reason="cancelled", term_grace_s=3)
        await until(lambda: process_gone(started["pid"]), "the job's own process ending")
        # Its escaped child lives on, ignoring SIGTERM: the job is not gone yet.
        assert not process_gone(escaped)
        assert (await job(link, "escaper"))["state"] == protocol.STATE_STOPPING
        assert started["pid"] in await busy_pids(link)
        ended = await until(lambda: _exited(link, "escaper"), "the job gone after its grace")
        assert process_gone(escaped), "the escaped child outlived the job"
        assert ended["stop_reason"] == "cancelled"
        assert await busy_pids(link) == set()
    finally:
        await link.close()


async def _having(lines_coro, wanted: str | None) -> list[str] | None:
    lines = await lines_coro
    if wanted is None:
        return lines or None
    return lines if wanted in lines else None


async def test_jobs_run_as_their_owners_and_an_unknown_user_is_refused(
    shared_openssh_box, unix_users
):
    """Skyops users map to Unix users (the same name unless [cluster] unix_users says
    otherwise); a user the box lacks gets a failed start that says why."""
    box = shared_openssh_box
    alice = unix_users.add("alice")
    node = box.node("box-a", fake_gpus="2xH100-80GB")
    cfg = parse_config(
        {
            "cluster": {"tick_s": 0.2, "stop_grace_s": 1, "unix_users": {"ana": alice}},
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [node.model_dump(exclude_none=True)],
            "accounts": {"default_balance": 5000, "operators": ["ops"]},
        },
        "isolation test config",
    )
    executor = FleetExecutor(cfg, {"box-a": box.transport(cfg.all_nodes()[0])}, SystemClock())
    rt = Runtime(cfg, executor, SystemClock(), user="ops")
    await rt.start()
    try:
        link = executor.links["box-a"]
        await until(lambda: link.status.value == "up", f"box-a up ({link.error})")
        ana = rt.scheduler.submit(
            JobSpec(name="who", user="ana", mode="priority", gpus=1, gpu_type="H100", hours=1,
                    argv=(SH, "-c", "id -un; exec /bin/sleep 300"))
        )  # fmt: skip
        ghost = rt.scheduler.submit(
            JobSpec(name="ghost", user="nosuchuser-zz", mode="priority", gpus=1,
                    gpu_type="H100", hours=1, argv=("/bin/true",))
        )  # fmt: skip
        await until(lambda: ana.state is JobState.RUNNING, f"ana's job running ({ana.state})")
        lines = await until(lambda: _having(executor.logs(ana), alice), "ana's job says who")
        assert lines == [alice]
        await until(lambda: ghost.finished, f"the ghost's job refused ({ghost.state})")
        causes = [e.cause for e in rt.feed.events if e.job == ghost.id]
        assert any("no Unix user 'nosuchuser-zz'" in c for c in causes), causes
    finally:
        await rt.stop()


def test_nodes_check_shows_an_unprivileged_agent_as_single_user(shared_openssh_box, unix_users):
    """An agent that logs in as an ordinary user cannot switch users nor make cgroups:
    `nodes check` says both, for a person to decide whether that box may be shared."""
    box = shared_openssh_box
    carol = unix_users.add("carol")
    home = pwd.getpwnam(carol).pw_dir
    node = box.node("plain", user=carol, python="/usr/bin/python3", agent_dir=f"{home}/.skyops")
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [node.model_dump(exclude_none=True)],
        },
        "nodes check test",
    )
    out = io.StringIO()
    console = Console(file=out, width=240, color_system=None)
    code = run_nodes_check(
        cfg, box.known_hosts(), console, as_json=True, ssh_config=box.ssh_config, timeout_s=20
    )
    report = json.loads(out.getvalue())["nodes"][0]
    assert code == 0, report
    assert report["users"] == "single-user" and report["tracking"] == "process group"
    assert any(f"every job runs as {carol}" in n for n in report["notes"]), report["notes"]
    assert any("process group" in n for n in report["notes"]), report["notes"]

    root_node = box.node("root")
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [root_node.model_dump(exclude_none=True)],
        },
        "nodes check test",
    )
    out = io.StringIO()
    run_nodes_check(
        cfg, box.known_hosts(), Console(file=out, width=240, color_system=None), as_json=True,
        ssh_config=box.ssh_config, timeout_s=20,
    )  # fmt: skip
    report = json.loads(out.getvalue())["nodes"][0]
    assert report["users"] == "multi-user" and report["tracking"] in ("cgroup2", "cgroup1")
    assert report["notes"] == []
