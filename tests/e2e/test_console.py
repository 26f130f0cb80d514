"""The web console (`ferry server`'s `/console/`), end to end in a real browser.

Headless Chromium (tests/e2e/console_browser.py) on a real server: signing
in through the form, the task page's encrypted storage checked against the
LUKS2 header read independently with cryptsetup, its KMS audit trail and
logs, stopping a task and disabling a key through confirmation dialogs; and
over plain HTTP the session cookie, CSRF, authorization as an IAM user, the
audit trail's pages and the compliance report's downloads
(docs: the console contract, issue 14).

Screenshots for the README are taken on the way (console_browser.py says
where they go). With FERRY_CONSOLE_DEV=1 the server serves the UI files of
the work tree (crates/console/assets) instead of the ones built in.
"""

import csv
import http.client
import io
import json
import os
import re
import subprocess
import time
import urllib.parse
import urllib.request

import botocore.exceptions
import pytest

from conftest import (ROOT, SOURCE_ACCOUNT, SOURCE_TD, create_source_log_group, fresh_server, import_httpd,
                      wait_status)
from console_browser import ConsoleBrowser, missing_browser, wait_until

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SOURCE_FAMILY = "fargate-task-definition"
NAV_ROUTES = ("#/clusters", "#/keys", "#/audit", "#/filesystems", "#/compliance", "#/run")


@pytest.fixture(autouse=True)
def console_assets(monkeypatch):
    """FERRY_CONSOLE_DEV=1: the servers of this module serve the work tree's
    UI files. Never by default: CI tests the assets built into the binary."""
    if os.environ.get("FERRY_CONSOLE_DEV") == "1":
        monkeypatch.setenv("FERRY_CONSOLE_ASSETS_DIR", os.path.join(ROOT, "crates", "console", "assets"))


@pytest.fixture
def console(request):
    """A factory of headless browsers on a server's console; each is closed
    after the test, with its page kept as artifacts if the test failed. A
    page that violated its CSP or threw an uncaught error fails the test."""
    why = missing_browser()
    if why:
        pytest.fail(why, pytrace=False)
    browsers = []
    failed_before = request.session.testsfailed

    def open_browser(srv, width=1280, height=900):
        b = ConsoleBrowser(srv.endpoint, width=width, height=height)
        browsers.append(b)
        return b

    yield open_browser
    errors = []
    for i, b in enumerate(browsers):
        errors += b.script_errors()
        if request.session.testsfailed > failed_before:
            b.save_failure(f"{request.node.name}-{i}")
        b.quit()
    assert not errors, f"the console's page logged errors: {errors}"


# -- HTTP --------------------------------------------------------------------

class Reply:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def error(self):
        """The error code of an error reply (`__type`)."""
        j = self.json()
        return j.get("__type") if isinstance(j, dict) else None

    def __repr__(self):
        return f"<{self.status} {self.body[:300]!r}>"


class ConsoleHttp:
    """The console's API as a browser sees it: a cookie jar of one cookie
    and the session's CSRF token."""

    def __init__(self, endpoint):
        u = urllib.parse.urlsplit(endpoint)
        self.host, self.port = u.hostname, u.port
        self.cookie = None
        self.csrf = None
        self.last_set_cookie = None

    def request(self, method, path, body=None, csrf=None, cookie=None, headers=None):
        """`cookie`: None sends the jar's; "" sends none."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        cookie = self.cookie if cookie is None else cookie
        if cookie:
            h["Cookie"] = f"ferry_console={cookie}"
        if csrf:
            h["X-Ferry-Csrf"] = csrf
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            reply = Reply(r.status, r.headers, r.read().decode("utf-8", "replace"))
        finally:
            conn.close()
        cookies = reply.headers.get_all("Set-Cookie") or []
        self.last_set_cookie = cookies[0] if cookies else None
        return reply

    def sign_in(self, key, secret):
        r = self.request("POST", "/console/api/signin", {"accessKeyId": key, "secretAccessKey": secret}, cookie="")
        if r.status == 200:
            self.cookie = set_cookie_attrs(self.last_set_cookie)["ferry_console"]
            self.csrf = r.json()["csrfToken"]
        return r

    def session(self, cookie=None):
        return self.request("GET", "/console/api/session", cookie=cookie)

    def call(self, service, operation, inp=None, csrf=True, cookie=None):
        """POST /console/api/call; csrf=True sends the session's token."""
        token = self.csrf if csrf is True else csrf
        return self.request("POST", "/console/api/call",
                            {"service": service, "operation": operation, "input": inp or {}},
                            csrf=token, cookie=cookie)

    def get(self, path, cookie=None):
        return self.request("GET", path, cookie=cookie)


def set_cookie_attrs(header):
    """`Set-Cookie: n=v; A; B=c` -> {"n": "v", "a": True, "b": "c"} (attribute
    names lower-cased, the cookie's own name as is)."""
    assert header, "no Set-Cookie"
    parts = [p.strip() for p in header.split(";")]
    name, _, value = parts[0].partition("=")
    out = {name: value}
    for p in parts[1:]:
        k, eq, v = p.partition("=")
        out[k.strip().lower()] = v.strip() if eq else True
    return out


def ok(r, status=200):
    assert r.status == status, f"expected {status}, got {r!r}"
    return r.json()


# -- servers and tasks ---------------------------------------------------------

def prepare_source(srv, tmp_path, cluster="payments"):
    """What running the source document's task needs: the image stand-in,
    the log group, the task definition, and the cluster."""
    import_httpd(srv, tmp_path)
    create_source_log_group(srv)
    srv.aws("ecs", "register-task-definition", "--cli-input-json", f"file://{SOURCE_TD}")
    if cluster != "default":
        srv.aws("ecs", "create-cluster", "--cluster-name", cluster)


def run_source_task(srv, cluster="payments", platform="1.4.0", count=1):
    """The source document's run-task command; waits until every task runs.
    Returns the task ARNs."""
    out = srv.aws("ecs", "run-task", "--cluster", cluster, "--task-definition", f"{SOURCE_FAMILY}:1",
                  "--count", str(count), "--launch-type", "FARGATE", "--platform-version", platform,
                  "--network-configuration", srv.netcfg)
    assert out["failures"] == [], out["failures"]
    arns = [t["taskArn"] for t in out["tasks"]]
    for arn in arns:
        wait_status(srv, arn, "RUNNING", cluster=cluster)
    return arns


