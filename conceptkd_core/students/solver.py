"""The students' solver seam: ``solve_students`` states and solves both objectives.

Modelled on scikit-learn's ``linear_model/_coordinate_descent.py``: one documented public
function states the objective, the bounds and every array's shape and validates its inputs
once; the private iteration behind it (``_fista``, the only FISTA loop in the code base) trusts
them. ``StudentBank.fit``/``refit`` (squared loss on Gram statistics, the interactive hot path)
and ``StudentBank.refine`` (the paper's logistic loss on the full data) both call it.
``solve_edits`` is the edit scan's path (``suggest``): one class under hundreds of boxes, each
finished by its own active-set search and held to the same stopping rule; it leaves the
interactive path above untouched.

Stopping rule (both losses): stop when the gradient mapping, ``L·|w - prox(w - ∇f(w)/L)|``,
is at most ``tol`` for every weight of every class being solved. It is zero exactly at a
KKT point, and it is in the units of the gradient, like ``alpha``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .gram import GramStats

LOSSES = ("squared", "logistic")
MAX_ACTIVE_SET = 160


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free and exact enough for float64


def prox_box_l1(z: np.ndarray, threshold: float | np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Proximal operator of ``threshold·|w|₁ + indicator(lower <= w <= upper)``.

    In one dimension the prox of a convex function restricted to an interval is the
    clipped unconstrained prox, so this is exact, not an approximation.
    """
    return np.clip(np.sign(z) * np.maximum(np.abs(z) - threshold, 0.0), lower, upper)


