"""Open an HTML report in a real headless Chromium: wait until every figure is drawn, collecting JavaScript
errors (:func:`load_page`), and take PNG screenshots (the README's docs/report.png).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``/usr/bin/chromium``,
``/usr/bin/chromedriver``) and the ``selenium`` Python package (dev extra). Nothing is fetched from the
network: the driver is given explicitly, so Selenium Manager never downloads one.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import CircuitclustError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_NAMES = ("chromedriver",)

# Collects errors from the first script on (installed before the page's own scripts run).
_ERROR_HOOK = """
window.__ccErrors = [];
window.addEventListener('error', function (e) { window.__ccErrors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__ccErrors.push('unhandled rejection: ' + String(e.reason)); });
"""

_RENDER_STATE = """
const figs = Array.from(document.querySelectorAll('.cc-figure .js-plotly-plot, .plotly-graph-div'));
const uniq = Array.from(new Set(figs));
const rendered = uniq.filter(d => d._fullLayout && d.querySelector('.main-svg'));
const el = document.getElementById('cc-n-figures');
return {n_divs: uniq.length, n_rendered: rendered.length, expected: el ? parseInt(el.textContent) : null,
        n_main_svg: document.querySelectorAll('.main-svg').length, ready: document.readyState,
        errors: window.__ccErrors || []};
"""


def find_chromium() -> tuple[str, str] | None:
    """``(browser, driver)`` paths when both are installed, else ``None``."""
    browser = next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)
    driver = next((p for p in map(shutil.which, DRIVER_NAMES) if p), None)
    return (browser, driver) if browser and driver else None


@contextmanager
def headless_chromium(width: int = 1400, height: int = 1000) -> Iterator:
    """A Selenium Chrome driver on a fresh headless Chromium profile (network features off; works as root)."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise CircuitclustError("the browser check needs selenium: pip install 'circuitclust[dev]'") from e
    found = find_chromium()
    if found is None:
        raise CircuitclustError("Chromium not found: apt-get install chromium chromium-driver")
    browser, driver_path = found
    profile = tempfile.mkdtemp(prefix="cc-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    try:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _ERROR_HOOK})
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def load_page(driver, html_path: Path, timeout: float) -> dict:
    """Open ``html_path`` in ``driver`` and wait until every plotly div is drawn (or ``timeout`` s). Returns the
    page's render state: ``n_divs``, ``n_rendered``, ``expected`` (the count the report announces),
    ``n_main_svg`` and ``errors`` (uncaught JavaScript errors)."""
    driver.get(html_path.resolve().as_uri())
    deadline = time.monotonic() + timeout
    state = driver.execute_script(_RENDER_STATE)
    while time.monotonic() < deadline and (state["ready"] != "complete" or state["n_rendered"] < state["n_divs"]):
        time.sleep(0.2)
        state = driver.execute_script(_RENDER_STATE)
    return state


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1400, height: int | None = 1800,
               timeout: float = 60.0) -> Path:
    """Render ``html_path`` and save a PNG of its top ``width`` x ``height`` pixels (``height=None``: the whole
    page). Returns ``png_path``."""
    html_path, png_path = Path(html_path), Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with headless_chromium(width, height or 1000) as driver:
        load_page(driver, html_path, timeout)
        if height is None:
            full = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(width, int(full) + 100)
            time.sleep(0.5)
        driver.execute_script("window.scrollTo(0, 0)")
        if not driver.save_screenshot(str(png_path)):
            raise CircuitclustError(f"Chromium could not write {png_path}")
    return png_path
