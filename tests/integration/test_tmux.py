"""Story 1, "First look", in a real terminal: `skyops` with no arguments, in tmux.

The real console starts on the embedded demo grid with real local agents, whose jobs are
real processes under shims; the test reads the screen as a person would (capture-pane),
presses keys, and quits. Its state lives under tmp_path (XDG_DATA_HOME), and every job
it started is killed afterwards: demo jobs outlive the console by design.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from skyops_tui.app.keys import keys_for
from tests.fleet.sshd import process_gone
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WIDTH, HEIGHT = 120, 36
NODES = ("h100-a", "h100-b", "a100-a", "l40s-a")
BANNER = "Demo grid: simulated GPUs."
RUNNING = (("Priority", "train-llm"), ("Commit", "nightly-train"), ("Flex", "sweep-01"))
START_S = 15.0  # a cold start imports Textual and launches four agents and six jobs
STEP_S = 8.0
STOP_S = 40.0  # the console waits up to 30 s for the demo's jobs to stop


class Tmux:
    """One tmux server of our own (its socket under tmp_path), one window running skyops."""

    def __init__(self, tmp: Path) -> None:
        self.socket = tmp / "tmux.sock"
        self.exit_file = tmp / "exit-status"
        self.target = "skyops"

    def __call__(self, *args: str, check: bool = True) -> str:
        tmux = shutil.which("tmux") or "tmux"
        done = subprocess.run(
            [tmux, "-S", str(self.socket), *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        if check and done.returncode:
            raise AssertionError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def start(self, command: list[str], env: dict[str, str]) -> None:
        """Run `command` in a 120x36 window. A shell around it writes its exit status to
        `exit_file` (tmux 3.3 sometimes leaves a dead pane's status unset, its process
        unreaped); the pane stays after it ends, so its last screen can be read."""
        # COLUMNS and LINES (pytest sets them to 80x24) would override the pane's size.
        assignments = [f"{k}={v}" for k, v in env.items()]
        run = shlex.join(["env", "-u", "COLUMNS", "-u", "LINES", *assignments, *command])
        shell = f"{run}; echo $? > {shlex.quote(str(self.exit_file))}"
        self(
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            self.target,
            "-x",
            str(WIDTH),
            "-y",
            str(HEIGHT),
            "-c",
            str(ROOT),
            shell,
            ";",
            "set-option",
            "-t",
            self.target,
            "remain-on-exit",
            "on",
        )

    def screen(self, colours: bool = False) -> str:
        return self("capture-pane", "-p", *(["-e"] if colours else []), "-t", self.target)

    def seen(self) -> str:
        """What a failed wait shows: the screen as it was."""
        return f"; the screen was:\n{self.screen()}"

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", self.target, *keys)

    def exit_status(self) -> int | None:
        """The command's exit status once it has ended, else None."""
        text = self.exit_file.read_text() if self.exit_file.exists() else ""
        return int(text) if text.strip() else None

    def kill(self) -> None:
        self("kill-server", check=False)


def processes_of(root: Path) -> list[int]:
    """Pids of the live processes whose command line or environment names `root`: the
    tmux server, the console, its agents and shims (by their state folder), and the jobs
    (their XDG_DATA_HOME and TMUX variables name it, whoever their parent now is)."""
    mark = str(root).encode()
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in seen and not process_gone(int(entry.name)):
            out.append(int(entry.name))
    return out


def job_groups(root: Path) -> list[int]:
    """The process groups of the jobs whose folders are under `root`."""
    from skyops_agent import jobdir

    groups = []
    for status in root.glob("**/jobs/*/" + jobdir.STATUS):
        pgid = (jobdir.read_json(str(status)) or {}).get("pgid")
        if pgid and not process_gone(pgid):
            groups.append(pgid)
    return groups


