"""Creating a workspace from the app in a real browser: a folder of images, a labels file and a
TorchScript teacher with its own preprocessing; the extraction runs in the background with a
progress bar, survives a page reload, and opens the Students page on the new workspace.

Screenshots land in $CONCEPTKD_SCREENSHOTS (default: the test's temporary folder).
"""

import os
from urllib.parse import urlparse

import numpy as np
import pytest

from conceptkd_core.extract import jobs
from conceptkd_core.store.workspace import load_workspace
from conceptkd_tools.demo import TEACHER_PREPROCESSING

from browser_app import app_on, chromium_path, fill, folder_box, no_exception, settle
from demo_subset import copy_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    """A small copy of the demo (40 scenes, its mini CLIP and teacher beside it) and a labels CSV of its images."""
    root = copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("browser-create"))
    ws = load_workspace(root)
    # One 0/1 column per class keeps every class, in the teacher's order, even one no image shows.
    rows = [",".join(["image", "image_id", *ws.classes])] + [
        ",".join([str(ws.paths[r]), str(ws.image_ids[r]), *map(str, ws.labels[r])]) for r in range(ws.n_images)
    ]
    (root.parent / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def server(demo):
    with app_on(demo) as url:
        yield url


def test_create_a_workspace_with_a_torchscript_teacher_and_see_its_students(app_page, demo, shots):
    p = TEACHER_PREPROCESSING
    page = app_page("setup")
    page.get_by_text("Create a workspace").click()
    fill(page, "Image folder", "demo/images")
    fill(page, "Labels CSV (optional)", "demo/labels.csv")
    page.get_by_text("TorchScript file").click()
    settle(page)
    fill(page, "Teacher file", "demo/teacher.pt")
    fill(page, "Image size (px)", str(p.image_size))
    fill(page, "Mean (R, G, B)", ", ".join(map(str, p.mean)))
    fill(page, "Std (R, G, B)", ", ".join(map(str, p.std)))
    fill(page, "Folder for the new workspace", "demo/created")
    fill(page, "Segments per image", "8")
    page.screenshot(path=str(shots / "create-form.png"), full_page=True)
    no_exception(page)
    page.get_by_role("button", name="Start extraction").click()
    # Progress shows while it runs; a reload (a new session) finds the job again from its status file.
    page.get_by_text("demo/created:").first.wait_for(timeout=120000)
    page.screenshot(path=str(shots / "create-progress.png"), full_page=True)
    page.reload()
    settle(page)
    no_exception(page)
    page.screenshot(path=str(shots / "create-after-reload.png"), full_page=True)
    assert jobs.read_status(demo.parent / "created") is not None
    # Done: the page that watched it opens the new workspace on the Students page; had it finished
    # while the page reloaded, the page lists it, done, with a button that opens it.
    opened = page.get_by_role("heading", name="Students", exact=True)
    finished = page.get_by_role("button", name="Open it")
    opened.or_(finished).or_(page.get_by_text(", failed")).first.wait_for(timeout=300000)
    if not opened.is_visible() and finished.is_visible():
        assert page.get_by_text("demo/created: done, 40 images extracted").is_visible()
        finished.click()
        opened.wait_for(timeout=60000)
    settle(page)
    assert urlparse(page.url).path.endswith("/students"), page.locator("body").inner_text()[:2000]
    no_exception(page)
    page.screenshot(path=str(shots / "create-students.png"), full_page=True)
    assert folder_box(page).input_value() == "demo/created"
    page.get_by_text("held-out", exact=False).first.wait_for(timeout=60000)
    created, original = load_workspace(demo.parent / "created"), load_workspace(demo)
    assert created.n_images == 40 and created.meta["teacher"]["kind"] == "torch"
    assert created.meta["teacher"]["image_size"] == p.image_size and not os.path.isabs(
        created.meta["teacher"]["source"]
    )
    # The demo's teacher through the generic TorchScript path, with its preprocessing typed in the
    # form, gives the demo's own logits for these images.
    order = [created.row_of(str(i)) for i in original.image_ids]
    np.testing.assert_allclose(created.teacher_logits[order], original.teacher_logits, atol=1e-4)
    # A new tab (a new session) still lists the job, finished lately, and opens it in one click.
    page.goto(page.url.replace("/students", "/setup"))
    settle(page)
    page.get_by_text("demo/created: done, 40 images extracted").wait_for(timeout=60000)
    page.screenshot(path=str(shots / "create-done-listed.png"), full_page=True)
    page.get_by_role("button", name="Open it").click()
    page.get_by_role("heading", name="Students", exact=True).wait_for(timeout=60000)
    no_exception(page)
