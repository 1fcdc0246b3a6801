import json

import numpy as np
import pytest

from conceptkd_core.students.bank import StudentBank
from conceptkd_core.students.session import TuningError, TuningSession
from conceptkd_tools.synthetic import make_problem

CLASSES = [f"class{c}" for c in range(4)]
VOCAB = [f"word{j}" for j in range(40)]


@pytest.fixture
def session(tmp_path):
    p = make_problem(800, 40, 4, seed=3, active_per_class=6)
    bank = StudentBank(alpha=1e-3, tol=1e-9).fit(p.concept_matrix, p.teacher_logits)
    return TuningSession(
        bank,
        p.concept_matrix,
        p.teacher_logits,
        p.labels,
        CLASSES,
        VOCAB,
        user="tester",
        autosave_path=tmp_path / "sessions" / "s.json",
    )


def top_concept(session, c):
    return int(np.argmax(np.abs(session.bank.coef_[c])))


def test_operations_set_the_documented_bounds_and_refit(session):
    j = top_concept(session, 0)
    w0 = session.bank.coef_[0, j]
    event = session.upweight("class0", VOCAB[j], 2.0)
    w = session.bank.coef_[0, j]
    assert (w >= 2 * w0) if w0 > 0 else (w <= 2 * w0)
    assert abs(w) >= 2 * abs(w0) - 1e-9
    assert session.bank.kkt_violation()[0] <= 1e-9  # the rest re-fitted to the optimum
    assert event.metrics_before[0]["student_ap"] != event.metrics_after[0]["student_ap"]
    assert event.user == "tester" and event.op == "upweight" and event.time

    w1 = session.bank.coef_[0, j]  # down-tuning acts on the current weight, not the original one
    session.downweight(0, j, 0.25)
    assert abs(session.bank.coef_[0, j]) <= 0.25 * abs(w1) + 1e-12
    assert np.sign(session.bank.coef_[0, j]) in (0, np.sign(w0))

    k = top_concept(session, 1)
    session.remove(1, k)
    assert session.bank.coef_[1, k] == 0
    session.set_weight(1, k, 3.5)
    assert session.bank.coef_[1, k] == 3.5
    v = session.bank.coef_[1, 3]
    session.lock(1, 3)
    assert session.bank.lower_[1, 3] == session.bank.upper_[1, 3] == v
    session.set_bounds(2, 5, -1.0, -0.5)
    assert -1.0 <= session.bank.coef_[2, 5] <= -0.5
    session.release(2, 5)
    assert np.isinf(session.bank.lower_[2, 5]) and np.isinf(session.bank.upper_[2, 5])
    # scores and metrics follow the weights
    np.testing.assert_allclose(session.student_scores, session.bank.decision_function(session.X), atol=1e-5)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s: s.upweight("nope", 0), "Unknown class 'nope'; classes are class0, class1"),
        (lambda s: s.upweight(0, "unicorn"), "Unknown concept 'unicorn'"),
        (lambda s: s.upweight(0, 99), "Concept index 99 is out of range"),
        (lambda s: s.upweight(0, 0, 0.0), "factor must be a number > 0; got 0.0"),
        (lambda s: s.upweight(0, 0, -2), "factor must be a number > 0; got -2"),
        (lambda s: s.upweight(0, 0, 0.5), "up-tuning needs a factor >= 1"),
        (lambda s: s.downweight(0, 0, 3), r"down-tuning needs a factor in \(0, 1\]"),
        (lambda s: s.set_bounds(0, 0, 2.0, 1.0), "lower bound 2 is above upper bound 1"),
        (lambda s: s.set_weight(0, 0, float("nan")), "value must be a finite number"),
        (lambda s: s.apply("explode", 0, 0), "Unknown operation 'explode'"),
        (lambda s: s.undo(), "Nothing to undo"),
        (lambda s: s.revert(5), r"Can only revert to a point 0..0"),
    ],
)
def test_bad_requests_raise_and_change_nothing(session, call, message):
    before = (session.bank.coef_.copy(), session.bank.lower_.copy(), len(session.events), len(session.audit))
    with pytest.raises(TuningError, match=message):
        call(session)
    assert np.array_equal(session.bank.coef_, before[0]) and np.array_equal(session.bank.lower_, before[1])
    assert (len(session.events), len(session.audit)) == before[2:]


def test_upweight_of_a_zero_weight_brings_the_concept_in(session):
    j = int(np.flatnonzero(session.bank.coef_[0] == 0)[0])
    floor = session.zero_uptune_floor(0, 2.0)
    assert floor == pytest.approx(0.1 * 2.0 * np.abs(session.bank.coef_[0]).max())
    session.upweight(0, j, 2.0)
    assert session.bank.coef_[0, j] >= floor > 0
    assert session.bank.kkt_violation()[0] <= 1e-9  # the other weights re-fitted around it
    session.undo()
    assert session.bank.coef_[0, j] == 0
    with pytest.raises(TuningError, match="has weight 0 .*nothing to down-tune"):
        session.downweight(0, j, 0.5)


