"""Where Skyops keeps its files, in one place (XDG base directories).

State lives under `$XDG_DATA_HOME/skyops` (default `~/.local/share/skyops`), the config
under `$XDG_CONFIG_HOME/skyops` (default `~/.config/skyops`). `SKYOPS_DB` and
`SKYOPS_CONFIG` override the two files; the tests use them. Each function reads the
environment when called, so a test can change it without reloading this module.

The rules are written on plain strings (`*_file`), which the lean submit client
(cli/lean.py) uses without importing pathlib (3 ms of a shell loop's call); the
`Path` functions wrap them for everyone else.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself costs the lean client 2 ms
if TYPE_CHECKING:
    from pathlib import Path

APP = "skyops"


def _xdg(var: str, default: str) -> str:
    # The XDG spec says relative paths in these variables are invalid and to be ignored.
    value = os.environ.get(var, "")
    if value and os.path.isabs(value):
        return value
    return os.path.join(os.path.expanduser("~"), default)


def _override(var: str) -> str | None:
    value = os.environ.get(var, "")
    return os.path.expanduser(value) if value else None


def _path(value: str) -> Path:
    from pathlib import Path

    return Path(value)


def db_file() -> str:
    """The state database: `SKYOPS_DB`, else `<data>/skyops.db`."""
    return _override("SKYOPS_DB") or os.path.join(
        _xdg("XDG_DATA_HOME", ".local/share"), APP, "skyops.db"
    )


def demo_db_file() -> str:
    """The embedded demo grid's database: `SKYOPS_DB` as README says, else `<data>/demo.db`,
    apart from a real grid's `skyops.db` in the same folder."""
    return _override("SKYOPS_DB") or os.path.join(
        _xdg("XDG_DATA_HOME", ".local/share"), APP, "demo.db"
    )


def data_dir() -> Path:
    return _path(os.path.join(_xdg("XDG_DATA_HOME", ".local/share"), APP))


def config_dir() -> Path:
    return _path(os.path.join(_xdg("XDG_CONFIG_HOME", ".config"), APP))


def db_path() -> Path:
    return _path(db_file())


def demo_db_path() -> Path:
    return _path(demo_db_file())


def config_path() -> Path:
    """The cluster config: `SKYOPS_CONFIG`, else `<config>/config.toml`."""
    given = _override("SKYOPS_CONFIG")
    return _path(given) if given else config_dir() / "config.toml"