def gradient_mapping(
    W: np.ndarray, grad: np.ndarray, lipschitz: float, alpha: float | np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """``L·|W - prox(W - grad/L)|`` elementwise: the KKT violation measure of the stopping rule."""
    return lipschitz * np.abs(W - prox_box_l1(W - grad / lipschitz, alpha / lipschitz, lower, upper))


@dataclass(frozen=True)
class SolveResult:
    coef: np.ndarray  # (n_concepts, n_selected)
    intercept: np.ndarray  # (n_selected,)
    n_iter: int
    converged: bool
    kkt_violation: np.ndarray  # (n_selected,) max gradient-mapping norm per class


def check_bounds(lower: np.ndarray, upper: np.ndarray, classes: np.ndarray | None = None) -> None:
    """Raise if some ``lower > upper``; both of shape (n_classes, n_concepts), rows are ``classes``."""
    bad = np.argwhere(lower > upper)
    if bad.size:
        c, j = bad[0]
        label = c if classes is None else classes[c]
        raise ValueError(
            f"lower bound {lower[c, j]:g} is above upper bound {upper[c, j]:g} for class {label}, concept {j}"
        )


def _active_set_solve(
    G: np.ndarray,
    c: np.ndarray,
    alpha: float,
    lo: np.ndarray,
    hi: np.ndarray,
    w: np.ndarray,
    lipschitz: float,
    tol: float,
    max_rounds: int = 400,
) -> np.ndarray | None:
    """Finish one class of the squared loss exactly from a feasible ``w`` by a sign-and-bound active-set search.

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
                    ratio = np.where(
                        step < 0, (low - current) / step, np.where(step > 0, (high - current) / step, np.inf)
                    )
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


def _grow_inverse(inv: np.ndarray, G: np.ndarray, free: np.ndarray, add: np.ndarray) -> np.ndarray | None:
    """The inverse of ``G`` on ``free + add`` from ``inv``, the inverse on ``free`` (block bordering)."""
    B = G[np.ix_(free, add)]
    U = inv @ B
    schur = G[np.ix_(add, add)] - B.T @ U
    try:
        S = np.linalg.inv(schur)
    except np.linalg.LinAlgError:
        return None
    if not np.isfinite(S).all() or np.any(np.diag(S) <= 0):
        return None  # the free block would be singular
    US = U @ S
    n = len(inv)
    out = np.empty((n + len(add), n + len(add)))
    out[:n, :n] = inv + US @ U.T
    out[:n, n:] = -US
    out[n:, :n] = -US.T
    out[n:, n:] = S
    return out


def _shrink_inverse(inv: np.ndarray, drop: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric matrix without the rows and columns ``drop``, from the full inverse."""
    keep = np.ones(len(inv), dtype=bool)
    keep[drop] = False
    cross = inv[np.ix_(keep, drop)]
    return inv[np.ix_(keep, keep)] - cross @ np.linalg.solve(inv[np.ix_(drop, drop)], cross.T)


def _edit_active_set(
    G: np.ndarray,
    c: np.ndarray,
    alpha: float,
    lo: np.ndarray,
    hi: np.ndarray,
    w: np.ndarray,
    lipschitz: float,
    tol: float,
    add_at_once: int = 12,
    max_rounds: int = 1000,
    refresh_every: int = 64,
) -> np.ndarray | None:
    """``_active_set_solve`` for the edit scan: the same kind of search, with fewer and cheaper rounds.

    An edit moves a class far from its optimum (an up-tune floor can change half its support),
    so the search takes tens of rounds per candidate. Here a round costs O(n²), not a fresh
    solve: the inverse of the free block is kept up to date as weights are freed or fixed (block
    bordering and its reverse, recomputed every ``refresh_every`` changes against drift), and up
    to ``add_at_once`` violators are freed per round (each step still lowers the objective).
    The answer is verified exactly: the free weights are solved afresh from ``G`` and the
    gradient mapping must be at most ``tol`` everywhere. Returns None if anything fails (the
    caller then uses the shared solver).
    """
    w = w.copy()
    pinned = lo == hi
    is_free = (w != 0) & (w > lo) & (w < hi) & ~pinned
    free = np.flatnonzero(is_free)
    signs = np.sign(w)
    fixed = np.flatnonzero((w != 0) & ~is_free)  # weights held at a non-zero bound
    pull = c - w[fixed] @ G[fixed]  # c less the pull of the fixed weights (G is symmetric)
    try:
        inv = np.linalg.inv(G[np.ix_(free, free)])
    except np.linalg.LinAlgError:
        return None
    # Per free weight, in the order of ``free``: its sign and the bounds of its orthant within the box.
    s, low, high = _orthant_box(signs, lo, hi, free)
    changes = 0
    for _ in range(max_rounds):
        if changes >= refresh_every:
            inv, changes = np.linalg.inv(G[np.ix_(free, free)]), 0
        if free.size:
            target = inv @ (pull[free] - alpha * s)
            if not np.isfinite(target).all():
                return None
            if np.all(target >= low) and np.all(target <= high):
                w[free] = target
            else:
                # Step towards the solve as far as the orthant and box allow; fix the weight that blocks.
                current = w[free]
                step = target - current
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = (np.where(step < 0, low, high) - current) / step
                ratio[step == 0] = np.inf
                p = int(np.argmin(ratio))
                if not np.isfinite(ratio[p]):
                    return None
                moved = current + min(max(float(ratio[p]), 0.0), 1.0) * step
                moved[p] = low[p] if step[p] < 0 else high[p]
                w[free] = np.clip(moved, low, high)
                j, last = free[p], free.size - 1
                # Drop p by moving the last free weight into its place: a rank-one downdate, no copies.
                col = inv[:, p].copy()
                d = col[p]
                if not (np.isfinite(d) and d > 0):  # the inverse of a positive-definite block has d > 0:
                    return None  # this one has drifted (a near-singular Gram of a few fit images)
                inv[p] = inv[last]
                inv[:, p] = inv[:, last]
                col[p] = col[last]
                inv = inv[:last, :last] - np.outer(col[:last], col[:last] / d)
                for a in (free, s, low, high):
                    a[p] = a[last]
                free, s, low, high = free[:last], s[:last], low[:last], high[:last]
                changes += 1
                if w[j] != 0:
                    fixed = np.append(fixed, j)
                    pull -= G[j] * w[j]
                continue
        nonzero = np.concatenate([free, fixed])
        grad = w[nonzero] @ G[nonzero] - c
        violation = gradient_mapping(w, grad, lipschitz, alpha, lo, hi)
        if violation.max() <= tol:
            return _verified(G, c, alpha, lo, hi, w, free, signs, fixed, lipschitz, tol)
        violation[free] = 0.0
        violation[pinned] = 0.0
        worst = np.flatnonzero(violation > tol)
        if worst.size > add_at_once:
            worst = worst[np.argpartition(violation[worst], -add_at_once)[-add_at_once:]]
        if worst.size == 0:
            return None  # only free weights violate: numerical trouble
        step = prox_box_l1(w[worst] - grad[worst] / lipschitz, alpha / lipschitz, lo[worst], hi[worst]) - w[worst]
        sign = np.where(w[worst] != 0, np.sign(w[worst]), np.sign(step))
        if np.any(sign == 0):
            return None
        inv = _grow_inverse(inv, G, free, worst)
        if inv is None:
            return None
        released = worst[w[worst] != 0]
        if released.size:
            fixed = fixed[~np.isin(fixed, released)]
            pull += w[released] @ G[released]
        signs[worst] = sign
        free = np.concatenate([free, worst])
        s, low, high = _orthant_box(signs, lo, hi, free)
        changes += worst.size
    return None


def _orthant_box(signs: np.ndarray, lo: np.ndarray, hi: np.ndarray, free: np.ndarray) -> tuple[np.ndarray, ...]:
    """Signs of the free weights and the bounds that keep each in its orthant and box."""
    s = signs[free]
    return s, np.where(s > 0, np.maximum(lo[free], 0.0), lo[free]), np.where(s > 0, hi[free], np.minimum(hi[free], 0.0))


def _verified(
    G: np.ndarray,
    c: np.ndarray,
    alpha: float,
    lo: np.ndarray,
    hi: np.ndarray,
    w: np.ndarray,
    free: np.ndarray,
    signs: np.ndarray,
    fixed: np.ndarray,
    lipschitz: float,
    tol: float,
) -> np.ndarray | None:
    """The free weights solved afresh (no updated inverse), kept if they meet the stopping rule."""
    exact = w.copy()
    if free.size:
        rhs = c[free] - alpha * signs[free] - G[np.ix_(free, fixed)] @ w[fixed]
        try:
            exact[free] = np.linalg.solve(G[np.ix_(free, free)], rhs)
        except np.linalg.LinAlgError:
            return None
    exact = np.clip(exact, lo, hi)
    for candidate in (exact, w):
        grad = G @ candidate - c
        if gradient_mapping(candidate, grad, lipschitz, alpha, lo, hi).max() <= tol:
            return candidate
    return None


Gradient = Callable[[np.ndarray, np.ndarray], np.ndarray]
Polish = Callable[[int, np.ndarray], np.ndarray | None]


def _fista(
    gradient: Gradient,
    W: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    penalty: float | np.ndarray,
    lipschitz: float,
    tol: float,
    max_iter: int,
    polish: Polish | None = None,
    polish_after: int = 3,
    polish_backoff: int = 10,
) -> tuple[np.ndarray, int, bool]:
    """FISTA with per-column adaptive restart for ``f(W) + Σ penalty·|W|`` s.t. ``lower <= W <= upper``.

    Each column of W (n_rows, n_cols) is an independent problem and stops on its own once its
    gradient mapping is at most ``tol``. ``gradient(Z, cols)`` is ∇f at Z (n_rows, len(cols)) for
    those columns; ``penalty`` is a float or of shape (n_rows, 1). W must be feasible; it is
    updated in place and returned with the iteration count and whether every column converged.

    polish(col, w) -> w or None: an exact finish of one column, tried before the first iteration,
    then once the pattern of zero / at-bound / free weights of a column has not changed for
    ``polish_after`` iterations; after a failed try wait ``polish_backoff`` iterations, doubling
    the wait after each further failure.
    """
    rows, k = W.shape
    threshold = penalty / lipschitz
    active = np.arange(k)  # columns still iterating
    t = np.ones(k)
    stable = np.zeros(k, dtype=int)
    next_polish = np.zeros(k, dtype=int)
    backoff = np.full(k, polish_backoff)
    pattern = np.zeros((rows, k), dtype=np.int8)
    n_iter = 0
    if polish is not None:
        for j in range(k):  # a warm start is often one exact solve away from the optimum
            candidate = polish(j, W[:, j])
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
        W_new = prox_box_l1(Za - gradient(Za, a) / lipschitz, threshold, lo, hi)
        residual = lipschitz * np.abs(Za - W_new).max(axis=0)
        done = residual <= tol
        # Adaptive restart (O'Donoghue & Candès): drop momentum when it points uphill.
        restart = np.einsum("ij,ij->j", Za - W_new, W_new - Wa) > 0
        t_new = np.where(restart, 1.0, (1 + np.sqrt(1 + 4 * t[a] ** 2)) / 2)
        momentum = np.where(restart, 0.0, (t[a] - 1) / t_new)
        Z[:, a] = W_new + momentum * (W_new - Wa)
        W[:, a] = W_new
        t[a] = t_new
        if polish is not None:
            new_pattern = np.where(W_new == 0, 0, np.where(W_new <= lo, 1, np.where(W_new >= hi, 2, 3))).astype(np.int8)
            same = (new_pattern == pattern[:, a]).all(axis=0)
            stable[a] = np.where(same, stable[a] + 1, 0)
            pattern[:, a] = new_pattern
            for j in np.flatnonzero(~done & (stable[a] >= polish_after) & (next_polish[a] <= n_iter)):
                col = a[j]
                candidate = polish(col, W[:, col])
                if candidate is not None:
                    W[:, col] = candidate
                    done[j] = True
                else:
                    next_polish[col] = n_iter + backoff[col]
                    backoff[col] *= 2
        active = a[~done]
    return W, n_iter, bool(active.size == 0)


def _check_box(name: str, value: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64)
    try:
        value = value if value.shape == shape else np.broadcast_to(value, shape)  # the bank's case costs nothing
    except ValueError:
        raise ValueError(
            f"{name} must broadcast to (n_concepts, n_selected) = {shape}. Got shape {value.shape} instead."
        ) from None
    if np.isnan(value).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(value))[0])
        raise ValueError(f"{name} must not contain NaN. Got NaN at (concept, selected class) {where} instead.")
    return value


