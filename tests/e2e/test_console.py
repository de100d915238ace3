"""The web console (docs/console.md), driven in a real browser: Debian's chromium through playwright-core
(tests/e2e/clients/console.mjs; nothing downloads a browser).

The story: an operator logs in with the admin key, sees the accounts, disables one and the gateway stops
sending it requests; clients make requests and the usage and request-log pages show them; the operator
edits a key's rpm and the next requests are held to it, creates a key that works at once, reloads, logs out.
Around it: a POST without the session's CSRF token is refused, the session cookie is HttpOnly and
SameSite=Strict, and no page ever carries a secret. Every page's screenshot lands in tests/e2e/artifacts/console/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import http.server
import threading
import re
import urllib.parse
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY, REPO, Account, Gateway, wait_until

ADMIN_KEY = "admin-console-secret-4711"
TEAM_KEY = "sk-team-console-secret"
QUOTA_KEY = "sk-quota-console-secret"
NODE_SCRIPT = REPO / "tests" / "e2e" / "clients" / "console.mjs"
ARTIFACTS = REPO / "tests" / "e2e" / "artifacts" / "console"
CHROMIUM = Path("/usr/bin/chromium")
PLAYWRIGHT = REPO / "tests" / "e2e" / "clients" / "node" / "node_modules" / "playwright-core"

ONE = Account(email="one@e2e.levitate", project_id="e2e-one")
TWO = Account(email="two@e2e.levitate", project_id="e2e-two")
# Preferred (ultra tier), and refused by the simulator with 403 VALIDATION_REQUIRED: marked forbidden at once.
THREE = Account(email="three@e2e.levitate", tier="g1-ultra-tier", project_id="e2e-three")
# Known to the simulator only: added through the console's Google sign-in.
NEWCOMER = Account(email="newcomer@e2e.levitate", tier="free-tier", project_id=None, declare_tier=False)


class FakeGoogleSignIn(http.server.BaseHTTPRequestHandler):
    """Google's authorize page after the user said yes: straight back to the redirect URI with a code the
    simulator's token endpoint accepts, and the login's state."""

    def do_GET(self) -> None:
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        back = {"state": query["state"], "code": f"sim-code-{NEWCOMER.email}", "scope": query["scope"]}
        self.send_response(302)
        self.send_header("Location", query["redirect_uri"] + "?" + urllib.parse.urlencode(back))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_google():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeGoogleSignIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # Another site than the console's 127.0.0.1: the redirect back is cross-site, as from Google.
    yield f"http://localhost:{server.server_address[1]}/o/oauth2/v2/auth"
    server.shutdown()

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or not PLAYWRIGHT.exists() or shutil.which("node") is None,
    reason="needs Debian's chromium (apt-get install chromium) and playwright-core (npm ci in tests/e2e/clients/node)",
)


def hand_written_config(gateway: Gateway) -> str:
    """levitate.yaml as a person writes it: block style for the keys, with comments the console must keep."""
    c = gateway.main_config
    flow = lambda value: json.dumps(value)  # JSON is YAML: the sections the test does not edit stay compact
    return "\n".join([
        "# levitate.yaml for the console test, written by hand",
        f"listen: {flow(c['listen'])}",
        f"admin: {flow(c['admin'])}",
        f"upstream: {flow(c['upstream'])}",
        f"accounts_file: {flow(c['accounts_file'])}",
        f"routes_file: {flow(c['routes_file'])}",
        f"store: {flow(c['store'])}",
        f"server: {flow(c['server'])}",
        "auth:",
        "  # who may call this gateway",
        "  api_keys:",
        "    - name: e2e",
        f"      key: {API_KEY}",
        "    - name: team       # the team's agents",
        f"      key: {TEAM_KEY}",
        "    - name: quota",
        f"      key: {QUOTA_KEY}",
        "      tpm: 1000000     # generous; the console sets rpm",
        "      expires_at: 2099-01-01T00:00:00Z",
        "# end of file",
        "",
    ])


def start(start_gateway, start_sim, authorize_url: str | None = None) -> Gateway:
    sim = start_sim({"accounts": [a.sim_entry() for a in (ONE, TWO, THREE, NEWCOMER)],
                     "faults": [{"kind": "validation_required", "account": THREE.email},
                                # The first gemini-2.5-pro request: that account is locked for the model.
                                {"kind": "quota_exhausted", "model": "gemini-2.5-pro", "delay_ms": 600_000,
                                 "times": 1}]})
    gateway = start_gateway(accounts=[ONE, TWO, THREE], sim=sim)
    gateway.stop()
    config = dict(gateway.main_config, admin={"key": ADMIN_KEY})
    if authorize_url:
        config["upstream"] = dict(config["upstream"], oauth_authorize_url=authorize_url,
                                  oauth_userinfo_url=sim.url + "/userinfo")
    gateway.start(config)
    gateway.main_config["listen"] = gateway.base_url.removeprefix("http://")
    gateway.main_config["admin"] = {"key": ADMIN_KEY, "listen": gateway.admin_url.removeprefix("http://")}
    gateway.config_path.write_text(hand_written_config(gateway))
    r = httpx.post(gateway.admin_url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return gateway


def browser(gateway: Gateway, phase: str, **extra: str) -> dict:
    env = dict(os.environ, CONSOLE_URL=gateway.admin_url, ADMIN_KEY=ADMIN_KEY, PHASE=phase,
               ARTIFACTS=str(ARTIFACTS), **extra)
    done = subprocess.run(["node", str(NODE_SCRIPT)], env=env, capture_output=True, text=True, timeout=240)
    try:
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise AssertionError(f"console.mjs printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr}")
    assert result["ok"], f"console.mjs failed at {result.get('step')}: {result.get('error')}\n{done.stderr}"
    return result


def chat(gateway: Gateway, key: str, model: str = "gpt-4o") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Say hello"}]}
    return httpx.post(gateway.base_url + "/v1/chat/completions", json=body, timeout=60,
                      headers={"Authorization": f"Bearer {key}"})


def admin(gateway: Gateway, path: str) -> dict:
    r = httpx.get(gateway.admin_url + path, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def secrets(*more: str) -> list[str]:
    return [ADMIN_KEY, API_KEY, TEAM_KEY, QUOTA_KEY, ONE.refresh_token, TWO.refresh_token, NEWCOMER.refresh_token,
            "ya29.", *more]


def assert_no_secret(where: str, text: str, *more: str) -> None:
    for secret in secrets(*more):
        assert secret not in text, f"{where} carries a secret ({secret[:6]}…)"


def test_the_console_in_a_browser(start_gateway, start_sim, fake_google):
    for stale in ARTIFACTS.glob("console-failure-*.png"):
        stale.unlink()
    gateway = start(start_gateway, start_sim, fake_google)
    def three_forbidden() -> bool:
        assert chat(gateway, API_KEY).status_code == 200
        return any(a["email"] == THREE.email and a["state"] == "forbidden"
                   for a in admin(gateway, "/admin/accounts")["accounts"])
    wait_until("the ultra account marked forbidden", three_forbidden, 20)
    assert chat(gateway, API_KEY, "gemini-2.5-pro").status_code == 200  # retried on another account
    locked = [a["email"] for a in admin(gateway, "/admin/accounts")["accounts"]
              if any(l["model"] == "gemini-2.5-pro" for l in a["lockouts"])]
    assert len(locked) == 1, locked

    # Log in, see the accounts, disable one.
    first = browser(gateway, "1", ACCOUNTS=f"{ONE.email},{TWO.email},{THREE.email}", DISABLE_ACCOUNT=TWO.email,
                    FORBIDDEN_ACCOUNT=THREE.email, LOCKED_ACCOUNT=locked[0])
    assert first["steps"][:2] == ["wrong key refused", "logged in"]
    assert first["cookie"]["httpOnly"] and first["cookie"]["sameSite"] == "Strict"
    assert first["cookie"]["expires"] > time.time() + 3600
    for email in (ONE.email, TWO.email):
        assert first["accounts"][email] and "ready" in first["accounts"][email], first["accounts"]
        assert "g1-pro-tier" in first["accounts"][email]
    assert "forbidden" in first["accounts"][THREE.email] and "VALIDATION_REQUIRED" in first["accounts"][THREE.email]
    assert first["forbidden_link"].startswith("https://"), first["forbidden_link"]
    assert first["overview"]["accounts_healthy"] == "2" and first["overview"]["accounts_forbidden"] == "1"
    assert first["overview"]["accounts_locked"] == "1"
    assert "gemini-2.5-pro (QUOTA_EXHAUSTED)" in first["accounts"][locked[0]], first["accounts"][locked[0]]
    assert "disabled" in first["disabled_row"] and TWO.email in first["flash"]
    assert "enabled: false" in (gateway.config_dir / "accounts.yaml").read_text()

    # The gateway stops using the disabled account.
    gateway.sim.reset_stats()
    for _ in range(6):
        assert chat(gateway, TEAM_KEY).status_code == 200
    assert gateway.sim.account_stats(TWO.email).get("requests", 0) == 0
    assert gateway.sim.account_stats(ONE.email).get("requests", 0) == 6

    # A state-changing request without the session's CSRF token is refused; with it, it goes through.
    cookies = {"levitate_console": first["cookie"]["value"]}
    action = f"{gateway.admin_url}/console/accounts/{ONE.email}/disable"
    assert httpx.post(action, cookies=cookies, timeout=10).status_code == 403
    assert httpx.post(action, cookies=cookies, data={"csrf": "forged"}, timeout=10).status_code == 403
    assert httpx.post(action, data={"csrf": first["csrf"]}, timeout=10).status_code == 403  # no session
    states = {a["email"]: a["state"] for a in admin(gateway, "/admin/accounts")["accounts"]}
    assert states[ONE.email] == "ready", states
    r = httpx.post(gateway.admin_url + "/console/reload", cookies=cookies, headers={"X-CSRF-Token": first["csrf"]},
                   timeout=30)
    assert r.status_code == 303 and "/console/config?flash=" in r.headers["location"]

    # No page, JSON answer or asset carries a secret.
    for path in ("overview", "accounts", "keys", "usage", "usage.csv?range=7d", "requests", "config",
                 "api/overview", "assets/console.js", "assets/console.css", "login"):
        r = httpx.get(f"{gateway.admin_url}/console/{path}", cookies=cookies, timeout=30)
        assert r.status_code == 200, (path, r.status_code)
        assert_no_secret(path, r.text)
    for name, html in first["pages"].items():
        assert_no_secret(f"the browser's {name} page", html)

    # Usage and the request log show the team's requests.
    wait_until("the team's requests in the request log",
               lambda: sum(1 for r in admin(gateway, "/admin/requests")["requests"] if r["key_name"] == "team") >= 6,
               10)
    second = browser(gateway, "2", USED_KEY="team", EDIT_KEY="quota", EDIT_RPM="2", NEW_KEY="new-agent",
                     DISABLE_ACCOUNT=TWO.email, ADD_ACCOUNT=NEWCOMER.email, FORBIDDEN_ACCOUNT=THREE.email,
                     LOCKED_ACCOUNT=locked[0])
    assert second["usage_row"] and second["usage_row"].split()[:2] == ["team", "gpt-4o"], second["usage_row"]
    assert "\n6" in second["usage_row"] or "\t6" in second["usage_row"], second["usage_row"]
    assert "team,gpt-4o,6," in second["usage_csv"], second["usage_csv"]
    assert second["chart_legend"][0] == "team × gpt-4o" and second["chart_bars"] >= 1, second["chart_legend"]
    assert len(second["request_rows"]) == 6 and all("team" in row and "200" in row for row in second["request_rows"])

    # The edited limit is in the file (comments kept) and enforced at once.
    assert "saved and reloaded" in second["edit_flash"], second["edit_flash"]
    text = gateway.config_path.read_text()
    for comment in ("# who may call this gateway", "# the team's agents", "# generous; the console sets rpm",
                    "# end of file"):
        assert comment in text, f"{comment!r} lost:\n{text}"
    assert "      rpm: 2\n" in text, text
    assert "      expires_at: 2099-01-01T00:00:00Z\n" in text, text
    keys_page = httpx.get(f"{gateway.admin_url}/console/keys", cookies=cookies, timeout=30).text
    assert "expires 2099-01-01T00:00:00" in keys_page
    statuses = [chat(gateway, QUOTA_KEY).status_code for _ in range(3)]
    assert statuses == [200, 200, 429], statuses
    third = chat(gateway, QUOTA_KEY)
    assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1

    # The request log's filters find the refusals.
    def refused_rows() -> int:
        r = httpx.get(f"{gateway.admin_url}/console/requests", params={"key": "quota", "status": "4xx", "since": "10m"},
                      cookies=cookies, timeout=30)
        return r.text.count('<span class="error">429</span>')
    wait_until("the quota key's refusals on the requests page", lambda: refused_rows() == 2, 10)

    # The created key works, and its secret was shown once only.
    created = second["created_secret"]
    assert created.startswith("lvk-") and len(created) > 40
    assert chat(gateway, created).status_code == 200
    assert_no_secret("the keys page after creating a key", second["keys_after_create"], created)
    for name, html in second["pages"].items():
        assert_no_secret(f"the browser's {name} page", html, created)
    for path in ("keys", "config", "requests", "usage"):
        r = httpx.get(f"{gateway.admin_url}/console/{path}", cookies=cookies, timeout=30)
        assert_no_secret(path, r.text, created)

    assert "Reload ok" in second["reload_flash"], second["reload_flash"]
    assert "ready" in second["enabled_row"], second["enabled_row"]
    assert "ready" in second["cleared_row"] and "VALIDATION_REQUIRED" not in second["cleared_row"], second["cleared_row"]
    assert "gemini-2.5-pro (" not in second["unlocked_row"], second["unlocked_row"]
    assert not any(a["lockouts"] for a in admin(gateway, "/admin/accounts")["accounts"] if a["email"] == locked[0])
    assert second["after_logout_url"].endswith("/console/login")

    # The account added through the sign-in flow is written (with its refresh token) and in the pool.
    assert NEWCOMER.email in second["oauth_result"] and NEWCOMER.sim_project in second["oauth_result"]
    assert second["added_row"] and "free-tier" in second["added_row"], second["added_row"]
    assert NEWCOMER.refresh_token in (gateway.config_dir / "accounts.yaml").read_text()
    assert NEWCOMER.email in [a["email"] for a in admin(gateway, "/admin/accounts")["accounts"]]
    # A state works once: the same callback again is refused.
    again = httpx.get(gateway.admin_url + "/console/oauth/callback",
                      params={"state": "not-a-pending-login", "code": f"sim-code-{NEWCOMER.email}"}, timeout=10)
    assert again.status_code == 400

    # The admin API is unchanged: still behind the Authorization header, not the console's cookie.
    assert httpx.get(gateway.admin_url + "/admin/accounts", cookies=cookies, timeout=10).status_code == 401


def test_the_console_needs_a_session(start_gateway, start_sim):
    gateway = start(start_gateway, start_sim)
    r = httpx.get(gateway.admin_url + "/console/accounts", timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = httpx.post(gateway.admin_url + "/console/login", data={"key": "wrong"}, timeout=10)
    assert r.status_code == 401 and "set-cookie" not in r.headers
    r = httpx.post(gateway.admin_url + "/console/login", data={"key": ADMIN_KEY}, timeout=10)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="):
        assert attribute in cookie, cookie
    session = r.cookies["levitate_console"]
    page = httpx.get(gateway.admin_url + "/console/overview", cookies={"levitate_console": session}, timeout=10)
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # Removing an account needs the box ticked; then it leaves accounts.yaml and the pool.
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    remove = f"{gateway.admin_url}/console/accounts/{TWO.email}/remove"
    r = httpx.post(remove, data={"csrf": csrf}, cookies={"levitate_console": session}, timeout=30)
    assert r.status_code == 303 and "Tick" in urllib.parse.unquote(r.headers["location"])
    assert TWO.email in (gateway.config_dir / "accounts.yaml").read_text()
    r = httpx.post(remove, data={"csrf": csrf, "confirm": "yes"}, cookies={"levitate_console": session}, timeout=30)
    assert r.status_code == 303 and "removed" in urllib.parse.unquote(r.headers["location"])
    assert TWO.email not in (gateway.config_dir / "accounts.yaml").read_text()
    emails = [a["email"] for a in admin(gateway, "/admin/accounts")["accounts"] if a["state"] != "draining"]
    assert emails == [ONE.email, THREE.email], emails
    # A reload that changes the admin key ends the sessions made with the old one.
    text = gateway.config_path.read_text().replace(ADMIN_KEY, ADMIN_KEY + "-rotated")
    gateway.config_path.write_text(text)
    r = httpx.post(gateway.admin_url + "/admin/reload", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)
    assert r.status_code == 200, r.text
    r = httpx.get(gateway.admin_url + "/console/overview", cookies={"levitate_console": session}, timeout=10)
    assert r.status_code == 303 and r.headers["location"] == "/console/login"


def test_failed_logins_are_throttled(start_gateway, start_sim):
    gateway = start(start_gateway, start_sim)
    login = gateway.admin_url + "/console/login"
    statuses = [httpx.post(login, data={"key": f"guess-{i}"}, timeout=10).status_code for i in range(10)]
    assert statuses == [401] * 10
    r = httpx.post(login, data={"key": ADMIN_KEY}, timeout=10)
    assert r.status_code == 429 and "set-cookie" not in r.headers and "Too many failed logins" in r.text
