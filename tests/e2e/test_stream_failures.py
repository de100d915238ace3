"""An upstream stream that fails after content has gone out must reach the client as a failure: an OpenAI SDK
user gets `APIError` from the iterator, not a `finish_reason: "length"` that reads like a complete (if short)
answer. A stream that the upstream ended *cleanly* without a finish reason (Google's silent cut) keeps the
documented `length` end (test_bad_input.py)."""

from __future__ import annotations

import json

import openai
import pytest

# The connection breaks after two chunks; the pause between chunks lets the content arrive before the reset
# (a reset discards what the receiver has not read yet, which would make it an empty answer instead).
BROKEN_AFTER_CONTENT = [{"kind": "stream_cut", "after_chunks": 2, "abort": True},
                        {"kind": "inter_chunk_delay", "delay_ms": 100}]


def test_a_stream_broken_after_content_raises_in_the_openai_sdk(start_gateway):
    gateway = start_gateway()
    gateway.set_faults(BROKEN_AFTER_CONTENT)

    client = gateway.openai()
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(
                model="gpt-4o", stream=True,
                messages=[{"role": "user", "content": "a long answer [sim:text] [sim:words=200]"}]):
            received.append(chunk)
    assert "upstream" in str(raised.value.message), raised.value
    assert received, "content went out before the failure"
    finishes = [c.choices[0].finish_reason for c in received if c.choices and c.choices[0].finish_reason]
    assert finishes == [], f"a failed stream must not claim a finish: {finishes}"

    gateway.clear_faults()
    gateway.assert_serves()


def test_the_raw_stream_ends_with_an_error_event_and_no_done(start_gateway):
    gateway = start_gateway()
    gateway.set_faults(BROKEN_AFTER_CONTENT)

    with gateway.http.stream("POST", "/v1/chat/completions", json={
            "model": "gpt-4o", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "a long answer [sim:text] [sim:words=200]"}]}) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]

    assert "[DONE]" not in events, events[-3:]
    last = json.loads(events[-1])
    assert last["error"]["type"] == "server_error" and last["error"]["message"], last
    assert any(json.loads(e).get("choices") for e in events[:-1]), "content came before the error"


def test_a_non_streaming_answer_broken_after_content_is_an_error_not_a_short_answer(start_gateway):
    gateway = start_gateway()
    gateway.set_faults(BROKEN_AFTER_CONTENT)

    r = gateway.chat("a long answer [sim:text] [sim:words=200]")
    assert r.status_code == 502, r.text
    assert r.json()["error"]["type"] == "server_error", r.text
