"""Jobs under the shim, driven through a real agent subprocess: start, logs, stop, resume."""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import tarfile
import time

import pytest

from skyops_agent import protocol

PY = sys.executable
# Waits for a file to appear, then exits with the given code: a job the test controls.
WAIT_FOR_FILE = ["sh", "-c", 'while [ ! -e "$1" ]; do sleep 0.02; done; exit "$2"', "sh"]
# Supervision (exit codes, signals, stops, unstop, orphans, a lost shim) runs against the
# C waiter (skyops-shim-wait) and the Python loop it stands in for.
BOTH_SUPERVISORS = pytest.mark.parametrize("supervisor", ["c", "python"], indirect=True)


def logs(agent, job_id, stream="stdout", tail_lines=1000):
    return agent.call(protocol.LOGS, job_id=job_id, stream=stream, tail_lines=tail_lines)["lines"]


def log_has(agent, job_id, text):
    return any(text in line for line in logs(agent, job_id))


@BOTH_SUPERVISORS
def test_job_gets_the_contract_env_and_its_argv_without_a_shell(start_agent, tmp_path, procs):
    agent = start_agent()
    tricky = ["two words", 'it\'s "quoted"', "; touch /tmp/skyops-pwned", "$(id)", "*", ""]
    report = (
        "import json, os, sys\n"
        "names = ['CUDA_VISIBLE_DEVICES', 'SKYOPS_JOB_ID', 'SKYOPS_MODE',\n"
        "         'SKYOPS_CHECKPOINT_DIR', 'SKYOPS_RESUME', 'MY_VAR']\n"
        "print(json.dumps({'argv': sys.argv[1:], 'cwd': os.getcwd(),\n"
        "                  'pgid': os.getpgid(0), 'pid': os.getpid(),\n"
        "                  'env': {n: os.environ.get(n) for n in names}}))\n"
    )
    started = agent.call(
        protocol.START,
        job_id="env-check",
        argv=[PY, "-c", report, *tricky],
        env={"MY_VAR": "a b;c", "CUDA_VISIBLE_DEVICES": "7", "SKYOPS_RESUME": "1"},
        gpus=[1, 3],
        workdir=str(tmp_path),
        mode="commit",
    )
    assert started["state"] in ("running", "exited") and started["pgid"] == started["pid"]
    exited = agent.event(protocol.JOB_EXITED, job_id="env-check")
    assert exited["exit_code"] == 0 and exited["signal"] is None and exited["stop_reason"] is None
    assert agent.event(protocol.JOB_STARTED, job_id="env-check")["pid"] == started["pid"]
    seen = json.loads(logs(agent, "env-check")[-1])
    assert seen["argv"] == tricky
    assert not os.path.exists("/tmp/skyops-pwned")
    assert seen["cwd"] == str(tmp_path)
    assert seen["pgid"] == seen["pid"] == started["pid"], "the job leads its own process group"
    assert started["shim_pid"] != started["pid"]
    assert seen["env"] == {
        "CUDA_VISIBLE_DEVICES": "1,3",
        "SKYOPS_JOB_ID": "env-check",
        "SKYOPS_MODE": "commit",
        "SKYOPS_CHECKPOINT_DIR": str(tmp_path / "state" / "checkpoints" / "env-check"),
        "SKYOPS_RESUME": None,
        "MY_VAR": "a b;c",
    }


def test_logs_tail_each_stream(start_agent):
    agent = start_agent()
    script = "import sys\nfor i in range(50): print('line', i)\nprint('oops', file=sys.stderr)"
    agent.call(protocol.START, job_id="chatty", argv=[PY, "-c", script], mode="flex")
    agent.event(protocol.JOB_EXITED, job_id="chatty")
    tail = agent.call(protocol.LOGS, job_id="chatty", tail_lines=3)
    assert tail["lines"] == ["line 47", "line 48", "line 49"] and tail["truncated"] is True
    assert logs(agent, "chatty", stream="stderr") == ["oops"]


