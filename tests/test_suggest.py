"""Edit suggestions: every candidate re-fit exactly, ranked by the held-out change it makes."""

import numpy as np
import pytest

from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.students import suggest as suggest_module
from conceptkd_core.students.gram import GramStats
from conceptkd_core.students.metrics import average_precision, decisions
from conceptkd_core.students.solver import _edit_active_set, solve_edits, solve_students
from conceptkd_core.students.suggest import (
    _ap_columns,
    _ap_resampled,
    _bootstrap,
    apply_suggestion,
    candidates,
    suggest,
)
from conceptkd_tools.synthetic import write_synthetic_workspace


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    root = tmp_path_factory.mktemp("suggest") / "ws"
    write_synthetic_workspace(root, n_images=900, n_concepts=30, n_classes=3, seed=5)
    return open_explorer(root)


def test_every_concept_is_a_candidate_once_or_twice(explorer):
    session = new_session(explorer, autosave=False)
    found = candidates(session, 1)
    used = np.flatnonzero(session.bank.coef_[1])
    assert set(found.concepts) == set(range(30)) and len(found.ops) == 30 + used.size
    for j, op in zip(found.concepts, found.ops, strict=True):
        assert op in (("upweight",) if session.bank.coef_[1, j] == 0 else ("downweight", "remove"))