def audit_file(srv):
    return srv.audit_records()


def luks_token(srv, task_id):
    """Token 0 of the task's volume, as cryptsetup reads the LUKS2 header."""
    vol = os.path.join(srv.data_dir, "tasks", task_id, "volume.luks")
    out = subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", vol],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["tokens"]["0"]


def signed_in(srv, b, key=None, secret=None):
    """Opens the console in browser `b` and signs in (the administrator by
    default); returns once the clusters view shows its data."""
    if key is None:
        key, secret = srv.credentials()
    b.open()
    b.sign_in(key, secret)
    b.wait_view("clusters")
    return b


def select_option(b, css, want):
    """Selects the option of `select` `css` whose value or text is `want`
    (or, for ARNs, ends with `/want`); fails listing the options."""
    from selenium.webdriver.support.ui import Select

    sel = Select(b.wait_for(css))

    def find():
        for o in sel.options:
            v, t = o.get_attribute("value"), o.text.strip()
            if want in (v, t) or v.endswith("/" + want):
                return o
        return None
    opt = b.wait(lambda d: find(), timeout=20,
                 what=f"option {want!r} in {css} (options: {[o.get_attribute('value') for o in sel.options]})")
    sel.select_by_value(opt.get_attribute("value"))


def contrast(b, css):
    """The WCAG contrast ratio of `css`'s text colour against the first
    opaque background behind it (white if none), from computed styles."""
    return b.js("""
        const parse = s => { const m = /rgba?\\(([^)]+)\\)/.exec(s); if (!m) return null;
          return m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number); };
        const back = el => { for (; el; el = el.parentElement) {
            const c = parse(getComputedStyle(el).backgroundColor);
            if (c && (c.length < 4 || c[3] > 0)) return c; }
          return [255, 255, 255]; };
        const lum = c => { const a = c.slice(0, 3).map(v => { v /= 255;
            return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
          return 0.2126 * a[0] + 0.7152 * a[1] + 0.0722 * a[2]; };
        const el = document.querySelector(arguments[0]);
        if (!el) return 'no element ' + arguments[0];
        const fg = parse(getComputedStyle(el).color);
        if (!fg) return 'unparsed colour ' + getComputedStyle(el).color;
        const l1 = lum(fg), l2 = lum(back(el));
        return (Math.max(l1, l2) + 0.05) / (Math.min(l1, l2) + 0.05);
    """, css)


# -- 1. the task page -----------------------------------------------------------

def test_task_page_shows_encrypted_storage_audit_and_logs_then_stops(ferry_server, tmp_path, console):
    srv = ferry_server
    prepare_source(srv, tmp_path)
    (arn,) = run_source_task(srv)
    task_id = arn.rsplit("/", 1)[1]
    admin_arn = srv.aws("sts", "get-caller-identity")["Arn"]

    b = console(srv)
    b.open()
    b.wait_for("form#signin-form", visible=True)
    assert b.find("input#secret-access-key").get_attribute("type") == "password"
    b.screenshot("signin")
    key, secret = srv.credentials()
    b.sign_in(key, secret)
    view = b.wait_view("clusters")
    assert view.tag_name == "main"
    b.wait(lambda d: b.find("#principal").text.strip() == admin_arn, what=f"#principal {admin_arn}")
    for route in NAV_ROUTES:
        assert b.find_all(f'nav#nav a[href="{route}"]'), f"nav has no link to {route}"
    assert b.find("button#signout").is_displayed()

    row = b.wait_for('table#clusters tr[data-cluster="payments"]')
    assert b.field("running-tasks", row) == "1"
    assert b.field("pending-tasks", row) == "0"
    assert b.field("services", row) == "0"
    assert b.field("cluster-key", row) == "AWS owned key"
    b.screenshot("clusters")

    b.find('a[href="#/clusters/payments"]', row).click()
    b.wait_view("cluster")
    assert b.field("cluster-name") == "payments"
    assert b.field("cluster-status") == "ACTIVE"
    assert b.field("cluster-key") == "AWS owned key"
    task_row = b.wait_for(f'table#tasks tr[data-task="{task_id}"]')
    assert b.field("task-status", task_row) == "RUNNING"
    assert f"{SOURCE_FAMILY}:1" in b.field("task-definition", task_row)
    b.find("a", task_row).click()

    b.wait_view("task")
    assert b.field("task-arn") == arn
    assert b.field("last-status") == "RUNNING"
    assert b.field("desired-status") == "RUNNING"
    assert b.field("platform-version") == "1.4.0"
    assert b.field("launch-type") == "FARGATE"
    assert b.field("cpu") == "256" and b.field("memory") == "512"
    assert f"{SOURCE_FAMILY}:1" in b.field("task-definition")
    assert b.field("storage-size") == "20 GiB"
    assert b.field("storage-encrypted") == "yes"
    assert b.field("storage-cipher") == "aes-xts-plain64"
    assert b.field("storage-key-bits") == "512"
    # The key ARN the page shows is the one in the volume's own header.
    token = luks_token(srv, task_id)
    assert token["type"] == "ferry-kms"
    platform_key = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]
    assert token["keyArn"] == platform_key
    assert b.field("storage-key-arn") == token["keyArn"]
    assert b.field("token-type") == "ferry-kms"
    assert b.field("token-key-arn") == token["keyArn"]
    assert b.field("token-wrapped-data-key") == token["wrappedDataKey"]
    assert json.loads(b.field("token-encryption-context")) == token["encryptionContext"]
    with open(os.path.join(srv.data_dir, "tasks", task_id, "grant.json")) as f:
        assert b.field("storage-grant-id") == json.load(f)["grantId"]
    container = b.find('table#containers tr[data-container="sample-fargate-app"]')
    assert b.field("container-status", container) == "RUNNING"

    # Its KMS trail: every record the audit file has about this task.
    names = {e["eventName"] for e in audit_file(srv) if arn in json.dumps(e.get("requestParameters"))}
    assert {"GenerateDataKeyWithoutPlaintext", "CreateGrant", "Decrypt"} <= names, names
    b.wait(lambda d: names <= set(b.rows("table#task-audit", "data-event-name")),
           what=f"task audit rows {sorted(names)}")

    # Its logs, as CloudWatch Logs has them.
    stream = f"ecs/sample-fargate-app/{task_id}"
    lines = wait_until(lambda: [e["message"] for e in srv.aws(
        "logs", "get-log-events", "--log-group-name", "/ecs/fargate-task-definition",
        "--log-stream-name", stream, "--start-from-head")["events"]], what="the task's first log line")
    b.wait(lambda d: all(any(line in li.text for li in b.find_all("ol#task-logs li")) for line in lines),
           what=f"log lines {lines} in ol#task-logs")
    b.screenshot("task", full_page=True)

    # Stopping asks first, naming the task; Cancel changes nothing.
    b.click("button#stop-task")
    assert arn in b.confirm(ok=False)
    time.sleep(1)
    t = srv.aws("ecs", "describe-tasks", "--cluster", "payments", "--tasks", arn)["tasks"][0]
    assert t["desiredStatus"] == "RUNNING"
    b.click("button#stop-task")
    assert arn in b.confirm(ok=True)
    b.wait_field("last-status", "STOPPED", timeout=120)
    t = srv.aws("ecs", "describe-tasks", "--cluster", "payments", "--tasks", arn)["tasks"][0]
    assert t["lastStatus"] == "STOPPED" and t["stopCode"] == "UserInitiated", t
    stop = b.find_all("button#stop-task")
    assert not stop or not stop[0].is_displayed() or not stop[0].is_enabled(), "stop-task still offered"
    assert b.field("stop-code") == "UserInitiated"


