"""Building the live console: the demo grid or a real cluster, with its store and fleet."""

from __future__ import annotations

import os
from pathlib import Path

from ..clock import SystemClock
from ..domain.config import Config, demo_config
from ..fleet.executor import FleetExecutor
from ..fleet.link import LocalTransport, Transport
from ..locations import data_dir, db_path, demo_db_path
from ..runtime import Runtime, current_user
from ..scheduler.executor import Executor
from ..store.db import KEEP_ENDED, Store


def demo_cluster(user: str | None = None) -> Config:
    """The demo grid, with the person running it as its operator so every action works."""
    return demo_config(user or current_user())


def transports(cfg: Config, demo: bool, known_hosts: str | None = None) -> dict[str, Transport]:
    out: dict[str, Transport] = {}
    agents = data_dir() / ("demo-agents" if demo else "local-agents")
    for node in cfg.all_nodes():
        if demo or node.local:
            out[node.name] = LocalTransport(node.name, str(agents / node.name), node.fake_gpus)
        else:
            # Only here: asyncssh is about 16 MB of a leader's memory (docs/architecture.md).
            from ..fleet.ssh import SshTransport

            out[node.name] = SshTransport(node, known_hosts=known_hosts)
    return out


def socket_path(cfg: Config, db: Path) -> Path:
    """Where the leader serves the API: SKYOPS_SOCKET, else the config's
    `[cluster] api_socket`, else beside the state file (docs/api.md)."""
    given = os.environ.get("SKYOPS_SOCKET") or cfg.cluster.api_socket
    return Path(given).expanduser() if given else db.with_suffix(".sock")


def owns_state(db: Path) -> bool:
    """Whether this account owns the state file: only the owner may lead the grid;
    every other account is a client of the leader's socket. With no file yet there is
    nothing to be a client of: this account would create its own."""
    try:
        return db.stat().st_uid == os.geteuid()
    except PermissionError:
        return False
    except OSError:  # missing, or a file where a folder should be: the store says which
        return True


def open_private(path: Path) -> Store:
    """The state store, private to this account: a state folder this process creates
    is 0700 (the default data folder always), the database 0600; SQLite gives its -wal
    and -shm files the database's mode."""
    made = not path.parent.exists()
    old = os.umask(0o077)
    try:
        store = Store(path)
    finally:
        os.umask(old)
    if made or path.parent == data_dir():
        os.chmod(path.parent, 0o700)
    if path.exists() and path.stat().st_uid == os.geteuid():
        # Take group and others' bits away; never add one (a file made read-only on
        # purpose stays read-only, and its writes fail with exit 4).
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, mode & 0o700)
    return store


def state_path(cfg: Config | None, db: str | Path | None) -> Path:
    return Path(db).expanduser() if db else (demo_db_path() if cfg is None else db_path())


def refuse_other_account(cfg: Config | None, db: str | Path | None) -> None:
    """A console or service runs only as the account that owns the state; any other
    account is a client of the leader's socket (docs/security.md)."""
    path = state_path(cfg, db)
    if owns_state(path):
        return
    from ..store.schema import StoreError

    sock = socket_path(cfg or demo_cluster(), path)
    raise StoreError(
        f"{path}: the state belongs to another account, which runs its scheduler "
        f"(`skyops serve`, serving {sock}); from this account use the client commands "
        "(skyops jobs, cancel, logs, quote, --apply)"
    )


def build_runtime(
    cfg: Config | None,
    db: str | Path | None = None,
    readonly: bool = False,
    user: str | None = None,
    keep_ended: int | None = None,
) -> Runtime:
    demo = cfg is None
    cfg = cfg or demo_cluster(user)
    path = Path(db) if db else (demo_db_path() if demo else db_path())
    store = open_private(path)
    ex: Executor
    if cfg.backend.kind == "slurm":
        from ..slurm.executor import SlurmExecutor

        ex = SlurmExecutor(cfg, SystemClock())
    else:
        ex = FleetExecutor(cfg, transports(cfg, demo), SystemClock())
    return Runtime(
        cfg,
        ex,
        store=store,
        user=user,
        demo=demo,
        readonly=readonly,
        socket_path=socket_path(cfg, path),
        keep_ended=keep_ended,
    )


