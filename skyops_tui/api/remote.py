"""`--connect ssh://user@head[:port][/path/to/api.sock]`: the leader's socket on a head
node, reached from a laptop through SSH.

The head's sshd forwards a local Unix socket (in a private temporary folder) to the
leader's socket on the head, so every client in this process (the CLI, a remote
console's commands and watch) uses the same `ApiClient` as on the head itself. The
host key is verified against known_hosts exactly as for boxes (fleet/ssh.py): an
unknown or changed key is refused with its fingerprint and the command that trusts
it. On the head, sshd's session process (running as the SSH user) opens the leader's
socket, so the leader's SO_PEERCRED names the SSH user: that is who the caller is.

The SSH connection lives on its own event loop in a thread, so it outlives any one
`asyncio.run` of the CLI and the console's own loop (Textual's) never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from ..domain.errors import InputError, Refused
from ..store.schema import StoreError

if TYPE_CHECKING:
    import asyncssh

    from ..domain.model import Job
    from ..domain.telemetry import NodeSample
    from ..fleet.ssh import SshTransport
    from ..policy.grid import Grid
    from ..scheduler.executor import ExecutorAction, LogChunk, Report

DEFAULT_SOCKET = "/run/skyops/api.sock"  # the systemd unit's (docs/api.md)
CONNECT_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class SshTarget:
    user: str | None
    host: str
    port: int | None
    socket: str

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"ssh://{self.user + '@' if self.user else ''}{self.host}{port}{self.socket}"


def parse_connect(url: str) -> SshTarget:
    """`ssh://[user@]host[:port][/socket]`; InputError naming --connect otherwise."""

    def bad(why: str) -> InputError:
        return InputError([f"--connect: {url!r}: {why} (expected ssh://user@head[:port])"])

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise bad(str(e)) from None
    if parts.scheme != "ssh":
        raise bad("the scheme must be ssh://")
    if not parts.hostname:
        raise bad("no host")
    if parts.password is not None:
        raise bad("a password in the URL is not accepted; use a key")
    if parts.query or parts.fragment:
        raise bad("no query or fragment")
    sock = unquote(parts.path) if parts.path not in ("", "/") else DEFAULT_SOCKET
    user = unquote(parts.username) if parts.username else None
    return SshTarget(user, parts.hostname, port, sock)


class Tunnel:
    """One SSH connection to the head, forwarding a private local socket to the
    leader's. `start` blocks until it listens (or raises); `close` ends it."""

    def __init__(
        self,
        target: SshTarget,
        known_hosts: str | None = None,
        identity: str | None = None,
        ssh_config: str | None = None,
    ) -> None:
        self.target = target
        self.known_hosts = known_hosts
        self.identity = identity
        self.ssh_config = ssh_config
        self._dir = Path(tempfile.mkdtemp(prefix="skyops-connect-"))  # 0700
        self.path = self._dir / "api.sock"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._listener: asyncssh.SSHListener | None = None

    def transport(self) -> SshTransport:
        from ..domain.config import NodeConfig
        from ..fleet.ssh import SshTransport

        t = self.target
        fields: dict = {"name": "head", "host": t.host, "user": t.user, "fake_gpus": "1xH100-80GB"}
        if t.port is not None:
            fields["port"] = t.port
        if self.identity:
            fields["identity"] = self.identity
        return SshTransport(
            NodeConfig(**fields),
            known_hosts=self.known_hosts,
            ssh_config=self.ssh_config,
            connect_timeout=CONNECT_TIMEOUT_S,
        )

    async def _open(self) -> None:
        from ..fleet.ssh import HostKeyRefused
        from ..fleet.sshlib import asyncssh

        try:
            self._conn = await self.transport().open_connection()
        except HostKeyRefused as e:
            raise Refused(f"--connect {self.target}: {str(e).split(': ', 1)[1]}") from None
        except (OSError, asyncssh.Error, TimeoutError) as e:
            why = getattr(e, "reason", "") or getattr(e, "strerror", "") or str(e)
            raise StoreError(
                f"--connect {self.target}: cannot reach the head node: {why or type(e).__name__}"
            ) from None
        try:
            self._listener = await self._conn.forward_local_path(str(self.path), self.target.socket)
        except (OSError, asyncssh.Error) as e:
            self._conn.close()
            raise StoreError(f"--connect {self.target}: cannot forward the socket: {e}") from None

    def start(self) -> Path:
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._open(), self._loop).result(CONNECT_TIMEOUT_S * 2)
        except BaseException:
            self.close()
            raise
        return self.path

    async def _close(self) -> None:
        if self._listener is not None:
            self._listener.close()
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()

    def close(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_running():
            self._loop.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Tunnel:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NoExecutor:
    """A remote console runs nothing: the head's leader does. Every other answer is the
    empty one (scheduler/executor.py)."""

    def bind(self, report: Callable[[Report], None]) -> None:
        pass

    def attach(self, grid: Grid) -> None:
        pass

    async def start(self, grid_id: str = "") -> None:
        pass

    async def close(self) -> None:
        pass

    def execute(self, action: ExecutorAction, job: Job) -> None:
        raise Refused("a remote console runs no jobs")

    def fire(self, now: float) -> int:
        return 0

    def busy(self) -> bool:
        return False

    def status_line(self) -> str:
        return ""

    def nodes_settled(self) -> bool:
        return True

    async def open_for_reads(self, grid_id: str) -> bool:
        return False

    def telemetry(self, node: str) -> NodeSample | None:
        return None  # the leader's samples come by watch (Runtime.samples)

    async def logs(self, job: Job, stream: str = "stdout", lines: int = 100) -> list[str]:
        return ["This executor keeps no job logs."]

    async def read_log(
        self, job: Job, stream: str = "stdout", offset: int | None = None, lines: int = 100
    ) -> LogChunk | None:
        return None

    async def last_checkpoint(self, job: Job) -> float | None:
        return None


async def fetch_state(path: str | Path, cfg=None):  # noqa: ANN001, ANN201
    """(config, grid, hello) from the leader at `path`: the head's own config unless
    one is given, and its state as its `state` query sends it (docs/api.md)."""
    import base64

    from ..domain.config import Config
    from ..store.db import Store
    from .client import ApiClient

    async with ApiClient.connected(path) as client:
        doc = await client.query("state")
        hello = client.hello
    cfg = cfg or Config.model_validate(doc["config"])
    folder = Path(tempfile.mkdtemp(prefix="skyops-remote-"))  # 0700: it may hold env
    try:
        db = folder / "state.db"
        db.write_bytes(base64.b64decode(doc["image"]))
        store = await asyncio.to_thread(Store, db)
        try:
            grid = await asyncio.to_thread(store.load_grid, cfg, doc["now"])
        finally:
            store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return cfg, grid, hello
