#!/usr/bin/env python3
"""bench/portal-load.py: the portal overview's first load in headless Chromium, ROUNDS times:
bytes transferred (the Performance API: navigation + resources, the never-ending event
stream aside) and the time from navigation start to the services table drawn (the page's own
mark, window.__dash.firstRender), plus first-contentful-paint. Called by bench/portal.sh.

  portal-load.py --addr HOST:PORT --token T --rounds N --chromedriver-port P

Prints one JSON line per round, then nothing else; uses tests/e2e/portal/portal_test.py's
WebDriver client (standard library only)."""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "e2e", "portal"))
from portal_test import WebDriver, start_chromedriver  # noqa: E402


def wait_until(ready, seconds, pause, failure):
    """Calls ready() every pause seconds until it returns something true; exits with failure
    after seconds."""
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(failure)
        time.sleep(pause)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--chromedriver-port", type=int, default=17977)
    a = p.parse_args()
    base = f"http://{a.addr}"
    tmp = tempfile.mkdtemp(prefix="dash-portal-bench-")
    driver = wd = None
    try:
        with open(os.path.join(tmp, "chromedriver.log"), "wb") as log:
            driver = start_chromedriver(a.chromedriver_port, log)
            wd = WebDriver(a.chromedriver_port)
            os.mkdir(os.path.join(tmp, "profile"))
            wd.start(os.path.join(tmp, "profile"))
            # Log in once through the form; the token stays in sessionStorage for the loads.
            wd.get(base + "/ui/login")
            wait_until(lambda: wd.find("#token"), 10, 0.1, "no login form")
            wd.type(wd.find("#token"), a.token)
            wd.click(wd.find("#login"))
            for _ in range(a.rounds):
                wd.get(base + "/ui/")
                wait_until(lambda: wd.js("return window.__dash && window.__dash.firstRender;"), 30, 0.05,
                           "the overview did not render within 30 s")
                time.sleep(0.5)
                m = wd.js("""
                    const size = (e) => Math.max(e.transferSize || 0, e.encodedBodySize || 0);
                    const nav = performance.getEntriesByType('navigation')[0];
                    const res = performance.getEntriesByType('resource');
                    const fcp = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
                    return {bytes: (nav ? size(nav) : 0) + res.reduce((n, e) => n + size(e), 0),
                            render_ms: window.__dash.firstRender, fcp_ms: fcp ? fcp.startTime : null,
                            services: document.querySelectorAll('[data-service]').length};""")
                print(json.dumps(m), flush=True)
    finally:
        if wd:
            try:
                wd.quit()
            except Exception:
                pass
        if driver:
            try:
                os.killpg(driver.pid, 15)
            except OSError:
                pass
            driver.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
