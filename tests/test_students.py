"""The students' solvers against slow, independent references on random problems."""

import numpy as np
import pytest
from scipy.optimize import minimize

from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.gram import GramStats
from conceptkd_core.students.solver import gradient_mapping, sigmoid, solve_students
from conceptkd_tools.synthetic import make_problem


def split_reference(fun_grad, m, alpha, lo, hi, n_extra=0):
    """min f(u - v) + alpha·sum(u + v), u, v >= 0 within the box: an exact smooth reformulation
    of the L1 + box problem, solved by L-BFGS-B to a tight tolerance."""
    ub_u = np.where(hi > 0, hi, 0.0)
    lb_u = np.where(lo > 0, lo, 0.0)
    ub_v = np.where(lo < 0, -lo, 0.0)
    lb_v = np.where(hi < 0, -hi, 0.0)
    bounds = [(a, None if np.isinf(b) else b) for a, b in zip(lb_u, ub_u, strict=True)]
    bounds += [(a, None if np.isinf(b) else b) for a, b in zip(lb_v, ub_v, strict=True)]
    bounds += [(None, None)] * n_extra

    def f(z):
        u, v, extra = z[:m], z[m : 2 * m], z[2 * m :]
        val, g_w, g_extra = fun_grad(u - v, extra)
        return val + alpha * (u.sum() + v.sum()), np.r_[g_w + alpha, -g_w + alpha, g_extra]

    x0 = np.r_[np.array([b[0] for b in bounds[: 2 * m]]), np.zeros(n_extra)]
    res = minimize(
        f,
        x0,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 50000, "maxfun": 100000, "ftol": 1e-15, "gtol": 1e-12},
    )
    return res.x[:m] - res.x[m : 2 * m], res.x[2 * m :], res.fun


def random_problem(seed, n=300, m=25, k=3):
    p = make_problem(n, m, k, seed=seed, active_per_class=5)
    return p.concept_matrix.astype(np.float64), p.teacher_logits.astype(np.float64)


def random_bounds(rng, coef, active):
    k, m = coef.shape
    lo, hi = np.full((k, m), -np.inf), np.full((k, m), np.inf)
    if active:
        for c in range(k):
            for j in rng.choice(m, 5, replace=False):
                kind = rng.integers(4)
                if kind == 0:
                    lo[c, j] = hi[c, j] = rng.normal(0, 3)
                elif kind == 1:
                    lo[c, j] = abs(rng.normal(2, 1))
                elif kind == 2:
                    hi[c, j] = -abs(rng.normal(2, 1))
                else:
                    lo[c, j], hi[c, j] = -0.5, 0.5
    return lo, hi


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("active", [False, True])
def test_interactive_solver_matches_scipy_reference(seed, active):
    X, Y = random_problem(seed)
    rng = np.random.default_rng(seed)
    alpha = 3e-3
    bank = StudentBank(alpha=alpha, tol=1e-9)
    lo, hi = random_bounds(rng, np.zeros((Y.shape[1], X.shape[1])), active)
    bank.fit(X, Y, lower=lo, upper=hi)
    assert bank.converged_
    assert (bank.coef_ >= lo).all() and (bank.coef_ <= hi).all()
    n, m = X.shape
    for c in range(Y.shape[1]):

        def fun_grad(w, extra, c=c):
            r = Y[:, c] - X @ w - extra[0]
            return 0.5 * r @ r / n, -X.T @ r / n, np.array([-r.sum() / n])

        w_ref, b_ref, f_ref = split_reference(fun_grad, m, alpha, lo[c], hi[c], n_extra=1)
        r = Y[:, c] - X @ bank.coef_[c] - bank.intercept_[c]
        f_ours = 0.5 * r @ r / n + alpha * np.abs(bank.coef_[c]).sum()
        assert f_ours <= f_ref + 1e-9 * max(1, abs(f_ref))
        np.testing.assert_allclose(bank.coef_[c], w_ref, atol=2e-4)
        assert bank.intercept_[c] == pytest.approx(b_ref[0], abs=2e-4)


