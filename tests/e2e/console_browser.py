"""A small Selenium wrapper for the console's end-to-end tests.

`ConsoleBrowser` drives the distribution's headless Chromium
(`chromium`, `chromium-driver`, installed by scripts/setup) with a fresh
profile per instance, so no cookie or cache crosses tests. It knows the
console's DOM contract (docs: /console/, `main#view[data-view][data-ready]`,
`data-field` elements) and nothing about ferry's APIs.

Screenshots always go to the artifacts directory (`$FERRY_ARTIFACTS`, else
`target/console-screenshots` in the repository); with
`FERRY_UPDATE_SCREENSHOTS=1` the README's copies under docs/console/ are
rewritten too.
"""

import base64
import os
import shutil
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import (NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException, WebDriverException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS_DIR = os.path.join(ROOT, "docs", "console")
CHROMIUM = os.environ.get("FERRY_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("FERRY_CHROMEDRIVER", "/usr/bin/chromedriver")


def artifacts_dir():
    d = os.environ.get("FERRY_ARTIFACTS") or os.path.join(ROOT, "target", "console-screenshots")
    os.makedirs(d, exist_ok=True)
    return d


def missing_browser():
    """Why no browser can run here, or None. The tests fail (not skip) on
    it: scripts/setup installs both."""
    for p in (CHROMIUM, CHROMEDRIVER):
        if not os.access(p, os.X_OK):
            return f"{p} is missing: run scripts/setup (chromium, chromium-driver)"
    return None


class ConsoleBrowser:
    """One headless Chromium on one ferry server's console."""

    def __init__(self, endpoint, width=1280, height=900, timeout=30):
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="ferry-console-profile-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        # Root on a headless box: no sandbox, no /dev/shm assumptions, and
        # never a proxy between the browser and 127.0.0.1.
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
                    "--no-proxy-server", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--force-device-scale-factor=1", "--lang=en-US"):
            opts.add_argument(arg)
        # The browser's console: CSP violations and uncaught errors show there.
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER))
        except BaseException:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(timeout)
        self._log = []
        self.set_viewport(width, height)

    # -- lifecycle ---------------------------------------------------------
    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    def set_viewport(self, width, height, mobile=False):
        """The layout viewport is exactly width x height CSS pixels (the
        window's chrome does not count), as on a device of that size."""
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile})

    # -- navigation --------------------------------------------------------
    def url(self, route=""):
        return f"{self.endpoint}/console/{route}"

    def open(self, route=""):
        """Loads the console (a fresh page load) at `route` (e.g. `#/keys`)."""
        self.driver.get(self.url(route))

    def go(self, route):
        """Changes the hash route inside the loaded page (no reload)."""
        self.driver.execute_script("window.location.hash = arguments[0];", route.lstrip("#"))

    # -- waiting -----------------------------------------------------------
    def wait(self, cond, timeout=None, what="condition"):
        """Polls `cond(driver)` until truthy; returns its value. Stale or
        missing elements count as not yet."""
        try:
            return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1,
                                 ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                                 ).until(cond)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {what} at {self.driver.current_url}; "
                                 f"view error: {self.view_error()!r}") from None

    def find(self, css, within=None):
        return (within or self.driver).find_element(By.CSS_SELECTOR, css)

    def find_all(self, css, within=None):
        return (within or self.driver).find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, css, timeout=None, visible=False):
        """The first element matching `css`, once there (and displayed)."""
        def cond(d):
            els = d.find_elements(By.CSS_SELECTOR, css)
            els = [e for e in els if e.is_displayed()] if visible else els
            return els[0] if els else None
        return self.wait(cond, timeout, what=css)

    def wait_view(self, view, timeout=None):
        """`main#view` once it shows view `view` with its data loaded."""
        return self.wait_for(f'main#view[data-view="{view}"][data-ready="true"]', timeout)

    def view_error(self):
        try:
            els = self.driver.find_elements(By.CSS_SELECTOR, "#view-error")
            return " ".join(e.text for e in els if e.text)
        except WebDriverException:
            return ""

    # -- reading -----------------------------------------------------------
    def field(self, name, within=None):
        """The text of the `data-field=NAME` element (trimmed)."""
        return self.find(f'[data-field="{name}"]', within).text.strip()

    def fields(self, within=None):
        """Every data-field under `within` (or the page) as a dict."""
        out = {}
        for e in self.find_all("[data-field]", within):
            out.setdefault(e.get_attribute("data-field"), e.text.strip())
        return out

    def wait_field(self, name, value, timeout=None, within=None):
        """Waits until field `name` reads `value`; returns it."""
        seen = {}

        def cond(d):
            seen["v"] = self.field(name, within)
            return seen["v"] == value
        try:
            self.wait(cond, timeout, what=f"field {name} == {value!r}")
        except AssertionError as e:
            raise AssertionError(f"{e} (last: {seen.get('v')!r})") from None
        return value

    def rows(self, table_css, attr):
        """The `attr` values of the rows `tr[attr]` of a table, in order."""
        return [r.get_attribute(attr) for r in self.find_all(f"{table_css} tr[{attr}]")]

    # -- acting ------------------------------------------------------------
    def fill(self, css, text):
        el = self.find(css)
        el.clear()
        el.send_keys(text)
        return el

    def click(self, css):
        el = self.wait_for(css, visible=True)
        el.click()
        return el

    def sign_in(self, key, secret):
        """Fills and submits the sign-in form (on a loaded console page)."""
        self.wait_for("form#signin-form", visible=True)
        self.fill("input#access-key-id", key)
        self.fill("input#secret-access-key", secret)
        self.click("button#signin-submit")

    def confirm(self, ok=True):
        """Waits for the open confirmation dialog; returns its message after
        pressing OK (or Cancel)."""
        def opened(d):
            e = d.find_element(By.CSS_SELECTOR, "dialog#confirm")
            return e if e.get_attribute("open") is not None else None
        dialog = self.wait(opened, what="dialog#confirm open")
        msg = self.find("#confirm-message", dialog).text
        self.find("button#confirm-ok" if ok else "button#confirm-cancel", dialog).click()
        self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "dialog#confirm").get_attribute("open") is None,
                  what="dialog#confirm closed")
        return msg

    def cookie(self, name="ferry_console"):
        c = self.driver.get_cookie(name)
        return c["value"] if c else None

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    # -- evidence ----------------------------------------------------------
    def screenshot(self, name, extra_dirs=(), full_page=False):
        """Writes NAME.png into the artifacts dir and `extra_dirs`; also
        into docs/console/ with FERRY_UPDATE_SCREENSHOTS=1. `full_page`:
        the whole page at the viewport's width, not only what is in view.
        Returns the artifact's path."""
        path = os.path.join(artifacts_dir(), f"{name}.png")
        if full_page:
            m = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
            size = m.get("cssContentSize") or m["contentSize"]
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
            with open(path, "wb") as f:
                f.write(base64.b64decode(shot["data"]))
        else:
            assert self.driver.save_screenshot(path), f"screenshot {name} failed"
        dirs = list(extra_dirs)
        if os.environ.get("FERRY_UPDATE_SCREENSHOTS") == "1":
            dirs.append(DOCS_DIR)
        for d in dirs:
            os.makedirs(d, exist_ok=True)
            shutil.copyfile(path, os.path.join(d, f"{name}.png"))
        return path

    def save_failure(self, name):
        """The page as it was (screenshot, DOM, browser log) for a failed test."""
        d = artifacts_dir()
        try:
            self.driver.save_screenshot(os.path.join(d, f"FAILED-{name}.png"))
            with open(os.path.join(d, f"FAILED-{name}.html"), "w") as f:
                f.write(self.driver.page_source)
            with open(os.path.join(d, f"FAILED-{name}.log"), "w") as f:
                for e in self.browser_log():
                    f.write(f"{e.get('level')} {e.get('message')}\n")
        except WebDriverException:
            pass

    def browser_log(self):
        """Every browser console entry so far (Chromium hands each out once)."""
        try:
            self._log.extend(self.driver.get_log("browser"))
        except WebDriverException:
            pass
        return list(self._log)

    def script_errors(self):
        """Console entries that are the page's fault: CSP violations and
        uncaught exceptions (expected 401s of signed-out requests are not)."""
        return [e["message"] for e in self.browser_log()
                if "Content Security Policy" in e.get("message", "") or "Uncaught" in e.get("message", "")]


def wait_until(cond, timeout=30, interval=0.25, what="condition"):
    """Polls a plain function until it returns something truthy."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
