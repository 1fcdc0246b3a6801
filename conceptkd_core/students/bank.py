"""Sparse linear students: one per class, over concept scores, mimicking the teacher.

Both objectives are stated and solved in ``solver.solve_students``, under the same box bounds
``lower <= w <= upper`` on every weight:

* ``fit`` / ``refit`` (interactive) minimise, for each class c, ``(1/(2n)) ||t_c - X w_c - b_c||² +
  alpha ||w_c||₁`` where t_c are the teacher's logits (``target="logits"``) or probabilities
  (``target="probabilities"``), on the precomputed ``GramStats`` only.
* ``refine`` minimises the paper's objective, ``(1/n) Σ_i BCE(sigmoid(x_i·w_c + b_c), p_ic) +
  alpha ||w_c||₁`` with p the teacher's probabilities (alpha = 1e-4 by default), on the full
  data; slower (a second or two), meant as a "commit" step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..store.rows import row_chunks
from .gram import GramStats
from .solver import check_bounds, gradient_mapping, sigmoid, solve_students

TARGETS = ("logits", "probabilities")


def _as_bounds(bounds: np.ndarray | None, shape: tuple[int, int], fill: float, name: str) -> np.ndarray:
    if bounds is None:
        return np.full(shape, fill)
    bounds = np.array(bounds, dtype=np.float64)
    if bounds.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (n_classes, n_concepts); got {bounds.shape}")
    if np.isnan(bounds).any():
        raise ValueError(f"{name} contains NaN")
    return bounds


class StudentBank:
    """One sparse linear student per class: ``score_c(x) = x · coef_[c] + intercept_[c]``.

    Parameters
    ----------
    alpha : float, the L1 weight of the interactive objective (see the module docstring)
    target : "logits" or "probabilities", what the interactive objective regresses
    tol : float, stopping tolerance on the gradient mapping (units of the gradient)
    max_iter : int, iteration cap of the interactive solver

    Attributes (after ``fit``)
    --------------------------
    coef_ : ndarray of shape (n_classes, n_concepts)
    intercept_ : ndarray of shape (n_classes,)
    lower_, upper_ : ndarray of shape (n_classes, n_concepts), the box bounds in force
    stats_ : GramStats of the training data
    n_iter_ : int, iterations of the last solve
    """

    def __init__(self, alpha: float = 1e-3, target: str = "logits", tol: float = 1e-6, max_iter: int = 20000):
        if not (np.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0; got {alpha!r}")
        if target not in TARGETS:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {target!r}")
        if not tol > 0:
            raise ValueError(f"tol must be > 0; got {tol!r}")
        self.alpha = float(alpha)
        self.target = target
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    # ------------------------------------------------------------------ fitting
    def targets_from_logits(self, teacher_logits: np.ndarray) -> np.ndarray:
        logits = np.asarray(teacher_logits, dtype=np.float64)
        return logits if self.target == "logits" else sigmoid(logits)

    def fit(
        self,
        X: np.ndarray,
        teacher_logits: np.ndarray,
        lower: np.ndarray | None = None,
        upper: np.ndarray | None = None,
        stats: GramStats | None = None,
    ) -> StudentBank:
        """Fit every class from scratch.

        X : ndarray of shape (n_samples, n_concepts), concept scores (a memory map is fine)
        teacher_logits : ndarray of shape (n_samples, n_classes)
        lower, upper : ndarray of shape (n_classes, n_concepts) or None (unbounded)
        stats : precomputed ``GramStats`` of (X, targets); computed here if None
        """
        teacher_logits = np.asarray(teacher_logits)
        if X.ndim != 2 or teacher_logits.ndim != 2 or X.shape[0] != teacher_logits.shape[0]:
            raise ValueError(
                f"X (n, m) and teacher_logits (n, k) must share n; got {X.shape} and {teacher_logits.shape}"
            )
        if stats is None:
            stats = GramStats.from_arrays(X, self.targets_from_logits(teacher_logits))
        return self.fit_stats(stats, lower, upper)

    def fit_stats(
        self, stats: GramStats, lower: np.ndarray | None = None, upper: np.ndarray | None = None
    ) -> StudentBank:
        m, k = stats.xty.shape
        self.stats_ = stats
        self.lower_ = _as_bounds(lower, (k, m), -np.inf, "lower")
        self.upper_ = _as_bounds(upper, (k, m), np.inf, "upper")
        self.coef_ = np.zeros((k, m))
        self.intercept_ = stats.y_mean.copy()
        return self.refit(warm_start=False)

    def refit(self, classes: Sequence[int] | None = None, warm_start: bool = True) -> StudentBank:
        """Re-solve ``classes`` (all if None) under the current ``lower_``/``upper_``, warm-started."""
        return self._solve(classes, "squared", self.alpha, warm_start, self.tol, self.max_iter)

    def _solve(
        self,
        classes: Sequence[int] | None,
        loss: str,
        alpha: float,
        warm_start: bool,
        tol: float,
        max_iter: int,
        **data: np.ndarray,
    ) -> StudentBank:
        # The solver works column-per-class (n_concepts, n_selected); the bank stores rows per class.
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        result = solve_students(
            self.stats_,
            alpha,
            self.lower_[cols].T,
            self.upper_[cols].T,
            loss=loss,
            classes=cols,
            W0=self.coef_[cols].T if warm_start else None,
            tol=tol,
            max_iter=max_iter,
            **data,
        )
        self.coef_[cols] = result.coef.T
        self.intercept_[cols] = result.intercept
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        return self

    def objective(self, classes: Sequence[int] | None = None) -> np.ndarray:
        """The interactive objective per class, at the current weights."""
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        W = self.coef_[cols].T
        return self.stats_.squared_loss(W, cols) + self.alpha * np.abs(W).sum(axis=0)

    def kkt_violation(self) -> np.ndarray:
        """Per class, the max gradient-mapping norm of the interactive objective (0 at the optimum)."""
        W = self.coef_.T
        grad = self.stats_.gram @ W - self.stats_.xty
        return gradient_mapping(W, grad, self.stats_.lipschitz, self.alpha, self.lower_.T, self.upper_.T).max(axis=0)

    # ------------------------------------------------------------------ refine (paper objective)
    def refine(
        self,
        X: np.ndarray,
        teacher_logits: np.ndarray,
        alpha: float = 1e-4,
        classes: Sequence[int] | None = None,
        tol: float = 1e-5,
        max_iter: int = 3000,
    ) -> StudentBank:
        """Exact fit of the paper's objective for ``classes`` (all if None), same bounds, warm-started.

        Minimises ``(1/n) Σ_i BCE(sigmoid(x_i·w_c + b_c), p_ic) + alpha ||w_c||₁`` subject to the
        box bounds, with p = sigmoid(teacher_logits) (``solve_students(loss="logistic")``), from the
        current weights and intercepts. Leaves ``coef_``/``intercept_`` at the refined optimum; a
        later ``refit`` returns to the interactive objective.

        X : ndarray of shape (n_samples, n_concepts), concept scores
        teacher_logits : ndarray of shape (n_samples, n_classes)
        """
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        P = sigmoid(np.asarray(teacher_logits, dtype=np.float64)[:, cols])
        return self._solve(cols, "logistic", alpha, True, tol, max_iter, X=X, P=P, intercept0=self.intercept_[cols])

    # ------------------------------------------------------------------ prediction
    def decision_function(
        self, X: np.ndarray, classes: Sequence[int] | None = None, chunk_rows: int = 65536
    ) -> np.ndarray:
        """Student scores of shape (n_samples, n_selected): approximations of the teacher's targets."""
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        out = np.empty((X.shape[0], cols.size), dtype=np.float64)
        W = self.coef_[cols].T.astype(np.float32)
        for start, rows in row_chunks(X, chunk_rows):
            out[start : start + len(rows)] = rows.astype(np.float32, copy=False) @ W
        return out + self.intercept_[cols]

    def predict_proba_from_scores(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities from ``decision_function`` output: sigmoid of logits, or clipped probabilities."""
        return sigmoid(scores) if self.target == "logits" else np.clip(scores, 0.0, 1.0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.predict_proba_from_scores(self.decision_function(X))

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per class, per concept ``coef_ * x`` for one image's concept vector x of shape (n_concepts,).

        Returns shape (n_classes, n_concepts); row c sums to ``decision_function - intercept_[c]``.
        """
        return self.coef_ * np.asarray(x, dtype=np.float64)[None, :]

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        """JSON-ready parameters and learned weights (exact: floats are written with repr)."""
        return {
            "alpha": self.alpha,
            "target": self.target,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "coef": self.coef_.tolist(),
            "intercept": self.intercept_.tolist(),
            "lower": bounds_to_json(self.lower_),
            "upper": bounds_to_json(self.upper_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], stats: GramStats) -> StudentBank:
        """Rebuild a bank saved with ``to_dict`` over the statistics of its workspace."""
        bank = cls(alpha=data["alpha"], target=data["target"], tol=data["tol"], max_iter=data["max_iter"])
        m, k = stats.xty.shape
        coef = np.array(data["coef"], dtype=np.float64)
        intercept = np.array(data["intercept"], dtype=np.float64)
        if coef.shape != (k, m) or intercept.shape != (k,):
            raise ValueError(
                f"saved students have coef {coef.shape} and intercept {intercept.shape}; expected ({k}, {m}) and ({k},)"
            )
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            raise ValueError("saved students contain NaN or inf")
        bank.stats_ = stats
        bank.lower_ = _bounds_from_json(data["lower"], (k, m), -np.inf, "lower")
        bank.upper_ = _bounds_from_json(data["upper"], (k, m), np.inf, "upper")
        check_bounds(bank.lower_, bank.upper_)
        if (coef < bank.lower_ - 1e-12).any() or (coef > bank.upper_ + 1e-12).any():
            raise ValueError("saved students violate their own bounds")
        bank.coef_, bank.intercept_ = coef, intercept
        bank.n_iter_, bank.converged_ = 0, True
        return bank

    def copy(self) -> StudentBank:
        other = StudentBank(self.alpha, self.target, self.tol, self.max_iter)
        other.stats_ = self.stats_  # read-only, shared
        for name in ("coef_", "intercept_", "lower_", "upper_"):
            setattr(other, name, getattr(self, name).copy())
        other.n_iter_, other.converged_ = getattr(self, "n_iter_", 0), getattr(self, "converged_", True)
        return other


def bounds_to_json(bounds: np.ndarray) -> list:
    # JSON has no infinity: write the finite entries sparsely, everything else is unbounded.
    return [[int(c), int(j), float(bounds[c, j])] for c, j in np.argwhere(np.isfinite(bounds))]


def _bounds_from_json(entries: Any, shape: tuple[int, int], fill: float, name: str) -> np.ndarray:
    dense = np.full(shape, fill)
    try:
        for c, j, v in entries:
            dense[int(c), int(j)] = float(v)
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"saved {name} bounds are malformed ({exc}); expected [class, concept, value] triples"
        ) from None
    if np.isnan(dense).any():
        raise ValueError(f"saved {name} bounds contain NaN")
    return dense
