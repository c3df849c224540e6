"""One conversation with one agent: JSON lines over a pair of byte streams.

The same `AgentLink` runs over a local subprocess's pipes (the demo grid, fast tests)
and over an SSH channel (real boxes). Requests are matched to replies by id; events are
handed to a callback. A link that closes fails every request still waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shlex
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from skyops_agent import protocol

from .. import __version__

log = logging.getLogger(__name__)

LINE_LIMIT = protocol.MAX_LINE_BYTES


class AgentError(Exception):
    """The agent answered a request with an error."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


class LinkClosed(ConnectionError):
    pass


class HostKeyRefused(Exception):
    """The box's host key is not in known_hosts (or does not match it). Defined here,
    not in ssh.py, so that catching it does not load asyncssh on a grid without SSH
    nodes."""

    def __init__(
        self,
        node: str,
        host: str,
        port: int,
        fingerprint: str,
        key_type: str,
        known_hosts: str,
        changed: bool = False,
    ) -> None:
        self.node, self.host, self.port = node, host, port
        self.fingerprint, self.key_type, self.known_hosts = fingerprint, key_type, known_hosts
        self.changed = changed
        target = host if port == 22 else f"[{host}]:{port}"
        what = "does not match the one in" if changed else "is not in"
        kh = shlex.quote(known_hosts)
        self.trust_command = f"ssh-keyscan -p {port} {shlex.quote(host)} >> {kh}"
        self.forget_command = f"ssh-keygen -f {kh} -R {shlex.quote(target)}"
        super().__init__(
            f"{node}: host key of {target} ({key_type} {fingerprint}) {what} {known_hosts}; "
            f"refused. Check the fingerprint on the box (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"then trust it with: {self.trust_command}"
            + (f"  (remove the old line first: {self.forget_command})" if changed else "")
        )


class Reader(Protocol):
    async def readline(self) -> bytes: ...


class Writer(Protocol):
    def write(self, data: bytes) -> Any: ...

    async def drain(self) -> None: ...


class AgentLink:
    def __init__(
        self,
        node: str,
        reader: Reader,
        writer: Writer,
        on_event: Callable[[dict], None],
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        self.on_event = on_event
        self._close = close
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future] = {}
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self.closed = asyncio.Event()
        self.hello: dict = {}
        self.last_message_at: float | None = None

    async def open(self, timeout: float = 15.0) -> dict:
        """Start reading and say hello; a protocol version mismatch is refused."""
        self._task = asyncio.get_running_loop().create_task(self._read_loop())
        self.hello = await self.request(
            protocol.HELLO,
            timeout=timeout,
            protocol=protocol.PROTOCOL_VERSION,
            console_version=__version__,
        )
        return self.hello

    async def request(self, type: str, timeout: float | None = 60.0, **fields: Any) -> dict:
        if self.closed.is_set():
            raise LinkClosed(f"link to {self.node} is closed")
        rid = next(self._ids)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            async with self._write_lock:
                self.writer.write(protocol.encode(protocol.request(type, rid, **fields)))
                await self.writer.drain()
            reply = await asyncio.wait_for(fut, timeout)
        except LinkClosed:
            raise
        except (BrokenPipeError, ConnectionError, OSError) as e:
            raise LinkClosed(f"link to {self.node} lost: {e}") from None
        finally:
            self._waiting.pop(rid, None)
        if reply.get("type") == protocol.ERROR:
            raise AgentError(reply.get("code", "?"), reply.get("message", ""))
        return reply

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                line = await self.reader.readline()
                if not line:
                    break
                self.last_message_at = loop.time()
                try:
                    msg = protocol.decode(line)
                except protocol.ProtocolError as e:
                    log.warning("%s: unreadable line from agent: %s", self.node, e)
                    continue
                re = msg.get("re")
                if re is not None:
                    fut = self._waiting.get(re)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                try:
                    self.on_event(msg)
                except Exception:
                    log.exception("%s: event handler failed", self.node)
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError) as e:
            log.info("%s: link read ended: %s", self.node, e)
        finally:
            self.closed.set()
            for fut in self._waiting.values():
                if not fut.done():
                    fut.set_exception(LinkClosed(f"link to {self.node} closed"))

    async def close(self) -> None:
        self.closed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._close is not None:
            with contextlib.suppress(Exception):
                await self._close()


class Transport(Protocol):
    """How to reach one node's agent. `connect` returns an opened link."""

    async def connect(self, on_event: Callable[[dict], None]) -> AgentLink: ...

    def describe(self) -> str: ...


class LocalTransport:
    """The agent as a local subprocess over pipes: the demo grid and fast tests."""

    def __init__(
        self, node: str, state_dir: str, fake_gpus: str | None = None, python: str | None = None
    ) -> None:
        self.node = node
        self.state_dir = state_dir
        self.fake_gpus = fake_gpus
        self.python = python or sys.executable
        self.process: asyncio.subprocess.Process | None = None

    def describe(self) -> str:
        return f"local agent ({self.state_dir})"

    def argv(self) -> list[str]:
        argv = [
            self.python,
            "-m",
            "skyops_agent",
            "serve",
            "--stdio",
            "--state-dir",
            self.state_dir,
            "--node-name",
            self.node,
            "--single-user",  # a local node is the console's own account: jobs run as it
        ]
        if self.fake_gpus:
            argv += ["--fake-gpus", self.fake_gpus]
        return argv

    async def connect(self, on_event: Callable[[dict], None]) -> AgentLink:
        os.makedirs(self.state_dir, exist_ok=True)
        errlog = os.path.join(self.state_dir, "agent.stderr.log")
        with open(errlog, "ab") as err:  # the child keeps its own copy of the descriptor
            proc = await asyncio.create_subprocess_exec(
                *self.argv(),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=LINE_LIMIT,
            )
        self.process = proc
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin  # narrowed here; the closure below keeps it narrowed

        async def close() -> None:
            if proc.returncode is None:
                with contextlib.suppress(Exception):
                    stdin.close()
                try:
                    await asyncio.wait_for(proc.wait(), 3)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

        link = AgentLink(self.node, proc.stdout, proc.stdin, on_event, close)
        try:
            await link.open()
        except Exception as e:
            await link.close()
            tail = _tail(errlog)
            raise LinkClosed(
                f"local agent for {self.node} did not answer: {e}"
                + (f"; it said: {tail}" if tail else "")
            ) from None
        except BaseException:
            await link.close()
            raise
        return link


def _tail(path: str, limit: int = 300) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""
