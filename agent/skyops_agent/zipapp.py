"""Package the agent as one file the console pushes to each box: ``python3 agent.pyz ...``.

The archive is deterministic (sorted entries, fixed timestamps and permissions), so its
sha256 names its content: the console compares it with the box's copy to know when that
copy is stale. pynvml.py from the installed nvidia-ml-py rides along when available.
"""

from __future__ import annotations

import importlib.util
import io
import os
import zipapp
import zipfile

ZIPAPP_NAME = "skyops-agent.pyz"
INTERPRETER = "/usr/bin/env python3"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_MAIN = b"""import sys

from skyops_agent.__main__ import main

sys.exit(main())
"""


def running_zipapp() -> str | None:
    """The .pyz this agent runs from, or None when it runs from a plain package."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return root if os.path.isfile(root) else None


def unpack_for_shims(state_dir: str) -> str | None:
    """Where shims import this agent from when it runs from a .pyz: its package unpacked
    under the state dir (once per zipapp content) and compiled for this interpreter.

    A zipapp holds no bytecode, so each shim started from it would compile the package,
    and what that leaves behind keeps the shim 2.2 MB bigger (private memory) for its
    job's whole life (docs/fleet.md, "Memory per job"). None when the agent is no zipapp, or the copy
    cannot be made (the shim then runs from the .pyz itself).
    """
    pyz = running_zipapp()
    if pyz is None:
        return None
    root = os.path.join(state_dir, "shim", file_sha256(pyz)[:16])
    if os.path.isdir(root):
        return root
    import py_compile
    import shutil

    tmp = f"{root}.tmp.{os.getpid()}"
    try:
        with zipfile.ZipFile(pyz) as zf:
            for name in zf.namelist():
                if name.startswith("skyops_agent/") and name.endswith(".py"):
                    path = os.path.join(tmp, *name.split("/"))
                    os.makedirs(os.path.dirname(path), exist_ok=True)
                    with open(path, "wb") as f:
                        f.write(zf.read(name))
                    py_compile.compile(path, doraise=True)
        os.rename(tmp, root)
    except (OSError, zipfile.BadZipFile, py_compile.PyCompileError):
        shutil.rmtree(tmp, ignore_errors=True)
        return root if os.path.isdir(root) else None  # another agent may have made it
    return root


def _sources(include_pynvml: bool) -> dict[str, bytes]:
    package = os.path.dirname(os.path.abspath(__file__))
    if os.path.isfile(os.path.dirname(package)):
        raise RuntimeError("build the zipapp from an installed or checked-out skyops_agent")
    files: dict[str, bytes] = {"__main__.py": _MAIN}
    for current, dirs, names in os.walk(package):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in names:
            if name.endswith((".py", ".c")):  # .c: the shim's waiter (shim_wait.py)
                path = os.path.join(current, name)
                arcname = "skyops_agent/" + os.path.relpath(path, package).replace(os.sep, "/")
                with open(path, "rb") as f:
                    files[arcname] = f.read()
    if include_pynvml:
        spec = importlib.util.find_spec("pynvml")
        origin = spec.origin if spec else None
        if origin and origin.endswith(".py") and os.path.isfile(origin):
            with open(origin, "rb") as f:
                files["pynvml.py"] = f.read()
    return files


def build_zipapp(dest_dir: str, include_pynvml: bool = True) -> tuple[str, str]:
    """Write ``dest_dir/skyops-agent.pyz``; return its path and sha256 (hex)."""
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for arcname, data in sorted(_sources(include_pynvml).items()):
            info = zipfile.ZipInfo(arcname, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compresslevel=9)
    archive.seek(0)
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, ZIPAPP_NAME)
    tmp = f"{path}.tmp.{os.getpid()}"
    zipapp.create_archive(archive, tmp, interpreter=INTERPRETER)  # adds the shebang line
    os.replace(tmp, path)
    return path, file_sha256(path)


def file_sha256(path: str) -> str:
    # Imported here: a console that loads this module imports asyncssh after it, and
    # asyncssh is lighter loaded with no `hashlib` before it (skyops_tui/fleet/sshlib.py).
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
