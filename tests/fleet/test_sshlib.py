"""asyncssh as a leader loads it (skyops_tui/fleet/sshlib.py): without OpenSSL's
libcrypto behind `hashlib`, and without `cryptography.x509` where pyOpenSSL is not
there to make X.509 work. Checked in a fresh interpreter that imports what `skyops
serve` imports for a grid of SSH nodes; tests/fleet/test_ssh.py and test_serve_ssh.py
drive real sshd sessions through the same loaded library."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVE_SSH = """
import json, sys
import skyops_tui.cli.entry as entry
entry.asyncio_without_tls()
import skyops_tui.cli.main, skyops_tui.cli.console, skyops_tui.runtime, skyops_tui.api.server
import skyops_tui.fleet.executor, skyops_tui.fleet.ssh, skyops_tui.cli.nodes
from skyops_tui.fleet.sshlib import asyncssh
import hashlib, hmac
mac = hmac.new(b"key", b"the exchange", hashlib.sha256).hexdigest()
print(json.dumps({
    "loaded": sorted(m for m in ("_hashlib", "cryptography.x509") if m in sys.modules),
    "sha256": hashlib.sha256(b"abc").hexdigest(),
    "hmac": mac,
    "x509": hasattr(asyncssh, "import_x509_certificate") and asyncssh.crypto.__dict__.get(
        "X509Certificate") is not None,
}))
"""


def test_a_leader_on_ssh_nodes_loads_neither_libcrypto_for_hashlib_nor_unusable_x509():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "agent")])}
    out = subprocess.run(
        [sys.executable, "-c", SERVE_SSH], env=env, cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    got = json.loads(out)
    with_pyopenssl = importlib.util.find_spec("OpenSSL") is not None
    assert got["loaded"] == (["cryptography.x509"] if with_pyopenssl else [])
    assert got["x509"] is with_pyopenssl
    # The built-in digests asyncssh gets instead give the same answers.
    assert got["sha256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    import hashlib
    import hmac

    assert got["hmac"] == hmac.new(b"key", b"the exchange", hashlib.sha256).hexdigest()
