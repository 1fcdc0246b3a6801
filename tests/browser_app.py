"""What the browser tests share beyond ``conceptkd_tools.screenshots`` (the app under `streamlit run`
on loopback and Debian's headless Chromium): waiting until the app has settled."""

from conceptkd_tools.screenshots import app_server, chromium_path, launch

__all__ = ["app_server", "chromium_path", "launch", "settle"]


def settle(page, timeout: int = 60000) -> None:
    """Wait until app.py has run (its sidebar is there) and Streamlit has finished the script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=60000)
    page.get_by_text("Workspace folder").wait_for(timeout=60000)
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(300)
