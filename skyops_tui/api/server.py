"""The leader's socket server: commands, queries and watch, for callers the kernel names.

Only the process that holds the scheduler lease serves; it starts the server when it
starts leading and closes it when it stops. Who is asking comes from the socket
(SO_PEERCRED), never from anything the caller says: the uid maps to a Unix user name,
and the service's own account maps to the Skyops user it runs as (the demo's named
user). Every command goes through `control.commands.run`, the one command path, and is
journalled in the store's commands table first (docs/api.md, "Exactly once").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import os
import pwd
import socket
import sqlite3
import stat
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..domain.errors import InputError, Refused
from ..domain.model import Job, user_account
from ..scheduler.engine import NotLeading
from ..store.schema import StoreError
from . import protocol as P

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)
WATCH_QUEUE = 10_000  # changes a slow watcher may fall behind by before it is dropped


@dataclass(frozen=True, slots=True)
class Caller:
    uid: int
    user: str
    operator: bool

    def may_see(self, owner: str | None) -> bool:
        return self.operator or owner is None or owner == self.user


def peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def identify(rt: Runtime, uid: int) -> Caller:
    """The Skyops user behind a uid: the service's own account is the runtime's user;
    any other is its Unix user name. Raises Refused for a uid with no name."""
    if uid == os.geteuid():
        user = rt.user
    else:
        try:
            user = pwd.getpwuid(uid).pw_name
        except KeyError:
            raise Refused(f"uid {uid} has no user name on this host") from None
    return Caller(uid, user, rt.cfg.is_operator(user))


def prepare_path(path: Path) -> None:
    """Make room for the socket: a stale socket left by a killed leader is removed
    (this process holds the lease, so no live server can own it); anything else at
    the path is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise InputError([f"{path}: the API socket path holds something that is not a socket"])
    path.unlink()