def test_a_batch_edit_is_one_undoable_step(session):
    j = top_concept(session, 0)
    before = session.bank.coef_.copy()
    event = session.apply_batch("remove", [(c, j) for c in CLASSES])
    assert (session.bank.coef_[:, j] == 0).all() and event.classes == [0, 1, 2, 3]
    assert event.concept == j and len(session.events) == 1
    assert session.bank.kkt_violation().max() <= 1e-9
    session.undo()
    np.testing.assert_array_equal(session.bank.coef_, before)
    locked = session.apply_batch("lock", [(1, k) for k in range(5)])
    assert locked.concept is None and locked.args["pairs"] == [[1, k] for k in range(5)]
    np.testing.assert_array_equal(session.bank.lower_[1, :5], session.bank.upper_[1, :5])
    restored = TuningSession.from_json(
        session.export_json(), session.bank.copy(), session.X, session.teacher_logits, session.labels, CLASSES, VOCAB
    )
    np.testing.assert_array_equal(restored.bank.coef_, session.bank.coef_)
    with pytest.raises(TuningError, match="at least one"):
        session.apply_batch("remove", [])


def test_undo_redo_revert_restore_weights_exactly(session):
    states = [session.bank.coef_.copy()]
    session.remove(0, top_concept(session, 0))
    states.append(session.bank.coef_.copy())
    session.set_weight(1, 2, 1.25)
    states.append(session.bank.coef_.copy())
    session.refine(["class2"])
    states.append(session.bank.coef_.copy())
    intercepts = session.bank.intercept_.copy()
    session.undo()
    assert np.array_equal(session.bank.coef_, states[2])
    session.undo()
    session.undo()
    assert np.array_equal(session.bank.coef_, states[0])
    np.testing.assert_allclose(session.student_scores, session.bank.decision_function(session.X), atol=1e-5)
    session.redo()
    session.redo()
    session.redo()
    assert np.array_equal(session.bank.coef_, states[3]) and np.array_equal(session.bank.intercept_, intercepts)
    session.revert(1)
    assert np.array_equal(session.bank.coef_, states[1])
    assert session.bank.lower_[1, 2] == -np.inf  # the later bound is gone too
    session.upweight(3, top_concept(session, 3), 1.5)  # a new edit drops the undone tail
    assert len(session.events) == 2 and not session.can_redo()
    actions = [a["action"] for a in session.audit]
    assert actions == ["edit"] * 3 + ["undo"] * 3 + ["redo"] * 3 + ["revert", "edit"]


def test_export_import_round_trip_and_autosave(session, tmp_path):
    session.upweight(0, top_concept(session, 0), 1.5)
    session.set_weight(2, 1, -0.75)
    session.undo()
    text = session.export_json()
    again = TuningSession.from_json(
        text, session.bank.copy(), session.X, session.teacher_logits, session.labels, CLASSES, VOCAB
    )
    assert np.array_equal(again.bank.coef_, session.bank.coef_)
    assert np.array_equal(again.bank.lower_, session.bank.lower_)
    assert again.cursor == 1 and len(again.events) == 2
    again.redo()
    assert again.bank.coef_[2, 1] == -0.75
    saved = (tmp_path / "sessions" / "s.json").read_text()
    assert json.loads(saved)["cursor"] == 1  # autosaved after the undo


def test_an_unbounded_limit_is_saved_and_read_back(session):
    session.set_bounds(1, 3, -np.inf, 0.2)  # autosaves: JSON itself has no infinity
    text = session.export_json()
    again = TuningSession.from_json(
        text, session.bank.copy(), session.X, session.teacher_logits, session.labels, CLASSES, VOCAB
    )
    assert again.events[0].args == {"lower": -np.inf, "upper": 0.2}
    assert again.bank.lower_[1, 3] == -np.inf and again.bank.upper_[1, 3] == 0.2
    assert again.export_json() == text


def _tamper_weight(text):
    data = json.loads(text)
    data["events"][0]["coef"]["2"][1][0] += 0.1
    return json.dumps(data)


def _tamper_cursor(text):
    data = json.loads(text)
    data["cursor"] = 0
    return json.dumps(data)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[: len(t) // 2], "malformed or truncated"),
        (lambda t: t.replace('"version": 1', '"version": 7'), "Unsupported tuning file version 7"),
        (_tamper_weight, "checksum does not match"),
        (_tamper_cursor, "checksum does not match"),
        (lambda t: '{"format": "other"}', "Not a ConceptKD tuning file"),
    ],
)
def test_import_refuses_damaged_files(session, mutate, message):
    session.set_weight(2, 1, -0.75)
    with pytest.raises(TuningError, match=message):
        TuningSession.from_json(
            mutate(session.export_json()),
            session.bank.copy(),
            session.X,
            session.teacher_logits,
            session.labels,
            CLASSES,
            VOCAB,
        )


def test_import_refuses_other_workspace(session):
    text = session.export_json()
    with pytest.raises(TuningError, match="different classes or vocabulary"):
        TuningSession.from_json(
            text, session.bank.copy(), session.X, session.teacher_logits, session.labels, CLASSES, VOCAB + ["extra"]
        )


def test_autosave_failure_is_reported_not_raised(session, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    session.autosave_path = blocker / "cannot" / "s.json"
    session.set_weight(0, 0, 0.5)
    assert session.autosave_error and "Could not autosave" in session.autosave_error
    assert session.bank.coef_[0, 0] == 0.5  # the in-memory session keeps working
