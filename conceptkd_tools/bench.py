"""Benchmarks that hold the speed goals. Each prints one JSON line; ratios come from one run."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.gram import GramStats

from .synthetic import make_problem


def ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def slider_move(rng: np.random.Generator, bank: StudentBank, move: int) -> tuple[int, int, float]:
    """A move an analyst makes: drag one non-zero weight of a random class to 0.3-1.7x its value,
    or (every fifth move) remove it. Returns (class, concept, new value)."""
    n_classes, n_concepts = bank.coef_.shape
    c = int(rng.integers(n_classes))
    support = np.flatnonzero(bank.coef_[c])
    j = int(rng.choice(support)) if support.size else int(rng.integers(n_concepts))
    value = 0.0 if move % 5 == 4 else float(bank.coef_[c, j] * rng.uniform(0.3, 1.7))
    return c, j, value


def pinned_refit(bank: StudentBank, c: int, j: int, value: float) -> float:
    """Pin weight (c, j) at ``value`` (a slider drag), re-fit class ``c`` warm-started; the seconds it took."""
    bank.lower_[c, j] = bank.upper_[c, j] = value
    t0 = time.perf_counter()
    bank.refit([c])
    return time.perf_counter() - t0


def bench_refit(
    n_images: int = 11540,
    n_concepts: int = 584,
    n_classes: int = 20,
    alpha: float = 1e-3,
    moves: int = 100,
    seed: int = 0,
    sklearn_tol: float = 1e-4,
) -> dict:
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
        times.append(pinned_refit(bank, *slider_move(rng, bank, move)))
        iters.append(bank.n_iter_)
    kkt = float(bank.kkt_violation().max())
    refit_p50 = float(np.median(times))
    return {
        "bench": "refit",
        "n_images": n_images,
        "n_concepts": n_concepts,
        "n_classes": n_classes,
        "alpha": alpha,
        "tol": bank.tol,
        "sklearn_tol": sklearn_tol,
        "moves": moves,
        "gram_build_ms": ms(gram_s),
        "refit_ms_p50": ms(refit_p50),
        "refit_ms_p90": ms(np.percentile(times, 90)),
        "refit_ms_max": ms(max(times)),
        "refit_iters_p50": float(np.median(iters)),
        "cold_fit_ms": ms(cold_s),
        "cold_converged": cold_converged,
        "sklearn_lasso_ms": ms(sklearn_s),
        # What a slider move costs us (one warm re-fit, bank consistent) vs re-fitting the bank
        # with scikit-learn; and, for a like-for-like solver comparison, both cold fits.
        "speedup_vs_sklearn": round(sklearn_s / refit_p50, 1),
        "speedup_vs_sklearn_one_class": round(sklearn_s / n_classes / refit_p50, 1),
        "cold_speedup_vs_sklearn": round(sklearn_s / cold_s, 2),
        "objective": float(cold_objective),
        "sklearn_objective": float(sk_objective),
        "objective_rel_gap": float((cold_objective - sk_objective) / abs(sk_objective)),
        "nonzero_per_class": float((bank.coef_ != 0).sum(axis=1).mean()),
        "max_kkt_violation_after_moves": kkt,
    }


def bench_extract(**kwargs) -> dict:
    """``bench_extract.bench_extract`` (its own module: image files, worker processes, a workspace)."""
    from .bench_extract import bench_extract as extract

    return extract(**kwargs)


def bench_app(workspace: str | None = None, moves: int = 10) -> dict:
    """The app on a workspace (default: the embedded demo), driven in-process by Streamlit's AppTest.

    Page times are full script reruns after one warm-up visit each (caches filled). A slider
    move is timed as AppTest runs it: the whole page rerun, an upper bound on the fragment
    rerun a browser triggers. Resident memory is the process peak after visiting every page;
    ``torch_imported`` checks that browsing never loaded CLIP.
    """
    import resource
    import sys
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from .tune_board_driver import board, move_slider

    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))  # the views are scripts beside app.py, not an installed package
    from views.common import PAGES

    pages = [view.script for view in PAGES]
    at = AppTest.from_file(str(root / "app.py"), default_timeout=300)
    if workspace:
        at.session_state["workspace_root"] = str(Path(workspace).resolve())
    t0 = time.perf_counter()
    at.run()
    first_load = time.perf_counter() - t0
    page_s = {}
    for page in pages * 2:  # the first pass warms caches; the second is timed
        t0 = time.perf_counter()
        at.switch_page(page).run()
        page_s[page] = time.perf_counter() - t0
        if at.exception:
            raise RuntimeError(f"{page}: {at.exception[0].message}")
    at.switch_page("views/tune.py").run()
    move_s = []
    for i in range(moves):
        drawn = board(at)
        weight = drawn["rows"][0]["weight"]
        value = round(weight * (0.5 if i % 2 else 1.5), 2) if weight else 0.1
        value = max(min(value, drawn["span"]), -drawn["span"])
        t0 = time.perf_counter()
        move_slider(at, value)
        move_s.append(time.perf_counter() - t0)
    slowest = max(page_s, key=page_s.get)
    return {
        "bench": "app",
        "first_load_ms": ms(first_load),
        "slider_move_ms_p50": ms(float(np.median(move_s))),
        "slowest_page": slowest,
        "slowest_page_ms": ms(page_s[slowest]),
        "page_ms": {Path(p).stem: ms(v) for p, v in page_s.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_imported": "torch" in sys.modules,
    }


def bench_scale(**kwargs) -> dict:
    """``bench_scale.bench_scale`` (its own module: workspaces, a child process, plots)."""
    from .bench_scale import bench_scale as scale

    return scale(**kwargs)


BENCHMARKS = {"refit": bench_refit, "extract": bench_extract, "app": bench_app, "scale": bench_scale}


def run(name: str, **kwargs) -> dict:
    result = BENCHMARKS[name](**kwargs)
    print(json.dumps(result), flush=True)
    return result
