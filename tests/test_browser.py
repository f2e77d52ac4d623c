"""Open the built book in headless Chromium, the way a reader sees it.

The HTML in _build/html (built once per session by the ``built_book`` fixture) is served by a
local http.server on 127.0.0.1 and an ephemeral port. Every page must load without errors from
the book's own scripts and show no traceback; every notebook chapter must show its title, load
its figures, show its exercises, keep its solutions collapsed until clicked, and link to Colab.

The book works offline: MathJax and the Jupyter widget manager are served from the build itself
(sphinx-mathjax-offline, _static/widgets). Every page is checked to load nothing from another host,
every equation to be typeset by MathJax (no raw TeX left), and every embedded widget to render its
saved state. Anything logged at SEVERE level fails.

Needs Debian's chromium and chromium-driver (`tools/setup.sh --browser` installs them). Without
them the tests skip, except under CI (environment variable CI set), where they fail.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import tempfile
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import CHAPTERS, DOCS, ROOT, chapter_id, expected_colab_url, load_yaml, report

pytestmark = [pytest.mark.browser, pytest.mark.book]

CHROMIUM = os.environ.get("LMBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("LMBOOK_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--window-size=1280,1600",
]
SCREENSHOT_DIR = Path(tempfile.gettempdir())
PAGE_LOAD_S = 30
# a Python traceback as text: the plain one, or IPython's ("----...\nValueError  Traceback (most recent call last)")
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)")


def _missing_browser() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (Path(p).is_file() and os.access(p, os.X_OK))]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return ", ".join(missing) if missing else None


# ---------------------------------------------------------------- fixtures: server and browser


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def server(built_book: Path):
    """Serve _build/html on http://127.0.0.1:<free port>; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, name="book-http", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium() -> tuple[str, str]:
    """(browser, driver) paths; skip when they are missing, fail instead under CI (before any build)."""
    missing = _missing_browser()
    if missing:
        msg = f"browser tests need {missing} (install: sudo apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI is set, so this is an error, not a skip", pytrace=False)
        pytest.skip(msg)
    return CHROMIUM, CHROMEDRIVER


@pytest.fixture(scope="module")
def browser(chromium):
    """Headless Debian Chromium driven by Debian chromedriver (Selenium Manager never runs)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="lmbook-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium[0]
    for arg in CHROMIUM_ARGS + [f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=chromium[1]), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_S)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------- helpers


def open_page(driver, url: str) -> list[dict]:
    """Load ``url``, wait until the page and its scripts have run; return the console log of the load."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    WebDriverWait(driver, PAGE_LOAD_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    # togglebutton.js and the theme run on DOMContentLoaded; give pending callbacks one more tick
    driver.execute_script("return new Promise(r => setTimeout(r, 300))")
    return driver.get_log("browser")


def own_errors(log: list[dict], base: str) -> list[str]:
    """SEVERE console messages other than failed loads of resources outside ``base`` (CDNs, offline)."""
    bad = []
    for entry in log:
        if entry.get("level") != "SEVERE":
            continue
        msg = entry.get("message", "")
        url = msg.split(" ", 1)[0]
        failed_load = "Failed to load resource" in msg or "net::ERR_" in msg
        if failed_load and url.startswith(("http://", "https://")) and not url.startswith(base):
            continue  # an external resource (MathJax, widget manager, fonts) that cannot load offline
        if failed_load and url == f"{base}/favicon.ico":
            continue  # the browser asks for /favicon.ico on its own; no page of the book links to it
        bad.append(msg)
    return bad


def page_url(base: str, doc: str) -> str:
    return f"{base}/{doc}.html"


