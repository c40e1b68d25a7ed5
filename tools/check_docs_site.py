"""Loads every page of the built docs site in headless Chromium and checks it.

For each page, at desktop (1280 px) and phone (390 px) width: no console
error, and no element sticking out past the right edge of the page (an element
inside a box that scrolls or clips, such as a code block or a wide table's
scroll wrapper, is fine: the reader scrolls that box). On the home page, a
query typed into the search box must list a result. ``mkdocs build --strict``
checks links and references; this checks what a reader sees.

  python tools/check_docs_site.py                      # builds the site first
  python tools/check_docs_site.py --site_dir=site --screenshots=/tmp/shots

Needs the Debian packages ``chromium`` and ``chromium-driver`` and the
``selenium`` package (the ``docs`` extra). Where Chromium is absent it prints
why and exits 0, so ``.ci/run`` stays usable on machines without it.
"""

import argparse
import functools
import http.server
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}
SEARCH_QUERY, SEARCH_EXPECT = "layer_stack", "layer_stack"

# Elements whose right edge passes the page's, outside any box that scrolls or
# clips them (described as tag#id.class: text).
_OVERFLOW_JS = """
const width = document.documentElement.clientWidth;
const out = [];
for (const el of document.body.querySelectorAll('*')) {
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0 || r.right <= width + 1) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden' || style.display === 'none') continue;
  let p = el.parentElement, contained = false;
  while (p && p !== document.documentElement) {
    const s = getComputedStyle(p);
    if (/(auto|scroll|hidden|clip)/.test(s.overflowX) ||
        s.visibility === 'hidden' || s.display === 'none') { contained = true; break; }
    p = p.parentElement;
  }
  if (contained) continue;
  out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') +
           (el.className && typeof el.className === 'string'
              ? '.' + el.className.trim().split(/\\s+/).join('.') : '') +
           ' right=' + Math.round(r.right) + ': ' +
           (el.textContent || '').trim().slice(0, 60));
}
return [document.documentElement.scrollWidth > width + 1, out.slice(0, 5)];
"""


def find_browser() -> tuple[str, str] | None:
    """(chromium, chromedriver) paths, or None when either is missing."""
    browser = next(filter(None, map(shutil.which, ["chromium", "chromium-browser"])), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def build_site(site_dir: pathlib.Path) -> None:
    subprocess.run(["mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site_dir)],
                   check=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def pages(site_dir: pathlib.Path) -> list[str]:
    """Every page's URL path, home first."""
    found = sorted(str(p.parent.relative_to(site_dir)) for p in site_dir.rglob("index.html")
                   if "assets" not in p.parts)
    return ["" if p == "." else p + "/" for p in found]


def serve(site_dir: pathlib.Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        del args  # One line per request would bury the report.


def make_driver(browser: str, driver_path: str, user_data_dir: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 f"--user-data-dir={user_data_dir}", "--hide-scrollbars"]:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver_path))


def set_width(driver, size: tuple[int, int]) -> None:
    width, height = size
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})


def load(driver, url: str) -> None:
    driver.get(url)
    deadline = time.time() + 20
    while driver.execute_script("return document.readyState") != "complete":
        if time.time() > deadline:
            raise TimeoutError(f"{url} did not finish loading in 20 s")
        time.sleep(0.05)


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def screenshot(driver, path: pathlib.Path, max_height: int = 3000) -> None:
    """The page from the top, up to ``max_height`` CSS pixels tall."""
    import base64

    height = min(driver.execute_script("return document.documentElement.scrollHeight"),
                 max_height)
    width = driver.execute_script("return document.documentElement.clientWidth")
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))


def check_search(driver, base: str) -> str | None:
    """Types the query into the home page's search box; an error, or None."""
    from selenium.webdriver.common.by import By

    load(driver, base)
    driver.execute_script("document.getElementById('__search').checked = true;"
                          "document.getElementById('__search').dispatchEvent(new Event('change'))")
    box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
    box.send_keys(SEARCH_QUERY)
    deadline, meta = time.time() + 30, ""
    while time.time() < deadline:
        meta = driver.find_element(By.CSS_SELECTOR, ".md-search-result__meta").text
        items = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
        if items and any(SEARCH_EXPECT in i.text for i in items):
            return None
        time.sleep(0.25)
    return f"search for {SEARCH_QUERY!r} listed no result mentioning it (status: {meta!r})"


def check(site_dir: pathlib.Path, shots: pathlib.Path | None) -> list[str]:
    """Every problem found, as one line each."""
    found = find_browser()
    assert found is not None
    server = serve(site_dir)
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems = []
    with tempfile.TemporaryDirectory() as profile:
        driver = make_driver(*found, profile)
        try:
            for label, size in WIDTHS.items():
                set_width(driver, size)
                for page in pages(site_dir):
                    load(driver, base + page)
                    where = f"{page or '(home)'} at {label} width"
                    problems += [f"{where}: console error: {m}" for m in console_errors(driver)]
                    scrolls, wide = driver.execute_script(_OVERFLOW_JS)
                    if scrolls or wide:
                        problems.append(f"{where}: wider than the page: {wide or 'page scrolls'}")
                    if shots:
                        time.sleep(0.5)  # Let the header's fade-in transitions finish.
                        name = (page.strip("/").replace("/", "_") or "home") + f"_{label}.png"
                        screenshot(driver, shots / name)
            set_width(driver, WIDTHS["desktop"])
            error = check_search(driver, base)
            problems += [f"search: {error}"] if error else []
            problems += [f"search: console error: {m}" for m in console_errors(driver)]
        finally:
            driver.quit()
            server.shutdown()
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site_dir", type=pathlib.Path,
                        help="A site built by mkdocs (default: build one in a temp dir).")
    parser.add_argument("--screenshots", type=pathlib.Path,
                        help="Write one PNG per page and width here.")
    args = parser.parse_args()
    if find_browser() is None:
        print("check_docs_site: skipped: no chromium and chromedriver on PATH "
              "(Debian: apt-get install chromium chromium-driver)")
        return 0
    if args.screenshots:
        args.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        site = args.site_dir or pathlib.Path(tmp) / "site"
        if args.site_dir is None:
            build_site(site)
        n = len(pages(site))
        problems = check(site, args.screenshots)
    for p in problems:
        print(p)
    searched = not any(p.startswith("search: ") for p in problems)
    print(f"check_docs_site: {n} pages at {len(WIDTHS)} widths and a search for "
          f"{SEARCH_QUERY!r} ({'found' if searched else 'FAILED'}): {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