@BOTH_SUPERVISORS
def test_a_command_that_cannot_start_is_refused_and_leaves_no_job(start_agent):
    agent = start_agent()
    reply = agent.request(protocol.START, job_id="typo", argv=["no-such-binary-xyz"], mode="flex")
    assert reply["code"] == protocol.E_EXEC_FAILED and "no-such-binary-xyz" in reply["message"]
    assert agent.call(protocol.JOBS)["jobs"] == []
    missing = agent.request(
        protocol.START, job_id="typo", argv=["true"], mode="flex", workdir="/no/such/dir"
    )
    assert missing["code"] == protocol.E_BAD_FIELD and "/no/such/dir" in missing["message"]
    agent.call(protocol.START, job_id="typo", argv=["true"], mode="flex")


def test_job_ids_are_not_reused_until_forgotten(start_agent, tmp_path):
    agent = start_agent()
    go = tmp_path / "go"
    agent.call(protocol.START, job_id="once", argv=WAIT_FOR_FILE + [str(go), "0"], mode="flex")
    again = agent.request(protocol.START, job_id="once", argv=["true"], mode="flex")
    assert again["code"] == protocol.E_JOB_EXISTS and "running" in again["message"]
    busy = agent.request(protocol.FORGET, job_id="once")
    assert busy["code"] == protocol.E_JOB_RUNNING
    go.touch()
    agent.event(protocol.JOB_EXITED, job_id="once")
    assert agent.request(protocol.START, job_id="once", argv=["true"], mode="flex")["code"] == (
        protocol.E_JOB_EXISTS
    )
    agent.call(protocol.FORGET, job_id="once", remove_checkpoint=True)
    assert not (tmp_path / "state" / "checkpoints" / "once").exists()
    assert agent.call(protocol.JOBS)["jobs"] == []
    agent.call(protocol.START, job_id="once", argv=["true"], mode="flex")
    assert len(agent.events(protocol.JOB_EXITED, job_id="once")) >= 1


@BOTH_SUPERVISORS
def test_checkpoint_stop_then_resume_on_another_agent(start_agent, tmp_path, wait_for, ckpt_train):
    first = start_agent(state_dir=tmp_path / "box-a")
    train = [PY, ckpt_train, "--steps", "60", "--step-seconds", "0.05", "--checkpoint-every", "0"]
    first.call(protocol.START, job_id="train", argv=train, mode="flex", gpus=[0])
    wait_for(lambda: log_has(first, "train", "step 3/60"), "the job reaching step 3")
    stopping = first.call(
        protocol.STOP,
        job_id="train",
        checkpoint_signal="SIGUSR1",
        grace_s=10,
        term_grace_s=1,
        reason="preempted",
    )
    assert stopping["state"] in ("stopping", "exited")
    exited = first.event(protocol.JOB_EXITED, job_id="train")
    assert exited["stop_reason"] == "preempted"
    assert exited["exit_code"] == 0 and exited["signal"] is None, "it checkpointed and exited"
    saved = next(line for line in logs(first, "train") if "on SIGUSR1" in line)
    step = int(saved.split("step ")[1].split()[0])
    assert 3 <= step < 60
    job = first.job("train")
    assert job["state"] == "exited" and job["stop_reason"] == "preempted"
    listing = first.call(protocol.CHECKPOINT_LIST, job_id="train")
    assert [f["path"] for f in listing["files"]] == ["checkpoint.json"]
    assert job["last_checkpoint_at"] == listing["newest_mtime"]
    packed = first.call(protocol.CHECKPOINT_PACK, job_id="train")
    assert packed["files"] == 1 and packed["bytes"] == len(base64.b64decode(packed["data"]))

    second = start_agent(state_dir=tmp_path / "box-b")
    unpacked = second.call(protocol.CHECKPOINT_UNPACK, job_id="train", data=packed["data"])
    assert unpacked["files"] == 1
    assert abs(unpacked["newest_mtime"] - listing["newest_mtime"]) < 1, "mtimes travel"
    resumed = train[:-4] + ["--step-seconds", "0.01", "--checkpoint-every", "0"]
    second.call(protocol.START, job_id="train", argv=resumed, mode="flex", resume=True)
    done = second.event(protocol.JOB_EXITED, job_id="train")
    assert done["exit_code"] == 0 and done["stop_reason"] is None
    lines = logs(second, "train")
    assert "SKYOPS_RESUME=1" in lines
    assert f"resumed from step {step}" in lines
    assert lines[-1] == "done: 60 steps"


