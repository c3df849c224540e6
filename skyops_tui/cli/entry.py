"""The `skyops` command's entry: a submission goes to the lean client first.

`skyops submit` is called from shell loops, where the client's start-up is the cost
of every job; `cli/lean.py` sends the common submission with the standard library
alone and hands anything else back. Every other command starts the full client.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence

# pydantic's plugin loader, which this module may stand in for (pydantic_without_metadata).
PLUGIN_LOADER = "pydantic.plugin._loader"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "submit" in args:
        from .lean import submit

        code = submit(args)
        if code is not None:
            return code
    lean_imports()
    from .main import main as full

    return full(args)


def lean_imports() -> None:
    """What the full client loads, without what it never uses (docs/architecture.md)."""
    asyncio_without_tls()
    pydantic_without_metadata()


def asyncio_without_tls() -> None:
    """asyncio imports ssl, which maps OpenSSL (libcrypto and libssl, about 3.4 MB of a
    leader's memory) for TLS that Skyops never speaks: its API is a Unix socket, agents
    talk over pipes or SSH (asyncssh brings its own cryptography). So the full client
    imports asyncio with ssl hidden, which asyncio takes for a Python built without it
    (its `import ssl` is in a try); `import ssl` afterwards works as usual."""
    if "asyncio" in sys.modules or "ssl" in sys.modules:
        return
    sys.modules["ssl"] = None  # type: ignore[assignment]  # None: ImportError
    try:
        import asyncio  # noqa: F401
    finally:
        del sys.modules["ssl"]


def pydantic_without_metadata() -> None:
    """pydantic looks for plugins among the entry points of every installed distribution
    the first time it builds a model, through importlib.metadata, which loads email,
    csv, zipfile and some 25 modules more: 1.2-2.2 MB of a leader's memory, for plugins
    Skyops has none of. Where no distribution on the path declares a pydantic plugin
    (its entry_points.txt has a `[pydantic]` group), pydantic's loader is stood in for
    by one that has none to give; where one does, pydantic loads its plugins as usual."""
    if "pydantic" in sys.modules or PLUGIN_LOADER in sys.modules or _declares_pydantic_plugin():
        return
    loader = types.ModuleType(PLUGIN_LOADER, "No pydantic plugin is installed (cli/entry.py).")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # get_plugins() -> ()
    sys.modules[PLUGIN_LOADER] = loader


def _declares_pydantic_plugin() -> bool:
    """Whether an installed distribution may declare a pydantic plugin, read where
    importlib.metadata reads it: each `*.dist-info` or `*.egg-info` folder's
    entry_points.txt in a folder on sys.path. A zip on the path is not read: it may
    declare one."""
    for entry in sys.path:
        folder = entry or "."
        try:
            names = os.listdir(folder)
        except NotADirectoryError:
            return True
        except OSError:
            continue
        for name in names:
            if not name.endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(folder, name, "entry_points.txt"), encoding="utf-8") as f:
                    if any(line.strip() == "[pydantic]" for line in f):
                        return True
            except (OSError, UnicodeDecodeError):
                continue
    return False
