"""The shim's wait phase as a small C program (shim_wait.c), built on the box.

A Python shim cannot get below a bare interpreter's 8 MB RSS, and it waits out its job's
whole life; `skyops-shim-wait` does the same wait in about 1 MB (docs/fleet.md, "Memory
per job"). The agent ships the C source, not a binary (boxes differ in libc and
architecture), and compiles it with the box's `cc` the first time a job needs it, into
``state/shim/wait-<sha256[:16] of the source>/``: a changed source gets a new binary, and
an older agent's shims keep theirs. Where there is no compiler or the build fails, shims
wait in Python as before.

Stdlib only and Python 3.9 compatible, as the rest of the agent; the shim never imports
this module.
"""

from __future__ import annotations

import hashlib
import os
import pkgutil
import shutil
import subprocess
import sys
from typing import Callable

SOURCE = "shim_wait.c"
BINARY = "skyops-shim-wait"
CFLAGS = ("-O2", "-Wall", "-Wextra")
BUILD_TIMEOUT_S = 120.0


def source() -> bytes:
    """The C source from this copy of the agent: its package folder or its zipapp."""
    data = pkgutil.get_data("skyops_agent", SOURCE)
    if data is None:
        raise OSError(f"{SOURCE} is missing from the agent package")
    return data


def say(line: str) -> None:
    """The agent's stderr (its log), one line."""
    print(line, file=sys.stderr, flush=True)


def build(
    state_dir: str,
    code: bytes | None = None,
    compiler: str = "cc",
    log: Callable[[str], None] = say,
) -> str | None:
    """The path of the built waiter, compiling it if this source has none yet; None (and
    one line to `log`) when it cannot be built. Agents racing on one state dir are safe:
    each compiles to its own temporary name and renames it into place."""
    try:
        code = source() if code is None else code
    except OSError as exc:
        log(f"skyops-agent: cannot read {SOURCE} ({exc}); job shims wait in Python")
        return None
    folder = os.path.join(state_dir, "shim", "wait-" + hashlib.sha256(code).hexdigest()[:16])
    binary = os.path.join(folder, BINARY)
    if os.access(binary, os.X_OK):
        return binary
    cc = shutil.which(compiler)
    if cc is None:
        log(
            f"skyops-agent: no C compiler ({compiler!r}) to build {BINARY}; job shims wait in Python"
        )
        return None
    tmp = f"{binary}.tmp.{os.getpid()}"
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        done = subprocess.run(
            [cc, *CFLAGS, "-x", "c", "-o", tmp, "-"],
            input=code,
            capture_output=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            errors = done.stderr.decode(errors="replace").strip().splitlines()
            first = next((ln for ln in errors if "error" in ln), errors[0] if errors else "")
            why = f"{compiler} exit status {done.returncode}" + (f": {first}" if first else "")
            log(f"skyops-agent: cannot build {BINARY} ({why}); job shims wait in Python")
            return None
        os.chmod(tmp, 0o700)
        os.replace(tmp, binary)
    except (OSError, subprocess.SubprocessError) as exc:
        log(f"skyops-agent: cannot build {BINARY} ({exc}); job shims wait in Python")
        return None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return binary
