"""The column-by-column copy of the concept matrix that slider moves read, and the exact AP they use."""

import dataclasses

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.columns import ConceptColumns, exact_float32
from conceptkd_core.students.metrics import decisions, student_class_metrics
from conceptkd_core.students.scores import SharedScores, class_scores
from conceptkd_core.students.solver import sigmoid
from conceptkd_tools.synthetic import make_problem


def test_exact_float32_converts_every_finite_float16_exactly():
    every = np.arange(2**16, dtype=np.uint16).view(np.float16)
    finite = every[np.isfinite(every)].reshape(-1, 2)  # zeros, subnormals, normals, both signs
    got = exact_float32(finite)
    assert got.dtype == np.float32 and got.shape == finite.shape
    np.testing.assert_array_equal(got.view(np.uint32), finite.astype(np.float32).view(np.uint32))
    np.testing.assert_array_equal(exact_float32(finite[:, 0]), finite[:, 0].astype(np.float32))  # a strided view
    as_float64 = np.linspace(-3, 3, 7)
    np.testing.assert_array_equal(exact_float32(as_float64), as_float64.astype(np.float32))


@pytest.fixture(scope="module")
def problem():
    return make_problem(1500, 40, 3, seed=3)


def test_columns_keep_what_the_budget_allows_and_read_the_rest(problem):
    X = problem.concept_matrix.astype(np.float16)
    columns = ConceptColumns(X, budget_bytes=3 * X.shape[0] * 2)  # room for three columns
    take, done = columns.collector(np.array([5, 1, 2, 7]))
    for start in range(0, X.shape[0], 400):
        take(start, X[start : start + 400])
    done()
    assert [j for j in range(40) if j in columns] == [1, 2, 5] and columns.nbytes == 3 * X.shape[0] * 2
    columns.keep(np.array([9]))  # no room left: read from the matrix each time
    assert 9 not in columns
    wanted = np.array([7, 1, 9, 5])
    block = columns.block(wanted, 100, 700)
    np.testing.assert_array_equal(block, X[100:700, wanted].T.astype(np.float32))
    roomy = ConceptColumns(X)
    roomy.keep(np.array([9, 3]))
    assert 9 in roomy and 3 in roomy
    np.testing.assert_array_equal(roomy.block(np.array([3, 9]), 1400, 2000), X[1400:, [3, 9]].T.astype(np.float32))


def test_scores_after_a_move_are_the_same_whichever_way_columns_are_read(problem):
    X = problem.concept_matrix.astype(np.float16)
    bank = StudentBank(alpha=1e-3).fit(X, problem.teacher_logits)
    shared = SharedScores.build(bank, X, problem.teacher_logits)
    np.testing.assert_array_equal(shared.base_scores, bank.decision_function(X))
    used = np.flatnonzero((bank.coef_ != 0).any(axis=0))
    assert [j for j in range(40) if j in shared.columns] == used.tolist()  # the base students' concepts
    no_room = dataclasses.replace(shared, columns=ConceptColumns(X, budget_bytes=0))
    coef = bank.coef_[1].copy()
    coef[[0, 4, 17, 39]] += [0.3, -0.2, 0.1, 0.05]
    held = class_scores(shared, 1, coef, bank.intercept_[1] + 0.5, chunk_rows=256)
    read = class_scores(no_room, 1, coef, bank.intercept_[1] + 0.5, chunk_rows=256)
    np.testing.assert_array_equal(held, read)
    moved = bank.copy()
    moved.coef_[1], moved.intercept_[1] = coef, bank.intercept_[1] + 0.5
    np.testing.assert_allclose(held, moved.decision_function(X, classes=[1])[:, 0], atol=2e-5)


@pytest.mark.parametrize("seed", range(4))
def test_move_metrics_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = 3000
    labels = (rng.random(n) < 0.2).astype(np.uint8)
    teacher_logits = rng.normal(size=n) + 2 * labels - 1
    scores = np.round(teacher_logits + rng.normal(size=n), 1)  # rounding makes many ties
    got = student_class_metrics(labels, teacher_logits, sigmoid(teacher_logits), scores, sigmoid(scores))
    assert got["student_ap"] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    teacher_yes = decisions(sigmoid(teacher_logits))
    assert got["fidelity_ap"] == pytest.approx(average_precision_score(teacher_yes, scores), abs=1e-12)
    assert got["logit_corr"] == pytest.approx(np.corrcoef(teacher_logits, scores)[0, 1], abs=1e-12)
    assert np.isnan(
        student_class_metrics(labels * 0, teacher_logits, sigmoid(teacher_logits), scores, scores)["student_ap"]
    )