@BOTH_SUPERVISORS
def test_a_wrapper_shell_does_not_cut_the_checkpoint_short(
    start_agent, tmp_path, wait_for, ckpt_train
):
    """The checkpoint signal kills a plain `sh -c` wrapper; its child still gets its grace."""
    agent = start_agent()
    inner = f"{PY} {ckpt_train} --steps 500 --step-seconds 0.05; echo wrapper done"
    agent.call(protocol.START, job_id="wrapped", argv=["sh", "-c", inner], mode="flex")
    wait_for(lambda: log_has(agent, "wrapped", "step 2/500"), "the wrapped job reaching step 2")
    agent.call(
        protocol.STOP,
        job_id="wrapped",
        checkpoint_signal="USR1",
        grace_s=10,
        term_grace_s=1,
        reason="preempted",
    )
    exited = agent.event(protocol.JOB_EXITED, job_id="wrapped")
    assert exited["stop_reason"] == "preempted" and exited["signal"] == "SIGUSR1"
    assert log_has(agent, "wrapped", "checkpoint saved at step")
    ckpt = tmp_path / "state" / "checkpoints" / "wrapped" / "checkpoint.json"
    assert json.loads(ckpt.read_text())["step"] >= 2


@BOTH_SUPERVISORS
def test_a_job_ignoring_its_signals_is_killed_with_its_whole_group(start_agent, wait_for, procs):
    agent = start_agent()
    stubborn = "trap '' USR1 TERM; sleep 300 & echo child $!; wait; wait"
    started = agent.call(
        protocol.START, job_id="stubborn", argv=["sh", "-c", stubborn], mode="flex"
    )
    line = wait_for(
        lambda: next((x for x in logs(agent, "stubborn") if x.startswith("child ")), None),
        "the job printing its child's pid",
    )
    child = int(line.split()[1])
    asked = time.time()
    agent.call(
        protocol.STOP,
        job_id="stubborn",
        checkpoint_signal="SIGUSR1",
        grace_s=0.3,
        term_grace_s=0.3,
        reason="expired",
    )
    assert agent.job("stubborn")["state"] == "stopping"
    exited = agent.event(protocol.JOB_EXITED, job_id="stubborn")
    assert exited["signal"] == "SIGKILL" and exited["exit_code"] is None
    assert exited["stop_reason"] == "expired"
    assert exited["ended_at"] - asked >= 0.55, "both grace periods were given"
    assert procs.gone(started["pid"]) and procs.gone(child)
    assert procs.group(started["pgid"]) == []


@BOTH_SUPERVISORS
def test_jobs_outlive_a_killed_agent_and_a_new_one_reports_them(
    start_agent, tmp_path, wait_for, procs
):
    state = tmp_path / "state"
    first = start_agent(state_dir=state)
    go_one, go_two = tmp_path / "go-one", tmp_path / "go-two"
    one = first.call(
        protocol.START, job_id="one", argv=WAIT_FOR_FILE + [str(go_one), "7"], mode="flex"
    )
    two = first.call(
        protocol.START, job_id="two", argv=WAIT_FOR_FILE + [str(go_two), "3"], mode="flex"
    )
    first.kill9()
    assert not procs.gone(one["pid"]) and not procs.gone(two["pid"])

    go_one.touch()  # job one ends while no agent runs
    wait_for(lambda: procs.gone(one["pid"]), "job one exiting with no agent running")
    second = start_agent(state_dir=state)
    wait_for(lambda: second.job("one")["state"] == "exited", "the new agent seeing job one's exit")
    job_one = second.job("one")
    assert job_one["exit_code"] == 7 and job_one["stop_reason"] is None
    assert job_one["ended_at"] >= job_one["started_at"]
    job_two = second.job("two")
    assert job_two["state"] == "running" and job_two["pid"] == two["pid"]

    go_two.touch()  # job two ends while the new agent runs: it sends the event
    exited = second.event(protocol.JOB_EXITED, job_id="two")
    assert exited["exit_code"] == 3 and exited["stop_reason"] is None


