"""A client of the leader's socket: what followers, the CLI and remote consoles use.

Asyncio only, so a console's event loop never waits on the leader; the CLI runs it in
`asyncio.run`. Errors come back as the exceptions the rest of Skyops already maps to
messages and exit codes: `Refused` (exit 1), `StoreError` (exit 4), `NoLeader` (no
process serves the socket)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ..domain.errors import Refused
from ..store.schema import StoreError
from . import protocol as P

CONNECT_TIMEOUT_S = 5.0


class NoLeader(StoreError):
    """Nothing serves the socket: no scheduler runs for this state (or it just died).
    A store error for the command line: exit 4, nothing was changed."""


class LeaderGone(StoreError):
    """The leader went away before it answered; nothing the caller was told about was
    applied (a new leader settles the command as not applied: docs/api.md)."""


class ApiClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.hello: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    @classmethod
    async def connect(cls, path: str | Path, timeout_s: float = CONNECT_TIMEOUT_S) -> ApiClient:
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_unix_connection(
                    str(path), limit=P.MAX_LINE_BYTES
                )
        except (FileNotFoundError, ConnectionRefusedError, TimeoutError) as e:
            raise NoLeader(f"no scheduler serves {path} ({type(e).__name__})") from None
        except PermissionError:
            raise NoLeader(f"{path}: permission denied (the socket's folder is private)") from None
        except OSError as e:
            raise NoLeader(f"{path}: {e.strerror or e}") from None
        client = cls(reader, writer)
        try:
            async with asyncio.timeout(timeout_s):
                hello = await client._read()
        except (TimeoutError, LeaderGone):
            await client.close()
            raise NoLeader(f"the scheduler at {path} did not say hello") from None
        if hello.get("type") == P.ERROR:
            await client.close()
            raise Refused(hello.get("message", "refused"))
        client.hello = hello
        return client

    @classmethod
    @contextlib.asynccontextmanager
    async def connected(cls, path: str | Path) -> AsyncIterator[ApiClient]:
        client = await cls.connect(path)
        try:
            yield client
        finally:
            await client.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _read(self) -> dict:
        try:
            line = await self.reader.readline()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError) as e:
            raise LeaderGone(f"the scheduler closed the connection ({e})") from None
        if not line:
            raise LeaderGone(
                "the scheduler went away before answering; nothing was applied "
                "(see `skyops jobs`), try again"
            )
        try:
            return P.decode(line)
        except P.ProtocolError as e:
            raise LeaderGone(f"the scheduler sent a bad message: {e}") from None

    async def request(self, type_: str, kind: str, payload: dict | None = None) -> Any:
        async with self._lock:
            rid = next(self._ids)
            msg = {"type": type_, "id": rid, "kind": kind, "payload": payload or {}}
            try:
                self.writer.write(P.encode(msg))
                await self.writer.drain()
            except (ConnectionError, OSError) as e:
                raise LeaderGone(f"the scheduler closed the connection ({e})") from None
            reply = await self._read()
        if reply.get("type") == P.OK:
            return reply.get("result")
        raise error_of(reply)

    async def command(self, kind: str, payload: dict) -> dict:
        return await self.request(P.COMMAND, kind, payload)

    async def query(self, kind: str, payload: dict | None = None) -> Any:
        return await self.request(P.QUERY, kind, payload)

    async def watch(self) -> AsyncIterator[dict]:
        """The snapshot, then each change, until the leader closes the connection."""
        rid = next(self._ids)
        self.writer.write(P.encode({"type": P.WATCH, "id": rid, "kind": "", "payload": {}}))
        await self.writer.drain()
        while True:
            try:
                msg = await self._read()
            except LeaderGone:
                return
            if msg.get("type") == P.ERROR:
                raise error_of(msg)
            yield msg


def error_of(reply: dict) -> Exception:
    code = reply.get("code")
    message = str(reply.get("message", code))
    if code in (P.E_STORE, P.E_NOT_LEADING):
        # Nothing was applied, and it is not the request's fault: the scheduler cannot
        # act now (its store is locked or full, or its lease is in doubt). Exit 4.
        return StoreError(f"the scheduler cannot act now: {message}")
    if code == P.E_REFUSED:
        return Refused(message)
    return Refused(f"the scheduler could not handle the request ({code}): {message}")


def dumps(doc: Any) -> str:
    return json.dumps(doc, indent=2, default=str)
