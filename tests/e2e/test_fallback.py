"""The fallback provider (issue 11, opt-in `fallback:`): when no account can serve a request, a public Gemini
API key serves it instead, through the public API's own shape (no `v1internal` envelope, `x-goog-api-key`),
labelled `fallback` in the request log, the metrics and the usage, within its own concurrency limit. The sim
serves the public API strictly: a missing key or any envelope field is refused."""

from __future__ import annotations

import concurrent.futures
import json

import httpx

from conftest import Account, assert_openai_error, wait_until

KEY_ENV = "LEVITATE_E2E_FALLBACK_KEY"
PUBLIC_KEY = "e2e-public-gemini-key"
MODEL = "gemini-3-flash"
ROUTES = {"models": [MODEL, "claude-sonnet-4-6"], "aliases": {"gpt-4o": MODEL}}


def accounts() -> list[Account]:
    return [Account(email=f"{n}@e2e.levitate", project_id=f"e2e-{n}-project") for n in ("one", "two")]


def start(start_sim, start_gateway, monkeypatch, fallback: dict | None):
    monkeypatch.setenv(KEY_ENV, PUBLIC_KEY)
    accts = accounts()
    sim = start_sim({"accounts": [a.sim_entry() for a in accts], "public_api_key": PUBLIC_KEY})
    gw = start_gateway(accounts=accts, sim=sim, routes=ROUTES)
    if fallback is not None:
        gw.stop()
        gw.start(dict(gw.main_config, fallback=dict({"api_key_env": KEY_ENV, "base_url": sim.url}, **fallback)))
    return gw, sim, accts


def lock_every_account(sim, accts) -> None:
    """Google says every account is out of quota for a day: the gateway locks each on its first refusal."""
    sim.set_faults([{"kind": "quota_exhausted", "account": a.email, "sticky": True} for a in accts])


def public_calls(sim) -> int:
    return sim.account_stats("public-api").get("requests", 0)


def messages(gw, stream: bool) -> httpx.Response:
    return gw.http.post("/v1/messages", headers={"anthropic-version": "2023-06-01"},
                        json={"model": MODEL, "max_tokens": 256, "stream": stream,
                              "messages": [{"role": "user", "content": "Say hello"}]})


def sse_text(body: str, kind: str) -> str:
    text = []
    for line in body.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        event = json.loads(line[6:])
        if kind == "openai":
            text += [c["delta"].get("content") or "" for c in event.get("choices", [])]
        elif event.get("type") == "content_block_delta" and event["delta"].get("type") == "text_delta":
            text.append(event["delta"]["text"])
    return "".join(text)


def test_off_by_default_every_locked_account_is_a_429(start_sim, start_gateway, monkeypatch):
    gw, sim, accts = start(start_sim, start_gateway, monkeypatch, fallback=None)
    lock_every_account(sim, accts)
    assert_openai_error(gw.chat("hello", model="gpt-4o"), 429)
    assert public_calls(sim) == 0


def test_all_accounts_locked_the_fallback_key_serves_every_protocol(start_sim, start_gateway, monkeypatch):
    gw, sim, accts = start(start_sim, start_gateway, monkeypatch, fallback={"models": [MODEL]})
    lock_every_account(sim, accts)

    r = gw.chat("hello", model="gpt-4o")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    r = gw.chat("hello", model="gpt-4o", stream=True)
    assert r.status_code == 200 and sse_text(r.text, "openai"), r.text
    r = messages(gw, stream=False)
    assert r.status_code == 200, r.text
    assert any(b["type"] == "text" and b["text"] for b in r.json()["content"])
    r = messages(gw, stream=True)
    assert r.status_code == 200 and sse_text(r.text, "anthropic"), r.text
    r = httpx.post(gw.base_url + f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                   headers={"x-goog-api-key": gw.api_key}, timeout=60,
                   json={"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]})
    assert r.status_code == 200 and '"text"' in r.text, r.text

    assert public_calls(sim) == 5, sim.stats()["accounts"]
    # Each account was tried once, refused, and then left alone (locked) rather than asked again.
    for a in accts:
        assert sim.account_stats(a.email)["requests"] == 1
    # The public API saw its own shape: the sim refuses an envelope, a session id or a missing key.
    public = [r for r in sim.stats()["recent"] if r["account"] == "public-api"]
    assert len(public) == 5 and all(r["headers"].get("x-goog-api-key") == PUBLIC_KEY for r in public)

    metrics = gw.metrics()
    assert 'levitate_upstream_attempts_total{account="fallback",outcome="ok"} 5' in metrics
    log = httpx.get(gw.admin_url + "/admin/requests", timeout=10).json()["requests"]
    assert sum(1 for e in log if e.get("account") == "fallback") == 5, log
    rows = httpx.get(gw.admin_url + "/admin/usage?group_by=account", timeout=10).json()["rows"]
    assert any(r.get("account") == "fallback" and r["requests"] == 5 for r in rows), rows


def test_models_the_key_may_not_serve_and_its_own_limit(start_sim, start_gateway, monkeypatch):
    gw, sim, accts = start(start_sim, start_gateway, monkeypatch,
                           fallback={"models": {MODEL: MODEL}, "max_concurrent": 1})
    lock_every_account(sim, accts)
    # claude-sonnet-4-6 is not the key's: the usual 429.
    assert_openai_error(gw.chat("hello", model="claude-sonnet-4-6"), 429)
    assert public_calls(sim) == 0
    # One slot: while a slow fallback answer holds it, a second request is refused, not queued on the key.
    gw.chat("warm up", model="gpt-4o")
    sim.set_faults([{"kind": "quota_exhausted", "account": a.email, "sticky": True} for a in accts]
                   + [{"kind": "slow_first_byte", "account": "public-api", "delay_ms": 1500}])
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        slow = pool.submit(gw.chat, "slow", model="gpt-4o")
        wait_until("the slow fallback request upstream",
                   lambda: sim.stats()["accounts"]["public-api"]["in_flight"] == 1, 10)
        second = gw.chat("second", model="gpt-4o")
        assert_openai_error(second, 429)
        assert slow.result().status_code == 200
