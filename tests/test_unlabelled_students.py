"""A workspace made from class names only (Setup's zip + class names, no labels CSV) has no label to
measure AP against: the Students page measured it anyway and showed 'nan' for the teacher's, the
students' and chance's mAP over an empty chart. It now measures the students against the teacher
(AP at finding the teacher's yes images, with its chance) and says why."""

import dataclasses
import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.datasets import load_unlabelled
from conceptkd_core.explorer import metrics_summary, metrics_table, new_session, open_explorer
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.store.split import assign_heldout

from tiny_clip import make_tiny_checkpoint, write_scene

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """30 unlabelled scenes, CLIP zero-shot as teacher, split as a Setup job splits them."""
    base = tmp_path_factory.mktemp("unlabelled")
    config, weights = make_tiny_checkpoint(base / "model")
    clip = load_clip(str(config), checkpoint=weights)
    (base / "images").mkdir()
    for i in range(30):
        write_scene(base / "images" / f"{i}.png", i)
    images = load_unlabelled(base / "images", ["cat", "dog", "car"])
    images = dataclasses.replace(images, splits=assign_heldout(images.splits, images.labels))
    extract(images, base / "ws", clip, ClipZeroShotTeacher(clip, images.classes), ["red", "blue", "grass"])
    return base / "ws"


def test_the_summary_says_there_are_no_labels_and_gives_the_chance_against_the_teacher(workspace):
    explorer = open_explorer(workspace)
    session = new_session(explorer, autosave=False)
    summary, table = metrics_summary(explorer, session), metrics_table(explorer, session)
    assert summary["labelled"] is False
    assert 0 < summary["fidelity_chance"] < 1 and math.isfinite(summary["fidelity_ap"])
    yes = session.teacher_probs[explorer.shared.held_out_rows] > 0.5
    assert list(table["teacher_yes_share"]) == pytest.approx(list(yes.mean(axis=0)))


def test_the_students_page_shows_no_nan(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(workspace)
    at.run()
    at.switch_page("views/students.py").run()
    assert not at.exception, at.exception
    shown = {m.label: m.value for m in at.metric}
    assert not [label for label, value in shown.items() if "nan" in str(value).lower()], shown
    assert shown["Teacher mAP"] == "no labels"
    assert 0 <= float(shown["Student AP vs teacher"]) <= 1 and 0 < float(shown["Chance"]) < 1
    assert any("No held-out image has a label" in i.value for i in at.info)
    assert any("the share of the teacher's yes images" in c.value for c in at.caption)


def test_the_chart_without_labels_draws_and_names_only_the_student(workspace):
    import json

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(workspace)
    at.run()
    at.switch_page("views/students.py").run()
    spec = json.loads(at.get("vega_lite_chart")[0].proto.spec)
    bars, ticks = spec["layer"]
    assert bars["encoding"]["color"]["scale"]["domain"] == ["student"]  # no legend entry for teacher bars not drawn
    assert bars["encoding"]["y"]["title"] == "held-out AP vs teacher"
    assert ticks["encoding"]["y"]["field"] == "teacher_yes_share"  # the chance line


def test_the_table_without_labels_leaves_out_the_columns_measured_against_labels(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(workspace)
    at.run()
    at.switch_page("views/students.py").run()
    order = list(at.dataframe[0].proto.column_order)
    assert order[:2] == ["class", "fidelity_ap"] and not {"teacher_ap", "student_ap", "chance_ap"} & set(order)
