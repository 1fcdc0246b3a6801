"""Honest figures: students are fit on one part of a workspace and every figure is measured on the other.

Each check below computes the figure independently on the held-out rows and also on all rows, and
asserts that the product matches the former and not the latter: a figure computed on the images
the students were fit on fails here (the synthetic workspace makes the two differ).
"""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.explorer import (
    budget_table,
    disagreement_table,
    fit_split,
    metrics_summary,
    metrics_table,
    new_session,
    open_explorer,
)
from conceptkd_core.store.split import HELDOUT, TRAIN, assign_heldout, stratified_heldout, workspace_split
from conceptkd_core.store.workspace import write_workspace
from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.metrics import average_precision, class_metrics
from conceptkd_tools.synthetic import write_synthetic_workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    root = tmp_path_factory.mktemp("heldout") / "ws"
    workspace = write_synthetic_workspace(root, n_images=1200, n_concepts=40, n_classes=4, seed=3)
    # Make the held-out part harder than the fit part, so in-sample and held-out figures differ.
    split = workspace_split(workspace.splits, workspace.labels)
    logits = np.array(workspace.teacher_logits)
    noise = np.random.default_rng(0).normal(0, 4.0, logits.shape)
    logits[split.held_out] += noise[split.held_out]
    workspace = write_workspace(
        root,
        image_ids=workspace.image_ids,
        paths=workspace.paths,
        splits=workspace.splits,
        labels=workspace.labels,
        classes=workspace.classes,
        vocabulary=list(workspace.vocabulary),
        concept_matrix=workspace.concept_matrix,
        teacher_logits=logits,
        model=workspace.meta["model"],
        teacher=workspace.meta["teacher"],
    )
    return open_explorer(workspace.root)


def test_students_are_fit_on_the_fit_images_only(explorer):
    ws, split = explorer.workspace, explorer.split
    assert split.n_fit == int((ws.splits == "train").sum()) and split.n_held_out == ws.n_images - split.n_fit
    X = np.asarray(ws.concept_matrix, np.float32)
    on_fit = StudentBank().fit(X[split.fit], ws.teacher_logits[split.fit])
    on_all = StudentBank().fit(X, ws.teacher_logits)
    np.testing.assert_allclose(explorer.base_bank.coef_, on_fit.coef_, atol=1e-9)
    assert not np.allclose(explorer.base_bank.coef_, on_all.coef_, atol=1e-3)


def test_every_figure_is_held_out(explorer):
    ws = explorer.workspace
    session = new_session(explorer, autosave=False)
    rows, everything = explorer.shared.held_out_rows, np.arange(ws.n_images)
    assert not np.isin(rows, explorer.shared.fit_rows).any()

    def reference(on):
        return class_metrics(
            ws.labels[on], ws.teacher_logits[on], session.student_scores[on], session.student_probs()[on], ws.classes
        )

    table, honest, dishonest = metrics_table(explorer, session), reference(rows), reference(everything)
    for column in ("teacher_ap", "student_ap", "fidelity_ap", "balanced_agreement", "decision_f1", "positives"):
        np.testing.assert_allclose(table[column].to_numpy(float), honest[column].to_numpy(float), atol=1e-12)
        assert not np.allclose(table[column].to_numpy(float), dishonest[column].to_numpy(float), atol=1e-6), column
    # In-sample only where it says so.
    in_sample = average_precision(ws.labels[explorer.shared.fit_rows], session.student_scores[explorer.shared.fit_rows])
    np.testing.assert_allclose(table["student_ap_in_sample"], in_sample, atol=1e-12)
    np.testing.assert_allclose(table["chance_ap"], ws.labels[rows].mean(axis=0), atol=1e-12)

    summary = metrics_summary(explorer, session)
    assert summary["n_held_out"] == rows.size and summary["student_map"] == pytest.approx(honest["student_ap"].mean())

    # Disagreements list held-out images only; a tuning event records held-out figures.
    for c in (None, 1):
        assert np.isin(disagreement_table(session, c, top=30)["row"], rows).all()
    event = session.set_weight(0, int(np.argmax(np.abs(session.bank.coef_[0]))), 0.0)
    after = reference(rows).iloc[0]
    assert event.metrics_after[0]["student_ap"] == pytest.approx(after["student_ap"], abs=1e-12)
    assert event.metrics_after[0]["balanced_agreement"] == pytest.approx(after["balanced_agreement"], abs=1e-12)
    assert event.flipped[0] <= rows.size

    budgets = budget_table(explorer, session)
    np.testing.assert_allclose(budgets["ap_all"], average_precision(ws.labels[rows], session.student_scores[rows]))
    assert (budgets[["ap_at_5", "ap_at_20"]].to_numpy() <= 1).all()


def test_refine_is_fit_on_the_fit_images_only(explorer):
    ws, split = explorer.workspace, explorer.split
    session = new_session(explorer, autosave=False)
    session.refine([2])
    X = np.asarray(ws.concept_matrix, np.float32)
    reference = explorer.base_bank.copy().refine(X[split.fit], ws.teacher_logits[split.fit], classes=[2])
    np.testing.assert_allclose(session.bank.coef_[2], reference.coef_[2], atol=1e-9)


def test_students_page_shows_held_out_figures_and_a_chance_line(explorer):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(explorer.workspace.root)
    at.run()
    at.switch_page("views/students.py").run()
    assert not at.exception
    session = at.session_state["tuning"]
    summary = metrics_summary(explorer, session)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Student mAP"] == f"{summary['student_map']:.3f}"
    assert metrics["Chance mAP"] == f"{summary['chance_map']:.3f}"
    assert any("Held-out:" in c.value and f"{summary['n_held_out']:,}" in c.value for c in at.caption)


def test_seeded_split_is_stratified_stable_and_recorded():
    rng = np.random.default_rng(1)
    labels = (rng.random((500, 6)) < [0.5, 0.2, 0.1, 0.05, 0.02, 0.01]).astype(np.uint8)
    held_out = stratified_heldout(labels)
    np.testing.assert_array_equal(held_out, stratified_heldout(labels))  # a pure function of labels and seed
    assert 0.17 < held_out.mean() < 0.23
    for c in range(6):  # even the rarest class is measured somewhere and fit somewhere
        assert labels[held_out, c].any() and labels[~held_out, c].any()
    recorded = assign_heldout(["all"] * 500, labels)
    assert set(recorded) == {TRAIN, HELDOUT}
    np.testing.assert_array_equal(workspace_split(np.array(recorded), labels).held_out, held_out)
    kept = ["train"] * 400 + ["val"] * 100
    assert assign_heldout(kept, labels) == kept
    assert workspace_split(np.array(["val"] * 300 + ["test"] * 200), labels).n_fit == 300


def test_fit_split_of_a_workspace(explorer):
    assert fit_split(explorer.workspace).digest == explorer.split.digest
