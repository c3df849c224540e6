"""Where Skyops keeps its files, in one place (XDG base directories).

State lives under `$XDG_DATA_HOME/skyops` (default `~/.local/share/skyops`), the config
under `$XDG_CONFIG_HOME/skyops` (default `~/.config/skyops`). `SKYOPS_DB` and
`SKYOPS_CONFIG` override the two files; the tests use them. Each function reads the
environment when called, so a test can change it without reloading this module.
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "skyops"


def _xdg(var: str, default: str) -> Path:
    # The XDG spec says relative paths in these variables are invalid and to be ignored.
    value = os.environ.get(var, "")
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / default


def _override(var: str) -> Path | None:
    value = os.environ.get(var, "")
    return Path(value).expanduser() if value else None


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / APP


def db_path() -> Path:
    """The state database: `SKYOPS_DB`, else `<data>/skyops.db`."""
    return _override("SKYOPS_DB") or data_dir() / "skyops.db"


def demo_db_path() -> Path:
    """The embedded demo grid's database: `SKYOPS_DB` as README says, else `<data>/demo.db`,
    apart from a real grid's `skyops.db` in the same folder."""
    return _override("SKYOPS_DB") or data_dir() / "demo.db"


def config_path() -> Path:
    """The cluster config: `SKYOPS_CONFIG`, else `<config>/config.toml`."""
    return _override("SKYOPS_CONFIG") or config_dir() / "config.toml"
