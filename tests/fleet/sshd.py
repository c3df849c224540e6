"""SSH servers for the fleet tests: the console's real SshTransport talks to them, and
the real agent zipapp runs behind them as a local process.

- `AsyncsshBox`: an asyncssh server in this process (its own event loop in a thread, so
  sync and async tests can both use it), with a generated host key, one authorised
  client key, SFTP rooted in a temp "home", and exec requests run as real subprocesses
  in that home. Always available.
- `OpenSshBox`: OpenSSH's own `sshd` on 127.0.0.1 with a throw-away config, host key and
  authorized_keys. Needs /usr/sbin/sshd.

Both are a `Box`: where to connect, with which key, and known_hosts files that trust
the host key, trust nothing, or hold a different key for the same host.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import asyncssh

from skyops_agent import jobdir
from skyops_agent.cgroups import Cgroup
from skyops_tui.domain.config import NodeConfig
from skyops_tui.fleet.ssh import SshTransport
from tests.waiting import wait_for

SSHD = "/usr/sbin/sshd"
DEADLINE_S = 20.0
CHUNK = 1 << 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def remove_cgroup(status: dict) -> None:
    """Kill what is left in a job's cgroup (a double-forked child) and remove it."""
    cgroup = Cgroup.from_json(status.get("cgroup"))
    if cgroup is None:
        return

    def emptied() -> bool:
        if not cgroup.pids():
            return True
        cgroup.signal(signal.SIGKILL)
        return False

    with contextlib.suppress(AssertionError):  # remove() fails on what is still in it
        wait_for(emptied, "the job's cgroup emptied", 5, interval=0.01)
    cgroup.remove()


def kill_leftover_jobs(root: Path) -> None:
    """Jobs outlive their agent by design; a test must not leave them behind."""
    for status_path in root.glob("**/jobs/*/" + jobdir.STATUS):
        status = jobdir.read_json(str(status_path)) or {}
        if status.get("state") == "exited":
            continue
        for pid, kill in ((status.get("pgid"), os.killpg), (status.get("shim_pid"), os.kill)):
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(pid, signal.SIGKILL)
        remove_cgroup(status)


