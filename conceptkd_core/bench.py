"""Benchmarks that hold the speed goals. Each prints one JSON line; ratios come from one run."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from .gram import GramStats
from .students import StudentBank
from .synthetic import make_problem


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def bench_refit(n_images: int = 11540, n_concepts: int = 584, n_classes: int = 20, alpha: float = 1e-3,
                moves: int = 100, seed: int = 0, sklearn_tol: float = 1e-4) -> dict:
    """Interactive re-fit at PASCAL VOC 2012 scale, against scikit-learn's Lasso on the same Gram.

    One move = pin one weight of one class (a slider drag to 0.3-1.7x its value, or to 0 for
    a removal), then re-fit that class warm-started; the rest of the bank is untouched and
    stays optimal, so the whole bank is consistent after every move.
    """
    from sklearn.linear_model import Lasso

    problem = make_problem(n_images, n_concepts, n_classes, seed=seed)
    X = problem.concept_matrix.astype(np.float16)  # as stored in a workspace
    t0 = time.perf_counter()
    stats = GramStats.from_arrays(X, problem.teacher_logits)
    gram_s = time.perf_counter() - t0

    bank = StudentBank(alpha=alpha)
    t0 = time.perf_counter()
    bank.fit_stats(stats)
    cold_s = time.perf_counter() - t0
    cold_objective = bank.objective().sum()
    cold_converged = bank.converged_

    # scikit-learn on the same (centred) problem without bounds, Gram precomputed.
    X64 = np.asarray(X, dtype=np.float64)
    Y64 = np.asarray(problem.teacher_logits, dtype=np.float64)
    gram_sk = stats.gram * n_images
    lasso = Lasso(alpha=alpha, precompute=gram_sk, fit_intercept=True, tol=sklearn_tol, max_iter=100000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        lasso.fit(X64, Y64)
        sklearn_s = time.perf_counter() - t0
    W_sk = np.atleast_2d(lasso.coef_).T
    sk_objective = (stats.squared_loss(W_sk) + alpha * np.abs(W_sk).sum(axis=0)).sum()

    rng = np.random.default_rng(seed + 1)
    times, iters = [], []
    for move in range(moves):
        c = int(rng.integers(n_classes))
        support = np.flatnonzero(bank.coef_[c])
        j = int(rng.choice(support)) if support.size else int(rng.integers(n_concepts))
        value = 0.0 if move % 5 == 4 else float(bank.coef_[c, j] * rng.uniform(0.3, 1.7))
        bank.lower_[c, j] = bank.upper_[c, j] = value
        t0 = time.perf_counter()
        bank.refit([c])
        times.append(time.perf_counter() - t0)
        iters.append(bank.n_iter_)
    kkt = float(bank.kkt_violation().max())
    refit_p50 = float(np.median(times))
    return {
        "bench": "refit", "n_images": n_images, "n_concepts": n_concepts, "n_classes": n_classes,
        "alpha": alpha, "tol": bank.tol, "sklearn_tol": sklearn_tol, "moves": moves,
        "gram_build_ms": _ms(gram_s),
        "refit_ms_p50": _ms(refit_p50), "refit_ms_p90": _ms(np.percentile(times, 90)),
        "refit_ms_max": _ms(max(times)), "refit_iters_p50": float(np.median(iters)),
        "cold_fit_ms": _ms(cold_s), "cold_converged": cold_converged,
        "sklearn_lasso_ms": _ms(sklearn_s),
        # What a slider move costs us (one warm re-fit, bank consistent) vs re-fitting the bank
        # with scikit-learn; and, for a like-for-like solver comparison, both cold fits.
        "speedup_vs_sklearn": round(sklearn_s / refit_p50, 1),
        "speedup_vs_sklearn_one_class": round(sklearn_s / n_classes / refit_p50, 1),
        "cold_speedup_vs_sklearn": round(sklearn_s / cold_s, 2),
        "objective": float(cold_objective), "sklearn_objective": float(sk_objective),
        "objective_rel_gap": float((cold_objective - sk_objective) / abs(sk_objective)),
        "nonzero_per_class": float((bank.coef_ != 0).sum(axis=1).mean()),
        "max_kkt_violation_after_moves": kkt,
    }


BENCHMARKS = {"refit": bench_refit}


def run(name: str, **kwargs) -> dict:
    result = BENCHMARKS[name](**kwargs)
    print(json.dumps(result), flush=True)
    return result
