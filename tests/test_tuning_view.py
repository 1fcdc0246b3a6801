"""The Tune page's core: stable slider order, constraint words, refusals, batch edits, the held-out
figures since the start, and sessions listed per browser and restored from a page address."""

import json
from pathlib import Path

import numpy as np
import pytest

from conceptkd_core.explorer import new_session, open_explorer, owner_of, saved_sessions, session_for_link
from conceptkd_core.students.events import TuningError
from conceptkd_core.students.session import ZERO_UPTUNE_SHARE
from conceptkd_core.tuning_view import (
    action_help,
    batch_pairs,
    chance_levels,
    constraint_words,
    gain_words,
    metric_summary,
    metric_track,
    refusal,
    slider_concepts,
    start_metrics,
    suggestions,
    unmeasured_note,
)

from demo_subset import copy_demo_workspace, make_demo_subset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    return open_explorer(copy_demo_workspace(tmp_path_factory.mktemp("tv")))


def unused(session, c):
    return int(np.flatnonzero(session.bank.coef_[c] == 0)[0])


def test_the_slider_order_stays_put_and_appends_edited_then_picked(explorer):
    session = new_session(explorer, autosave=False)
    c = 0
    first = slider_concepts(session, c)
    assert len(first) == 8 and all(session.bank.coef_[c, j] != 0 for j in first)
    start = np.abs(session.base.coef[c, first])
    assert (np.diff(start) <= 0).all()
    session.remove(c, first[0])  # the largest weight goes to 0 ...
    zero = unused(session, c)
    session.upweight(c, zero, 3.0)  # ... and an unused concept comes in
    picked = unused(session, c)
    assert slider_concepts(session, c, [picked]) == [*first, zero, picked]  # same order, appended
    session.undo()
    assert slider_concepts(session, c) == [*first, zero]  # an undone edit keeps its slider


def test_constraint_words():
    assert constraint_words(0.0, 0.0) == "removed"
    assert constraint_words(0.31, 0.31) == "locked at +0.31"
    assert constraint_words(0.12, np.inf) == "floor ≥ +0.12"
    assert constraint_words(-np.inf, -0.2) == "ceiling ≤ -0.20"
    assert constraint_words(0.0, 0.5) == "kept between +0.00 and +0.50"
    assert constraint_words(-np.inf, np.inf) == ""


def test_uptuning_an_unused_concept_brings_it_in_at_its_floor(explorer):
    session = new_session(explorer, autosave=False)
    c = 3
    j = unused(session, c)
    floor = ZERO_UPTUNE_SHARE * 2.0 * np.abs(session.bank.coef_[c]).max()
    assert f"≥ {floor:+.2f}" in action_help(session, "upweight", c, j, 2.0)
    assert refusal(session, "upweight", c, j, {"factor": 2.0}) is None
    session.upweight(c, j, 2.0)
    assert session.bank.coef_[c, j] >= floor - 1e-12 > 0


def test_updown_state_their_factor_on_the_current_weight(explorer):
    session = new_session(explorer, autosave=False)
    c, j = 1, slider_concepts(session, 1)[0]
    w = session.bank.coef_[c, j]
    assert f"({w:+.2f} → {2 * w:+.2f})" in action_help(session, "upweight", c, j, 2.0)
    assert f"({w:+.2f} → {0.5 * w:+.2f})" in action_help(session, "downweight", c, j, 2.0)


def test_refusals_are_plain_words(explorer):
    session = new_session(explorer, autosave=False)
    c, j = 2, slider_concepts(session, 2)[0]
    zero = unused(session, c)
    says = refusal(session, "downweight", c, zero, {"factor": 0.5})
    assert "nothing to down-tune" in says and session.vocabulary[zero] in says
    session.remove(c, j)
    says = refusal(session, "remove", c, j, {})
    assert says == f"“{session.vocabulary[j]}” is already removed for “{session.classes[c]}”: this would change nothing"
    assert "free" in refusal(session, "release", c, zero, {})
    for text in (says, refusal(session, "downweight", c, zero, {"factor": 0.5})):
        assert "set_weight" not in text and "bounds_for" not in text


def test_a_batch_removal_from_every_class_is_one_undo(explorer):
    session = new_session(explorer, autosave=False)
    before = session.bank.coef_.copy()
    j = int(np.argmax((before != 0).sum(axis=0)))  # the concept most classes use
    pairs, note = batch_pairs(session, "remove", [j], range(len(session.classes)), {})
    assert note is None and len(pairs) == len(session.classes)
    session.apply_batch("remove", pairs)
    assert len(session.events) == 1 and (session.bank.coef_[:, j] == 0).all()
    pairs, note = batch_pairs(session, "remove", [j, j + 1], [0], {})
    assert pairs == [(0, j + 1)] and note.startswith("1 of 2")
    with pytest.raises(TuningError, match="already removed"):
        batch_pairs(session, "remove", [j], range(len(session.classes)), {})
    session.undo()
    np.testing.assert_array_equal(session.bank.coef_, before)


