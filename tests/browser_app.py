"""What the browser tests share beyond ``conceptkd_tools.screenshots`` (the app under `streamlit run`
on loopback and Debian's headless Chromium): the app over a workspace copy, waiting until it has
settled, and what a flow waits for or checks on a page. The shared fixtures (the browser, the
screenshots folder, a page factory) are in ``conftest.py``."""

from pathlib import Path

from conceptkd_tools.screenshots import app_server, chromium_path, launch

__all__ = [
    "app_on",
    "app_server",
    "chromium_path",
    "folder_box",
    "launch",
    "no_exception",
    "open_folder",
    "settle",
    "wait_for_text",
]


def app_on(workspace: Path):
    """``app_server`` with ``workspace`` as the default workspace and its parent folder as the only
    one visitors may open (a test's copy, so that a flow may write beside it)."""
    return app_server(env={"CONCEPTKD_WORKSPACE": str(workspace), "CONCEPTKD_WORKSPACE_ROOTS": str(workspace.parent)})


# Streamlit's own word for the script's state, on the app's root element.
SCRIPT_STATE = "document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
IDLE_JS = f"{SCRIPT_STATE} === 'notRunning' && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
# A click's or an Enter's rerun shows only once the server has answered; until then the page still
# says 'notRunning'. So settle waits for that run to start, but no longer than this.
RERUN_START_MS = 500


def settle(page, timeout: int = 60000) -> None:
    """Wait until app.py has run (its sidebar is there) and Streamlit has finished the script: the
    rerun the last action asked for (seen starting, or given ``RERUN_START_MS`` to start), then
    300 ms for one it chains (a page switch, a fragment)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.wait_for_selector('[data-testid="stApp"]', timeout=60000)
    page.get_by_text("Workspace folder").wait_for(timeout=60000)
    try:
        page.wait_for_function(f"{SCRIPT_STATE} !== 'notRunning'", timeout=RERUN_START_MS)
    except PlaywrightTimeout:
        pass  # no run seen starting: as before, when this was a fixed wait
    page.wait_for_function(IDLE_JS, timeout=timeout)
    page.wait_for_timeout(300)


def go_to(page, title: str) -> None:
    """Open a page through the sidebar's navigation: the session (and its edits) stays."""
    page.locator('[data-testid="stSidebarNav"] a', has_text=title).first.click()
    settle(page)


def no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator("body").inner_text()[:3000]


def wait_for_text(page, text: str, timeout: int = 180000) -> None:
    """Wait until ``text`` shows, or fail at once when the page shows an exception instead."""
    exception = page.locator('[data-testid="stException"]')
    page.get_by_text(text).or_(exception).first.wait_for(timeout=timeout)
    no_exception(page)
    settle(page)


def folder_box(page):
    """The sidebar's workspace folder box."""
    return page.locator('[data-testid="stSidebar"] input[type="text"]').first


def open_folder(page, folder: str, shown: str, timeout: int = 30000) -> None:
    """Type ``folder`` in the sidebar's box and press Enter, until the page shows ``shown`` (the
    opened workspace's own text). On a loaded machine an Enter that lands while the new page's
    first run is still in flight can be lost; it is pressed again, at most twice."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = folder_box(page)
    for attempt in range(3):
        if attempt == 0 or box.input_value() != folder:
            box.fill(folder)
        box.press("Enter")
        try:
            wait_for_text(page, shown, timeout=timeout)
            return
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            settle(page)


def fill(page, label: str, value: str) -> None:
    """Type ``value`` into the text box labelled ``label`` and press Enter, then let the app settle."""
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    settle(page)
