"""Chromium for static output: plotly figures to PNG through kaleido, and an HTML file printed to
PDF by Chromium itself.

Both drive a Chromium that is named explicitly (``$CNMC_CHROMIUM``, else Debian's
``/usr/bin/chromium``, else ``chromium`` on the ``PATH``): kaleido would otherwise look for a
browser of its own or offer to download one, which cannot work offline. Kaleido gets the
plotly.js that ships with plotly.py and no MathJax, so nothing is fetched from the network.

- :func:`find_chromium`: the browser, or an error that says how to get one;
- :func:`render_pngs`: several figures with one browser start (about 3 s, then a fraction of a
  second per figure);
- :func:`print_pdf`: Chromium's headless ``--print-to-pdf`` of an HTML file, after its scripts
  have run (``--virtual-time-budget``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, Mapping

from cnmc_core.exceptions import CnmcError

__all__ = ["CHROMIUM_ENV", "find_chromium", "render_pngs", "print_pdf"]

#: The environment variable that names the Chromium binary to use.
CHROMIUM_ENV = "CNMC_CHROMIUM"
_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome")
_DEFAULT_SIZE = (800, 450)


def find_chromium(path: str | os.PathLike | None = None) -> str:
    """The Chromium binary: ``path``, else ``$CNMC_CHROMIUM``, else Debian's ``/usr/bin/chromium``
    or a ``chromium`` on the ``PATH``.

    Raises:
        CnmcError: none found (or ``path``/``$CNMC_CHROMIUM`` is not an executable file); the
            message says how to install one.
    """
    given = path or os.environ.get(CHROMIUM_ENV)
    if given:
        found = shutil.which(str(given))
        if not found:
            where = "the chromium argument" if path else f"${CHROMIUM_ENV}"
            raise CnmcError(f"{where} names {str(given)!r}, which is not an executable file; "
                            f"point it at a Chromium binary, e.g. /usr/bin/chromium.")
        return found
    for name in _CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise CnmcError("No Chromium found to render figures (looked for /usr/bin/chromium, "
                    "chromium, chromium-browser, google-chrome): install it (Debian: `apt-get "
                    f"install chromium`) or set ${CHROMIUM_ENV} to its path.")


def _run_in_thread(coro_factory) -> Any:
    """Run a coroutine on a fresh event loop in its own thread (the caller may already be in a
    loop: Streamlit, Jupyter) and return its result or raise its error."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = asyncio.run(coro_factory())
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="cnmc-kaleido", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def render_pngs(figures: Mapping[str, Any], *, chromium: str | None = None, scale: float = 2.0,
                timeout: float = 120.0) -> dict[str, bytes]:
    """PNG bytes of each plotly figure, rendered by kaleido in one Chromium.

    Args:
        figures: ``{name: plotly Figure}``; a figure's layout ``width``/``height`` is kept,
            800 x 450 where it has none.
        chromium: the browser (default :func:`find_chromium`).
        scale: pixels per layout pixel (2: sharp on a high-resolution screen).
        timeout: seconds allowed for one figure.

    Raises:
        CnmcError: no Chromium, or kaleido failed (the message names the figure and the
            browser).
    """
    if not figures:
        return {}
    browser = find_chromium(chromium)
    try:
        import kaleido
    except ImportError as exc:  # pragma: no cover - a requirement
        raise CnmcError("kaleido is not installed: `pip install -r requirements.txt`.") from exc

    async def render() -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        async with kaleido.Kaleido(n=1, timeout=timeout, path=browser, mathjax=False) as k:
            for name, fig in figures.items():
                width = fig.layout.width or _DEFAULT_SIZE[0]
                height = fig.layout.height or _DEFAULT_SIZE[1]
                try:
                    out[name] = await k.calc_fig(fig, opts=dict(format="png", width=width,
                                                                height=height, scale=scale))
                except Exception as exc:  # noqa: BLE001 - named below with the figure
                    raise CnmcError(f"Rendering the figure {name!r} to PNG failed in {browser} "
                                    f"({type(exc).__name__}: {exc}).") from exc
        return out

    try:
        pngs = _run_in_thread(render)
    except CnmcError:
        raise
    except Exception as exc:  # the browser did not start, or died
        raise CnmcError(f"Kaleido could not render figures with {browser} ({type(exc).__name__}: "
                        f"{exc}); check that the browser starts (`{browser} --headless "
                        f"--no-sandbox --dump-dom about:blank`) or set ${CHROMIUM_ENV}.") from exc
    bad = [n for n, data in pngs.items() if not data.startswith(b"\x89PNG")]
    if bad:
        raise CnmcError(f"Kaleido returned something that is not a PNG for {bad}.")
    return pngs


def print_pdf(html: str, *, chromium: str | None = None, timeout: float = 180.0,
              budget_ms: int = 30000) -> bytes:
    """The PDF that Chromium prints of an HTML page (A4, no header or footer).

    The page is written to a temporary folder and opened from there; Chromium lets its scripts
    run for up to ``budget_ms`` of virtual time first, so plotly has drawn every figure.

    Raises:
        CnmcError: no Chromium, or it failed, timed out or wrote no PDF (its output is quoted).
    """
    browser = find_chromium(chromium)
    with tempfile.TemporaryDirectory(prefix="cnmc-pdf-") as tmp:
        page, pdf = Path(tmp) / "report.html", Path(tmp) / "report.pdf"
        page.write_text(html, encoding="utf-8")
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", f"--user-data-dir={Path(tmp) / 'profile'}",
               "--no-pdf-header-footer", f"--virtual-time-budget={int(budget_ms)}",
               "--run-all-compositor-stages-before-draw", f"--print-to-pdf={pdf}", page.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CnmcError(f"Chromium ({browser}) did not print the PDF within {timeout:.0f} s.") \
                from None
        except OSError as exc:
            raise CnmcError(f"Chromium ({browser}) could not start: {exc}.") from None
        data = pdf.read_bytes() if pdf.is_file() else b""
        if proc.returncode != 0 or not data.startswith(b"%PDF"):
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
            raise CnmcError(f"Chromium ({browser}) printed no PDF (exit {proc.returncode}): "
                            + " | ".join(tail))
        return data
