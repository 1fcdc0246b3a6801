"""``bench scale``: the students at 10k..1M images, on synthetic float16 workspaces written as real ones.

Per size: the Gram build's time and memory (in a fresh process, measured by its own high-water
mark), opening the workspace as the app does, the solver's re-fit per slider move, and a slider
move end to end through a tuning session with everything the Tune and Students pages compute
after it. Ratios compare the largest size with the smallest in the same run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .bench import ms, pinned_refit, slider_move


def rss_mb(field: str = "VmHWM") -> float:
    """This process's resident memory from /proc/self/status: its high-water mark (``VmHWM``) or
    current size (``VmRSS``), in MB. Unlike ``ru_maxrss``, which a child started with fork + exec
    inherits from its parent, ``VmHWM`` belongs to the process's own address space."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field} line; bench scale measures memory on Linux only")


def gram_child(root: str) -> None:
    """Run by ``bench_scale`` in a fresh process: build (and cache) one workspace's Gram statistics;
    print the time, and the process's peak memory after loading the workspace and after the build."""
    from conceptkd_core.explorer import workspace_stats
    from conceptkd_core.store.workspace import load_workspace

    workspace = load_workspace(root, verify="size")
    loaded_mb = rss_mb()
    t0 = time.perf_counter()
    workspace_stats(workspace, rebuild=True)
    print(
        json.dumps({"gram_build_s": time.perf_counter() - t0, "loaded_rss_mb": loaded_mb, "peak_rss_mb": rss_mb()}),
        flush=True,
    )


