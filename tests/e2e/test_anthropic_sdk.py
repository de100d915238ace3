"""The official Anthropic Python SDK, pointed at Levitate, gets what it would get from Anthropic.

Each test is one user story: a client that only knows the Messages API talks to the gateway, and the simulator
behind it plays Cloud Code's `v1internal`, validating thought signatures the way Google does (a Claude model
rejects a signature it did not issue; a Gemini 3 model rejects a corrupted one). So a multi-turn conversation
that succeeds proves the signatures made the round trip, and a tampered one must come back as an error.
"""

from __future__ import annotations

import anthropic
import httpx
import pytest

from clients import count_tokens_error
from clients.payloads import forged_gemini_signature, tamper_signature, tiny_png_base64
from conftest import API_KEY, Gateway

WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
        "additionalProperties": False,
    },
}
THINKING = {"type": "enabled", "budget_tokens": 1024}
# Client model -> the upstream model conf/routes.yaml sends it to.
THINKING_MODELS = {"claude-sonnet-4-5": "claude-sonnet-4-6", "gemini-3-flash": "gemini-3-flash"}


def client(gateway: Gateway, **kwargs) -> anthropic.Anthropic:
    kwargs.setdefault("timeout", 60.0)
    kwargs.setdefault("max_retries", 0)  # a retry would hide the gateway's first answer
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=kwargs.pop("api_key", API_KEY), **kwargs)


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def upstream_statuses(gateway: Gateway, model: str) -> dict:
    return gateway.stats()["models"].get(model, {}).get("by_status", {})


def assert_anthropic_error(error: anthropic.APIStatusError, status: int, kind: str) -> str:
    """The SDK raised for `status` and the body is Anthropic's error envelope of type `kind`; returns the message."""
    body = error.body
    assert error.status_code == status, f"expected {status}, got {error.status_code}: {body}"
    assert isinstance(body, dict) and body.get("type") == "error", f"not an Anthropic error body: {body!r}"
    inner = body.get("error")
    assert isinstance(inner, dict), f"not an Anthropic error body: {body!r}"
    assert inner.get("type") == kind, f"expected error type {kind!r} for {status}: {body}"
    assert isinstance(inner.get("message"), str) and inner["message"], f"error without a message: {body}"
    return inner["message"]


def raw_messages(gateway: Gateway, body: dict, key: str = API_KEY, path: str = "/v1/messages") -> httpx.Response:
    """A request the SDK would refuse to build (missing fields), sent as Anthropic clients send it."""
    headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    return httpx.post(gateway.base_url + path, json=body, headers=headers, timeout=60.0)


def assert_raw_anthropic_error(response: httpx.Response, status: int, kind: str) -> str:
    assert response.status_code == status, f"expected {status}, got {response.status_code}: {response.text}"
    body = response.json()
    assert body.get("type") == "error" and isinstance(body.get("error"), dict), f"not Anthropic-shaped: {body}"
    assert body["error"].get("type") == kind, f"expected {kind!r}: {body}"
    assert body["error"].get("message"), body
    return body["error"]["message"]


# ---------------------------------------------------------------------------------------------------------------
# Plain messages


def test_a_message_comes_back_in_anthropic_shape(gateway: Gateway):
    reply = client(gateway).messages.create(
        model="claude-sonnet-4-5", max_tokens=512,
        messages=[{"role": "user", "content": "What is Levitate? [sim:text]"}])

    assert reply.type == "message" and reply.role == "assistant"
    assert reply.id.startswith("msg_"), reply.id
    assert reply.model == "claude-sonnet-4-5", "the client's own model name comes back"
    assert reply.stop_reason == "end_turn"
    assert [b.type for b in reply.content] == ["text"]
    assert text_of(reply).startswith("Echo: What is Levitate?"), text_of(reply)
    assert reply.usage.input_tokens > 0 and reply.usage.output_tokens > 0
    sent = gateway.stats()["recent"][-1]
    assert sent["model"] == "claude-sonnet-4-6", "claude-sonnet-4* is routed by conf/routes.yaml"


