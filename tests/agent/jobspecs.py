"""A job folder with its spec.json, for tests that run the shim directly (no agent)."""

from __future__ import annotations

from pathlib import Path

from skyops_agent import jobdir


def direct_job_dir(tmp_path: Path, argv: list[str]) -> Path:
    """`tmp_path/jobs/direct` holding the spec the agent would write for `argv` (a Flex
    job on no GPU, run as the shim's own user)."""
    job_dir = tmp_path / "jobs" / "direct"
    job_dir.mkdir(parents=True)
    spec = {
        "job_id": "direct",
        "run_id": "0" * 32,
        "argv": argv,
        "env": {},
        "gpus": [],
        "workdir": str(tmp_path),
        "checkpoint_dir": str(tmp_path / "ckpt"),
        "resume": False,
        "mode": "flex",
        "run_as": None,
    }
    jobdir.write_json(str(job_dir / jobdir.SPEC), spec)
    return job_dir
