"""`skyops serve` says when its state database fails and when it is back, as it
happens: a service's log is read while it runs (a one-shot command instead says the
fault once, in its exit-4 line: test_cli_faults.py)."""

from __future__ import annotations

import sqlite3

from tests.integration.serve import Leader
from tests.waiting import wait_for


def test_serve_logs_a_locked_database_while_it_lasts_and_its_end(tmp_path):
    leader = Leader(tmp_path)
    leader.env["SKYOPS_BUSY_TIMEOUT_S"] = "0.3"
    leader.start()
    log = tmp_path / "serve1.log"
    holder = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        line = wait_for(
            lambda: next(
                (ln for ln in log.read_text().splitlines() if "state database unavailable" in ln),
                None,
            ),
            "serve logging the locked database while the lock is held",
            timeout=30,
        )
        assert "database is locked" in line, line
        holder.execute("ROLLBACK")
        wait_for(
            lambda: "state database available again" in log.read_text(),
            "serve logging the database back",
            timeout=30,
        )
    finally:
        holder.close()
        leader.stop()
