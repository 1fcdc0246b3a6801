"""Every page opened by its URL in headless Chromium, on one freshly started `streamlit run`,
at a desktop (1280 × 800) and a phone (390 × 844) window: its heading is there, no "Page not
found", no automatic page list, no exception shown, nothing wider than the window.

The first page opened is a deep link (/students) on the cold server: the case that a `pages/`
folder beside app.py used to break. The checks are conceptkd_tools/screenshots.py's, which also
makes the README's screenshots.
"""

import pytest

from conceptkd_tools.screenshots import DESKTOP, PHONE, app_server, chromium_path, problems, settle, visit
from views.common import PAGES

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

TITLES = [view.title for view in PAGES]
WINDOWS = {"desktop": DESKTOP, "phone": PHONE}
# Deep links first, the landing page (the root URL) last.
VISITS = [(window, view) for window in WINDOWS for view in (*PAGES[1:], PAGES[0])]


@pytest.fixture(scope="module")
def server():
    """A server of its own, started for this module: its first page is a deep link on a cold server
    (the run's shared one has served other modules already)."""
    with app_server() as url:
        yield url


@pytest.fixture(scope="module")
def tabs(browser):
    pages = {name: browser.new_page(viewport=size) for name, size in WINDOWS.items()}
    yield pages
    for page in pages.values():
        page.close()


@pytest.mark.parametrize(("window", "view"), VISITS, ids=[f"{w}-{v.url_path or 'root'}" for w, v in VISITS])
def test_a_page_opened_by_its_url(server, tabs, window, view):
    assert visit(tabs[window], f"{server}/{view.url_path}", view.title, TITLES) == []


def test_open_in_a_table_row_shows_that_image_on_images(server, tabs):
    from conceptkd_core.explorer import disagreement_table, new_session, open_explorer
    from views.common import DEFAULT_WORKSPACE

    explorer = open_explorer(DEFAULT_WORKSPACE)
    first = disagreement_table(new_session(explorer, autosave=False), 0).iloc[0]
    expected = str(explorer.workspace.image_ids[first["row"]])
    page, students = tabs["desktop"], PAGES[1]
    assert visit(page, f"{server}/{students.url_path}", students.title, TITLES) == []
    table = page.locator('[data-testid="stDataFrame"]').last  # the disagreements, Open buttons first
    table.scroll_into_view_if_needed()
    box = table.bounding_box()
    page.mouse.click(box["x"] + 30, box["y"] + 36 + 28)  # below the header, the first row's button
    settle(page, "Images")
    assert page.locator("h3").first.inner_text() == expected
    assert problems(page, "Images", TITLES) == []


def test_the_checks_see_an_overflow_and_a_stray_page_link(server, tabs):
    page = tabs["phone"]
    students = PAGES[1]
    assert visit(page, f"{server}/{students.url_path}", students.title, TITLES) == []
    page.evaluate(
        """() => {
        const wide = document.createElement('div');
        wide.style.width = '600px'; wide.style.height = '10px';
        document.querySelector('[data-testid="stMain"] h1').after(wide);
        const nav = document.querySelector('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]');
        nav.parentElement.append(nav.cloneNode(true));
        }"""
    )
    found = problems(page, students.title, TITLES)
    assert any("600" in line or "scrolls sideways" in line for line in found), found
    assert any(line.startswith("navigation lists") for line in found), found
