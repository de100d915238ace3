"""The official OpenAI Python SDK, pointed at Levitate, gets what it would get from OpenAI.

Each test is one user story: a client library that knows nothing about Google talks chat.completions to the
gateway, and the simulator behind it plays Cloud Code's `v1internal`.
"""

from __future__ import annotations

import json

import openai
import pytest

from conftest import API_KEY, Gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


def extra(obj, name: str):
    """A field the SDK does not model (like `reasoning_content`), kept in `model_extra`."""
    value = getattr(obj, name, None)
    if value is None and getattr(obj, "model_extra", None):
        value = obj.model_extra.get(name)
    return value


def collect_stream(stream) -> dict:
    """Reads a chat.completions stream to the end and folds it the way a client would."""
    out = {"content": "", "reasoning": "", "finish_reasons": [], "usage": None, "tool_calls": {},
           "order": [], "chunks": 0, "ids": set()}
    for chunk in stream:
        out["chunks"] += 1
        out["ids"].add(chunk.id)
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            out["usage"] = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            reasoning = extra(delta, "reasoning_content")
            if reasoning:
                out["reasoning"] += reasoning
                out["order"].append("reasoning")
            if delta.content:
                out["content"] += delta.content
                out["order"].append("content")
            for call in delta.tool_calls or []:
                slot = out["tool_calls"].setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] += call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            if choice.finish_reason:
                out["finish_reasons"].append(choice.finish_reason)
    return out


def test_a_plain_chat_completion_comes_back_in_openai_shape(gateway: Gateway):
    client = gateway.openai()

    reply = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is Levitate? [sim:text]"}])

    assert reply.object == "chat.completion"
    assert reply.id
    assert reply.model
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason == "stop"
    assert reply.usage.prompt_tokens > 0
    assert reply.usage.completion_tokens > 0
    assert reply.usage.prompt_tokens + reply.usage.completion_tokens == reply.usage.total_tokens
    upstream = gateway.sim.stats()
    assert upstream["accounts"][gateway.accounts[0].email]["by_status"] == {"200": 1}
    sent = upstream["recent"][-1]
    assert sent["model"] == "gemini-3-flash", "gpt-4o is routed by conf/routes.yaml"
    assert sent["project"] == gateway.accounts[0].project_id


def test_a_stream_with_usage_adds_up_to_the_same_answer(gateway: Gateway):
    client = gateway.openai()
    messages = [{"role": "user", "content": "Tell me about streaming. [sim:text]"}]
    whole = client.chat.completions.create(model="gpt-4o", messages=messages)

    stream = client.chat.completions.create(model="gpt-4o", messages=messages, stream=True,
                                            stream_options={"include_usage": True})
    got = collect_stream(stream)

    assert got["chunks"] >= 2, "a stream should arrive in several chunks"
    assert len(got["ids"]) == 1, f"every chunk of one stream carries one id: {got['ids']}"
    assert got["content"], "the streamed text is empty"
    assert got["content"] == whole.choices[0].message.content
    assert got["finish_reasons"] == ["stop"]
    usage = got["usage"]
    assert usage is not None, "stream_options.include_usage asked for a usage chunk"
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens


def test_a_stream_without_include_usage_has_no_usage_chunk(gateway: Gateway):
    stream = gateway.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Short answer please [sim:text]"}], stream=True)
    got = collect_stream(stream)
    assert got["content"]
    assert got["usage"] is None
    assert got["finish_reasons"] == ["stop"]


def test_reasoning_effort_streams_thoughts_before_the_answer(gateway: Gateway):
    stream = gateway.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Think about 17 * 23 [sim:text]"}],
        reasoning_effort="low", stream=True, stream_options={"include_usage": True})
    got = collect_stream(stream)

    assert got["reasoning"].strip(), "reasoning_effort should surface thoughts as delta.reasoning_content"
    assert got["content"].strip()
    assert got["order"][0] == "reasoning", "thoughts come before the answer"
    assert got["order"].index("content") > got["order"].index("reasoning")
    assert got["reasoning"] not in got["content"], "thoughts must not leak into content"
    assert got["finish_reasons"] == ["stop"]
    usage = got["usage"]
    assert usage is not None
    reasoning_tokens = usage.completion_tokens_details.reasoning_tokens if usage.completion_tokens_details else 0
    assert reasoning_tokens and reasoning_tokens > 0, f"reasoning tokens missing from usage: {usage}"
    assert usage.completion_tokens > reasoning_tokens, "completion_tokens includes reasoning tokens"
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens


