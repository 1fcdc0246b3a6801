"""Every page through Streamlit's AppTest, on a workspace made by the real extraction path."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.datasets import load_folder
from conceptkd_core.extract import jobs
from conceptkd_core.extract.clip_backend import load_clip
from conceptkd_core.extract.pipeline import extract
from conceptkd_core.extract.teachers import ClipZeroShotTeacher
from conceptkd_core.markdown_text import as_read
from conceptkd_core.store.workspace import load_workspace
from conceptkd_core.vocabulary import load_vocabulary
from conceptkd_tools.tune_board_driver import board, move_slider, send_edit
from views.common import PAGES as PAGE_LIST

from tiny_clip import make_tiny_checkpoint, write_scene

ROOT = Path(__file__).resolve().parent.parent
PAGES = [view.script for view in PAGE_LIST]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("app")
    config, weights = make_tiny_checkpoint(base / "model")
    clip = load_clip(str(config), checkpoint=weights)
    (base / "images").mkdir()
    rows = ["image,split,labels"]
    for i in range(40):
        write_scene(base / "images" / f"{i}.png", i)
        rows.append(f"{i}.png,test,{['cat', 'dog', 'car'][i % 3]}")
    (base / "labels.csv").write_text("\n".join(rows) + "\n")
    images = load_folder(base / "images", base / "labels.csv")
    vocab = load_vocabulary(ROOT / "conceptkd_core/vocabularies/davis2017.txt")
    extract(images, base / "ws", clip, ClipZeroShotTeacher(clip, images.classes), vocab, batch_size=8)
    return base / "ws"


def open_page(workspace, page, browser: str | None = None):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(workspace)
    if browser:  # the key a browser's cookie would hold (views.common.browser_key)
        at.session_state["browser_key"] = f"test-browser-{browser}-0123456789"
    at.run()
    if page != PAGES[0]:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("view", PAGE_LIST, ids=lambda view: view.title)
def test_every_page_renders(workspace, view):
    at = open_page(workspace, view.script)
    assert at.title[0].value == view.title
    assert not at.warning


def test_navigation_groups_the_pages_with_material_icons():
    sections = {}
    for view in PAGE_LIST:
        sections.setdefault(view.section, []).append(view.title)
        assert view.icon.startswith(":material/") and view.icon.endswith(":"), view
    assert sections == {
        "": ["Start here"],
        "Explore": ["Students", "Concepts", "Images", "Predict"],
        "Steer": ["Tune", "History"],
        "Workspace": ["Setup"],
    }
    assert [view.url_path for view in PAGE_LIST] == [
        "",
        "students",
        "concepts",
        "images",
        "predict",
        "tune",
        "history",
        "setup",
    ]
    assert not (ROOT / "pages").exists(), "a pages/ folder beside app.py switches Streamlit to its legacy page list"


def test_the_landing_page_links_three_steps(workspace):
    at = open_page(workspace, PAGES[0])
    links = [element.proto for element in at.get("page_link")]
    assert [link.label for link in links] == ["Open Students", "Open Images", "Open Tune"]
    assert any("40 images · 3 classes · 78 concepts" in c.value for c in at.caption)


@pytest.mark.parametrize("script", ["views/students.py", "views/history.py", "views/setup.py"])
def test_tables_hide_the_index_name_every_column_and_size_the_pinned_ones(workspace, script):
    import json

    at = open_page(workspace, "views/tune.py")
    move_slider(at, 0.25)  # one edit, so that History has its table
    at.switch_page(script).run()
    assert at.dataframe
    for table in at.dataframe:
        config = json.loads(table.proto.columns)
        shown = list(table.proto.column_order) or list(table.value.columns)
        assert config["_index"]["hidden"] is True
        assert "row" not in shown
        for name in shown:
            assert config.get(name, {}).get("label"), f"{script}: column {name!r} has no readable label"
            column = config.get(name, {})
            if column.get("pinned") and column.get("type_config", {}).get("type") == "text":
                # without a width, as wide as its longest name: on a phone, nothing else is in view
                assert column.get("width"), f"{script}: pinned text column {name!r} has no width"


def test_setup_shows_the_workspace(workspace):
    at = open_page(workspace, "views/setup.py")
    assert [m.value for m in at.metric][:3] == ["40", "3", "78"]


def test_an_image_opened_from_the_grid_shows_its_waterfall(workspace):
    at = open_page(workspace, "views/images.py")
    session = at.session_state["tuning"]
    c = list(session.classes).index(at.session_state["class"])
    opener = [b for b in at.button if b.key and b.key.startswith("open_")][2]
    image_id = opener.key.removeprefix("open_")
    opener.click().run()
    assert not at.exception
    assert at.session_state["detail_image"] == image_id
    assert as_read(at.subheader[0].value) == image_id
    row = load_workspace(workspace).row_of(image_id)
    words = next(caption.value for caption in at.caption if caption.value.startswith("Bias "))
    assert f"gives {session.student_scores[row, c]:+.2f}" in words
    assert [t.label for t in at.tabs] == ["Share of the score", "Concept", "Top concept"]


def test_a_slider_move_refits_and_undo_restores(workspace):
    at = open_page(workspace, "views/tune.py")
    session = at.session_state["tuning"]
    c = list(session.classes).index(at.session_state["class"])
    before = session.bank.coef_.copy()
    first = board(at)["rows"][0]["weight"]
    target = round(first * 0.5, 2) if first else 0.5
    move_slider(at, target)
    assert not at.exception
    j = session.events[-1].concept
    assert session.bank.coef_[c, j] == pytest.approx(target)  # the bound holds
    assert not np.array_equal(session.bank.coef_, before)
    assert board(at)["tiles"][0]["label"] == "Student AP" and board(at)["edits"] == 1
    at.switch_page("views/history.py").run()
    assert at.dataframe[0].value.shape[0] == 1
    at.button[0].click().run()  # Undo
    assert not at.exception
    np.testing.assert_array_equal(at.session_state["tuning"].bank.coef_, before)


def test_a_slider_echoing_its_own_weight_is_not_an_edit(workspace):
    """Streamlit can re-send a fresh slider's drawn value as a change (seen in Chromium on a
    1M-image workspace, where slow reruns are cut short); that must not become an edit."""
    at = open_page(workspace, "views/tune.py")
    session = at.session_state["tuning"]
    before = len(session.events)
    move_slider(at, board(at)["rows"][0]["weight"] + 0.004)  # within half a step of the weight drawn
    assert not at.exception and len(session.events) == before
    move_slider(at, board(at)["rows"][0]["weight"] + 0.02)  # a real move of two steps
    assert len(session.events) == before + 1


def test_missing_workspace_says_how_to_make_one(tmp_path):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(tmp_path / "none")
    at.run()
    assert not at.exception
    assert "No workspace to show" in at.warning[0].value


def test_browsing_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys, runpy\n"
        "import conceptkd_core.explorer, conceptkd_core.images, conceptkd_core.extract.segments\n"
        "import conceptkd_core.students.session\n"
        "import views.common\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


def test_an_autosaved_session_can_be_resumed(workspace):
    at = open_page(workspace, "views/tune.py", browser="one")
    first = at.session_state["tuning"]
    move_slider(at, 0.25)
    assert first.autosave_path.is_file() and len(first.events) == 1
    stranger = open_page(workspace, "views/history.py", browser="two")  # another browser does not see it
    assert not any(s.key == "resume_pick" for s in stranger.selectbox)
    other = open_page(workspace, "views/history.py", browser="one")  # a new session in the same browser
    assert other.session_state["tuning"].session_id != first.session_id
    other.selectbox(key="resume_pick").set_value(first.session_id).run()
    next(b for b in other.button if b.label == "Resume it").click().run()
    assert not other.exception
    resumed = other.session_state["tuning"]
    assert resumed.session_id == first.session_id
    np.testing.assert_array_equal(resumed.bank.coef_, first.bank.coef_)


def test_a_picked_concept_filters_the_image_views_and_its_thumbnails_open_there(workspace):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.session_state["workspace_root"] = str(workspace)
    at.session_state["concept"] = "dog"
    at.run()
    at.switch_page("views/concepts.py").run()
    assert not at.exception
    assert any("Where “dog” fires most" in m.value for m in at.markdown)
    opener = next(b for b in at.button if b.key and b.key.startswith("open_"))
    opener.click().run()  # a thumbnail's Open button: the Images page, showing that image
    assert not at.exception
    assert at.title[0].value == "Images"
    assert at.selectbox(key="concept_input").value == "dog"
    assert as_read(at.subheader[0].value) == opener.key.removeprefix("open_")


@pytest.mark.parametrize("op", ["upweight", "lock", "remove"])
def test_the_tune_actions_record_their_operation(workspace, op):
    at = open_page(workspace, "views/tune.py")
    session = at.session_state["tuning"]
    c = list(session.classes).index(at.session_state["class"])
    send_edit(at, {"op": op, "j": board(at)["rows"][0]["j"]})
    assert not at.exception and not at.error
    event = session.events[-1]
    assert event.op == op and event.classes == [c]
    j = event.concept
    if op == "remove":
        assert session.bank.coef_[c, j] == 0
    if op == "upweight":
        assert abs(session.bank.coef_[c, j]) >= 2 * abs(session.base.coef[c, j]) - 1e-9


def test_vocabulary_edit_rescores_into_a_new_workspace(workspace, tmp_path):
    import shutil

    # the tiny model lives next to the workspace's parent folder in this fixture
    copy = tmp_path / "ws"
    shutil.copytree(workspace, copy)
    shutil.copytree(workspace.parent / "images", tmp_path / "images")  # a workspace moves with its images
    for f in (workspace.parent / "model").iterdir():
        shutil.copy(f, tmp_path / f.name)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["workspace_root"] = str(copy)
    at.run()
    at.switch_page("views/setup.py").run()
    ws = load_workspace(copy)
    area = next(a for a in at.text_area if a.key.startswith("vocab_"))
    area.set_value(area.value + "\nunicorn\n").run()
    assert not at.exception
    button = next(b for b in at.button if b.label.startswith("Re-score"))
    button.click().run()  # starts a background job, listed at the top of the page
    assert not at.exception, at.exception
    (target,) = at.session_state["watched_jobs"]
    assert jobs.wait(target, timeout=120).state == "done"
    at.run()  # the job's panel sees it done and opens the new workspace
    assert not at.exception, at.exception
    new_root = at.session_state["workspace_root"]
    assert Path(new_root).resolve() == Path(target).resolve()
    new = load_workspace(new_root)
    assert new.n_concepts == ws.n_concepts + 1 and new.vocabulary[-1] == "unicorn"
    assert new.n_images == ws.n_images
    np.testing.assert_array_equal(new.teacher_logits, ws.teacher_logits)  # the teacher's logits are reused
    # the words both share keep their scores (same model, same segments)
    np.testing.assert_allclose(
        np.asarray(new.concept_matrix[:, :-1], np.float32), np.asarray(ws.concept_matrix, np.float32), atol=2e-3
    )
