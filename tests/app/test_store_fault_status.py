"""The status line says when the state database cannot be reached, and stops saying it
once it can (the lease loops report faults to the runtime; see test_lease_faults.py)."""

from __future__ import annotations

import sqlite3

from skyops_tui.app.widgets.chrome import StatusLine
from tests.app.harness import demo_app, wait_for


async def test_the_status_line_shows_a_store_fault_until_it_clears():
    app = demo_app()
    rt = app.runtime
    line = lambda: str(app.screen.query_one(StatusLine).render())  # noqa: E731
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: "jobs:" in line(), "the status line drawn")
        rt._store_fault(sqlite3.OperationalError("database is locked"))
        await wait_for(
            pilot,
            lambda: "state database: database is locked; retrying" in line(),
            "the fault in the status line",
        )
        rt._store_ok()
        await wait_for(pilot, lambda: "state database" not in line(), "the fault gone")