@BOTH_SUPERVISORS
def test_eof_leaves_jobs_running_and_the_next_agent_can_stop_them(start_agent, tmp_path, procs):
    state = tmp_path / "state"
    first = start_agent(state_dir=state)
    job = first.call(protocol.START, job_id="long", argv=["sleep", "300"], mode="priority")
    assert first.close() == 0
    assert not procs.gone(job["pid"])
    second = start_agent(state_dir=state)
    second.call(protocol.STOP, job_id="long", term_grace_s=5, reason="cancelled")
    exited = second.event(protocol.JOB_EXITED, job_id="long")
    assert exited["signal"] == "SIGTERM" and exited["stop_reason"] == "cancelled"
    assert second.call(protocol.STOP, job_id="long", reason="again")["state"] == "exited"


@BOTH_SUPERVISORS
def test_signal_request_reaches_the_job(start_agent, wait_for, ckpt_train):
    agent = start_agent()
    argv = [PY, ckpt_train, "--steps", "500", "--step-seconds", "0.05"]
    agent.call(protocol.START, job_id="sig", argv=argv, mode="flex")
    wait_for(lambda: log_has(agent, "sig", "step 1/500"), "the job reaching step 1")
    assert agent.call(protocol.SIGNAL, job_id="sig", signal="SIGUSR1")["signal"] == "SIGUSR1"
    exited = agent.event(protocol.JOB_EXITED, job_id="sig")
    assert exited["exit_code"] == 0 and exited["stop_reason"] is None
    bad = agent.request(protocol.SIGNAL, job_id="sig", signal="SIGNOPE")
    assert bad["code"] == protocol.E_BAD_FIELD and "SIGNOPE" in bad["message"]
    done = agent.request(protocol.SIGNAL, job_id="sig", signal="SIGUSR1")
    assert done["code"] == protocol.E_NOT_RUNNING


def test_fake_telemetry_shows_the_job_on_its_gpu(start_agent, tmp_path, wait_for):
    agent = start_agent(fake_gpus="2xH100-80GB")
    job = agent.call(
        protocol.START,
        job_id="hot",
        argv=WAIT_FOR_FILE + [str(tmp_path / "go"), "0"],
        mode="flex",
        gpus=[1],
    )
    gpus = agent.call(protocol.TELEMETRY)["gpus"]
    assert [p["pid"] for p in gpus[1]["processes"]] == [job["pid"]]
    assert gpus[0]["processes"] == []
    hot = wait_for(
        lambda: (g := agent.call(protocol.TELEMETRY)["gpus"])[1]["utilization_pct"] > 80 and g,
        "GPU 1 getting busy under the job",
    )
    assert hot[0]["utilization_pct"] < 10


def test_checkpoint_transfer_refuses_what_it_must(start_agent, tmp_path):
    agent = start_agent()
    agent.call(protocol.CONFIGURE, checkpoint_roots=[str(tmp_path)])
    big = tmp_path / "big"
    big.mkdir()
    (big / "weights.bin").write_bytes(os.urandom(200_000))
    too_large = agent.request(
        protocol.CHECKPOINT_PACK, job_id="x", checkpoint_dir=str(big), max_bytes=10_000
    )
    assert too_large["code"] == protocol.E_TOO_LARGE

    target = tmp_path / "target"
    garbage = agent.request(
        protocol.CHECKPOINT_UNPACK, job_id="x", checkpoint_dir=str(target), data="not base64!"
    )
    assert garbage["code"] == protocol.E_BAD_FIELD
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        payload = b"owned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    evil = agent.request(
        protocol.CHECKPOINT_UNPACK,
        job_id="x",
        checkpoint_dir=str(target),
        data=base64.b64encode(buf.getvalue()).decode(),
    )
    assert evil["code"] == protocol.E_BAD_FIELD and "escaped.txt" in evil["message"]
    assert not (tmp_path / "escaped.txt").exists() and not target.exists()

    agent.call(
        protocol.START,
        job_id="busy",
        argv=WAIT_FOR_FILE + [str(tmp_path / "go"), "0"],
        mode="flex",
        checkpoint_dir=str(target),
    )
    packed = agent.call(protocol.CHECKPOINT_PACK, job_id="x", checkpoint_dir=str(big))
    clash = agent.request(
        protocol.CHECKPOINT_UNPACK, job_id="busy", checkpoint_dir=str(target), data=packed["data"]
    )
    assert clash["code"] == protocol.E_JOB_RUNNING


