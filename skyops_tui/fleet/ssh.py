"""Reaching a real GPU box: asyncssh to its own sshd, the agent pushed over SFTP.

Host keys are verified against known_hosts, never accepted silently: an unknown or
changed key refuses the connection and says the key's fingerprint and how to trust it.
The agent zipapp is named by its content hash, so a stale copy is never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import tempfile
from collections import deque
from collections.abc import Callable
from pathlib import Path

from skyops_agent.zipapp import build_zipapp

from ..domain.config import NodeConfig
from ..locations import data_dir
from .link import AgentLink, HostKeyRefused, LinkClosed
from .sshlib import asyncssh

STDERR_LINES = 20
_ZIPAPP: tuple[str, str] | None = None


def agent_zipapp() -> tuple[str, str]:
    """Build the agent zipapp once per process: (path, sha256). Kept under the data
    folder by its hash, so every console on this machine shares one copy."""
    global _ZIPAPP
    if _ZIPAPP is None or not Path(_ZIPAPP[0]).exists():
        tmp = tempfile.mkdtemp(prefix="skyops-agent-")
        try:
            built, digest = build_zipapp(tmp)
            home = data_dir() / "agent"
            home.mkdir(parents=True, exist_ok=True)
            path = home / f"skyops-agent-{digest[:16]}.pyz"
            os.replace(built, path)  # atomic: a console building beside us sees all or nothing
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _ZIPAPP = (str(path), digest)
    return _ZIPAPP


class SshTransport:
    def __init__(
        self,
        node: NodeConfig,
        known_hosts: str | None = None,
        ssh_config: str | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        self.node = node
        self.known_hosts = str(Path(known_hosts or "~/.ssh/known_hosts").expanduser())
        cfg = Path(ssh_config or "~/.ssh/config").expanduser()
        self.ssh_config = [str(cfg)] if cfg.exists() else []
        self.connect_timeout = connect_timeout
        self.agent_path: str | None = None
        self.conn: asyncssh.SSHClientConnection | None = None  # while linked: for SFTP
        self.pushed = False  # did the last connect copy the agent over?
        self.agent_stderr: deque[str] = deque(maxlen=STDERR_LINES)  # the agent's last words

    def describe(self) -> str:
        n = self.node
        return f"ssh {n.user + '@' if n.user else ''}{n.host}:{n.port}"

    def _trusted(self):
        path = Path(self.known_hosts)
        if path.exists():
            return str(path)
        return asyncssh.import_known_hosts("")  # nothing trusted yet: every key refused

    def _port_given(self) -> bool:
        """A port written in config.toml wins; else ~/.ssh/config's, else 22."""
        return "port" in self.node.model_fields_set or not self.ssh_config

    def resolved(self) -> tuple[str, int]:
        """Host name and port after ~/.ssh/config (HostName, Port): what ssh-keyscan
        and known_hosts need, since they know nothing of ssh aliases."""
        n = self.node
        kwargs: dict = {"port": n.port} if self._port_given() else {}
        with contextlib.suppress(Exception):
            opts = asyncssh.SSHClientConnectionOptions(
                config=self.ssh_config or None, host=n.host, **kwargs
            )
            return str(opts.host), int(opts.port)
        return n.host, n.port

    def _changed(self, host: str, port: int, fingerprint: str) -> bool:
        """Does known_hosts list other keys for this host (a reinstall, or an attack)?"""
        if not Path(self.known_hosts).exists():
            return False
        try:
            keys = asyncssh.match_known_hosts(self.known_hosts, host, host, port)[0]
        except Exception:
            return False
        return bool(keys) and fingerprint not in {k.get_fingerprint("sha256") for k in keys}

    async def open_connection(self) -> asyncssh.SSHClientConnection:
        n = self.node
        kwargs: dict = {
            "known_hosts": self._trusted(),
            "config": self.ssh_config or None,
            "connect_timeout": self.connect_timeout,
        }
        if self._port_given():
            kwargs["port"] = n.port
        if n.user:
            kwargs["username"] = n.user
        if n.identity:
            kwargs["client_keys"] = [str(Path(n.identity).expanduser())]
        try:
            return await asyncssh.connect(n.host, **kwargs)
        except asyncssh.HostKeyNotVerifiable:
            host, port = self.resolved()
            key = None
            probe: dict = {"port": n.port} if self._port_given() else {}
            with contextlib.suppress(Exception):
                key = await asyncio.wait_for(
                    asyncssh.get_server_host_key(n.host, config=self.ssh_config or None, **probe),
                    self.connect_timeout,
                )
            fp = key.get_fingerprint("sha256") if key is not None else "unknown fingerprint"
            kt = key.get_algorithm() if key is not None else "?"
            changed = key is not None and self._changed(host, port, fp)
            raise HostKeyRefused(n.name, host, port, fp, kt, self.known_hosts, changed) from None

    def remote_dir(self) -> str:
        d = self.node.agent_dir
        return d[2:] if d.startswith("~/") else d  # relative paths start in the home dir

    async def ensure_agent(self, conn: asyncssh.SSHClientConnection) -> str:
        """Push the zipapp unless this exact build (by hash) is already on the box.

        Several connections may push at once (nodes sharing a box, two consoles): each
        writes its own temp file, and a copy already in place is never removed, since
        an agent may be starting from it; the same name means the same bytes."""
        local, digest = agent_zipapp()
        self.pushed = False
        rdir = self.remote_dir()
        remote = f"{rdir}/skyops-agent-{digest[:16]}.pyz"
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(rdir, exist_ok=True)
            if not await sftp.exists(remote):
                tmp = f"{remote}.part-{os.urandom(4).hex()}"
                await sftp.put(local, tmp)
                try:
                    await sftp.rename(tmp, remote)
                    self.pushed = True
                except asyncssh.SFTPError:
                    with contextlib.suppress(asyncssh.SFTPError):
                        await sftp.remove(tmp)
                    if not await sftp.exists(remote):
                        raise
        self.agent_path = remote
        return remote

    def checkpoint_path(self, name: str) -> str:
        """A job's checkpoint folder on this box, as SFTP sees it (from the home folder);
        the same folder FleetExecutor.checkpoint_dir names through the agent."""
        return f"{self.remote_dir()}/state/checkpoints/{name}"

    def command(self, remote: str) -> str:
        n = self.node
        argv = [
            n.python,
            remote,
            "serve",
            "--stdio",
            "--state-dir",
            f"{self.remote_dir()}/state",
            "--node-name",
            n.name,
        ]
        if n.fake_gpus:
            argv += ["--fake-gpus", n.fake_gpus]
        return shlex.join(argv)

    async def connect(self, on_event: Callable[[dict], None]) -> AgentLink:
        conn = await self.open_connection()
        try:
            remote = await self.ensure_agent(conn)
            proc = await conn.create_process(self.command(remote), encoding=None)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        self.agent_stderr.clear()
        # Read stderr always: unread, it would fill the channel's window and stall stdout.
        stderr_task = asyncio.get_running_loop().create_task(self._keep_stderr(proc.stderr))

        async def close() -> None:
            with contextlib.suppress(Exception):
                proc.stdin.write_eof()
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 3)
            stderr_task.cancel()

        link = AgentLink(self.node.name, proc.stdout, proc.stdin, on_event, close)
        try:
            await link.open()
        except LinkClosed as e:
            # The agent never answered: python missing, too old, a crash. Say what it said.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(stderr_task), 2)
            await link.close()
            said = " | ".join(self.agent_stderr) or "nothing on stderr"
            status = proc.exit_status
            raise LinkClosed(
                f"{e}; `{self.command(remote)}` "
                + (f"exited with status {status}; " if status is not None else "")
                + f"it said: {said}"
            ) from None
        except BaseException:
            await link.close()
            raise
        return link

    async def _keep_stderr(self, stderr: asyncssh.SSHReader) -> None:
        with contextlib.suppress(Exception):
            while line := await stderr.readline():
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    self.agent_stderr.append(text[:300])


async def sftp_copy_dir(src: SshTransport, src_dir: str, dst: SshTransport, dst_dir: str) -> int:
    """Copy a folder from one box to another through the console, over SFTP; returns
    the bytes copied. The target is replaced whole (it may hold an older checkpoint)."""
    if src.conn is None or dst.conn is None:
        raise ConnectionError("both boxes must be connected")
    with tempfile.TemporaryDirectory(prefix="skyops-ckpt-") as tmp:
        local = Path(tmp) / "ckpt"
        async with src.conn.start_sftp_client() as sftp:
            await sftp.get(src_dir, str(local), recurse=True, preserve=True)
        size = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())
        parent = dst_dir.rsplit("/", 1)[0] if "/" in dst_dir else "."
        async with dst.conn.start_sftp_client() as sftp:
            await sftp.makedirs(parent, exist_ok=True)
            if await sftp.exists(dst_dir):
                await sftp.rmtree(dst_dir)
            await sftp.put(str(local), dst_dir, recurse=True, preserve=True)
    return size
