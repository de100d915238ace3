"""Admin protection and secrets at the edge (issue 14): a reload never weakens the admin listener's protection,
a reload clears only the forbidden marks it is about, and Google's error text reaches clients without the
operator's project ids and numbers."""

from __future__ import annotations

import re

import httpx

from conftest import Account, Process, free_port, levitate_bin, wait_until, write_yaml

ADMIN_KEY = "e2e-admin-key"


def account(name: str) -> Account:
    return Account(email=f"{name}@e2e.levitate", project_id=f"e2e-{name}-project")


def admin_accounts(admin_url: str, key: str | None = None) -> dict:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(admin_url + "/admin/accounts", headers=headers, timeout=10.0)
    r.raise_for_status()
    return {a["email"]: a for a in r.json()["accounts"]}


def test_a_reload_may_not_drop_the_key_of_an_admin_listener_on_every_interface(start_gateway):
    """The admin listener runs on 0.0.0.0 with a key. The file is edited to claim loopback without a key: the
    running socket keeps its address, so the reload is refused, says why, and the key still guards the API."""
    gw = start_gateway()
    gw.stop()
    port = free_port()
    main = dict(gw.main_config, listen=gw.base_url.removeprefix("http://"),
                admin={"listen": f"0.0.0.0:{port}", "key": ADMIN_KEY})
    write_yaml(gw.config_path, main)
    gw.process = Process("levitate", [str(levitate_bin()), "serve", "-c", str(gw.config_path)], gw.log_dir)
    gw.admin_url = f"http://127.0.0.1:{port}"
    wait_until("the gateway's GET /health", gw._healthy, 30, gw.process)
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert httpx.get(gw.admin_url + "/admin/health", timeout=10).status_code == 401

    write_yaml(gw.config_path, dict(main, admin={"listen": f"127.0.0.1:{port}"}))
    r = httpx.post(gw.admin_url + "/admin/reload", headers=auth, timeout=30)
    assert r.status_code == 422, r.text
    assert "not a loopback address" in r.json()["error"] and "admin.key" in r.json()["error"], r.text
    assert httpx.get(gw.admin_url + "/admin/health", timeout=10).status_code == 401, "the key still guards"
    health = httpx.get(gw.admin_url + "/admin/health", headers=auth, timeout=10).json()
    assert "admin.key" in health["config"]["last_reload"]["error"], health
    assert "may not remove or empty admin.key" in gw.process.logs()
    gw.assert_serves()


def test_disabling_one_account_does_not_revive_another_that_google_forbade(start_gateway):
    """Google marks `bad` forbidden. The operator disables `spare` (the admin API writes accounts.yaml and
    reloads): `bad` stays forbidden until the operator clears it explicitly."""
    bad, good, spare = account("bad"), account("good"), account("spare")
    gw = start_gateway(accounts=[bad, good, spare],
                       scenario={"faults": [{"kind": "validation_required", "account": bad.email, "times": 1}]})
    for i in range(6):
        assert gw.chat(f"request {i}", model="gemini-3-flash").status_code == 200
    wait_until("bad to be forbidden", lambda: admin_accounts(gw.admin_url)[bad.email]["state"] == "forbidden", 10)

    r = httpx.post(gw.admin_url + f"/admin/accounts/{spare.email}/disable", timeout=30)
    assert r.status_code == 200 and r.json()["reload"]["ok"], r.text
    states = admin_accounts(gw.admin_url)
    assert states[spare.email]["state"] == "disabled", states[spare.email]
    assert states[bad.email]["state"] == "forbidden", "an unrelated reload revived a forbidden account"
    served_before = gw.sim.account_stats(bad.email)["requests"]
    for i in range(4):
        assert gw.chat(f"after the reload {i}", model="gemini-3-flash").status_code == 200
    assert gw.sim.account_stats(bad.email)["requests"] == served_before, "the forbidden account got traffic"

    r = httpx.post(gw.admin_url + f"/admin/accounts/{bad.email}/clear-forbidden", timeout=10)
    assert r.status_code == 200 and r.json()["cleared"] is True, r.text
    assert admin_accounts(gw.admin_url)[bad.email]["state"] == "ready"


def test_googles_error_text_reaches_the_client_without_the_project(start_gateway):
    """Google's 403 SERVICE_DISABLED names the account's project by number and id. The client gets the useful
    part of the message with `[project]` in their place; the operator still sees the original."""
    solo = account("solo")
    gw = start_gateway(accounts=[solo], scenario={"faults": [{"kind": "service_disabled"}]})
    r = gw.chat("hello", model="gemini-3-flash")
    assert r.status_code == 502, r.text
    message = r.json()["error"]["message"]
    assert "has not been used in project [project] before or it is disabled" in message, message
    assert "overview?project=[project]" in message and "projects/[project]" in message, message
    assert solo.sim_project not in r.text and not re.search(r"\d{10,}", r.text), r.text

    forbidden = admin_accounts(gw.admin_url)[solo.email]["forbidden"]
    assert forbidden["reason"] == "SERVICE_DISABLED", forbidden
    assert solo.sim_project in forbidden["message"], "the operator's view keeps the project"
