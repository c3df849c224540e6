"""`serve --stdio`: requests on stdin, replies and events on stdout, one JSON line each.

Requests are answered one at a time, in order. Events come from two background threads
(job watcher, telemetry subscription); one lock keeps every line whole. Bad input gets an
error reply and the loop goes on; EOF on stdin ends the agent and leaves jobs running.
"""

from __future__ import annotations

import os
import platform
import socket
import sys
import threading
import time
import traceback
from typing import Any, BinaryIO, Callable

from skyops_agent import __version__, cgroups, checkpoints, protocol
from skyops_agent.gpus import GpuProbe, make_probe
from skyops_agent.jobs import JobRunner
from skyops_agent.protocol import ProtocolError
from skyops_agent.zipapp import running_zipapp

WATCH_INTERVAL_S = 0.1
MIN_TELEMETRY_INTERVAL_S = 0.1


class Server:
    def __init__(
        self,
        state_dir: str,
        out: BinaryIO,
        fake_gpus: str | None = None,
        node_name: str | None = None,
        watch_interval_s: float = WATCH_INTERVAL_S,
        single_user: bool = False,
        supervisor: str = "c",
    ) -> None:
        self.node_name = node_name or socket.gethostname()
        self.runner = JobRunner(state_dir, single_user=single_user, supervisor=supervisor)
        self.tracking = cgroups.tracking()
        self.grid = ""  # the console's grid, once it has said (`configure`)
        self.probe: GpuProbe = make_probe(fake_gpus, self.node_name, busy=self.runner.busy_gpus)
        self.started_at = time.time()
        self._out = out
        self._out_lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._closing = threading.Event()
        self._watch_interval_s = watch_interval_s
        self._telemetry_interval_s = 0.0
        self._telemetry_wake = threading.Event()
        self._telemetry_thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            protocol.HELLO: self._hello,
            protocol.CONFIGURE: self._configure,
            protocol.INVENTORY: self._inventory,
            protocol.TELEMETRY: lambda req: self._sample(),
            protocol.SUBSCRIBE: self._subscribe,
            protocol.START: self.runner.start,
            protocol.STOP: lambda req: self.runner.stop(self._ours(req)),
            protocol.UNSTOP: lambda req: self.runner.unstop(self._ours(req)),
            protocol.SIGNAL: lambda req: self.runner.send_signal(
                self._ours(req)["job_id"], req["signal"]
            ),
            protocol.JOBS: lambda req: {"jobs": self.runner.list_jobs()},
            protocol.LOGS: lambda req: self.runner.logs(
                req["job_id"], req["stream"], req["tail_lines"], req["offset"]
            ),
            protocol.CHECKPOINT_LIST: self._checkpoint_list,
            protocol.CHECKPOINT_PACK: self._checkpoint_pack,
            protocol.CHECKPOINT_UNPACK: self._checkpoint_unpack,
            protocol.FORGET: lambda req: self.runner.forget(
                self._ours(req)["job_id"], req["remove_checkpoint"]
            ),
            protocol.SHUTDOWN: lambda req: {"jobs_left_running": True},
        }
        assert set(self._handlers) == protocol.REQUEST_TYPES

    # -- output ---------------------------------------------------------------------

    def send(self, msg: dict[str, Any]) -> None:
        line = protocol.encode(msg)
        with self._out_lock:
            if self._closing.is_set():
                return
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):  # the console went away
                self._closing.set()

    # -- loop -----------------------------------------------------------------------

    def serve(self, inp: BinaryIO) -> int:
        watcher = threading.Thread(target=self._watch, name="job-watcher", daemon=True)
        watcher.start()
        try:
            while not self._closing.is_set():
                line = inp.readline(protocol.MAX_LINE_BYTES + 1)
                if not line:
                    break
                if len(line) > protocol.MAX_LINE_BYTES and not line.endswith(b"\n"):
                    while line and not line.endswith(b"\n"):
                        line = inp.readline(1024 * 1024)
                    self.send(
                        protocol.error(
                            None,
                            protocol.E_LINE_TOO_LONG,
                            f"line longer than {protocol.MAX_LINE_BYTES} bytes ignored",
                        )
                    )
                    continue
                if not line.strip():
                    continue
                req = self._read(line)
                if req is None:
                    continue
                self.send(self.handle(req))
                if req["type"] == protocol.SHUTDOWN:
                    break
        finally:
            self._closing.set()
            self._telemetry_wake.set()
            watcher.join(timeout=2)
            with self._probe_lock:
                self.probe.close()
        return 0

    def _read(self, line: bytes) -> dict[str, Any] | None:
        try:
            return protocol.decode_request(line)
        except ProtocolError as exc:
            self.send(protocol.error(exc.re, exc.code, exc.message))
            return None

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """The reply to one decoded request; never raises."""
        try:
            payload = self._handlers[req["type"]](req)
        except ProtocolError as exc:
            return protocol.error(req["id"], exc.code, exc.message)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)  # for whoever reads the agent's stderr
            return protocol.error(
                req["id"],
                protocol.E_INTERNAL,
                "agent failed on {}: {}".format(req["type"], exc.__class__.__name__),
            )
        return protocol.ok(req["id"], **payload)

    def _watch(self) -> None:
        while not self._closing.wait(self._watch_interval_s):
            try:
                events = self.runner.poll_events()
            except Exception:
                traceback.print_exc(file=sys.stderr)
                continue
            for event in events:
                self.send(event)

    # -- handlers -------------------------------------------------------------------

    def _hello(self, req: dict[str, Any]) -> dict[str, Any]:
        if req["protocol"] != protocol.PROTOCOL_VERSION:
            raise ProtocolError(
                protocol.E_VERSION_MISMATCH,
                protocol.mismatch_message("console", req["protocol"]),
            )
        waiter, why = self.runner.waiter_outlook()
        return {
            "protocol": protocol.PROTOCOL_VERSION,
            "agent_version": __version__,
            "node_name": self.node_name,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "python": platform.python_version(),
            "state_dir": self.runner.state_dir,
            "fake_gpus": self.probe.fake,
            "zipapp": running_zipapp(),
            "started_at": self.started_at,
            "multi_user": self.runner.multi_user,
            "agent_user": self.runner.agent_user.name,
            "tracking": self.tracking,
            "shim_waiter": waiter,
            "shim_waiter_note": why,
        }

    def _configure(self, req: dict[str, Any]) -> dict[str, Any]:
        """The console's grid and limits, for this connection."""
        self.runner.configure(req)
        self.grid = req["grid"]
        grids = {r["grid"] for r in self.runner.list_jobs(with_checkpoint=False)}
        return {
            "grid": self.grid,
            "other_grids": sorted(g for g in grids if g and g != self.grid),
            "multi_user": self.runner.multi_user,
            "tracking": self.tracking,
        }

    def _ours(self, req: dict[str, Any]) -> dict[str, Any]:
        """A console that said its grid never stops, signals or forgets another's job."""
        rec = self.runner.record(req["job_id"], with_checkpoint=False)
        if self.grid and rec is not None and rec["grid"] and rec["grid"] != self.grid:
            raise ProtocolError(
                protocol.E_OTHER_GRID,
                "job {!r} belongs to another grid ({}); left alone".format(
                    req["job_id"], rec["grid"]
                ),
            )
        return req

    def _inventory(self, req: dict[str, Any]) -> dict[str, Any]:
        with self._probe_lock:
            inventory = self.probe.inventory()
        return dict(inventory, node_name=self.node_name, hostname=socket.gethostname())

    def _sample(self) -> dict[str, Any]:
        with self._probe_lock:
            return self.probe.telemetry()

    def _subscribe(self, req: dict[str, Any]) -> dict[str, Any]:
        interval = float(req["interval_s"])
        if interval:
            interval = max(interval, MIN_TELEMETRY_INTERVAL_S)
        self._telemetry_interval_s = interval
        self._telemetry_wake.set()
        if interval and self._telemetry_thread is None:
            self._telemetry_thread = threading.Thread(
                target=self._push_telemetry, name="telemetry", daemon=True
            )
            self._telemetry_thread.start()
        return {"interval_s": interval}

    def _push_telemetry(self) -> None:
        while not self._closing.is_set():
            interval = self._telemetry_interval_s
            self._telemetry_wake.clear()
            if interval:
                try:
                    self.send(protocol.event(protocol.TELEMETRY_EVENT, **self._sample()))
                except Exception:
                    traceback.print_exc(file=sys.stderr)
            self._telemetry_wake.wait(interval or None)

    def _checkpoint_list(self, req: dict[str, Any]) -> dict[str, Any]:
        root = self.runner.checkpoint_dir_for(req["job_id"], req["checkpoint_dir"])
        return dict(checkpoints.describe(root), job_id=req["job_id"])

    def _checkpoint_pack(self, req: dict[str, Any]) -> dict[str, Any]:
        root = self.runner.checkpoint_dir_for(req["job_id"], req["checkpoint_dir"])
        return dict(checkpoints.pack(root, req["max_bytes"]), job_id=req["job_id"])

    def _checkpoint_unpack(self, req: dict[str, Any]) -> dict[str, Any]:
        root = self.runner.resolve_checkpoint_dir(req["job_id"], req["checkpoint_dir"])
        self.runner.check_unpack_target(root)
        r = self.runner
        got = checkpoints.unpack(root, req["data"], r.unpack_max_bytes, r.unpack_max_ratio)
        return dict(got, job_id=req["job_id"])


def serve_stdio(
    state_dir: str,
    fake_gpus: str | None = None,
    node_name: str | None = None,
    single_user: bool = False,
    supervisor: str = "c",
) -> int:
    out = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print() must not corrupt the protocol stream
    os.umask(0o077)  # job folders and records: not for other users to read
    server = Server(
        state_dir,
        out,
        fake_gpus=fake_gpus,
        node_name=node_name,
        single_user=single_user,
        supervisor=supervisor,
    )
    return server.serve(sys.stdin.buffer)
