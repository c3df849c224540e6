"""The agent as one file: deterministic build, and it serves and runs jobs from the .pyz."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from skyops_agent import protocol
from skyops_agent.zipapp import build_zipapp

from .jobspecs import direct_job_dir

AGENT_SOURCES = sorted(Path(protocol.__file__).parent.glob("*.py"))


def test_build_is_deterministic_and_bundles_what_the_box_needs(tmp_path):
    first, sha = build_zipapp(str(tmp_path / "a"))
    second, sha_again = build_zipapp(str(tmp_path / "b"))
    assert sha == sha_again
    assert Path(first).read_bytes() == Path(second).read_bytes()
    assert sha == hashlib.sha256(Path(first).read_bytes()).hexdigest()
    assert Path(first).read_bytes().startswith(b"#!/usr/bin/env python3\n")
    names = zipfile.ZipFile(first).namelist()
    assert names == sorted(names)
    assert {
        "__main__.py",
        "pynvml.py",
        "skyops_agent/protocol.py",
        "skyops_agent/shim.py",
        "skyops_agent/shim_wait.c",
    } <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert {i.date_time for i in zipfile.ZipFile(first).infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize("supervisor", ["c", "python"], indirect=True)
def test_the_zipapp_serves_and_its_shim_runs_from_it(
    tmp_path, start_agent, wait_for, ckpt_train, procs, supervisor
):
    pyz, sha = build_zipapp(str(tmp_path / "dist"))
    version = subprocess.run(
        [sys.executable, pyz, "version", "--json"], capture_output=True, text=True, timeout=60
    )
    assert json.loads(version.stdout)["zipapp_sha256"] == sha

    agent = start_agent(argv=[sys.executable, pyz])
    hello = agent.call(protocol.HELLO, protocol=protocol.PROTOCOL_VERSION)
    assert hello["zipapp"] == pyz, "the agent must import itself from the .pyz"
    argv = [sys.executable, ckpt_train, "--steps", "500", "--step-seconds", "0.05"]
    job = agent.call(protocol.START, job_id="from-pyz", argv=argv, mode="flex", gpus=[0])
    with open(f"/proc/{job['shim_pid']}/cmdline", "rb") as f:
        shim_argv = f.read().split(b"\0")
    # The shim imports the zipapp's own package, unpacked once and compiled.
    unpacked = tmp_path / "state" / "shim" / sha[:16]
    with zipfile.ZipFile(pyz) as zf:
        for name in ("skyops_agent/shim.py", "skyops_agent/jobdir.py"):
            assert (unpacked / name).read_bytes() == zf.read(name)
        c_source = zf.read("skyops_agent/shim_wait.c")
    assert list((unpacked / "skyops_agent" / "__pycache__").glob("shim.*.pyc"))
    if supervisor == "python":
        assert shim_argv[1:4] == [b"-I", b"-S", b"-c"] and shim_argv[5] == str(unpacked).encode()
    else:  # the shim has handed its wait to the waiter built from the zipapp's C source
        waiter = tmp_path / "state" / "shim" / f"wait-{hashlib.sha256(c_source).hexdigest()[:16]}"
        wait_for(
            lambda: Path(f"/proc/{job['shim_pid']}/exe").resolve() == waiter / "skyops-shim-wait",
            "the shim running the waiter built from the zipapp's C source",
        )
    wait_for(
        lambda: "step 1/500" in agent.call(protocol.LOGS, job_id="from-pyz")["lines"],
        "the job reaching step 1 (its signal handler is set by then)",
    )
    agent.call(
        protocol.STOP, job_id="from-pyz", checkpoint_signal="SIGUSR1", grace_s=5, reason="test"
    )
    exited = agent.event(protocol.JOB_EXITED, job_id="from-pyz")
    assert exited["exit_code"] == 0 and exited["stop_reason"] == "test"
    assert agent.close() == 0


def test_agent_sources_stay_python39_compatible():
    """3.9 syntax (no `match`), and annotations never evaluated (so `X | None` is safe)."""
    for path in AGENT_SOURCES:
        source = path.read_text()
        ast.parse(source, filename=str(path), feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path.name


def _vermin(*paths: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, vermin; sys.exit(vermin.main())",
            "-t=3.9-",
            "--violations",
            "--no-tips",
            "--no-parse-comments",
        ]
        + [str(p) for p in paths],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_agent_needs_nothing_newer_than_python39(tmp_path):
    """Boxes run whatever python3 their distribution ships, so the agent (and the NVML
    bindings bundled with it) must not use a language feature, library function or
    keyword argument newer than 3.9. vermin knows the minimum version of each; no
    interpreter older than 3.11 can be installed here, so this check stands in for one."""
    import pynvml

    checked = _vermin(*AGENT_SOURCES, pynvml.__file__)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The check can fail: a 3.10 keyword and a 3.11 module are caught.
    newer = tmp_path / "newer.py"
    newer.write_text("import tomllib\npairs = list(zip([1], [2], strict=True))\n")
    caught = _vermin(newer)
    assert caught.returncode != 0
    assert "zip(strict)" in caught.stdout and "tomllib" in caught.stdout


def test_a_shim_runs_straight_from_the_zipapp_too(tmp_path):
    """Where the package cannot be unpacked, the shim runs from the .pyz itself."""
    from skyops_agent import jobdir

    pyz, _ = build_zipapp(str(tmp_path / "dist"))
    job_dir = direct_job_dir(tmp_path, ["sh", "-c", "echo from-the-pyz"])
    shim = subprocess.run(
        [sys.executable, "-I", "-S", pyz, "shim", "--job-dir", str(job_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shim.returncode == 0, shim.stderr
    status = jobdir.read_json(str(job_dir / jobdir.STATUS))
    assert status["state"] == "exited" and status["exit_code"] == 0, status
    assert (job_dir / jobdir.STDOUT).read_text() == "from-the-pyz\n"
