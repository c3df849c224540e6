"""asyncssh, loaded without the two pieces a console never uses, which cost a leader
4.3 MB of its memory (docs/benchmarks.md §14):

- OpenSSL's libcrypto through `_hashlib`. asyncssh's ciphers, keys and key exchange are
  `cryptography`'s, which carries its own OpenSSL; Python's `hashlib` and `hmac` serve
  it only SHA-1/SHA-2 and MD5 digests (fingerprints, the exchange hash, MACs of the
  ciphers that are not AEAD), which Python also builds in. Hidden while asyncssh loads,
  `hashlib` takes its built-in ones (3.6 MB). Only where nothing imported `hashlib`
  first: then it is shared and kept as it is.
- asyncssh's X.509 support, which imports `cryptography.x509` and then needs pyOpenSSL.
  Where pyOpenSSL is not installed, asyncssh has no X.509 either way; hidden, it does
  not load `cryptography.x509` first to find that out (0.7 MB).

Every user of asyncssh in Skyops imports it from here.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType
from typing import TYPE_CHECKING


def _load() -> ModuleType:
    if "asyncssh" in sys.modules:
        return sys.modules["asyncssh"]
    hidden = []
    if "hashlib" not in sys.modules:
        hidden.append("_hashlib")
    if importlib.util.find_spec("OpenSSL") is None:
        hidden.append("asyncssh.crypto.x509")
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # None: ImportError
    try:
        import asyncssh as module
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]
    return module


if TYPE_CHECKING:
    import asyncssh
else:
    asyncssh = _load()

__all__ = ["asyncssh"]
