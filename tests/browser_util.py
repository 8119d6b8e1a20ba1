"""Helpers for browser tests: start the dashboard on a free port, drive Debian's Chromium.

Usage in a test module::

    from browser_util import require_browser, streamlit_server, chromium, open_page, screenshot

    pytestmark = require_browser()          # skip with a reason when no browser is present

    @pytest.fixture(scope="module")
    def app_url(workspace):
        with streamlit_server(workspace["artifacts"]) as url:
            yield url

    def test_x(app_url):
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            open_page(page, app_url, "Compare")     # waits until the script has finished
            screenshot(page, "compare")             # test-output/screenshots/compare.png

``playwright install`` is never called: Chromium is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CNMC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage"]
SCREENSHOTS = REPO / "test-output" / "screenshots"
LOGS = REPO / "test-output" / "logs"


def browser_missing_reason() -> str | None:
    """Why browser tests cannot run here, or None when they can."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -r requirements-dev.txt)"
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set CNMC_CHROMIUM)"
    return None


def require_browser():
    """A ``pytestmark``: skip with the reason outside CI when there is no browser; in CI
    (``$CI`` set) a missing browser is a failure, not a skip."""
    reason = browser_missing_reason()
    if reason and os.environ.get("CI"):
        raise RuntimeError(f"browser tests cannot run in CI: {reason}")
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    """Poll ``url/_stcore/health`` until it answers ``ok``."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read().decode().strip() == "ok":
                    return
        except Exception as exc:  # not listening yet
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"{url}/_stcore/health did not answer ok within {timeout:.0f} s ({last})")


@contextlib.contextmanager
def streamlit_server(artifacts: str | os.PathLike, port: int | None = None, env: dict | None = None,
                     app: str = "app.py", timeout: float = 90.0,
                     address: str | None = "127.0.0.1") -> Iterator[str]:
    """Run ``streamlit run app.py`` headless on a free port with ``CNMC_ARTIFACTS=artifacts``;
    yields the base URL (``http://localhost:PORT``) once healthy, and stops the server and its
    process group afterwards. Its output goes to ``test-output/logs/streamlit-PORT.log``.
    ``address`` is given as ``--server.address``; None leaves it to ``.streamlit/config.toml``."""
    port = port or free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"streamlit-{port}.log"
    full_env = {**os.environ, "CNMC_ARTIFACTS": str(Path(artifacts).resolve()),
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false", "TF_CPP_MIN_LOG_LEVEL": "2",
                **(env or {})}
    cmd = [sys.executable, "-m", "streamlit", "run", app, "--server.headless", "true",
           "--server.port", str(port), "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    if address is not None:
        cmd += ["--server.address", address]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://localhost:{port}"
    try:
        try:
            wait_for_health(url, timeout, proc)
        except Exception as exc:
            raise RuntimeError(f"{exc}; log:\n{log_path.read_text(errors='replace')[-3000:]}") from exc
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)


@contextlib.contextmanager
def chromium(headless: bool = True):
    """A Playwright Chromium browser (Debian's binary, the flags of NOTES.md), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=headless, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def wait_until_idle(page, timeout: float = 60.0, quiet: float = 1.0) -> None:
    """Wait until the Streamlit script has finished: the main area shows elements and the
    status widget (which shows "Stop" / "Running..." while a script runs) has stayed hidden for
    ``quiet`` seconds and no element is a loading placeholder. Fragments that poll every 2 s make
    the widget blink, hence the quiet period; on a fresh load nothing is shown for a second or
    two before the script starts, hence the check for rendered elements."""
    page.wait_for_selector('[data-testid="stApp"]', timeout=timeout * 1000)
    deadline = time.time() + timeout
    calm_since = None
    while time.time() < deadline:
        status = page.locator('[data-testid="stStatusWidget"]')
        busy = status.count() > 0 and status.first.is_visible()
        rendered = page.locator('[data-testid="stMain"] [data-testid="stElementContainer"]').count() > 0
        # stSkeleton: an element still loading (plotly's bundle loads lazily, seconds on a busy CPU)
        skeleton = page.locator('[data-testid="stAppSkeleton"], [data-testid="stSkeleton"]').count() > 0
        if busy or skeleton or not rendered:
            calm_since = None
        elif calm_since is None:
            calm_since = time.time()
        elif time.time() - calm_since >= quiet:
            return
        time.sleep(0.15)
    raise TimeoutError(f"the app at {page.url} was still running after {timeout:.0f} s")


def open_page(page, base_url: str, url_path: str = "", timeout: float = 90.0) -> None:
    """Go to ``base_url/url_path`` (``""`` is the entry page; ``Data``, ``Train``, ``Compare``,
    ``Errors``, ``Ensemble``, ``Explain``, ``Predict``: the paths Streamlit infers from
    the file names, case-sensitive) and wait until the script is idle."""
    page.goto(f"{base_url}/{url_path}", wait_until="domcontentloaded", timeout=timeout * 1000)
    wait_until_idle(page, timeout)


def exception_texts(page) -> list[str]:
    """The text of every Streamlit exception box on the page (tracebacks shown to a user)."""
    boxes = page.locator('[data-testid="stException"]')
    return [boxes.nth(i).inner_text() for i in range(boxes.count())]


def assert_no_exception(page) -> None:
    texts = exception_texts(page)
    assert not texts, f"exception box(es) on {page.url}:\n" + "\n---\n".join(texts)


_CONTENT_HEIGHT_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]')
            || document.querySelector('[data-testid="stAppViewContainer"]');
  return main ? main.scrollHeight : document.body.scrollHeight;
}"""


def screenshot(page, name: str, full_page: bool = True, max_height: int = 6000) -> Path:
    """Save ``test-output/screenshots/<name>.png`` (git-ignored) and return its path.

    Streamlit scrolls inside its main container, so Playwright's ``full_page`` alone shows only
    the first screen: with ``full_page`` the viewport is stretched to the content's height (at
    most ``max_height``) for the shot, then restored.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    size = page.viewport_size
    if full_page and size:
        height = int(page.evaluate(_CONTENT_HEIGHT_JS) or size["height"])
        page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(height, max_height))})
        page.wait_for_timeout(400)  # let charts re-layout to the new size
        try:
            page.screenshot(path=str(path), full_page=True)
        finally:
            page.set_viewport_size(size)
    else:
        page.screenshot(path=str(path))
    return path
