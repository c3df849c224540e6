"""What the command line does when things go wrong around it, read from the outside as
a script sees it: real `skyops` processes, real SQLite files, real local agents.

- `logs -f` prints each line of a growing log once, in order (issue 9).
- A reader that stops reading (`| head`) ends the command quietly: exit 141, no
  traceback.
- `cancel --json` reports the job's state after the cancel, not before.
- A state store that cannot be used (locked, disk full, a folder, a missing or
  read-only folder, a read-only file) is one line naming the file and why, exit 4,
  in every command, and the file is left as it was.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.waiting import wait_for

from .test_headless import REPO, Grid, later_reservation, waiting_job

pytestmark = pytest.mark.integration

EXIT_STORE = 4
EXIT_PIPE = 141


@pytest.fixture
def grid(tmp_path: Path) -> Grid:
    return Grid(tmp_path)


def rows(db: Path) -> dict[str, list]:
    return Grid.rows(types.SimpleNamespace(db=db))  # type: ignore[arg-type]


def no_traceback(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


# ------------------------------------------------------------------ logs -f
# Prints N numbered lines, each followed by the same line, once a flag file exists
# (the test creates it when `logs -f` has shown its first lines); before that, 40.
GROWING = """
import os, sys, time
flag, n = sys.argv[1], int(sys.argv[2])
pad = "x" * 90
for i in range(40):
    print(f"early {i}", flush=True)
    print("same", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
for i in range(n):
    print(f"late {i} {pad}")
    print("same")
sys.stdout.flush()
"""


def growing_job(flag: Path, n: int) -> str:
    argv = [sys.executable, "-c", GROWING, str(flag), str(n)]
    return f'[[jobs]]\nname = "chatty"\nmode = "flex"\ngpus = 1\nbid = 1.0\ncommand = {json.dumps(argv)}\n'


def expected_output(n: int) -> list[str]:
    out: list[str] = []
    for i in range(40):
        out += [f"early {i}", "same"]
    for i in range(n):
        out += [f"late {i} {'x' * 90}", "same"]
    return out


def test_follow_prints_each_line_once_however_fast_the_log_grows(grid: Grid) -> None:
    # 12,000 lines of about 100 bytes: more than one read of the agent (1 MiB) at once.
    n = 6000
    flag = grid.tmp / "go"
    r = grid.run("--apply", str(grid.plan(growing_job(flag, n))))
    assert r.returncode == 0, r.stdout + r.stderr
    wait_for(
        lambda: len(grid.json("logs", "chatty", "-n", "200")["lines"]) >= 80,
        "the job has written its first 80 lines",
        timeout=30,
    )
    follow = subprocess.Popen(
        [sys.executable, "-m", "skyops_tui", "--config", str(grid.config)]
        + ["logs", "chatty", "-f", "-n", "5", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=grid.env,
        cwd=REPO,
    )
    try:
        assert follow.stdout is not None
        first = [json.loads(follow.stdout.readline())["line"] for _ in range(5)]
        assert first == expected_output(0)[-5:]
        flag.touch()
        out, err = follow.communicate(timeout=120)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()
    assert follow.returncode == 0, err
    assert "Traceback" not in err
    printed = first + [json.loads(line)["line"] for line in out.splitlines()]
    full = expected_output(n)
    assert len(printed) == 5 + 2 * n
    assert printed == full[-len(printed) :], "each line once, in order"


# --------------------------------------------------------------- closed pipe
def closed_pipe(grid: Grid, *args: str) -> subprocess.CompletedProcess:
    """Run with stdout a pipe whose reader has already gone, as `| head` leaves it."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "skyops_tui", "--config", str(grid.config), *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=grid.env,
            cwd=REPO,
            timeout=90,
        )
    finally:
        os.close(write_end)


def test_a_closed_pipe_ends_quietly_with_141(grid: Grid) -> None:
    grid.json("--apply", str(grid.plan(later_reservation() + waiting_job())))
    for args in (("jobs",), ("jobs", "--json"), ("status",), ("logs", "waits", "--json")):
        r = closed_pipe(grid, *args)
        assert (r.returncode, r.stderr) == (EXIT_PIPE, ""), (args, r.stderr)

    # The same through a shell: `skyops jobs --all | head -1` prints one line, no more.
    many = later_reservation() + "".join(waiting_job(f"w{k}") for k in range(40))
    grid.json("--apply", str(grid.plan(many, "many.toml")))
    cmd = [sys.executable, "-m", "skyops_tui", "--config", str(grid.config), "jobs", "--all"]
    sh = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {shlex.join(cmd)} | head -1; echo $? >&2"],
        capture_output=True,
        text=True,
        env=grid.env,
        cwd=REPO,
        timeout=90,
    )
    assert sh.stdout.startswith("ID") and sh.stdout.count("\n") == 1
    assert sh.stderr.strip() in ("0", str(EXIT_PIPE)), sh.stderr