def test_a_system_prompt_and_stop_sequences_are_honoured(gateway: Gateway):
    reply = client(gateway).messages.create(
        model="claude-sonnet-4-5", max_tokens=512, system="You are terse.", stop_sequences=["STOPHERE"],
        messages=[{"role": "user", "content": "Repeat: alpha beta STOPHERE gamma [sim:text]"}])

    # Gemini's finishReason is STOP for a stop sequence too and does not say which one matched, so the gateway
    # cannot tell `stop_sequence` from `end_turn`; what matters is that the answer was cut there.
    assert reply.stop_reason in ("end_turn", "stop_sequence"), reply
    assert "alpha beta" in text_of(reply) and "gamma" not in text_of(reply), text_of(reply)


def test_the_web_search_tool_is_sent_as_a_google_search_request(gateway: Gateway):
    reply = client(gateway).messages.create(
        model="gemini-3-flash", max_tokens=512,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 3}],
        messages=[{"role": "user", "content": "Latest Levitate release? [sim:text]"}])

    assert reply.stop_reason == "end_turn" and text_of(reply), reply
    sent = gateway.stats()["recent"][-1]
    assert sent["requestType"] == "web_search", sent
    client(gateway).messages.create(model="gemini-3-flash", max_tokens=64,
                                    messages=[{"role": "user", "content": "hi [sim:text]"}])
    assert gateway.stats()["recent"][-1]["requestType"] == "agent"


def test_the_stream_accumulator_rebuilds_the_same_message(gateway: Gateway):
    sdk = client(gateway)
    messages = [{"role": "user", "content": "Tell me about streaming. [sim:text] [sim:words=60]"}]
    whole = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=messages)

    with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, messages=messages) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) >= 2, f"a stream should arrive in several text deltas: {pieces}"
    assert "".join(pieces) == text_of(final), "text_stream and the accumulated message disagree"
    assert text_of(final) == text_of(whole), "streamed and whole answers to the same prompt differ"
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0
    assert final.model == "claude-sonnet-4-5"


def test_a_streamed_tool_call_arrives_as_a_tool_use_block(gateway: Gateway):
    with client(gateway).messages.stream(
            model="claude-sonnet-4-5", max_tokens=1024, tools=[WEATHER_TOOL],
            messages=[{"role": "user", "content": "Weather in Paris?"}]) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()

    assert final.stop_reason == "tool_use"
    calls = [b for b in final.content if b.type == "tool_use"]
    assert len(calls) == 1, final.content
    assert calls[0].name == "get_weather" and isinstance(calls[0].input.get("city"), str), calls[0]
    assert calls[0].id
    assert "input_json" in events, f"tool input should stream as input_json_delta: {events}"
    assert events[-1] == "message_stop", events


def test_an_image_block_reaches_the_model(gateway: Gateway):
    reply = client(gateway).messages.create(
        model="claude-sonnet-4-5", max_tokens=512,
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": tiny_png_base64()}},
            {"type": "text", "text": "What colour is this square? [sim:text]"},
        ]}])

    assert reply.stop_reason == "end_turn"
    assert "What colour is this square?" in text_of(reply)
    assert upstream_statuses(gateway, "claude-sonnet-4-6") == {"200": 1}
    # The upstream charges for the image: the prompt is far larger than the dozen tokens of text.
    counted = client(gateway).messages.count_tokens(
        model="claude-sonnet-4-5",
        messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": tiny_png_base64()}},
            {"type": "text", "text": "What colour is this square?"},
        ]}])
    assert counted.input_tokens > 100, f"an image should count as many tokens, got {counted.input_tokens}"


# ---------------------------------------------------------------------------------------------------------------
# Thinking and tools across turns: signatures make the round trip