class ApiServer:
    def __init__(self, rt: Runtime, path: Path) -> None:
        self.rt = rt
        self.path = path
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._watchers: dict[asyncio.Queue, asyncio.StreamWriter] = {}
        self._ino: int | None = None
        self.commands = 0

    async def start(self) -> None:
        prepare_path(self.path)
        if len(os.fsencode(self.path)) >= 108:
            raise InputError([f"{self.path}: a Unix socket path must be under 108 bytes"])
        self._server = await asyncio.start_unix_server(
            self._client, path=str(self.path), limit=P.MAX_LINE_BYTES
        )
        # Anyone who can reach the folder may connect; what they may do is decided per
        # request from the uid the kernel reports.
        os.chmod(self.path, 0o666)
        self._ino = self.path.stat().st_ino
        self.rt.feed.watchers.append(self._changed)

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.rt.feed.watchers.remove(self._changed)
        if self._server is not None:
            self._server.close()
            for w in list(self._clients):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        for w in list(self._watchers.values()):
            w.close()
        with contextlib.suppress(OSError):
            if self._ino is not None and self.path.stat().st_ino == self._ino:
                self.path.unlink()

    # ---------------------------------------------------------------- connection
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            try:
                caller = identify(self.rt, peer_uid(writer.get_extra_info("socket")))
            except Refused as e:
                writer.write(P.encode({"type": P.ERROR, "code": P.E_REFUSED, "message": str(e)}))
                await writer.drain()
                return
            writer.write(
                P.encode(
                    {
                        "type": P.HELLO,
                        "user": caller.user,
                        "operator": caller.operator,
                        "holder": self.rt.holder,
                        "epoch": self.rt.epoch,
                    }
                )
            )
            await writer.drain()
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(_error(None, P.E_BAD_MESSAGE, "line too long"))
                    return
                if not line:
                    return
                reply = await self._request(caller, line, writer)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
                # Not held while the client is idle: a page of jobs is half a megabyte.
                del line, reply
        except (ConnectionError, BrokenPipeError):
            pass
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _request(
        self, caller: Caller, line: bytes, writer: asyncio.StreamWriter
    ) -> bytes | None:
        rid = None
        try:
            msg = P.decode(line)
            rid, kind_of, kind, payload = P.check_request(msg)
            if kind_of == P.COMMAND:
                result = self.command(caller, kind, payload)
                await self.rt.durable()  # accepted means fsync'd (group commit)
                return _ok(rid, result)
            if kind_of == P.QUERY:
                return _ok(rid, await self.query(caller, kind, payload))
            await self._watch(caller, rid, writer)
            return None
        except P.ProtocolError as e:
            return _error(e.re if e.re is not None else rid, e.code, e.message)
        except NotLeading as e:
            return _error(rid, P.E_NOT_LEADING, str(e))
        except Invalid as e:
            return _error(rid, P.E_REFUSED, str(e), invalid=True)
        except Refused as e:
            return _error(rid, P.E_REFUSED, str(e))
        except InputError as e:
            return _error(rid, P.E_REFUSED, "; ".join(e.messages))
        except (StoreError, sqlite3.Error) as e:
            return _error(rid, P.E_STORE, self.rt.store_message(e))
        except Exception as e:  # one bad request must not stop the server
            log.exception("API request failed")
            return _error(rid, P.E_INTERNAL, f"{type(e).__name__}: {e}")

    # ------------------------------------------------------------------ commands
    def command(self, caller: Caller, kind: str, payload: dict) -> dict:
        from ..control import commands

        try:
            cmd = commands.parse(kind, payload)
        except Refused as e:
            raise Invalid(str(e)) from None
        self.commands += 1
        return self.rt.apply(cmd, caller.user, journal=True)

    # ------------------------------------------------------------------- queries
    async def query(self, caller: Caller, kind: str, p: dict) -> Any:
        rt = self.rt
        grid = rt.grid
        now = rt.clock.now()
        if kind == "whoami":
            return {"user": caller.user, "operator": caller.operator}
        if kind == "jobs":
            from .views import job_json

            after, limit = _page(p)
            rows: list[dict[str, Any]] = []
            more: int | None = None
            for j in _jobs_asked(grid, p, after):
                if limit is not None and len(rows) == limit:
                    more = rows[-1]["id"]
                    break
                row = job_json(grid, j)
                if not caller.may_see(j.user):
                    row.update(command=None, charged=None)
                rows.append(row)
            return {"now": now, "jobs": rows, "next": more}
        if kind == "status":
            from .views import status_json

            return status_json(grid, rt.holder)
        if kind == "balance":
            user = _text(p, "user", caller.user)
            self._own(caller, user, f"see the balance of {user}")
            return {"user": user, "balance": grid.balance(user)}
        if kind == "quote":
            from .views import quote_json

            user = p.get("user") or caller.user
            self._own(caller, user, f"quote for {user}")
            args = argparse.Namespace(**_quote_args(p))
            return quote_json(grid, args, user, now, caller.user)
        if kind == "logs":
            job = grid.job_by_ref(p.get("ref", ""))
            self._own(caller, job.user, f"read the logs of job {job.name}")
            return await self._logs(job, p)
        if kind == "state":
            jobs = grid.jobs  # read on the loop: the thread must not walk a changing dict
            kept = None if jobs.archive is None else sorted(dict.keys(jobs))
            return await asyncio.to_thread(self._state, caller, kept)
        raise Refused(
            f"unknown query {kind!r} (known: whoami, jobs, status, balance, quote, logs, state)"
        )

    def _state(self, caller: Caller, kept: list[int] | None) -> dict:
        """The grid's state for a remote console (`--connect`): the config and an image
        of the state database, without history (the watch stream brings that) and, for
        a non-operator, without other users' commands, environments, charges and
        balances. Its jobs are those the leader holds in memory (`kept`; None: every
        job): a serving leader's live ones and latest ended ones, so the image of a long
        history stays as small as the leader's own grid. Only what the image keeps is
        copied, in one read of the file beside the leader's connection."""
        import urllib.parse

        store = self.rt.store
        if store is None:
            raise Refused("this scheduler keeps no state database to show")
        img = sqlite3.connect(":memory:", uri=True, isolation_level=None)
        try:
            source = "file:" + urllib.parse.quote(str(store.path)) + "?mode=ro"
            img.execute("ATTACH DATABASE ? AS src", (source,))
            img.execute("BEGIN")  # one snapshot of the file for every table read below
            schema = img.execute(
                "SELECT type, name, sql FROM src.sqlite_master "
                "WHERE type IN ('table', 'index') AND sql IS NOT NULL "
                "AND name NOT LIKE 'sqlite_%' ORDER BY type = 'index'"
            ).fetchall()
            if kept is not None:
                img.execute("CREATE TEMP TABLE kept (id INTEGER PRIMARY KEY)")
                img.executemany("INSERT INTO temp.kept VALUES (?)", ((i,) for i in kept))
            for type_, name, sql in schema:
                img.execute(sql)  # unqualified: made in the image
                if type_ != "table" or name in HISTORY_TABLES:
                    continue
                rows = f'INSERT INTO main."{name}" SELECT * FROM src."{name}"'
                if name == "jobs" and kept is not None:
                    rows += " WHERE id IN (SELECT id FROM temp.kept)"
                img.execute(rows)
            if not caller.operator:
                img.execute(
                    "UPDATE main.jobs SET argv = '[]', env = NULL, workdir = NULL, charged = 0, "
                    "run_charged = 0, run_acc = 0 WHERE user != ?",
                    (caller.user,),
                )
                img.execute(
                    "DELETE FROM main.accounts "
                    "WHERE substr(account, 1, 5) = 'user:' AND account != ?",
                    (user_account(caller.user),),
                )
            img.execute("COMMIT")
            img.execute("DETACH DATABASE src")
            data = img.serialize()
        finally:
            img.close()
        return {
            "config": self.rt.cfg.model_dump(mode="json"),
            "now": self.rt.clock.now(),
            "image": base64.b64encode(data).decode(),
        }

    def _own(self, caller: Caller, owner: str, what: str) -> None:
        if not caller.may_see(owner):
            raise Refused(f"{caller.user} may not {what}: it belongs to {owner}")

    async def _logs(self, job: Any, p: dict) -> dict:
        from .views import last_placed

        stream = p.get("stream", "stdout")
        if stream not in ("stdout", "stderr"):
            raise Refused("logs: stream: must be 'stdout' or 'stderr'")
        lines = p.get("lines", 100)
        offset = p.get("offset")
        if not isinstance(lines, int) or not 0 <= lines <= 100_000:
            raise Refused("logs: lines: must be an integer from 0 to 100000")
        placed = last_placed(self.rt.store, job)
        doc = {"job": job.name, "id": job.id, "state": str(job.state), "stream": stream}
        if p.get("follow"):
            if offset is not None and (not isinstance(offset, int) or offset < 0):
                raise Refused("logs: offset: must be an integer >= 0")
            finished = job.finished  # first: output written before the end is in the file
            got = await self.rt.executor.read_log(placed, stream, offset, lines)
            return {**doc, "read": got, "finished": finished}
        return {**doc, "lines": await self.rt.executor.logs(placed, stream, lines)}

    # --------------------------------------------------------------------- watch
    async def _watch(self, caller: Caller, rid: int, writer: asyncio.StreamWriter) -> None:
        """A snapshot of recent history, then every change as it happens, until the
        caller goes away (or falls too far behind: then the connection is closed and it
        reconnects for a fresh snapshot)."""
        feed = self.rt.feed
        q: asyncio.Queue = asyncio.Queue(WATCH_QUEUE)
        self._watchers[q] = writer
        try:
            snap = {
                "type": P.SNAPSHOT,
                "re": rid,
                "epoch": self.rt.epoch,
                "events": [_event(e) for e in feed.events],
                "transactions": [_tx(t) for t in feed.transactions if _tx_visible(caller, t)],
                "prices": {t: list(map(list, pts)) for t, pts in feed.prices.items()},
                "telemetry": self.rt.telemetry(),
            }
            writer.write(P.encode(snap))
            await writer.drain()
            while True:
                item = await q.get()
                if item is None:
                    return
                events, txs, prices = item
                msg = {
                    "type": P.CHANGE,
                    "re": rid,
                    "events": [_event(e) for e in events],
                    "transactions": [_tx(t) for t in txs if _tx_visible(caller, t)],
                    "prices": [list(p) for p in prices],
                    "telemetry": self.rt.telemetry(),
                }
                writer.write(P.encode(msg))
                await writer.drain()
        finally:
            self._watchers.pop(q, None)

    def _changed(self, events: list, txs: list, prices: list) -> None:
        for q, writer in list(self._watchers.items()):
            try:
                q.put_nowait((events, txs, prices))
            except asyncio.QueueFull:
                self._watchers.pop(q, None)
                writer.close()


