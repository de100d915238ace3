"""Model availability per account (issue 11): accounts differ in what Google lets them call, and the gateway
learns it from `fetchAvailableModels`. A model goes only to accounts that list it, the model listings show
what at least one account serves, and a model nobody serves is refused at once, in the client's protocol,
without a single upstream call."""

from __future__ import annotations

import httpx

from conftest import Account, assert_openai_error, wait_until

FLASH = "gemini-3-flash"
SONNET = "claude-sonnet-4-6"
NOBODY = "gemini-2.5-pro"  # in routes.yaml and in the sim's catalog, but no account may call it

ROUTES = {
    "models": [FLASH, SONNET, NOBODY],
    "aliases": {"gpt-4o": FLASH, "sonnet": SONNET, "pro": NOBODY},
}


def accounts() -> tuple[Account, Account]:
    return (Account(email="flash@e2e.levitate", project_id="e2e-flash-project"),
            Account(email="sonnet@e2e.levitate", project_id="e2e-sonnet-project"))


def admin_accounts(gw) -> dict:
    r = httpx.get(gw.admin_url + "/admin/accounts", timeout=10.0)
    r.raise_for_status()
    return {a["email"]: a for a in r.json()["accounts"]}


def start(start_sim, start_gateway):
    flash, sonnet = accounts()
    sim = start_sim({"accounts": [dict(flash.sim_entry(), models=[FLASH]),
                                  dict(sonnet.sim_entry(), models=[SONNET])]})
    gw = start_gateway(accounts=[flash, sonnet], sim=sim, routes=ROUTES)
    # The first quota poll runs at start; until it has answered, an account may serve anything.
    wait_until("both accounts' model lists", lambda: all(a["models"] for a in admin_accounts(gw).values()),
               30, gw.process)
    return gw, sim, flash, sonnet


def content_requests(sim) -> list[dict]:
    return [r for r in sim.stats()["recent"] if r.get("model")]


