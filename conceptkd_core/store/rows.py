"""Reading a big matrix chunk by chunk without keeping it mapped into the process.

A workspace's concept matrix is a memory-mapped .npy (1.1 GB at a million images). Slicing
the map pulls every page it touches into this process's resident memory, where it stays;
streaming passes (validation, Gram build, base scores) read each chunk with a plain file read
instead, so they need one chunk of memory, not the file's size.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator

import numpy as np

DEFAULT_CHUNK_ROWS = 32768


def read_rows(X: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``X`` as an ordinary array (a file read for a top-level memory map)."""
    start, stop = max(0, start), min(stop, X.shape[0])
    top_level_map = isinstance(X, np.memmap) and isinstance(X.base, mmap.mmap) and X.flags.c_contiguous
    if not top_level_map or stop <= start:
        return np.asarray(X[start:stop])
    row_items = int(np.prod(X.shape[1:], dtype=np.int64))
    with open(X.filename, "rb") as handle:
        handle.seek(X.offset + start * row_items * X.dtype.itemsize)
        data = np.fromfile(handle, dtype=X.dtype, count=(stop - start) * row_items)
    return data.reshape((stop - start,) + X.shape[1:])


def row_chunks(X: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(start, rows) for consecutive chunks of ``X``."""
    for start in range(0, X.shape[0], chunk_rows):
        yield start, read_rows(X, start, start + chunk_rows)
