"""Sparse linear students: one per class, over concept scores, mimicking the teacher.

Two solvers share the same box constraints ``lower <= w <= upper`` on every weight:

* the interactive solver (``StudentBank.fit`` / ``refit``) minimises, for each class c,
  ``(1/(2n)) ||t_c - X w_c - b_c||² + alpha ||w_c||₁`` where t_c are the teacher's logits
  (``target="logits"``) or probabilities (``target="probabilities"``). It works on the
  precomputed ``GramStats`` only, with accelerated proximal gradient (FISTA with adaptive
  restart) whose prox is ``clip(soft_threshold(w), lower, upper)``, plus an exact
  active-set polish once the support has settled.
* ``refine`` minimises the paper's objective, ``(1/n) sum BCE(sigmoid(X w_c + b_c), p_c) +
  alpha ||w_c||₁`` with p_c the teacher's probabilities (alpha = 1e-4 by default), on the
  full data; slower (a second or two), meant as a "commit" step.

Stopping rule (both solvers): stop when the gradient mapping, ``L·|w - prox(w - ∇f(w)/L)|``,
is at most ``tol`` for every weight of every class being solved. It is zero exactly at a
KKT point, and it is in the units of the gradient, like ``alpha``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .gram import GramStats
from ..store.rows import row_chunks

TARGETS = ("logits", "probabilities")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free and exact enough for float64


def prox_box_l1(z: np.ndarray, threshold: float, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Proximal operator of ``threshold·|w|₁ + indicator(lower <= w <= upper)``.

    In one dimension the prox of a convex function restricted to an interval is the
    clipped unconstrained prox, so this is exact, not an approximation.
    """
    return np.clip(np.sign(z) * np.maximum(np.abs(z) - threshold, 0.0), lower, upper)


