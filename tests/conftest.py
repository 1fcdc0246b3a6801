"""Fixtures the browser tests share: one headless Chromium for the whole run, one server of the app
as shipped, the screenshots folder, and a factory of settled pages on the module's ``server``. A
browser module keeps only what is its own: its workspace copy and the server over it
(``browser_app.app_on``), or a fresh server when it needs a cold one (``test_browser_pages``).

Why sharing is safe: every test opens its own pages in new browser contexts (new cookies, so new
Streamlit sessions and browser keys), and the shipped demo's server holds nothing but caches of
what is on disk; the modules that write beside their workspace have their own copy and server."""

import os
from pathlib import Path

import pytest

from browser_app import app_server, launch, settle
from demo_subset import make_demo_subset


@pytest.fixture(scope="session")
def opened_demo_subset(tmp_path_factory) -> Path:
    """``make_demo_subset``'s 40 scenes, opened once so that the base students and the Gram
    statistics are cached beside them (fitting those takes seconds, for each new copy); the
    workspace folder. Read-only: a test that changes it works on ``copy_demo_subset``'s copy."""
    from conceptkd_core.explorer import open_explorer

    root = make_demo_subset(tmp_path_factory.mktemp("opened-demo") / "demo")
    assert open_explorer(root).notices == ()
    return root


@pytest.fixture(scope="session")
def server():
    """The app as shipped (the embedded demo), one for the run; a module over a workspace copy
    defines its own."""
    with app_server() as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the run; each page of it is a new Streamlit session."""
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