def test_each_suggestion_is_what_the_edit_itself_gives(explorer):
    session = new_session(explorer, autosave=False)
    table = suggest(session, 0, n_resamples=50)
    assert len(table) >= 30 and table["held_out_gain"].is_monotonic_decreasing
    assert table["scored_rows"].iloc[0] == explorer.split.n_held_out
    assert (table["kkt_violation"] <= session.bank.tol).all()
    base = session.class_metrics(0)["fidelity_ap"]
    # The best, the worst and a few in between: apply each as an edit and compare, then undo.
    for i in (0, 1, len(table) // 2, len(table) - 1):
        row = table.iloc[i]
        event = apply_suggestion(session, 0, row)
        assert event.op == row["op"] and event.concept == row["concept_index"]
        gain = session.class_metrics(0)["fidelity_ap"] - base
        assert gain == pytest.approx(row["held_out_gain"], abs=2e-4), row.to_dict()
        session.undo()
    interval = table.loc[:9, ["low", "high"]].to_numpy()
    assert np.isfinite(interval).all() and (interval[:, 0] <= interval[:, 1]).all()
    assert table.loc[10:, "low"].isna().all()
    assert (table["overfit"] == ((table["fit_gain"] > 1e-9) & (table["held_out_gain"] <= 0))).all()


def test_bad_factor_is_refused(explorer):
    session = new_session(explorer, autosave=False)
    with pytest.raises(ValueError, match="factor must be a number > 1; got 0.5"):
        suggest(session, 0, factor=0.5)


@pytest.mark.parametrize("c", [0, 1, 2])
def test_the_scan_refits_each_candidate_as_a_fresh_solve_does(explorer, c):
    """The scan's dedicated solver against the shared one, one candidate at a time, cold and warm."""
    session = new_session(explorer, autosave=False)
    bank = session.bank
    found = candidates(session, c)
    w = bank.coef_[c]
    fast = solve_edits(bank.stats_, bank.alpha, c, w, found.lower, found.upper, tol=bank.tol)
    assert (fast.kkt_violation <= bank.tol).all()
    for i in range(len(found.ops)):
        box = found.lower[:, [i]], found.upper[:, [i]]
        warm = solve_students(bank.stats_, bank.alpha, *box, classes=[c], W0=w[:, None], tol=bank.tol)
        cold = solve_students(bank.stats_, bank.alpha, *box, classes=[c], tol=1e-10, max_iter=200_000)
        assert np.abs(fast.coef[:, i] - warm.coef[:, 0]).max() < 1e-9, (i, found.ops[i])
        assert np.abs(fast.coef[:, i] - cold.coef[:, 0]).max() < 1e-5, (i, found.ops[i])
        assert fast.intercept[i] == pytest.approx(warm.intercept[0], abs=1e-9)


def test_gains_are_those_of_the_refitted_students_scored_from_scratch(explorer):
    session = new_session(explorer, autosave=False)
    table = suggest(session, 2, n_resamples=0)
    bank = session.bank
    found = candidates(session, 2)
    rows = session.shared.held_out_rows
    X = np.asarray(session.X[rows], dtype=np.float64)
    teacher = decisions(session.teacher_probs[rows, 2])
    base = average_precision(teacher, X @ bank.coef_[2] + bank.intercept_[2])
    for i in range(len(found.ops)):
        ref = solve_students(bank.stats_, bank.alpha, found.lower[:, [i]], found.upper[:, [i]], classes=[2])
        gain = average_precision(teacher, X @ ref.coef[:, 0] + ref.intercept[0]) - base
        row = table[(table["concept_index"] == found.concepts[i]) & (table["op"] == found.ops[i])]
        assert len(row) == 1 and row["held_out_gain"].iloc[0] == pytest.approx(gain, abs=1e-4)


def test_vectorised_ap_is_average_precision_column_by_column():
    rng = np.random.default_rng(3)
    truth = rng.random(400) < 0.2
    scores = np.round(rng.normal(size=(400, 7)), 1)  # many ties
    scores[:, 3] = 0.0  # one column all tied
    expected = [average_precision(truth, scores[:, j]) for j in range(7)]
    assert np.allclose(_ap_columns(truth, scores), expected, rtol=0, atol=1e-12)
    assert np.isnan(_ap_columns(np.zeros(400, dtype=bool), scores)).all()


def test_the_bootstrap_is_a_loop_of_average_precision_over_resamples(monkeypatch):
    """The vectorised bootstrap against the straightforward loop: the same draws (one generator, n
    indices per resample, in order), each resample's AP from scratch, the same quantiles."""
    rng = np.random.default_rng(4)
    n = 150
    truth = rng.random(n) < 0.15
    base = np.round(rng.normal(size=n), 1)  # rounded: many ties, within and across classes
    scores = np.round(base[:, None] + rng.normal(scale=0.5, size=(n, 6)), 1)
    scores[:, 5] = 0.0  # a column all tied
    held = {"base": base, "scores": scores, "truth": truth}
    picks = np.array([4, 0, 5, 2])
    draws = np.random.default_rng(7)
    gains = []
    for _ in range(300):
        sample = draws.integers(0, n, n)
        ap = [average_precision(truth[sample], column[sample]) for column in (base, *scores[:, picks].T)]
        gains.append(np.subtract(ap[1:], ap[0]))
    expected = np.nanquantile(gains, [0.05, 0.95], axis=0).T
    np.testing.assert_allclose(_bootstrap(held, picks, 300, seed=7), expected, rtol=0, atol=1e-12)
    monkeypatch.setattr(suggest_module, "_BOOTSTRAP_CHUNK", 7 * n)  # resamples drawn 7 at a time: the same draws
    np.testing.assert_allclose(_bootstrap(held, picks, 300, seed=7), expected, rtol=0, atol=1e-12)
    # a resample that drew no positive has no AP, as _ap_columns of its rows has none
    counts = np.where(truth, 0, 1)[:, None]
    assert np.isnan(_ap_resampled(truth, scores, counts)).all()
    assert np.isnan(_ap_columns(truth[counts[:, 0] == 1], scores[counts[:, 0] == 1])).all()


def test_an_edit_the_scan_cannot_finish_goes_to_the_shared_solver():
    """Two identical concepts make every free block that holds both singular: the dedicated search gives
    up on those edits and the shared solver re-fits them, to the same stopping rule."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 6))
    X[:, 5] = X[:, 4]
    stats = GramStats.from_arrays(X, (X[:, [4]] * 2 + rng.normal(scale=0.1, size=(300, 1))))
    assert (
        _edit_active_set(
            stats.gram,
            stats.xty[:, 0],
            1e-3,
            *np.full((2, 6), [[-np.inf], [np.inf]]),
            np.zeros(6),
            stats.lipschitz,
            1e-6,
        )
        is None
    )
    lower = np.full((6, 2), -np.inf)
    lower[0, 1] = 0.5  # a floor on concept 0 in the second edit
    result = solve_edits(stats, 1e-3, 0, np.zeros(6), lower, np.full((6, 2), np.inf), tol=1e-6)
    assert (result.kkt_violation <= 1e-6).all() and result.coef[0, 1] >= 0.5
    reference = solve_students(stats, 1e-3, lower, np.inf, classes=[0, 0], tol=1e-6)
    assert np.allclose(result.coef[4] + result.coef[5], reference.coef[4] + reference.coef[5], atol=1e-4)
