"""The app in headless Chromium: start ``streamlit run app.py``, open each page by its URL, check
what a reader would see, and save small screenshots for the README.

    python -m conceptkd_tools.screenshots [--out docs/screenshots]

Each page is checked at a desktop (1280 × 800) and a phone (390 × 844) window: its heading is
there, no "Page not found", no automatic page list (only the registry's pages in the navigation),
no exception, and nothing wider than the window. ``tests/test_browser_pages.py`` runs the same
checks. Needs Playwright and a Chromium (Debian's ``chromium`` package).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Elements of the main area sticking out of the window, left or right, unless an ancestor inside
# the main area that fits the window clips or scrolls them (a table's or a chart's own scroll
# area); and the page or the main area scrolling sideways. Returns up to 8 descriptions.
OVERFLOW_JS = """
() => {
  const width = document.documentElement.clientWidth;
  const main = document.querySelector('[data-testid="stMain"]');
  const fits = (r) => r.left >= -1 && r.right <= width + 1;
  const clipped = (el) => {
    for (let a = el.parentElement; a && a !== main; a = a.parentElement) {
      const style = getComputedStyle(a);
      if (/(hidden|auto|scroll|clip)/.test(style.overflowX) && fits(a.getBoundingClientRect())) return true;
    }
    return false;
  };
  const bad = [];
  for (const [name, box] of [['page', document.documentElement], ['main area', main]]) {
    if (box.scrollWidth > box.clientWidth + 1) bad.push(`${name} scrolls sideways: ${box.scrollWidth}px`);
  }
  for (const el of main.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0 || fits(r) || clipped(el)) continue;
    const id = el.getAttribute('data-testid') || el.className || el.tagName;
    bad.push(`${el.tagName.toLowerCase()} ${id}: ${Math.round(r.left)}..${Math.round(r.right)}px of ${width}`);
    if (bad.length >= 8) break;
  }
  return bad;
}
"""
SETTLED_JS = """
() => document.querySelector('[data-testid="stApp"]')?.getAttribute('data-test-script-state') === 'notRunning'
  && !document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSkeleton"]')
  && [...document.images].every((image) => image.complete)
"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def app_server(root: Path = ROOT, timeout_s: float = 60, env: dict[str, str] | None = None) -> Iterator[str]:
    """``streamlit run app.py`` on a free loopback port (``env`` added to the environment); yields its
    URL, stops it on exit."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", "127.0.0.1"]
    command += ["--server.port", str(port), "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    environment = os.environ | dict(env or {})
    proc = subprocess.Popen(command, cwd=root, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout_s
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    proc.kill()
                    raise RuntimeError("streamlit did not start: " + proc.stdout.read().decode()[-2000:]) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def launch(playwright):
    return playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=CHROMIUM_ARGS)


def settle(page, title: str, timeout_ms: int = 60000) -> None:
    """Wait until the page's heading is shown, the script has finished and no placeholder of a
    pending element is left (twice, so that a fragment or an image loading after it is caught)."""
    page.locator("h1", has_text=title).first.wait_for(timeout=timeout_ms)
    for _ in range(2):
        page.wait_for_function(SETTLED_JS, timeout=timeout_ms)
        page.wait_for_timeout(400)


def problems(page, title: str, titles: list[str]) -> list[str]:
    """What is wrong with the page as shown: an empty list when all is well."""
    found = []
    if page.locator("h1", has_text=title).count() != 1:
        found.append(f"heading {title!r} missing")
    if page.get_by_text("Page not found").count():
        found.append("'Page not found'")
    if page.locator('[data-testid="stException"]').count():
        found.append("an exception is shown")
    nav = page.locator('[data-testid="stSidebarNav"] [data-testid="stSidebarNavLink"]')
    listed = [text.strip() for text in nav.all_text_contents()]
    if [name for name in listed if not any(name.endswith(t) for t in titles)] or len(listed) != len(titles):
        found.append(f"navigation lists {listed}, expected {titles}")
    found += page.evaluate(OVERFLOW_JS)
    return found


def visit(page, url: str, title: str, titles: list[str]) -> list[str]:
    """Open ``url`` in ``page``, wait for it and return its ``problems``."""
    page.goto(url)
    settle(page, title)
    return problems(page, title, titles)


def save_small_png(png: bytes, path: Path, colours: int = 96) -> int:
    """A screenshot quantised to a small palette (a few tens of kB); returns its size in bytes."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
    image.save(path, optimize=True)
    return path.stat().st_size


def tune_once(page, url: str) -> None:
    """Open Tune, move the first weight slider one step with the keyboard and wait for the re-fit."""
    page.goto(f"{url}/tune")
    settle(page, "Tune")
    from .tune_board_driver import BOARD_SLIDERS

    page.locator(BOARD_SLIDERS).first.focus()
    page.keyboard.press("PageUp")
    page.wait_for_timeout(500)
    settle(page, "Tune")


def capture(out: Path, phone_pages: tuple[str, ...] = ("Start here", "Images", "Tune")) -> dict[str, int]:
    """Check every page and save ``<page>.png`` (desktop; Images taller, to show its waterfall;
    History after one edit), ``<page>-phone.png`` for ``phone_pages`` and ``images-dark.png``.
    Raises if any page has a problem. Returns {file name: bytes}."""
    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(ROOT))
    from views.common import PAGES, view

    titles = [v.title for v in PAGES]
    tall = {**DESKTOP, "height": 1250}
    plan = [(v, "", tall if v.title == "Images" else DESKTOP, "light") for v in PAGES]
    plan += [(view(title), "-phone", PHONE, "light") for title in phone_pages]
    plan += [(view("Images"), "-dark", tall, "dark")]
    out.mkdir(parents=True, exist_ok=True)
    shots, failures = {}, {}
    with app_server() as url, sync_playwright() as p:
        browser = launch(p)
        for v, suffix, viewport, scheme in plan:
            page = browser.new_page(viewport=viewport, color_scheme=scheme)
            if v.title == "History":  # with an edit to show: tune, then follow the navigation link
                tune_once(page, url)
                page.locator('[data-testid="stSidebarNavLink"]', has_text="History").first.click()
                settle(page, v.title)
                found = problems(page, v.title, titles)
            else:
                found = visit(page, f"{url}/{v.url_path}", v.title, titles)
            if found:
                failures[f"{v.title}{suffix}"] = found
            name = f"{v.url_path or 'start'}{suffix}.png"
            shots[name] = save_small_png(page.screenshot(), out / name)
            page.close()
        browser.close()
    if failures:
        raise RuntimeError(f"pages with problems: {failures}")
    return shots


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args(argv)
    shots = capture(args.out)
    for name, size in shots.items():
        print(f"{args.out / name}  {size / 1024:.0f} kB")
    print(f"total {sum(shots.values()) / 1024:.0f} kB")


if __name__ == "__main__":
    main()