def screenshot(driver, name: str) -> Path:
    """A full-page PNG of the current page in the temp folder (path goes to the test summary)."""
    height = driver.execute_script("return Math.min(document.documentElement.scrollHeight, 12000)")
    driver.set_window_size(1280, max(800, height))
    path = SCREENSHOT_DIR / f"lmbook_{name}.png"
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 1600)
    report(f"screenshot: {path}")
    return path


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("doc", DOCS)
def test_page_loads_without_script_errors_or_tracebacks(browser, server, doc):
    log = open_page(browser, page_url(server, doc))
    assert browser.find_elements("css selector", "article.bd-article h1"), f"{doc}: no <h1> in the article"
    errors = own_errors(log, server)
    assert not errors, f"{doc}: the page logged errors:\n" + "\n".join(errors)
    text = browser.execute_script("return document.body.innerText")
    assert not TRACEBACK_RE.search(text), f"{doc}: a traceback is visible on the page"


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_title_and_colab_link(browser, server, doc):
    from selenium.webdriver.common.by import By

    open_page(browser, page_url(server, doc))
    h1 = browser.find_element(By.CSS_SELECTOR, "article.bd-article h1").text.strip()
    book_title = load_yaml(ROOT / "_config.yml")["title"]
    assert h1, f"{doc}: empty <h1>"
    assert browser.title.startswith(h1) and book_title in browser.title, (
        f"{doc}: window title {browser.title!r} should be '{h1} — {book_title}'"
    )
    want = expected_colab_url(doc)
    links = browser.find_elements(By.CSS_SELECTOR, "a[href*='colab.research.google.com']")
    hrefs = [a.get_attribute("href") for a in links]
    assert want in hrefs, f"{doc}: the Colab link should be {want}; found {hrefs}"


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_figures_load(browser, server, doc):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    open_page(browser, page_url(server, doc))
    images = browser.find_elements(By.CSS_SELECTOR, "article.bd-article img")
    assert images, f"{doc}: no figure on the page"
    WebDriverWait(browser, 10).until(lambda d: all(d.execute_script("return arguments[0].complete", i) for i in images))
    broken = [(i.get_attribute("src") or "")[:80] for i in images
              if not browser.execute_script("return arguments[0].naturalWidth", i)]
    assert not broken, f"{doc}: figures that did not load (naturalWidth 0): {broken}"
    report(f"{doc}: {len(images)} figure(s) loaded in the browser")


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_chapter_exercises_and_solutions(browser, server, doc):
    """Exercises are shown; each solution is collapsed until its title is clicked; no traceback anywhere."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    log = open_page(browser, page_url(server, doc))
    exercises = browser.find_elements(By.CSS_SELECTOR, "div.exercise")
    assert exercises, f"{doc}: no exercise box on the page"
    assert all(e.is_displayed() for e in exercises), f"{doc}: an exercise box is hidden"
    solutions = browser.find_elements(By.CSS_SELECTOR, "div.solution")
    assert solutions, f"{doc}: no solution on the page"

    def content(sol):
        return sol.find_elements(By.CSS_SELECTOR, ":scope > :not(.admonition-title)")

    for sol in solutions:
        sid = sol.get_attribute("id")
        assert content(sol), f"{doc}: solution {sid} is empty"
        assert "toggle-hidden" in (sol.get_attribute("class") or ""), f"{doc}: solution {sid} is not collapsed"
        assert not any(p.is_displayed() for p in content(sol)), f"{doc}: solution {sid} is visible before any click"
    screenshot(browser, f"{chapter_id(doc)}_collapsed")

    for sol in solutions:
        # the "Click to show" chevron that togglebutton.js adds to the title (the title's own text
        # is a link to the exercise, which jumps there instead of opening the solution)
        button = sol.find_element(By.CSS_SELECTOR, ":scope > .admonition-title .toggle-button")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
        WebDriverWait(browser, 5).until(EC.element_to_be_clickable(button)).click()
        WebDriverWait(browser, 5).until(lambda d: any(p.is_displayed() for p in content(sol)),
                                        f"{doc}: solution {sol.get_attribute('id')} did not open when clicked")
    screenshot(browser, f"{chapter_id(doc)}_solutions_open")

    errors = own_errors(log + browser.get_log("browser"), server)
    assert not errors, f"{doc}: the page logged errors:\n" + "\n".join(errors)
    text = browser.execute_script("return document.body.innerText")
    assert not TRACEBACK_RE.search(text), f"{doc}: a traceback is visible with the solutions open"


# ---------------------------------------------------------------- offline: no CDN, equations and widgets render


@pytest.mark.parametrize("doc", DOCS)
def test_page_loads_nothing_from_another_host(browser, server, doc):
    """Scripts, styles, fonts and images all come from the build: the book reads the same without a network."""
    open_page(browser, page_url(server, doc))
    names = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    external = sorted({n for n in names if not n.startswith(server) and not n.startswith("data:")})
    assert not external, f"{doc}: the page fetched resources from other hosts (it would break offline): {external}"


def _typeset(driver) -> bool:
    """Wait for MathJax to finish typesetting the page; False if MathJax never loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        WebDriverWait(driver, 20).until(lambda d: d.execute_script(
            "return !!(window.MathJax && MathJax.startup && MathJax.startup.promise)"))
    except Exception:  # noqa: BLE001  (a timeout: MathJax is not on the page)
        return False
    driver.set_script_timeout(30)
    driver.execute_async_script("const done = arguments[0]; MathJax.startup.promise.then(() => done(true));")
    return True