def test_kkt_conditions_hold_and_objective_matches_gram_form():
    X, Y = random_problem(7, n=400, m=40, k=4)
    rng = np.random.default_rng(7)
    lo, hi = random_bounds(rng, np.zeros((4, 40)), True)
    bank = StudentBank(alpha=1e-3, tol=1e-8).fit(X, Y, lower=lo, upper=hi)
    assert bank.kkt_violation().max() <= 1e-8
    # The KKT conditions written out per weight: gradient g_j of the smooth part.
    G = bank.stats_.gram @ bank.coef_.T - bank.stats_.xty
    for c in range(4):
        for j in range(40):
            w, g = bank.coef_[c, j], G[j, c]
            if lo[c, j] < w < hi[c, j]:
                if w != 0:
                    assert g + bank.alpha * np.sign(w) == pytest.approx(0, abs=1e-6)
                else:
                    assert abs(g) <= bank.alpha + 1e-6
    # The Gram-form objective equals the data-form objective.
    r = Y - X @ bank.coef_.T - bank.intercept_
    direct = 0.5 * (r * r).mean(axis=0) + bank.alpha * np.abs(bank.coef_).sum(axis=1)
    np.testing.assert_allclose(bank.objective(), direct, rtol=1e-9)


def test_warm_start_reaches_the_same_optimum_as_cold():
    X, Y = random_problem(3, n=500, m=60, k=5)
    bank = StudentBank(alpha=2e-3, tol=1e-10).fit(X, Y)
    bank.lower_[2, 5] = bank.upper_[2, 5] = 1.5
    bank.lower_[4, 7] = 0.8
    warm = bank.copy().refit([2, 4])
    cold = bank.copy()
    cold.coef_[:] = 0
    cold.refit(warm_start=False)
    np.testing.assert_allclose(warm.coef_, cold.coef_, atol=1e-7)
    assert warm.coef_[2, 5] == 1.5 and warm.coef_[4, 7] >= 0.8
    # classes not re-fitted keep their weights exactly
    np.testing.assert_array_equal(warm.coef_[[0, 1, 3]], bank.coef_[[0, 1, 3]])


def test_solver_stops_on_its_documented_rule():
    X, Y = random_problem(5)
    stats = GramStats.from_arrays(X, Y)
    m, k = stats.xty.shape
    lo, hi = np.full((m, k), -np.inf), np.full((m, k), np.inf)
    res = solve_students(stats, 1e-3, lo, hi, tol=1e-5)
    g = stats.gram @ res.coef - stats.xty
    assert res.converged
    assert gradient_mapping(res.coef, g, stats.lipschitz, 1e-3, lo, hi).max() <= 1e-5


def test_gram_stats_streaming_equals_direct_and_float16_input():
    X, Y = random_problem(1, n=1000, m=30, k=3)
    direct_c = X - X.mean(0)
    streamed = GramStats.from_arrays(X, Y, chunk_rows=97)
    np.testing.assert_allclose(streamed.gram, direct_c.T @ direct_c / 1000, atol=1e-12)
    np.testing.assert_allclose(streamed.xty, direct_c.T @ (Y - Y.mean(0)) / 1000, atol=1e-10)
    half = GramStats.from_arrays(X.astype(np.float16), Y)
    np.testing.assert_allclose(half.gram, streamed.gram, atol=1e-3)


@pytest.mark.parametrize("active", [False, True])
def test_refine_matches_scipy_reference_of_the_bce_objective(active):
    X, Y = random_problem(11, n=300, m=15, k=2)
    rng = np.random.default_rng(11)
    lo, hi = random_bounds(rng, np.zeros((2, 15)), active)
    alpha = 1e-3
    bank = StudentBank(alpha=1e-3).fit(X, Y, lower=lo, upper=hi)
    bank.refine(X, Y, alpha=alpha, tol=1e-9, max_iter=200000)
    n, m = X.shape
    P = sigmoid(Y)
    for c in range(2):

        def fun_grad(w, extra, c=c):
            z = X @ w + extra[0]
            loss = np.mean(np.logaddexp(0, z) - P[:, c] * z)
            r = (sigmoid(z) - P[:, c]) / n
            return loss, X.T @ r, np.array([r.sum()])

        w_ref, b_ref, f_ref = split_reference(fun_grad, m, alpha, lo[c], hi[c], n_extra=1)
        z = X @ bank.coef_[c] + bank.intercept_[c]
        f_ours = np.mean(np.logaddexp(0, z) - P[:, c] * z) + alpha * np.abs(bank.coef_[c]).sum()
        assert f_ours <= f_ref + 1e-8
        np.testing.assert_allclose(bank.coef_[c], w_ref, atol=1e-3)
        assert (bank.coef_[c] >= lo[c]).all() and (bank.coef_[c] <= hi[c]).all()


