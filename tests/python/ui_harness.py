"""The harness of the dashboard's browser test (`ui_browser.py`): headless
Debian chromium through Selenium, the API over https with the node's CA,
named checks, screenshots at 1280x800 and the phone-width check at 390x844,
and the browser's console collected at every page.

Nothing here knows the pages; `ui_browser.py` holds the checks.
"""

import json
import os
import shutil
import ssl
import time
import traceback
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

DESKTOP = {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False}
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}


class Failed(Exception):
    """A check's failure: what was expected and what the page showed."""


class Harness:
    """One browser, the API, and the report being written."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.url = cfg["url"].rstrip("/")
        self.out = cfg["screenshots"]
        os.makedirs(self.out, exist_ok=True)
        self.checks = {}
        self.observed = {}
        self.screenshots = []
        self.console = []  # every SEVERE entry: {page, source, message}
        self.allowed = []  # (url prefix) whose 4xx answers are the point
        self.phone = {}  # page -> {scroll_width, width}
        self.page = "start"
        self.ctx = ssl.create_default_context(cafile=cfg["ca"]) if cfg.get("ca") else None
        self.driver = self._browser()

    # -- the browser -------------------------------------------------------

    def _browser(self):
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        driver = shutil.which("chromedriver")
        if not chromium or not driver:
            raise SystemExit("chromium and chromedriver must be on PATH (scripts/test installs them)")
        o = webdriver.ChromeOptions()
        o.binary_location = chromium
        for a in [
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,800",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-default-apps",
            "--hide-scrollbars",
        ]:
            o.add_argument(a)
        # The node's CA is its own (made in its data dir): accept it.
        o.accept_insecure_certs = True
        o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        d = webdriver.Chrome(options=o, service=Service(driver))
        d.set_page_load_timeout(30)
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
        return d

    def quit(self):
        try:
            self.driver.quit()
        except Exception:  # noqa: BLE001 - the report matters more
            pass

    # -- checks and the report ---------------------------------------------

    def check(self, name, fn):
        """Runs `fn` as the check `name`; records ok or what failed."""
        started = time.monotonic()
        try:
            detail = fn()
            self.checks[name] = {"ok": True, "detail": detail or ""}
        except Failed as e:
            self.checks[name] = {"ok": False, "detail": str(e)}
        except Exception as e:  # noqa: BLE001 - any error fails the check
            said = (getattr(e, "msg", None) or str(e)).splitlines()[0]
            where = "".join(traceback.format_tb(e.__traceback__)[-2:])
            self.checks[name] = {
                "ok": False,
                "detail": f"{type(e).__name__}: {said}\n{where}main: {self.main_text()}",
            }
        self.checks[name]["secs"] = round(time.monotonic() - started, 1)
        self.drain_console()

    def report(self, elapsed):
        return {
            "checks": self.checks,
            "observed": self.observed,
            "screenshots": self.screenshots,
            "console": self.console,
            "phone": self.phone,
            "elapsed_secs": round(elapsed, 1),
        }

    # -- pages -------------------------------------------------------------

    def go(self, path, page=None, base=None):
        """Opens `path` (under the live node, or `base`) as page `page`."""
        self.drain_console()
        self.page = page or path
        self.driver.get((base or self.url) + path)

    def path(self):
        """The current URL without scheme and host."""
        u = self.driver.current_url
        return "/" + u.split("/", 3)[3] if u.count("/") >= 3 else u

    def main_text(self, limit=1500):
        try:
            t = self.driver.find_element(By.CSS_SELECTOR, "main").text
        except Exception:  # noqa: BLE001
            try:
                t = self.driver.find_element(By.TAG_NAME, "body").text
            except Exception:  # noqa: BLE001
                return "(no page)"
        t = " ".join(t.split())
        return t[:limit] + ("…" if len(t) > limit else "")

    def find(self, css):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def one(self, css, what=None):
        found = self.find(css)
        if not found:
            raise Failed(f"{what or css}: no {css} on {self.path()}; main: {self.main_text()}")
        return found[0]

    def wait(self, css, what, timeout=15, reload_every=None, gone=False):
        """Waits ≤ `timeout` s for `css` (or for it to be gone), reloading
        every `reload_every` s when given; the first element found."""
        deadline = time.monotonic() + timeout
        next_reload = time.monotonic() + reload_every if reload_every else None
        while True:
            found = self.find(css)
            if found and not gone:
                return found[0]
            if gone and not found:
                return None
            if time.monotonic() > deadline:
                raise Failed(
                    f"{what}: {'still ' if gone else 'no '}{css} on {self.path()} within {timeout} s; main: {self.main_text()}"
                )
            if next_reload and time.monotonic() > next_reload:
                self.driver.refresh()
                next_reload = time.monotonic() + reload_every
            time.sleep(0.2)

    def wait_text(self, css, expected, what, timeout=15, reload_every=None):
        """Waits until the text of `css` contains every string of `expected`."""
        deadline = time.monotonic() + timeout
        next_reload = time.monotonic() + reload_every if reload_every else None
        while True:
            els = self.find(css)
            text = els[0].text if els else None
            if text is not None and all(e in text for e in expected):
                return text
            if time.monotonic() > deadline:
                raise Failed(
                    f"{what}: {css} is {text!r}, not containing {expected} within {timeout} s; main: {self.main_text()}"
                )
            if next_reload and time.monotonic() > next_reload:
                self.driver.refresh()
                next_reload = time.monotonic() + reload_every
            time.sleep(0.2)

    def accept_dialog(self):
        """Accepts a `confirm()` the script may have opened."""
        try:
            self.driver.switch_to.alert.accept()
        except NoAlertPresentException:
            pass

    def allow_refusals(self, prefix):
        """4xx answers of URLs under `prefix` are expected (a refusal is
        the point): the console's network line about them is no JS error."""
        self.allowed.append(self.url + prefix if prefix.startswith("/") else prefix)

    # -- screenshots, phone width, the console -----------------------------

    def shoot(self, name):
        """Saves `<name>.png` at 1280x800, then checks (and saves) the page
        at phone width: the body must not overflow horizontally."""
        d = self.driver
        path = os.path.join(self.out, f"{name}.png")
        d.save_screenshot(path)
        self.screenshots.append(path)
        d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
        try:
            time.sleep(0.15)
            sw, w = d.execute_script(
                "return [document.body.scrollWidth, window.innerWidth]"
            )
            self.phone[name] = {"scroll_width": sw, "width": w, "ok": sw <= w + 1}
            d.save_screenshot(os.path.join(self.out, f"{name}-phone.png"))
        finally:
            d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", DESKTOP)
        self.drain_console()

    def drain_console(self):
        """Collects the browser's SEVERE console entries of the page."""
        try:
            entries = self.driver.get_log("browser")
        except Exception:  # noqa: BLE001 - a dead browser fails elsewhere
            return
        for e in entries:
            if e.get("level") != "SEVERE":
                continue
            msg = e.get("message", "")
            network = e.get("source") == "network"
            # A refusal that is the point, or the browser's own guess at a
            # favicon (no page asks for one): no JavaScript error.
            expected = network and (
                any(msg.startswith(a) and "status of 4" in msg for a in self.allowed)
                or "/favicon.ico - " in msg
            )
            self.console.append(
                {"page": self.page, "source": e.get("source"), "message": msg, "expected": expected}
            )

    # -- the API -----------------------------------------------------------

    def api(self, name, args, token=None, base=None):
        """Runs action `name`; its `data`. Raises Failed on a refusal."""
        req = urllib.request.Request(
            f"{base or self.url}/v1/actions/{name}",
            data=json.dumps(args).encode(),
            method="POST",
            headers={
                "authorization": f"Bearer {token or self.cfg['token']}",
                "content-type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=30) as r:
                return json.loads(r.read() or b"{}").get("data")
        except urllib.error.HTTPError as e:
            raise Failed(f"{name} {args}: {e.code} {e.read()[:500]!r}") from None

    def until(self, what, fn, timeout=30, every=0.2):
        """Polls `fn` until it answers something truthy; that answer."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                last = fn()
            except Failed as e:
                last = str(e)
                if time.monotonic() > deadline:
                    raise
            else:
                if last:
                    return last
            if time.monotonic() > deadline:
                raise Failed(f"{what}: not within {timeout} s (last: {last!r})")
            time.sleep(every)

    def fetch(self, path, fields):
        """A form post made by hand from the page (same origin, its
        cookie): answers (status, body)."""
        return self.driver.execute_async_script(
            """
            const [path, fields, done] = arguments;
            fetch(path, {method: 'POST', body: new URLSearchParams(fields), redirect: 'manual'})
              .then(async r => done([r.status, await r.text()]))
              .catch(e => done([0, String(e)]));
            """,
            path,
            fields,
        )


def timeout_guard(fn):
    """Selenium's TimeoutException as a Failed naming the page."""

    def run(h, *a):
        try:
            return fn(h, *a)
        except TimeoutException as e:
            where = "".join(traceback.format_tb(e.__traceback__)[1:3])
            raise Failed(f"timed out: {e.msg}\n{where}main: {h.main_text()}") from None

    return run
