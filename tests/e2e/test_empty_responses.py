"""Google now and then answers 200 with a stream that carries no parts at all (PROTOCOL.md §2). The gateway
does not pass such an answer on while `pool.max_attempts` allows another attempt: the request moves to another
account (no lockout), and only when attempts run out does the client get the well-formed empty end.

Each test starts the simulator with a per-account fault, sends requests through the gateway, and judges by
what the client saw and by how many attempts the simulator saw.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest

from conftest import Account, Gateway


def account(name: str, tier: str = "g1-pro-tier") -> Account:
    return Account(email=f"{name}@empty.e2e", tier=tier, project_id=f"empty-{name}")


def sse_payloads(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an SSE response, in order."""
    return [line[len("data:"):].strip() for line in response.iter_lines() if line.startswith("data:")]


def openai_stream(gw: Gateway, text: str, **extra) -> tuple[str, list[dict], list[str]]:
    """Streams one chat completion; returns (content, chunks, raw payloads)."""
    body = {"model": "gemini-3-flash", "messages": [{"role": "user", "content": text}], "stream": True, **extra}
    with gw.http.stream("POST", "/v1/chat/completions", json=body) as r:
        assert r.status_code == 200, r.read().decode()
        assert r.headers["content-type"].startswith("text/event-stream")
        payloads = sse_payloads(r)
    chunks = [json.loads(p) for p in payloads if p != "[DONE]"]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    return content, chunks, payloads


def retries_for_empty_answers(gw: Gateway) -> float:
    match = re.search(r'^levitate_upstream_retries_total\{cause="empty_response"\} (\S+)$', gw.metrics(), re.M)
    return float(match.group(1)) if match else 0.0


def admin_account(gw: Gateway, email: str) -> dict:
    r = httpx.get(gw.admin_url + "/admin/accounts", timeout=10.0)
    r.raise_for_status()
    return next(a for a in r.json()["accounts"] if a["email"] == email)


# The ways an upstream 200 can end before any part: one chunk without parts, or no chunk at all, ended cleanly
# or by a broken connection.
EMPTY_FAULTS = {
    "empty_response": {"kind": "empty_response"},
    "cut_before_any_chunk": {"kind": "stream_cut", "after_chunks": 0},
    "broken_before_any_chunk": {"kind": "stream_cut", "after_chunks": 0, "abort": True},
}


@pytest.mark.parametrize("fault", list(EMPTY_FAULTS))
def test_an_empty_answer_moves_to_another_account_and_the_client_gets_a_real_one(start_gateway, fault):
    """The preferred (ultra) account answers every request empty: streaming and non-streaming OpenAI clients
    and a streaming Anthropic client all get the real answer from the other account. The empty account was
    tried once per request, is not locked out, and the retries are counted under cause="empty_response"."""
    hollow, steady = account("hollow", "g1-ultra-tier"), account("steady", "g1-pro-tier")
    gw = start_gateway(accounts=[hollow, steady],
                       scenario={"faults": [dict(EMPTY_FAULTS[fault], account=hollow.email)]})

    content, chunks, payloads = openai_stream(gw, "stream me an answer")
    assert content.startswith("Echo: stream me an answer"), content
    assert payloads[-1] == "[DONE]"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "stop"

    r = gw.chat("fold me an answer", model="gemini-3-flash")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: fold me an answer")
    assert r.json()["choices"][0]["finish_reason"] == "stop"

    body = {"model": "gemini-3-flash", "max_tokens": 256, "stream": True,
            "messages": [{"role": "user", "content": "an Anthropic client asks"}]}
    with gw.http.stream("POST", "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}) as r:
        assert r.status_code == 200, r.read().decode()
        events = [json.loads(p) for p in sse_payloads(r)]
    text = "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")
    assert text.startswith("Echo: an Anthropic client asks"), events
    assert events[-1]["type"] == "message_stop"

    stats = gw.stats()["accounts"]
    assert stats[hollow.email]["requests"] == 3, "each request tried the empty account once, first"
    assert stats[steady.email]["requests"] == 3, "and was answered by the other one"
    assert retries_for_empty_answers(gw) == 3
    status = admin_account(gw, hollow.email)
    assert status["lockouts"] == [] and status["state"] == "ready", status
    assert status["in_flight"] == 0


def test_when_every_account_answers_empty_the_client_gets_a_well_formed_end_after_max_attempts(start_gateway):
    """Both accounts answer empty and pool.max_attempts is 3: the simulator sees exactly 3 attempts per request
    (the second account, then back to the first), and the client gets what the last one produced: an OpenAI
    stream that still ends with a finish_reason and [DONE], or a complete chat.completion."""
    accounts = [account("void1"), account("void2")]
    gw = start_gateway(accounts=accounts, pool={"max_attempts": 3},
                       scenario={"faults": [{"kind": "empty_response"}]})

    content, chunks, payloads = openai_stream(gw, "is anyone there?", stream_options={"include_usage": True})
    assert content == ""
    assert payloads[-1] == "[DONE]", payloads
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")]
    assert finishes[-1] == "length", chunks
    assert chunks[-1]["usage"] is not None, "the usage chunk still closes the stream"
    stats = gw.stats()
    assert stats["totals"]["requests"] == 3, stats["totals"]
    assert sorted(a["requests"] for a in stats["accounts"].values()) == [1, 2]

    gw.sim.reset_stats()
    r = gw.chat("and without streaming?", model="gemini-3-flash")
    assert r.status_code == 200, r.text
    choice = r.json()["choices"][0]
    assert choice["finish_reason"] == "length" and not choice["message"]["content"], r.json()
    assert gw.stats()["totals"]["requests"] == 3
    assert retries_for_empty_answers(gw) == 4, "two retries per request; the last attempt is answered"


def test_an_error_inside_an_accepted_stream_moves_to_another_account(start_gateway):
    """The ultra account accepts the stream, then sends an error event before any content. Nothing has reached
    the client, so the request goes to the other account: streaming and non-streaming clients get a real
    answer, and the retry is counted under cause="stream_error". With every account failing that way the
    client gets a clean OpenAI-shaped 503, never the upstream's body."""
    failing, steady = account("failing", "g1-ultra-tier"), account("steady2", "g1-pro-tier")
    gw = start_gateway(accounts=[failing, steady],
                       scenario={"faults": [{"kind": "stream_error", "account": failing.email}]})

    content, _, payloads = openai_stream(gw, "stream despite the error")
    assert content.startswith("Echo: stream despite the error"), content
    assert payloads[-1] == "[DONE]"
    r = gw.chat("fold despite the error", model="gemini-3-flash")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("Echo: fold despite the error")
    match = re.search(r'^levitate_upstream_retries_total\{cause="stream_error"\} (\S+)$', gw.metrics(), re.M)
    assert match and float(match.group(1)) == 2.0, gw.metrics()

    gw.set_faults([{"kind": "stream_error"}])
    r = gw.chat("nobody can answer", model="gemini-3-flash")
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["type"] and "UNAVAILABLE" not in r.text and "@type" not in r.text, r.text
    gw.clear_faults()
    gw.assert_serves()