def test_each_model_goes_only_to_the_accounts_that_list_it(start_sim, start_gateway):
    gw, sim, flash, sonnet = start(start_sim, start_gateway)
    listed = admin_accounts(gw)
    assert listed[flash.email]["models"] == [FLASH]
    assert listed[sonnet.email]["models"] == [SONNET]
    sim.reset_stats()
    for model in ("gpt-4o", "sonnet") * 4:
        r = gw.chat("Which account are you?", model=model)
        assert r.status_code == 200, r.text
    r = gw.http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                     json={"model": "sonnet", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    seen = content_requests(sim)
    assert len(seen) == 9, seen
    for request in seen:
        expected = flash.email if request["model"] == FLASH else sonnet.email
        assert request["account"] == expected, request
    stats = sim.stats()["accounts"]
    assert stats[flash.email]["requests"] == 4
    assert stats[sonnet.email]["requests"] == 5
    assert all(int(status) == 200 for a in stats.values() for status in a.get("by_status", {})), stats


def test_listings_show_the_union_of_what_the_accounts_serve(start_sim, start_gateway):
    gw, *_ = start(start_sim, start_gateway)
    ids = [m["id"] for m in gw.http.get("/v1/models").json()["data"]]
    assert set(ids) == {FLASH, SONNET, "gpt-4o", "sonnet"}, ids
    assert gw.http.get(f"/v1/models/{NOBODY}").status_code == 404
    assert gw.http.get("/v1/models/sonnet").status_code == 200
    gemini = httpx.get(gw.base_url + "/v1beta/models", headers={"x-goog-api-key": gw.api_key}, timeout=10)
    names = {m["name"].removeprefix("models/") for m in gemini.json()["models"]}
    assert names == {FLASH, SONNET, "gpt-4o", "sonnet"}, names
    r = httpx.get(gw.base_url + f"/v1beta/models/{NOBODY}", headers={"x-goog-api-key": gw.api_key}, timeout=10)
    assert r.status_code == 404


def test_a_model_nobody_serves_is_a_404_at_once_in_each_protocol(start_sim, start_gateway):
    gw, sim, *_ = start(start_sim, start_gateway)
    sim.reset_stats()

    error = assert_openai_error(gw.chat("hello", model="pro"), 404)
    assert NOBODY in error["message"] and error["param"] == "model"

    r = gw.http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                     json={"model": NOBODY, "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 404, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error", body

    r = httpx.post(gw.base_url + f"/v1beta/models/{NOBODY}:streamGenerateContent?alt=sse",
                   headers={"x-goog-api-key": gw.api_key}, timeout=10,
                   json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})
    assert r.status_code == 404, r.text
    assert r.json()["error"]["status"] == "NOT_FOUND", r.text

    stats = sim.stats()
    assert stats["totals"]["requests"] == 0, "no account may be tried for a model none of them lists"
    # The served models still work afterwards.
    assert gw.chat("still there?", model="gpt-4o").status_code == 200


def health(gw) -> dict:
    r = httpx.get(gw.admin_url + "/admin/health", timeout=10.0)
    r.raise_for_status()
    return r.json()


def test_a_version_notice_marks_the_condition_instead_of_touring_the_accounts(start_sim, start_gateway):
    """Google answers an outdated client version with a notice as the only text (PROTOCOL §1, version gate).
    Every account would say the same: one upstream call, a 502 naming the setting, the condition in the
    admin API and the metrics, one log line; a later good answer lifts it."""
    one, two = accounts()
    gw = start_gateway(accounts=[one, two], routes=ROUTES)
    sim = gw.sim
    sim.set_faults([{"kind": "version_gate"}])
    sim.reset_stats()
    for _ in range(2):
        error = assert_openai_error(gw.chat("hello", model="gpt-4o"), 502)
        assert "upstream.user_agent" in error["message"]
        assert "no longer supported" not in error["message"].lower()
    assert sim.stats()["totals"]["requests"] == 2, "one upstream call per request, no tour of the accounts"
    state = health(gw)
    assert state["status"] == "degraded"
    [gate] = state["upstream_version_gates"]
    assert gate["kind"] == "client_version_unsupported" and gate["count"] == 2 and gate["user_agent"]
    assert 'levitate_upstream_version_gate_total{kind="client_version_unsupported"} 2' in gw.metrics()
    assert gw.logs().count("set upstream.user_agent") == 1
    overview = gw.console_page("overview")
    assert 'id="version-gate"' in overview and "upstream.user_agent" in overview
    # No account was held responsible.
    assert all(not a["lockouts"] and a["state"] == "ready" for a in admin_accounts(gw).values())

    # Streaming, and a notice for one model only.
    sim.set_faults([{"kind": "model_version_gate", "model": SONNET}])
    r = gw.http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                     json={"model": "sonnet", "max_tokens": 64, "stream": True,
                           "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 502, r.text
    assert "upstream.user_agent" in r.json()["error"]["message"]
    kinds = {g["kind"]: g for g in health(gw)["upstream_version_gates"]}
    assert kinds["model_needs_newer_client"]["model"] == SONNET

    sim.clear_faults()
    assert gw.chat("hello", model="gpt-4o").status_code == 200
    assert [g["kind"] for g in health(gw)["upstream_version_gates"]] == ["model_needs_newer_client"]
    assert gw.chat("hello", model="sonnet").status_code == 200
    assert health(gw)["upstream_version_gates"] == []
    assert health(gw)["status"] == "ok"
    assert 'id="version-gate"' not in gw.console_page("overview")


def test_a_version_notice_sent_as_an_error_is_not_held_against_each_account(start_sim, start_gateway):
    """The same notice may come as a 403 or 400: still one upstream call, the gate noted, no account touched
    (a 403 would otherwise move the request through every account)."""
    one, two = accounts()
    gw = start_gateway(accounts=[one, two], routes=ROUTES)
    sim = gw.sim
    sim.set_faults([{"kind": "version_gate", "status": 403}])
    sim.reset_stats()
    error = assert_openai_error(gw.chat("hello", model="gpt-4o"), 502)
    assert "upstream.user_agent" in error["message"]
    assert sim.stats()["totals"]["requests"] == 1, "one upstream call, no tour of the accounts"
    assert [g["kind"] for g in health(gw)["upstream_version_gates"]] == ["client_version_unsupported"]
    sim.set_faults([{"kind": "model_version_gate", "status": 400, "model": FLASH}])
    assert_openai_error(gw.chat("hello", model="gpt-4o"), 502)
    assert sim.stats()["totals"]["requests"] == 2
    assert all(not a["lockouts"] and a["state"] == "ready" for a in admin_accounts(gw).values())
