"""The concept matrix column by column, for the concepts the students use.

A workspace stores its concept matrix row by row (n × m, float16), which suits every streaming
pass. A slider move needs the other direction: a few columns (the concepts whose weights
changed) over all n images. Gathered from the rows, that touches nearly every cache line of the
matrix (1.1 GB at a million images: ~200 ms a move); held column by column it reads 2 bytes per
image and changed concept. ``ConceptColumns`` holds such a copy of the columns the students use,
filled in the streaming pass that computes the base scores (``SharedScores.build``), and shared
read-only by every session. A column it lacks (a concept a move brings in) is read from the
matrix in one streaming pass and kept while the memory budget allows; past the budget it is
read again for each move. The values are the matrix's own and convert exactly to float32, so a
product is the same whichever way its columns were read.
"""

from __future__ import annotations

import threading

import numpy as np

# The most the kept columns may take: 536 concepts of a million images in float16.
COLUMN_BUDGET_BYTES = 1 << 30
GATHER_ROWS = 65536
TRANSPOSE_ROWS = 512


def exact_float32(block: np.ndarray) -> np.ndarray:
    """``block.astype(np.float32)``, exactly; for float16 by moving the bits (numpy's own float16
    conversion is not vectorised: about 2 ns a value, against 0.3 ns here).

    A finite float16 ``(-1)^s · 2^(e-15) · 1.f`` (or a subnormal ``2^-14 · 0.f``) with its exponent
    and fraction shifted 13 bits left reads as the float32 ``(-1)^s · 2^(e-127) · 1.f`` (resp. a
    float32 subnormal); multiplying by 2^112 is then exact. Concept matrices hold no inf or NaN (a
    workspace refuses them), so those codes need no case of their own.
    """
    if block.dtype != np.float16:
        return np.asarray(block, dtype=np.float32)
    bits = np.ascontiguousarray(block).view(np.int16).astype(np.int32)  # the sign extended to bits 16-31
    bits <<= 13
    bits &= np.int32(-0x70002000)  # 0x8FFFE000: the sign bit, exponent and fraction; not the extension
    values = bits.view(np.float32)
    values *= np.float32(2.0**112)
    return values


class ConceptColumns:
    """Columns of ``X`` (n_images, n_concepts) kept contiguous, as stored (no rounding).

    Thread-safe: columns are only ever added, under a lock, and never changed.
    """

    def __init__(self, X: np.ndarray, budget_bytes: int = COLUMN_BUDGET_BYTES):
        self.X = X
        self.budget_bytes = int(budget_bytes)
        self._held: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def column_bytes(self) -> int:
        return self.X.shape[0] * self.X.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return len(self._held) * self.column_bytes

    def __contains__(self, concept: int) -> bool:
        return int(concept) in self._held

    def _room(self, wanted: list[int]) -> list[int]:
        """The first of ``wanted`` that the budget still has room for."""
        free = max(self.budget_bytes - self.nbytes, 0) // max(self.column_bytes, 1)
        return wanted[:free]

    def collector(self, concepts: np.ndarray):
        """A table to fill during a streaming pass the caller makes anyway: ``take(start, rows)`` for
        each chunk of rows, then ``done()`` keeps the columns (within the budget)."""
        concepts = np.asarray(self._room([int(j) for j in concepts if int(j) not in self]), dtype=np.int64)
        table = np.empty((concepts.size, self.X.shape[0]), dtype=self.X.dtype)

        def take(start: int, rows: np.ndarray) -> None:
            for at in range(0, len(rows), TRANSPOSE_ROWS):  # in cache-sized blocks: 2-3x faster than at once
                block = rows[at : at + TRANSPOSE_ROWS, concepts]
                table[:, start + at : start + at + len(block)] = block.T

        def done() -> None:
            self._add(concepts.tolist(), table)

        return take, done

    def keep(self, concepts: np.ndarray) -> None:
        """Read the columns of ``concepts`` not held yet and keep them (as far as the budget goes)."""
        wanted = self._room([int(j) for j in concepts if int(j) not in self])
        if not wanted:
            return
        table = np.empty((len(wanted), self.X.shape[0]), dtype=self.X.dtype)
        for start in range(0, self.X.shape[0], GATHER_ROWS):
            table[:, start : start + GATHER_ROWS] = self._gather(wanted, start, start + GATHER_ROWS).T
        self._add(wanted, table)

    def _add(self, concepts: list[int], table: np.ndarray) -> None:
        """Keep row i of ``table`` as the column of ``concepts[i]``, while the budget allows (another
        session may have added columns since the room was measured)."""
        with self._lock:
            for i, j in enumerate(concepts):
                if j not in self._held and self.nbytes + self.column_bytes <= self.budget_bytes:
                    self._held[j] = table[i]

    def _gather(self, concepts: list[int], start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of a few columns, read from the matrix itself (from a memory map: a cache
        line per row and column, where a streaming read would copy whole rows)."""
        return np.asarray(self.X[start:stop, concepts])

    def block(self, concepts: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of the columns ``concepts`` as float32, shape (len(concepts), stop - start);
        columns not held are read from the matrix."""
        stop = min(stop, self.X.shape[0])
        out = np.empty((len(concepts), stop - start), dtype=self.X.dtype)
        missing = []
        for i, j in enumerate(concepts.tolist()):
            column = self._held.get(j)
            if column is None:
                missing.append(i)
            else:
                out[i] = column[start:stop]
        if missing:
            out[missing] = self._gather(concepts[missing].tolist(), start, stop).T
        return exact_float32(out)