def test_run_form_starts_a_task_whose_logs_stream_live(ferry_server, tmp_path, console):
    srv = ferry_server
    import_httpd(srv, tmp_path)
    srv.aws("ecs", "create-cluster", "--cluster-name", "batch")
    doc = {"family": "ticker", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
           "cpu": "256", "memory": "512",
           "containerDefinitions": [{
               "name": "ticker", "image": "httpd:2.4", "stopTimeout": 2, "entryPoint": ["sh", "-c"],
               "command": ["i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"],
               "logConfiguration": {"logDriver": "awslogs", "options": {
                   "awslogs-group": "/console/ticker", "awslogs-region": "us-east-1",
                   "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}}]}
    p = tmp_path / "ticker.json"
    p.write_text(json.dumps(doc))
    td_arn = srv.aws("ecs", "register-task-definition", "--cli-input-json",
                     f"file://{p}")["taskDefinition"]["taskDefinitionArn"]
    subnet, group = srv.default_network()

    b = signed_in(srv, console(srv))
    b.go("#/run")
    b.wait_view("run")
    b.wait_for("form#run-task")
    select_option(b, "select#run-cluster", "batch")
    select_option(b, "select#run-task-definition", td_arn)
    select_option(b, "select#run-platform-version", "1.4.0")
    b.fill("input#run-count", "1")
    select_option(b, "select#run-subnet", subnet)
    select_option(b, "select#run-security-group", group)
    b.click("button#run-submit")
    # RunTask is an action: when the UI asks first, confirm.
    b.wait(lambda d: b.find_all('main#view[data-view="task"]') or
           b.find("dialog#confirm").get_attribute("open") is not None, timeout=30,
           what="the task view or a confirmation")
    if not b.find_all('main#view[data-view="task"]'):
        b.confirm(ok=True)
    b.wait_view("task", timeout=60)
    arn = b.wait(lambda d: b.field("task-arn") or None, what="task-arn")
    assert re.fullmatch(rf"arn:aws:ecs:us-east-1:{SOURCE_ACCOUNT}:task/batch/[0-9a-f]{{32}}", arn), arn
    t = srv.aws("ecs", "describe-tasks", "--cluster", "batch", "--tasks", arn)["tasks"][0]
    assert t["taskDefinitionArn"] == td_arn and t["platformVersion"] == "1.4.0", t
    assert len(srv.aws("ecs", "list-tasks", "--cluster", "batch")["taskArns"]) == 1

    # The page follows the task without a reload: status, then log lines.
    b.js("window.__ferryNoReload = true;")
    b.wait_field("last-status", "RUNNING", timeout=120)
    b.wait(lambda d: any(li.text.strip().startswith("tick-") for li in b.find_all("ol#task-logs li")),
           timeout=60, what="a tick- line in ol#task-logs")
    first = len(b.find_all("ol#task-logs li"))
    b.wait(lambda d: len(b.find_all("ol#task-logs li")) >= first + 2, timeout=30,
           what=f"more than {first} log lines (live)")
    assert b.js("return window.__ferryNoReload === true;"), "the task page reloaded itself"
    ticks = [li.text.strip() for li in b.find_all("ol#task-logs li") if "tick-" in li.text]
    numbers = [int(re.search(r"tick-(\d+)", x).group(1)) for x in ticks]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), f"log lines out of order: {ticks}"

    srv.aws("ecs", "stop-task", "--cluster", "batch", "--task", arn)
    b.wait_field("last-status", "STOPPED", timeout=120)


# -- 2. sign-in refusals ----------------------------------------------------------

def test_wrong_credentials_are_refused_without_a_session(ferry_server, console):
    srv = ferry_server
    key, secret = srv.credentials()
    b = console(srv)
    b.open()
    wrong_secret = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    for k, s in ((key, wrong_secret), ("AKIAFERRYNOSUCHKEY00", secret)):
        b.sign_in(k, s)
        err = b.wait_for("#signin-error", visible=True)
        b.wait(lambda d: err.text.strip(), what="#signin-error text")
        assert err.get_attribute("role") == "alert"
        assert b.cookie() is None, "a refused sign-in set the session cookie"
        assert b.find("form#signin-form").is_displayed()
        assert not [n for n in b.find_all("nav#nav") if n.is_displayed()], "nav shown after a refusal"

        h = ConsoleHttp(srv.endpoint)
        r = h.sign_in(k, s)
        assert r.status == 401 and r.error == "UnrecognizedClientException", r
        assert "message" in r.json()
        assert h.last_set_cookie is None, h.last_set_cookie
        r = h.session()
        assert r.status == 401 and r.error == "UnrecognizedClientException", r
        b.open()  # a fresh form for the next try

    # The right key after the refusals works (nothing was locked or left behind).
    b.sign_in(key, secret)
    b.wait_view("clusters")
    assert b.cookie()


# -- 3. the session: cookie, CSRF, sign-out; the page's headers ----------------

def test_session_cookie_csrf_and_signout(ferry_server, tmp_path):
    srv = ferry_server
    prepare_source(srv, tmp_path, cluster="default")
    (arn,) = run_source_task(srv, cluster="default")
    key, secret = srv.credentials()
    h = ConsoleHttp(srv.endpoint)
    r = h.sign_in(key, secret)
    me = ok(r)
    assert me["principal"] == srv.aws("sts", "get-caller-identity")["Arn"]
    assert me["accountId"] == SOURCE_ACCOUNT and me["region"] == srv.region
    assert len(me["csrfToken"]) >= 16
    assert "no-store" in (r.headers.get("Cache-Control") or "")
    c = set_cookie_attrs(h.last_set_cookie)
    assert len(c["ferry_console"]) >= 16, c
    assert c.get("httponly") is True, h.last_set_cookie
    assert str(c.get("samesite")).lower() == "strict", h.last_set_cookie
    assert c.get("path") == "/console", h.last_set_cookie
    assert c.get("max-age") == "43200", h.last_set_cookie
    # Two sign-ins are two sessions.
    other = ConsoleHttp(srv.endpoint)
    ok(other.sign_in(key, secret))
    assert other.cookie != h.cookie and other.csrf != h.csrf

    s = ok(h.session())
    assert s["csrfToken"] == h.csrf and s["principal"] == me["principal"]
    assert h.session(cookie="x" * 43).status == 401

    stop = {"cluster": "default", "task": arn, "reason": "console csrf test"}
    r = h.call("ecs", "StopTask", stop, csrf=None)
    assert r.status == 403 and r.error == "InvalidCsrfTokenException", r
    r = h.call("ecs", "StopTask", stop, csrf="0" * len(h.csrf))
    assert r.status == 403 and r.error == "InvalidCsrfTokenException", r
    r = h.call("ecs", "StopTask", stop, csrf=other.csrf)  # another session's token
    assert r.status == 403 and r.error == "InvalidCsrfTokenException", r
    r = h.call("ecs", "StopTask", stop, cookie="")  # no session: 401 before the token is looked at
    assert r.status == 401 and r.error == "UnrecognizedClientException", r
    time.sleep(0.5)
    t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
    assert t["lastStatus"] == "RUNNING" and t["desiredStatus"] == "RUNNING", t

    r = h.call("ecs", "StopTask", stop)
    assert ok(r)["task"]["taskArn"] == arn
    t, _ = wait_status(srv, arn, "STOPPED")
    assert t["stopCode"] == "UserInitiated" and t["stoppedReason"] == "console csrf test"

    # Sign-out needs the token too, and ends the session for good.
    r = h.request("POST", "/console/api/signout")
    assert r.status == 403 and r.error == "InvalidCsrfTokenException", r
    ok(h.session())
    r = h.request("POST", "/console/api/signout", csrf=h.csrf)
    assert r.status == 204, r
    c = set_cookie_attrs(h.last_set_cookie)
    assert c["ferry_console"] == "" and c.get("max-age") == "0", h.last_set_cookie
    r = h.session()
    assert r.status == 401 and r.error == "UnrecognizedClientException", r
    r = h.call("ecs", "ListClusters")
    assert r.status == 401 and r.error == "UnrecognizedClientException", r
    ok(other.session())  # the other session lives on


def test_pages_headers_redirect_and_allow_list(ferry_server):
    srv = ferry_server
    h = ConsoleHttp(srv.endpoint)
    r = h.get("/console")
    assert r.status == 308 and r.headers.get("Location") in ("/console/", f"{srv.endpoint}/console/"), r
    pages = {"/console/": "text/html", "/console/assets/app.js": "javascript",
             "/console/assets/app.css": "text/css"}
    bodies = {}
    for path, ctype in pages.items():
        r = h.get(path)
        assert r.status == 200, (path, r)
        assert ctype in r.headers.get("Content-Type", ""), (path, r.headers.get("Content-Type"))
        assert r.headers.get("Content-Security-Policy") == CSP, (path, r.headers.get("Content-Security-Policy"))
        assert r.headers.get("X-Content-Type-Options") == "nosniff", path
        assert r.headers.get("Referrer-Policy") == "no-referrer", path
        assert r.headers.get("X-Frame-Options") == "DENY", path
        bodies[path] = r.body
    html = bodies["/console/"]
    # CSP forbids inline code: every script has a src, no inline styles or handlers.
    for tag in re.findall(r"<script\b[^>]*>", html, re.I):
        assert re.search(r"\bsrc=", tag), f"inline script: {tag}"
    assert not re.search(r"<style\b", html, re.I), "inline <style>"
    assert not re.search(r"\sstyle\s*=", html, re.I), "style= attribute"
    assert not re.search(r"\son[a-z]+\s*=", html, re.I), "inline event handler"
    assert "/console/assets/app.js" in html or "assets/app.js" in html
    # No external assets.
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html, re.I), "external asset"

    r = h.session()
    assert r.status == 401 and r.error == "UnrecognizedClientException", r
    assert r.headers.get("Content-Security-Policy") == CSP and "no-store" in r.headers.get("Cache-Control", "")
    key, secret = srv.credentials()
    ok(h.sign_in(key, secret))
    assert ok(h.call("ecs", "ListClusters"))["clusterArns"]
    for service, op, inp in (("iam", "ListUsers", {}), ("ecs", "DeleteCluster", {"cluster": "default"}),
                             ("kms", "ScheduleKeyDeletion", {"KeyId": "alias/aws/ecs-ephemeral"}),
                             ("ecs", "UpdateService", {"cluster": "default", "service": "s", "desiredCount": 0}),
                             ("logs", "DeleteLogGroup", {"logGroupName": "x"})):
        r = h.call(service, op, inp)
        assert r.status == 400 and r.error == "UnsupportedOperationException", (service, op, r)
    assert srv.aws("ecs", "describe-clusters", "--clusters", "default")["clusters"][0]["status"] == "ACTIVE"
    subnets = ok(h.call("ec2", "DescribeSubnets"))["Subnets"]
    subnet, group = srv.default_network()
    assert subnet in [s["SubnetId"] for s in subnets]
    assert {"SubnetId", "VpcId", "CidrBlock", "AvailabilityZone", "DefaultForAz"} <= set(subnets[0])
    groups = ok(h.call("ec2", "DescribeSecurityGroups"))["SecurityGroups"]
    assert group in [g["GroupId"] for g in groups]
    r = h.get("/console/api/task?cluster=default&task=0123456789abcdef0123456789abcdef")
    assert r.status == 404 and r.error == "ResourceNotFoundException", r


# -- 4. authorization ---------------------------------------------------------------

def make_user(srv, name, actions):
    srv.aws("iam", "create-user", "--user-name", name)
    srv.aws("iam", "put-user-policy", "--user-name", name, "--policy-name", "console",
            "--policy-document", json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
    k = srv.aws("iam", "create-access-key", "--user-name", name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


def test_iam_user_sees_only_what_its_policy_allows(ferry_server, tmp_path, console):
    srv = ferry_server
    prepare_source(srv, tmp_path, cluster="default")
    (arn,) = run_source_task(srv, cluster="default")
    task_id = arn.rsplit("/", 1)[1]
    vkey, vsecret = make_user(srv, "viewer", ["ecs:List*", "ecs:Describe*"])

    viewer = ConsoleHttp(srv.endpoint)
    me = ok(viewer.sign_in(vkey, vsecret))
    assert me["principal"] == f"arn:aws:iam::{SOURCE_ACCOUNT}:user/viewer"
    clusters = ok(viewer.call("ecs", "ListClusters"))["clusterArns"]
    assert any(c.endswith(":cluster/default") for c in clusters), clusters
    assert ok(viewer.call("ecs", "DescribeTasks", {"cluster": "default", "tasks": [arn]}))["tasks"][0]["taskArn"] == arn
    task = ok(viewer.get(f"/console/api/task?cluster=default&task={task_id}"))
    assert task["task"]["taskArn"] == arn and task["storage"]["encrypted"] is True

    r = viewer.call("ecs", "StopTask", {"cluster": "default", "task": arn})
    assert r.error == "AccessDeniedException" and 400 <= r.status < 500, r
    r = viewer.call("kms", "ListKeys")
    assert r.error == "AccessDeniedException" and 400 <= r.status < 500, r
    r = viewer.get("/console/api/audit")
    assert r.status == 400 and r.error == "AccessDeniedException", r
    t = srv.aws("ecs", "describe-tasks", "--tasks", arn)["tasks"][0]
    assert t["desiredStatus"] == "RUNNING", t

    # In the browser: the viewer signs in and sees the cluster and its task.
    b = signed_in(srv, console(srv), vkey, vsecret)
    b.wait(lambda d: b.find("#principal").text.strip() == me["principal"], what="#principal viewer")
    row = b.wait_for('table#clusters tr[data-cluster="default"]')
    assert b.field("running-tasks", row) == "1"

    # cloudtrail:LookupEvents is what reading the audit trail takes.
    akey, asecret = make_user(srv, "auditor", ["cloudtrail:LookupEvents"])
    auditor = ConsoleHttp(srv.endpoint)
    ok(auditor.sign_in(akey, asecret))
    assert ok(auditor.get("/console/api/audit?limit=5"))["records"]

    admin = ConsoleHttp(srv.endpoint)
    ok(admin.sign_in(*srv.credentials()))
    page = ok(admin.get("/console/api/audit?limit=5"))
    assert len(page["records"]) == 5 and isinstance(page["head"], int)
    assert ok(admin.call("ecs", "StopTask", {"cluster": "default", "task": arn}))["task"]["taskArn"] == arn
    wait_status(srv, arn, "STOPPED")

    # A deactivated key's sessions end.
    srv.aws("iam", "update-access-key", "--user-name", "viewer", "--access-key-id", vkey, "--status", "Inactive")
    r = viewer.session()
    assert r.status == 401 and r.error == "UnrecognizedClientException", r
    r = viewer.sign_in(vkey, vsecret)
    assert r.status == 401, r


# -- 5. the audit view ----------------------------------------------------------------

def test_audit_view_filters_pages_and_follows(ferry_server, console):
    srv = ferry_server
    key = srv.aws("kms", "create-key", "--description", "console audit")["KeyMetadata"]
    kms = srv.client("kms")
    for i in range(70):
        kms.encrypt(KeyId=key["KeyId"], Plaintext=f"secret {i}".encode())
    with pytest.raises(botocore.exceptions.ClientError) as garbage:
        kms.decrypt(CiphertextBlob=b"\x01" * 64)
    garbage_code = garbage.value.response["Error"]["Code"]
    trail = audit_file(srv)
    assert len(trail) > 60
    errors = [e for e in trail if e.get("errorCode")]
    assert any(e["eventName"] == "Decrypt" for e in errors), errors

    h = ConsoleHttp(srv.endpoint)
    ok(h.sign_in(*srv.credentials()))
    page1 = ok(h.get("/console/api/audit"))
    assert len(page1["records"]) == 50 and page1["next"] is not None
    assert page1["records"][0]["eventName"] == trail[-1]["eventName"]
    page2 = ok(h.get(f"/console/api/audit?before={page1['next']}"))
    assert page2["records"] and len(page1["records"]) + len(page2["records"]) == min(100, len(trail))
    assert ok(h.get(f"/console/api/audit?after={page1['head']}"))["records"] == []
    r = h.get("/console/api/audit?limit=501")
    assert r.status == 400, r

    b = signed_in(srv, console(srv))
    b.go("#/audit")
    b.wait_view("audit")
    b.wait(lambda d: len(b.rows("table#audit", "data-event-name")) == 50, what="50 audit rows")
    assert b.rows("table#audit", "data-event-name") == [e["eventName"] for e in page1["records"]]
    top = b.find("table#audit tr[data-event-name]")
    assert b.field("event-name", top) == page1["records"][0]["eventName"]
    assert b.field("event-time", top)
    b.screenshot("audit")

    # Older pages on demand.
    b.click("button#audit-more")
    want = [e["eventName"] for e in page1["records"] + page2["records"]]
    b.wait(lambda d: b.rows("table#audit", "data-event-name") == want, what=f"{len(want)} rows after audit-more")

    def apply(event="", errors=False, key_id="", principal="", to=""):
        b.fill("input#audit-event-name", event)
        b.fill("input#audit-key", key_id)
        b.fill("input#audit-principal", principal)
        b.js("const e = document.querySelector('input#audit-to'); e.value = arguments[0];"
             "e.dispatchEvent(new Event('input', {bubbles: true}));"
             "e.dispatchEvent(new Event('change', {bubbles: true}));", to)
        box = b.find("input#audit-errors-only")
        if box.is_selected() != errors:
            box.click()
        b.click("button#audit-apply")

    def settled(pred, what):
        """Rows once the view is ready and `pred(rows)` holds."""
        def cond(d):
            if not b.find_all('main#view[data-view="audit"][data-ready="true"]'):
                return None
            rows = b.find_all("table#audit tr[data-event-name]")
            # A one-tuple: an empty list of rows is a result too.
            return (rows,) if pred(rows) else None
        return b.wait(cond, what=what)[0]

    # Errors only: exactly the failed calls of the trail.
    apply(errors=True)
    rows = settled(lambda rs: len(rs) == len(errors), f"{len(errors)} error rows")
    assert all(b.field("error-code", r) for r in rows)
    assert garbage_code in [b.field("error-code", r) for r in rows]
    # One operation.
    apply(event="Encrypt")
    rows = settled(lambda rs: len(rs) == 50 and all(r.get_attribute("data-event-name") == "Encrypt" for r in rs),
                   "50 Encrypt rows")
    assert b.find("button#audit-more").is_displayed()
    # One key: every row names it.
    apply(key_id=key["KeyId"])
    rows = settled(lambda rs: rs and all(b.field("key-arn", r) == key["Arn"] for r in rs), "rows of the key")
    # A principal nobody is, and a time range before any record: nothing.
    apply(principal="no-such-principal-anywhere")
    settled(lambda rs: len(rs) == 0, "no rows for an unknown principal")
    more = b.find_all("button#audit-more")
    assert not more or not more[0].is_displayed(), "audit-more shown with no older page"

    # Unfiltered again, the view follows the trail: a new record shows at the top.
    apply()
    settled(lambda rs: len(rs) == 50, "50 rows unfiltered")
    kms.generate_data_key(KeyId=key["KeyId"], KeySpec="AES_256")
    b.wait(lambda d: b.rows("table#audit", "data-event-name")[:1] == ["GenerateDataKey"], timeout=20,
           what="the new GenerateDataKey record at the top (live)")
    top = b.find("table#audit tr[data-event-name]")
    assert b.field("key-arn", top) == key["Arn"]
    assert b.field("principal", top), "the record names no principal"

    # Time bounds, as seconds since the epoch or ISO-8601; in the view, a
    # datetime-local value read as UTC.
    assert ok(h.get("/console/api/audit?to=946684800"))["records"] == []
    assert ok(h.get("/console/api/audit?to=2000-01-01T00:00:00Z"))["records"] == []
    assert ok(h.get(f"/console/api/audit?from={int(time.time()) + 3600}"))["records"] == []
    assert len(ok(h.get("/console/api/audit?from=946684800&limit=5"))["records"]) == 5
    apply(to="2000-01-01T00:00")
    settled(lambda rs: len(rs) == 0, "no rows before 2000")


# -- 6. compliance ------------------------------------------------------------------------

def test_compliance_counts_and_downloads(ferry_server, tmp_path, console):
    srv = ferry_server
    prepare_source(srv, tmp_path)
    encrypted = run_source_task(srv, count=2)
    (plain,) = run_source_task(srv, platform="1.3.0")
    running = set(encrypted) | {plain}
    assert set(srv.aws("ecs", "list-tasks", "--cluster", "payments")["taskArns"]) == running
    platform_key = srv.aws("kms", "describe-key", "--key-id", "alias/aws/ecs-ephemeral")["KeyMetadata"]["Arn"]

    h = ConsoleHttp(srv.endpoint)
    ok(h.sign_in(*srv.credentials()))
    rep = ok(h.get("/console/api/compliance"))
    assert rep["requireEncryptedStorage"] is False
    assert (rep["runningTasks"], rep["encryptedTasks"], rep["unencryptedTasks"], rep["tasksOnPlatform130"]) \
        == (3, 2, 1, 1), rep
    assert {t["taskArn"] for t in rep["tasks"]} == running
    assert {k["keyArn"]: k["tasks"] for k in rep["keys"]} == {platform_key: 2}, rep["keys"]
    by_arn = {t["taskArn"]: t for t in rep["tasks"]}
    assert by_arn[plain]["encrypted"] is False and by_arn[plain]["platformVersion"] == "1.3.0"
    assert all(by_arn[a]["encrypted"] and by_arn[a]["keyArn"] == platform_key for a in encrypted)

    b = signed_in(srv, console(srv))
    b.go("#/compliance")
    b.wait_view("compliance")
    assert b.field("running-tasks") == "3"
    assert b.field("encrypted-tasks") == "2"
    assert b.field("unencrypted-tasks") == "1"
    assert b.field("tasks-on-130") == "1"
    assert b.field("require-encrypted-storage") == "off"
    krow = b.find(f'table#compliance-keys tr[data-key-arn="{platform_key}"]')
    assert b.field("key-tasks", krow) == "2"
    assert len(b.find_all("table#compliance-tasks tbody tr")) == 3
    csv_href = b.find("a#compliance-csv").get_dom_attribute("href")
    json_href = b.find("a#compliance-json").get_dom_attribute("href")
    assert csv_href == "/console/api/compliance?format=csv", csv_href
    assert json_href == "/console/api/compliance?format=json", json_href
    b.screenshot("compliance")

    # The downloads, fetched as the browser would with its session cookie.
    cookie = b.cookie()
    assert cookie, "no session cookie in the browser"

    def fetch(href):
        req = urllib.request.Request(srv.endpoint + href, headers={"Cookie": f"ferry_console={cookie}"})
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=60) as r:
            return r.status, r.headers, r.read().decode()
    status, headers, body = fetch(csv_href)
    assert status == 200 and headers.get_content_type() == "text/csv", headers
    assert 'attachment' in headers.get("Content-Disposition", "") and \
        'filename="ferry-compliance.csv"' in headers.get("Content-Disposition", ""), headers
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["taskArn", "clusterArn", "taskDefinitionArn", "platformVersion", "encrypted", "keyArn"]
    assert sorted(r[0] for r in rows[1:]) == sorted(running), rows
    status, headers, body = fetch(json_href)
    assert status == 200 and 'filename="ferry-compliance.json"' in headers.get("Content-Disposition", ""), headers
    doc = json.loads(body)
    assert doc["runningTasks"] == 3 and {t["taskArn"] for t in doc["tasks"]} == running
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", doc["generatedAt"]), doc["generatedAt"]

    # A stopped task leaves the report.
    srv.aws("ecs", "stop-task", "--cluster", "payments", "--task", plain)
    wait_status(srv, plain, "STOPPED", cluster="payments")
    rep = ok(h.get("/console/api/compliance"))
    assert (rep["runningTasks"], rep["unencryptedTasks"], rep["tasksOnPlatform130"]) == (2, 0, 0), rep


@pytest.fixture
def strict_server():
    """A server started with --require-encrypted-storage."""
    yield from fresh_server(["--require-encrypted-storage"])


def test_compliance_shows_required_encryption(strict_server, console):
    srv = strict_server
    h = ConsoleHttp(srv.endpoint)
    ok(h.sign_in(*srv.credentials()))
    rep = ok(h.get("/console/api/compliance"))
    assert rep["requireEncryptedStorage"] is True and rep["runningTasks"] == 0, rep
    b = signed_in(srv, console(srv))
    b.go("#/compliance")
    b.wait_view("compliance")
    assert b.field("require-encrypted-storage") == "on"
    assert b.field("running-tasks") == "0"


# -- 7. keys ----------------------------------------------------------------------------------

def fargate_key_policy(account):
    """A key policy that lets Fargate wrap task volumes' keys (as
    tests/e2e/test_ecs.py's)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{account}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "fargate", "Effect": "Allow", "Principal": {"Service": "fargate.amazonaws.com"},
         "Action": ["kms:DescribeKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:CreateGrant",
                    "kms:RetireGrant"], "Resource": "*"}]})


def test_keys_view_disables_and_enables_a_customer_key(ferry_server, console):
    srv = ferry_server
    key = srv.aws("kms", "create-key", "--description", "console key",
                  "--policy", fargate_key_policy(SOURCE_ACCOUNT))["KeyMetadata"]
    kid, karn = key["KeyId"], key["Arn"]
    srv.aws("kms", "create-alias", "--alias-name", "alias/console-test", "--target-key-id", kid)
    grant = srv.aws("kms", "create-grant", "--key-id", kid, "--grantee-principal",
                    f"arn:aws:iam::{SOURCE_ACCOUNT}:root", "--operations", "Decrypt")["GrantId"]
    srv.aws("ecs", "create-cluster", "--cluster-name", "vault", "--configuration",
            f"managedStorageConfiguration={{fargateEphemeralStorageKmsKeyId={karn}}}")

    b = signed_in(srv, console(srv))
    row = b.wait_for('table#clusters tr[data-cluster="vault"]')
    assert b.field("cluster-key", row) == karn
    b.go("#/keys")
    b.wait_view("keys")
    row = b.wait_for(f'table#keys tr[data-key="{kid}"]')
    assert b.field("key-state", row) == "Enabled"
    assert b.field("key-manager", row) == "CUSTOMER"
    assert b.field("key-alias", row) == "alias/console-test"
    b.screenshot("keys")

    b.go(f"#/keys/{kid}")
    b.wait_view("key")
    assert b.field("key-id") == kid and b.field("key-arn") == karn
    assert b.field("key-state") == "Enabled"
    assert b.field("key-rotation") == "disabled"
    assert b.field("key-spec") == "SYMMETRIC_DEFAULT" and b.field("key-usage") == "ENCRYPT_DECRYPT"
    assert "alias/console-test" in b.find("ul#aliases").text
    assert b.find_all(f'table#grants tr[data-grant="{grant}"]'), "the grant is not listed"
    policy = srv.aws("kms", "get-key-policy", "--key-id", kid, "--policy-name", "default")["Policy"]
    assert json.loads(b.find("pre#key-policy").text) == json.loads(policy)
    assert b.find("button#disable-key").is_enabled() and not b.find("button#enable-key").is_enabled()

    def state():
        return srv.aws("kms", "describe-key", "--key-id", kid)["KeyMetadata"]["KeyState"]

    b.click("button#disable-key")
    msg = b.confirm(ok=False)
    assert karn in msg and "vault" in msg, msg
    assert state() == "Enabled"
    b.click("button#disable-key")
    assert karn in b.confirm(ok=True)
    b.wait_field("key-state", "Disabled")
    assert state() == "Disabled"
    b.wait(lambda d: b.find("button#enable-key").is_enabled() and not b.find("button#disable-key").is_enabled(),
           what="enable-key the only one enabled")

    b.click("button#enable-key")
    assert karn in b.confirm(ok=True)
    b.wait_field("key-state", "Enabled")
    assert state() == "Enabled"


# -- 8. phone width, keyboard, contrast -------------------------------------------------------

def test_phone_width_keyboard_and_contrast(ferry_server, tmp_path, console):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    srv = ferry_server
    prepare_source(srv, tmp_path)
    (arn,) = run_source_task(srv)
    task_id = arn.rsplit("/", 1)[1]

    b = console(srv, width=375, height=812)
    b.set_viewport(375, 812, mobile=True)
    b.open()
    b.wait_for("form#signin-form", visible=True)
    assert b.js("return document.documentElement.scrollWidth") <= 376
    # Keyboard: Tab from the top of the page reaches the access key field.
    b.js("if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0);")
    reached = []
    for _ in range(15):
        ActionChains(b.driver).send_keys(Keys.TAB).perform()
        reached.append(b.js("return document.activeElement && document.activeElement.id"))
        if reached[-1] == "access-key-id":
            break
    assert reached[-1] == "access-key-id", f"Tab went through {reached}"
    ratio = contrast(b, "body")
    assert isinstance(ratio, float) and ratio >= 4.5, f"sign-in page body text contrast {ratio}"
    ratio = contrast(b, "label") if b.find_all("label") else 21.0
    assert isinstance(ratio, float) and ratio >= 4.5, f"sign-in label contrast {ratio}"

    b.sign_in(*srv.credentials())
    b.wait_view("clusters")
    b.go(f"#/clusters/payments/tasks/{task_id}")
    b.wait_view("task")
    b.wait_field("task-arn", arn)
    b.wait_field("storage-encrypted", "yes")
    b.wait(lambda d: b.find_all("ol#task-logs li"), timeout=30, what="log lines")
    width = b.js("return document.documentElement.scrollWidth")
    assert width <= 376, f"the task page is {width}px wide at 375px: it scrolls sideways"
    for css in ("main#view", '[data-field="task-arn"]'):
        ratio = contrast(b, css)
        assert isinstance(ratio, float) and ratio >= 4.5, f"{css} text contrast {ratio}"
    b.screenshot("task-phone")


# -- services and file systems --------------------------------------------------------------

def test_service_view_and_forced_deployment(ferry_server, tmp_path, console):
    srv = ferry_server
    prepare_source(srv, tmp_path, cluster="default")
    key = srv.aws("kms", "create-key", "--policy", fargate_key_policy(SOURCE_ACCOUNT))["KeyMetadata"]
    srv.aws("ecs", "create-cluster", "--cluster-name", "vault", "--configuration",
            f"managedStorageConfiguration={{fargateEphemeralStorageKmsKeyId={key['Arn']}}}")
    srv.aws("ecs", "create-service", "--cluster", "vault", "--service-name", "web", "--task-definition",
            f"{SOURCE_FAMILY}:1", "--desired-count", "1", "--launch-type", "FARGATE",
            "--platform-version", "1.4.0", "--network-configuration", srv.netcfg)

    def describe():
        return srv.aws("ecs", "describe-services", "--cluster", "vault", "--services", "web")["services"][0]
    s = wait_until(lambda: (lambda s: s if s["runningCount"] == 1 and len(s["deployments"]) == 1 else None)(
        describe()), timeout=120, what="the service's task running")
    first = s["deployments"][0]["id"]

    b = signed_in(srv, console(srv))
    b.go("#/clusters/vault")
    b.wait_view("cluster")
    assert b.field("cluster-key") == key["Arn"]
    assert b.wait_for('table#services tr[data-service="web"]')
    b.go("#/clusters/vault/services/web")
    b.wait_view("service")
    assert b.field("service-name") == "web" and b.field("service-status") == "ACTIVE"
    assert b.field("desired-count") == "1"
    b.wait_field("running-count", "1")
    row = b.wait_for(f'table#deployments tr[data-deployment="{first}"]')
    assert b.field("deployment-status", row) == "PRIMARY"
    assert b.field("platform-version", row) == "1.4.0"
    assert b.field("deployment-key", row) == key["Arn"]
    assert b.field("rollout-state", row) == describe()["deployments"][0]["rolloutState"]
    assert b.find_all("ol#events li"), "no service events listed"
    assert b.find_all("table#tasks tr[data-task]"), "the service's task is not listed"

    b.click("button#force-deployment")
    msg = b.confirm(ok=True)
    assert "web" in msg and "vault" in msg, msg
    s = wait_until(lambda: (lambda s: s if len(s["deployments"]) > 1 or s["deployments"][0]["id"] != first
                            else None)(describe()), timeout=30, what="a new deployment")
    new = s["deployments"][0]
    assert new["id"] != first and new["status"] == "PRIMARY", s["deployments"]
    row = b.wait_for(f'table#deployments tr[data-deployment="{new["id"]}"]', timeout=30)
    assert b.field("deployment-status", row) == "PRIMARY"


def test_filesystems_view(ferry_server, console):
    srv = ferry_server
    fs = srv.aws("efs", "create-file-system", "--creation-token", "console", "--encrypted",
                 "--tags", "Key=Name,Value=shared")
    fs_id = fs["FileSystemId"]
    fs = wait_until(lambda: (lambda f: f if f["LifeCycleState"] == "available" else None)(
        srv.aws("efs", "describe-file-systems", "--file-system-id", fs_id)["FileSystems"][0]),
        what="the file system available")
    ap = srv.aws("efs", "create-access-point", "--file-system-id", fs_id)["AccessPointId"]
    subnet, _ = srv.default_network()
    mt = srv.aws("efs", "create-mount-target", "--file-system-id", fs_id, "--subnet-id", subnet)["MountTargetId"]

    b = signed_in(srv, console(srv))
    b.go("#/filesystems")
    b.wait_view("filesystems")
    row = b.wait_for(f'table#filesystems tr[data-fs="{fs_id}"]')
    assert b.field("fs-name", row) == "shared"
    assert b.field("fs-state", row) == "available"
    assert b.field("fs-encrypted", row).lower() in ("yes", "true")
    assert b.field("fs-key", row) == fs["KmsKeyId"]
    b.go(f"#/filesystems/{fs_id}")
    b.wait_view("filesystem")
    assert b.field("fs-id") == fs_id and b.field("fs-key") == fs["KmsKeyId"]
    assert b.wait_for(f'table#access-points tr[data-access-point="{ap}"]')
    b.wait(lambda d: mt in b.find("table#mount-targets").text, what=f"mount target {mt} listed")