# -------------------------------------------------------------- cancel --json
def test_cancel_json_reports_the_state_the_cancel_produced(grid: Grid) -> None:
    long = growing_job(grid.tmp / "never", 1)
    assert grid.run("--apply", str(grid.plan(long))).returncode == 0
    wait_for(
        lambda: [j["state"] for j in grid.json("jobs")] == ["running"],
        "the job is running",
        timeout=30,
    )
    doc = grid.json("cancel", "chatty")
    (after,) = grid.json("jobs", "--all")
    assert doc["state"] == after["state"], (doc, after)
    assert (doc["status"], doc["state"]) in (("cancelled", "cancelled"), ("stopping", "running"))


# -------------------------------------------------------------- store faults
COMMANDS: list[tuple[str, ...]] = [
    ("status",),
    ("jobs",),
    ("logs", "waits"),
    ("cancel", "waits"),
    ("quote", "flex", "--gpus", "1", "--bid", "1"),
    ("--apply", "{plan}"),
    ("serve", "--for", "1"),
    (),  # the console itself, before its screen starts
]
# The commands that must write; the others only read (`logs` follows the leader if it
# cannot lead), and a store they can read serves them.
WRITES = {("cancel", "waits"), ("--apply", "{plan}"), ("serve", "--for", "1"), ()}


def unprivileged() -> list[str]:
    """A prefix that runs a command without root's power to write any file, so that a
    read-only file or folder is read-only to it."""
    if os.geteuid() != 0:
        return []
    return ["unshare", "--user", "--map-user=1000", "--map-group=1000"]


