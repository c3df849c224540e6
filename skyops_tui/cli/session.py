"""Sessions for scripts (`skyops --apply`, `skyops cancel`, ...): act on the grid the
way a console would.

If no console leads the grid, the session leads it for its lifetime (connecting the
fleet, running the scheduler); otherwise it follows the leader, reading state from the
store and sending commands to the leader's socket. Either way `call` applies a command or raises
`Refused` with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from ..control import commands
from ..domain.config import Config
from ..domain.model import Job
from ..policy.grid import Grid
from ..runtime import Runtime


class Session:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    @property
    def grid(self) -> Grid:
        return self.rt.grid

    @property
    def user(self) -> str:
        return self.rt.user

    @property
    def leader(self) -> bool:
        return self.rt.leader

    @property
    def runtime(self) -> Runtime | None:
        return self.rt if self.rt.leader else None

    async def refresh(self) -> None:
        if not self.rt.leader:
            await asyncio.to_thread(self.rt.reload)

    async def call(self, kind: str, payload: dict) -> dict:
        """One command through the one command path: applied here when this session
        leads, else sent to the leader's socket."""
        return await self.rt.call(commands.parse(kind, payload))

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        ex = self.rt.executor
        grid_id = self.rt.store.grid_id if self.rt.store is not None else ""
        if not self.rt.leader and await ex.open_for_reads(grid_id):
            await self.wait_for_nodes(10.0)  # a follower opened links just for this
        return await ex.logs(job, stream, lines)

    async def wait_for_nodes(self, timeout_s: float) -> None:
        """Until every node's link is ready or has failed at least once."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.rt.executor.nodes_settled():
                return
            await asyncio.sleep(0.05)

    async def settle(self, timeout_s: float = 15.0) -> None:
        """Leader only: let the fleet connect and the scheduler dispatch what it decided."""
        if not self.rt.leader:
            return
        await self.wait_for_nodes(timeout_s)
        self.rt.local.poke()
        await asyncio.sleep(0.2)
        deadline = time.monotonic() + timeout_s
        while self.rt.executor.busy() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


@asynccontextmanager
async def open_session(
    cfg: Config | None,
    db_path: str | Path | None = None,
    user: str | None = None,
    demo: bool = False,
    runtime: Runtime | None = None,
) -> AsyncIterator[Session]:
    """`cfg=None` (or demo=True) means the embedded demo grid."""
    if runtime is None:
        from .console import build_runtime

        runtime = build_runtime(None if demo else cfg, db_path, user=user)
    await runtime.start()
    session = Session(runtime)
    try:
        yield session
        await session.settle()
    finally:
        await runtime.stop()
        if runtime.store is not None:
            runtime.store.close()
