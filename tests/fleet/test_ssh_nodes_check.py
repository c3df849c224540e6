"""`skyops nodes check` (SCENARIOS.md story 2): two boxes in config.toml, one whose host
key is unknown. The check refuses it with the fingerprint and the trust command; once
trusted, its agent is pushed and the table shows its GPUs."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys

import asyncssh
from rich.console import Console

from skyops_tui.cli.nodes import (
    AGENT_ERROR,
    AUTH_FAILED,
    HOST_KEY_REFUSED,
    OK,
    UNREACHABLE,
    check_nodes,
    run_nodes_check,
)
from skyops_tui.domain.config import Config, parse_config

from .sshd import Box, free_port

TYPES = [
    {"name": "H100", "rate": 2.5},
    {"name": "A100", "rate": 1.6},
    {"name": "L40S", "rate": 0.9},
]


def config(*nodes) -> Config:
    data = [n.model_dump(exclude_none=True) if hasattr(n, "model_dump") else n for n in nodes]
    return parse_config({"node_types": TYPES, "nodes": data}, "nodes check test")


def run(
    cfg: Config, known_hosts: str, *, as_json: bool = False, terminal: bool = False, ssh_config: str
):
    out = io.StringIO()
    console = Console(file=out, width=240, force_terminal=terminal, color_system=None)
    code = run_nodes_check(
        cfg, known_hosts, console, as_json=as_json, ssh_config=ssh_config, timeout_s=20
    )
    return code, out.getvalue()


def row(text: str, node: str) -> str:
    """The table row of `node`, its cells' padding squeezed."""
    line = next(x for x in text.splitlines() if re.match(rf"[│|┃ ]*{node} ", x))
    return re.sub(r"\s*[│┃|]\s*", " | ", line).strip(" |")


def test_one_trusted_one_unknown_box_then_trusting_it(asyncssh_boxes):
    alpha, beta = asyncssh_boxes("alpha"), asyncssh_boxes("beta")
    known_hosts = alpha.known_hosts("trusted")  # knows alpha only
    cfg = config(
        alpha.node("alpha", fake_gpus="2xH100-80GB"), beta.node("beta", fake_gpus="4xA100-80GB")
    )

    code, text = run(cfg, known_hosts, ssh_config=alpha.ssh_config)
    assert code == 1
    assert row(text, "alpha") == (
        f"alpha | {alpha.user}@127.0.0.1:{alpha.port} | ok | pushed | 2 x NVIDIA H100 80GB FAKE"
    )
    assert row(text, "beta") == (
        f"beta | {beta.user}@127.0.0.1:{beta.port} | host key refused | - | -"
    )
    flat = " ".join(text.split())  # the refusal may wrap
    assert beta.fingerprint in flat and "ssh-ed25519" in flat
    trust = f"ssh-keyscan -p {beta.port} 127.0.0.1 >> {known_hosts}"
    assert f"trust it with: {trust}" in flat
    assert "1 of 2 nodes ok" in flat
    assert list((beta.home / ".skyops").glob("*.pyz")) == [], "pushed to an unknown box"

    data = json.loads(run(cfg, known_hosts, as_json=True, ssh_config=alpha.ssh_config)[1])
    assert data["ok"] is False
    a, b = data["nodes"]
    assert (a["node"], a["result"], a["agent"], a["gpu_count"], a["fake"]) == (
        "alpha", OK, "up to date", 2, True
    )  # fmt: skip
    assert a["gpu_summary"] == "2 x NVIDIA H100 80GB FAKE"
    assert (b["node"], b["result"], b["ok"], b["gpu_count"]) == ("beta", HOST_KEY_REFUSED, False, 0)
    assert b["fingerprint"] == beta.fingerprint and b["trust_command"] == trust

    # The operator checks the fingerprint and runs the command the refusal gave.
    subprocess.run(trust, shell=True, check=True, capture_output=True)
    code, text = run(cfg, known_hosts, terminal=True, ssh_config=alpha.ssh_config)
    assert code == 0, text
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert row(plain, "alpha").endswith("| ok | up to date | 2 x NVIDIA H100 80GB FAKE")
    assert row(plain, "beta").endswith("| ok | pushed | 4 x NVIDIA A100 80GB FAKE")
    assert "2 of 2 nodes ok" in plain


