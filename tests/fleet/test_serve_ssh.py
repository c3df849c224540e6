"""`skyops serve` leading a grid whose node is an SSH box: the SSH library, which a grid
of local nodes never loads (tests/integration/test_serve_imports.py), is loaded for it,
and the leader reaches the box through it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.integration.serve import Leader
from tests.integration.test_serve_imports import imported
from tests.waiting import wait_for


def test_a_leader_of_an_ssh_node_reaches_it_over_ssh(tmp_path, asyncssh_box):
    box = asyncssh_box
    home = tmp_path / "leader-home"  # the leader's ~/.ssh/known_hosts trusts the box
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(Path(box.known_hosts()).read_text())
    config = (
        '[cluster]\nname = "serve-ssh"\ntick_s = 0.2\n'
        '[[node_types]]\nname = "H100"\nrate = 2.5\n'
        f'[[nodes]]\nname = "box"\nhost = "{box.host}"\nport = {box.port}\n'
        f'user = "{box.user}"\nidentity = "{box.identity}"\npython = "{sys.executable}"\n'
        'fake_gpus = "2xH100-80GB"\n'
        '[accounts]\noperators = ["ops"]\n'
    )
    leader = Leader(tmp_path, config)
    env = leader.env
    leader.env = {**env, "HOME": str(home), "PYTHONPROFILEIMPORTTIME": "1"}
    leader.start()
    leader.env = env
    try:

        def box_status() -> str:
            r = leader.cli("status", "--json")
            assert r.returncode == 0, r.stderr
            return next(n["status"] for n in json.loads(r.stdout)["nodes"] if n["name"] == "box")

        wait_for(lambda: box_status() == "up", "the box up", timeout=30, show=box_status)
        assert any(" serve --stdio " in cmd for cmd in box.commands), box.commands
    finally:
        leader.stop()
    assert "asyncssh" in imported((tmp_path / "serve1.log").read_text())