def _check_inputs(
    loss: str, stats: GramStats, alpha: float, classes: Sequence[int] | np.ndarray | None, tol: float, max_iter: int
) -> np.ndarray:
    """Validate the scalars and ``classes``; returns the selected columns of ``stats``."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}. Got {loss!r} instead.")
    if not (np.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0. Got {alpha!r} instead.")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0. Got {tol!r} instead.")
    if not (isinstance(max_iter, (int, np.integer)) and max_iter >= 0):
        raise ValueError(f"max_iter must be an integer >= 0. Got {max_iter!r} instead.")
    n_classes = stats.xty.shape[1]
    cols = np.arange(n_classes) if classes is None else np.asarray(classes, dtype=int)
    if cols.ndim != 1 or ((cols < 0) | (cols >= n_classes)).any():
        raise ValueError(f"classes must be a list of class indices in [0, {n_classes}). Got {classes!r} instead.")
    return cols


def _check_logistic(
    X: np.ndarray | None, P: np.ndarray | None, intercept0: np.ndarray | None, m: int, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the logistic loss's data; returns X as a float64 copy, P, and the intercept warm start."""
    if X is None or P is None:
        raise ValueError(f"loss='logistic' needs X and P. Got X={type(X).__name__}, P={type(P).__name__} instead.")
    if np.ndim(X) != 2 or np.shape(X)[1] != m:
        raise ValueError(f"X must have shape (n_samples, n_concepts) = (n, {m}). Got {np.shape(X)} instead.")
    P = np.asarray(P, dtype=np.float64)
    if P.shape != (X.shape[0], k):
        raise ValueError(f"P must have shape (n_samples, n_selected) = {(X.shape[0], k)}. Got {P.shape} instead.")
    outside = ~((P >= 0) & (P <= 1))
    if outside.any():
        raise ValueError(f"P must hold probabilities in [0, 1]. Got {float(P[outside][0])!r} instead.")
    b0 = np.zeros(k) if intercept0 is None else np.asarray(intercept0, dtype=np.float64)
    if b0.shape != (k,) or not np.isfinite(b0).all():
        raise ValueError(f"intercept0 must be finite, of shape (n_selected,) = ({k},). Got {b0!r} instead.")
    return np.array(X, dtype=np.float64), P, b0


