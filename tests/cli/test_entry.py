"""What the full client loads (skyops_tui/cli/entry.py): pydantic's search for plugins
through importlib.metadata is left out where no installed distribution declares one,
and a plugin that is installed still runs. Each case is a fresh interpreter importing
what `skyops serve` imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SERVE = """
import json, sys
import skyops_tui.cli.entry as entry
entry.lean_imports()
import skyops_tui.cli.main, skyops_tui.cli.console, skyops_tui.runtime, skyops_tui.api.server
import skyops_tui.fleet.executor, skyops_tui.control.commands
from skyops_tui.domain.config import parse_config
from skyops_tui.domain.errors import InputError
try:
    parse_config({"cluster": {"nodes": "many"}}, "grid.toml")
    refused = None
except InputError as e:
    refused = str(e)
print(json.dumps({
    "metadata": "importlib.metadata" in sys.modules,
    "refused": refused,
    "seen": sorted(getattr(sys.modules.get("skyplug"), "SEEN", [])),
}))
"""

PLUGIN = """
SEEN = []


class Plugin:
    def new_schema_validator(self, schema, schema_type, path, kind, config, settings):
        SEEN.append(getattr(schema_type, "__name__", str(schema_type)))
        return None, None, None


plugin = Plugin()
"""


def serve_imports(*path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (*path, ROOT, ROOT / "agent")))}
    env.pop("PYDANTIC_DISABLE_PLUGINS", None)
    out = subprocess.run(
        [sys.executable, "-c", SERVE], env=env, cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def test_a_leader_without_pydantic_plugins_loads_no_package_metadata_and_still_validates():
    got = serve_imports()
    assert got["metadata"] is False
    assert got["refused"] is not None and "grid.toml" in got["refused"]
    assert "nodes" in got["refused"]


def test_a_pydantic_plugin_installed_beside_skyops_still_sees_its_models(tmp_path: Path):
    dist = tmp_path / "skyplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: skyplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[pydantic]\nskyplug = skyplug:plugin\n")
    (tmp_path / "skyplug.py").write_text(PLUGIN)
    got = serve_imports(tmp_path)
    assert got["metadata"] is True
    assert {"Config", "JobSpec", "Submit"} <= set(got["seen"])
    assert got["refused"] is not None and "grid.toml" in got["refused"]
