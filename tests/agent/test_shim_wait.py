"""The C supervisor (skyops-shim-wait): what a job gets where the box has `cc`, what it
costs, how it is built, and the Python loop it falls back to."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from skyops_agent import jobdir, protocol, shim_wait
from skyops_agent.jobs import _pid_alive

from .jobspecs import direct_job_dir

WAIT_FOR_FILE = ["sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.02; done; exit "$2"', "sh"]
BOTH_SUPERVISORS = pytest.mark.parametrize("supervisor", ["c", "python"], indirect=True)
RSS_TARGET_KB = 7 * 1024  # issue 15: a running job's shim at most 7 MB RSS


def status_of(tmp_path: Path, job_id: str) -> dict:
    return jobdir.read_json(str(tmp_path / "state" / "jobs" / job_id / jobdir.STATUS)) or {}


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


def need_cc() -> None:
    """Skip without `cc`, except under CI, where its absence fails the test."""
    if shutil.which("cc") is None:
        if os.environ.get("CI"):
            pytest.fail("no C compiler (`cc`) on PATH: the C supervisor cannot be tested")
        pytest.skip("no C compiler (`cc`)")


def runs_waiter(pid: int) -> bool:
    """Has the shim handed its wait to skyops-shim-wait (the execve is done)?"""
    return os.path.basename(os.readlink(f"/proc/{pid}/exe")) == shim_wait.BINARY


@pytest.mark.parametrize("supervisor", ["c"], indirect=True)
def test_a_job_gets_the_c_supervisor_and_its_shim_stays_under_7_mib(
    start_agent, tmp_path, wait_for, supervisor
):
    agent = start_agent()
    go = tmp_path / "go"
    job = agent.call(
        protocol.START, job_id="small", argv=WAIT_FOR_FILE + [str(go), "5"], mode="flex"
    )
    assert job["supervisor"] == "c"
    try:
        wait_for(lambda: runs_waiter(job["shim_pid"]), "the shim handing its wait to C")
        with open(f"/proc/{job['shim_pid']}/cmdline", "rb") as f:
            assert str(tmp_path / "state" / "jobs" / "small").encode() in f.read()
        rss_kb = int(proc_status(job["shim_pid"])["VmRSS"].split()[0])
        assert rss_kb < RSS_TARGET_KB, f"the waiting shim holds {rss_kb} kB"
        assert agent.job("small")["state"] == "running", "the job's shim is alive to the agent"
    finally:
        go.touch()
    exited = agent.event(protocol.JOB_EXITED, job_id="small")
    assert exited["exit_code"] == 5 and exited["signal"] is None
    assert status_of(tmp_path, "small")["supervisor"] == "c"


def test_a_source_change_gives_a_new_binary_and_a_broken_one_none(tmp_path):
    need_cc()
    said: list[str] = []
    first = shim_wait.build(str(tmp_path), log=said.append)
    assert first is not None and os.access(first, os.X_OK), said
    assert oct(os.stat(first).st_mode & 0o777) == oct(0o700)
    assert oct(os.stat(os.path.dirname(first)).st_mode & 0o777) == oct(0o700)
    built_at = os.stat(first).st_mtime_ns
    assert shim_wait.build(str(tmp_path), log=said.append) == first
    assert os.stat(first).st_mtime_ns == built_at, "the same source is not compiled again"

    changed = shim_wait.source() + b"\n/* a new version */\n"
    second = shim_wait.build(str(tmp_path), code=changed, log=said.append)
    assert second is not None and second != first and os.path.exists(first)
    usage = subprocess.run([second], capture_output=True, text=True, timeout=10)
    assert usage.returncode == 2 and "usage: skyops-shim-wait" in usage.stderr
    assert said == []

    broken = shim_wait.source().replace(b"int main(", b"int main(((", 1)
    assert shim_wait.build(str(tmp_path), code=broken, log=said.append) is None
    assert len(said) == 1 and "\n" not in said[0], said
    assert "cannot build skyops-shim-wait" in said[0] and "error" in said[0], said
    assert "wait in Python" in said[0]
    said.clear()
    assert (
        shim_wait.build(str(tmp_path / "bare"), compiler="no-such-cc-here", log=said.append) is None
    )
    assert len(said) == 1 and "no C compiler ('no-such-cc-here')" in said[0], said


def test_a_failed_compile_falls_back_to_python_with_one_line(start_agent, tmp_path, wait_for):
    """A box whose `cc` is broken: jobs run and stop as ever, under the Python loop, and
    the agent says why once."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cc = bin_dir / "cc"
    cc.write_text("#!/bin/sh\necho 'cc: fatal error: no licence for this box' >&2\nexit 1\n")
    cc.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    agent = start_agent(env=env)
    go = tmp_path / "go"
    for job_id in ("first", "second"):
        job = agent.call(
            protocol.START, job_id=job_id, argv=WAIT_FOR_FILE + [str(go), "0"], mode="flex"
        )
        assert job["supervisor"] == "python"
    agent.call(protocol.STOP, job_id="first", term_grace_s=5, reason="cancelled")
    stopped = agent.event(protocol.JOB_EXITED, job_id="first")
    assert stopped["signal"] == "SIGTERM" and stopped["stop_reason"] == "cancelled"
    go.touch()
    assert agent.event(protocol.JOB_EXITED, job_id="second")["exit_code"] == 0
    lines = [ln for ln in agent.stderr().splitlines() if "skyops-shim-wait" in ln]
    assert len(lines) == 1, agent.stderr()
    assert "no licence for this box" in lines[0] and "wait in Python" in lines[0]
    assert not list((tmp_path / "state" / "shim").glob("wait-*/skyops-shim-wait"))
    hello = agent.call(protocol.HELLO, protocol=protocol.PROTOCOL_VERSION)  # `nodes check` reads
    assert hello["shim_waiter"] == "python", hello
    assert "no licence for this box" in hello["shim_waiter_note"], hello