@BOTH_SUPERVISORS
def test_a_job_whose_shim_died_is_reported_lost_and_can_still_be_stopped(
    start_agent, tmp_path, wait_for, procs
):
    agent = start_agent()
    job = agent.call(
        protocol.START,
        job_id="orphan",
        argv=WAIT_FOR_FILE + [str(tmp_path / "go"), "0"],
        mode="flex",
    )
    os.kill(job["shim_pid"], 9)
    wait_for(lambda: agent.job("orphan")["state"] == "lost", "the job being reported lost")
    assert not procs.gone(job["pid"])
    agent.call(protocol.STOP, job_id="orphan", reason="node drained")
    exited = agent.event(protocol.JOB_EXITED, job_id="orphan")
    assert exited["stop_reason"] == "node drained"
    wait_for(lambda: procs.gone(job["pid"]), "the orphaned job being killed")
    assert "shim was gone" in agent.job("orphan")["error"]


def test_the_agent_takes_paths_only_under_its_roots_and_bounds_archives(start_agent, tmp_path):
    """A console (or a job spec) naming /etc as a checkpoint or work folder is refused:
    the agent would pack and ship it with its own rights. So is an archive bomb."""
    agent = start_agent()
    for request, fields in (
        (protocol.CHECKPOINT_PACK, {"job_id": "x", "checkpoint_dir": "/etc"}),
        (protocol.CHECKPOINT_LIST, {"job_id": "x", "checkpoint_dir": "/etc"}),
        (
            protocol.START,
            {"job_id": "etc", "argv": ["true"], "mode": "flex", "checkpoint_dir": "/etc"},
        ),
        (protocol.START, {"job_id": "wd", "argv": ["true"], "mode": "flex", "workdir": "/etc"}),
    ):
        refused = agent.request(request, **fields)
        assert refused["code"] == protocol.E_BAD_FIELD, refused
        assert "outside the allowed roots" in refused["message"], refused
    assert agent.call(protocol.JOBS)["jobs"] == []

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        zeros = b"\0" * (8 * 1024 * 1024)
        info = tarfile.TarInfo("zeros.bin")
        info.size = len(zeros)
        tar.addfile(info, io.BytesIO(zeros))
    bomb = base64.b64encode(buf.getvalue()).decode()
    target = tmp_path / "ckpt"
    agent.call(protocol.CONFIGURE, checkpoint_roots=[str(tmp_path)])
    refused = agent.request(
        protocol.CHECKPOINT_UNPACK, job_id="x", checkpoint_dir=str(target), data=bomb
    )
    assert refused["code"] == protocol.E_BAD_FIELD and "times" in refused["message"], refused
    agent.call(protocol.CONFIGURE, checkpoint_roots=[str(tmp_path)], unpack_max_bytes=1024)
    refused = agent.request(
        protocol.CHECKPOINT_UNPACK, job_id="x", checkpoint_dir=str(target), data=bomb
    )
    assert "more than the 1024 allowed" in refused["message"], refused
    agent.call(protocol.CONFIGURE, checkpoint_roots=[str(tmp_path)], unpack_max_ratio=1e5)
    agent.call(protocol.CHECKPOINT_UNPACK, job_id="x", checkpoint_dir=str(target), data=bomb)
    assert (target / "zeros.bin").stat().st_size == len(zeros)


# Saves a "checkpoint" on USR1 and runs on; prints a tick every 0.05 s, 40 in all.
CHECKPOINT_AND_GO_ON = [
    "sh",
    "-c",
    "trap 'echo checkpoint' USR1; trap 'echo term' TERM; i=0; "
    'while [ $i -lt "$1" ]; do i=$((i+1)); echo "tick $i"; sleep 0.05; done; echo done',
    "sh",
]