def converse(sdk: anthropic.Anthropic, stream: bool, **request):
    """One turn, whole or streamed through the SDK's accumulator; returns (message, event types)."""
    if not stream:
        return sdk.messages.create(**request), []
    with sdk.messages.stream(**request) as s:
        events = [event.type for event in s]
        return s.get_final_message(), events


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("model", list(THINKING_MODELS))
def test_thinking_and_tool_use_over_three_turns(gateway: Gateway, model: str, stream: bool):
    """The client sends back every assistant turn as it got it (thinking blocks with their signatures, tool_use)
    plus its tool_result. Claude rejects a thinking block it did not sign and Gemini 3 a history call without
    its signature, so three successful turns mean the gateway carried both all the way."""
    sdk = client(gateway)
    upstream = THINKING_MODELS[model]
    request = dict(model=model, max_tokens=4096, thinking=THINKING, tools=[WEATHER_TOOL])
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Paris?"}]

    # Turn 1: thinking, then a tool call.
    first, events = converse(sdk, stream, messages=messages, **request)
    assert first.stop_reason == "tool_use", first
    kinds = [b.type for b in first.content]
    assert kinds[0] == "thinking" and kinds[-1] == "tool_use", kinds
    thinking = [b for b in first.content if b.type == "thinking"]
    assert all(b.thinking.strip() for b in thinking), "thinking blocks carry the model's thoughts"
    if upstream.startswith("claude"):
        assert thinking[-1].signature, "Claude thinking blocks must carry a signature for the next turn"
        if stream:
            assert "signature" in events, f"a signature_delta should close the thinking block: {events}"
    if stream:
        assert "thinking" in events, f"thinking should stream as thinking_delta: {events}"
    call = first.content[-1]
    assert call.name == "get_weather" and isinstance(call.input["city"], str)

    # Turn 2: the whole assistant turn back, the tool result, and a request that makes the model call again.
    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": call.id, "content": "sunny-21"},
            {"type": "text", "text": "Now London as well. [sim:tool]"},
        ]},
    ]
    second, _ = converse(sdk, stream, messages=messages, **request)
    assert second.stop_reason == "tool_use", second
    second_call = second.content[-1]
    assert second_call.type == "tool_use" and second_call.id != call.id

    # Turn 3: both turns back, the second result: a final answer that saw it.
    messages += [
        {"role": "assistant", "content": second.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": second_call.id, "content": "rain-12"}]},
    ]
    third, _ = converse(sdk, stream, messages=messages, **request)
    assert third.stop_reason == "end_turn", third
    assert "rain-12" in text_of(third), f"the tool result did not reach the model: {text_of(third)!r}"
    assert upstream_statuses(gateway, upstream) == {"200": 3}, "the upstream refused a turn (signature?)"


def test_a_claude_turn_whose_client_dropped_the_signature_still_works(gateway: Gateway):
    """Some clients keep the thinking text but lose the signature; the gateway finds it again by the text."""
    sdk = client(gateway)
    request = dict(model="claude-sonnet-4-5", max_tokens=4096, thinking=THINKING, tools=[WEATHER_TOOL])
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Rome?"}]
    first = sdk.messages.create(messages=messages, **request)
    content = [b.model_dump(exclude_none=True) for b in first.content]
    for block in content:
        if block["type"] == "thinking":
            block["signature"] = ""
    call = first.content[-1]
    messages += [{"role": "assistant", "content": content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "hot-35"}]}]

    second = sdk.messages.create(messages=messages, **request)

    assert "hot-35" in text_of(second)
    assert upstream_statuses(gateway, "claude-sonnet-4-6") == {"200": 2}