def process_gone(pid: int) -> bool:
    """No such process, or a zombie nobody has reaped yet."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


class Box:
    """One SSH server with an agent-ready account, as a test sees it."""

    kind = "?"

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = 0
        self.user = getpass.getuser()
        self.identity = str(root / "client_key")
        self.host_public = ""  # the host key, OpenSSH public format
        self.agent_dir = "~/.skyops"
        self.files = root  # where agent_dir lands on this machine
        # No ~/.ssh/config of whoever runs the tests may change where we connect.
        self.ssh_config = str(root / "no-ssh-config")

    # -------------------------------------------------------------- known_hosts
    @property
    def target(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def fingerprint(self) -> str:
        return asyncssh.import_public_key(self.host_public).get_fingerprint("sha256")

    def known_hosts(self, kind: str = "trusted") -> str:
        """A known_hosts file: `trusted` (the host key), `empty`, `missing` (no file at
        all) or `changed` (another key for the same host, as after a reinstall)."""
        path = self.root / f"known_hosts.{kind}"
        if kind == "trusted":
            path.write_text(f"{self.target} {self.host_public}\n")
        elif kind == "empty":
            path.write_text("")
        elif kind == "changed":
            other = asyncssh.generate_private_key("ssh-ed25519")
            line = other.export_public_key().decode().strip()
            path.write_text(f"{self.target} {line}\n")
        elif kind != "missing":
            raise ValueError(kind)
        return str(path)

    # ---------------------------------------------------------------- the node
    def node(self, name: str = "box", fake_gpus: str | None = "2xH100-80GB", **kw) -> NodeConfig:
        fields: dict[str, Any] = {
            "name": name,
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identity": self.identity,
            "python": sys.executable,
            "agent_dir": self.agent_dir,
        }
        if fake_gpus:
            fields["fake_gpus"] = fake_gpus
        else:
            fields.update(gpu_type="H100", gpus=2)
        fields.update(kw)
        return NodeConfig(**fields)

    def transport(self, node: NodeConfig | None = None, known: str = "trusted") -> SshTransport:
        return SshTransport(
            node or self.node(),
            known_hosts=self.known_hosts(known),
            ssh_config=self.ssh_config,
            connect_timeout=10,
        )

    def close(self) -> None:
        kill_leftover_jobs(self.files)

    def __repr__(self) -> str:
        return f"<{self.kind} {self.user}@{self.host}:{self.port}>"


class AsyncsshBox(Box):
    """asyncssh's server in a thread of this process; commands run as local subprocesses
    in `home`, which is also the root of its SFTP view, so `~/.skyops` means the same
    to both."""

    kind = "asyncssh"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.home = root / "home"
        self.home.mkdir()
        self.files = self.home
        client = asyncssh.generate_private_key("ssh-ed25519")
        client.write_private_key(self.identity)
        self._authorized = asyncssh.import_authorized_keys(client.export_public_key().decode())
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.host_public = self._host_key.export_public_key().decode().strip()
        self.commands: list[str] = []
        self._procs: set[asyncio.subprocess.Process] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncssh.SSHAcceptor | None = None

    def start(self) -> AsyncsshBox:
        self._thread.start()
        self._server = self._call(self._listen())
        self.port = self._server.get_port()
        return self

    def _call(self, coro) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(DEADLINE_S)

    async def _listen(self) -> asyncssh.SSHAcceptor:
        return await asyncssh.listen(
            "127.0.0.1",
            0,
            server_host_keys=[self._host_key],
            authorized_client_keys=self._authorized,
            process_factory=self._exec,
            sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=os.fsencode(self.home)),
            encoding=None,
            allow_scp=False,
        )

    async def _exec(self, process: asyncssh.SSHServerProcess) -> None:
        """Run the requested command for real, its stdio piped to the channel. When the
        client goes away, the command sees EOF on stdin, as under OpenSSH."""
        command = process.command
        if not command:
            process.stderr.write(b"this test server runs commands only, no shells\n")
            process.exit(1)
            return
        self.commands.append(command)
        proc = await asyncio.create_subprocess_shell(
            command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.home,
            env=dict(os.environ, HOME=str(self.home)),
        )
        self._procs.add(proc)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None

        async def feed() -> None:
            try:
                while data := await process.stdin.read(CHUNK):
                    proc.stdin.write(data)
                    await proc.stdin.drain()
            except Exception:  # the connection went away, or the command did
                pass
            finally:
                with contextlib.suppress(Exception):
                    proc.stdin.close()

        async def relay(source: asyncio.StreamReader, sink: asyncssh.SSHWriter) -> None:
            try:
                while data := await source.read(CHUNK):
                    sink.write(data)
                    await sink.drain()
            except Exception:
                with contextlib.suppress(Exception):
                    while await source.read(CHUNK):  # keep the command from blocking
                        pass

        feeding = asyncio.ensure_future(feed())
        try:
            await asyncio.gather(
                relay(proc.stdout, process.stdout), relay(proc.stderr, process.stderr)
            )
            code = await proc.wait()
        finally:
            feeding.cancel()
            with contextlib.suppress(Exception):
                proc.stdin.close()  # now, not when the cancelled feed next runs: a loop
                # stopped before then left the pipe open, and its transport complained
                # "Event loop is closed" when collected at the end of the test run
            self._procs.discard(proc)
        with contextlib.suppress(Exception):
            process.exit(code)

    async def _shutdown(self) -> None:
        for proc in list(self._procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                if proc.stdin is not None:
                    proc.stdin.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def close(self) -> None:
        super().close()
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()


SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {root}/sshd.pid
AuthorizedKeysFile {root}/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
UseDNS no
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


class OpenSshBox(Box):
    """OpenSSH's sshd, started for one test with its own config, keys and port."""

    kind = "openssh"

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.agent_dir = str(root / "agent")  # an absolute path: never the real ~/.skyops
        self.files = root / "agent"
        self.log = root / "sshd.log"
        self.proc: subprocess.Popen | None = None
        keygen = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
        for name in ("host_key", "client_key"):
            subprocess.run(
                [keygen, "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(root / name)],
                check=True,
                capture_output=True,
            )
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        self.host_public = " ".join((root / "host_key.pub").read_text().split()[:2])

    def start(self) -> OpenSshBox:
        with contextlib.suppress(OSError):
            os.makedirs("/run/sshd", exist_ok=True)  # privilege separation dir
        for _ in range(3):  # another process may take the free port first
            self.port = free_port()
            config = self.root / "sshd_config"
            config.write_text(
                SSHD_CONFIG.format(port=self.port, host_key=self.root / "host_key", root=self.root)
            )
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [SSHD, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            if self._wait_listening():
                return self
            self._stop()
        raise RuntimeError(f"sshd did not start; its log:\n{self.log.read_text()[-2000:]}")

    def _wait_listening(self) -> bool:
        def listening() -> str:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return "exited"
            with socket.create_connection((self.host, self.port), timeout=1):
                return "listening"

        try:
            return wait_for(listening, "sshd listening", DEADLINE_S, interval=0.02) == "listening"
        except AssertionError:
            return False

    def _stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def close(self) -> None:
        super().close()
        self._stop()