def _ok(rid: int, result: Any) -> bytes:
    return P.encode({"type": P.OK, "re": rid, "result": result})


def _error(rid: int | None, code: str, message: str, **extra: Any) -> bytes:
    return P.encode({"type": P.ERROR, "re": rid, "code": code, "message": message, **extra})


# The state's history: a remote console gets it from the watch stream, not the image.
HISTORY_TABLES = frozenset({"events", "ledger_entries", "ledger_tx", "actions", "commands"})


class Invalid(Refused):
    """A command that is not one (a field missing or out of range): refused before it
    was journalled, and marked `"invalid": true` on the wire so a client can show its
    own, flag-named message (docs/api.md)."""


# The most jobs one answer to a paged `jobs` query holds (its `limit`).
JOBS_PAGE_MAX = 10_000


def _page(p: dict) -> tuple[int, int | None]:
    """A `jobs` query's page: jobs with ids above `after`, at most `limit` of them (no
    limit: every job asked for, in one answer, as before paging existed)."""
    after = p.get("after", 0)
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise Invalid("after: must be a job id (an integer, 0 or more)")
    limit = p.get("limit")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= JOBS_PAGE_MAX
    ):
        raise Invalid(f"limit: must be an integer from 1 to {JOBS_PAGE_MAX:,}")
    return after, limit