def measure_gram(root: Path) -> dict:
    """``gram_child`` in a fresh Python process; its JSON line."""
    package_root = str(Path(__file__).resolve().parent.parent)
    child = subprocess.run(
        [sys.executable, "-c", f"from conceptkd_tools.bench_scale import gram_child; gram_child({str(root)!r})"],
        cwd=package_root,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def after_a_move(explorer, session, c: int) -> float:
    """The figures the Tune and Students pages show after a move of class ``c``, besides the move's
    own held-out figures (the session records those): the class's weights (Tune), then the per-class
    table and the bank's headline (Students: held-out, with the in-sample AP beside it). Returns the
    seconds the Students page's part took."""
    from conceptkd_core.explorer import metrics_summary, top_concepts

    top_concepts(session, c)
    t0 = time.perf_counter()
    metrics_summary(explorer, session)
    return time.perf_counter() - t0


def _time_moves(explorer, moves: int, session_moves: int, seed: int) -> dict:
    """``moves`` slider moves timed through the solver; the first ``session_moves`` also through a
    tuning session (the same edits, so both stay in step) and, separately, the moved class's scores
    and held-out metrics computed afresh."""
    from conceptkd_core.explorer import disagreement_table, new_session
    from conceptkd_core.students.metrics import student_class_metrics
    from conceptkd_core.students.scores import class_scores

    session = new_session(explorer, autosave=False)
    fresh = session.bank.copy()  # for the side-by-side re-fits of ``alternating_refits``
    t0 = time.perf_counter()
    after_a_move(explorer, session, 0)  # the Students page's first visit: every class's metrics, cached
    first_metrics_s = time.perf_counter() - t0
    shared, rows = explorer.shared, explorer.shared.held_out_rows
    labels, logits = explorer.workspace.labels, explorer.workspace.teacher_logits
    bank = session.bank.copy()
    rng = np.random.default_rng(seed + 1)
    refit_s, iters, metrics_s, move_s, move_cpu_s, students_s, disagreement_s = [], [], [], [], [], [], []
    for move in range(moves):
        c, j, value = slider_move(rng, bank, move)
        refit_s.append(pinned_refit(bank, c, j, value))
        iters.append(bank.n_iter_)
        if move >= session_moves:
            continue
        t0 = time.perf_counter()
        scores = class_scores(shared, c, bank.coef_[c], bank.intercept_[c])[rows]
        probs = bank.predict_proba_from_scores(scores)
        student_class_metrics(labels[rows, c], logits[rows, c], shared.teacher_probs[rows, c], scores, probs)
        metrics_s.append(time.perf_counter() - t0)
        t0, cpu0 = time.perf_counter(), time.process_time()
        session.set_weight(c, j, value)  # re-fit + scores + held-out figures before/after + history
        students_s.append(after_a_move(explorer, session, c))
        move_s.append(time.perf_counter() - t0)
        move_cpu_s.append(time.process_time() - cpu0)
        t0 = time.perf_counter()
        disagreement_table(session, c)  # the Students page's image list, timed on its own
        disagreement_s.append(time.perf_counter() - t0)
    return {
        "first_metrics_s": round(first_metrics_s, 3),
        "refit_ms_p50": ms(float(np.median(refit_s))),
        "refit_ms_p90": ms(float(np.percentile(refit_s, 90))),
        "refit_iters_p50": float(np.median(iters)),
        "metrics_after_move_ms_p50": ms(float(np.median(metrics_s))),
        "move_total_ms_p50": ms(float(np.median(move_s))),
        "move_total_ms_p90": ms(float(np.percentile(move_s, 90))),
        # Of a move, what the Tune page alone needs (its fragment reruns on a drag; the Students
        # page's table is recomputed when that page is shown).
        "tune_page_move_ms_p50": ms(float(np.median(np.subtract(move_s, students_s)))),
        # CPU seconds of this process in a move (all its threads): beside the wall time, it tells a
        # slow machine from a busy one.
        "move_cpu_ms_p50": ms(float(np.median(move_cpu_s))),
        "disagreements_ms_p50": ms(float(np.median(disagreement_s))),
        "bank": fresh,
    }


def alternating_refits(small, large, moves: int, seed: int) -> tuple[float, float]:
    """p50 seconds of a re-fit of the ``small`` and of the ``large`` workspace's students, their moves
    taken in turn (which goes first alternating too): a re-fit costs about a millisecond, and two
    medians taken a minute apart differ by more than that whenever another process wakes up."""
    times: tuple[list, list] = ([], [])
    rngs = (np.random.default_rng(seed + 2), np.random.default_rng(seed + 2))
    for move in range(moves):
        for which in (0, 1) if move % 2 == 0 else (1, 0):
            bank = (small, large)[which]
            c, j, value = slider_move(rngs[which], bank, move)
            times[which].append(pinned_refit(bank, c, j, value))
    return float(np.median(times[0])), float(np.median(times[1]))


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

    Per size: Gram build time and peak memory (a fresh process's own ``VmHWM``); opening the
    workspace as the app does (``open_explorer``: base students, base scores, the columns of the
    concepts in use); the solver's re-fit per slider move (``moves`` of them); over the first
    ``session_moves``, the moved class's scores and held-out metrics computed afresh, and a move end
    to end: the session's re-fit, score update and held-out figures, then what the Tune and
    Students pages compute (``after_a_move``). Before the moves, the Students page's first visit
    fills the metric cache, as in the app. Every figure is on the held-out images (the synthetic
    workspace's val + test split, 40 %).
    """
    from conceptkd_core.explorer import open_explorer
    from conceptkd_core.store.workspace import CONCEPTS_FILE, META_FILE, read_meta

    from .synthetic import write_synthetic_workspace

    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="conceptkd-scale-"))
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
            gram = measure_gram(root)
            t0 = time.perf_counter()
            explorer = open_explorer(root, alpha=alpha)
            open_s = time.perf_counter() - t0
            rows.append(
                {
                    "n_images": n,
                    "n_held_out": explorer.split.n_held_out,
                    "concepts_mb": round((root / CONCEPTS_FILE).stat().st_size / 2**20, 1),
                    "write_s": None if write_s is None else round(write_s, 1),
                    "gram_build_s": round(gram["gram_build_s"], 3),
                    "gram_peak_rss_mb": round(gram["peak_rss_mb"], 1),
                    "loaded_rss_mb": round(gram["loaded_rss_mb"], 1),
                    "open_s": round(open_s, 3),
                    "columns_mb": round(explorer.shared.columns.nbytes / 2**20, 1),
                    **_time_moves(explorer, moves, session_moves, seed),
                }
            )
            del explorer
    finally:
        if not folder:
            shutil.rmtree(base, ignore_errors=True)
    small, large = rows[0], rows[-1]
    banks = [row.pop("bank") for row in rows]
    small_refit, large_refit = alternating_refits(banks[0], banks[-1].copy(), moves, seed)
    result = {
        "bench": "scale",
        "n_concepts": n_concepts,
        "n_classes": n_classes,
        "alpha": alpha,
        "moves": moves,
        "session_moves": session_moves,
        "rows": rows,
        # from re-fits of the two taken in turn (``alternating_refits``), not the rows' p50s of minutes apart
        "refit_ratio_largest_vs_smallest": round(large_refit / small_refit, 2),
        "gram_time_per_row_ratio": round(
            (large["gram_build_s"] / large["n_images"]) / (small["gram_build_s"] / small["n_images"]), 2
        ),
        "gram_peak_rss_mb_largest": large["gram_peak_rss_mb"],
        "move_total_ms_p50_largest": large["move_total_ms_p50"],
    }
    if plot:
        plot_scale(rows, plot)
        result["plot"] = str(plot)
    return result


def plot_scale(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([r["n_images"] for r in rows], dtype=float)
    fig, (times, memory) = plt.subplots(1, 2, figsize=(10, 4), dpi=110)
    for key, label, scale in (
        ("gram_build_s", "Gram build (once per workspace)", 1.0),
        ("move_total_ms_p50", "slider move, end to end (p50)", 1e-3),
        ("metrics_after_move_ms_p50", "scores + held-out metrics of the moved class (p50)", 1e-3),
        ("refit_ms_p50", "solver re-fit (p50)", 1e-3),
    ):
        times.loglog(n, [r[key] * scale for r in rows], marker="o", label=label)
    # Through the largest size: small sizes carry a fixed cost (process, eigenvalues) that hides the slope.
    times.loglog(n, rows[-1]["gram_build_s"] * n / n[-1], ls=":", color="grey", label="linear in n")
    times.axhline(0.25, ls="--", color="red", label="goal: a move in 250 ms")
    _label(times, "seconds", "Time vs n (log-log)")
    memory.loglog(n, [r["gram_peak_rss_mb"] for r in rows], marker="o", label="Gram build, peak RSS (VmHWM)")
    memory.loglog(n, [r["concepts_mb"] for r in rows], marker="s", label="concept matrix on disk (float16)")
    memory.loglog(n, [max(r["columns_mb"], 1e-3) for r in rows], marker="^", label="columns kept for moves")
    memory.axhline(1200, ls="--", color="red", label="goal: Gram build 1.2 GB")
    _label(memory, "MB", "Memory vs n (log-log)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _label(axes, ylabel: str, title: str) -> None:
    axes.set_xlabel("images (n)")
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend(fontsize=7)
    axes.grid(True, which="both", alpha=0.3)
