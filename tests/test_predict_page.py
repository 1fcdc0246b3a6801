"""The Predict page and the Students page's export: AppTest on a small copy of the demo (its mini
CLIP and teacher beside it), and a headless-Chromium run that uploads a new image."""

import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from conceptkd_core.markdown_text import as_read
from conceptkd_tools.demo import DEMO_DIR

from browser_app import app_on, chromium_path, settle
from demo_subset import make_demo_subset

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return make_demo_subset(tmp_path_factory.mktemp("predict") / "demo", per_split=10)


@pytest.fixture(scope="module")
def server(demo):
    """The app over the copy, for the browser test."""
    with app_on(demo) as url:
        yield url


def open_page(demo, script: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
    at.session_state["workspace_root"] = str(demo)
    at.run()
    at.switch_page(script).run()
    assert not at.exception, at.exception
    return at


def test_predict_on_a_workspace_image_shows_both_models_and_the_waterfall(demo):
    at = open_page(demo, "views/predict.py")
    assert at.title[0].value == "Predict" and "Drop in an image" in at.info[0].value
    at.radio(key="predict_source").set_value("Pick a workspace image").run()
    assert not at.exception, at.exception
    picked = at.selectbox(key="predict_pick").value
    assert as_read(at.subheader[0].value) == picked
    assert any("Why the student says" in m.value for m in at.markdown)
    assert any("The students say" in m.value for m in at.markdown)
    assert not at.warning  # the teacher was found beside the workspace: both models are shown
    caption = next(c.value for c in at.caption if c.value.startswith("Bias "))
    assert "threshold" in caption and "student" in caption


@pytest.fixture(scope="module")
def teacher_kept_with_models(tmp_path_factory):
    """A demo subset whose teacher file lives in a models folder of the analyst's, not beside it."""
    from conceptkd_core.extract.teacher_registry import create_teacher
    from conceptkd_tools.demo import TEACHER_PREPROCESSING

    folder = tmp_path_factory.mktemp("models-teacher")
    (folder / "models").mkdir()
    kept = shutil.copy(DEMO_DIR / "teacher.pt", folder / "models" / "teacher.pt")
    root = make_demo_subset(
        folder / "demo",
        per_split=5,
        teacher=lambda ids, classes, logits: create_teacher(kept, classes, preprocessing=TEACHER_PREPROCESSING),
    )
    (folder / "demo" / "teacher.pt").unlink()  # the subset's copy beside the workspace would be found first
    return root


@pytest.mark.parametrize("readable", [True, False], ids=["inside the allowed roots", "outside them"])
def test_predict_uses_a_teacher_recorded_elsewhere_only_inside_the_allowed_roots(
    teacher_kept_with_models, monkeypatch, readable
):
    """The Predict page finds the teacher as Setup does (one lookup, views.common.get_teacher)."""
    import views.common

    folder = teacher_kept_with_models.parent.parent
    monkeypatch.setattr(views.common, "ALLOWED_ROOTS", (folder,) if readable else (folder / "demo",))
    views.common.get_teacher.clear()  # a server's roots are fixed for its life; this test changes them
    at = open_page(teacher_kept_with_models, "views/predict.py")
    at.radio(key="predict_source").set_value("Pick a workspace image").run()
    assert not at.exception, at.exception
    if readable:
        assert not at.warning, at.warning[0].value  # else "Students only: <why>"
    else:
        warning = as_read(at.warning[0].value)
        assert "Students only:" in warning and "no TorchScript file with SHA-256" in warning
        assert str(folder) not in warning  # no server paths shown


def test_the_students_page_exports_a_zip(demo):
    at = open_page(demo, "views/students.py")
    at.button(key="export_student").click().run()
    assert not at.exception, at.exception
    assert not at.error, at.error[0].value if at.error else ""
    _, _, data = at.session_state["export_zip"]
    names = {Path(n).name for n in zipfile.ZipFile(io.BytesIO(data)).namelist()}
    assert {"model.json", "dense.pt", "MODEL_CARD.md", "concept_embeddings.npy", "vocabulary.txt"} == names


@pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_upload_a_new_image_in_the_browser(app_page, shots, tmp_path):
    from PIL import Image

    # A new image: two demo scenes side by side (a shape and content no workspace image has).
    left = Image.open(DEMO_DIR / "images" / "test-0001.png").convert("RGB")
    right = Image.open(DEMO_DIR / "images" / "test-0002.png").convert("RGB")
    new = Image.new("RGB", (left.width + right.width, left.height))
    new.paste(left, (0, 0))
    new.paste(right, (left.width, 0))
    upload = tmp_path / "new-scene.png"
    new.save(upload)
    page = app_page("predict", height=1300)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload))
    exception = page.locator('[data-testid="stException"]')
    page.get_by_text("Why the student says").or_(exception).first.wait_for(timeout=180000)
    settle(page, timeout=180000)
    body = page.locator("body").inner_text()
    assert exception.count() == 0, body[:3000]
    assert "new-scene.png" in body and "The students say" in body and "threshold" in body
    assert page.locator('[data-testid="stVegaLiteChart"]').count() == 2
    page.screenshot(path=str(shots / "predict.png"), full_page=True)
    assert np.asarray(Image.open(shots / "predict.png")).std() > 10  # a drawn page, not a blank one
