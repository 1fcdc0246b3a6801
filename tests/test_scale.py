"""The pieces that keep a big workspace interactive: incremental scores, per-state metric cache,
cached Gram statistics, streamed synthetic workspaces and the scale benchmark."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core.explorer import (
    disagreement_table,
    fit_split,
    import_session,
    metrics_table,
    new_session,
    open_explorer,
    resume_session,
    workspace_stats,
)
from conceptkd_core.store.side_files import GRAM_FILE
from conceptkd_core.store.workspace import load_workspace
from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.gram import GramStats
from conceptkd_core.students.metrics import class_metrics, disagreements
from conceptkd_core.students.scores import MetricCache, SharedScores, class_scores
from conceptkd_tools.synthetic import make_problem, write_synthetic_workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return write_synthetic_workspace(
        tmp_path_factory.mktemp("syn") / "ws", n_images=3000, n_concepts=60, n_classes=5, seed=1, chunk_rows=700
    )


def test_synthetic_workspace_is_streamed_and_matches_the_in_memory_problem(workspace):
    problem = make_problem(3000, 60, 5, seed=1, chunk_rows=700)
    assert workspace.concept_matrix.dtype == np.float16 and isinstance(workspace.concept_matrix, np.memmap)
    np.testing.assert_array_equal(workspace.concept_matrix, problem.concept_matrix.astype(np.float16))
    np.testing.assert_array_equal(workspace.teacher_logits, problem.teacher_logits)
    np.testing.assert_array_equal(workspace.labels, problem.labels)
    assert not list(workspace.root.glob(".*"))  # no staging or temp files left


def test_incremental_scores_equal_a_full_product(workspace):
    X = workspace.concept_matrix
    bank = StudentBank(alpha=1e-3).fit(np.asarray(X, np.float32), workspace.teacher_logits)
    shared = SharedScores.build(bank, X, workspace.teacher_logits)
    rng = np.random.default_rng(0)
    for n_changed in (0, 1, 5, 40, 60):  # few (gathered columns) and many (full product)
        coef = bank.coef_[2].copy()
        idx = rng.choice(60, n_changed, replace=False)
        coef[idx] += rng.normal(0, 0.5, n_changed)
        other = bank.copy()
        other.coef_[2], other.intercept_[2] = coef, bank.intercept_[2] + 0.25
        got = class_scores(shared, 2, coef, other.intercept_[2], chunk_rows=512)
        np.testing.assert_allclose(got, other.decision_function(X, classes=[2])[:, 0], atol=2e-5)


def test_session_scores_are_a_function_of_the_weights_and_metrics_are_cached(workspace, tmp_path):
    explorer = open_explorer(workspace.root)
    session = new_session(explorer, autosave=False)
    before = session.student_scores.copy()
    session.set_weight(1, int(np.argmax(np.abs(session.bank.coef_[1]))), 0.0)
    np.testing.assert_allclose(session.student_scores, session.bank.decision_function(session.X), atol=2e-5)
    after = session.student_scores.copy()
    cached = len(explorer.shared.metric_cache)
    session.undo()
    np.testing.assert_array_equal(session.student_scores, before)  # exactly, not approximately
    session.redo()
    np.testing.assert_array_equal(session.student_scores, after)
    assert len(explorer.shared.metric_cache) == cached  # undo/redo states were already cached

    # The cached per-class table is the vectorised reference on the held-out images, column by column.
    table = metrics_table(explorer, session)
    rows = explorer.shared.held_out_rows
    assert 0 < rows.size < workspace.n_images and not np.isin(rows, explorer.shared.fit_rows).any()
    reference = class_metrics(
        session.labels[rows],
        session.teacher_logits[rows],
        session.student_scores[rows],
        session.student_probs()[rows],
        session.classes,
    )
    for column in (
        "teacher_ap",
        "student_ap",
        "agreement",
        "balanced_agreement",
        "decision_f1",
        "logit_corr",
        "fidelity_ap",
        "positives",
    ):
        np.testing.assert_allclose(table[column].to_numpy(float), reference[column].to_numpy(float), atol=1e-12)

    # Disagreements for one class and for all agree with the reference ranking.
    for c in (None, 3):
        ours = disagreement_table(session, c, top=15)
        ref = disagreements(session.teacher_logits[rows], session.student_probs()[rows], c, 15)
        np.testing.assert_array_equal(ours["row"], rows[ref["row"]])
        np.testing.assert_allclose(ours["gap"], ref["gap"], atol=1e-12)

    # A second session shares the base scores and the cache, but not the first one's edits.
    second = new_session(explorer, autosave=False)
    assert second.shared is explorer.shared and second.cursor == 0
    np.testing.assert_array_equal(second.student_scores, explorer.shared.base_scores)
    assert not explorer.shared.base_scores.flags.writeable


def test_imported_and_resumed_sessions_share_the_explorer_base_scores(workspace, tmp_path):
    explorer = open_explorer(workspace.root)
    session = new_session(explorer, autosave=False)
    session.set_weight(1, int(np.argmax(np.abs(session.bank.coef_[1]))), 0.0)
    session.autosave_path = tmp_path / "autosaved.json"
    session.autosave()
    imported = import_session(explorer, session.export_json().encode(), tmp_path / "imported.json")
    resumed = resume_session(explorer, tmp_path / "autosaved.json")
    for restored in (imported, resumed):
        assert restored.shared is explorer.shared  # no second pass over the concept matrix
        assert restored.session_id == session.session_id and restored.cursor == 1
        np.testing.assert_array_equal(restored.bank.coef_, session.bank.coef_)
        np.testing.assert_array_equal(restored.student_scores, session.student_scores)
    assert imported.autosave_path == tmp_path / "imported.json"
    assert resumed.autosave_path == tmp_path / "autosaved.json"
    imported.undo()  # it autosaves where it was told, not over the file it came from
    assert json.loads((tmp_path / "imported.json").read_text())["cursor"] == 0
    assert json.loads((tmp_path / "autosaved.json").read_text())["cursor"] == 1


def test_metric_cache_is_bounded_and_least_recently_used_goes_first():
    cache = MetricCache(max_entries=2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3 and len(cache) == 2


def test_gram_statistics_are_cached_per_workspace(workspace, tmp_path):
    path = workspace.root / GRAM_FILE
    path.unlink(missing_ok=True)
    built = workspace_stats(workspace)
    assert path.is_file()
    split = fit_split(workspace)  # the students' fit images only: 60 % 'train' in the synthetic workspace
    reference = GramStats.from_arrays(workspace.concept_matrix, workspace.teacher_logits, rows=split.fit)
    cached = workspace_stats(workspace, build=lambda: pytest.fail("should have been read from the cache"))
    for field in ("gram", "xty", "yty", "x_mean", "y_mean"):
        np.testing.assert_array_equal(getattr(cached, field), getattr(reference, field))
        np.testing.assert_array_equal(getattr(built, field), getattr(reference, field))
    assert cached.lipschitz == reference.lipschitz and cached.n_samples == split.n_fit == 1800

    # A cache made for another workspace, or a damaged one, is rebuilt, never used.
    other = write_synthetic_workspace(tmp_path / "other", n_images=500, n_concepts=60, n_classes=5, seed=2)
    (other.root / GRAM_FILE).write_bytes(path.read_bytes())
    fresh = workspace_stats(load_workspace(other.root))
    assert fresh.n_samples == 300
    (other.root / GRAM_FILE).write_bytes(b"garbage")
    assert workspace_stats(load_workspace(other.root)).n_samples == 300


def test_bench_scale_prints_the_table_and_plots(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "conceptkd_core",
            "bench",
            "scale",
            "--sizes",
            "2000,8000",
            "--n-concepts",
            "50",
            "--n-classes",
            "4",
            "--moves",
            "5",
            "--folder",
            str(tmp_path),
            "--plot",
            str(tmp_path / "scale.png"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["n_images"] for row in result["rows"]] == [2000, 8000]
    for row in result["rows"]:
        assert row["gram_build_s"] > 0 and row["gram_peak_rss_mb"] > 0 and row["refit_ms_p50"] > 0
        assert row["metrics_after_move_ms_p50"] > 0 and row["move_total_ms_p50"] > 0  # timings: no order asserted
        assert 0 < row["tune_page_move_ms_p50"] < row["move_total_ms_p50"]
        assert row["n_held_out"] == 0.4 * row["n_images"]  # val + test of the synthetic split
        assert row["columns_mb"] > 0
    large = result["rows"][-1]
    assert result["move_total_ms_p50_largest"] == large["move_total_ms_p50"]
    assert result["gram_peak_rss_mb_largest"] == large["gram_peak_rss_mb"]
    assert "refit_ratio_largest_vs_smallest" in result and "gram_time_per_row_ratio" in result
    assert result["refit_ratio_largest_vs_smallest"] > 0 and "bank" not in json.dumps(result)  # printable, banks gone
    assert (tmp_path / "scale.png").stat().st_size > 10_000


def test_bench_scale_measures_the_gram_child_s_own_peak_memory(workspace):
    from conceptkd_tools.bench_scale import measure_gram, rss_mb

    ballast = np.ones(700 * 2**20 // 8)  # this process grows by 700 MB before it starts the child
    assert rss_mb("VmRSS") > 700
    gram = measure_gram(workspace.root)
    assert 0 < gram["loaded_rss_mb"] <= gram["peak_rss_mb"] < 500, gram  # the child's own, not inherited
    assert gram["gram_build_s"] > 0 and ballast[-1] == 1


def test_read_rows_reads_a_memory_map_without_mapping_it(tmp_path):
    from conceptkd_core.store.rows import read_rows, row_chunks

    array = np.arange(7 * 5 * 3, dtype=np.float16).reshape(7, 5, 3)
    np.save(tmp_path / "a.npy", array)
    mapped = np.load(tmp_path / "a.npy", mmap_mode="r")
    for start, stop in ((0, 7), (2, 5), (6, 99), (4, 4)):
        got = read_rows(mapped, start, stop)
        assert not isinstance(got, np.memmap) or got.size == 0
        np.testing.assert_array_equal(got, array[start:stop])
    np.testing.assert_array_equal(read_rows(mapped[3:], 1, 3), array[4:6])  # a slice of a map: plain slicing
    np.testing.assert_array_equal(np.concatenate([rows for _, rows in row_chunks(mapped, 3)]), array)
    assert [start for start, _ in row_chunks(array, 3)] == [0, 3, 6]
