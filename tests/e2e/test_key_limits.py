"""Per-key limits (docs/tenancy.md): rpm, tpm, max_concurrent, budgets, model allow-lists, expiry and
`enabled: false`, each held exactly while 50 clients hit the gateway at once, in the error shape of the
client's own protocol (OpenAI, Anthropic, Gemini), with Retry-After on every 429; and a reload that changes
a limit applies to the next request while the running counters stay.

Each protocol gets its own key with the same limits, so its burst starts from clean counters.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Callable

import httpx
import pytest

from conftest import Account, Gateway, levitate_bin, write_yaml

CLIENTS = 50
PROTOCOLS = ("openai", "anthropic", "gemini")
# The simulator holds every answer this long, so a burst's admitted requests are all still in flight when the
# last of the 50 arrives, even on a busy machine.
SLOW = {"latency": {"first_byte_ms": 5000}}


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def accounts() -> list[Account]:
    """Enough account capacity that the pool never queues a burst: only the key's limits decide."""
    return [Account(email=f"acct{i}@e2e.levitate", project_id=f"e2e-acct{i}", max_concurrent=30) for i in range(3)]


def set_keys(gateway: Gateway, keys: list[dict], **auth: str) -> None:
    """Rewrites levitate.yaml's `auth` and reloads through the admin API (which applies it before answering)."""
    text = gateway.config_path.read_text()
    document = json.loads("\n".join(line for line in text.splitlines() if not line.startswith("#")))
    document["auth"] = {"api_keys": keys, **auth}
    write_yaml(gateway.config_path, document)
    gateway.main_config["auth"] = document["auth"]
    r = httpx.post(gateway.admin_url + "/admin/reload", timeout=30.0)
    assert r.status_code == 200, r.text


def protocol_keys(prefix: str, **limits) -> list[dict]:
    return [{"name": f"{prefix}-{p}", "key": f"sk-{prefix}-{p}", **limits} for p in PROTOCOLS]


def body_bytes(protocol: str, model: str) -> bytes:
    """The exact request body (its length is the admission estimate: bytes / 4)."""
    messages = [{"role": "user", "content": "Count to three, please."}]
    if protocol == "openai":
        document = {"model": model, "messages": messages}
    elif protocol == "anthropic":
        document = {"model": model, "max_tokens": 256, "messages": messages}
    else:
        document = {"contents": [{"role": "user", "parts": [{"text": "Count to three, please."}]}]}
    return json.dumps(document).encode()


