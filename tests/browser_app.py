"""What the browser tests share: the app under `streamlit run` on loopback, Debian's headless
Chromium, and waiting for a page to settle."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def streamlit_app(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """`streamlit run app.py` on a free loopback port (with ``env`` added to the environment);
    yields its URL once it answers its health check."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "app.py",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--browser.gatherUsageStats",
            "false",
        ],
        cwd=ROOT,
        env=os.environ | dict(env or {}),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("streamlit did not start: " + proc.stdout.read().decode()[-2000:])
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def settle(page, timeout: int = 60000) -> None:
    """Wait until app.py has run (its sidebar is there) and Streamlit has finished the script."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=60000)
    page.get_by_text("Workspace folder").wait_for(timeout=60000)
    page.wait_for_timeout(500)
    page.wait_for_function("!document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)
    page.wait_for_timeout(300)
