#!/usr/bin/env python3
"""The web portal (/ui) driven in a headless Chromium through chromedriver's W3C WebDriver
HTTP protocol, with Python's standard library only.

    python3 tests/e2e/portal/portal_test.py --addr 127.0.0.1:7070 --dash target/debug/dash \
        --admin-token TOKEN --read-token DASH1-... --service web --artifacts /tmp/portal-shots \
        [--chromedriver-port 9515] [--measure]

The service must exist with at least one replica running a shell loop that prints lines
(e.g. busybox: `i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done`). The test
scales it to 3 from the page and leaves it so. It kills one replica's container from the
host (so: root, on the machine of the replica's node), found by its cgroup in /proc or by
--data-dir's containers/<id>/pid.

The login page must offer "Log in with <provider>" (#oidc-login) exactly when GET /v1/login
names an OpenID Connect provider; that login itself is oidc_login_test.py's.

It stops at the first thing wrong, with a message and exit status 1. With --measure it
prints the overview's first load as one JSON line: {"overview_bytes":N,"first_render_ms":M}.
"""

import argparse
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


class Failure(Exception):
    pass


def log(msg):
    print(f"[portal] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# WebDriver


class WebDriver:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"
        self.session = None

    def call(self, method, path, body=None, timeout=60):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json; charset=utf-8")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                text = r.read().decode()
        except urllib.error.HTTPError as e:
            text = e.read().decode(errors="replace")
            try:
                v = json.loads(text).get("value", {})
                raise Failure(f"WebDriver {method} {path}: {v.get('error')}: {v.get('message', '')[:400]}")
            except (ValueError, AttributeError):
                raise Failure(f"WebDriver {method} {path}: HTTP {e.code}: {text[:400]}")
        return json.loads(text).get("value") if text else None

    def s(self, method, path, body=None):
        return self.call(method, f"/session/{self.session}{path}", body)

    def start(self, profile_dir):
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": "/usr/bin/chromium",
                        "args": [
                            "--headless=new",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-dev-shm-usage",
                            f"--user-data-dir={profile_dir}",
                            "--window-size=1400,1000",
                        ],
                    },
                    "goog:loggingPrefs": {"browser": "ALL"},
                }
            }
        }
        v = self.call("POST", "/session", caps, timeout=120)
        self.session = v["sessionId"]

    def quit(self):
        if self.session:
            try:
                self.call("DELETE", f"/session/{self.session}", timeout=20)
            finally:
                self.session = None

    def get(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        """The element, or None."""
        try:
            v = self.s("POST", "/element", {"using": "css selector", "value": css})
        except Failure as e:
            if "no such element" in str(e):
                return None
            raise
        return v[ELEMENT]

    def click(self, el):
        self.s("POST", f"/element/{el}/click", {})

    def clear(self, el):
        self.s("POST", f"/element/{el}/clear", {})

    def type(self, el, text):
        self.s("POST", f"/element/{el}/value", {"text": text})

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)

    def browser_log(self):
        """Console entries since the last call (chromedriver's legacy log endpoint)."""
        for path in ("/se/log", "/log"):
            try:
                return self.s("POST", path, {"type": "browser"}) or []
            except Failure:
                continue
        return None


# --------------------------------------------------------------------------------------
# The test