def solve_students(
    stats: GramStats,
    alpha: float,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    loss: str = "squared",
    classes: Sequence[int] | np.ndarray | None = None,
    W0: np.ndarray | None = None,
    intercept0: np.ndarray | None = None,
    X: np.ndarray | None = None,
    P: np.ndarray | None = None,
    tol: float = 1e-6,
    max_iter: int = 20000,
) -> SolveResult:
    """Fit one sparse, box-constrained linear student per selected class.

    For each selected class c, minimise over the weights w_c and the intercept b_c, subject to
    ``lower[:, j] <= w_c <= upper[:, j]`` (j the position of c in ``classes``), with b_c
    unpenalised and unbounded:

    * ``loss="squared"`` (the interactive objective): ``(1/(2n)) ||t_c - X w_c - b_c||² + alpha ||w_c||₁``
      with t_c the targets ``stats`` was built from. Solved on the centred statistics alone as
      ``0.5 w_cᵀ G w_c - x_cᵀ w_c + alpha |w_c|₁`` (G = ``stats.gram``, x_c = ``stats.xty[:, c]``),
      whose optimal intercept is ``b_c = mean(t_c) - mean(x)·w_c``; a FISTA iterate is finished by
      an exact active-set search once its support settles.
    * ``loss="logistic"`` (the paper's objective):
      ``(1/n) Σ_i BCE(sigmoid(x_i·w_c + b_c), p_ic) + alpha ||w_c||₁`` on the full data ``X``,
      by the same FISTA iteration on centred X, the intercept an extra unpenalised row.

    The stopping rule is in the module docstring.

    Parameters
    ----------
    stats : GramStats of the concept scores X (and, for the squared loss, of the targets t)
    alpha : float >= 0, the L1 weight
    lower, upper : array-like broadcastable to (n_concepts, n_selected), ±inf allowed
    loss : "squared" or "logistic"
    classes : indices of the classes (columns of ``stats.xty``) to solve; all if None
    W0 : ndarray of shape (n_concepts, n_selected), the warm start, clipped into the box (zeros if None)
    intercept0 : ndarray of shape (n_selected,), the logistic warm start of b (zeros if None)
    X : ndarray of shape (n_samples, n_concepts), concept scores; logistic loss only
    P : ndarray of shape (n_samples, n_selected), teacher probabilities in [0, 1]; logistic loss only
    tol : float > 0, stopping tolerance on the gradient mapping
    max_iter : int >= 0, iteration cap

    Returns
    -------
    SolveResult with coef of shape (n_concepts, n_selected) and intercept of shape (n_selected,)
    """
    cols = _check_inputs(loss, stats, alpha, classes, tol, max_iter)
    m, k = stats.xty.shape[0], cols.size
    lower, upper = _check_box("lower", lower, (m, k)), _check_box("upper", upper, (m, k))
    check_bounds(lower.T, upper.T, cols)
    if W0 is None:
        W = np.zeros((m, k))
    else:
        W0 = np.asarray(W0, dtype=np.float64)
        if W0.shape != (m, k) or not np.isfinite(W0).all():
            raise ValueError(
                f"W0 must be finite, of shape (n_concepts, n_selected) = {(m, k)}. "
                f"Got shape {W0.shape}{'' if np.isfinite(W0).all() else ' with NaN or inf'} instead."
            )
        W = np.clip(W0, lower, upper)

    if loss == "squared":
        given = [name for name, value in (("X", X), ("P", P), ("intercept0", intercept0)) if value is not None]
        if given:
            raise ValueError(
                f"X, P and intercept0 are inputs of loss='logistic' only. Got {', '.join(given)} "
                "with loss='squared' instead."
            )
        G, C, L = stats.gram, stats.xty[:, cols], stats.lipschitz
        penalty: float | np.ndarray = alpha

        def gradient(Z: np.ndarray, a: np.ndarray) -> np.ndarray:
            return G @ Z - C[:, a]

        def polish_column(j: int, w: np.ndarray) -> np.ndarray | None:
            return _active_set_solve(G, C[:, j], alpha, lower[:, j], upper[:, j], w, L, tol)

        polish: Polish | None = polish_column

    else:
        Xc, P, b0 = _check_logistic(X, P, intercept0, m, k)
        Xc -= stats.x_mean  # centred X: x·w + b = (x - x_mean)·w + (b + x_mean·w)
        n = Xc.shape[0]
        # Hessian <= (1/4)[Xc, 1]ᵀ[Xc, 1]/n = (1/4) blockdiag(gram, 1) because Xcᵀ1 = 0.
        L = max(stats.lipschitz, 1.0) / 4
        # The centred intercept is one more row of W: unpenalised and unbounded.
        W = np.vstack([W, b0 + stats.x_mean @ W])
        lower, upper = np.vstack([lower, np.full(k, -np.inf)]), np.vstack([upper, np.full(k, np.inf)])
        penalty = np.r_[np.full(m, alpha), 0.0][:, None]
        polish = None

        def gradient(Z: np.ndarray, a: np.ndarray) -> np.ndarray:
            R = (sigmoid(Xc @ Z[:m] + Z[m]) - P[:, a]) / n
            return np.vstack([Xc.T @ R, R.sum(axis=0)])

    W, n_iter, converged = _fista(gradient, W, lower, upper, penalty, L, tol, max_iter, polish)
    kkt = gradient_mapping(W, gradient(W, np.arange(k)), L, penalty, lower, upper)
    kkt = kkt.max(axis=0) if len(W) else np.zeros(k)
    if loss == "squared":
        coef, intercept = W, stats.y_mean[cols] - W.T @ stats.x_mean
    else:
        coef, intercept = W[:m], W[m] - stats.x_mean @ W[:m]
    return SolveResult(coef=coef, intercept=intercept, n_iter=n_iter, converged=converged, kkt_violation=kkt)


