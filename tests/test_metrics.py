import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from conceptkd_core.students.metrics import (
    agreement,
    average_precision,
    class_metrics,
    disagreements,
    logit_correlation,
    mean_ap,
    summary,
)


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_sklearn_including_ties(seed):
    rng = np.random.default_rng(seed)
    labels = (rng.random((200, 4)) < 0.3).astype(int)
    scores = np.round(rng.normal(size=(200, 4)) + labels, 1)  # rounding makes many ties
    ours = average_precision(labels, scores)
    for c in range(4):
        assert ours[c] == pytest.approx(average_precision_score(labels[:, c], scores[:, c]), abs=1e-12)


def test_average_precision_known_cases():
    assert average_precision(np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.1])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert np.isnan(average_precision(np.array([0, 0]), np.array([0.1, 0.2])))
    assert mean_ap(np.array([0.5, np.nan, 1.0])) == pytest.approx(0.75)


def test_fidelity_measures():
    t = np.array([[2.0, -1.0], [-2.0, 1.0], [1.0, 3.0]])
    s = np.array([[1.0, -3.0], [1.0, 0.5], [0.2, 2.0]])
    np.testing.assert_allclose(agreement(1 / (1 + np.exp(-t)), 1 / (1 + np.exp(-s))), [2 / 3, 1.0])
    np.testing.assert_allclose(
        logit_correlation(t, s), [np.corrcoef(t[:, 0], s[:, 0])[0, 1], np.corrcoef(t[:, 1], s[:, 1])[0, 1]]
    )
    table = class_metrics(np.array([[1, 0], [0, 1], [1, 1]]), t, s, 1 / (1 + np.exp(-s)), ["a", "b"])
    assert list(table["class"]) == ["a", "b"] and list(table["positives"]) == [2, 2]
    assert table.loc[0, "teacher_ap"] == pytest.approx(1.0)
    assert summary(table)["fidelity"] == pytest.approx((2 / 3 + 1) / 2)


def test_disagreements_rank_largest_gap_first():
    t = np.array([[5.0, 0.0], [0.0, 0.0], [-5.0, 4.0]])
    sp = np.array([[0.1, 0.5], [0.5, 0.5], [0.0, 0.1]])
    top = disagreements(t, sp, top=2)
    assert list(top["row"]) == [0, 2] and list(top["class_index"]) == [0, 1]
    only = disagreements(t, sp, class_index=1, top=3)
    assert list(only["row"]) == [2, 0, 1]
    assert only["gap"].is_monotonic_decreasing
