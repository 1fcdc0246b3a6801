"""Two tabs start a workspace from an uploaded zip into the same folder, in a real browser (headless
Chromium over `streamlit run`, on a small copy of the demo): the second tab's refusal shows where
its Start button is (the job the first tab started appeared above the form, which re-created the
form closed and hid the refusal), nothing of the second zip is written, and the first tab's job
opens on Students, measured against the teacher since a zip with class names has no labels.

Screenshots land in $CONCEPTKD_SCREENSHOTS (default: the test's temporary folder).
"""

import time
import zipfile
from urllib.parse import urlparse

import pytest

from conceptkd_core.extract import jobs
from conceptkd_tools.screenshots import OVERFLOW_JS

from browser_app import app_on, chromium_path, fill, folder_box, no_exception, settle
from demo_subset import copy_demo_subset

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def demo(opened_demo_subset, tmp_path_factory):
    """A small copy of the demo and two zips of its scenes: all 40 (in a folder, with a stray text
    file), and 5 others under other names."""
    root = copy_demo_subset(opened_demo_subset, tmp_path_factory.mktemp("browser-job-folders"))
    images = sorted((root.parent / "images").iterdir())
    with zipfile.ZipFile(root.parent / "scenes.zip", "w") as bundle:
        for path in images:
            bundle.write(path, f"scenes/{path.name}")
        bundle.writestr("README.txt", "not an image")
    with zipfile.ZipFile(root.parent / "other.zip", "w") as bundle:
        for path in images[:5]:
            bundle.write(path, f"other-{path.name}")
    return root


@pytest.fixture(scope="module")
def server(demo):
    with app_on(demo) as url:
        yield url


