"""The Setup flows and a bad tuning-log import in a real browser: `streamlit run` on loopback over a
small copy of the demo, driven by Debian's headless Chromium.

These flows change the open workspace from a button, which AppTest does not render like a browser
does (setting the sidebar's folder box after it was drawn crashed only here). Screenshots land in
$CONCEPTKD_SCREENSHOTS (default: the test's temporary folder).
"""

import json
from pathlib import Path

import pytest

from conceptkd_core.store.strict_json import canonical_sha256
from conceptkd_core.store.workspace import load_workspace

from browser_app import app_on, chromium_path, folder_box, no_exception, open_folder, settle, wait_for_text
from demo_subset import copy_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    """A small copy of the demo (40 scenes, its mini CLIP and teacher beside it), its students fit."""
    return copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("browser-setup"))


@pytest.fixture(scope="module")
def server(demo):
    """The app with the copy as its default workspace, and the copy's folder as the only one visitors may open."""
    with app_on(demo) as url:
        yield url


def test_add_two_images_one_a_duplicate_opens_the_new_workspace(app_page, demo, shots):
    from conceptkd_tools.demo import DEMO_DIR

    page = app_page("setup")  # a new session: the default workspace, the demo copy

    present = {p.name for p in (demo.parent / "images").iterdir()}
    new = next(p for p in sorted((DEMO_DIR / "images").glob("test-*.png")) if p.name not in present)
    duplicate = sorted((demo.parent / "images").glob("val-*.png"))[0]  # already in the workspace
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').last.set_input_files([str(new), str(duplicate)])
    settle(page)
    wait_for_text(page, f"{duplicate.name}: skipped, the same file as image")
    page.screenshot(path=str(shots / "setup-add-images-duplicate.png"), full_page=True)
    button = page.get_by_role("button", name="Add 1 images → workspace-plus-41")
    button.wait_for(timeout=60000)
    button.click()
    wait_for_text(page, "New workspace workspace-plus-41 with 41 images")
    page.screenshot(path=str(shots / "setup-add-images.png"), full_page=True)
    no_exception(page)
    assert folder_box(page).input_value() == "demo/workspace-plus-41"  # <allowed root>/<folder>, no server path
    assert page.locator('[data-testid="stMetric"]', has_text="Images").first.inner_text().endswith("41")
    merged = load_workspace(demo.parent / "workspace-plus-41")
    assert (
        merged.n_images == 41
        and merged.image_path(40).parent == (demo.parent / "workspace-plus-41" / "uploads").resolve()
    )
    assert {p.name for p in (demo.parent / "images").iterdir()} == present  # the image folder is untouched


def test_rescore_opens_the_new_workspace(app_page, demo, shots):
    page = app_page("setup")
    area = page.get_by_label("Concept words, one per line (edit, then re-score)")
    area.fill(area.input_value() + "\nunicorn\n")
    area.press("Control+Enter")  # apply the edit
    settle(page)
    button = page.get_by_role("button", name="Re-score 40 images with this vocabulary", exact=False)
    button.wait_for(timeout=60000)
    button.click()  # a background job, listed at the top of Setup
    page.get_by_text("demo/workspace-vocab-", exact=False).first.wait_for(timeout=60000)
    page.reload()  # a reload (a new session) finds it again: running, or done with a button that opens it
    settle(page)
    students = page.get_by_role("heading", name="Students", exact=True)
    open_it = page.get_by_role("button", name="Open it")
    students.or_(open_it).first.wait_for(timeout=180000)
    if open_it.count():
        open_it.click()
    students.wait_for(timeout=60000)
    settle(page)
    page.screenshot(path=str(shots / "setup-rescore.png"), full_page=True)
    no_exception(page)
    opened = folder_box(page).input_value()
    assert opened.startswith("demo/workspace-vocab-")
    rescored = load_workspace(demo.parent / Path(opened).name)
    assert rescored.n_concepts == 108 and rescored.vocabulary[-1] == "unicorn"


def crafted_log(demo: Path) -> bytes:
    """A real log with one weight of its edit tripled, in the edit and in the saved students, and
    its checksum recomputed to match: a file only replaying the edit can tell from a real one."""
    from conceptkd_core.explorer import new_session, open_explorer

    session = new_session(open_explorer(demo), autosave=False)
    j = int(abs(session.bank.coef_[0]).argmax())
    session.set_weight(0, j, 0.5)
    document = json.loads(session.export_json())
    document.pop("sha256")
    idx, vals = document["events"][0]["coef"]["0"]
    k = next(k for k, concept in enumerate(idx) if concept != j)
    vals[k] *= 3
    document["students"]["coef"][0][idx[k]] = vals[k]
    return json.dumps(document | {"sha256": canonical_sha256(document)}).encode()


def test_a_refused_path_and_bad_tuning_logs_change_nothing(app_page, demo, shots, tmp_path):
    page = app_page("setup")
    open_folder(page, "/etc", "'/etc' is outside the folders this server allows: demo/")
    page.screenshot(path=str(shots / "sidebar-refused-path.png"), full_page=True)
    no_exception(page)
    assert page.get_by_text("'/etc' is outside the folders this server allows: demo/").count() == 1
    assert page.locator('[data-testid="stMetric"]', has_text="Images").first.inner_text().endswith("40")

    page.locator('[data-testid="stSidebarNav"] a', has_text="History").first.click()
    settle(page)
    (tmp_path / "nan.json").write_bytes(b'{"format": "conceptkd.tuning", "version": NaN}')
    (tmp_path / "crafted.json").write_bytes(crafted_log(demo))
    for name, message in (
        ("nan.json", "NaN is not a number JSON allows"),
        ("crafted.json", "edit 1 (set) does not replay on this workspace"),
    ):
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(tmp_path / name))
        error = page.locator('[data-testid="stAlertContentError"]', has_text=f"{name}: not imported")
        error.filter(has_text=message).wait_for(timeout=60000)
        settle(page)
        page.screenshot(path=str(shots / f"history-import-{name}.png"), full_page=True)
        no_exception(page)
        assert error.count() == 1, name
        assert page.get_by_text("No edits yet").count() == 1  # the session is unchanged
