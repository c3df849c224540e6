"""A client connection that is idle holds nothing it was sent: a leader serves many
connections that mostly wait, and a page of `jobs` (up to 2,000 jobs) is half a
megabyte of JSON (docs/api.md)."""

from __future__ import annotations

import asyncio
import json
import tracemalloc

from skyops_tui.clock import SystemClock
from skyops_tui.control.commands import Submit
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.specs import JobSpec
from skyops_tui.runtime import Runtime
from skyops_tui.sim.agents import SimExecutor
from skyops_tui.store.db import Store

CONFIG = {
    "cluster": {"name": "idle", "tick_s": 0.1},
    "node_types": [{"name": "H100", "rate": 2.5}],
    "nodes": [{"name": "n", "fake_gpus": "8xH100-80GB"}],
    "accounts": {"operators": ["ops"], "default_balance": 10000},
}


def sent_bytes_alive(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes of the answers the API encoded that are still alive."""
    encoded = [tracemalloc.Filter(True, "*/skyops_tui/api/protocol.py")]
    return sum(s.size for s in snapshot.filter_traces(encoded).statistics("filename"))


async def test_an_idle_connection_holds_no_answer_it_was_sent(tmp_path):
    path = tmp_path / "state.db"
    clock = SystemClock()
    rt = Runtime(parse_config(CONFIG, "test config"), SimExecutor(clock, 5, 120),  # type: ignore[arg-type]
                 clock=clock, store=Store(path), user="ops", socket_path=path.with_suffix(".sock"))  # fmt: skip
    await rt.start()
    writer = None
    try:
        spec = JobSpec(name="q", user="ops", mode="priority", gpus=8, hours=1, argv=("true",))
        await rt.call(Submit(spec=spec, count=500))
        reader, writer = await asyncio.open_unix_connection(
            str(path.with_suffix(".sock")), limit=1 << 24
        )
        await reader.readline()  # hello
        tracemalloc.start()
        try:
            query = {"v": 1, "type": "query", "id": 1, "kind": "jobs", "payload": {}}
            writer.write((json.dumps(query) + "\n").encode())
            await writer.drain()
            page = await reader.readline()
            await asyncio.sleep(0)  # the server's turn after its write
            alive = sent_bytes_alive(tracemalloc.take_snapshot())
        finally:
            tracemalloc.stop()
        assert len(json.loads(page)["result"]["jobs"]) == 500
        assert len(page) > 100_000
        assert alive < 10_000, f"{alive} bytes of answers held by an idle connection"
    finally:
        if writer is not None:
            writer.close()
        await rt.stop()
        rt.store.close()