def run_all(
    grid: Grid, db: Path, prefix: list[str] = (), env: dict | None = None, only: set | None = None
) -> dict[tuple[str, ...], subprocess.CompletedProcess]:
    plan = grid.plan(later_reservation() + waiting_job() + waiting_job("more"), "more.toml")
    out = {}
    for cmd in COMMANDS:
        if only is not None and cmd not in only:
            continue
        args = [a.replace("{plan}", str(plan)) for a in cmd]
        out[cmd] = subprocess.run(
            [*prefix, sys.executable, "-m", "skyops_tui", "--config", str(grid.config)]
            + ["--db", str(db), *args],
            capture_output=True,
            text=True,
            env={**grid.env, **(env or {})},
            cwd=REPO,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
    return out


def assert_fault(results: dict, message: str) -> None:
    for cmd, r in results.items():
        no_traceback(r)
        # One line: the fault, said once (not also as the warning of the scheduler the
        # command led for the moment).
        lines = r.stderr.splitlines()
        assert (r.returncode, lines) == (EXIT_STORE, [f"error: {message}"]), (cmd, r.stderr)


@pytest.fixture
def populated(grid: Grid) -> Grid:
    grid.json("--apply", str(grid.plan(later_reservation() + waiting_job())))
    return grid


def test_a_locked_store_is_exit_4_in_every_command(populated: Grid) -> None:
    grid = populated
    before = rows(grid.db)
    holder = sqlite3.connect(grid.db, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        results = run_all(grid, grid.db, env={"SKYOPS_BUSY_TIMEOUT_S": "0.3"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_fault(
        results,
        f"{grid.db}: the state database is locked by another process (waited 0.3 s); "
        "try again when it is free, or wait longer with SKYOPS_BUSY_TIMEOUT_S",
    )
    assert rows(grid.db) == before
    r = grid.run("status", "--json")
    assert r.returncode == 0
    r = subprocess.run(
        [sys.executable, "-m", "skyops_tui", "--config", str(grid.config), "jobs", "--json"],
        capture_output=True,
        text=True,
        env={**grid.env, "SKYOPS_BUSY_TIMEOUT_S": "soon"},
        cwd=REPO,
    )
    assert r.returncode == 2
    assert r.stderr == "error: SKYOPS_BUSY_TIMEOUT_S: must be seconds >= 0 (got 'soon')\n"


def test_a_folder_for_the_database_is_exit_4(grid: Grid) -> None:
    folder = grid.tmp / "a-folder"
    folder.mkdir()
    results = run_all(grid, folder)
    assert_fault(
        results,
        f"{folder}: is a folder, not a state database file; point --db or SKYOPS_DB at a "
        "file in it",
    )
    assert list(folder.iterdir()) == []
    doc = json.loads(
        subprocess.run(
            [sys.executable, "-m", "skyops_tui", "--config", str(grid.config)]
            + ["--db", str(folder), "jobs", "--json"],
            capture_output=True,
            text=True,
            env=grid.env,
            cwd=REPO,
        ).stdout
    )
    assert doc["status"] == "unavailable" and doc["errors"][0].startswith(f"{folder}: ")


def test_a_parent_that_is_a_file_is_exit_4(grid: Grid) -> None:
    blocker = grid.tmp / "a-file"
    blocker.write_text("not a folder")
    db = blocker / "state" / "skyops.db"
    assert_fault(
        run_all(grid, db),
        f"{db}: cannot create its folder {db.parent}: part of that path is a file",
    )
    assert blocker.read_text() == "not a folder"


def test_an_unwritable_folder_is_exit_4(grid: Grid) -> None:
    locked = grid.tmp / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        db = locked / "skyops.db"
        assert_fault(
            run_all(grid, db, unprivileged()),
            f"{db}: cannot create the file: its folder {locked} is not writable",
        )
        deeper = locked / "missing" / "skyops.db"
        assert_fault(
            run_all(grid, deeper, unprivileged(), only={("status",), ("cancel", "waits")}),
            f"{deeper}: cannot create its folder {deeper.parent}: Permission denied",
        )
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


def test_a_read_only_file_is_exit_4_for_what_writes_and_read_for_what_reads(
    populated: Grid,
) -> None:
    grid = populated
    before = rows(grid.db)
    grid.db.chmod(0o444)
    try:
        results = run_all(grid, grid.db, unprivileged())
    finally:
        grid.db.chmod(0o644)
    writes = {c: r for c, r in results.items() if c in WRITES}
    assert_fault(writes, f"{grid.db}: the file is read-only; make it writable")
    for cmd, r in results.items():
        if cmd not in WRITES:
            assert r.returncode == 0 and "error:" not in r.stderr, (cmd, r.stderr)
            no_traceback(r)
    assert "waits" in results[("jobs",)].stdout
    assert rows(grid.db) == before


def test_a_full_disk_is_exit_4_and_writes_nothing(populated: Grid) -> None:
    """A real full file system: a 1 MiB tmpfs in a private mount namespace, filled up to
    the 32 KiB SQLite needs for its -shm index, so the first page written fails."""
    grid = populated
    if (
        shutil.which("unshare") is None
        or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode
    ):
        why = "needs unshare -rm (user and mount namespaces) to mount a small tmpfs"
        if os.environ.get("CI"):
            pytest.fail(why + " -- CI runs as root and must run this test")
        pytest.skip(why)
    before = rows(grid.db)
    mnt, out = grid.tmp / "full", grid.tmp / "out"
    mnt.mkdir()
    out.mkdir()
    plan = grid.plan(later_reservation() + waiting_job() + waiting_job("more"), "more.toml")
    base = [sys.executable, "-m", "skyops_tui", "--config", str(grid.config), "--db"]
    base.append(str(mnt / "state.db"))
    lines = [
        "set -e",
        f"mount -t tmpfs -o size=1m tmpfs {mnt}",
        f"cp {grid.db} {mnt}/state.db",
        f"dd if=/dev/zero of={mnt}/filler bs=4k 2>/dev/null || true",
        f"truncate -s -32k {mnt}/filler",
        "set +e",
    ]
    for k, cmd in enumerate(COMMANDS):
        args = [a.replace("{plan}", str(plan)) for a in cmd]
        lines.append(
            f"timeout 60 {shlex.join(base + args)} </dev/null >{out}/{k}.out 2>{out}/{k}.err; "
            f"echo $? >{out}/{k}.rc"
        )
    lines.append(f"cp {mnt}/state.db {out}/state.db")
    lines.append(f"[ -e {mnt}/state.db-wal ] && cp {mnt}/state.db-wal {out}/state.db-wal; true")
    r = subprocess.run(
        ["unshare", "-rm", "bash", "-c", "\n".join(lines)],
        capture_output=True,
        text=True,
        env=grid.env,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    results = {
        cmd: subprocess.CompletedProcess(
            cmd,
            int((out / f"{k}.rc").read_text()),
            (out / f"{k}.out").read_text(),
            (out / f"{k}.err").read_text(),
        )
        for k, cmd in enumerate(COMMANDS)
    }
    db = mnt / "state.db"
    message = f"{db}: the disk is full (database or disk is full); free some space and try again"
    assert_fault({c: r for c, r in results.items() if c in WRITES}, message)
    for cmd, res in results.items():
        if cmd not in WRITES:
            assert res.returncode == 0, (cmd, res.stderr)
            no_traceback(res)
    assert rows(out / "state.db") == before
