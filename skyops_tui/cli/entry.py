"""The `skyops` command's entry: a submission goes to the lean client first.

`skyops submit` is called from shell loops, where the client's start-up is the cost
of every job; `cli/lean.py` sends the common submission with the standard library
alone and hands anything else back. Every other command starts the full client.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "submit" in args:
        from .lean import submit

        code = submit(args)
        if code is not None:
            return code
    asyncio_without_tls()
    from .main import main as full

    return full(args)


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