@BOTH_SUPERVISORS
def test_unstop_in_the_checkpoint_grace_keeps_the_job_running(start_agent, wait_for):
    """A preemption called off while its checkpoint grace runs: the job runs on past the
    grace, gets no SIGTERM, and ends on its own, not as stopped."""
    agent = start_agent()
    agent.call(protocol.START, job_id="calm", argv=CHECKPOINT_AND_GO_ON + ["40"], mode="flex")
    wait_for(lambda: log_has(agent, "calm", "tick 2"), "the job ticking")
    asked = time.time()
    agent.call(
        protocol.STOP,
        job_id="calm",
        checkpoint_signal="SIGUSR1",
        grace_s=0.5,
        term_grace_s=0.2,
        reason="preempted",
    )
    wait_for(lambda: log_has(agent, "calm", "checkpoint"), "the checkpoint signal reaching it")
    back = agent.call(protocol.UNSTOP, job_id="calm", reason="its preemptor started elsewhere")
    assert back["state"] == "running" and back["stop_requested"] is None
    done = agent.event(protocol.JOB_EXITED, job_id="calm")
    assert done["ended_at"] - asked > 0.7, "it ran past its grace"
    assert done["exit_code"] == 0 and done["stop_reason"] is None
    assert not log_has(agent, "calm", "term") and log_has(agent, "calm", "done")
    late = agent.request(protocol.UNSTOP, job_id="calm", reason="again")
    assert late["code"] == protocol.E_TOO_LATE


@BOTH_SUPERVISORS
def test_unstop_after_sigterm_is_too_late(start_agent, wait_for):
    agent = start_agent()
    agent.call(protocol.START, job_id="late", argv=CHECKPOINT_AND_GO_ON + ["400"], mode="flex")
    wait_for(lambda: log_has(agent, "late", "tick 1"), "the job ticking")
    agent.call(
        protocol.STOP,
        job_id="late",
        checkpoint_signal="SIGUSR1",
        grace_s=0.1,
        term_grace_s=30,
        reason="preempted",
    )
    wait_for(lambda: log_has(agent, "late", "term"), "SIGTERM reaching the job")
    refused = agent.request(protocol.UNSTOP, job_id="late", reason="no longer needed")
    assert refused["code"] == protocol.E_TOO_LATE and "SIGTERM" in refused["message"]
    assert agent.job("late")["state"] == "stopping"
    agent.call(protocol.STOP, job_id="late", term_grace_s=0, reason="preempted")
    exited = agent.event(protocol.JOB_EXITED, job_id="late")
    assert exited["signal"] == "SIGKILL" and exited["stop_reason"] == "preempted"


def _private_kb(pid: int) -> int:
    """USS: the pages only this process holds, what its end gives back to the box."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return sum(int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty"))


SHIM_PRIVATE_MAX_KB = 4 * 1024  # a bare `python -I -S` holds about 2.6 MB here


@BOTH_SUPERVISORS
def test_a_running_jobs_shim_holds_little_memory_of_its_own(start_agent, tmp_path, wait_for):
    """One shim per running job, for the job's whole life: a box running many jobs must
    not pay much for them (docs/fleet.md, "Memory per job")."""
    agent = start_agent()
    go = tmp_path / "go"
    job = agent.call(
        protocol.START, job_id="lean", argv=WAIT_FOR_FILE + [str(go), "0"], mode="flex"
    )
    seen: list[int] = []

    def lean() -> bool:
        seen.append(_private_kb(job["shim_pid"]))
        return seen[-1] <= SHIM_PRIVATE_MAX_KB

    try:
        wait_for(
            lean,
            f"the shim's private memory at most {SHIM_PRIVATE_MAX_KB} kB",
            show=lambda: f" (last seen: {seen[-1]} kB)",
        )
    finally:
        go.touch()
    assert agent.event(protocol.JOB_EXITED, job_id="lean")["exit_code"] == 0


@BOTH_SUPERVISORS
def test_the_job_starts_with_default_signal_dispositions_and_nothing_blocked(start_agent):
    """Python ignores SIGPIPE and SIGXFSZ, and the shim handles or blocks others: none of
    that may reach the job (`yes | head` must end, a full disk must stop a writer)."""
    agent = start_agent()
    agent.call(protocol.START, job_id="sigs", argv=["cat", "/proc/self/status"], mode="flex")
    assert agent.event(protocol.JOB_EXITED, job_id="sigs")["exit_code"] == 0
    status = dict(line.split(":", 1) for line in logs(agent, "sigs") if ":" in line)
    ignored = int(status["SigIgn"], 16)
    for signum in (1, 2, 13, 15, 17, 25):  # HUP INT PIPE TERM CHLD XFSZ
        assert not ignored & (1 << (signum - 1)), f"signal {signum} ignored in the job"
    assert int(status["SigBlk"], 16) == 0, "the job starts with signals blocked"
