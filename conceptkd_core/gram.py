"""Sufficient statistics of the students' least-squares problem, built in one streaming pass.

The interactive solver never touches the n x m concept matrix again once these exist:
every re-fit costs O(m^2 k) whatever the number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_CHUNK_ROWS = 32768


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
    def from_arrays(cls, X: np.ndarray, Y: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> "GramStats":
        """Accumulate the statistics over row chunks of ``X`` (n, m) and ``Y`` (n, k) in float64.

        ``X`` may be a read-only memory map in float16: only one chunk is in memory at a time.
        Rows are shifted by the first chunk's mean before accumulating, which keeps the
        final centring free of cancellation error.
        """
        n, m = X.shape
        if Y.ndim != 2 or Y.shape[0] != n:
            raise ValueError(f"Y must have shape ({n}, n_classes); got {Y.shape}")
        if n == 0:
            raise ValueError("Cannot build statistics from zero samples")
        k = Y.shape[1]
        shift_x = np.asarray(X[:chunk_rows], dtype=np.float64).mean(axis=0)
        shift_y = np.asarray(Y[:chunk_rows], dtype=np.float64).mean(axis=0)
        sxx = np.zeros((m, m))
        sxy = np.zeros((m, k))
        syy = np.zeros(k)
        sx = np.zeros(m)
        sy = np.zeros(k)
        for start in range(0, n, chunk_rows):
            xc = np.asarray(X[start:start + chunk_rows], dtype=np.float64) - shift_x
            yc = np.asarray(Y[start:start + chunk_rows], dtype=np.float64) - shift_y
            sxx += xc.T @ xc
            sxy += xc.T @ yc
            syy += np.einsum("ij,ij->j", yc, yc)
            sx += xc.sum(axis=0)
            sy += yc.sum(axis=0)
        dx, dy = sx / n, sy / n
        gram = sxx / n - np.outer(dx, dx)
        gram = (gram + gram.T) / 2
        xty = sxy / n - np.outer(dx, dy)
        yty = syy / n - dy**2
        lipschitz = float(np.linalg.eigvalsh(gram)[-1]) if m else 0.0
        return cls(n_samples=n, x_mean=shift_x + dx, y_mean=shift_y + dy, gram=gram, xty=xty,
                   yty=yty, lipschitz=max(lipschitz, 1e-12))

    def squared_loss(self, W: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
        """Per-class ``(1/(2n)) ||yc - Xc w||²`` for W of shape (n_concepts, n_selected)."""
        cols = slice(None) if classes is None else classes
        xty, yty = self.xty[:, cols], self.yty[cols]
        return 0.5 * np.einsum("ij,ij->j", W, self.gram @ W) - np.einsum("ij,ij->j", W, xty) + 0.5 * yty