def test_the_track_starts_at_the_start_and_follows_each_edit(explorer):
    session = new_session(explorer, autosave=False)
    c = 4
    start = start_metrics(session)
    assert start[c] == session.class_metrics(c)  # nothing edited: the start is now
    j = slider_concepts(session, c)[0]
    session.remove(c, j)
    session.upweight(5, unused(session, 5), 2.0)  # another class: this class's line stays flat
    track = metric_track(session, c)
    assert sorted(track["edit"].unique()) == [0, 1, 2]
    ap = track[(track.scope == "this class") & (track.metric == "student AP")].set_index("edit")["value"]
    assert ap[0] == pytest.approx(start[c]["student_ap"])
    assert ap[1] == pytest.approx(session.class_metrics(c)["student_ap"]) == ap[2]
    mean = track[(track.scope == "mean of all classes") & (track.metric == "student AP")].set_index("edit")["value"]
    now = np.mean([session.class_metrics(k)["student_ap"] for k in range(len(session.classes))])
    assert mean[2] == pytest.approx(now)
    summary = metric_summary(track).set_index(["scope", "metric"])
    row = summary.loc[("this class", "student AP")]
    assert row["since_start"] == pytest.approx(ap[2] - ap[0]) and row["last_edit"] == 0
    # the start of a later session (after these edits) is still the base students'
    session.undo()
    session.undo()
    assert start_metrics(session)[c] == start[c]
    chance = chance_levels(session, c)
    assert 0 < chance["this class"]["student AP"] < 1 and chance["mean of all classes"]["balanced agreement"] == 0.5


def test_sessions_are_listed_per_browser_and_restored_from_their_address(explorer):
    mine, theirs = owner_of("key-a"), owner_of("key-b")
    assert mine != theirs and "key-a" not in mine
    session, problem = session_for_link(explorer, None, mine)
    assert problem is None and session.owner == mine
    j = unused(session, 0)
    session.upweight(0, j, 2.0)
    session.name = "trying sky"
    session.autosave()
    other, _ = session_for_link(explorer, None, theirs)
    other.remove(1, slider_concepts(other, 1)[0])
    listed = saved_sessions(explorer, mine)
    assert list(listed["session_id"]) == [session.session_id] and listed["name"].iloc[0] == "trying sky"
    assert other.session_id in set(saved_sessions(explorer, theirs)["session_id"])
    assert json.loads(session.autosave_path.read_text())["owner"] == mine
    # a reload: the same address in the same browser resumes the very session
    again, problem = session_for_link(explorer, session.session_id, mine)
    assert problem is None and again.session_id == session.session_id
    np.testing.assert_array_equal(again.bank.coef_, session.bank.coef_)
    # a shared link opened in another browser: a copy of the edits, saved as that browser's own
    copy, problem = session_for_link(explorer, session.session_id, theirs)
    assert problem is None and copy.session_id != session.session_id and copy.owner == theirs
    assert copy.name == "Copy of trying sky" and copy.autosave_path.is_file()
    np.testing.assert_array_equal(copy.bank.coef_, session.bank.coef_)
    assert session.session_id not in set(saved_sessions(explorer, theirs)["session_id"])
    # a missing or bad address: a new session, and a line saying what was wrong for a bad one
    fresh, problem = session_for_link(explorer, "0123456789abcdef", mine)  # more in test_tune_links
    assert problem == "No saved session '0123456789abcdef' in this workspace; a new one was started"
    assert not fresh.events and fresh.session_id != "0123456789abcdef"
    fresh, problem = session_for_link(explorer, "../etc", mine)
    assert "names no session" in problem and not fresh.events
    (session.autosave_path.parent / "broken.json").write_text("{")
    fresh, problem = session_for_link(explorer, "broken", mine)
    assert problem.startswith("Session broken could not be restored") and not fresh.events


def test_picked_concepts_go_into_the_page_address_and_back():
    from conceptkd_core.tuning_view import picked_from_text, picked_text

    picked = {0: [21, 45], 3: [7], 5: []}
    assert picked_text(picked) == "0:21.45,3:7"
    assert picked_from_text("0:21.45,3:7", 20, 107) == {0: [21, 45], 3: [7]}
    assert picked_from_text(None, 20, 107) == {} and picked_from_text("", 20, 107) == {}
    assert picked_from_text("0:21.21,0:21", 20, 107) == {0: [21]}  # repeats count once


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0:21.x", "expected class:concept.concept"),
        ("zero", "expected class:concept.concept"),
        ("20:1", "classes go 0..19"),
        ("0:107", "concepts 0..106"),
        ("0:-1", "concepts 0..106"),
        (",".join(f"{c}:" + ".".join(str(j) for j in range(11)) for c in range(20)), "More than 200"),
        ("0:1" * 1000, "too long"),
    ],
)
def test_a_hand_edited_address_is_refused_naming_the_bad_part(text, message):
    from conceptkd_core.tuning_view import picked_from_text

    with pytest.raises(TuningError, match=message):
        picked_from_text(text, 20, 107)


def test_a_class_the_teacher_never_calls_in_held_out_images_has_no_gain_and_says_why(tmp_path):
    """AP against the teacher is undefined without a held-out yes: the gain is not printed as "+nan"."""
    session = new_session(open_explorer(make_demo_subset(tmp_path / "demo", per_split=5)))
    held = session.shared.held_out_rows
    yes = (session.teacher_probs[held] > 0.5).sum(axis=0)
    never, some = int(np.flatnonzero(yes == 0)[0]), int(np.flatnonzero(yes > 0)[0])
    table = suggestions(session, [some, never], factor=2.0, top=3)
    assert table["held_out_gain"].iloc[:3].notna().all()  # the measured class first
    assert table[table["class_index"] == never]["held_out_gain"].isna().all()
    assert gain_words(table["held_out_gain"].iloc[-1]) == "not measurable" and gain_words(0.0123) == "+0.012"
    assert unmeasured_note(table) == (
        f"No held-out gain for “{session.classes[never]}”: the teacher says yes for it on none of the "
        f"{held.size:,} held-out images, so AP against its decisions is undefined; those candidates come last, "
        "unranked."
    )
    assert unmeasured_note(table[table["class_index"] == some]) is None