def check_writable(store: Store) -> None:
    """Raise SQLite's own error now if the file cannot be written (a read-only file or
    folder, a full disk), while the terminal is still the shell's: the screen would only
    find out when it first leads. Changes one row and back in one transaction: the page
    is written (SQLite skips a write that changes nothing), its content is not."""
    with store._write() as conn:
        key = "WHERE key = 'schema_version'"
        conn.execute(f"UPDATE meta SET value = value || ' ' {key}")
        conn.execute(f"UPDATE meta SET value = rtrim(value, ' ') {key}")


def run_console(cfg: Config | None, db: str | None, readonly: bool = False) -> int:
    from ..app.app import SkyopsApp
    from ..demo import seed

    os.umask(0o077)  # logs and job files of local agents this console starts: private
    refuse_other_account(cfg, db)
    rt = build_runtime(cfg, db, readonly)
    store = rt.store
    assert store is not None  # build_runtime always opens one
    if not readonly:
        check_writable(store)
    if rt.demo and not rt.grid.jobs:
        seed(rt)
    SkyopsApp(rt).run()
    store.close()
    return 0


def run_remote_console(sock: Path, url: str, cfg: Config | None = None) -> int:
    """`skyops --connect ssh://user@head`: the console on a laptop, following the
    head's leader through the SSH-forwarded socket (api/remote.py). It holds no state
    and no lease; every command goes to the leader, as the SSH user."""
    import asyncio

    from ..api.remote import NoExecutor, fetch_state
    from ..app.app import SkyopsApp

    cfg, grid, hello = asyncio.run(fetch_state(sock, cfg))
    rt = Runtime(cfg, NoExecutor(), grid=grid, user=hello["user"], remote=True, socket_path=sock)
    rt.remote_operator = bool(hello.get("operator"))
    SkyopsApp(rt).run()
    return 0


def serve(cfg: Config | None, db: str | None, duration: float | None) -> int:
    """Headless console: lead the grid (or stand by to take over) until stopped. Its
    one line per change of role is plain print: rich is not loaded for it."""
    import asyncio
    import signal

    from ..demo import seed

    os.umask(0o077)  # logs and job files of local agents this service starts: private

    refuse_other_account(cfg, db)

    async def main() -> None:
        # No screen reads the grid here: ended jobs leave memory (docs/store.md).
        rt = build_runtime(cfg, db, keep_ended=KEEP_ENDED)
        store = rt.store
        assert store is not None  # build_runtime always opens one
        check_writable(store)
        if rt.demo and rt.grid.next_job_id == 1:
            seed(rt)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await rt.start()

        def role() -> None:
            print(
                f"{'leading' if rt.leader else 'standing by (another console leads)'}: "
                f"{store.path}" + (f", serving {rt.socket_path}" if rt.leader else ""),
                flush=True,
            )

        rt.role_listeners.append(role)
        role()
        long_lived_objects_out_of_gc()
        try:
            await asyncio.wait_for(stop.wait(), duration)
        except TimeoutError:
            pass
        await rt.stop()
        store.close()

    asyncio.run(main())
    return 0


def long_lived_objects_out_of_gc() -> None:
    """After start-up: what is loaded by then (modules, classes, config models, the grid
    read from the store) lives as long as the process, so the collector stops walking
    it (gc.freeze), and collects young objects less often. A full collection walked
    every object serve imported, up to 55 ms inside a 5,000-job array's command, and
    more the longer the leader ran (docs/architecture.md, *Memory and the collector*)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 20)


GC_YOUNG = 10_000  # allocations between young collections (CPython's default: 700)


__all__ = ["build_runtime", "run_console", "demo_cluster", "demo_config"]
