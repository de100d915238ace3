"""Hostile request bodies get a bounded answer quickly while a polite client keeps being served.

Each attack is sent from a thread while the main thread keeps making ordinary requests; every polite request
must succeed, and every attack must get its 400/413 (in OpenAI's error shape) within ATTACK_BOUND seconds,
measured on the debug build. Raw HTTP on purpose: an SDK would refuse to build most of these bodies.
"""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from conftest import API_KEY, Gateway, assert_openai_error

# Generous for a debug build on two busy cores; before the bounds, the 1M-entry enum alone took minutes.
ATTACK_BOUND = 10.0


def enum_body(values: int) -> bytes:
    enum = ",".join(f'"v{i}"' for i in range(values))
    return ('{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",'
            '"function":{"name":"pick","parameters":{"type":"object","properties":{"choice":'
            f'{{"type":"string","enum":[{enum}]}}}}}}}}}}]}}').encode()


def clashing_tools_body(count: int) -> bytes:
    # Distinct names that all sanitize to the same upstream name `t__`.
    names = [f"t{chr(0x4E00 + i // 200)}{chr(0x4E00 + i % 200)}" for i in range(count)]
    tools = [{"type": "function", "function": {"name": name}} for name in names]
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}],
                       "tools": tools}).encode()


def long_model_body(size: int) -> bytes:
    return b'{"model":"' + b"m" * size + b'","messages":[{"role":"user","content":"hi"}]}'


def deep_body(depth: int) -> bytes:
    return (b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"metadata":'
            + b"[" * depth + b"]" * depth + b"}")


INVALID_UTF8 = b'{"model":"gpt-4o","messages":[{"role":"user","content":"caf\xc3\x28 \xff\xfe"}]}'

ATTACKS = [
    ("a 1M-entry enum", lambda: enum_body(1_000_000), (400, 413)),
    ("30,000 clashing tool names", lambda: clashing_tools_body(30_000), (400,)),
    ("a 30 MiB model name", lambda: long_model_body(30 * 1024 * 1024), (400, 413)),
    ("10,000-deep JSON", lambda: deep_body(10_000), (400,)),
    ("an invalid UTF-8 body", lambda: INVALID_UTF8, (400,)),
]


def attack(gateway: Gateway, body: bytes) -> tuple[httpx.Response | None, float, BaseException | None]:
    started = time.monotonic()
    try:
        with httpx.Client(base_url=gateway.base_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            response = client.post("/v1/chat/completions", content=body,
                                   headers={"Content-Type": "application/json"})
        return response, time.monotonic() - started, None
    except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
        return None, time.monotonic() - started, e


@pytest.mark.parametrize("why, build, statuses", ATTACKS, ids=[why for why, _, _ in ATTACKS])
def test_an_attack_gets_a_bounded_answer_while_a_polite_client_is_served(gateway: Gateway, why, build,
                                                                          statuses):
    body = build()
    result: list = []
    attacker = threading.Thread(target=lambda: result.append(attack(gateway, body)), daemon=True)
    attacker.start()
    polite = 0
    while attacker.is_alive() or polite < 3:
        response = gateway.chat("Are you still there?")
        assert response.status_code == 200, f"polite request failed during {why}: {response.text}"
        polite += 1
    attacker.join()

    response, took, error = result[0]
    assert error is None, f"{why}: {error!r}"
    print(f"{why}: {response.status_code} in {took:.2f}s, {polite} polite requests served meanwhile")
    assert response.status_code in statuses, f"{why}: {response.status_code} {response.text[:300]}"
    assert_openai_error(response, response.status_code)
    assert took < ATTACK_BOUND, f"{why} took {took:.2f}s (bound {ATTACK_BOUND}s)"
    assert gateway.sim.stats()["totals"]["requests"] == polite, f"{why} reached the upstream"


def test_a_long_model_name_in_a_gemini_path_is_a_400_in_gemini_shape(gateway: Gateway):
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    response = gateway.http.post(f"/v1beta/models/{'m' * 300}:generateContent", json=body)

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == 400 and error["status"] == "INVALID_ARGUMENT", error
    assert "at most 256" in error["message"], error
    ok = gateway.http.post("/v1beta/models/gemini-3-flash:generateContent", json=body)
    assert ok.status_code == 200, ok.text
    assert gateway.sim.stats()["totals"]["requests"] == 1
