"""The Tune board's document and the check of the edits it sends back (input from a browser)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core.explorer import new_session, open_explorer
from conceptkd_core.students.events import TuningError
from conceptkd_core.tuning_board import BoardEdit, board_data, is_stale_set, read_edit
from conceptkd_core.tuning_view import metric_summary, metric_track, slider_concepts

from demo_subset import copy_demo_workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    return open_explorer(copy_demo_workspace(tmp_path_factory.mktemp("board")))


def test_the_board_shows_the_sliders_figures_and_charts_of_the_session(explorer):
    session = new_session(explorer, autosave=False)
    j0 = int(np.flatnonzero(session.bank.coef_[0] == 0)[0])
    first = slider_concepts(session, 0)[0]
    session.apply("lock", 0, first)
    board = board_data(session, 0, picked=[j0], factor=3.0)
    json.dumps(board, allow_nan=False)  # plain JSON: no NaN reaches the browser
    assert [row["j"] for row in board["rows"]] == slider_concepts(session, 0, [j0])
    for row in board["rows"]:
        assert row["weight"] == round(float(session.bank.coef_[0, row["j"]]), 2)
        assert row["concept"] == session.vocabulary[row["j"]]
    locked = board["rows"][0]
    assert locked["state"].startswith("locked at") and locked["kind"] == "locked"
    picked = board["rows"][-1]
    assert picked["j"] == j0 and picked["weight"] == 0 and "bring the concept in" in picked["up"]
    assert board["edits"] == 1 and board["can_undo"] and not board["can_redo"] and board["factor"] == 3.0
    summary = metric_summary(metric_track(session, 0)).set_index(["scope", "metric"])
    assert board["tiles"][0]["now"] == pytest.approx(summary.loc[("this class", "student AP"), "now"])
    assert board["tiles"][3]["since"] == pytest.approx(
        summary.loc[("mean of all classes", "balanced agreement"), "since_start"]
    )
    assert len(board["track"]["points"]) == 2 * 4  # edits 0 and 1 × (class, mean) × (AP, agreement)
    assert board["track"]["chance"][-1] == {"label": "chance balanced agreement", "value": 0.5}
    bars = board["weights"]["bars"]
    assert len(bars) == 15 and abs(bars[0]["weight"]) >= abs(bars[-1]["weight"])
    assert all(abs(row["weight"]) <= board["span"] for row in board["rows"])


def test_no_nan_reaches_the_browser_for_a_class_without_held_out_positives(explorer):
    session = new_session(explorer, autosave=False)
    session.labels = session.labels.copy()
    session.labels[:, 0] = 0  # no positives: AP and its chance level do not exist
    board = board_data(session, 0)
    json.dumps(board, allow_nan=False)
    assert board["track"]["chance"][0]["value"] == 0.0


@pytest.fixture(scope="module")
def board(explorer):
    return board_data(new_session(explorer, autosave=False), 0, factor=2.0)


def test_edits_the_board_may_send(board):
    j = board["rows"][0]["j"]
    assert read_edit({"op": "set", "j": j, "value": 0.5, "drawn_at": 3}, board) == BoardEdit(
        "set", j, {"value": 0.5}, 3
    )
    assert read_edit({"op": "upweight", "j": j, "drawn_at": 0}, board).args == {"factor": 2.0}
    assert read_edit({"op": "downweight", "j": j, "drawn_at": 0}, board).args == {"factor": 0.5}
    assert read_edit({"op": "remove", "j": j, "drawn_at": 0}, board) == BoardEdit("remove", j, {}, 0)
    assert read_edit({"op": "undo", "drawn_at": 0}, board) == BoardEdit("undo", None, {}, 0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("remove", "must be an object"),
        ({"op": "delete", "j": 0, "drawn_at": 0}, "Unknown edit 'delete'"),
        ({"op": "lock", "j": 0, "drawn_at": -1}, "drawn_at must be"),
        ({"op": "lock", "j": 0, "drawn_at": True}, "drawn_at must be"),
        ({"op": "lock", "j": "0", "drawn_at": 0}, "Concept '0' has no slider"),
        ({"op": "lock", "j": 10**6, "drawn_at": 0}, "has no slider on this board"),
        ({"op": "set", "j": "first", "value": 0.1, "drawn_at": 0}, "has no slider"),
        ({"op": "set", "j": "FIRST", "value": float("nan"), "drawn_at": 0}, "finite number"),
        ({"op": "set", "j": "FIRST", "value": "1", "drawn_at": 0}, "finite number"),
        ({"op": "set", "j": "FIRST", "value": 1e6, "drawn_at": 0}, "outside the slider's range"),
    ],
)
def test_a_bad_edit_is_refused_naming_the_bad_value(board, payload, message):
    if isinstance(payload, dict) and payload.get("j") == "FIRST":
        payload = {**payload, "j": board["rows"][0]["j"]}
    with pytest.raises(TuningError, match=message):
        read_edit(payload, board)


def test_a_slider_value_is_not_an_edit_when_stale_or_unchanged(explorer):
    session = new_session(explorer, autosave=False)
    j = slider_concepts(session, 0)[0]
    now = float(session.bank.coef_[0, j])
    drawn = len(session.audit)
    assert not is_stale_set(BoardEdit("set", j, {"value": now / 2}, drawn), session, 0)
    assert is_stale_set(BoardEdit("set", j, {"value": now / 2}, drawn + 1), session, 0)  # an older board
    assert is_stale_set(BoardEdit("set", j, {"value": now + 0.004}, drawn), session, 0)  # the weight it shows
    assert not is_stale_set(BoardEdit("lock", j, {}, drawn + 1), session, 0)  # buttons are always edits