def gradient_mapping(W: np.ndarray, grad: np.ndarray, lipschitz: float, alpha: float,
                     lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``L·|W - prox(W - grad/L)|`` elementwise: the KKT violation measure of the stopping rule."""
    return lipschitz * np.abs(W - prox_box_l1(W - grad / lipschitz, alpha / lipschitz, lower, upper))


@dataclass(frozen=True)
class SolveResult:
    coef: np.ndarray  # (n_concepts, n_selected)
    n_iter: int
    converged: bool
    kkt_violation: np.ndarray  # (n_selected,) max gradient-mapping norm per class


MAX_ACTIVE_SET = 160


def _active_set_solve(G: np.ndarray, c: np.ndarray, alpha: float, lo: np.ndarray, hi: np.ndarray,
                      w: np.ndarray, lipschitz: float, tol: float, max_rounds: int = 400) -> np.ndarray | None:
    """Finish one class exactly from a feasible ``w`` by a sign-and-bound active-set search.

    This is feature-sign search (Lee et al., 2007) extended to box bounds. Each weight is either
    fixed (at 0 or at a bound) or free with a known sign; on the free set the optimality
    conditions are the linear system ``G_FF w_F = c_F - alpha·s_F - G_F,fixed w_fixed``.
    If its solution leaves the free weights' orthant or box, step towards it as far as
    feasible and fix the weight that blocks; otherwise free the fixed weight that violates its
    optimality condition most. Every step lowers the objective, so a warm start a slider move
    away from the optimum is finished in a few exact steps. Returns None if the budget of
    rounds runs out (the caller keeps iterating FISTA).
    """
    w = w.copy()
    pinned = lo == hi
    free = (w != 0) & (w > lo) & (w < hi) & ~pinned
    signs = np.sign(w)
    for _ in range(max_rounds):
        if free.sum() > MAX_ACTIVE_SET:
            return None  # a dense guess (early FISTA iterate): exact solves would cost more than they save
        if free.any():
            s = signs[free]
            rhs = c[free] - alpha * s - G[free] @ np.where(free, 0.0, w)
            try:
                target = np.linalg.solve(G[np.ix_(free, free)], rhs)
            except np.linalg.LinAlgError:
                return None
            if not np.isfinite(target).all():
                return None  # singular free block
            low = np.where(s > 0, np.maximum(lo[free], 0.0), lo[free])
            high = np.where(s > 0, hi[free], np.minimum(hi[free], 0.0))
            if np.all(target >= low) and np.all(target <= high):
                w[free] = target
            else:
                current = w[free]
                step = target - current
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = np.where(step < 0, (low - current) / step, np.where(step > 0, (high - current) / step, np.inf))
                blocking = int(np.argmin(ratio))
                if not np.isfinite(ratio[blocking]):
                    return None
                tau = float(np.clip(ratio[blocking], 0.0, 1.0))
                moved = current + tau * step
                moved[blocking] = low[blocking] if step[blocking] < 0 else high[blocking]
                w[free] = np.clip(moved, low, high)
                idx = np.flatnonzero(free)[blocking]
                free[idx] = False
                continue
        grad = G @ w - c
        violation = gradient_mapping(w, grad, lipschitz, alpha, lo, hi)
        if violation.max() <= tol:
            return w
        violation[free | pinned] = 0.0
        j = int(np.argmax(violation))
        if violation[j] <= tol:
            return None  # only free weights violate: numerical trouble, let FISTA go on
        direction = np.sign(prox_box_l1(w[j] - grad[j] / lipschitz, alpha / lipschitz, lo[j], hi[j]) - w[j])
        signs[j] = np.sign(w[j]) if w[j] != 0 else direction
        free[j] = signs[j] != 0
        if not free[j]:
            return None
    return None


def solve_box_lasso(
    stats: GramStats,
    alpha: float,
    lower: np.ndarray,
    upper: np.ndarray,
    W0: np.ndarray | None = None,
    classes: Sequence[int] | np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 20000,
    polish_after: int = 3,
    polish_backoff: int = 10,
) -> SolveResult:
    """Minimise ``0.5 wᵀGw - cᵀw + alpha|w|₁`` s.t. ``lower <= w <= upper`` for the selected classes.

    lower, upper : ndarray of shape (n_concepts, n_selected), ±inf allowed
    W0 : ndarray of shape (n_concepts, n_selected), the warm start (zeros if None)
    classes : indices into ``stats.xty``'s columns; all classes if None
    polish_after, polish_backoff : try the exact active-set finish before the first iteration,
        then once the pattern of zero / at-bound / free weights of a class has not changed for
        ``polish_after`` iterations; after a failed try wait ``polish_backoff`` iterations,
        doubling the wait after each further failure
    """
    G, L = stats.gram, stats.lipschitz
    cols = np.arange(stats.xty.shape[1]) if classes is None else np.asarray(classes, dtype=int)
    C = stats.xty[:, cols]
    m, k = C.shape
    lower = np.broadcast_to(lower, (m, k))
    upper = np.broadcast_to(upper, (m, k))
    W = np.zeros((m, k)) if W0 is None else np.clip(np.array(W0, dtype=np.float64), lower, upper)
    active = np.arange(k)  # columns still iterating
    t = np.ones(k)
    stable = np.zeros(k, dtype=int)
    next_polish = np.zeros(k, dtype=int)
    backoff = np.full(k, polish_backoff)
    pattern = np.zeros((m, k), dtype=np.int8)
    n_iter = 0
    for j in range(k):  # a warm start is often one exact solve away from the optimum
        candidate = _active_set_solve(G, C[:, j], alpha, lower[:, j], upper[:, j], W[:, j], L, tol)
        if candidate is not None:
            W[:, j] = candidate
            active = active[active != j]
    Z = W.copy()
    for n_iter in range(1, max_iter + 1):
        if active.size == 0:
            n_iter -= 1
            break
        a = active
        Za, Wa, lo, hi = Z[:, a], W[:, a], lower[:, a], upper[:, a]
        grad = G @ Za - C[:, a]
        W_new = prox_box_l1(Za - grad / L, alpha / L, lo, hi)
        residual = L * np.abs(Za - W_new).max(axis=0)
        done = residual <= tol
        # Adaptive restart (O'Donoghue & Candès): drop momentum when it points uphill.
        restart = np.einsum("ij,ij->j", Za - W_new, W_new - Wa) > 0
        t_new = np.where(restart, 1.0, (1 + np.sqrt(1 + 4 * t[a] ** 2)) / 2)
        momentum = np.where(restart, 0.0, (t[a] - 1) / t_new)
        Z[:, a] = W_new + momentum * (W_new - Wa)
        W[:, a] = W_new
        t[a] = t_new
        new_pattern = np.where(W_new == 0, 0, np.where(W_new <= lo, 1, np.where(W_new >= hi, 2, 3))).astype(np.int8)
        same = (new_pattern == pattern[:, a]).all(axis=0)
        stable[a] = np.where(same, stable[a] + 1, 0)
        pattern[:, a] = new_pattern
        try_polish = ~done & (stable[a] >= polish_after) & (next_polish[a] <= n_iter)
        for j in np.flatnonzero(try_polish):
            col = a[j]
            candidate = _active_set_solve(G, C[:, col], alpha, lower[:, col], upper[:, col], W[:, col], L, tol)
            if candidate is not None:
                W[:, col] = candidate
                done[j] = True
            else:
                next_polish[col] = n_iter + backoff[col]
                backoff[col] *= 2
        active = a[~done]
    kkt = gradient_mapping(W, G @ W - C, L, alpha, lower, upper).max(axis=0) if m else np.zeros(k)
    return SolveResult(coef=W, n_iter=n_iter, converged=bool(active.size == 0), kkt_violation=kkt)


def _as_bounds(bounds: np.ndarray | None, shape: tuple[int, int], fill: float, name: str) -> np.ndarray:
    if bounds is None:
        return np.full(shape, fill)
    bounds = np.array(bounds, dtype=np.float64)
    if bounds.shape != shape:
        raise ValueError(f"{name} must have shape {shape} (n_classes, n_concepts); got {bounds.shape}")
    if np.isnan(bounds).any():
        raise ValueError(f"{name} contains NaN")
    return bounds


def check_bounds(lower: np.ndarray, upper: np.ndarray) -> None:
    bad = np.argwhere(lower > upper)
    if bad.size:
        c, j = bad[0]
        raise ValueError(f"lower bound {lower[c, j]:g} is above upper bound {upper[c, j]:g} for class {c}, concept {j}")


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

    def fit(self, X: np.ndarray, teacher_logits: np.ndarray, lower: np.ndarray | None = None,
            upper: np.ndarray | None = None, stats: GramStats | None = None) -> "StudentBank":
        """Fit every class from scratch.

        X : ndarray of shape (n_samples, n_concepts), concept scores (a memory map is fine)
        teacher_logits : ndarray of shape (n_samples, n_classes)
        lower, upper : ndarray of shape (n_classes, n_concepts) or None (unbounded)
        stats : precomputed ``GramStats`` of (X, targets); computed here if None
        """
        teacher_logits = np.asarray(teacher_logits)
        if X.ndim != 2 or teacher_logits.ndim != 2 or X.shape[0] != teacher_logits.shape[0]:
            raise ValueError(f"X (n, m) and teacher_logits (n, k) must share n; got {X.shape} and {teacher_logits.shape}")
        if stats is None:
            stats = GramStats.from_arrays(X, self.targets_from_logits(teacher_logits))
        return self.fit_stats(stats, lower, upper)

    def fit_stats(self, stats: GramStats, lower: np.ndarray | None = None, upper: np.ndarray | None = None) -> "StudentBank":
        m, k = stats.xty.shape
        self.stats_ = stats
        self.lower_ = _as_bounds(lower, (k, m), -np.inf, "lower")
        self.upper_ = _as_bounds(upper, (k, m), np.inf, "upper")
        check_bounds(self.lower_, self.upper_)
        self.coef_ = np.zeros((k, m))
        self.intercept_ = stats.y_mean.copy()
        return self.refit(warm_start=False)

    def refit(self, classes: Sequence[int] | None = None, warm_start: bool = True) -> "StudentBank":
        """Re-solve ``classes`` (all if None) under the current ``lower_``/``upper_``, warm-started."""
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        check_bounds(self.lower_[cols], self.upper_[cols])
        result = solve_box_lasso(
            self.stats_, self.alpha, self.lower_[cols].T, self.upper_[cols].T,
            W0=self.coef_[cols].T if warm_start else None, classes=cols, tol=self.tol, max_iter=self.max_iter,
        )
        self.coef_[cols] = result.coef.T
        self._set_intercepts(cols)
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        return self

    def _set_intercepts(self, cols: np.ndarray) -> None:
        # The unpenalised intercept's optimum given w: b = mean(t) - mean(x)·w.
        self.intercept_[cols] = self.stats_.y_mean[cols] - self.coef_[cols] @ self.stats_.x_mean

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
    def refine(self, X: np.ndarray, teacher_logits: np.ndarray, alpha: float = 1e-4,
               classes: Sequence[int] | None = None, tol: float = 1e-5, max_iter: int = 3000) -> "StudentBank":
        """Exact fit of the paper's objective for ``classes`` (all if None), same bounds, warm-started.

        Minimises ``(1/n) Σ_i BCE(sigmoid(x_i·w_c + b_c), p_ic) + alpha ||w_c||₁`` subject to the
        box bounds, with p = sigmoid(teacher_logits). FISTA with adaptive restart on centred X;
        the intercept is an unpenalised, unbounded block. Leaves ``coef_``/``intercept_`` at the
        refined optimum; a later ``refit`` returns to the interactive objective.
        """
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        P = sigmoid(np.asarray(teacher_logits, dtype=np.float64)[:, cols])
        n = X.shape[0]
        x_mean = self.stats_.x_mean
        Xc = np.asarray(X, dtype=np.float64) - x_mean
        # Hessian <= (1/4)[Xc, 1]ᵀ[Xc, 1]/n = (1/4) blockdiag(gram, 1) because Xcᵀ1 = 0.
        L = max(self.stats_.lipschitz, 1.0) / 4
        lo, hi = self.lower_[cols].T, self.upper_[cols].T
        W = np.clip(self.coef_[cols].T.copy(), lo, hi)
        b = self.intercept_[cols] + x_mean @ W  # intercept of the centred parametrisation
        ZW, Zb, t = W.copy(), b.copy(), 1.0
        for it in range(1, max_iter + 1):
            R = (sigmoid(Xc @ ZW + Zb) - P) / n
            gW, gb = Xc.T @ R, R.sum(axis=0)
            W_new = prox_box_l1(ZW - gW / L, alpha / L, lo, hi)
            b_new = Zb - gb / L
            residual = L * max(np.abs(ZW - W_new).max(), np.abs(Zb - b_new).max())
            restart = np.sum((ZW - W_new) * (W_new - W)) + np.sum((Zb - b_new) * (b_new - b)) > 0
            t_new = 1.0 if restart else (1 + np.sqrt(1 + 4 * t * t)) / 2
            beta = 0.0 if restart else (t - 1) / t_new
            ZW, Zb = W_new + beta * (W_new - W), b_new + beta * (b_new - b)
            W, b, t = W_new, b_new, t_new
            if residual <= tol:
                break
        self.coef_[cols] = W.T
        self.intercept_[cols] = b - x_mean @ W
        self.n_iter_ = it
        self.converged_ = bool(residual <= tol)
        return self

    # ------------------------------------------------------------------ prediction
    def decision_function(self, X: np.ndarray, classes: Sequence[int] | None = None,
                          chunk_rows: int = 65536) -> np.ndarray:
        """Student scores of shape (n_samples, n_selected): approximations of the teacher's targets."""
        cols = np.arange(self.coef_.shape[0]) if classes is None else np.asarray(classes, dtype=int)
        out = np.empty((X.shape[0], cols.size), dtype=np.float64)
        W = self.coef_[cols].T.astype(np.float32)
        for start, rows in row_chunks(X, chunk_rows):
            out[start:start + len(rows)] = rows.astype(np.float32, copy=False) @ W
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
            "alpha": self.alpha, "target": self.target, "tol": self.tol, "max_iter": self.max_iter,
            "coef": self.coef_.tolist(), "intercept": self.intercept_.tolist(),
            "lower": bounds_to_json(self.lower_), "upper": bounds_to_json(self.upper_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], stats: GramStats) -> "StudentBank":
        """Rebuild a bank saved with ``to_dict`` over the statistics of its workspace."""
        bank = cls(alpha=data["alpha"], target=data["target"], tol=data["tol"], max_iter=data["max_iter"])
        m, k = stats.xty.shape
        coef = np.array(data["coef"], dtype=np.float64)
        intercept = np.array(data["intercept"], dtype=np.float64)
        if coef.shape != (k, m) or intercept.shape != (k,):
            raise ValueError(f"saved students have coef {coef.shape} and intercept {intercept.shape}; expected ({k}, {m}) and ({k},)")
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

    def copy(self) -> "StudentBank":
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
        raise ValueError(f"saved {name} bounds are malformed ({exc}); expected [class, concept, value] triples") from None
    if np.isnan(dense).any():
        raise ValueError(f"saved {name} bounds contain NaN")
    return dense
