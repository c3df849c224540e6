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
    from .main import main as full

    return full(args)