async def test_each_way_a_node_fails_has_its_own_result(asyncssh_box: Box, tmp_path):
    box = asyncssh_box
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    stranger.write_private_key(str(tmp_path / "stranger_key"))
    cfg = config(
        box.node("good"),
        box.node("real", fake_gpus=None),  # real GPUs: NVML on this machine, or none
        box.node("closed", port=free_port()),
        box.node("nokey", identity=str(tmp_path / "stranger_key")),
        box.node("nofile", identity=str(tmp_path / "missing_key")),
        box.node("nopython", python="python9-nope"),
        {"name": "here", "fake_gpus": "1xL40S-48GB", "local": True},
    )
    seen: list[str] = []
    results = await check_nodes(
        cfg, box.known_hosts(), box.ssh_config, timeout_s=20, on_done=lambda r: seen.append(r.node)
    )
    by = {r.node: r for r in results}
    assert [r.node for r in results] == [n.name for n in cfg.all_nodes()]
    assert sorted(seen) == sorted(by)

    assert by["good"].result == OK and by["good"].fake
    real = by["real"]
    assert real.result == OK and not real.fake
    assert real.gpus or real.gpu_message.startswith("no NVIDIA driver"), real
    if not real.gpus:
        assert real.gpu_summary() == real.gpu_message and real.hint.startswith("HINT:")
    assert by["closed"].result == UNREACHABLE and by["closed"].agent == ""
    assert by["nokey"].result == AUTH_FAILED
    assert by["nofile"].result == AUTH_FAILED and "does not exist" in by["nofile"].detail
    nopython = by["nopython"]
    assert nopython.result == AGENT_ERROR and "python9-nope" in nopython.detail, nopython.detail
    here = by["here"]
    assert (here.result, here.agent, here.address, here.gpu_summary()) == (
        OK, "local", "local", "1 x NVIDIA L40S 48GB FAKE"
    )  # fmt: skip


def test_no_nodes_is_not_ok(tmp_path):
    code, text = run(config(), str(tmp_path / "kh"), ssh_config=str(tmp_path / "none"))
    assert code == 1 and "nothing to check" in text


def test_the_check_prints_no_traceback_on_stderr(asyncssh_box, tmp_path):
    """Run as a user would: a separate process, a refused and an unreachable node."""
    script = (
        "import sys\n"
        "from rich.console import Console\n"
        "from skyops_tui.cli.nodes import run_nodes_check\n"
        "from skyops_tui.domain.config import load_config\n"
        "sys.exit(run_nodes_check(load_config(sys.argv[1]), sys.argv[2], Console(width=200),"
        " ssh_config=sys.argv[3], timeout_s=10))\n"
    )
    toml = tmp_path / "config.toml"
    toml.write_text(
        '[[node_types]]\nname = "H100"\nrate = 2.5\n'
        f'[[nodes]]\nname = "a"\nhost = "127.0.0.1"\nport = {asyncssh_box.port}\n'
        f'user = "{asyncssh_box.user}"\nidentity = "{asyncssh_box.identity}"\n'
        f'python = "{sys.executable}"\nfake_gpus = "1xH100-80GB"\n'
        f'[[nodes]]\nname = "b"\nhost = "127.0.0.1"\nport = {free_port()}\nfake_gpus = "1xH100-80GB"\n'
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(toml), asyncssh_box.known_hosts("empty"),
         asyncssh_box.ssh_config],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert "host key refused" in proc.stdout and "unreachable" in proc.stdout
