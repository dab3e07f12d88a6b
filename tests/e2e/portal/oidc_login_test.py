#!/usr/bin/env python3
""""Log in with <provider>" on the web portal (/ui): the OpenID Connect device flow through the
Dash server, in a headless Chromium driven over W3C WebDriver (the helpers of portal_test.py).

    python3 tests/e2e/portal/oidc_login_test.py --addr 127.0.0.1:17397 \
        --approve-url http://127.0.0.1:17793/test/approve --service web \
        --artifacts /tmp/oidc-shots [--chromedriver-port 9516] \
        [--account alice --role deploy] [--read-account bob] [--unmapped-account carol] \
        [--id-ttl 60]

The server runs with --oidc-issuer (the test provider, tests/e2e/oidc/provider.mjs) and maps
the accounts' groups to roles (--oidc-role devs=deploy --oidc-role readers=read: alice deploys,
bob reads; carol's group maps to nothing). --approve-url stands for the person confirming the
code at the provider (GET ?user_code=…&account=…, answering "approved"). The service must
exist (any replicas). Nothing in the cluster is changed.

Checks: the login page offers #oidc-login; it shows the code (#oidc-code) and a link to the
provider (#oidc-link, a new tab, noopener noreferrer); once the code is approved the page is
logged in by itself within 15 s (header "oidc <account>" and its role), keeping the ID token
and the refresh token in sessionStorage; the overview and the service page render (the deploy
role sees #scale); a refused session token is renewed with the refresh token, without a
reload or going back to the login page (with --id-ttl also a token that really expired);
logging out forgets both tokens; a refresh token refused too leads back to the login page,
saying so; Cancel stops the polling (a code approved after it logs
nothing in); an account whose groups map to no role is refused with the server's message; a
read-only account, sent to the login page from a service page, lands back on it and is offered
no scale, rollback or remove; a code that expires unconfirmed and a final error from the
provider are said in #login-error (these two with the page's fetch stubbed), and a non-web
verification link is not made a link. No errors in the browser console.

It stops at the first thing wrong, with `FAIL: …` and exit status 1; PASS and 0 otherwise.
"""

import argparse
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from portal_test import Failure, PortalTest, drive, log  # noqa: E402

# The page's fetch replaced for the paths no real provider gives on demand: an expired code,
# a final error. Installed with the WebDriver (its scripts are not bound by the page's CSP);
# gone at the next page load.
STUB_FETCH = """
const [device, token] = arguments;
const real = window.fetch;
window.__stubbed = {device: 0, token: 0};
window.fetch = (url, opts) => {
  const path = new URL(String(url), location.href).pathname;
  const answer = (status, body) => Promise.resolve(new Response(JSON.stringify(body),
    {status, headers: {'Content-Type': 'application/json'}}));
  if (path === '/v1/login/device') { window.__stubbed.device++; return answer(200, device); }
  if (path === '/v1/login/token') { window.__stubbed.token++; return answer(token[0], token[1]); }
  return real(url, opts);
};
"""


