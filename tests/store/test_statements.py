"""A leader keeps its SQLite connection for months, and the connection keeps the last
128 statements it compiled. A query whose text changed with its input (`IN (?, ?, ...)`
made for each length of list) filled that cache with statements of its own: a submitted array's names checked against the store, for arrays
of 200 sizes, held 6 MB of SQLite's memory, for as long as the leader ran. Measured
with SQLite's own count of the memory it holds (`sqlite3_memory_used`)."""

from __future__ import annotations

import ctypes
import sqlite3
from pathlib import Path

import pytest

from skyops_tui.store.db import Store


def sqlite_memory() -> ctypes._CFuncPtr:
    """`sqlite3_memory_used` of the very library Python's sqlite3 uses (mapped in this
    process), so the count is that of the connections under test."""
    sqlite3.connect(":memory:").close()
    libs = {
        line.split()[-1]
        for line in Path("/proc/self/maps").read_text().splitlines()
        if "libsqlite3" in line
    }
    if not libs:
        pytest.fail("Python's sqlite3 is linked statically here: no libsqlite3 to ask")
    fn = ctypes.CDLL(sorted(libs)[0]).sqlite3_memory_used
    fn.restype = ctypes.c_int64
    return fn


def test_checking_names_and_reading_entries_compile_one_statement_whatever_the_length(tmp_path):
    used = sqlite_memory()
    store = Store(tmp_path / "state.db")
    try:
        store.archived_names(["warm"])
        store.transactions(limit=1)
        before = used()
        for n in range(1, 201):
            assert store.archived_names([f"array-{n}-{k}" for k in range(n)]) == set()
            assert store.transactions(limit=n) == []
        grew = used() - before
        assert grew < 256 * 1024, f"SQLite holds {grew:,} bytes more after 200 list lengths"
    finally:
        store.close()
