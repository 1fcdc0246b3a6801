"""The Tune page through Streamlit's AppTest on a copy of the demo workspace: the board shows the
weights after every edit (edits sent as the board's JavaScript sends them), an edit from an older
board or a bad one changes nothing, any concept can be picked and brought in, refused edits say why, batch
edits are one undo step, suggestions apply, disagreement images open, and the session follows the
page address; a wrong workspace path keeps the session."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.markdown_text import as_read
from conceptkd_tools.tune_board_driver import board, send_edit

from demo_subset import copy_demo_workspace

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tunepage")
    return copy_demo_workspace(folder, with_images=True)


def tune(demo, query: dict | None = None, browser: str = "a") -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(demo)
    at.session_state["browser_key"] = f"page-test-browser-{browser}-0000"
    for name, value in (query or {}).items():
        at.query_params[name] = value
    at.run()
    at.switch_page("views/tune.py").run()
    assert not at.exception, at.exception
    return at


def sliders_show_the_weights(at) -> None:
    session = at.session_state["tuning"]
    for row in board(at)["rows"]:
        assert row["weight"] == pytest.approx(round(float(session.bank.coef_[0, row["j"]]), 2), abs=1e-9), row


def test_sliders_show_the_weights_after_each_edit_and_undo(demo):
    at = tune(demo)
    order = [row["j"] for row in board(at)["rows"]]
    first = board(at)["rows"][0]
    send_edit(at, {"op": "set", "j": first["j"], "value": round(first["weight"] * 0.5, 2)})
    assert at.session_state["tuning"].cursor == 1
    sliders_show_the_weights(at)
    assert [row["j"] for row in board(at)["rows"]] == order  # the list keeps its order
    assert board(at)["edits"] == 1 and board(at)["can_undo"]
    send_edit(at, {"op": "undo"})
    sliders_show_the_weights(at)
    assert at.session_state["tuning"].cursor == 0


def test_a_slider_value_from_an_older_board_is_not_an_edit(demo):
    at = tune(demo)
    first = board(at)["rows"][0]
    stale = {"op": "set", "j": first["j"], "value": 0.0, "drawn_at": board(at)["drawn_at"] + 5}
    send_edit(at, stale)
    assert at.session_state["tuning"].cursor == 0 and not at.exception


def test_a_bad_edit_from_the_browser_is_refused_in_words(demo):
    at = tune(demo)
    send_edit(at, {"op": "set", "j": 10**6, "value": 0.0})
    assert "has no slider on this board" in as_read(at.toast[0].value)
    send_edit(at, {"op": "explode", "j": 0})
    assert "Unknown edit 'explode'" in as_read(at.toast[0].value)
    assert at.session_state["tuning"].cursor == 0 and not at.exception


def test_a_picked_concept_of_weight_zero_is_brought_in(demo):
    at = tune(demo)
    session = at.session_state["tuning"]
    j = int(np.flatnonzero(session.bank.coef_[0] == 0)[0])
    at.selectbox(key="pick_0").set_value(session.vocabulary[j]).run()
    last = board(at)["rows"][-1]
    assert last["concept"] == session.vocabulary[j] and last["weight"] == 0
    send_edit(at, {"op": "downweight", "j": j})  # nothing to down-tune: refused, in words
    assert "nothing to down-tune" in as_read(at.toast[0].value) and not session.events
    send_edit(at, {"op": "upweight", "j": j})
    assert session.bank.coef_[0, j] > 0 and session.events[-1].op == "upweight"
    row = next(r for r in board(at)["rows"] if r["j"] == j)
    assert row["state"] == f"floor ≥ {session.bank.lower_[0, j]:+.2f}"
    sliders_show_the_weights(at)
    send_edit(at, {"op": "release", "j": j})
    assert session.events[-1].op == "release"


def test_a_picked_concept_never_edited_comes_back_from_the_address(demo):
    at = tune(demo)
    session = at.session_state["tuning"]
    j = int(np.flatnonzero(session.bank.coef_[0] == 0)[1])
    at.selectbox(key="pick_0").set_value(session.vocabulary[j]).run()
    assert at.query_params["picked"] in (f"0:{j}", [f"0:{j}"])
    again = tune(demo, {"session": session.session_id, "picked": f"0:{j}"})  # a reload of that address
    assert board(again)["rows"][-1]["j"] == j and not again.session_state["tuning"].events
    bad = tune(demo, {"picked": "0:99999"})  # more in test_tune_links
    assert "concepts 0.." in as_read(bad.warning[0].value) and not bad.exception


def test_a_batch_removal_is_one_undo_step(demo):
    at = tune(demo)
    session = at.session_state["tuning"]
    j = int(np.argmax((session.bank.coef_ != 0).sum(axis=0)))
    at.multiselect(key="batch_concepts").set_value([session.vocabulary[j]]).run()
    at.radio(key="batch_scope").set_value("every class").run()
    at.button(key="batch_remove").click().run()
    assert len(session.events) == 1 and (session.bank.coef_[:, j] == 0).all()
    at.button(key="batch_remove").click().run()  # again: nothing would change
    assert len(session.events) == 1 and "already removed" in as_read(at.toast[0].value)
    send_edit(at, {"op": "undo"})
    assert session.cursor == 0 and (session.bank.coef_[:, j] != 0).any()


def test_figures_since_the_start_are_held_out_with_chance_lines(demo):
    at = tune(demo)
    drawn = board(at)
    assert [t["label"] for t in drawn["tiles"]] == [
        "Student AP",
        "Balanced agreement",
        "Mean AP, all classes",
        "Mean balanced agreement, all classes",
    ]
    assert [line["label"] for line in drawn["track"]["chance"]] == [
        "chance AP (this class)",
        "chance AP (mean of all classes)",
        "chance balanced agreement",
    ]
    first = drawn["rows"][0]
    send_edit(at, {"op": "set", "j": first["j"], "value": 0.0})
    drawn = board(at)
    assert drawn["edits"] == 1 and {p[0] for p in drawn["track"]["points"]} == {0, 1}
    assert drawn["tiles"][0]["since"] == pytest.approx(drawn["tiles"][0]["last"])


def test_a_suggestion_applies_as_one_undoable_edit(demo):
    at = tune(demo)
    session = at.session_state["tuning"]
    at.segmented_control(key="tune_panel").set_value("Suggestions").run()
    at.button(key="suggest_run").click().run()
    assert not at.exception
    first = at.session_state["suggestions"]["table"].iloc[0]
    at.button(key="apply_0").click().run()
    event = session.events[-1]
    assert event.op == first["op"] and event.concept == first["concept_index"]
    assert "Applied:" in as_read(at.toast[0].value)


def test_a_teacher_only_image_opens(demo):
    at = tune(demo)
    at.segmented_control(key="tune_panel").set_value("Disagreements").run()
    opener = [b for b in at.button if b.key and b.key.startswith("open_")][1]
    opener.click().run()
    assert not at.exception
    assert as_read(at.subheader[0].value) == opener.key.removeprefix("open_")
    assert any("Why the student says" in m.value for m in at.markdown)


def test_the_address_restores_the_session_and_a_bad_path_keeps_it(demo):
    at = tune(demo)
    session = at.session_state["tuning"]
    send_edit(at, {"op": "set", "j": board(at)["rows"][0]["j"], "value": 0.0})
    assert at.query_params["session"] in (session.session_id, [session.session_id])
    again = tune(demo, {"session": session.session_id})  # a reload: a new browser session, same address
    restored = again.session_state["tuning"]
    assert restored.session_id == session.session_id and len(restored.events) == 1
    np.testing.assert_array_equal(restored.bank.coef_, session.bank.coef_)
    other = tune(demo, {"session": session.session_id}, browser="b")  # a shared link: a copy of its own
    assert other.session_state["tuning"].session_id != session.session_id
    np.testing.assert_array_equal(other.session_state["tuning"].bank.coef_, session.bank.coef_)
    again.text_input(key="workspace_input").set_value("data/demo").run()  # a folder, not a workspace
    assert not again.exception
    assert any("Not opened, the open workspace stays" in e.value for e in again.sidebar.error)
    assert again.session_state["tuning"] is restored and len(restored.events) == 1


def test_a_named_session_is_listed_by_its_name_to_its_browser_only(demo):
    from conceptkd_core.explorer import owner_of, saved_sessions

    at = tune(demo, browser="namer")
    session = at.session_state["tuning"]
    send_edit(at, {"op": "set", "j": board(at)["rows"][0]["j"], "value": 0.0})
    at.switch_page("views/history.py").run()
    at.text_input(key=f"name_{session.session_id}").set_value("aeroplane without baby bottle").run()
    listed = saved_sessions(open_demo(demo), owner_of("page-test-browser-namer-0000"))
    assert list(listed["name"]) == ["aeroplane without baby bottle"]
    assert session.session_id not in set(saved_sessions(open_demo(demo), owner_of("someone else"))["session_id"])


def open_demo(demo):
    from conceptkd_core.explorer import open_explorer

    return open_explorer(demo)
