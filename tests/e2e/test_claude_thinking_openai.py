"""A Claude thinking model through an OpenAI chat client keeps its thinking across a tool round trip.

An OpenAI chat client cannot carry Claude's signed thinking: it gets `reasoning_content` at most, and sends
back only `tool_calls`. With thinking on, Google (Vertex) wants every assistant tool turn to open with a
signed thought part, the signature on that part and not on the call (PROTOCOL.md §2 "Claude signature
placement", §9 rule 3). The simulator enforces exactly that, so a second turn that succeeds proves the
gateway restored the whole thinking block it captured on the first; a history it never saw must still be
served (the earlier tool turn goes up as text), never with a foreign signature or a sentinel.
"""

from __future__ import annotations

import json

import pytest

from conftest import Gateway

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"],
        },
    },
}

# (client model, extra request fields, upstream model): a `-thinking` model thinks by its name and shows no
# thoughts (the signature comes on its own); a plain Claude model thinks when `reasoning_effort` asks, and
# streams its thoughts with the signature on the last one.
CASES = {
    "thinking-model": ("claude-opus-4-6-thinking", {}, "claude-opus-4-6-thinking"),
    "reasoning-effort": ("claude-sonnet-4-6", {"reasoning_effort": "low"}, "claude-sonnet-4-6"),
}


def upstream_statuses(gateway: Gateway, model: str) -> dict:
    return gateway.stats()["models"].get(model, {}).get("by_status", {})


def first_turn(client, model: str, extra: dict, messages: list, stream: bool) -> dict:
    """Runs the first request; returns the one tool call as {"id", "name", "arguments"}."""
    if not stream:
        reply = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], **extra)
        assert reply.choices[0].finish_reason == "tool_calls", reply
        [call] = reply.choices[0].message.tool_calls
        return {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
    calls: dict = {}
    finish = []
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                                stream=True, **extra):
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                slot = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                slot["id"] = call.id or slot["id"]
                slot["name"] += call.function.name or ""
                slot["arguments"] += call.function.arguments or ""
            if choice.finish_reason:
                finish.append(choice.finish_reason)
    assert finish == ["tool_calls"], finish
    assert len(calls) == 1, calls
    return calls[0]


def answer(client, model: str, extra: dict, messages: list, stream: bool) -> str:
    if not stream:
        reply = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], **extra)
        return reply.choices[0].message.content or ""
    text = ""
    for chunk in client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL],
                                                stream=True, **extra):
        for choice in chunk.choices:
            text += choice.delta.content or ""
    return text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_claude_tool_round_trip_restores_the_signed_thinking_block(gateway: Gateway, case: str, stream: bool):
    model, extra, upstream = CASES[case]
    client = gateway.openai()
    messages: list = [{"role": "user", "content": "What is the weather in Paris?"}]

    call = first_turn(client, model, extra, messages, stream)
    assert call["name"] == "get_weather" and call["id"], call

    # The client sends back what OpenAI clients send: the call, without any thinking, and the result.
    messages += [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": call["arguments"]}}]},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"forecast": "sunny-42"})},
    ]
    text = answer(client, model, extra, messages, stream)

    assert "sunny-42" in text, f"the tool result did not reach the model: {text!r}"
    assert upstream_statuses(gateway, upstream) == {"200": 2}, "the upstream refused the replayed tool turn"


@pytest.mark.parametrize("case", list(CASES))
def test_a_tool_turn_the_gateway_never_saw_is_still_served(gateway: Gateway, case: str):
    """A history from elsewhere (another gateway, a restart with a wiped store): there is no thinking block to
    restore, and no signature Claude would accept, so the earlier tool turn goes up as plain text."""
    model, extra, upstream = CASES[case]
    client = gateway.openai()
    messages = [
        {"role": "user", "content": "What is the weather in Oslo?"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"id": "call_from_elsewhere", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo"})}}]},
        {"role": "tool", "tool_call_id": "call_from_elsewhere", "content": "snow-minus-3"},
    ]

    reply = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER_TOOL], **extra)

    assert reply.choices[0].finish_reason in ("stop", "tool_calls"), reply
    assert upstream_statuses(gateway, upstream) == {"200": 1}, "the upstream refused the unrestorable tool turn"


# ---------------------------------------------------------------------------------------------------------------
# The same rule for google-genai clients: they replay the parts as they came, so a streamed thinking block
# arrives in pieces (the signature on the last) and must go up as one signed thought, with no signature on the
# call.

@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_genai_client_replays_claudes_thinking_as_one_signed_block(gateway: Gateway, case: str, stream: bool):
    from google import genai
    from google.genai import types

    _, extra, upstream = CASES[case]
    client = genai.Client(api_key=gateway.api_key, http_options=types.HttpOptions(base_url=gateway.base_url))
    weather = types.FunctionDeclaration(
        name="get_weather", description="Current weather for a city",
        parameters=types.Schema(type="OBJECT", properties={"city": types.Schema(type="STRING")}, required=["city"]))
    thinking = types.ThinkingConfig(include_thoughts=True, thinking_budget=1024) if extra else None
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[weather])], thinking_config=thinking,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    contents = [types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])]

    if stream:
        chunks = list(client.models.generate_content_stream(model=upstream, contents=contents, config=config))
        parts = [p for c in chunks if c.candidates and c.candidates[0].content
                 for p in c.candidates[0].content.parts or []]
        model_turn = types.Content(role="model", parts=parts)
    else:
        model_turn = client.models.generate_content(model=upstream, contents=contents, config=config).candidates[0].content
    [call] = [p.function_call for p in model_turn.parts if p.function_call]
    assert any(p.thought and p.thought_signature for p in model_turn.parts), model_turn

    contents += [model_turn, types.Content(role="user", parts=[types.Part(function_response=types.FunctionResponse(
        id=call.id, name=call.name, response={"forecast": "sunny-42"}))])]
    final = client.models.generate_content(model=upstream, contents=contents, config=config)

    assert "sunny-42" in (final.text or ""), final
    assert upstream_statuses(gateway, upstream) == {"200": 2}