class PortalTest:
    def __init__(self, args, wd):
        self.a = args
        self.wd = wd
        self.base = "http://" + args.addr.removeprefix("http://").rstrip("/")
        self.shot_n = 0
        self.console = []

    # -- helpers ---------------------------------------------------------------------

    def dash(self, *argv, check=True):
        env = dict(os.environ, DASH_ADDR=self.a.addr, DASH_TOKEN=self.a.admin_token)
        p = subprocess.run([self.a.dash, *argv], env=env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise Failure(f"dash {' '.join(argv)}: exit {p.returncode}: {p.stderr.strip()[:500]}")
        return p

    def replicas(self):
        out = self.dash("ps", self.a.service, "-o", "json").stdout
        return [r for r in json.loads(out) if r.get("desired") == "run"]

    def wait(self, what, timeout, fn, interval=0.1):
        """Polls fn until it returns something truthy; fails naming `what`."""
        end = time.monotonic() + timeout
        last_err = None
        while True:
            try:
                v = fn()
                if v:
                    return v
            except Failure as e:
                last_err = e
            if time.monotonic() >= end:
                extra = f" (last error: {last_err})" if last_err else ""
                self.shot("failed-" + re.sub(r"[^a-z0-9]+", "-", what.lower())[:40])
                raise Failure(f"timed out after {timeout:g} s waiting for {what}{extra}")
            time.sleep(interval)

    def shot(self, name):
        self.shot_n += 1
        path = os.path.join(self.a.artifacts, f"{self.shot_n:02d}-{name}.png")
        try:
            self.wd.screenshot(path)
            log(f"screenshot {path}")
        except Exception as e:  # a screenshot never hides the real failure
            log(f"screenshot {path} failed: {e}")

    def text(self, css):
        return self.wd.js("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)

    def visible_text(self, css):
        return self.wd.js(
            "const e = document.querySelector(arguments[0]);"
            "return e && e.offsetParent !== null && !e.closest('[hidden]') ? e.textContent : null;", css)

    def path(self):
        return self.wd.js("return location.pathname;")

    def collect_console(self):
        entries = self.wd.browser_log()
        if entries:
            self.console.extend(entries)

    def check_page_errors(self, where):
        errs = self.wd.js("return (window.__dash && window.__dash.errors) || ['app.js did not start'];")
        if errs:
            raise Failure(f"{where}: the page reported errors: {errs}")
        self.collect_console()
        bad = []
        for e in self.console:
            msg = e.get("message", "")
            if e.get("level") != "SEVERE":
                continue
            # The wrong-token login (401), the probe of a missing service (404) and a server
            # without the history route (404) are expected failed requests.
            if "Failed to load resource" in msg and re.search(r"status of (401|404)", msg):
                continue
            bad.append(msg)
        if bad:
            raise Failure(f"{where}: errors in the browser console: {bad}")

    def login(self, token_value):
        self.wd.get(self.base + "/ui/login")
        self.wait("the login form", 10, lambda: self.wd.find("#token"))
        el = self.wd.find("#token")
        self.wd.clear(el)
        self.wd.type(el, token_value)
        self.wd.click(self.wd.find("#login"))

    def service_row_state(self):
        return self.wd.js(
            "return [...document.querySelectorAll('tr[data-replica]')].map(tr => ({"
            " id: tr.dataset.replica,"
            " state: tr.querySelector('.state') && tr.querySelector('.state').textContent.trim(),"
            " restarts: tr.querySelector('.restarts') && Number(tr.querySelector('.restarts').textContent)}));")

    # -- the steps -------------------------------------------------------------------

    def run(self):
        a = self.a
        svc = a.service
        before = self.replicas()
        if not before:
            raise Failure(f"service {svc} has no replica (dash ps {svc})")
        replicas_before = len(before)

        # 1. The login page; a wrong token is refused. It offers "Log in with <provider>"
        # (#oidc-login) if and only if the server has an OpenID Connect provider.
        self.wd.get(self.base + "/ui/")
        self.wait("the login page at /ui/ (no token yet)", 10, lambda: self.wd.find("#token"))
        self.check_oidc_button()
        self.shot("login")
        self.login("wrong-" + uuid.uuid4().hex)
        msg = self.wait("#login-error after a wrong token", 10, lambda: self.visible_text("#login-error"))
        if "token refused" not in msg:
            raise Failure(f"#login-error says {msg!r}, not 'token refused'")
        if self.wd.js("return sessionStorage.getItem('dash.token');"):
            raise Failure("a refused token was kept in sessionStorage")
        self.shot("login-refused")
        log(f"wrong token refused: {msg!r}")

        # 2. The admin token: the overview lists the service.
        self.login(a.admin_token)
        sel = f'[data-service="{svc}"]'
        self.wait(f"the overview's row of {svc}", 15, lambda: self.wd.find(sel))
        who = self.wait("who/role in the header", 5, lambda: self.visible_text("#whoami"))
        if "admin" not in who:
            raise Failure(f"the header shows {who!r}, not the admin role")
        if self.path() not in ("/ui/", "/ui"):
            raise Failure(f"after the login the page is {self.path()}, not the overview")
        row = self.text(sel)
        if svc not in row:
            raise Failure(f"the overview's row {sel} reads {row!r}")
        self.shot("overview")
        log(f"overview lists {svc}: {row.strip()!r}")

        if a.measure:
            self.measure()

        # 3. Its page (one click from the overview): its replicas.
        self.wd.click(self.wd.find(f'{sel} a[href="/ui/services/{svc}"]'))
        self.wait(f"the page /ui/services/{svc}", 10, lambda: self.path() == f"/ui/services/{svc}")
        ids = {r["id"] for r in before}
        self.wait("the replicas table with the cluster's replicas", 10,
                  lambda: ids <= {r["id"] for r in self.service_row_state() or []})
        self.wait("the live logs' first lines", 15,
                  lambda: self.wd.js("return document.querySelectorAll('#logs .line').length;") > 0)
        self.shot("service")
        log(f"service page shows replicas {sorted(ids)}")
        # From here on the page must update itself: this marker is lost on any reload.
        self.wd.js("window.__noReload = 1;")

        # 4. Scale to 3 from the page, confirmed in the in-page dialog.
        el = self.wd.find("#scale-replicas")
        if not el:
            raise Failure("no #scale-replicas input for the admin")
        self.wd.clear(el)
        self.wd.type(el, "3")
        self.wd.click(self.wd.find("#scale"))
        self.wait("the confirm dialog", 5,
                  lambda: self.wd.js("const d = document.getElementById('confirm'); return !!(d && d.open);"))
        self.shot("scale-confirm")
        self.wd.click(self.wd.find("#confirm-yes"))

        def three_running():
            rs = self.replicas()
            return rs if len(rs) == 3 and all(r["state"] in ("running", "healthy") for r in rs) else None

        rs = self.wait("3 running replicas in the cluster (dash ps)", 60, three_running, interval=0.5)
        want = {r["id"] for r in rs}

        def page_three():
            rows = self.service_row_state() or []
            live = {r["id"] for r in rows if r["state"] in ("running", "healthy")}
            return want <= live

        self.wait("the page's table showing the 3 running replicas", 10, page_three)
        self.no_reload("after scaling")
        self.shot("scaled-to-3")
        log(f"scaled to 3: {sorted(want)}")

        # 5. A replica killed from outside: its restarts cell goes up, within 2 s, no reload.
        victim = sorted(want)[0]
        restarts_before = next(r["restarts"] for r in rs if r["id"] == victim)
        page_before = next(r["restarts"] for r in self.service_row_state() if r["id"] == victim)
        if page_before != restarts_before:
            raise Failure(f"the page shows {page_before} restarts of {victim}, dash ps {restarts_before}")
        pid = host_pid(victim, a.data_dir)
        log(f"killing {victim}: host pid {pid}")
        os.kill(pid, signal.SIGKILL)
        t_kill = time.monotonic()

        def page_restarted():
            r = next((r for r in self.service_row_state() if r["id"] == victim), None)
            return r if r and r["restarts"] is not None and r["restarts"] > restarts_before else None

        t_cluster = None
        seen = None
        while seen is None:
            seen = page_restarted()
            if seen:
                break
            t = time.monotonic()
            if t_cluster is None:
                if t - t_kill > 2.0:
                    # Not on the page yet: fair only if the cluster itself has restarted it.
                    r = next((r for r in self.replicas() if r["id"] == victim), None)
                    if r and r["restarts"] > restarts_before:
                        t_cluster = time.monotonic()
                        log("the cluster restarted it later than 2 s after the kill; the page gets 2 s from now")
                    elif t - t_kill > 30:
                        raise Failure(f"the cluster did not restart {victim} within 30 s of the kill")
            elif t - t_cluster > 2.0:
                self.shot("failed-restart-not-shown")
                raise Failure(f"the cluster restarted {victim} but its page did not show it within 2 s")
            time.sleep(0.05)
        took = time.monotonic() - t_kill
        self.no_reload("after the kill")
        self.shot("replica-restarted")
        log(f"the page showed {victim}'s restart ({restarts_before} -> {seen['restarts']}) {took:.2f} s after the kill")

        # 6. The live logs show a line the replica printed (to its own stdout).
        # The line holds markup: it must show as text, never become an element.
        marker = "portal-marker-" + uuid.uuid4().hex[:12]
        line = f"{marker} <i class=x>not markup</i>"
        target = sorted(want)[-1]
        self.wait(f"{target} running for the marker", 15,
                  lambda: any(r["id"] == target and r["state"] in ("running", "healthy") for r in self.replicas()),
                  interval=0.3)
        self.dash("exec", target, "--", "sh", "-c", f"echo '{line}' > /proc/1/fd/1")
        self.wait(f"the marker line {marker} in #logs", 10,
                  lambda: marker in (self.text("#logs") or ""))
        if line not in self.text("#logs") or self.wd.find("#logs i"):
            raise Failure(f"the log line {line!r} did not show as plain text in #logs")
        lines = self.wd.js("return document.querySelectorAll('#logs > .line').length;")
        if self.wd.js("const l = document.querySelectorAll('#logs > .line'); return l[l.length - 1].textContent;").find(marker) < 0:
            log("(the marker is not the newest line: the loop printed after it)")
        self.no_reload("after the logs")
        self.wd.js("document.getElementById('logs-panel').scrollIntoView();")
        self.shot("logs-marker")
        log(f"the live logs showed {marker} ({lines} lines in #logs)")

        # 7. The other pages render: node, events, routes (each with a screenshot).
        node = next((r["node"] for r in rs if r.get("node")), None)
        if node:
            self.wd.get(f"{self.base}/ui/nodes/{node}")
            self.wait(f"the node page of {node}", 10, lambda: self.wd.find("#capacity table"))
            if not self.wd.find("#drain") or not self.wd.find("#activate"):
                raise Failure("the admin's node page has no #drain / #activate button")
            self.shot("node")
        self.wd.click(self.wd.find("#nav-events"))
        self.wait("the events page's rows", 10,
                  lambda: self.wd.js("return document.querySelectorAll('#events-table tr[data-kind]').length;") > 0)
        self.shot("events")
        self.wd.click(self.wd.find("#nav-routes"))
        self.wait("the routes table", 10, lambda: self.wd.find("#routes-table tbody tr"))
        self.shot("routes")

        # 8. A service that does not exist: a clear message, no half page.
        ghost = "no-such-service-" + uuid.uuid4().hex[:6]
        self.wd.get(f"{self.base}/ui/services/{ghost}")
        msg = self.wait("the not-found message", 10, lambda: self.visible_text("#not-found"))
        if ghost not in msg or "no service" not in msg.lower():
            raise Failure(f"the page of a missing service says {msg!r}")
        if self.wd.find("#replicas") or self.wd.find("#scale"):
            raise Failure("the page of a missing service shows parts of a service page")
        self.shot("service-not-found")
        log(f"missing service: {msg.strip()!r}")
        self.check_page_errors("as admin")

        # 9. A read token: the service page offers no write.
        self.wd.click(self.wd.find("#logout"))
        self.wait("the login page after logging out", 10, lambda: self.wd.find("#token"))
        if self.wd.js("return sessionStorage.getItem('dash.token');"):
            raise Failure("logging out left the token in sessionStorage")
        self.login(a.read_token)
        self.wait("the overview for the read token", 15, lambda: self.wd.find(sel))
        who = self.visible_text("#whoami") or ""
        if "read" not in who:
            raise Failure(f"the header shows {who!r} for the read token")
        self.wd.get(f"{self.base}/ui/services/{svc}")
        self.wait("the service page for the read token", 10,
                  lambda: len(self.service_row_state() or []) >= 1)
        for b in ("#scale", "#scale-replicas", "#rollback", "#remove"):
            if self.wd.find(b):
                raise Failure(f"the read token's service page has {b}")
        self.shot("service-read-only")
        if node:
            self.wd.get(f"{self.base}/ui/nodes/{node}")
            self.wait("the node page for the read token", 10, lambda: self.wd.find("#capacity table"))
            for b in ("#drain", "#activate"):
                if self.wd.find(b):
                    raise Failure(f"the read token's node page has {b}")
            self.shot("node-read-only")
        self.check_page_errors("as read")
        log("the read token sees no scale, rollback, remove, drain or activate button")

        log(f"done; {svc} is left at the 3 replicas the page scaled it to (it had {replicas_before})")

    def login_info(self):
        """GET /v1/login (no token): {"oidc": {...} | null}."""
        try:
            with urllib.request.urlopen(self.base + "/v1/login", timeout=10) as r:
                return json.loads(r.read())
        except (OSError, ValueError) as e:
            raise Failure(f"GET /v1/login: {e}")

    def check_oidc_button(self):
        """The login page shows #oidc-login exactly when GET /v1/login names a provider."""
        oidc = self.login_info().get("oidc")
        known = self.wait("the login page's answer of GET /v1/login (#login-form[data-oidc])", 10,
                          lambda: self.wd.js("const f = document.getElementById('login-form');"
                                             "return f && f.dataset.oidc;"))
        shown = self.visible_text("#oidc-login")
        if oidc:
            if known != "yes" or not shown:
                raise Failure(f"the server has the provider {oidc.get('issuer')} but the login page "
                              f"offers no #oidc-login (data-oidc={known!r})")
            log(f"the login page offers {shown.strip()!r}")
        else:
            if known != "no" or self.wd.find("#oidc-login"):
                raise Failure(f"the server has no OpenID Connect provider but the login page has "
                              f"#oidc-login or data-oidc={known!r}")
            log("no OpenID Connect provider: no #oidc-login on the login page")

    def no_reload(self, when):
        if self.wd.js("return window.__noReload;") != 1:
            raise Failure(f"the page reloaded (window.__noReload gone) {when}")

    def measure(self):
        """The overview loaded afresh (token in sessionStorage): bytes and first render."""
        self.wd.get(self.base + "/ui/")
        self.wait("the overview's first render", 30,
                  lambda: self.wd.js("return window.__dash && window.__dash.firstRender;"))
        time.sleep(0.5)  # let the resource entries of the first load settle
        m = self.wd.js("""
            const size = (e) => Math.max(e.transferSize || 0, e.encodedBodySize || 0);
            const nav = performance.getEntriesByType('navigation')[0];
            const res = performance.getEntriesByType('resource');
            const fcp = performance.getEntriesByType('paint').find((p) => p.name === 'first-contentful-paint');
            return {
              nav: nav ? size(nav) : 0,
              resources: res.map((e) => [e.name, size(e)]),
              rendered: window.__dash.firstRender,
              fcp: fcp ? fcp.startTime : null,
              stream: window.__dash.streamBytes,
              services: document.querySelectorAll('[data-service]').length,
            };""")
        total = m["nav"] + sum(s for _, s in m["resources"])
        log("measure: " + json.dumps(m))
        self.shot("overview-measured")
        print(json.dumps({"overview_bytes": total, "first_render_ms": round(m["rendered"])}), flush=True)


def host_pid(replica, data_dir):
    """The host pid of the replica's container init: from <data-dir>/containers/<id>/pid if
    given, else the process whose cgroup is the replica's and which is pid 1 of its pid
    namespace."""
    if data_dir:
        p = os.path.join(data_dir, "containers", replica, "pid")
        with open(p) as f:
            return int(f.read().strip())
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/cgroup") as f:
                cg = f.read()
            if not any(line.rstrip().endswith("/" + replica) for line in cg.splitlines()):
                continue
            with open(f"/proc/{d}/status") as f:
                nspid = next((l.split()[1:] for l in f if l.startswith("NSpid:")), [])
            if len(nspid) > 1 and nspid[-1] == "1":
                found.append(int(d))
        except (OSError, StopIteration):
            continue
    if len(found) != 1:
        raise Failure(f"cannot find the host pid of {replica}'s container (found {found}); pass --data-dir")
    return found[0]


def start_chromedriver(port, logfile):
    proc = subprocess.Popen(["/usr/bin/chromedriver", f"--port={port}"], stdout=logfile,
                            stderr=subprocess.STDOUT, start_new_session=True)
    end = time.monotonic() + 20
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise Failure(f"chromedriver exited at once (status {proc.returncode}); is port {port} free?")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2) as r:
                if json.loads(r.read()).get("value", {}).get("ready"):
                    return proc
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    raise Failure(f"chromedriver did not get ready on port {port} within 20 s")


def drive(a, make_test):
    """Starts chromedriver on a.chromedriver_port and a headless Chromium session, runs
    make_test(a, wd).run(), and ends both whatever happens. Prints PASS or FAIL: …; returns the
    exit status (0 or 1)."""
    os.makedirs(a.artifacts, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="dash-portal-test-")
    driver = None
    wd = None
    code = 0
    try:
        with open(os.path.join(tmp, "chromedriver.log"), "wb") as cdlog:
            driver = start_chromedriver(a.chromedriver_port, cdlog)
            wd = WebDriver(a.chromedriver_port)
            profile = os.path.join(tmp, "profile")
            os.mkdir(profile)
            wd.start(profile)
            t = make_test(a, wd)
            try:
                t.run()
            except Failure:
                t.shot("failure")
                try:
                    t.collect_console()
                    for e in t.console[-20:]:
                        log(f"console {e.get('level')}: {e.get('message', '')[:300]}")
                except Exception:
                    pass
                raise
        log("PASS")
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr, flush=True)
        code = 1
    except Exception as e:
        print(f"FAIL: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        code = 1
    finally:
        if wd:
            try:
                wd.quit()
            except Exception as e:
                log(f"quitting the WebDriver session: {e}")
        if driver:
            try:
                os.killpg(driver.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                driver.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(driver.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                driver.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    return code


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="the admin API, host:port (plain HTTP)")
    p.add_argument("--dash", required=True, help="the dash CLI binary")
    p.add_argument("--admin-token", required=True)
    p.add_argument("--read-token", required=True)
    p.add_argument("--service", required=True, help="an existing service (a shell loop printing lines)")
    p.add_argument("--artifacts", required=True, help="a dir for the screenshots")
    p.add_argument("--chromedriver-port", type=int, default=9515)
    p.add_argument("--data-dir", help="the node's data dir (finds a container's pid; else via /proc)")
    p.add_argument("--measure", action="store_true",
                   help='print the overview\'s first load: {"overview_bytes":N,"first_render_ms":M}')
    a = p.parse_args()
    sys.exit(drive(a, PortalTest))


if __name__ == "__main__":
    main()
