"""`skyops nodes check`: can this console reach every configured box, and what is on it?

Each node is tried the way the scheduler will reach it (SSH with known_hosts verified
and the agent pushed, or a local agent for `local = true` nodes), all at once. The
answer is one row per node: reached or why not, whether the agent was pushed, and the
GPUs the agent found. A refused host key is never trusted here: the refusal, with the
key's fingerprint and the command to trust it, is printed for a person to act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from skyops_agent import protocol

from ..domain.config import Config, NodeConfig
from ..fleet.link import AgentError, LinkClosed, LocalTransport, Transport
from ..fleet.ssh import HostKeyRefused, SshTransport
from ..fleet.sshlib import asyncssh
from ..locations import db_path

OK = "ok"
HOST_KEY_REFUSED = "host key refused"
UNREACHABLE = "unreachable"
AUTH_FAILED = "auth failed"
AGENT_ERROR = "agent error"

RESULT_STYLE = {
    OK: "green",
    HOST_KEY_REFUSED: "bold red",
    UNREACHABLE: "red",
    AUTH_FAILED: "red",
    AGENT_ERROR: "yellow",
}
MAX_AT_ONCE = 32


@dataclass
class NodeCheck:
    """What checking one node found. `gpus` is what the agent's inventory listed."""

    node: str
    address: str
    result: str = OK
    detail: str = ""
    agent: str = ""  # "pushed", "up to date", "local"; empty when not reached
    agent_version: str = ""
    gpus: list[str] = field(default_factory=list)
    fake: bool = False
    users: str = ""  # "multi-user" (jobs run as their owners) or "single-user"
    tracking: str = ""  # "cgroup2", "cgroup1" or "process group"
    other_grids: list[str] = field(default_factory=list)  # grid ids of other jobs there
    gpu_message: str = ""  # the agent's plain words when it has no GPUs to show
    hint: str = ""
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    trust_command: str = ""
    forget_command: str = ""

    @property
    def ok(self) -> bool:
        return self.result == OK

    def gpu_summary(self) -> str:
        """'8 x NVIDIA H100 80GB HBM3', several models comma-separated, FAKE when fake."""
        if not self.gpus:
            return self.gpu_message or ("-" if not self.ok else "no GPUs")
        counts = Counter(name.removesuffix(" (fake)") for name in self.gpus)
        text = ", ".join(f"{n} x {name}" for name, n in counts.items())
        return text + (" FAKE" if self.fake else "")

    def to_json(self) -> dict:
        out = asdict(self)
        out["ok"] = self.ok
        out["gpu_count"] = len(self.gpus)
        out["gpu_summary"] = self.gpu_summary()
        return out


def address(node: NodeConfig) -> str:
    if node.local:
        return "local"
    user = f"{node.user}@" if node.user else ""
    return f"{user}{node.host}:{node.port}"


def transport_for(
    node: NodeConfig, state_root: str, known_hosts: str | None, ssh_config: str | None
) -> Transport:
    if node.local:
        return LocalTransport(node.name, str(Path(state_root) / node.name), node.fake_gpus)
    return SshTransport(node, known_hosts=known_hosts, ssh_config=ssh_config)


def _ignore(msg: dict) -> None:
    pass


def _reached_agent(transport: Transport) -> bool:
    """Past SSH and SFTP: what fails now is the agent, not the way to the box."""
    return isinstance(transport, LocalTransport) or bool(getattr(transport, "agent_path", None))


def _say(e: BaseException) -> str:
    text = str(e).strip()
    if isinstance(e, OSError) and not isinstance(e, LinkClosed):
        if isinstance(e.errno, int) and e.errno > 0:
            text = os.strerror(e.errno)  # 'Connection refused', not 'Connect call failed'
        elif e.strerror:
            text = e.strerror  # e.g. 'Name or service not known'
    return text or type(e).__name__


