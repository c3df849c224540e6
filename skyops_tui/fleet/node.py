"""One supervised link per node: connect, watch heartbeats, reconnect with backoff.

Node state, as operators see it:
- `up`: the link is open and the agent spoke within `heartbeat_timeout_s`;
- `degraded`: connecting, or the agent is late, or the link just dropped — nothing new
  is placed there, but its jobs are left alone (a flapping link costs nothing);
- `unreachable`: no word for 4 x `heartbeat_timeout_s` — its jobs are handled as lost
  (Priority failed, Commit moved, Flex paused and resumed elsewhere).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable

from skyops_agent import protocol

from ..clock import Clock
from ..domain.model import NodeStatus
from ..domain.telemetry import GpuSample, NodeSample
from .link import AgentLink, HostKeyRefused, Transport

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
REFUSED_RETRY_S = 60.0  # a refused host key needs a person; retry slowly
UNREACHABLE_FACTOR = 4


def caveats(link: AgentLink) -> str:
    """What the grid must know of a box whose jobs are not kept apart (docs/security.md)."""
    said = []
    if link.hello.get("multi_user") is False:
        said.append(f"single-user: every job runs as {link.hello.get('agent_user')}")
    if link.hello.get("tracking") == "process group":
        said.append("no cgroup: jobs tracked by process group")
    return "".join("; " + s for s in said)


class NodeLink:
    def __init__(
        self,
        name: str,
        transport: Transport,
        clock: Clock,
        heartbeat_timeout_s: float,
        on_event: Callable[[str, dict], None],
        on_status: Callable[[str, NodeStatus, str], None],
        on_connect: Callable[[NodeLink], Awaitable[None]],
        telemetry_interval_s: float = 1.0,
    ) -> None:
        self.name = name
        self.transport = transport
        self.clock = clock
        self.timeout = heartbeat_timeout_s
        self.on_event = on_event
        self.on_status = on_status
        self.on_connect = on_connect
        self.telemetry_interval_s = telemetry_interval_s
        self.link: AgentLink | None = None
        self.status = NodeStatus.DEGRADED
        self.last_heartbeat: float | None = None  # wall clock, for people and the grid
        self.down_since: float = clock.now()
        # Ages are judged on the monotonic clock: a wall-clock step must not declare
        # every node lost (or hide a real silence).
        self._seen = time.monotonic()
        self._down = time.monotonic()
        self.error = ""
        self.inventory: dict = {}
        self.sample: NodeSample | None = None
        self.connects = 0
        self._task: asyncio.Task | None = None
        self.connected = asyncio.Event()
        self.ready = False  # the link is open and reconciled: jobs may be placed here

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name=f"link-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.link is not None:
            await self.link.close()

    def _set(self, status: NodeStatus, cause: str) -> None:
        if status is not self.status:
            self.status = status
            self.on_status(self.name, status, cause)

    def _event(self, msg: dict) -> None:
        self.last_heartbeat = self.clock.now()
        self._seen = time.monotonic()
        if msg.get("type") == protocol.TELEMETRY_EVENT:
            self.sample = to_sample(self.name, msg, self.inventory)
            if self.status is NodeStatus.DEGRADED and self.ready:
                self._set(NodeStatus.UP, "heartbeat resumed")
            return
        self.on_event(self.name, msg)

    async def run(self) -> None:
        attempt = 0
        while True:
            delay = 0.0
            try:
                link = await self.transport.connect(self._event)
                self.link = link
                self.connects += 1
                attempt = 0
                self.error = ""
                self.last_heartbeat = self.clock.now()
                self._seen = time.monotonic()
                self.inventory = (await link.request(protocol.INVENTORY)) or {}
                await link.request(protocol.SUBSCRIBE, interval_s=self.telemetry_interval_s)
                await self.on_connect(self)
                self.ready = True
                self._set(NodeStatus.UP, f"connected ({self.transport.describe()}{caveats(link)})")
                self.connected.set()
                await self._watch(link)
            except asyncio.CancelledError:
                raise
            except HostKeyRefused as e:
                self.error = str(e)
                delay = REFUSED_RETRY_S
            except Exception as e:  # every way a link fails: refused, timeout, reset, agent gone
                self.error = f"{type(e).__name__}: {e}"
                log.info("%s: link failed: %s", self.name, self.error)
            finally:
                self.ready = False
                self.connected.clear()
                if self.link is not None:
                    with contextlib.suppress(Exception):
                        await self.link.close()
                    self.link = None
            if self.status is NodeStatus.UP:
                self.down_since = self.clock.now()
                self._down = time.monotonic()
                self._set(NodeStatus.DEGRADED, f"link lost: {self.error or 'closed'}")
            attempt += 1
            delay = delay or min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt, 10))
            delay *= random.uniform(0.5, 1.0)  # jitter: many nodes must not retry in step
            await self._wait_down(delay)

    async def _watch(self, link: AgentLink) -> None:
        """While the link is open: late heartbeats degrade the node, long silence ends it."""
        while not link.closed.is_set():
            with contextlib.suppress(TimeoutError):  # not wait_for: see Scheduler.run
                async with asyncio.timeout(min(1.0, self.timeout / 2)):
                    await link.closed.wait()
            age = time.monotonic() - self._seen
            if age > self.timeout * UNREACHABLE_FACTOR:
                self.error = f"no heartbeat for {age:.0f} s"
                return
            if age > self.timeout:
                self._set(NodeStatus.DEGRADED, f"no heartbeat for {age:.0f} s")

    async def _wait_down(self, delay: float) -> None:
        """Sleep before the next try, declaring the node unreachable when it is time."""
        deadline = asyncio.get_running_loop().time() + delay
        while True:
            if (
                self.status is not NodeStatus.UNREACHABLE
                and time.monotonic() - self._down > self.timeout * UNREACHABLE_FACTOR
            ):
                self._set(NodeStatus.UNREACHABLE, f"unreachable: {self.error or 'no link'}")
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, 0.5))


def to_sample(node: str, msg: dict, inventory: dict | None = None) -> NodeSample:
    names = {
        g.get("index"): g.get("name", "")
        for g in (inventory or {}).get("gpus", [])
        if isinstance(g, dict)
    }
    gpus = []
    for g in msg.get("gpus", []):
        if not isinstance(g, dict):
            continue
        gpus.append(
            GpuSample(
                index=_int(g.get("index")) or 0,
                name=str(g.get("name") or names.get(g.get("index"), "")),
                util=_int(g.get("utilization_pct")),
                mem_used_mb=_mb(g.get("memory_used_bytes")),
                mem_total_mb=_mb(g.get("memory_total_bytes")),
                temp_c=_int(g.get("temperature_c")),
                power_w=_float(g.get("power_w")),
                uuid=str(g.get("uuid", "")),
                fake=bool(msg.get("fake")),
            )
        )
    return NodeSample(node, float(msg.get("at") or 0.0), tuple(gpus), bool(msg.get("fake")))


def _int(x: object) -> int | None:
    return int(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _float(x: object) -> float | None:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None


def _mb(x: object) -> int | None:
    n = _int(x)
    return None if n is None else n // (1024 * 1024)
