"""Where the state and the config live: XDG directories, and the SKYOPS_* overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from skyops_tui import locations


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "SKYOPS_DB", "SKYOPS_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_defaults_follow_the_xdg_base_directories(home):
    assert locations.data_dir() == home / ".local/share/skyops"
    assert locations.db_path() == home / ".local/share/skyops/skyops.db"
    assert locations.demo_db_path() == home / ".local/share/skyops/demo.db"
    assert locations.config_dir() == home / ".config/skyops"
    assert locations.config_path() == home / ".config/skyops/config.toml"


def test_xdg_variables_move_the_directories(home, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    assert locations.db_path() == tmp_path / "data/skyops/skyops.db"
    assert locations.demo_db_path() == tmp_path / "data/skyops/demo.db"
    assert locations.config_path() == tmp_path / "conf/skyops/config.toml"


def test_relative_xdg_paths_are_ignored_as_the_spec_says(home, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    assert locations.data_dir() == home / ".local/share/skyops"
    assert locations.config_dir() == home / ".config/skyops"


def test_skyops_variables_override_the_files(home, monkeypatch, tmp_path):
    monkeypatch.setenv("SKYOPS_DB", str(tmp_path / "elsewhere.db"))
    monkeypatch.setenv("SKYOPS_CONFIG", "~/grid.toml")
    assert locations.db_path() == tmp_path / "elsewhere.db"
    assert locations.config_path() == Path(str(home)) / "grid.toml"
    assert locations.demo_db_path() == tmp_path / "elsewhere.db"  # the demo's too (README)