def kill_everything(root: Path, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of the test (see processes_of) and every job's process
    group, again until none is left (an agent or a shim may be starting one as we go);
    return what is still alive after `timeout`."""
    left: list[int] = []

    def none_left() -> bool:
        nonlocal left
        pids, groups = processes_of(root), job_groups(root)
        left = pids + groups
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pgid in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        return not left

    with contextlib.suppress(AssertionError):  # what is left is the answer, not a failure
        wait_for(none_left, "every process of the test gone", timeout)
    return left


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        if os.environ.get("CI"):
            pytest.fail("tmux is not installed (apt-get install tmux); CI must run this test")
        pytest.skip("tmux is not installed")
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        # The console ends with its tmux server; its jobs do not, by design.
        term.kill()
        left = kill_everything(tmp_path)
        assert not left, f"processes left behind: {left}"


def rows_with(screen: str, *words: str) -> list[str]:
    return [line for line in screen.splitlines() if all(w in line for w in words)]


SGR = re.compile(r"\x1b\[([0-9;]*)m")
GPU_CELL = re.compile(r"(?<= )([PCF])(?= |$)")


def gpu_backgrounds(ansi: str) -> dict[str, set[str]]:
    """On the node rows of a `capture-pane -e` screen: the background colour(s) of the
    GPU cells of each mode letter (P, C, F)."""
    out: dict[str, set[str]] = {}
    for line in ansi.splitlines():
        if not any(n in SGR.sub("", line) for n in NODES):
            continue
        bg = None
        for k, part in enumerate(SGR.split(line)):
            if k % 2:  # the parameters of an escape sequence
                params = part.split(";")
                if part in ("", "0") or "49" in params:
                    bg = None
                elif "48" in params:
                    i = params.index("48")
                    bg = ";".join(params[i : i + 5])
            elif bg is not None:
                for letter in GPU_CELL.findall(part):
                    out.setdefault(letter, set()).add(bg)
    return out


def test_first_look(tmux: Tmux, tmp_path: Path) -> None:
    env = {
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "SKYOPS_USER": "ops",
        "SKYOPS_DB": str(tmp_path / "mine.db"),  # README: it applies to the demo too
        "TERM": "xterm-256color",
        "COLORTERM": "truecolor",
    }
    tmux.start([sys.executable, "-m", "skyops_tui"], env)

    # The grid: four nodes, each with its GPUs, and the banner saying it is a demo.
    grid = wait_for(
        lambda: (
            (s := tmux.screen()) and BANNER in s and all(rows_with(s, n, "up") for n in NODES) and s
        ),
        f"the grid showing {', '.join(NODES)} up and the demo banner",
        START_S,
        show=tmux.seen,
    )
    assert "› grid" in grid and "ops (operator)" in grid, grid
    assert (tmp_path / "mine.db").exists(), "the demo did not keep its state in SKYOPS_DB"
    assert not (tmp_path / "data/skyops/demo.db").exists(), "the demo ignored SKYOPS_DB"
    # GPUs coloured by mode (once the jobs are placed): one background per mode, a
    # different one for each.
    colours = wait_for(
        lambda: (
            (c := gpu_backgrounds(tmux.screen(colours=True))) and set(c) == {"P", "C", "F"} and c
        ),
        "GPU cells of all three modes on the grid",
        STEP_S,
        show=tmux.seen,
    )
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len(set.union(*colours.values())) == 3, colours

    # The job list has jobs running in all three modes (real processes under shims).
    tmux.keys("j")
    wait_for(
        lambda: (
            (s := tmux.screen())
            and "› jobs" in s
            and all(rows_with(s, mode, name, "running") for mode, name in RUNNING)
            and s
        ),
        "the job list with "
        + ", ".join(f"{mode} job {name}" for mode, name in RUNNING)
        + " running",
        STEP_S,
        show=tmux.seen,
    )
    assert len(job_groups(tmp_path / "data")) >= 3, "the running jobs have no processes"

    # `?`: the help lists the keys that work everywhere. The wait is for the whole list:
    # a frame reaches tmux in pieces (a full screen of colour is many pty reads), so a
    # capture can show the new header over the last view's lower lines.
    tmux.keys("?")
    everywhere = [key.description for key in keys_for("app")]

    def unlisted(screen: str) -> list[str]:
        return [d for d in everywhere if d not in screen]

    wait_for(
        lambda: (s := tmux.screen()) and "› help" in s and "Everywhere" in s and not unlisted(s),
        "the help screen listing every key that works everywhere",
        STEP_S,
        show=lambda: f"; it does not list {unlisted(tmux.screen())}{tmux.seen()}",
    )

    # On the help, q closes it; on a view, q quits.
    tmux.keys("q")
    wait_for(lambda: "› jobs" in tmux.screen(), "q closing the help", STEP_S, show=tmux.seen)
    # On a view, q in the demo asks first, offering to stop the demo's jobs (which
    # would otherwise outlive the console): Cancel is focused, tab reaches "Stop".
    tmux.keys("q")
    wait_for(
        lambda: (s := tmux.screen()) and "Quit the demo?" in s and "Stop them and quit" in s,
        "q asking before leaving the demo's jobs running",
        STEP_S,
        show=tmux.seen,
    )
    tmux.keys("Tab")
    tmux.keys("Enter")
    status = wait_for(
        lambda: (code := tmux.exit_status()) is not None and (code,),
        "skyops stopping the demo's jobs and exiting",
        STOP_S,
        show=tmux.seen,
    )
    assert status == (0,), f"skyops exited with status {status[0]}:\n{tmux.screen()}"
    wait_for(
        lambda: not job_groups(tmp_path / "data"),
        "the demo's jobs stopping with the console",
        STEP_S,
        show=lambda: f"; job process groups alive: {job_groups(tmp_path / 'data')}",
    )
