"""The app works with no network: opening it and visiting every page in headless Chromium asks no
host but the app's own (127.0.0.1 / localhost) for anything, and the browser console shows no
error. A Material page icon (``page_icon=":material/hub:"``) made the browser fetch the tab's icon
from fonts.gstatic.com on every load: off the machine, and an error in the console when offline."""

import re
from urllib.parse import urlsplit

import pytest

from conceptkd_tools.screenshots import chromium_path, settle
from views.common import PAGES

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="needs Debian's chromium (apt-get install chromium)")

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
# Streamlit's own client, opened at a deep link (/students), first asks whether the app is served
# under that path (/students/_stcore/health, .../host-config), gets a 404 and uses the root: the
# only failed loads allowed, and only on a deep link's first load.
BASE_PATH_PROBE = re.compile(r"/[a-z]+/_stcore/(health|host-config)$")
PROBE_404 = "Failed to load resource: the server responded with a status of 404 (Not Found)"


def test_no_request_leaves_the_machine_and_the_console_has_no_error(browser, server, shots):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requests, errors, failed = [], [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("response", lambda response: failed.append(response.url) if response.status >= 400 else None)
    try:
        for view in (PAGES[0], *PAGES[1:], PAGES[0]):  # the landing page, every deep link, back home
            page.goto(f"{server}/{view.url_path}")
            settle(page, view.title)
        # Every page reached through the navigation, as a reader does (no reload in between).
        for view in PAGES[1:]:
            page.locator('[data-testid="stSidebarNavLink"]', has_text=view.title).first.click()
            settle(page, view.title)
        page.screenshot(path=str(shots / "offline-last-page.png"))
        icon = page.evaluate("() => document.querySelector('link[rel*=icon]')?.href")
    finally:
        page.close()
    outside = {url for url in requests if urlsplit(url).hostname not in LOCAL_HOSTS}
    assert sorted(url for url in outside if not url.startswith(("data:", "blob:", "about:"))) == []
    probes = [url for url in failed if BASE_PATH_PROBE.search(urlsplit(url).path)]
    assert [url for url in failed if url not in probes] == []
    assert len(probes) <= 2 * (len(PAGES) - 1), probes  # a deep link's first load only
    assert [text for text in errors if text != PROBE_404] == []
    assert len(errors) <= len(probes), errors
    assert urlsplit(icon).hostname in LOCAL_HOSTS, icon  # the tab's icon is served by the app
