"""Crash-safe file writes: write a temporary file, fsync it, rename it over the target.

A reader (or a process restarted after a crash) sees either the old file or the new one,
never a half-written one.

File mode: a written file gets the mode any file the user creates gets, 0666 minus the process
umask (0644 under the usual umask 022): a workspace shared on purpose on a shared server can be
read by the others, and a user who wants private workspaces sets umask 077. (The temporary
files would otherwise keep ``mkstemp``'s 0600.)
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import numpy as np


def _read_umask() -> int:
    """The process umask, read without changing it where Linux shows it (``os.umask`` sets it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some filesystems do not allow opening a directory
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _replacing(path: Path) -> Iterator[str]:
    """A temporary file name next to ``path``: after the block it is fsynced and renamed over
    ``path``; if the block fails it is removed and ``path`` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp_name, FILE_MODE)
        yield tmp_name
        with open(tmp_name, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    with _replacing(path) as tmp_name, open(tmp_name, "wb") as handle:
        write(handle)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=False) + "\n")


def atomic_write_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    return atomic_write(path, lambda handle: np.save(handle, np.ascontiguousarray(array), allow_pickle=False))


def atomic_write_npy_rows(
    path: str | os.PathLike, shape: tuple[int, ...], dtype, fill: Callable[[np.ndarray], None]
) -> Path:
    """Write a .npy too large to build in memory: ``fill(array)`` writes into a memory-mapped
    temporary file, which is then renamed into place like any atomic write."""
    path = Path(path)
    with _replacing(path) as tmp_name:
        target = np.lib.format.open_memmap(tmp_name, mode="w+", dtype=dtype, shape=tuple(shape))
        fill(target)
        target.flush()
        del target
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 4 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(4 * 2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def find_by_sha256(
    wanted: str, folders: Iterable[Path], suffixes: Sequence[str], first: Iterable[Path] = ()
) -> Path | None:
    """The first file with SHA-256 ``wanted``: among ``first``, then files with ``suffixes`` in ``folders``."""
    candidates = list(first)
    for folder in folders:
        if Path(folder).is_dir():
            candidates += sorted(p for p in Path(folder).iterdir() if p.suffix in suffixes)
    return next((c for c in candidates if c.is_file() and sha256_file(c) == wanted), None)