def test_seam_logistic_loss_matches_scipy_reference_on_selected_classes():
    X, Y = random_problem(13, n=300, m=15, k=3)
    rng = np.random.default_rng(13)
    lo, hi = random_bounds(rng, np.zeros((3, 15)), True)
    stats = GramStats.from_arrays(X, Y)
    cols, alpha = np.array([2, 0]), 2e-3
    P = sigmoid(0.5 * Y[:, cols])  # soft targets that are not the statistics' own
    W0 = np.clip(rng.normal(0, 0.5, (15, 2)), lo[cols].T, hi[cols].T)  # a warm start away from the optimum
    res = solve_students(
        stats,
        alpha,
        lo[cols].T,
        hi[cols].T,
        loss="logistic",
        classes=cols,
        W0=W0,
        intercept0=np.array([0.3, -0.2]),
        X=X,
        P=P,
        tol=1e-9,
        max_iter=200000,
    )
    assert res.converged and res.kkt_violation.max() <= 1e-9
    assert res.coef.shape == (15, 2) and res.intercept.shape == (2,)
    n, m = X.shape
    for j, c in enumerate(cols):

        def fun_grad(w, extra, j=j):
            z = X @ w + extra[0]
            r = (sigmoid(z) - P[:, j]) / n
            return np.mean(np.logaddexp(0, z) - P[:, j] * z), X.T @ r, np.array([r.sum()])

        w_ref, b_ref, f_ref = split_reference(fun_grad, m, alpha, lo[c], hi[c], n_extra=1)
        z = X @ res.coef[:, j] + res.intercept[j]
        f_ours = np.mean(np.logaddexp(0, z) - P[:, j] * z) + alpha * np.abs(res.coef[:, j]).sum()
        assert f_ours <= f_ref + 1e-8
        np.testing.assert_allclose(res.coef[:, j], w_ref, atol=1e-3)
        assert res.intercept[j] == pytest.approx(b_ref[0], abs=1e-3)
        assert (res.coef[:, j] >= lo[c]).all() and (res.coef[:, j] <= hi[c]).all()


def test_seam_validates_its_inputs_and_quotes_the_bad_value():
    X, Y = random_problem(6, n=100, m=10, k=2)
    stats = GramStats.from_arrays(X, Y)
    lo, hi = np.full((10, 2), -np.inf), np.full((10, 2), np.inf)
    with pytest.raises(ValueError, match="Got 'hinge' instead"):
        solve_students(stats, 1e-3, lo, hi, loss="hinge")
    with pytest.raises(ValueError, match="alpha must be a finite number >= 0. Got -1.0 instead"):
        solve_students(stats, -1.0, lo, hi)
    with pytest.raises(ValueError, match=r"Got shape \(10, 3\) instead"):
        solve_students(stats, 1e-3, np.zeros((10, 3)), hi)
    with pytest.raises(ValueError, match=r"classes must be .* in \[0, 2\). Got \[5\] instead"):
        solve_students(stats, 1e-3, lo[:, :1], hi[:, :1], classes=[5])
    with pytest.raises(ValueError, match=r"P must hold probabilities in \[0, 1\]. Got 1.5 instead"):
        solve_students(stats, 1e-3, lo, hi, loss="logistic", X=X, P=np.full((100, 2), 1.5))
    with pytest.raises(ValueError, match="inputs of loss='logistic' only. Got X with loss='squared'"):
        solve_students(stats, 1e-3, lo, hi, X=X)


def test_probability_target_and_contributions():
    X, Y = random_problem(2)
    bank = StudentBank(alpha=1e-4, target="probabilities").fit(X, Y)
    probs = bank.predict_proba(X)
    assert probs.min() >= 0 and probs.max() <= 1
    assert np.corrcoef(probs[:, 0], sigmoid(Y[:, 0]))[0, 1] > 0.5
    contrib = bank.contributions(X[0])
    np.testing.assert_allclose(contrib.sum(axis=1) + bank.intercept_, bank.decision_function(X[:1])[0], rtol=1e-5)


def test_round_trip_and_validation_errors():
    X, Y = random_problem(4)
    lo = np.full((3, 25), -np.inf)
    lo[1, 2] = 0.5
    bank = StudentBank(alpha=1e-3).fit(X, Y, lower=lo)
    again = StudentBank.from_dict(bank.to_dict(), bank.stats_)
    np.testing.assert_array_equal(again.coef_, bank.coef_)
    np.testing.assert_array_equal(again.lower_, bank.lower_)
    with pytest.raises(ValueError, match="alpha must be"):
        StudentBank(alpha=-1)
    with pytest.raises(ValueError, match="target must be one of logits, probabilities; got 'x'"):
        StudentBank(target="x")
    hi = np.full((3, 25), np.inf)
    hi[0, 0], lo[0, 0] = 1.0, 2.0
    with pytest.raises(ValueError, match="lower bound 2 is above upper bound 1"):
        StudentBank().fit(X, Y, lower=lo, upper=hi)
    bad = bank.to_dict()
    bad["coef"][0][0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        StudentBank.from_dict(bad, bank.stats_)