def solve_edits(
    stats: GramStats,
    alpha: float,
    c: int,
    w0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    *,
    tol: float = 1e-6,
    max_iter: int = 20000,
) -> SolveResult:
    """Re-fit class ``c`` under each of many boxes (the edit scan), the squared loss of ``solve_students``.

    Column i of ``lower``/``upper`` (n_concepts, n_edits) is one edit's box; each edit is solved
    from ``w0`` (the class's current weights, clipped into its box) by ``_edit_active_set`` and meets
    the same stopping rule as ``solve_students``; an edit it cannot finish goes to ``solve_students``.
    """
    cols = _check_inputs("squared", stats, alpha, [c], tol, max_iter)
    m = stats.xty.shape[0]
    w0 = np.asarray(w0, dtype=np.float64)
    if w0.shape != (m,) or not np.isfinite(w0).all():
        raise ValueError(f"w0 must be finite, of shape (n_concepts,) = ({m},). Got shape {w0.shape} instead.")
    k = np.shape(lower)[1] if np.ndim(lower) == 2 else 0
    lower, upper = _check_box("lower", lower, (m, k)), _check_box("upper", upper, (m, k))
    check_bounds(lower.T, upper.T, np.full(k, c))
    G, target, L = stats.gram, stats.xty[:, cols[0]], stats.lipschitz
    W = np.clip(w0[:, None], lower, upper)
    left = []
    for i in range(k):
        solved = _edit_active_set(G, target, alpha, lower[:, i], upper[:, i], W[:, i], L, tol)
        if solved is None:
            left.append(i)
        else:
            W[:, i] = solved
    n_iter, converged = 0, True
    if left:
        rest = solve_students(
            stats,
            alpha,
            lower[:, left],
            upper[:, left],
            classes=np.full(len(left), c),
            W0=W[:, left],
            tol=tol,
            max_iter=max_iter,
        )
        W[:, left], n_iter, converged = rest.coef, rest.n_iter, rest.converged
    kkt = gradient_mapping(W, G @ W - target[:, None], L, alpha, lower, upper)
    kkt = kkt.max(axis=0) if m else np.zeros(k)
    intercept = stats.y_mean[c] - W.T @ stats.x_mean
    return SolveResult(coef=W, intercept=intercept, n_iter=n_iter, converged=converged, kkt_violation=kkt)
