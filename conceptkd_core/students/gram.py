"""Sufficient statistics of the students' least-squares problem, built in one streaming pass.

The interactive solver never touches the n x m concept matrix again once these exist:
every re-fit costs O(m^2 k) whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..store.rows import DEFAULT_CHUNK_ROWS, read_rows, row_chunks


def chunk_shifts(X: np.ndarray, Y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The shift subtracted from every row before accumulating: the first chunk's means."""
    n = X.shape[0]
    if Y.ndim != 2 or Y.shape[0] != n:
        raise ValueError(f"Y must have shape ({n}, n_classes); got {Y.shape}")
    if n == 0:
        raise ValueError("Cannot build statistics from zero samples")
    return (
        read_rows(X, 0, chunk_rows).astype(np.float64).mean(axis=0),
        np.asarray(Y[:chunk_rows], dtype=np.float64).mean(axis=0),
    )


@dataclass
class GramSums:
    """Sums over a set of rows of shifted X and Y: what one worker hands back; sums of sums add up.

    Adding the sums of consecutive chunks in row order repeats ``GramStats.from_arrays``'s own
    float operations, so a split computation (e.g. one Ray task per chunk) gives the same bits.
    """

    n: int
    sx: np.ndarray  # (m,)
    sy: np.ndarray  # (k,)
    sxx: np.ndarray  # (m, m)
    sxy: np.ndarray  # (m, k)
    syy: np.ndarray  # (k,)

    @classmethod
    def zeros(cls, m: int, k: int) -> GramSums:
        return cls(0, np.zeros(m), np.zeros(k), np.zeros((m, m)), np.zeros((m, k)), np.zeros(k))

    @classmethod
    def of_chunk(cls, x_chunk: np.ndarray, y_chunk: np.ndarray, shift_x: np.ndarray, shift_y: np.ndarray) -> GramSums:
        """Sums over the rows of ``x_chunk`` (r, m) and ``y_chunk`` (r, k), shifted, in float64."""
        xc = np.asarray(x_chunk, dtype=np.float64) - shift_x
        yc = np.asarray(y_chunk, dtype=np.float64) - shift_y
        return cls(xc.shape[0], xc.sum(axis=0), yc.sum(axis=0), xc.T @ xc, xc.T @ yc, np.einsum("ij,ij->j", yc, yc))

    def __iadd__(self, other: GramSums) -> GramSums:
        self.n += other.n
        self.sxx += other.sxx
        self.sxy += other.sxy
        self.syy += other.syy
        self.sx += other.sx
        self.sy += other.sy
        return self


@dataclass(frozen=True)
class GramStats:
    """Centred second moments of concept scores X and targets Y.

    n_samples : int
    x_mean : ndarray of shape (n_concepts,)
    y_mean : ndarray of shape (n_classes,)
    gram : ndarray of shape (n_concepts, n_concepts), ``Xcᵀ Xc / n`` with ``Xc = X - x_mean``
    xty : ndarray of shape (n_concepts, n_classes), ``Xcᵀ Yc / n``
    yty : ndarray of shape (n_classes,), ``diag(Ycᵀ Yc) / n``
    lipschitz : float, the largest eigenvalue of ``gram`` (the gradient's Lipschitz constant)
    """

    n_samples: int
    x_mean: np.ndarray
    y_mean: np.ndarray
    gram: np.ndarray
    xty: np.ndarray
    yty: np.ndarray
    lipschitz: float

    @classmethod
    def from_arrays(
        cls, X: np.ndarray, Y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS, rows: np.ndarray | None = None
    ) -> GramStats:
        """Accumulate the statistics over row chunks of ``X`` (n, m) and ``Y`` (n, k) in float64.

        ``rows`` : bool mask of shape (n,), the rows to use (the students' fit rows); all if None.
        ``X`` may be a read-only memory map in float16: only one chunk is in memory at a time.
        Rows are shifted by the first chunk's mean before accumulating, which keeps the
        final centring free of cancellation error (any shift gives the same statistics).
        """
        shift_x, shift_y = chunk_shifts(X, Y, chunk_rows)
        total = GramSums.zeros(X.shape[1], Y.shape[1])
        for start, chunk in row_chunks(X, chunk_rows):
            y_chunk = Y[start : start + len(chunk)]
            if rows is not None:
                keep = rows[start : start + len(chunk)]
                chunk, y_chunk = chunk[keep], y_chunk[keep]
            total += GramSums.of_chunk(chunk, y_chunk, shift_x, shift_y)
        return cls.from_sums(total, shift_x, shift_y)

    @classmethod
    def from_sums(cls, sums: GramSums, shift_x: np.ndarray, shift_y: np.ndarray) -> GramStats:
        """The statistics from sums of shifted rows (``GramSums``), however those were split up."""
        n, m = sums.n, sums.sx.size
        if n == 0:
            raise ValueError("Cannot build statistics from zero samples")
        dx, dy = sums.sx / n, sums.sy / n
        gram = sums.sxx / n - np.outer(dx, dx)
        gram = (gram + gram.T) / 2
        xty = sums.sxy / n - np.outer(dx, dy)
        yty = sums.syy / n - dy**2
        lipschitz = float(np.linalg.eigvalsh(gram)[-1]) if m else 0.0
        return cls(
            n_samples=n,
            x_mean=shift_x + dx,
            y_mean=shift_y + dy,
            gram=gram,
            xty=xty,
            yty=yty,
            lipschitz=max(lipschitz, 1e-12),
        )

    def squared_loss(self, W: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Per-class ``(1/(2n)) ||yc - Xc w||²`` for W of shape (n_concepts, n_selected)."""
        cols = slice(None) if classes is None else classes
        xty, yty = self.xty[:, cols], self.yty[cols]
        return 0.5 * np.einsum("ij,ij->j", W, self.gram @ W) - np.einsum("ij,ij->j", W, xty) + 0.5 * yty
