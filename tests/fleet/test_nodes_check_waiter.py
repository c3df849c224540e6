"""`nodes check` says when a box's jobs would wait in Python (no C compiler there), before
any job runs: each shim is then about 9 MB instead of 1.3 (docs/fleet.md)."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from skyops_tui.cli.nodes import run_nodes_check
from skyops_tui.domain.config import parse_config


def check_here(tmp_path: Path) -> dict:
    """`skyops nodes check --json` of one local node: its agent is a process started here."""
    cfg = parse_config(
        {
            "node_types": [{"name": "H100", "rate": 2.5}],
            "nodes": [{"name": "here", "fake_gpus": "1xH100-80GB", "local": True}],
        },
        "nodes check test",
    )
    out = io.StringIO()
    code = run_nodes_check(
        cfg, str(tmp_path / "known_hosts"), Console(file=out, width=240, color_system=None),
        as_json=True, timeout_s=30,
    )  # fmt: skip
    report = json.loads(out.getvalue())["nodes"][0]
    assert code == 0, report
    return report


def test_a_box_without_a_compiler_is_said_to_wait_in_python(tmp_path, monkeypatch):
    if shutil.which("cc") is None:
        if os.environ.get("CI"):
            pytest.fail("no C compiler (`cc`) on PATH: the C waiter cannot be tested")
        pytest.skip("no C compiler (`cc`)")
    report = check_here(tmp_path)
    assert not any("shim" in n for n in report["notes"]), report["notes"]

    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # the agent started now finds no cc
    report = check_here(tmp_path)
    notes = [n for n in report["notes"] if "shim" in n]
    assert notes == [
        "each job's shim waits in Python, about 9 MB a job instead of 1.3: "
        "no C compiler (cc) on the box to build skyops-shim-wait"
    ], report["notes"]