async def check_node(
    node: NodeConfig, transport: Transport, timeout_s: float, grid_id: str = ""
) -> NodeCheck:
    """Connect, say hello, read the inventory, disconnect. Never raises."""
    check = NodeCheck(node.name, address(node))
    identity = Path(node.identity).expanduser() if node.identity and not node.local else None
    if identity is not None and not identity.exists():
        check.result, check.detail = AUTH_FAILED, f"identity file {node.identity} does not exist"
        return check
    link = None
    try:
        async with asyncio.timeout(timeout_s):
            link = await transport.connect(_ignore)
            inventory = await link.request(protocol.INVENTORY)
            grids = await link.request(protocol.CONFIGURE, grid=grid_id)
        if isinstance(transport, SshTransport):
            check.agent = "pushed" if transport.pushed else "up to date"
        else:
            check.agent = "local"
        check.agent_version = str(link.hello.get("agent_version", ""))
        _read_inventory(check, node, inventory)
        _read_isolation(check, link.hello)
        _read_waiter(check, link.hello)
        check.other_grids = [str(g) for g in grids.get("other_grids") or []]
        if check.other_grids:
            whose = "another grid also uses" if grid_id else "grids with jobs on"
            check.notes.append(
                f"{whose} this box: {', '.join(check.other_grids)}; their jobs are left alone"
            )
    except HostKeyRefused as e:
        check.result, check.detail = HOST_KEY_REFUSED, str(e)
        check.fingerprint, check.trust_command = e.fingerprint, e.trust_command
        check.forget_command = e.forget_command if e.changed else ""
    except (asyncssh.PermissionDenied, asyncssh.KeyImportError) as e:
        check.result = AUTH_FAILED
        check.detail = f"{_say(e)} (user {node.user or 'from ~/.ssh/config'}, key {node.identity or 'default keys and agent'})"
    except AgentError as e:
        check.result, check.detail = AGENT_ERROR, f"the agent refused: {e}"
    except LinkClosed as e:
        check.result, check.detail = AGENT_ERROR, _say(e)
    except TimeoutError:
        stage = "the agent did not answer" if _reached_agent(transport) else "no answer"
        check.result = AGENT_ERROR if _reached_agent(transport) else UNREACHABLE
        check.detail = f"{stage} within {timeout_s:.0f} s"
    except (OSError, asyncssh.Error) as e:
        check.result = AGENT_ERROR if _reached_agent(transport) else UNREACHABLE
        check.detail = _say(e)
    except Exception as e:  # a bug or a surprise: still a row, never a traceback
        check.result, check.detail = AGENT_ERROR, f"{type(e).__name__}: {_say(e)}"
    finally:
        if link is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.close(), 5)
    return check


def _read_isolation(check: NodeCheck, hello: dict) -> None:
    """How jobs are kept apart on the box (docs/security.md), and what is missing."""
    multi = hello.get("multi_user")
    check.users = "multi-user" if multi else "single-user"
    check.tracking = str(hello.get("tracking") or "process group")
    if not multi:
        check.notes.append(
            f"single-user mode: every job runs as {hello.get('agent_user') or 'the agent user'}"
            ", not as its owner; jobs are not isolated from each other"
        )
    if check.tracking == "process group":
        check.notes.append(
            "no writable cgroup: jobs are tracked by process group, so a process that "
            "leaves it (setsid, double fork) escapes a stop"
        )


def _read_waiter(check: NodeCheck, hello: dict) -> None:
    """What each job's shim will wait with (docs/fleet.md, *Memory per job*): said only
    when it is the Python fallback, the nine times larger one."""
    if hello.get("shim_waiter") == "python":
        why = str(hello.get("shim_waiter_note") or "")
        check.notes.append(
            "each job's shim waits in Python, about 9 MB a job instead of 1.3"
            + (f": {why}" if why else "")
        )


def _read_inventory(check: NodeCheck, node: NodeConfig, inventory: dict) -> None:
    check.fake = bool(inventory.get("fake"))
    gpus = [g for g in inventory.get("gpus") or [] if isinstance(g, dict)]
    check.gpus = [str(g.get("name") or g.get("gpu_type") or "GPU") for g in gpus]
    if not inventory.get("available", bool(gpus)):
        check.gpu_message = str(inventory.get("message") or "no GPUs found")
        check.hint = str(inventory.get("hint") or "")
    if node.fake_gpus or not gpus:
        return
    types = {str(g.get("gpu_type") or "") for g in gpus}
    if node.gpu_type and node.gpu_type not in types:
        check.notes.append(
            f"config.toml says gpu_type {node.gpu_type}; the box has {', '.join(sorted(types))}"
        )
    if node.gpus and node.gpus != len(gpus):
        check.notes.append(f"config.toml says {node.gpus} GPUs; the box has {len(gpus)}")