#: TeX that would be visible if MathJax did not run (outside code blocks).
RAW_TEX = re.compile(r"\\(frac|sum|mathbb|mathcal|log|theta|sigma|pi|begin|left|right|cdot|hat|le|ge)\b|\$\$|\\\(|\\\[")


@pytest.mark.parametrize("doc", DOCS)
def test_equations_are_typeset_offline(browser, server, doc):
    open_page(browser, page_url(server, doc))
    n_math = browser.execute_script("return document.querySelectorAll('article .math').length")
    if n_math == 0:
        return
    assert _typeset(browser), f"{doc}: {n_math} equations but MathJax did not load (it must come from _static/mathjax)"
    untypeset = browser.execute_script(
        "return [...document.querySelectorAll('article .math')].filter(e => !e.querySelector('mjx-container'))"
        ".map(e => e.textContent.slice(0, 60))")
    assert not untypeset, f"{doc}: {len(untypeset)} of {n_math} equations were not typeset, e.g. {untypeset[:3]}"
    prose = browser.execute_script(
        "const a = document.querySelector('article').cloneNode(true);"
        "a.querySelectorAll('pre, code, .highlight, mjx-container, script, style, .math').forEach(e => e.remove());"
        "return a.textContent;")
    raw = sorted(set(m.group(0) for m in RAW_TEX.finditer(prose)))
    assert not raw, f"{doc}: raw TeX visible in the text: {raw}"
    report(f"{doc}: {n_math} equations typeset by the offline MathJax")


@pytest.mark.parametrize("doc", CHAPTERS, ids=chapter_id)
def test_embedded_widgets_render_offline(browser, server, doc):
    """Each widget view saved in the page is drawn by the widget manager from _static/widgets."""
    from selenium.webdriver.support.ui import WebDriverWait

    log = open_page(browser, page_url(server, doc))
    views = browser.execute_script(
        "return document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]').length")
    if views == 0:
        return
    try:
        WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            "return document.querySelectorAll('.jupyter-widgets.widget-inline-hbox, .jupyter-widgets.widget-box, "
            ".jupyter-widgets.widget-html, .jupyter-widgets.widget-output, .jupyter-widgets.widget-container, "
            ".jupyter-widgets.widget-slider, .jupyter-widgets.widget-button, .jupyter-widgets.widget-text').length") > 0)
    except Exception:  # noqa: BLE001
        pass
    rendered = browser.execute_script(
        "return [...document.querySelectorAll('script[type=\"application/vnd.jupyter.widget-view+json\"]')]"
        ".filter(s => s.parentElement && s.parentElement.querySelector('.jupyter-widgets')).length")
    errors = own_errors(log + browser.get_log("browser"), server)
    assert rendered == views, (f"{doc}: {views - rendered} of {views} embedded widgets did not render "
                               f"(console: {errors[:3]})")
    screenshot(browser, f"{chapter_id(doc)}_widgets")
    report(f"{doc}: {views} embedded widget(s) rendered offline")
