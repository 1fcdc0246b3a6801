"""Adding images to a workspace whose teacher is a logits file, in headless Chromium: the analyst
uploads the new images' logits beside them. A module of its own (its own server and browser): in
one server with the other Setup flows it was flaky on a 2-core machine."""

from pathlib import Path

import pandas as pd
import pytest

from conceptkd_core.store.workspace import load_workspace

from browser_app import app_on, chromium_path, open_folder, settle, wait_for_text
from demo_subset import copy_demo_subset, make_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    """A small copy of the demo (40 scenes, its mini CLIP and teacher beside it), its students fit."""
    return copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("browser-logits"))


@pytest.fixture(scope="module")
def server(demo):
    """The app with the copy as its default workspace, and the copy's folder as the only one visitors may open."""
    with app_on(demo) as url:
        yield url


def logits_file_teacher(folder: Path):
    """A teacher made of a logits CSV written in ``folder`` (what `--teacher logits.csv` records)."""
    from conceptkd_core.extract.teachers import LogitsFileTeacher

    def make(image_ids, classes, logits):
        frame = pd.DataFrame(logits, columns=list(classes))
        frame.insert(0, "image_id", [str(i) for i in image_ids])
        frame.to_csv(folder / "logits.csv", index=False)
        return LogitsFileTeacher(folder / "logits.csv", classes)

    return make


def test_add_an_image_to_a_logits_file_workspace_with_its_uploaded_logits(app_page, demo, shots, tmp_path):
    """A logits file has no logits for new images: the analyst uploads them; a table missing the
    new image is refused in one line naming it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    from conceptkd_tools.demo import DEMO_DIR

    page = app_page("setup")  # a new session on the default workspace, the demo copy

    ws = load_workspace(make_demo_subset(demo.parent, workspace="logits-ws", teacher=logits_file_teacher(demo.parent)))
    assert ws.meta["teacher"]["kind"] == "logits-file"
    open_folder(page, "demo/logits-ws", "logits-file")  # Setup names the open workspace's teacher
    settle(page)
    present = {p.name for p in (demo.parent / "images").iterdir()}
    new = [p for p in sorted((DEMO_DIR / "images").glob("test-*.png")) if p.name not in present][-1]
    uploader = page.locator('[data-testid="stFileUploader"]', has_text="Images (")
    logits = page.locator('[data-testid="stFileUploader"]', has_text="Teacher logits for these images")
    # The upload must reach the page of the newly opened workspace: on a loaded machine the first
    # can land on the page still being redrawn for the switch (and be dropped by that redraw), so
    # it is given again, at most twice, until the logits uploader it calls for is there to stay.
    for attempt in range(3):
        uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(new))
        try:
            wait_for_text(
                page, "which has no logits for new images: upload theirs", timeout=30000 if attempt < 2 else 180000
            )
            settle(page)
            logits.locator('[data-testid="stFileUploaderDropzoneInput"]').wait_for(state="attached", timeout=10000)
            break
        except PlaywrightTimeout:
            settle(page)
    row = ",".join(str(float(i)) for i in range(len(ws.classes)))
    header = "image_id," + ",".join(ws.classes)
    (tmp_path / "wrong.csv").write_text(f"{header}\nsomething-else.png,{row}\n")
    logits.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        str(tmp_path / "wrong.csv"), timeout=120000
    )
    wait_for_text(page, f"wrong.csv: no logits for 1 uploaded images ({new.name})")
    page.get_by_text("wrong.csv: no logits").scroll_into_view_if_needed()  # the page scrolls inside its main block
    page.screenshot(path=str(shots / "setup-add-images-logits-missing.png"), full_page=True)
    assert page.get_by_role("button", name="Add 1 images", exact=False).count() == 0
    (tmp_path / "new.csv").write_text(f"{header}\n{new.name},{row}\n")
    logits.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
        str(tmp_path / "new.csv"), timeout=120000
    )
    button = page.get_by_role("button", name="Add 1 images → logits-ws-plus-41")
    button.wait_for(timeout=60000)
    button.scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "setup-add-images-logits.png"), full_page=True)
    button.click()
    wait_for_text(page, "New workspace logits-ws-plus-41 with 41 images")
    page.get_by_text("New workspace logits-ws-plus-41").scroll_into_view_if_needed()
    page.screenshot(path=str(shots / "setup-add-images-logits-done.png"), full_page=True)
    merged = load_workspace(demo.parent / "logits-ws-plus-41")
    assert merged.n_images == 41 and merged.meta["teacher"] == ws.meta["teacher"]
    assert list(merged.teacher_logits[-1]) == [float(i) for i in range(len(ws.classes))]
    assert merged.meta["extra"]["added_teachers"][0]["source"] == "new.csv"