async def check_nodes(
    cfg: Config,
    known_hosts: str | None = None,
    ssh_config: str | None = None,
    timeout_s: float = 30.0,
    on_done: Callable[[NodeCheck], None] | None = None,
    grid_id: str = "",
) -> list[NodeCheck]:
    """Check every configured node concurrently; results in config order."""
    nodes = cfg.all_nodes()
    gate = asyncio.Semaphore(MAX_AT_ONCE)
    with tempfile.TemporaryDirectory(prefix="skyops-check-") as state_root:

        async def one(node: NodeConfig) -> NodeCheck:
            async with gate:
                transport = transport_for(node, state_root, known_hosts, ssh_config)
                result = await check_node(node, transport, timeout_s, grid_id)
            if on_done is not None:
                on_done(result)
            return result

        return list(await asyncio.gather(*(one(n) for n in nodes)))


def run_nodes_check(
    cfg: Config,
    known_hosts: str | None = None,
    console: Console | None = None,
    *,
    as_json: bool = False,
    ssh_config: str | None = None,
    timeout_s: float = 30.0,
    grid_id: str | None = None,
) -> int:
    """`skyops nodes check`: print the table (or JSON); 0 when every node is ok, else 1."""
    console = console or Console()
    grid_id = own_grid_id() if grid_id is None else grid_id
    nodes = cfg.all_nodes()
    if not nodes:
        if as_json:
            _write(console, json.dumps({"ok": False, "nodes": [], "error": "no nodes"}))
        else:
            console.print("No [[nodes]] in the config: nothing to check.", markup=False)
        return 1
    try:
        if as_json or not console.is_terminal:
            results = asyncio.run(
                check_nodes(cfg, known_hosts, ssh_config, timeout_s, grid_id=grid_id)
            )
        else:
            results = _with_status(console, cfg, known_hosts, ssh_config, timeout_s, grid_id)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # never a traceback
        console.print(Text(f"error: nodes check failed: {type(e).__name__}: {e}", style="red"))
        return 1
    if as_json:
        _write(
            console,
            json.dumps(
                {"ok": all(r.ok for r in results), "nodes": [r.to_json() for r in results]},
                indent=2,
            ),
        )
    else:
        print_report(console, results)
    return 0 if all(r.ok for r in results) else 1


def _with_status(
    console: Console,
    cfg: Config,
    known_hosts: str | None,
    ssh_config: str | None,
    timeout_s: float,
    grid_id: str = "",
) -> list[NodeCheck]:
    total = len(cfg.all_nodes())
    done: list[NodeCheck] = []
    with console.status(f"checking {total} node{'s' if total != 1 else ''}...") as status:

        def on_done(r: NodeCheck) -> None:
            done.append(r)
            status.update(f"checking {total} nodes: {len(done)} done (last: {r.node}, {r.result})")

        return asyncio.run(check_nodes(cfg, known_hosts, ssh_config, timeout_s, on_done, grid_id))


def own_grid_id() -> str:
    """The grid id of this console's state database (SKYOPS_DB), read without creating
    or changing anything; "" when there is none yet."""
    path = db_path()
    if not path.is_file():
        return ""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'grid_id'").fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return ""
    return str(row[0]) if row else ""


def _write(console: Console, text: str) -> None:
    console.file.write(text + "\n")
    console.file.flush()


def print_report(console: Console, results: list[NodeCheck]) -> None:
    table = Table(title="Nodes", title_justify="left")
    table.add_column("node", style="bold")
    table.add_column("address")
    table.add_column("result")
    table.add_column("agent")
    table.add_column("GPUs")
    for r in results:
        gpus = Text(r.gpu_summary(), style="yellow" if r.fake or r.gpu_message else "")
        table.add_row(
            Text(r.node),
            Text(r.address),
            Text(r.result, style=RESULT_STYLE.get(r.result, "")),
            Text(r.agent or "-"),
            gpus,
        )
    console.print(table)
    for r in results:
        if r.result == HOST_KEY_REFUSED:
            console.print()
            console.print(Text(r.detail, style="red"))
            if r.forget_command:
                console.print(
                    Text("  remove the old key:  ") + Text(r.forget_command, "bold"),
                    soft_wrap=True,
                )
            console.print(
                Text("  trust it with:       ") + Text(r.trust_command, "bold"), soft_wrap=True
            )
        elif not r.ok:
            console.print(Text(f"{r.node}: {r.result}: {r.detail}", style="red"))
        if r.hint:
            console.print(Text(f"{r.node}: {r.hint}"))
        for note in r.notes:
            console.print(Text(f"{r.node}: {note}", style="yellow"))
    good = sum(r.ok for r in results)
    console.print()
    console.print(
        Text(
            f"{good} of {len(results)} node{'s' if len(results) != 1 else ''} ok",
            style="green" if good == len(results) else "red",
        )
    )
