"""A job's checkpoint directory: list it, pack it, unpack it on another box.

Packing makes a gzip'd tar of regular files and folders (links and devices are left out),
bounded in size so a huge directory is refused instead of filling the link. Unpacking
accepts only regular files and folders under the target, keeps the files' mtimes (the
scheduler reads checkpoint recency from them) and swaps the new folder in by rename.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import zlib
from typing import Any

from skyops_agent import protocol
from skyops_agent.protocol import ProtocolError

UNPACK_MAX_TOTAL_BYTES = 16 * 1024**3  # what an archive may expand to ([cluster] unpack_max_bytes)
UNPACK_MAX_RATIO = 200.0  # expanded / packed size ([cluster] unpack_max_ratio)
RATIO_FREE_BYTES = 1024 * 1024  # archives expanding to less are never refused for ratio


def _walk(root: str):
    """(relative path, absolute path, lstat) of folders and regular files, sorted, no links."""
    for current, dirs, files in os.walk(root):
        dirs.sort()
        for name in list(dirs) + sorted(files):
            path = os.path.join(current, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode):
                yield os.path.relpath(path, root), path, st


def newest_mtime(root: str) -> float | None:
    newest = None
    for _, _, st in _walk(root):
        if stat.S_ISREG(st.st_mode) and (newest is None or st.st_mtime > newest):
            newest = st.st_mtime
    return newest


def describe(root: str) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    for rel, _, st in _walk(root):
        if stat.S_ISREG(st.st_mode):
            files.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
    return {
        "checkpoint_dir": root,
        "exists": os.path.isdir(root),
        "files": files,
        "total_bytes": sum(f["size"] for f in files),
        "newest_mtime": max((f["mtime"] for f in files), default=None),
    }


class _TooLarge(Exception):
    pass


class _BoundedBuffer(io.RawIOBase):
    def __init__(self, limit: int) -> None:
        self.buffer = io.BytesIO()
        self.limit = limit

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # type: ignore[override]
        if self.buffer.tell() + len(data) > self.limit:
            raise _TooLarge()
        return self.buffer.write(data)


def pack(root: str, max_bytes: int) -> dict[str, Any]:
    if not os.path.isdir(root):
        raise ProtocolError(protocol.E_BAD_FIELD, f"checkpoint dir {root} does not exist")
    sink = _BoundedBuffer(max_bytes)
    count = 0
    owner = os.stat(root).st_uid
    try:
        with tarfile.open(fileobj=sink, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            for rel, path, st in _walk(root):
                if st.st_uid != owner:
                    continue  # another user's file (a hard link planted there): not shipped
                tar.add(path, arcname=rel, recursive=False)
                count += stat.S_ISREG(st.st_mode)
    except _TooLarge:
        raise ProtocolError(
            protocol.E_TOO_LARGE,
            f"checkpoint dir {root} packs to more than {max_bytes} bytes; use a shared "
            "filesystem for checkpoints this large",
        ) from None
    raw = sink.buffer.getvalue()
    return {
        "checkpoint_dir": root,
        "data": base64.b64encode(raw).decode("ascii"),
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "files": count,
        "newest_mtime": newest_mtime(root),
    }


def _bad(message: str) -> ProtocolError:
    return ProtocolError(protocol.E_BAD_FIELD, f"checkpoint data: {message}")


def _safe_members(
    tar: tarfile.TarFile, packed: int, max_bytes: int, max_ratio: float
) -> list[tarfile.TarInfo]:
    members = tar.getmembers()
    total = 0
    for member in members:
        parts = member.name.replace("\\", "/").split("/")
        if member.name.startswith("/") or ".." in parts or not member.name:
            raise _bad(f"refusing path {member.name!r} outside the checkpoint dir")
        if not (member.isfile() or member.isdir()):
            raise _bad(f"refusing {member.name!r}: only regular files and folders are unpacked")
        total += member.size
    if total > max_bytes:
        raise _bad(f"archive expands to {total} bytes, more than the {max_bytes} allowed")
    if total > RATIO_FREE_BYTES and total > max_ratio * max(packed, 1):
        raise _bad(
            f"archive of {packed} bytes expands {total // max(packed, 1)} times, "
            f"more than the {max_ratio:g} allowed"
        )
    return members


def unpack(
    root: str,
    data: str,
    max_bytes: int = UNPACK_MAX_TOTAL_BYTES,
    max_ratio: float = UNPACK_MAX_RATIO,
) -> dict[str, Any]:
    """Replace ``root`` with the archive's content; on any error ``root`` is untouched."""
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _bad("not valid base64") from None
    parent = os.path.dirname(root.rstrip("/")) or "/"
    os.makedirs(parent, exist_ok=True)
    staging = os.path.join(parent, f".{os.path.basename(root)}.unpack-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging)
    files = 0
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
            members = _safe_members(tar, len(raw), max_bytes, max_ratio)
            for member in members:
                target = os.path.join(staging, member.name)
                if member.isdir():
                    os.makedirs(target, exist_ok=True)
                    continue
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None  # _safe_members passes only folders and regular files
                with open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.utime(target, (member.mtime, member.mtime))
                files += 1
        old = None
        if os.path.exists(root):
            old = staging + ".old"
            os.replace(root, old)
        os.replace(staging, root)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile):
        shutil.rmtree(staging, ignore_errors=True)
        raise _bad("not a gzip'd tar archive") from None
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise ProtocolError(
            protocol.E_BAD_FIELD, f"cannot unpack into {root}: {exc.strerror or exc}"
        ) from None
    except ProtocolError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {"checkpoint_dir": root, "files": files, "newest_mtime": newest_mtime(root)}
