"""Benchmarks that hold the speed goals. Each prints one JSON line; ratios come from one run."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np

from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.gram import GramStats

from .synthetic import make_problem


def _ms(seconds: float) -> float:
    return round(seconds * 1e3, 3)


def _slider_move(rng: np.random.Generator, bank: StudentBank, move: int) -> tuple[int, int, float]:
    """A move an analyst makes: drag one non-zero weight of a random class to 0.3-1.7x its value,
    or (every fifth move) remove it. Returns (class, concept, new value)."""
    n_classes, n_concepts = bank.coef_.shape
    c = int(rng.integers(n_classes))
    support = np.flatnonzero(bank.coef_[c])
    j = int(rng.choice(support)) if support.size else int(rng.integers(n_concepts))
    value = 0.0 if move % 5 == 4 else float(bank.coef_[c, j] * rng.uniform(0.3, 1.7))
    return c, j, value


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
        c, j, value = _slider_move(rng, bank, move)
        bank.lower_[c, j] = bank.upper_[c, j] = value
        t0 = time.perf_counter()
        bank.refit([c])
        times.append(time.perf_counter() - t0)
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
        "gram_build_ms": _ms(gram_s),
        "refit_ms_p50": _ms(refit_p50),
        "refit_ms_p90": _ms(np.percentile(times, 90)),
        "refit_ms_max": _ms(max(times)),
        "refit_iters_p50": float(np.median(iters)),
        "cold_fit_ms": _ms(cold_s),
        "cold_converged": cold_converged,
        "sklearn_lasso_ms": _ms(sklearn_s),
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


def bench_extract(
    model_name: str = "ViT-B-16",
    batch_size: int = 8,
    batches: int = 4,
    device: str = "cpu",
    n_concepts: int = 584,
    seed: int = 0,
) -> dict:
    """Dense extraction (segments + concept vector) vs plain ``encode_image``, same model/batch/device.

    A randomly initialised model: speed does not depend on trained weights. Both paths start
    from the same model-sized uint8 images; concept text embeddings are precomputed (they are
    cached per vocabulary in real runs). One warm-up batch each is not timed.
    """
    import torch

    from conceptkd_core.extract.clip_backend import ClipModel, dense_patch_features, encode_image, to_model_input
    from conceptkd_core.extract.segments import concepts_for_image, superpixels
    from conceptkd_core.extract.torch_compat import import_open_clip

    open_clip = import_open_clip()
    torch.manual_seed(seed)
    model = open_clip.create_model(model_name, pretrained=None, device=device).eval()
    visual = model.visual
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    patch = visual.patch_size[0] if isinstance(visual.patch_size, (tuple, list)) else visual.patch_size
    clip = ClipModel(
        model,
        None,
        model_name,
        None,
        None,
        size,
        patch,
        open_clip.OPENAI_DATASET_MEAN,
        open_clip.OPENAI_DATASET_STD,
        device,
    )
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(batch_size):  # blocky synthetic scenes: superpixels have real edges to follow
        small = rng.integers(0, 255, (size // 28, size // 28, 3), dtype=np.uint8)
        images.append(np.kron(small, np.ones((28, 28, 1), dtype=np.uint8)))
    text = rng.standard_normal(
        (n_concepts, model.text_projection.shape[1] if model.text_projection is not None else 512)
    )
    text = (text / np.linalg.norm(text, axis=1, keepdims=True)).astype(np.float32)

    def plain():
        encode_image(clip, to_model_input(clip, images))
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def dense():
        feats = dense_patch_features(clip, to_model_input(clip, images)).float().cpu().numpy()
        for i, image in enumerate(images):
            concepts_for_image(feats[i], superpixels(image), text)

    rates = {}
    for name, fn in (("plain", plain), ("dense", dense)):
        fn()
        t0 = time.perf_counter()
        for _ in range(batches):
            fn()
        rates[name] = batches * batch_size / (time.perf_counter() - t0)
    return {
        "bench": "extract",
        "model": model_name,
        "image_size": size,
        "batch_size": batch_size,
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "n_concepts": n_concepts,
        "dense_images_per_s": round(rates["dense"], 2),
        "encode_image_images_per_s": round(rates["plain"], 2),
        "ratio": round(rates["dense"] / rates["plain"], 3),
    }


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
        slider = at.slider[0]
        value = slider.value * (0.5 if i % 2 else 1.5) if slider.value else 0.1
        slider.set_value(max(min(value, slider.max), slider.min))
        t0 = time.perf_counter()
        at.run()
        move_s.append(time.perf_counter() - t0)
    slowest = max(page_s, key=page_s.get)
    return {
        "bench": "app",
        "first_load_ms": _ms(first_load),
        "slider_move_ms_p50": _ms(float(np.median(move_s))),
        "slowest_page": slowest,
        "slowest_page_ms": _ms(page_s[slowest]),
        "page_ms": {Path(p).stem: _ms(v) for p, v in page_s.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_imported": "torch" in sys.modules,
    }


def _gram_child(root: str) -> None:
    """Run by ``bench_scale`` in a fresh process, so the peak memory is the Gram build's alone:
    build (and cache) one workspace's Gram statistics; print time and peak resident memory."""
    import resource

    from conceptkd_core.explorer import workspace_stats
    from conceptkd_core.store.workspace import load_workspace

    workspace = load_workspace(root, verify="size")
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    workspace_stats(workspace, rebuild=True)
    print(
        json.dumps(
            {
                "gram_build_s": time.perf_counter() - t0,
                "loaded_rss_mb": loaded_mb,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )


def bench_scale(
    sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
    n_concepts: int = 584,
    n_classes: int = 20,
    alpha: float = 1e-3,
    moves: int = 100,
    session_moves: int = 20,
    seed: int = 0,
    folder: str | None = None,
    plot: str | None = None,
) -> dict:
    """Students at 10k..1M images on synthetic float16 workspaces (written once into ``folder``).

    Per size: Gram build time and peak memory (in a fresh process), the solver's re-fit per
    slider move (``moves`` of them), and, over the first ``session_moves``, the cost of updating
    the moved class's scores over every image and recomputing its metrics (AP needs a sort of
    all n scores), and a move end to end through a tuning session. Ratios compare the largest
    size with the smallest in this run.
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from conceptkd_core.explorer import workspace_stats
    from conceptkd_core.store.workspace import CONCEPTS_FILE, META_FILE, load_workspace, read_meta
    from conceptkd_core.students.metrics import student_class_metrics
    from conceptkd_core.students.scores import SharedScores, class_scores
    from conceptkd_core.students.session import TuningSession

    from .synthetic import write_synthetic_workspace

    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="conceptkd-scale-"))
    package_root = str(Path(__file__).resolve().parent.parent)
    rows = []
    try:
        for n in sorted(sizes):
            root = base / f"synthetic-{n}-{n_concepts}-{n_classes}-{seed}"
            write_s = None
            if not (root / META_FILE).is_file() or read_meta(root)["n_images"] != n:
                shutil.rmtree(root, ignore_errors=True)
                t0 = time.perf_counter()
                write_synthetic_workspace(root, n, n_concepts, n_classes, seed=seed)
                write_s = time.perf_counter() - t0
            child = subprocess.run(
                [sys.executable, "-c", f"from conceptkd_tools.bench import _gram_child; _gram_child({str(root)!r})"],
                cwd=package_root,
                capture_output=True,
                text=True,
                check=True,
            )
            gram = json.loads(child.stdout.strip().splitlines()[-1])

            workspace = load_workspace(root, verify="size")
            X, logits = workspace.concept_matrix, workspace.teacher_logits
            stats = workspace_stats(workspace)  # the child's cache
            bank = StudentBank(alpha=alpha).fit_stats(stats)
            t0 = time.perf_counter()
            shared = SharedScores.build(bank, X, logits)
            shared_s = time.perf_counter() - t0
            session = TuningSession(
                bank.copy(),
                X,
                logits,
                workspace.labels,
                workspace.classes,
                workspace.vocabulary,
                shared=shared,
                user="bench",
            )
            rng = np.random.default_rng(seed + 1)
            refit_s, iters, metrics_s, move_s = [], [], [], []
            for move in range(moves):
                c, j, value = _slider_move(rng, session.bank, move)
                solver = session.bank.copy()
                solver.lower_[c, j] = solver.upper_[c, j] = value
                t0 = time.perf_counter()
                solver.refit([c])
                refit_s.append(time.perf_counter() - t0)
                iters.append(solver.n_iter_)
                if move >= session_moves:
                    session.bank = solver  # the solver's state carries on; no session timing
                    continue
                t0 = time.perf_counter()
                scores = class_scores(X, shared, c, solver.coef_[c], solver.intercept_[c])
                student_class_metrics(
                    workspace.labels[:, c],
                    logits[:, c],
                    shared.teacher_probs[:, c],
                    scores,
                    solver.predict_proba_from_scores(scores),
                )
                metrics_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                session.set_weight(c, j, value)  # refit + scores + metrics + history, as the app does
                move_s.append(time.perf_counter() - t0)
            rows.append(
                {
                    "n_images": n,
                    "concepts_mb": round((root / CONCEPTS_FILE).stat().st_size / 2**20, 1),
                    "write_s": None if write_s is None else round(write_s, 1),
                    "gram_build_s": round(gram["gram_build_s"], 3),
                    "gram_peak_rss_mb": round(gram["peak_rss_mb"], 1),
                    "loaded_rss_mb": round(gram["loaded_rss_mb"], 1),
                    "session_base_scores_s": round(shared_s, 3),
                    "refit_ms_p50": _ms(float(np.median(refit_s))),
                    "refit_ms_p90": _ms(float(np.percentile(refit_s, 90))),
                    "refit_iters_p50": float(np.median(iters)),
                    "metrics_after_move_ms_p50": _ms(float(np.median(metrics_s))),
                    "move_total_ms_p50": _ms(float(np.median(move_s))),
                }
            )
    finally:
        if not folder:
            shutil.rmtree(base, ignore_errors=True)
    small, large = rows[0], rows[-1]
    result = {
        "bench": "scale",
        "n_concepts": n_concepts,
        "n_classes": n_classes,
        "alpha": alpha,
        "moves": moves,
        "session_moves": session_moves,
        "rows": rows,
        "refit_ratio_largest_vs_smallest": round(large["refit_ms_p50"] / small["refit_ms_p50"], 2),
        "gram_time_per_row_ratio": round(
            (large["gram_build_s"] / large["n_images"]) / (small["gram_build_s"] / small["n_images"]), 2
        ),
        "gram_peak_rss_mb_largest": large["gram_peak_rss_mb"],
    }
    if plot:
        _plot_scale(rows, plot)
        result["plot"] = str(plot)
    return result


def _plot_scale(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([r["n_images"] for r in rows], dtype=float)
    fig, (times, memory) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, label, scale in (
        ("gram_build_s", "Gram build (once per workspace)", 1.0),
        ("move_total_ms_p50", "slider move, end to end (p50)", 1e-3),
        ("metrics_after_move_ms_p50", "scores + AP of the moved class (p50)", 1e-3),
        ("refit_ms_p50", "solver re-fit (p50)", 1e-3),
    ):
        times.loglog(n, [r[key] * scale for r in rows], marker="o", label=label)
    # Through the largest size: small sizes carry a fixed cost (process, eigenvalues) that hides the slope.
    times.loglog(n, rows[-1]["gram_build_s"] * n / n[-1], ls=":", color="grey", label="linear in n")
    times.set_xlabel("images (n)")
    times.set_ylabel("seconds")
    times.set_title("Time vs n (log-log)")
    times.legend(fontsize=7)
    times.grid(True, which="both", alpha=0.3)
    memory.loglog(n, [r["gram_peak_rss_mb"] for r in rows], marker="o", label="Gram build, peak RSS")
    memory.loglog(n, [r["concepts_mb"] for r in rows], marker="s", label="concept matrix on disk (float16)")
    memory.axhline(2048, ls="--", color="red", label="goal: 2 GB")
    memory.set_xlabel("images (n)")
    memory.set_ylabel("MB")
    memory.set_title("Memory vs n (log-log)")
    memory.legend(fontsize=7)
    memory.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    from pathlib import Path

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


BENCHMARKS = {"refit": bench_refit, "extract": bench_extract, "app": bench_app, "scale": bench_scale}


def run(name: str, **kwargs) -> dict:
    result = BENCHMARKS[name](**kwargs)
    print(json.dumps(result), flush=True)
    return result
