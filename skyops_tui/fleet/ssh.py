"""Reaching a real GPU box: asyncssh to its own sshd, the agent pushed over SFTP.

Host keys are verified against known_hosts, never accepted silently: an unknown or
changed key refuses the connection and says the key's fingerprint and how to trust it.
The agent zipapp is named by its content hash, so a stale copy is never run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import tempfile
from collections.abc import Callable
from pathlib import Path

import asyncssh

from skyops_agent.zipapp import build_zipapp

from ..domain.config import NodeConfig
from .link import AgentLink

_ZIPAPP: tuple[str, str] | None = None


def agent_zipapp() -> tuple[str, str]:
    """Build the agent zipapp once per process: (path, sha256)."""
    global _ZIPAPP
    if _ZIPAPP is None or not Path(_ZIPAPP[0]).exists():
        _ZIPAPP = build_zipapp(tempfile.mkdtemp(prefix="skyops-agent-"))
    return _ZIPAPP


class HostKeyRefused(Exception):
    """The box's host key is not in known_hosts (or does not match it)."""

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
        target = host if port == 22 else f"[{host}]:{port}"
        what = "does not match the one in" if changed else "is not in"
        scan = f"ssh-keyscan -p {port} {shlex.quote(host)}"
        super().__init__(
            f"{node}: host key of {target} ({key_type} {fingerprint}) {what} {known_hosts}; "
            f"refused. Check the fingerprint on the box (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), "
            f"then trust it with: {scan} >> {known_hosts}"
            + (
                "  (remove the old line first: ssh-keygen -R " + shlex.quote(target) + ")"
                if changed
                else ""
            )
        )
        self.trust_command = f"{scan} >> {known_hosts}"


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
        self.pushed = False

    def describe(self) -> str:
        n = self.node
        return f"ssh {n.user + '@' if n.user else ''}{n.host}:{n.port}"

    def _trusted(self):
        path = Path(self.known_hosts)
        if path.exists():
            return str(path)
        return asyncssh.import_known_hosts("")  # nothing trusted yet: every key refused

    async def open_connection(self) -> asyncssh.SSHClientConnection:
        n = self.node
        kwargs: dict = {
            "port": n.port,
            "known_hosts": self._trusted(),
            "config": self.ssh_config or None,
            "connect_timeout": self.connect_timeout,
        }
        if n.user:
            kwargs["username"] = n.user
        if n.identity:
            kwargs["client_keys"] = [str(Path(n.identity).expanduser())]
        try:
            return await asyncssh.connect(n.host, **kwargs)
        except asyncssh.HostKeyNotVerifiable as e:
            key = None
            with contextlib.suppress(Exception):
                key = await asyncssh.get_server_host_key(
                    n.host, n.port, config=self.ssh_config or None
                )
            fp = key.get_fingerprint("sha256") if key is not None else "unknown fingerprint"
            kt = key.get_algorithm() if key is not None else "?"
            changed = "mismatch" in str(e).lower() or "changed" in str(e).lower()
            raise HostKeyRefused(
                n.name, n.host, n.port, fp, kt, self.known_hosts, changed
            ) from None

    def remote_dir(self) -> str:
        d = self.node.agent_dir
        return d[2:] if d.startswith("~/") else d  # relative paths start in the home dir

    async def ensure_agent(self, conn: asyncssh.SSHClientConnection) -> str:
        """Push the zipapp unless this exact build (by hash) is already on the box."""
        local, digest = agent_zipapp()
        rdir = self.remote_dir()
        remote = f"{rdir}/skyops-agent-{digest[:16]}.pyz"
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(rdir, exist_ok=True)
            if not await sftp.exists(remote):
                tmp = remote + ".part"
                await sftp.put(local, tmp)
                with contextlib.suppress(asyncssh.SFTPError):
                    await sftp.remove(remote)
                await sftp.rename(tmp, remote)
                self.pushed = True
        self.agent_path = remote
        return remote

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
        reader = proc.stdout

        async def close() -> None:
            with contextlib.suppress(Exception):
                proc.stdin.write_eof()
            conn.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.wait_closed(), 3)

        link = AgentLink(self.node.name, reader, proc.stdin, on_event, close)
        try:
            await link.open()
        except BaseException:
            await link.close()
            raise
        return link
