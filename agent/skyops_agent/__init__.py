"""Skyops agent: runs on every GPU box, speaks the JSON-lines protocol over stdio.

Stdlib only (pynvml optional) so it runs on any box with ``python3`` >= 3.9.
"""

from __future__ import annotations

__version__ = "0.1.0"