def create_form(page, archive, classes: str, out: str) -> None:
    page.get_by_text("Create a workspace").click()
    settle(page)
    page.get_by_text("a zip I upload").click()
    settle(page)
    page.locator('[data-testid="stExpander"] [data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(archive))
    settle(page)
    page.get_by_text(archive.name).wait_for(timeout=30000)
    fill(page, "Class names, in the teacher's output order (comma-separated)", classes)
    fill(page, "Folder for the new workspace", out)
    fill(page, "Segments per image", "8")


def test_a_second_tab_starting_into_the_same_folder_sees_why_not(app_page, demo, shots):
    first, second = app_page("setup", 1280, 900), app_page("setup", 390, 844)
    create_form(first, demo.parent / "scenes.zip", "person, car, dog, cat, bird", "demo/shared")
    create_form(second, demo.parent / "other.zip", "tree, sky", "demo/shared")
    first.get_by_role("button", name="Start extraction").click()
    first.get_by_text("Started demo/shared: its progress is at the top of this page.").wait_for(timeout=120000)
    settle(first)
    first.screenshot(path=str(shots / "job-folders-started.png"), full_page=True)

    second.get_by_role("button", name="Start extraction").click()
    settle(second)
    refusal = second.get_by_text("Could not start: shared", exact=False)
    refusal.wait_for(state="visible", timeout=60000)  # not hidden in a form re-created closed
    second.screenshot(path=str(shots / "job-folders-refused-390.png"), full_page=True)
    no_exception(second)
    assert refusal.inner_text().endswith("choose a new folder"), refusal.inner_text()
    assert second.evaluate(OVERFLOW_JS) == []
    unpacked = sorted(p.name for p in (demo.parent / "shared" / jobs.JOB_DIR / jobs.ARCHIVE_DIR / "scenes").iterdir())
    assert len(unpacked) == 40 and not any(name.startswith("other-") for name in unpacked)

    # The first tab's job opens the new workspace on Students: no labels, so measured against the teacher.
    first.get_by_role("heading", name="Students", exact=True).wait_for(timeout=300000)
    settle(first)
    assert urlparse(first.url).path.endswith("/students")
    no_exception(first)
    first.get_by_text("No held-out image has a label").wait_for(timeout=60000)
    first.screenshot(path=str(shots / "job-folders-students.png"), full_page=True)
    main = first.locator('[data-testid="stMain"]').inner_text()
    assert "nan" not in main.replace("\n", " ").split(), main[:1500]
    assert jobs.read_status(demo.parent / "shared").state == "done"

    # A reload (a new Streamlit session) opens the same workspace again, from the page address; it
    # silently showed the default workspace instead.
    first.reload()
    settle(first)
    first.get_by_text("No held-out image has a label").wait_for(timeout=60000)
    assert folder_box(first).input_value() == "demo/shared"
    assert "workspace=demo%2Fshared" in first.url or "workspace=demo/shared" in first.url, first.url
    no_exception(first)


def many_images(demo):
    """600 images (the subset's 40, copied): a job that runs long enough to stop mid-way."""
    many = demo.parent / "many"
    if not many.exists():
        many.mkdir()
        for i, path in enumerate(p for _ in range(15) for p in sorted((demo.parent / "images").iterdir())):
            (many / f"{i:04d}-{path.name}").write_bytes(path.read_bytes())
    return many


def start_on_many(page, out: str) -> None:
    """Setup's form: a job on ``many_images`` into ``out``, started."""
    page.get_by_text("Create a workspace").click()
    settle(page)
    fill(page, "Image folder", "demo/many")
    fill(page, "Class names, in the teacher's output order (comma-separated)", "person, car, dog, cat, bird")
    fill(page, "Folder for the new workspace", out)
    fill(page, "Segments per image", "8")
    page.get_by_role("button", name="Start extraction").click()


def test_a_job_is_cancelled_resumed_and_discarded(app_page, demo, shots):
    """Cancel stops after the batch in flight and the job stays listed with Resume and Discard;
    Resume continues it; Discard, once confirmed, deletes its folder and what it extracted, and the
    images it read stay where they are."""
    many = many_images(demo)
    page = app_page("setup", 1280, 900)
    start_on_many(page, "demo/stopped")

    def cancel_and_wait() -> str:
        page.get_by_role("button", name="Cancel").click(timeout=120000)
        warning = page.get_by_text("demo/stopped: ", exact=False).filter(has_text="cancelled")
        warning.first.wait_for(timeout=120000)
        settle(page)
        return warning.first.inner_text()

    first = cancel_and_wait()
    assert jobs.read_status(demo.parent / "stopped").state == "cancelled"
    page.screenshot(path=str(shots / "job-cancelled.png"), full_page=True)
    no_exception(page)
    done = jobs.read_status(demo.parent / "stopped").done
    assert 0 < done < 600 and f"{done:,}/600 images, cancelled" in first, first

    page.get_by_role("button", name="Resume").click()
    second = cancel_and_wait()
    assert jobs.read_status(demo.parent / "stopped").done > done, second

    page.get_by_role("button", name="Discard").click()
    confirm = page.get_by_text("Delete the folder demo/stopped and the ", exact=False)
    confirm.wait_for(timeout=30000)
    assert confirm.inner_text().endswith("images extracted so far? This cannot be undone."), confirm.inner_text()
    page.screenshot(path=str(shots / "job-discard-confirm.png"), full_page=True)
    page.get_by_role("button", name="Delete it").click()
    page.get_by_text("Discarded demo/stopped: its folder is free again.").wait_for(timeout=60000)
    settle(page)
    page.screenshot(path=str(shots / "job-discarded.png"), full_page=True)
    no_exception(page)
    assert not (demo.parent / "stopped").exists() and len(list(many.iterdir())) == 600
    assert page.get_by_role("button", name="Resume").count() == 0
    assert page.evaluate(OVERFLOW_JS) == []


def test_a_job_three_folders_down_is_found_interrupted_after_a_server_restart(browser, demo, shots):
    """A server restart (Streamlit Cloud restarts apps now and then) ends the job's thread: the new
    server finds the job on disk, here typed three folders down, lists it as interrupted with Resume,
    and Resume goes on from the images already extracted."""
    many_images(demo)
    out = demo.parent / "runs" / "2026" / "april"

    def open_setup(url: str):
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{url}/setup")
        settle(page)
        return page

    with app_on(demo) as url:
        page = open_setup(url)
        start_on_many(page, "demo/runs/2026/april")
        deadline = time.time() + 120
        while (jobs.read_status(out) is None or jobs.read_status(out).done == 0) and time.time() < deadline:
            time.sleep(0.2)
        page.close()
    before = jobs.read_status(out)  # read by this process, which runs no job: "interrupted"
    assert before.state == "interrupted" and 0 < before.done < 600, before

    with app_on(demo) as url:
        page = open_setup(url)
        warning = page.get_by_text("demo/runs/2026/april: ", exact=False).filter(has_text="interrupted")
        warning.first.wait_for(timeout=60000)
        assert f"{before.done:,}/600 images, interrupted (the server restarted)" in warning.first.inner_text()
        page.screenshot(path=str(shots / "job-interrupted-after-restart.png"), full_page=True)
        no_exception(page)
        page.get_by_role("button", name="Resume").click()
        deadline = time.time() + 120
        while jobs.read_status(out).done <= before.done and time.time() < deadline:
            time.sleep(0.2)
        assert jobs.read_status(out).done > before.done  # on from where it stopped, not from 0
        no_exception(page)
        page.close()