@pytest.mark.parametrize("model", list(THINKING_MODELS))
def test_a_tampered_signature_is_an_anthropic_error_not_a_success(gateway: Gateway, model: str):
    """The counter-proof of the round trip: a signature the upstream did not issue is refused, and the client
    gets Anthropic's invalid_request_error, not a 200 and not Google's error shape."""
    sdk = client(gateway)
    upstream = THINKING_MODELS[model]
    request = dict(model=model, max_tokens=4096, thinking=THINKING, tools=[WEATHER_TOOL])
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Oslo?"}]
    first = sdk.messages.create(messages=messages, **request)
    content = [b.model_dump(exclude_none=True) for b in first.content]
    thinking = [b for b in content if b["type"] == "thinking"]
    assert thinking, content
    for block in thinking:
        # Claude hands out signatures; Gemini signs its call instead, so give its thought a forged one.
        block["signature"] = tamper_signature(block["signature"]) if block["signature"] else forged_gemini_signature()
    call = first.content[-1]
    messages += [{"role": "assistant", "content": content},
                 {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "cold"}]}]

    with pytest.raises(anthropic.BadRequestError) as raised:
        sdk.messages.create(messages=messages, **request)

    message = assert_anthropic_error(raised.value, 400, "invalid_request_error")
    assert "signature" in message.lower(), message
    assert upstream_statuses(gateway, upstream).get("400") == 1, "the upstream should have judged the signature"


def test_claudes_own_error_message_reaches_the_client_unwrapped(gateway: Gateway):
    """Google relays a Claude refusal as Anthropic's error JSON inside its own `error.message` (PROTOCOL.md §5,
    with a `req_vrtx_…` id). An Anthropic client should read Claude's message, as from Anthropic, not a JSON
    document inside the message string."""
    sdk = client(gateway)
    request = dict(model="claude-sonnet-4-5", max_tokens=4096, thinking=THINKING, tools=[WEATHER_TOOL])
    messages: list[dict] = [{"role": "user", "content": "What is the weather in Lima?"}]
    first = sdk.messages.create(messages=messages, **request)
    content = [b.model_dump(exclude_none=True) for b in first.content]
    for block in content:
        if block["type"] == "thinking":
            block["signature"] = tamper_signature(block["signature"])
    messages += [{"role": "assistant", "content": content}, {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": first.content[-1].id, "content": "warm"}]}]

    with pytest.raises(anthropic.BadRequestError) as raised:
        sdk.messages.create(messages=messages, **request)

    message = assert_anthropic_error(raised.value, 400, "invalid_request_error")
    assert not message.lstrip().startswith("{"), f"Claude's error is still wrapped in JSON: {message!r}"
    assert "Invalid `signature` in `thinking` block" in message, message


# ---------------------------------------------------------------------------------------------------------------
# count_tokens


def test_count_tokens_grows_with_the_prompt(gateway: Gateway):
    sdk = client(gateway)
    sentence = "The quick brown fox jumps over the lazy dog near the riverbank. "

    def count(text: str, **extra) -> int:
        return sdk.messages.count_tokens(
            model="claude-sonnet-4-5", messages=[{"role": "user", "content": text}], **extra).input_tokens

    short, long = count(sentence * 5), count(sentence * 50)
    assert short > 0 and long > 0
    assert 7 <= long / short <= 13, f"10x the text should count about 10x the tokens: {short} vs {long}"
    # Roughly 4 characters per English token: 3,200 characters are 500-1,300 tokens.
    assert 500 <= long <= 1300, long
    assert count(sentence, system="You are a meticulous assistant. " * 20) > count(sentence) + 50
    assert count(sentence, tools=[WEATHER_TOOL]) > count(sentence) + 20
    # count_tokens is answered without spending an upstream request.
    assert gateway.stats()["totals"]["requests"] == 0


def test_count_tokens_on_the_beta_path_and_without_max_tokens(gateway: Gateway):
    """Claude Code calls `/v1/messages/count_tokens?beta=true` with no max_tokens."""
    r = raw_messages(gateway, {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]},
                     path="/v1/messages/count_tokens?beta=true")
    assert r.status_code == 200, r.text
    assert r.json()["input_tokens"] > 0


# Bounds on the local estimate's mean |relative error| over the text items of clients/count_tokens_error.py's
# corpus, set just above what was measured (README/docs quote the measured values): 24% against the upstream's
# countTokens as relayed by the gateway (levitate-sim: UTF-8 bytes / 4), 49% against Gemini's vocabulary, 37%
# against Anthropic's published tokenizer. Short prompts (per-message overhead), tool schemas (over) and
# markup/URLs/hashes (under) are the largest misses. Images are a flat 1,600 tokens: never under Anthropic's
# documented cost, far over it for small images.
MAX_MEAN_ERROR = {"sim": 0.30, "gemini": 0.55, "claude": 0.45}
MAX_UNDERCOUNT = -0.50  # no text item may be counted at less than half of Anthropic's tokenizer


def test_count_tokens_estimator_error_is_within_its_documented_bound(gateway: Gateway):
    rows = count_tokens_error.measure(gateway.base_url, API_KEY)
    report = count_tokens_error.table(rows)
    print("\n" + report)

    assert len(rows) >= 30
    assert all(row.estimate > 0 for row in rows), report
    references = ["sim"] + (["gemini", "claude"] if rows[0].gemini is not None else [])
    if len(references) == 1:
        print("node reference tokenizers not installed (tests/e2e/clients/node): measured against the upstream only")
    for reference in references:
        error = count_tokens_error.mean_abs_error(rows, reference, images=False)
        assert error <= MAX_MEAN_ERROR[reference], f"mean error vs {reference} {error:.1%}\n{report}"
    if "claude" in references:
        worst = min(row.error("claude") for row in rows if not row.name.startswith(("image", "two-images")))
        assert worst >= MAX_UNDERCOUNT, f"an item is under-counted by {worst:.0%}\n{report}"
        images = [row for row in rows if row.name.startswith(("image", "two-images"))]
        assert images and all(row.error("claude") >= 0 for row in images), f"an image is under-counted\n{report}"
    # The Gemini relay reached the upstream's countTokens once per text item.
    assert gateway.stats()["totals"]["count_tokens"] == sum(row.sim is not None for row in rows)


# ---------------------------------------------------------------------------------------------------------------
# Errors in Anthropic's shape, one type per status


def test_a_wrong_key_is_an_authentication_error(gateway: Gateway):
    with pytest.raises(anthropic.AuthenticationError) as raised:
        client(gateway, api_key="sk-ant-wrong").messages.create(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert_anthropic_error(raised.value, 401, "authentication_error")
    assert gateway.stats()["totals"]["requests"] == 0, "a refused key must not reach the upstream"


def test_a_missing_max_tokens_is_an_invalid_request_error(gateway: Gateway):
    r = raw_messages(gateway, {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}]})
    message = assert_raw_anthropic_error(r, 400, "invalid_request_error")
    assert "max_tokens" in message, message


