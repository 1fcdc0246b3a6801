"""What the third QA pass in a real browser found, checked where it was found (headless Chromium over
`streamlit run`, one server on one small copy of the demo for the module):

- Tune's two charts are drawn in the width they are shown at: scaled down from a fixed 480-unit
  drawing to a phone's column, their 11 px text came out at 8 px;
- an imported log survives a reload of the History page (it was saved only from the next edit on,
  so a reload brought back the session as it was before the import);
- a teacher file that is missing or no TorchScript model is refused in one line that says which
  (torch's own words: "not a TorchScript model (The provided filename … does not exist)", and a
  paragraph about "an internal miniz error" cut off mid-word).

Screenshots land in $CONCEPTKD_SCREENSHOTS (default: the test's temporary folder).
"""

import pytest

from conceptkd_tools.screenshots import OVERFLOW_JS
from conceptkd_tools.tune_board_driver import BOARD_SLIDERS

from browser_app import app_on, chromium_path, fill, go_to, no_exception, settle, wait_for_text
from demo_subset import copy_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

# Each chart's tick text as it reaches the eye: its CSS size times the drawing's scale on screen.
TICK_PX = """() => Array.from(document.querySelectorAll('.ckd-board svg')).map((chart) => {
  const scale = chart.getBoundingClientRect().width / chart.viewBox.baseVal.width;
  return parseFloat(getComputedStyle(chart.querySelector('.ckd-tick')).fontSize) * scale;
})"""


@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    root = copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("browser-qa-round3"))
    (root.parent / "notes.pt").write_text("not a model")
    return root


@pytest.fixture(scope="module")
def server(demo):
    with app_on(demo) as url:
        yield url


def test_tunes_charts_keep_their_text_size_on_a_phone(app_page, shots):
    page = app_page("tune", 390, 844)
    page.locator(".ckd-board .ckd-weights .ckd-tick").first.wait_for(timeout=30000)
    sizes = page.evaluate(TICK_PX)
    assert len(sizes) == 2 and min(sizes) >= 10.5, sizes  # 11 px; was 8.2 at 358 px wide
    page.set_viewport_size({"width": 700, "height": 844})  # turned: drawn again at the new width
    page.wait_for_timeout(500)
    assert min(page.evaluate(TICK_PX)) >= 10.5, page.evaluate(TICK_PX)
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_timeout(500)
    page.locator(".ckd-track").scroll_into_view_if_needed()
    assert page.evaluate(OVERFLOW_JS) == []
    page.screenshot(path=str(shots / "qa3-tune-charts-phone.png"))


def test_an_imported_log_survives_a_reload(app_page, shots, tmp_path):
    page = app_page("", 1280, 900)
    go_to(page, "Tune")
    page.locator(BOARD_SLIDERS).first.wait_for(timeout=30000)
    for row in (0, 1):
        page.locator(BOARD_SLIDERS).nth(row).focus()
        page.keyboard.press("PageUp")
        page.wait_for_function(f"document.querySelector('.ckd-board')?.dataset.edits === '{row + 1}'", timeout=30000)
        settle(page)
    go_to(page, "History")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download students + log (JSON)").click()
    log = tmp_path / "log.json"
    download.value.save_as(log)
    for _ in range(2):
        page.get_by_role("button", name="Undo").click()
        settle(page)
    assert page.get_by_role("button", name="Undo").is_disabled()
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(log))
    wait_for_text(page, "Imported 2 edits.")
    page.reload()
    settle(page)
    no_exception(page)
    assert page.get_by_role("button", name="Undo").is_enabled()  # both edits applied again
    assert page.get_by_role("button", name="Redo").is_disabled()
    page.screenshot(path=str(shots / "qa3-history-import-reloaded.png"))


def test_a_teacher_file_that_is_missing_or_no_model_is_named_in_one_line(app_page, shots):
    page = app_page("setup", 1280, 900)
    page.get_by_text("Create a workspace").click()
    settle(page)
    fill(page, "Image folder", "demo/images")
    fill(page, "Class names, in the teacher's output order (comma-separated)", "cat, dog")
    page.get_by_text("TorchScript file").click()
    settle(page)
    fill(page, "Folder for the new workspace", "demo/new")
    for typed, says in [
        ("demo/nosuch.pt", "nosuch.pt: no such file; expected a TorchScript file (saved with torch.jit.save)"),
        ("demo/notes.pt", "notes.pt: not a TorchScript model (it is not the zip archive torch.jit.save writes)"),
        # Markdown's characters and a shortcode in a name are shown as typed (markdown_text.literal)
        (
            "demo/run_1_of_2 *x* :smile: [y](h).pt",
            "run_1_of_2 *x* :smile: [y](h).pt: no such file; expected a TorchScript file",
        ),
    ]:
        fill(page, "Teacher file", typed)
        page.get_by_role("button", name="Start extraction").click()
        wait_for_text(page, says)
        (message,) = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
        message = message.replace("\u200b", "")  # the invisible space that keeps ":smile:" from being an emoji
        assert message.startswith("Could not start: teacher: ") and says in message, message
        assert "\n" not in message and "miniz" not in message, message
    page.screenshot(path=str(shots / "qa3-setup-teacher-refused.png"))
