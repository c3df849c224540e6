"""The console reaching boxes over SSH, end to end: host keys checked against
known_hosts (never accepted silently), the agent zipapp pushed once per build, jobs
that outlive the connection, and the scheduler driving a box through FleetExecutor.

Every test that takes `ssh_box` runs twice: against asyncssh's server in this process
and against OpenSSH's sshd (marked integration).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from skyops_agent import protocol
from skyops_tui.clock import SystemClock
from skyops_tui.demo import EXAMPLE_JOB, demo_argv
from skyops_tui.domain.config import NodeConfig, parse_config
from skyops_tui.domain.model import JobState
from skyops_tui.domain.specs import JobSpec
from skyops_tui.fleet.executor import FleetExecutor
from skyops_tui.fleet.link import AgentLink
from skyops_tui.fleet.ssh import HostKeyRefused, SshTransport
from skyops_tui.runtime import Runtime
from tests.waiting import until

from .sshd import Box, process_gone


def ignore(msg: dict) -> None:
    pass


def agent_files(box: Box) -> list[str]:
    agent_dir = box.files / ".skyops" if box.kind == "asyncssh" else box.files
    return sorted(p.name for p in agent_dir.glob("skyops-agent-*.pyz*"))


def abort_connection(link: AgentLink) -> None:
    """Drop the TCP connection under the link at once, as a network failure would."""
    link.writer.channel.get_extra_info("connection").abort()


# ------------------------------------------------------------------- host keys
@pytest.mark.parametrize("known", ["empty", "missing"])
async def test_unknown_host_key_is_refused_with_fingerprint_and_trust_command(ssh_box, known):
    transport = ssh_box.transport(known=known)
    known_hosts = transport.known_hosts
    before = Path(known_hosts).read_text() if Path(known_hosts).exists() else None

    for _ in range(2):  # and again: refusing once must not have trusted it
        with pytest.raises(HostKeyRefused) as refused:
            await transport.connect(ignore)
        e = refused.value
        text = str(e)
        assert ssh_box.fingerprint.startswith("SHA256:")
        assert e.fingerprint == ssh_box.fingerprint
        assert ssh_box.fingerprint in text and "ssh-ed25519" in text
        assert f"ssh-keyscan -p {ssh_box.port} 127.0.0.1 >> {known_hosts}" in text
        assert e.trust_command == f"ssh-keyscan -p {ssh_box.port} 127.0.0.1 >> {known_hosts}"
        assert "is not in" in text and not e.changed

    after = Path(known_hosts).read_text() if Path(known_hosts).exists() else None
    assert after == before, "known_hosts was changed by a refused connection"
    assert agent_files(ssh_box) == [], "the agent was pushed to a box whose key is unknown"
    assert transport.agent_path is None


async def test_changed_host_key_is_refused_and_says_how_to_replace_it(ssh_box):
    transport = ssh_box.transport(known="changed")
    with pytest.raises(HostKeyRefused) as refused:
        await transport.connect(ignore)
    e = refused.value
    assert e.changed and "does not match" in str(e)
    assert e.fingerprint == ssh_box.fingerprint
    assert f"ssh-keygen -f {transport.known_hosts} -R '[127.0.0.1]:{ssh_box.port}'" in str(e)
    assert agent_files(ssh_box) == []


async def test_the_trust_command_from_a_refusal_lets_the_next_connect_through(ssh_box):
    transport = ssh_box.transport(known="empty")
    with pytest.raises(HostKeyRefused) as refused:
        await transport.connect(ignore)
    scan = await asyncio.create_subprocess_shell(
        refused.value.trust_command, stderr=asyncio.subprocess.DEVNULL
    )
    assert await scan.wait() == 0
    assert ssh_box.host_public.split()[1] in Path(transport.known_hosts).read_text()

    link = await transport.connect(ignore)
    try:
        assert link.hello["node_name"] == "box"
        assert transport.pushed
    finally:
        await link.close()


async def test_an_ssh_config_alias_gives_host_port_user_and_key(asyncssh_box, tmp_path):
    """host = an alias from ~/.ssh/config, no port in config.toml: ssh's Port applies, and
    a refusal names the real HostName and Port, which ssh-keyscan needs."""
    box = asyncssh_box
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(
        f"Host gpu-box\n  HostName 127.0.0.1\n  Port {box.port}\n  User {box.user}\n"
        f"  IdentityFile {box.identity}\n"
    )
    node = NodeConfig(
        name="aliased", host="gpu-box", fake_gpus="1xH100-80GB", python=sys.executable
    )
    refused_by = SshTransport(
        node, known_hosts=box.known_hosts("empty"), ssh_config=str(ssh_config)
    )
    with pytest.raises(HostKeyRefused) as refused:
        await refused_by.connect(ignore)
    assert f"ssh-keyscan -p {box.port} 127.0.0.1 >> " in refused.value.trust_command
    assert refused.value.fingerprint == box.fingerprint

    transport = SshTransport(node, known_hosts=box.known_hosts(), ssh_config=str(ssh_config))
    link = await transport.connect(ignore)
    try:
        assert link.hello["node_name"] == "aliased"
    finally:
        await link.close()


# ------------------------------------------------------------------ the agent
async def test_agent_is_pushed_once_per_build_and_reports_fake_gpus(ssh_box):
    first = ssh_box.transport()
    link = await first.connect(ignore)
    try:
        assert first.pushed, "the first connect must copy the agent to the box"
        assert first.agent_path and first.agent_path.endswith(".pyz")
        assert link.hello["protocol"] == protocol.PROTOCOL_VERSION
        assert link.hello["fake_gpus"] is True
        assert link.hello["zipapp"].endswith(Path(first.agent_path).name)
        inventory = await link.request(protocol.INVENTORY)
        assert inventory["fake"] is True and inventory["node_name"] == "box"
        assert [g["gpu_type"] for g in inventory["gpus"]] == ["H100", "H100"]
    finally:
        await link.close()
    assert agent_files(ssh_box) == [Path(first.agent_path).name], "a .part file was left over"

    second = ssh_box.transport()
    link = await second.connect(ignore)
    try:
        assert not second.pushed, "the same build was pushed again"
        assert second.agent_path == first.agent_path
    finally:
        await link.close()
    # One transport reconnecting (as NodeLink does) does not push again either.
    link = await second.connect(ignore)
    await link.close()
    assert not second.pushed


async def test_connections_pushing_at_once_each_start_their_agent(ssh_box):
    """Nodes sharing a box connect at the same moment: no push may pull the copy out
    from under an agent that is starting from it."""
    transports = [ssh_box.transport(ssh_box.node(f"n{i}")) for i in range(4)]
    links = await asyncio.gather(*(t.connect(ignore) for t in transports))
    try:
        assert sorted(link.hello["node_name"] for link in links) == ["n0", "n1", "n2", "n3"]
        assert any(t.pushed for t in transports)
        assert agent_files(ssh_box) == [Path(transports[0].agent_path).name]
    finally:
        await asyncio.gather(*(link.close() for link in links))


async def test_a_job_outlives_the_connection_and_reports_its_exit_later(ssh_box):
    transport = ssh_box.transport()
    link = await transport.connect(ignore)
    started = await link.request(
        protocol.START,
        job_id="t1",
        argv=[sys.executable, str(EXAMPLE_JOB), "--steps", "40", "--step-seconds", "0.05"],
        env={"RUN_TAG": "over-ssh"},
        gpus=[1],
        mode="flex",
    )
    job_pid = started["pid"]

    async def log_lines() -> list[str]:
        return (await link.request(protocol.LOGS, job_id="t1", tail_lines=200))["lines"]

    lines = await until(
        lambda: _having(log_lines(), "step 2/40"), "the job's log tail reads back its steps"
    )
    assert "SKYOPS_JOB_ID=t1" in lines and "SKYOPS_MODE=flex" in lines
    assert "CUDA_VISIBLE_DEVICES=1" in lines
    ckpt = next(x for x in lines if x.startswith("SKYOPS_CHECKPOINT_DIR="))
    assert ckpt.endswith("/checkpoints/t1") and "state" in ckpt

    agent_pid = link.hello["pid"]
    abort_connection(link)
    await until(link.closed.is_set, "the link notices the dropped connection")
    await until(lambda: process_gone(agent_pid), "the agent exits once its connection is gone")
    assert not process_gone(job_pid), "the job died with the SSH connection"
    await link.close()

    again = ssh_box.transport()
    link = await again.connect(ignore)
    try:
        assert link.hello["pid"] != agent_pid

        async def finished() -> dict | None:
            jobs = (await link.request(protocol.JOBS))["jobs"]
            job = next(j for j in jobs if j["job_id"] == "t1")
            return job if job["state"] == protocol.STATE_EXITED else None

        job = await until(finished, "a new connection's `jobs` reports t1 exited")
        assert job["exit_code"] == 0 and job["signal"] is None and job["pid"] == job_pid
        tail = (await link.request(protocol.LOGS, job_id="t1", tail_lines=3))["lines"]
        assert tail[-1] == "done: 40 steps"
    finally:
        await link.close()


async def _having(lines_coro, wanted: str) -> list[str] | None:
    lines = await lines_coro
    return lines if wanted in lines else None


# ------------------------------------------------- the scheduler over SSH
async def test_runtime_preempts_and_resumes_a_flex_job_on_an_ssh_box(ssh_box):
    node = ssh_box.node("box-a", fake_gpus="2xH100-80GB")
    cfg = parse_config(
        {
            "cluster": {
                "grace_s": 10,
                "stop_grace_s": 2,
                "tick_s": 0.2,
                "unix_users": {"*": ssh_box.user},  # ana has no account on the test box
            },
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [node.model_dump(exclude_none=True)],
            "accounts": {"default_balance": 5000},
        },
        "ssh test config",
    )
    transport = ssh_box.transport(cfg.all_nodes()[0])
    executor = FleetExecutor(cfg, {"box-a": transport}, SystemClock(), telemetry_interval_s=0.2)
    rt = Runtime(cfg, executor, SystemClock(), user="ana")
    await rt.start()
    try:
        link = executor.links["box-a"]
        await until(lambda: link.status.value == "up", f"box-a comes up ({link.error})")
        assert transport.pushed

        flex = rt.scheduler.submit(
            JobSpec(name="f1", user="ana", mode="flex", gpus=2, gpu_type="H100", bid=1.0,
                    argv=demo_argv(2000, 0.02))
        )  # fmt: skip
        await until(lambda: flex.state is JobState.RUNNING, f"f1 running (is {flex.state})")
        logs = await until(
            lambda: _logged(executor.logs(flex), "step 5/2000"), "f1's steps in its log"
        )
        assert "SKYOPS_MODE=flex" in logs and "CUDA_VISIBLE_DEVICES=0,1" in logs
        sample = await until(lambda: executor.telemetry("box-a"), "telemetry from box-a")
        assert sample.fake and len(sample.gpus) == 2

        prio = rt.scheduler.submit(
            JobSpec(name="p1", user="ana", mode="priority", gpus=2, gpu_type="H100", hours=1,
                    argv=demo_argv(10, 0.05))
        )  # fmt: skip
        await until(
            lambda: flex.state is JobState.PAUSED and flex.preemptions == 1,
            f"f1 paused by p1 (f1 is {flex.state})",
        )
        await until(
            lambda: prio.state is JobState.SUCCEEDED, f"p1 succeeds (is {prio.state})", timeout=30
        )
        await until(
            lambda: flex.state is JobState.RUNNING and flex.runs == 2,
            f"f1 resumed after p1 (is {flex.state}, runs {flex.runs})",
        )
        logs = await until(
            lambda: _logged(executor.logs(flex), "SKYOPS_RESUME=1"), "f1's second run resumed"
        )
        assert any(x.startswith("resumed from step ") for x in logs), logs[:8]
        assert not executor.errors and not rt.scheduler.errors
    finally:
        await rt.stop()


async def _logged(lines_coro, wanted: str) -> list[str] | None:
    lines = await lines_coro
    return lines if any(wanted in x for x in lines) else None


def test_the_command_run_on_the_box_is_quoted(tmp_path):
    """A node name or path with a space stays one argument on the remote shell."""
    node = NodeConfig(name="b", host="h", fake_gpus="1xH100", python="/opt/my py/bin/python3")
    cmd = SshTransport(node, known_hosts=str(tmp_path / "kh")).command("d/agent.pyz")
    assert cmd.startswith("'/opt/my py/bin/python3' d/agent.pyz serve --stdio")
    assert SshTransport(node).remote_dir() == ".skyops"  # relative: starts in the home dir


async def test_flex_job_resumes_on_another_box_with_its_checkpoint_copied_over_sftp(
    asyncssh_boxes,
):
    """docs/fleet.md, Checkpoints that follow a job: with no shared checkpoint path, the
    console copies the checkpoint folder over SFTP to the box the job resumes on."""
    box_a, box_b = asyncssh_boxes("box-a"), asyncssh_boxes("box-b")
    nodes = [
        box_a.node("box-a", fake_gpus="2xH100-80GB"),
        box_b.node("box-b", fake_gpus="2xH100-80GB"),
    ]
    cfg = parse_config(
        {
            "cluster": {
                "grace_s": 10,
                "stop_grace_s": 2,
                "tick_s": 0.2,
                "unix_users": {"*": box_a.user},
            },
            "pricing": {"min_slice_s": 0},
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [n.model_dump(exclude_none=True) for n in nodes],
            "accounts": {"default_balance": 5000},
        },
        "ssh test config",
    )
    by_name = {n.name: n for n in cfg.all_nodes()}
    transports = {
        "box-a": box_a.transport(by_name["box-a"]),
        "box-b": box_b.transport(by_name["box-b"]),
    }
    executor = FleetExecutor(cfg, transports, SystemClock(), telemetry_interval_s=0.2)
    rt = Runtime(cfg, executor, SystemClock(), user="ana")
    await rt.start()
    try:
        for name in ("box-a", "box-b"):
            link = executor.links[name]
            await until(lambda link=link: link.status.value == "up", f"{name} up ({link.error})")
        flex = rt.scheduler.submit(
            JobSpec(name="f1", user="ana", mode="flex", gpus=2, gpu_type="H100", bid=1.0,
                    argv=demo_argv(4000, 0.02))
        )  # fmt: skip
        await until(lambda: flex.state is JobState.RUNNING, f"f1 running (is {flex.state})")
        first = flex.placement[0].node
        other = "box-b" if first == "box-a" else "box-a"
        await until(lambda: _logged(executor.logs(flex), "checkpoint saved"), "a checkpoint")
        # A higher bid takes the other box, then a Priority job takes f1's: f1 pauses.
        blocker = rt.scheduler.submit(
            JobSpec(name="blocker", user="ana", mode="flex", gpus=2, gpu_type="H100", bid=2.5,
                    argv=demo_argv(4000, 0.05))
        )  # fmt: skip
        await until(lambda: blocker.state is JobState.RUNNING, "blocker running")
        rt.scheduler.submit(
            JobSpec(name="p1", user="ana", mode="priority", gpus=2, gpu_type="H100", hours=1,
                    argv=demo_argv(100_000, 0.05))
        )  # fmt: skip
        await until(lambda: flex.state is JobState.PAUSED, f"f1 paused (is {flex.state})")
        rt.scheduler.cancel("blocker")
        await until(
            lambda: flex.state is JobState.RUNNING and flex.runs == 2,
            f"f1 resumed (is {flex.state}, runs {flex.runs})",
            timeout=30,
        )
        assert flex.placement[0].node == other
        assert (flex.id, first, other, "sftp") in executor.copies, executor.copies
        logs = await until(
            lambda: _logged(executor.logs(flex), "resumed from step"), "f1 resumed from its step"
        )
        step = next(x for x in logs if x.startswith("resumed from step "))
        assert int(step.split()[3].strip(".,:")) > 0
    finally:
        await rt.stop()
