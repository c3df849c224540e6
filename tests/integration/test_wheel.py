"""A built wheel carries what the demo runs: installed with no checkout beside it, the
demo grid's job starts. Only an editable install used to work (the job lived in
examples/, outside the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO_JOB = "skyops_tui/demo_job/ckpt_train.py"

pytestmark = pytest.mark.integration


def build_wheel(tmp_path: Path) -> Path:
    """`pip wheel` of a copy of the source (the shared tree gets no build/ folder),
    with the installed setuptools: no network."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for folder in ("skyops_tui", "agent"):
        shutil.copytree(ROOT / folder, src / folder, ignore=skip)
    out = tmp_path / "dist"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    done = subprocess.run(
        [*cmd, "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = out.glob("skyops-*.whl")
    return wheel


def test_an_installed_wheel_runs_the_demo_job(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert DEMO_JOB in zf.namelist()
        zf.extractall(site)  # a pure-Python wheel installs by unpacking

    # The demo's job argv, as the installed package builds it (not the checkout's).
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); import skyops_tui.demo as d;"
        "assert d.__file__.startswith(sys.argv[1]), d.__file__;"
        "print('\\0'.join(d.demo_argv(steps=3, step_seconds=0.01)))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    got = subprocess.run(
        [sys.executable, "-c", probe, str(site)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    argv = got.stdout.strip().split("\0")
    assert Path(argv[1]).is_relative_to(site), argv

    ckpt = tmp_path / "ckpt"
    job = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "SKYOPS_CHECKPOINT_DIR": str(ckpt)},
        timeout=60,
    )
    assert job.returncode == 0, job.stdout + job.stderr
    assert "done: 3 steps" in job.stdout
    assert (ckpt / "checkpoint.json").is_file()


def test_the_installed_skyops_command_submits_without_importing_re(tmp_path: Path) -> None:
    """`skyops` is installed as the package's own script (pyproject's script-files), not
    pip's wrapper for an entry point, which imports re: 4 ms of each call of a shell
    loop. Installed by pip from the wheel, it submits to a running leader through the
    lean client with neither re nor json loaded."""
    from tests.integration.test_submit_lean import drained_service

    wheel = build_wheel(tmp_path)
    # --target, not --prefix: pip would uninstall this interpreter's own skyops first.
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--target", str(site), str(wheel)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    script = site / "bin" / "skyops"
    text = script.read_text()
    assert text.startswith("#!/") and "import re" not in text, text

    (tmp_path / "leader").mkdir()
    svc = drained_service(tmp_path / "leader")
    try:
        # -S: this interpreter's own site-packages (their .pth hooks import re) stay out;
        # the installed package and the standard library are all a submission needs.
        env = {**svc.env, "PYTHONPATH": str(site)}
        argv = [*svc.base[3:], "submit", "--mode", "priority", "--hours", "1", "--", "true"]
        got = subprocess.run([sys.executable, "-S", "-X", "importtime", str(script), *argv],
                             env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60)  # fmt: skip
        assert got.returncode == 0, got.stderr
        assert got.stdout.startswith("Submitted priority job true-"), got.stdout
        imported = {
            line.rsplit("|", 1)[1].strip()
            for line in got.stderr.splitlines()
            if line.startswith("import time:")
        }
        assert "skyops_tui.cli.lean" in imported, sorted(imported)
        assert not imported & {"re", "json", "enum", "pydantic"}, sorted(imported)
    finally:
        svc.stop()