def test_hello_says_what_the_next_shim_will_wait_with(start_agent, tmp_path):
    """Before any job (and any build): the C waiter where `cc` is, Python where the agent
    was told so, with why."""
    need_cc()
    hello = start_agent().call(protocol.HELLO, protocol=protocol.PROTOCOL_VERSION)
    assert (hello["shim_waiter"], hello["shim_waiter_note"]) == ("c", "")
    assert not list((tmp_path / "state" / "shim").glob("wait-*/skyops-shim-wait"))  # not built
    forced = start_agent(state_dir=tmp_path / "forced", extra=["--shim-supervisor", "python"])
    hello = forced.call(protocol.HELLO, protocol=protocol.PROTOCOL_VERSION)
    assert (
        hello["shim_waiter"] == "python" and "--shim-supervisor python" in hello["shim_waiter_note"]
    ), hello


def test_a_waiter_that_cannot_run_leaves_the_wait_to_python(tmp_path):
    """The shim's own fallback: an execve that fails (binary gone, a noexec mount)."""
    job_dir = direct_job_dir(tmp_path, ["sh", "-c", "exit 3"])
    missing = str(tmp_path / "no-such-waiter")
    shim = subprocess.run(
        [sys.executable, "-m", "skyops_agent", "shim", "--job-dir", str(job_dir)]
        + ["--wait-with", missing],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shim.returncode == 0, shim.stderr
    assert f"cannot run {missing}" in shim.stderr and "waiting in Python" in shim.stderr
    status = jobdir.read_json(str(job_dir / jobdir.STATUS))
    assert status["state"] == "exited" and status["exit_code"] == 3, status
    assert status["supervisor"] == "python"


ORPHAN_MAKER = [
    "sh",
    "-c",
    'while [ ! -e "$1" ]; do sleep 0.02; done; sh -c "sleep 300 & echo orphan \\$!"; '
    'while [ ! -e "$2" ]; do sleep 0.02; done; exit 0',
    "sh",
]


@BOTH_SUPERVISORS
def test_what_the_job_orphans_is_adopted_by_its_shim_and_killed_with_it(
    start_agent, tmp_path, wait_for, procs, supervisor
):
    """The subreaper flag outlives the shim's execve: a process the job leaves behind
    after the hand-over is the shim's child, and goes when the job ends."""
    agent = start_agent()
    made, done = tmp_path / "made", tmp_path / "done"
    job = agent.call(
        protocol.START, job_id="orphans", argv=ORPHAN_MAKER + [str(made), str(done)], mode="flex"
    )
    shim_pid = job["shim_pid"]
    if supervisor == "c":
        wait_for(lambda: runs_waiter(shim_pid), "the shim handing its wait to C")
    made.touch()
    line = wait_for(
        lambda: next(
            (x for x in agent.call(protocol.LOGS, job_id="orphans")["lines"] if "orphan" in x),
            None,
        ),
        "the job printing its orphan's pid",
    )
    orphan = int(line.split()[1])
    wait_for(lambda: int(proc_status(orphan)["PPid"]) == shim_pid, "the orphan adopted by the shim")
    done.touch()
    exited = agent.event(protocol.JOB_EXITED, job_id="orphans")
    assert exited["exit_code"] == 0 and exited["signal"] is None
    wait_for(lambda: not os.path.exists(f"/proc/{orphan}"), "the orphan killed and reaped")
    assert procs.gone(shim_pid)


@BOTH_SUPERVISORS
def test_a_hangup_or_interrupt_does_not_end_the_shim(start_agent, tmp_path, wait_for, supervisor):
    agent = start_agent()
    go = tmp_path / "go"
    job = agent.call(protocol.START, job_id="hup", argv=WAIT_FOR_FILE + [str(go), "4"], mode="flex")
    if supervisor == "c":
        wait_for(lambda: runs_waiter(job["shim_pid"]), "the shim handing its wait to C")
    for signum in (signal.SIGHUP, signal.SIGINT):
        os.kill(job["shim_pid"], signum)
    go.touch()
    exited = agent.event(protocol.JOB_EXITED, job_id="hup")
    assert exited["exit_code"] == 4, "the shim lived to see its job end"


# Forks `sleep` in its own session, waits until it runs, then becomes the waiter as the
# shim does (execve, same pid): argv[1] is the waiter, the rest its arguments after PID.
BECOME_WAITER = """
import os, sys
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.setsid()
    os.execvp("sleep", ["sleep", "300"])
os.close(w)
while os.read(r, 1):
    pass
waiter, job_dir, *rest = sys.argv[1:]
os.execv(waiter, [waiter, "--job-dir", job_dir, str(pid), *rest])
"""


def test_a_stop_caught_before_the_hand_over_is_carried_out_by_the_waiter(tmp_path):
    """The Python shim hands over a SIGTERM it caught but did not act on yet (STOP=1);
    the waiter reads stop.json and copies its reason as the JSON string it is."""
    need_cc()
    waiter = shim_wait.build(str(tmp_path / "state"))
    assert waiter is not None
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    reason = 'a "quoted" \\ back\nslash, é ☃'
    stop = {"reason": reason, "grace_s": 0, "term_grace_s": 5, "requested_at": 1.5}
    jobdir.write_json(str(job_dir / jobdir.STOP), stop)
    fixed = {"run_id": "r1", "supervisor": "c", "user": "ü"}
    done = subprocess.run(
        [sys.executable, "-c", BECOME_WAITER, waiter, str(job_dir), "-", "-", "1", "0"]
        + [jobdir.dumps(fixed)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    status = jobdir.read_json(str(job_dir / jobdir.STATUS))
    assert status is not None
    assert status["state"] == "exited" and status["signal"] == "SIGTERM", status
    assert status["exit_code"] is None and status["kill_failed"] is False
    assert status["stop_reason"] == reason
    assert {k: status[k] for k in fixed} == fixed
    assert not list(job_dir.glob("*.tmp.*")), "no temporary file left"


# Execs itself again and again (as the shim execs its waiter), its marker in every argv.
REEXEC = 'n=$1; if [ "$n" -gt 0 ]; then exec sh -c "$0" "$0" $((n - 1)) "$2"; fi'


def test_a_shim_inside_its_execve_is_not_taken_for_dead(tmp_path):
    """/proc/<pid>/cmdline reads empty while a process is inside execve: the agent must
    not call the job lost (and the console act on it) in that moment."""
    marker = str(tmp_path / "jobs" / "execing")
    proc = subprocess.Popen(["sh", "-c", REEXEC, REEXEC, "1500", marker])
    looks, dead = 0, 0
    try:
        while proc.poll() is None:
            alive = _pid_alive(proc.pid, must_contain=marker)
            if proc.poll() is None:  # still running after the look: the look must say so
                looks += 1
                dead += not alive
    finally:
        proc.kill()
        proc.wait()
    assert looks > 100
    assert dead == 0, f"{dead} of {looks} looks took the live process for dead"
