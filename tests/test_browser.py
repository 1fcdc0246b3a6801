"""The real app in a real browser: `streamlit run` on loopback, driven by Debian's headless Chromium.

Screenshots land in $CONCEPTKD_SCREENSHOTS (default: the test's temporary folder).
"""

import json
from pathlib import Path

import pytest

from conceptkd_tools.tune_board_driver import BOARD_SLIDERS

from browser_app import chromium_path, launch, settle

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["Setup", "Students", "Concepts", "Images", "Tune", "History"]

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")


def test_every_page_and_a_slider_in_chromium(app_page, shots):
    page = app_page("", height=1000)  # the shipped demo (conftest's server)
    for name in PAGES:
        page.locator('[data-testid="stSidebarNav"] a', has_text=name).first.click()
        settle(page)
        assert page.locator("h1", has_text=name).count() == 1, name
        assert page.locator('[data-testid="stException"]').count() == 0, name
        page.screenshot(path=str(shots / f"{name.lower()}.png"), full_page=True)
    # Tune: move the first weight slider one step with the keyboard.
    page.locator('[data-testid="stSidebarNav"] a', has_text="Tune").first.click()
    settle(page)
    page.locator(BOARD_SLIDERS).first.focus()
    page.keyboard.press("PageUp")
    settle(page)
    assert page.locator(".ckd-tile-label", has_text="Student AP").count() == 1
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=str(shots / "tune-after-move.png"), full_page=True)
    page.locator('[data-testid="stSidebarNav"] a', has_text="History").first.click()
    settle(page)
    assert page.get_by_text("set").count() >= 1
    page.screenshot(path=str(shots / "history-after-move.png"), full_page=True)


def test_three_browsers_tune_at_once_without_seeing_each_other(server):
    from concurrent.futures import ThreadPoolExecutor

    from playwright.sync_api import sync_playwright

    sessions_dir = ROOT / "data" / "demo" / "workspace" / "sessions"
    before = set(sessions_dir.glob("*.json")) if sessions_dir.is_dir() else set()

    def one_browser(presses: int) -> int:
        with sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(server)
            settle(page)
            page.locator('[data-testid="stSidebarNav"] a', has_text="Tune").first.click()
            settle(page)
            for _ in range(presses):  # each press is one edit, re-rendering a fresh slider
                page.locator(BOARD_SLIDERS).first.focus()
                page.keyboard.press("PageUp")
                settle(page)
            page.locator('[data-testid="stSidebarNav"] a', has_text="History").first.click()
            settle(page)
            rows = page.locator('[data-testid="stDataFrame"]').first.get_attribute("data-testid")
            assert rows and page.locator('[data-testid="stException"]').count() == 0
            browser.close()
        return presses

    with ThreadPoolExecutor(max_workers=3) as pool:
        assert list(pool.map(one_browser, [1, 2, 3])) == [1, 2, 3]
    new = set(sessions_dir.glob("*.json")) - before
    edits = sorted(len(json.loads(p.read_text())["events"]) for p in new)
    assert edits[-3:] == [1, 2, 3]  # each browser's log holds exactly its own edits
