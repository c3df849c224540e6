"""`skyops submit` from a shell loop: the lean client (cli/lean.py) against a real
`skyops serve`, and what it hands to the full client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from skyops_tui.store.db import Store
from tests.helpers import one_local_node_config
from tests.integration.serve import Leader

REPO = Path(__file__).resolve().parents[2]


def drained_service(tmp: Path) -> Leader:
    """`skyops serve` on one drained node: jobs queue, nothing is started."""
    leader = Leader(tmp, one_local_node_config("lean"))
    leader.start()
    r = leader.cli("nodes", "drain", "node-a")
    assert r.returncode == 0, r.stderr
    return leader


def submitted_in_process(svc: Leader, modules: tuple[str, ...], *flags: str) -> str:
    """`skyops submit` through cli.entry in a fresh interpreter (with `flags`): its exit
    code and which of `modules` it imported, as one line."""
    probe = (
        "import sys\n"
        "from skyops_tui.cli.entry import main\n"
        f"code = main({svc.base[3:]!r} + ['submit', '--mode', 'priority', '--hours', '1',"
        " '--', 'true'])\n"
        f"print(code, sorted(m for m in {modules!r} if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, *flags, "-c", probe], env=svc.env, cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Submitted priority job true-" in r.stdout, r.stdout
    return r.stdout.splitlines()[-1]


def test_a_loop_of_submissions_gets_one_name_each_from_the_leader(tmp_path):
    """Without --name the leader names each job after its program and id, so calls a
    moment apart never collide (a name made from the client's clock did, within a
    second, and the second call was refused)."""
    svc = drained_service(tmp_path)
    try:
        ids = []
        for _ in range(3):
            r = svc.cli("submit", "--mode", "priority", "--hours", "1", "--json", "--", "true")
            assert r.returncode == 0, r.stderr
            (job,) = json.loads(r.stdout)["jobs"]
            assert job["name"] == f"true-{job['id']}" and job["state"] == "queued"
            ids.append(job["id"])
        assert len(set(ids)) == 3
        r = svc.cli(
            "submit", "--mode", "priority", "--hours", "1", "--name", "true-99", "--", "true"
        )
        assert r.returncode == 0 and "Submitted priority job true-99 (id " in r.stdout, r.stderr
    finally:
        svc.stop()


def test_an_array_is_one_command_admitted_whole_or_not_at_all(tmp_path):
    svc = drained_service(tmp_path)
    try:
        r = svc.cli("submit", "--mode", "priority", "--hours", "1", "--name", "sweep",
                    "--array", "2000", "--json", "--", "python", "train.py")  # fmt: skip
        assert r.returncode == 0, r.stderr
        jobs = json.loads(r.stdout)["jobs"]
        assert [j["name"] for j in jobs] == [f"sweep-{k}" for k in range(2000)]
        # sweep-1999 exists: a second array over it is refused whole.
        r = svc.cli("submit", "--mode", "priority", "--hours", "1", "--name", "sweep",
                    "--array", "3000", "--", "true")  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert "refused: job sweep-0 exists already (and 1999 more of the array)" in r.stderr
    finally:
        svc.stop()
    store = Store(tmp_path / "state.db")
    try:
        rows = store.conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        submits = store.conn.execute(
            "SELECT count(*) FROM commands WHERE kind = 'submit'"
        ).fetchone()[0]
    finally:
        store.close()
    assert rows == 2000, "the refused array added nothing"
    assert submits == 2, "each array travelled as one command"


def test_the_lean_client_refuses_as_the_full_one_and_hands_over_the_rest(tmp_path):
    svc = drained_service(tmp_path)
    try:
        assert svc.cli("submit", "--mode", "priority", "--hours", "1", "--name", "dup",
                       "--", "true").returncode == 0  # fmt: skip
        r = svc.cli("submit", "--mode", "priority", "--hours", "1", "--name", "dup", "--json",
                    "--", "true")  # fmt: skip
        assert r.returncode == 1
        assert r.stderr.strip() == "refused: a job named 'dup' exists already"
        assert json.loads(r.stdout) == {
            "status": "refused",
            "errors": ["a job named 'dup' exists already"],
        }
        # Invalid flags: the leader marks the refusal invalid and the full client
        # names the flag (exit 2), as with no leader at all.
        r = svc.cli("submit", "--mode", "priority", "--gpus", "0", "--", "true")
        assert r.returncode == 2 and "skyops submit: --gpus:" in r.stderr, r.stderr
        r = svc.cli("submit", "--hours", "1", "--", "true")
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (
            "error: skyops submit: hours, hourly and auto_renew are for priority jobs, not flex"
        )
        r = svc.cli("submit", "--gpus", "two", "--", "true")
        assert r.returncode == 2 and "--gpus: invalid int value: 'two'" in r.stderr, r.stderr
    finally:
        svc.stop()


def test_the_lean_path_sends_a_submission_without_the_full_client(tmp_path):
    """What makes a loop fast: a submission to a running leader imports neither
    pydantic nor rich nor the grid model (their imports are most of the full client's
    start-up), nor the standard library's slower modules (pathlib, tomllib for a
    config that names no socket, socket's enum classes, typing, json with the re and
    enum it imports): a few ms each, of a call's 16 ms."""
    svc = drained_service(tmp_path)
    try:
        heavy = ("pydantic", "rich", "textual", "skyops_tui.policy.grid", "pathlib", "tomllib",
                 "socket", "typing", "json", "re", "enum")  # fmt: skip
        # -S: no site-packages, whose .pth hooks (an editable install's finder) import
        # pathlib and typing themselves; the tree comes from the cwd, the rest from the
        # standard library alone, so a hand-over to the full client would fail here.
        assert submitted_in_process(svc, heavy, "-S") == "0 []"
    finally:
        svc.stop()


def test_with_no_leader_the_owner_submits_through_the_full_client(tmp_path):
    (tmp_path / "config.toml").write_text(one_local_node_config("lean"))
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "data"), "SKYOPS_USER": "ops"}
    base = [sys.executable, "-m", "skyops_tui", "--config", str(tmp_path / "config.toml"),
            "--db", str(tmp_path / "state.db")]  # fmt: skip
    r = subprocess.run([*base, "submit", "--mode", "priority", "--hours", "1", "--json", "--",
                        "true"], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    (job,) = json.loads(r.stdout)["jobs"]
    assert job["name"] == f"true-{job['id']}"


def test_a_config_that_names_the_socket_sends_the_lean_client_there(tmp_path):
    """`[cluster] api_socket` moves the socket away from the state file; the lean client
    reads the config for it (and only then parses it) and reaches the leader there."""
    sock = tmp_path / "elsewhere" / "api.sock"
    sock.parent.mkdir()
    config = one_local_node_config("lean").replace(
        "[cluster]\n", f'[cluster]\napi_socket = "{sock}"\n', 1
    )
    svc = Leader(tmp_path, config)
    svc.start()
    try:
        assert sock.exists() and not (tmp_path / "state.sock").exists()
        assert submitted_in_process(svc, ("skyops_tui.cli.main", "tomllib")) == "0 ['tomllib']"
    finally:
        svc.stop()
