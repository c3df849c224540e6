"""What a running `skyops serve` has loaded, read from its own import log
(PYTHONPROFILEIMPORTTIME): a library a leader loads and never uses is memory it holds
for as long as it runs (docs/architecture.md, *What a leader loads*). A grid of local
nodes reaches them without SSH, and a leader draws no screen."""

from __future__ import annotations

from pathlib import Path

from skyops_tui.store.db import Store
from tests.integration.serve import Leader


def imported(log: str) -> set[str]:
    """Every module named in a process's PYTHONPROFILEIMPORTTIME lines."""
    return {
        line.split("|")[2].strip()
        for line in log.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }


def test_a_leader_of_local_nodes_loads_no_ssh_library_nor_screen(tmp_path):
    leader = Leader(tmp_path)
    # A leader restarted on its state file: creating one loads the migrations' library.
    Store(tmp_path / "state.db").close()
    env = leader.env
    leader.env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    leader.start()
    leader.env = env  # the clients below log nothing
    try:
        assert leader.cli("nodes", "drain", "node-a").returncode == 0
        r = leader.cli(
            "submit", "--mode", "priority", "--name", "one", "--hours", "1", "--", "true"
        )
        assert r.returncode == 0, r.stderr
        assert leader.state("one") == "queued"
        assert leader.proc is not None
        maps = Path(f"/proc/{leader.proc.pid}/maps").read_text()
    finally:
        leader.stop()
    mods = imported((tmp_path / "serve1.log").read_text())
    assert {"skyops_tui.api.server", "skyops_tui.fleet.executor"} <= mods  # its own log
    unused = ("asyncssh", "cryptography", "textual", "rich", "_ssl")
    assert sorted(m for m in mods if m.split(".")[0] in unused) == []
    # OpenSSL: asyncio's ssl would map it, for TLS that nothing here speaks.
    assert [line for line in maps.splitlines() if "libssl" in line or "libcrypto" in line] == []
