"""Fixtures the browser tests share: one headless Chromium per module, the screenshots folder, and
a factory of settled pages on the module's ``server``. A browser module keeps only what is its own:
its workspace copy and the server over it (``browser_app.app_on``); without one, ``server`` is the
app as shipped, on the embedded demo."""

import os
from pathlib import Path

import pytest

from browser_app import app_server, launch, settle


@pytest.fixture(scope="module")
def server():
    """The app as shipped (the embedded demo); a module over a workspace copy defines its own."""
    with app_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module; each page of it is a new Streamlit session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = launch(p)
        yield chromium
        chromium.close()


@pytest.fixture
def shots(tmp_path) -> Path:
    """Where screenshots go: $CONCEPTKD_SCREENSHOTS (to look at them), else the test's temporary folder."""
    folder = Path(os.environ.get("CONCEPTKD_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def app_page(browser, server):
    """``app_page(path, width, height)``: a new page (a new session) at ``server``/``path`` with that
    window, once the app has settled; every page it opened is closed after the test."""
    opened = []

    def open_page(path: str = "", width: int = 1400, height: int = 1100):
        page = browser.new_page(viewport={"width": width, "height": height})
        opened.append(page)
        page.goto(f"{server}/{path}")
        settle(page)
        return page

    yield open_page
    for page in opened:
        page.close()