def send(gateway: Gateway, protocol: str, key: str, model: str | None = None) -> httpx.Response:
    """One request in `protocol`'s own shape, authenticated the way that protocol's SDKs do."""
    if protocol == "openai":
        model = model or "gpt-4o"
        path, headers = "/v1/chat/completions", {"Authorization": f"Bearer {key}"}
    elif protocol == "anthropic":
        model = model or "claude-sonnet-4-6"
        path, headers = "/v1/messages", {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        model = model or "gemini-3-flash"
        path, headers = f"/v1beta/models/{model}:generateContent", {"x-goog-api-key": key}
    headers["Content-Type"] = "application/json"
    return httpx.post(gateway.base_url + path, content=body_bytes(protocol, model), headers=headers, timeout=60.0)


def burst(gateway: Gateway, protocol: str, key: str, models: list[str | None] | None = None) -> list[httpx.Response]:
    """CLIENTS requests released together from their own threads."""
    models = models or [None] * CLIENTS
    gate = threading.Barrier(len(models))
    answers: list[httpx.Response | BaseException] = [RuntimeError("not sent")] * len(models)

    def client(i: int) -> None:
        gate.wait()
        try:
            answers[i] = send(gateway, protocol, key, models[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            answers[i] = e

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(models))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, failures[:3]
    return answers  # type: ignore[return-value]


def statuses(answers: list[httpx.Response]) -> dict[int, int]:
    counted: dict[int, int] = {}
    for a in answers:
        counted[a.status_code] = counted.get(a.status_code, 0) + 1
    return counted


def assert_refusal(protocol: str, response: httpx.Response, status: int) -> str:
    """The refusal is `status` in the protocol's own error shape; 429s carry Retry-After. Returns the message."""
    assert response.status_code == status, response.text
    body = response.json()
    if protocol == "openai":
        error = body["error"]
        assert {"message", "type", "param", "code"} <= error.keys(), body
        want = ("rate_limit_error", "rate_limit_exceeded") if status == 429 else ("permission_error", "permission_denied")
        assert (error["type"], error["code"]) == want, body
    elif protocol == "anthropic":
        assert body["type"] == "error", body
        error = body["error"]
        assert error["type"] == ("rate_limit_error" if status == 429 else "permission_error"), body
    else:
        error = body["error"]
        assert error["code"] == status, body
        assert error["status"] == ("RESOURCE_EXHAUSTED" if status == 429 else "PERMISSION_DENIED"), body
    if status == 429:
        retry_after = response.headers.get("retry-after")
        assert retry_after is not None and int(retry_after) >= 1, response.headers
    return error["message"]


def model_calls(gateway: Gateway) -> int:
    """Content calls the simulator has seen (it counts them per model)."""
    return sum(m["requests"] for m in gateway.stats()["models"].values())


# ---------------------------------------------------------------------------------------------------------------
# Limits under 50 parallel clients


@pytest.fixture
def limited(start_gateway) -> Callable[..., Gateway]:
    def start(scenario: dict | None = None, **limits) -> Gateway:
        gateway = start_gateway(accounts=accounts(), scenario=scenario, pool={"max_concurrent_per_account": 30})
        set_keys(gateway, protocol_keys("k", **limits))
        return gateway
    return start


def test_rpm_admits_exactly_the_limit_per_minute(limited):
    gateway = limited(rpm=10)
    for protocol in PROTOCOLS:
        answers = burst(gateway, protocol, f"sk-k-{protocol}")
        assert statuses(answers) == {200: 10, 429: 40}, (protocol, statuses(answers))
        refused = [a for a in answers if a.status_code == 429]
        for r in refused:
            message = assert_refusal(protocol, r, 429)
            assert "10 requests per minute" in message, message
            assert int(r.headers["retry-after"]) <= 60


def test_max_concurrent_admits_exactly_that_many_in_flight(limited):
    gateway = limited(scenario=SLOW, max_concurrent=5)
    for protocol in PROTOCOLS:
        answers = burst(gateway, protocol, f"sk-k-{protocol}")
        assert statuses(answers) == {200: 5, 429: 45}, (protocol, statuses(answers))
        for r in answers:
            if r.status_code == 429:
                assert "in flight" in assert_refusal(protocol, r, 429)
        # The slots came back with the answers.
        assert send(gateway, protocol, f"sk-k-{protocol}").status_code == 200


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tpm_admits_exactly_what_the_estimates_fit_then_counts_real_usage(start_gateway, protocol):
    gateway = start_gateway(accounts=accounts(), scenario=SLOW, pool={"max_concurrent_per_account": 30})
    model = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-3-flash"}[protocol]
    estimate = -(-len(body_bytes(protocol, model)) // 4)
    set_keys(gateway, [{"name": "t", "key": "sk-t", "tpm": 7 * estimate + estimate - 1}])
    answers = burst(gateway, protocol, "sk-t")
    assert statuses(answers) == {200: 7, 429: 43}, statuses(answers)
    for r in answers:
        if r.status_code == 429:
            assert "tokens per minute" in assert_refusal(protocol, r, 429)
    # The reservations were replaced by the upstream's usage: /admin/keys shows it, nothing reserved.
    keys = httpx.get(gateway.admin_url + "/admin/keys", timeout=10).json()["keys"]
    usage = next(k for k in keys if k["name"] == "t")["usage"]
    assert usage["in_flight"] == 0 and usage["reserved_tokens"] == 0, usage
    assert usage["requests_last_minute"] == 7 and usage["tokens_last_minute"] > 0, usage


def test_a_daily_budget_refuses_with_its_name_and_reset_time(limited):
    gateway = limited(scenario=SLOW)
    for protocol in PROTOCOLS:
        model = {"openai": "gpt-4o", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-3-flash"}[protocol]
        estimate = -(-len(body_bytes(protocol, model)) // 4)
        key = "sk-b"
        # A fresh key name per protocol: the budget counts a whole day.
        set_keys(gateway, [{"name": f"b-{protocol}", "key": key, "budget": {"daily_tokens": 3 * estimate}}],
                 time_zone="UTC")
        answers = burst(gateway, protocol, key)
        assert statuses(answers) == {200: 3, 429: 47}, (protocol, statuses(answers))
        now = time.time()
        midnight = (int(now) // 86400 + 1) * 86400
        for r in answers:
            if r.status_code == 429:
                message = assert_refusal(protocol, r, 429)
                assert "daily budget" in message and "resets at" in message, message
                assert "T00:00:00+00:00" in message, message
                assert abs(int(r.headers["retry-after"]) - (midnight - now)) < 30, r.headers


def test_a_model_outside_the_allow_list_is_403_and_allowed_ones_pass(limited):
    gateway = limited(models=["gemini-3-flash", "gpt-4o"])
    for protocol in PROTOCOLS:
        allowed = {"openai": "gpt-4o", "anthropic": "gemini-3-flash", "gemini": "gemini-3-flash"}[protocol]
        denied = {"openai": "gpt-4.1", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-pro"}[protocol]
        answers = burst(gateway, protocol, f"sk-k-{protocol}", [allowed, denied] * (CLIENTS // 2))
        assert statuses(answers) == {200: 25, 403: 25}, (protocol, statuses(answers))
        for r in answers[1::2]:
            message = assert_refusal(protocol, r, 403)
            assert denied in message and "gemini-3-flash" in message, message


@pytest.mark.parametrize("state", ["expired", "disabled"])
def test_an_expired_or_disabled_key_is_403_everywhere(limited, state):
    limits = {"expires_at": "2020-01-01T00:00:00Z"} if state == "expired" else {"enabled": False}
    gateway = limited(**limits)
    before = model_calls(gateway)
    for protocol in PROTOCOLS:
        answers = burst(gateway, protocol, f"sk-k-{protocol}")
        assert statuses(answers) == {403: 50}, (protocol, statuses(answers))
        message = assert_refusal(protocol, answers[0], 403)
        assert ("expired at 2020-01-01" if state == "expired" else "is disabled") in message, message
    # Also the routes without an upstream call.
    r = httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": "Bearer sk-k-openai"})
    assert r.status_code == 403, r.text
    assert model_calls(gateway) == before, "a refused request never reaches the upstream"


# ---------------------------------------------------------------------------------------------------------------
# Reload


def test_a_reload_applies_a_new_limit_at_once_and_keeps_the_counters(limited):
    gateway = limited(rpm=5)
    for _ in range(3):
        assert send(gateway, "openai", "sk-k-openai").status_code == 200
    # Tightened below what was already counted this minute: the very next request is refused.
    set_keys(gateway, protocol_keys("k", rpm=3))
    r = send(gateway, "openai", "sk-k-openai")
    assert_refusal("openai", r, 429)
    # Loosened: the same three counted requests, room for five more, not a fresh minute's worth.
    set_keys(gateway, protocol_keys("k", rpm=8))
    answers = burst(gateway, "openai", "sk-k-openai")
    assert statuses(answers) == {200: 5, 429: 45}, statuses(answers)
    keys = httpx.get(gateway.admin_url + "/admin/keys", timeout=10).json()
    entry = next(k for k in keys["keys"] if k["name"] == "k-openai")
    assert entry["limits"]["rpm"] == 8 and entry["usage"]["requests_last_minute"] == 8, entry
    config = httpx.get(gateway.admin_url + "/admin/config", timeout=10).json()["auth"]
    shown = next(k for k in config["api_keys"] if k["name"] == "k-openai")
    assert shown["key"] == "<set>" and shown["limits"]["rpm"] == 8, shown
    check = subprocess.run([str(levitate_bin()), "check", "-c", str(gateway.config_path)], capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0 and "3 key(s) with limits (budgets count days in UTC)" in check.stdout, check


# ---------------------------------------------------------------------------------------------------------------
# Every endpoint that calls the upstream is admitted the same way


OPENAI_ENDPOINTS = {
    "responses": ("/v1/responses", lambda model: {"model": model, "input": "Count to three, please."}),
    "completions": ("/v1/completions", lambda model: {"model": model, "prompt": "Count to three, please."}),
    "images": ("/v1/images/generations", lambda model: {"model": model, "prompt": "a red square", "size": "1024x1024"}),
}


def post_openai(gateway: Gateway, key: str, endpoint: str, model: str) -> httpx.Response:
    path, body = OPENAI_ENDPOINTS[endpoint]
    return httpx.post(gateway.base_url + path, json=body(model), headers={"Authorization": f"Bearer {key}"}, timeout=60.0)


@pytest.mark.parametrize("endpoint", sorted(OPENAI_ENDPOINTS))
def test_other_openai_endpoints_obey_the_allow_list_and_rpm(start_gateway, endpoint):
    gateway = start_gateway(accounts=accounts(), pool={"max_concurrent_per_account": 30})
    allowed = "gemini-3.1-flash-image" if endpoint == "images" else "gemini-3-flash"
    denied = "gpt-image-1" if endpoint == "images" else "claude-sonnet-4-6"
    set_keys(gateway, [{"name": "narrow", "key": "sk-narrow", "models": [allowed], "rpm": 2}])
    before = model_calls(gateway)
    refused = post_openai(gateway, "sk-narrow", endpoint, denied)
    message = assert_refusal("openai", refused, 403)
    assert denied in message, message
    assert model_calls(gateway) == before, "a refused request never reaches the upstream"
    assert [post_openai(gateway, "sk-narrow", endpoint, allowed).status_code for _ in range(2)] == [200, 200]
    limited_answer = post_openai(gateway, "sk-narrow", endpoint, allowed)
    assert "2 requests per minute" in assert_refusal("openai", limited_answer, 429)