def test_reasoning_effort_without_streaming_returns_reasoning_content(gateway: Gateway):
    reply = gateway.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Think about 6 * 7 [sim:text]"}],
        reasoning_effort="low")
    message = reply.choices[0].message
    reasoning = extra(message, "reasoning_content")
    assert reasoning and reasoning.strip(), f"no reasoning_content in {message}"
    assert message.content and reasoning not in message.content
    details = reply.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_a_tool_call_round_trip_keeps_the_thought_signature(gateway: Gateway, stream: bool):
    """The client runs the tool and sends the result back. Gemini 3 refuses a history function call without
    the thought signature it issued (400), and OpenAI clients never see signatures: the gateway must have
    remembered it and put it back."""
    client = gateway.openai()
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]

    if stream:
        got = collect_stream(client.chat.completions.create(
            model="gpt-4o", messages=messages, tools=[WEATHER_TOOL], stream=True))
        assert got["finish_reasons"] == ["tool_calls"]
        assert len(got["tool_calls"]) == 1, got["tool_calls"]
        call = got["tool_calls"][0]
        call_id, name, arguments = call["id"], call["name"], call["arguments"]
    else:
        first = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])
        assert first.choices[0].finish_reason == "tool_calls"
        calls = first.choices[0].message.tool_calls
        assert calls and len(calls) == 1, first
        assert calls[0].type == "function"
        call_id, name, arguments = calls[0].id, calls[0].function.name, calls[0].function.arguments

    assert call_id, "every tool call needs an id the client can answer"
    assert name == "get_weather"
    args = json.loads(arguments)
    assert isinstance(args, dict) and isinstance(args.get("city"), str), args

    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": call_id, "content": json.dumps({"forecast": "sunny-42"})},
    ]
    final = client.chat.completions.create(model="gpt-4o", messages=messages, tools=[WEATHER_TOOL])

    answer = final.choices[0].message.content
    assert final.choices[0].finish_reason == "stop"
    assert answer and "sunny-42" in answer, f"the tool result did not reach the model: {answer!r}"
    statuses = gateway.sim.stats()["totals"]["by_status"]
    assert statuses.get("400") is None, f"the upstream refused a request (missing signature?): {statuses}"
    assert statuses.get("200") == 2


def test_json_mode_returns_parseable_json(gateway: Gateway):
    reply = gateway.openai().chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Describe Paris as JSON [sim:text]"}],
        response_format={"type": "json_object"})
    content = reply.choices[0].message.content
    assert isinstance(json.loads(content), dict), content
    assert reply.choices[0].finish_reason == "stop"


def test_a_five_mebibyte_prompt_gets_an_answer(gateway: Gateway):
    line = "Levitate carries large prompts through to the upstream without truncating them. "
    prompt = (line * (5 * 1024 * 1024 // len(line) + 1))[: 5 * 1024 * 1024] + " [sim:text]"

    reply = gateway.openai(timeout=120.0).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}])

    assert reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 1_000_000, "the whole prompt should reach the upstream"


def test_a_wrong_api_key_is_an_authentication_error(gateway: Gateway):
    client = gateway.openai(api_key="not-" + API_KEY)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 401
    assert gateway.sim.stats()["totals"]["requests"] == 0, "an unauthenticated request reached the upstream"


def test_the_model_list_shows_upstream_models_and_aliases(gateway: Gateway):
    ids = {m.id for m in gateway.openai().models.list()}
    for expected in ("gemini-3-flash", "claude-sonnet-4-6", "gpt-4o", "gpt-4o-mini"):
        assert expected in ids, f"{expected} missing from {sorted(ids)}"
    assert not any("*" in i for i in ids), "wildcard patterns are not model names"
