"""A client told its command was accepted can rely on it surviving power loss: the
answer waits for an fsync of the WAL covering the command's commit (group commit,
docs/store.md "Durability"), and answers waiting together share one fsync."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from skyops_tui.clock import SystemClock
from skyops_tui.control.commands import Submit
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.specs import JobSpec
from skyops_tui.runtime import Runtime
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store.db import Store
from tests.waiting import until

CONFIG = {
    "cluster": {"name": "durable", "tick_s": 0.1},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "n", "fake_gpus": "8xH100-80GB", "count": 2}],
    "accounts": {"operators": ["ops"], "default_balance": 10000},
}


def console(path: Path) -> Runtime:
    clock = SystemClock()
    return Runtime(
        parse_config(CONFIG, "test config"),
        SimExecutor(clock, 5, 120),  # type: ignore[arg-type]
        clock=clock,
        store=Store(path),
        user="ops",
        socket_path=path.with_suffix(".sock"),
    )


def flex(name: str) -> JobSpec:
    return JobSpec(name=name, user="ops", mode="flex", gpus=1, gpu_type="H100", bid=1.0,
                   argv=("true",), runtime=3600.0)  # fmt: skip


async def test_an_accepted_command_is_fsyncd_before_its_answer(tmp_path):
    rt = console(tmp_path / "state.db")
    await rt.start()
    try:
        before = rt.store.commits
        await rt.call(Submit(spec=flex("one")))
        assert rt.store.synced >= before + 1  # the submit's commit is on disk
        assert rt.store.fsyncs >= 1
    finally:
        await rt.stop()
        rt.store.close()


async def test_answers_through_the_socket_wait_for_the_fsync(tmp_path):
    path = tmp_path / "state.db"
    leader, follower = console(path), console(path)
    await leader.start()
    await follower.start()
    try:
        assert leader.leader and not follower.leader
        before = leader.store.commits
        await follower.call(Submit(spec=flex("remote")))
        # journal + change were committed, and fsync'd before the answer went out
        assert leader.store.synced >= before + 2
    finally:
        await follower.stop()
        await leader.stop()
        follower.store.close()
        leader.store.close()


async def test_answers_waiting_together_share_one_fsync(tmp_path):
    rt = console(tmp_path / "state.db")
    await rt.start()
    try:
        fsyncs = rt.store.fsyncs
        await asyncio.gather(*(rt.call(Submit(spec=flex(f"j{k}"))) for k in range(40)))
        assert len(rt.store.jobs()) == 40
        assert 1 <= rt.store.fsyncs - fsyncs <= 4  # not one per answer
    finally:
        await rt.stop()
        rt.store.close()


async def test_the_answer_goes_out_before_the_pass_its_command_woke(tmp_path):
    """A client waits for its command's fsync, not for the scheduling pass the command
    wakes (on a long queue a pass takes tens of ms): when that pass runs, the answer
    is already in the client's socket."""
    rt = console(tmp_path / "state.db")
    await rt.start()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await rt.call(Submit(spec=flex("warm")))  # the first pass and fsync are behind us
        await asyncio.to_thread(client.connect, str(rt.socket_path))
        hello = json.loads(await asyncio.to_thread(client.recv, 65536))
        assert hello["user"], hello
        seen: list[bool] = []

        def after_pass() -> None:
            if not seen:
                try:
                    seen.append(bool(client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)))
                except BlockingIOError:
                    seen.append(False)

        spec = {"name": "two", "mode": "flex", "gpus": 1, "gpu_type": "H100", "bid": 1.0,
                "argv": ["true"], "user": "ops"}  # fmt: skip
        line = {"v": 1, "type": "command", "id": 1, "kind": "submit", "payload": {"spec": spec}}
        passes = rt.scheduler.passes
        rt.scheduler.listeners.append(after_pass)
        client.sendall(json.dumps(line).encode() + b"\n")
        await until(lambda: rt.scheduler.passes > passes and seen, "a pass after the command")
        assert seen == [True]  # the answer was written before that pass ran
        answer = json.loads(await asyncio.to_thread(client.recv, 65536))
        assert answer["type"] == "ok" and answer["result"]["name"] == "two"
    finally:
        client.close()
        await rt.stop()
        rt.store.close()