class OidcLoginTest(PortalTest):
    def __init__(self, args, wd):
        super().__init__(args, wd)
        self.issuer = None

    # -- helpers ---------------------------------------------------------------------

    def check_page_errors(self, where):
        # "Not confirmed yet" is a 400 of POST /v1/login/token, asked every interval: expected.
        self.collect_console()
        self.console = [e for e in self.console
                        if not ("/v1/login/token" in e.get("message", "")
                                and "status of 400" in e.get("message", ""))]
        super().check_page_errors(where)

    def storage(self, key):
        return self.wd.js("return sessionStorage.getItem(arguments[0]);", key)

    def approve(self, code, account):
        url = self.a.approve_url + "?" + urllib.parse.urlencode({"user_code": code, "account": account})
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            raise Failure(f"approving {code} as {account}: HTTP {e.code}: {e.read()[:200]!r}")
        except OSError as e:
            raise Failure(f"approving {code} as {account}: {e}")
        if "approved" not in body:
            raise Failure(f"approving {code} as {account}: the provider answered {body[:200]!r}")
        log(f"the provider: {code} approved as {account}")

    def start_oidc(self, shot_name=None):
        """Clicks #oidc-login; the code and the link shown: returns the user code."""
        label = self.wait("the #oidc-login button", 10, lambda: self.visible_text("#oidc-login"))
        host = urllib.parse.urlsplit(self.issuer).netloc
        if host not in label:
            raise Failure(f"#oidc-login reads {label!r}, not naming the provider {host}")
        self.wd.click(self.wd.find("#oidc-login"))
        code = self.wait("the user code in #oidc-code", 10,
                         lambda: (self.visible_text("#oidc-code") or "").strip())
        a = self.wd.js("const a = document.getElementById('oidc-link');"
                       "return a && a.offsetParent !== null && {href: a.href, target: a.target, rel: a.rel};")
        if not a:
            raise Failure("no visible #oidc-link to the provider beside the code")
        if not a["href"].startswith(self.issuer.rstrip("/") + "/"):
            raise Failure(f"#oidc-link goes to {a['href']!r}, not the provider {self.issuer}")
        rel = set(a["rel"].split())
        if a["target"] != "_blank" or not {"noopener", "noreferrer"} <= rel:
            raise Failure(f"#oidc-link has target={a['target']!r} rel={a['rel']!r} "
                          "(want _blank, noopener noreferrer)")
        said = self.visible_text("#oidc-pending") or ""
        if "Confirm this code at your provider" not in said:
            raise Failure(f"the code's panel says {said!r}")
        if not self.wd.find("#oidc-cancel"):
            raise Failure("no #oidc-cancel beside the code")
        if self.storage("dash.token"):
            raise Failure("a token is in sessionStorage before the code was approved")
        if shot_name:
            self.shot(shot_name)
        log(f"the page shows the code {code!r} and the link {a['href']}")
        return code

    def header(self):
        return self.wd.js(
            "const w = document.getElementById('whoami'), r = w && w.querySelector('.role'),"
            " o = w && w.querySelector('.who');"
            "return w && w.offsetParent !== null && r && o ? {who: o.textContent, role: r.textContent} : null;")

    def wait_logged_in(self, account, role, timeout=15):
        want = f"oidc {account}"
        h = self.wait(f"the header to show {want} with the role {role}", timeout,
                      lambda: (lambda h: h if h and h["who"] == want else None)(self.header()))
        if h["role"] != role:
            raise Failure(f"the header shows {want} with the role {h['role']!r}, not {role!r}")
        t = self.storage("dash.token") or ""
        if t.count(".") != 2:
            raise Failure(f"sessionStorage's dash.token is not an ID token (a JWT): {t[:40]!r}")
        if not self.storage("dash.refresh"):
            raise Failure("no refresh token (dash.refresh) kept in sessionStorage beside the ID token")
        log(f"logged in as {h['who']} ({h['role']})")
        return t

    def logout(self):
        self.wd.click(self.wd.find("#logout"))
        self.wait("the login page after logging out", 10, lambda: self.wd.find("#token"))
        for k in ("dash.token", "dash.refresh"):
            if self.storage(k):
                raise Failure(f"logging out left {k} in sessionStorage")

    def token_requests(self):
        return self.wd.js("return performance.getEntriesByType('resource')"
                          ".filter((e) => e.name.endsWith('/v1/login/token')).length;")

    # -- the steps -------------------------------------------------------------------

    def run(self):
        a = self.a
        svc = a.service
        oidc = self.login_info().get("oidc")
        if not oidc or not oidc.get("issuer"):
            raise Failure(f"GET /v1/login names no OpenID Connect provider ({oidc!r}): "
                          "start the server with --oidc-issuer")
        self.issuer = oidc["issuer"]

        # 1. The login page offers the provider; its code and link; approved: logged in.
        self.wd.get(self.base + "/ui/")
        self.wait("the login page at /ui/ (no token yet)", 10, lambda: self.wd.find("#token"))
        self.check_oidc_button()
        self.shot("login-oidc")
        code = self.start_oidc("oidc-code")
        self.approve(code, a.account)
        t0 = time.monotonic()
        first = self.wait_logged_in(a.account, a.role)
        log(f"logged in {time.monotonic() - t0:.1f} s after the approval")
        if self.path() not in ("/ui/", "/ui"):
            raise Failure(f"after the login the page is {self.path()}, not the overview")
        sel = f'[data-service="{svc}"]'
        self.wait(f"the overview's row of {svc}", 15, lambda: self.wd.find(sel))
        self.shot("oidc-logged-in")

        # 2. Its service page renders, with what its role may do.
        self.wd.click(self.wd.find(f'{sel} a[href="/ui/services/{svc}"]'))
        self.wait(f"the page /ui/services/{svc}", 10, lambda: self.path() == f"/ui/services/{svc}")
        self.wait("the replicas table", 10, lambda: len(self.service_row_state() or []) >= 1)
        deployer = a.role in ("deploy", "admin")
        for b in ("#scale", "#scale-replicas", "#rollback", "#remove"):
            if bool(self.wd.find(b)) != deployer:
                raise Failure(f"the {a.role} role's service page {'lacks' if deployer else 'has'} {b}")
        self.shot("oidc-service")
        log(f"the service page renders for {a.account} ({a.role}), its buttons as the role allows")

        # 3. A session token refused (as an expired one is): renewed with the refresh token
        # once, the page carries on (here after a load, the token being read at the start).
        self.wd.js("sessionStorage.setItem('dash.token', 'expired.' + 'x'.repeat(40) + '.x');")
        self.wd.get(f"{self.base}/ui/services/{svc}")
        self.wait("the service page again after the token was refused and renewed", 15,
                  lambda: self.path() == f"/ui/services/{svc}" and len(self.service_row_state() or []) >= 1)
        renewed = self.wait_logged_in(a.account, a.role)
        if renewed == first or renewed.startswith("expired."):
            raise Failure("the refused token was not replaced by a renewed ID token")
        log("a refused token was renewed with the refresh token (no login page)")

        # 4. With --id-ttl: the ID token really expires; the next call renews it, no reload.
        if a.id_ttl:
            self.wd.js("window.__noReload = 1;")
            wait_s = a.id_ttl + 7  # the server allows 5 s of clock skew
            log(f"waiting {wait_s} s for the ID token to expire")
            time.sleep(wait_s)
            self.wd.click(self.wd.find("#nav-events"))
            self.wait("the events page's rows after the ID token expired", 15,
                      lambda: self.wd.js("return document.querySelectorAll('#events-table tr[data-kind]').length;") > 0)
            again = self.wait_logged_in(a.account, a.role)
            if self.path() != "/ui/events":
                raise Failure(f"after the ID token expired the page went to {self.path()}")
            if again == renewed:
                raise Failure("the expired ID token is still the session's token")
            self.no_reload("after the ID token expired")
            self.shot("oidc-renewed")
            log("an expired ID token was renewed in place")
        self.check_page_errors(f"as {a.account}")

        # 5. Log out: both tokens forgotten.
        self.logout()

        # 6. A session whose refresh token is refused too: back to the login page, saying so,
        # both tokens forgotten.
        self.wd.js("sessionStorage.setItem('dash.token', 'expired.' + 'x'.repeat(40) + '.x');"
                   "sessionStorage.setItem('dash.refresh', 'no-such-refresh-token');")
        self.wd.get(f"{self.base}/ui/services/{svc}")
        msg = self.wait("#login-error after the refresh token was refused", 15,
                        lambda: self.path() == "/ui/login" and self.visible_text("#login-error"))
        if "logged out" not in msg or "could not be renewed" not in msg:
            raise Failure(f"a refused refresh token: #login-error says {msg!r}")
        for k in ("dash.token", "dash.refresh"):
            if self.storage(k):
                raise Failure(f"a refused refresh token left {k} in sessionStorage")
        log(f"a refused refresh token: back to the login page: {msg.strip()!r}")

        # 7. Cancel stops the polling: a code approved after it logs nothing in.
        code = self.start_oidc()
        self.wd.click(self.wd.find("#oidc-cancel"))
        self.wait("the #oidc-login button back after Cancel", 5,
                  lambda: self.visible_text("#oidc-login") and not self.wd.find("#oidc-code"))
        self.wd.js("performance.clearResourceTimings();")
        self.approve(code, a.account)
        time.sleep(7)  # more than the provider's interval (5 s)
        if self.token_requests() or self.storage("dash.token") or self.path() != "/ui/login":
            raise Failure("the page went on asking for the token (or logged in) after Cancel")
        log("Cancel stopped the polling")

        # 8. An account whose groups map to no role: refused, with the server's reason.
        if a.unmapped_account:
            code = self.start_oidc()
            self.approve(code, a.unmapped_account)
            msg = self.wait(f"#login-error for {a.unmapped_account}", 15, lambda: self.visible_text("#login-error"))
            if "role" not in msg or self.storage("dash.token"):
                raise Failure(f"{a.unmapped_account} (no mapped group): #login-error says {msg!r}")
            if not self.visible_text("#oidc-login"):
                raise Failure("no #oidc-login to start again after a refused login")
            self.shot("oidc-unmapped-refused")
            log(f"{a.unmapped_account} refused: {msg.strip()!r}")

        # 9. A read-only account, sent to the login page from a service page: back on it,
        # no scale, rollback or remove.
        if a.read_account:
            self.wd.get(f"{self.base}/ui/services/{svc}")
            self.wait("the login page (no token)", 10, lambda: self.path() == "/ui/login")
            code = self.start_oidc()
            self.approve(code, a.read_account)
            self.wait_logged_in(a.read_account, "read")
            self.wait(f"the page /ui/services/{svc} (where the login started)", 10,
                      lambda: self.path() == f"/ui/services/{svc}")
            self.wait("the service page for the read-only account", 10,
                      lambda: len(self.service_row_state() or []) >= 1)
            for b in ("#scale", "#scale-replicas", "#rollback", "#remove"):
                if self.wd.find(b):
                    raise Failure(f"the read-only account's service page has {b}")
            self.shot("oidc-read-only")
            log(f"{a.read_account} (read) sees no scale, rollback or remove button")
            self.check_page_errors(f"as {a.read_account}")
            self.logout()

        # 10. A code that expires unconfirmed; a final error; a verification URI that is no
        # web address (the page's fetch stubbed).
        self.wd.get(self.base + "/ui/login")
        self.wait("the #oidc-login button", 10, lambda: self.visible_text("#oidc-login"))
        device = {"device_code": "stub", "user_code": "STUB-CODE", "verification_uri": "javascript:alert(1)",
                  "verification_uri_complete": None, "interval_s": 1, "expires_in_s": 3}
        self.wd.js(STUB_FETCH, device, [400, {"code": "authorization_pending", "message": "not confirmed yet"}])
        self.wd.click(self.wd.find("#oidc-login"))
        self.wait("the stub's code", 5, lambda: (self.visible_text("#oidc-code") or "").strip() == "STUB-CODE")
        if self.wd.find("#oidc-link") or self.wd.find('a[href^="javascript:"]'):
            raise Failure("a javascript: verification URI was made a link")
        msg = self.wait("#login-error saying the code expired", 10, lambda: self.visible_text("#login-error"))
        again = self.visible_text("#oidc-login") or ""
        if "expired" not in msg or "again" not in again.lower() or self.wd.find("#oidc-code"):
            raise Failure(f"an expired code: #login-error says {msg!r}, #oidc-login {again!r}")
        self.shot("oidc-expired")
        log(f"an expired code: {msg.strip()!r}, the button offers {again.strip()!r}")

        self.wd.get(self.base + "/ui/login")
        self.wait("the #oidc-login button", 10, lambda: self.visible_text("#oidc-login"))
        device["expires_in_s"] = 600
        denied = "the provider refused the login: access_denied (the person said no)"
        self.wd.js(STUB_FETCH, device, [400, {"code": "access_denied", "message": denied}])
        self.wd.click(self.wd.find("#oidc-login"))
        msg = self.wait("#login-error with the provider's refusal", 10, lambda: self.visible_text("#login-error"))
        if denied not in msg or self.wd.find("#oidc-code"):
            raise Failure(f"a final error: #login-error says {msg!r}")
        n = self.wd.js("return window.__stubbed.token;")
        time.sleep(2.5)
        if self.wd.js("return window.__stubbed.token;") != n:
            raise Failure("the page went on asking for the token after a final error")
        self.shot("oidc-denied")
        log(f"a final error: {msg.strip()!r}")
        self.check_page_errors("the failure paths")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="the admin API, host:port (plain HTTP), with --oidc-issuer")
    p.add_argument("--approve-url", required=True,
                   help="the test provider's approval: GET ?user_code=…&account=… answers 'approved'")
    p.add_argument("--service", required=True, help="an existing service")
    p.add_argument("--artifacts", required=True, help="a dir for the screenshots")
    p.add_argument("--chromedriver-port", type=int, default=9515)
    p.add_argument("--account", default="alice", help="the account that logs in first (default alice)")
    p.add_argument("--role", default="deploy", help="its role, as its groups map (default deploy)")
    p.add_argument("--read-account", default="bob", help="an account with the read role (default bob; '' skips)")
    p.add_argument("--unmapped-account", default="carol",
                   help="an account whose groups map to no role (default carol; '' skips)")
    p.add_argument("--id-ttl", type=int, default=0,
                   help="the provider's ID token lifetime in s: wait it out and check the renewal (0: skip)")
    a = p.parse_args()
    sys.exit(drive(a, OidcLoginTest))


if __name__ == "__main__":
    main()