def _jobs_asked(grid: Any, p: dict, after: int = 0) -> Iterable[Job]:
    """The jobs a `jobs` query asks for, by id, from above `after`: `names` (those of
    them that exist), else with `live` the unfinished ones (all in memory: no store
    read), else every job ever admitted (those that left memory read back a page at a
    time, from `after` on)."""
    from ..policy.resident import every_job

    names = p.get("names")
    if names is not None:
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Invalid("names: must be a list of job names")
        found = (grid.jobs.get(grid.job_names.get(n)) for n in dict.fromkeys(names))
        return sorted((j for j in found if j is not None and j.id > after), key=lambda j: j.id)
    if p.get("live"):
        live = (j for j in grid.jobs.values() if not j.finished and j.id > after)
        return sorted(live, key=lambda j: j.id)
    return every_job(grid.jobs, after)


def _text(p: dict, key: str, default: str) -> str:
    v = p.get(key, default)
    if not isinstance(v, str) or not v:
        raise Refused(f"{key}: must be a non-empty string")
    return v


def _quote_args(p: dict) -> dict:
    unknown = sorted(set(p) - set(P.QUOTE_KEYS))
    if unknown:
        raise Refused(f"quote: unknown field {unknown[0]!r}")
    if p.get("kind") not in ("priority", "commit", "flex", "reservation"):
        raise Refused("quote: kind: must be one of priority, commit, flex, reservation")
    return {k: p.get(k, False if k in ("hourly", "auto_renew") else None) for k in P.QUOTE_KEYS}


def _event(e: Any) -> dict:
    return {k: getattr(e, k) for k in e.__dataclass_fields__}


def _tx(t: Any) -> dict:
    return {
        "at": t.at,
        "reason": t.reason,
        "entries": [list(x) for x in t.entries],
        "job": t.job,
        "reservation": t.reservation,
    }


def _tx_visible(caller: Caller, t: Any) -> bool:
    if caller.operator:
        return True
    mine = user_account(caller.user)
    return any(acct == mine for acct, _ in t.entries)