def test_an_unknown_model_without_a_default_route_is_not_found(start_gateway):
    gateway = start_gateway(routes={"models": ["claude-sonnet-4-6", "gemini-3-flash"],
                                    "aliases": {"claude-sonnet-4*": "claude-sonnet-4-6"}})
    with pytest.raises(anthropic.NotFoundError) as raised:
        client(gateway).messages.create(model="mystery-model-9", max_tokens=64,
                                        messages=[{"role": "user", "content": "hi"}])
    assert_anthropic_error(raised.value, 404, "not_found_error")
    # The aliases still work on the same gateway.
    reply = client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                            messages=[{"role": "user", "content": "hi [sim:text]"}])
    assert text_of(reply)


def test_upstream_rate_limits_become_rate_limit_errors(gateway: Gateway):
    with pytest.raises(anthropic.RateLimitError) as raised:
        client(gateway).messages.create(model="claude-sonnet-4-5", max_tokens=64,
                                        messages=[{"role": "user", "content": "hi [sim:fault=rate_limit]"}])
    assert_anthropic_error(raised.value, 429, "rate_limit_error")
    assert raised.value.response.headers.get("retry-after"), "a 429 should say when to come back"


def test_a_streamed_request_that_fails_upstream_is_an_anthropic_error(gateway: Gateway):
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client(gateway).messages.stream(
                model="claude-sonnet-4-5", max_tokens=64,
                messages=[{"role": "user", "content": "hi [sim:fault=capacity]"}]) as stream:
            list(stream)
    error = raised.value
    assert error.status_code in (503, 529), error
    assert_anthropic_error(error, error.status_code, "overloaded_error")
