"""The official google-genai Python SDK, pointed at Levitate, works as it does against the Gemini API.

The SDK is run with its default api_version and with `v1` and `v1beta` set explicitly: google-genai 2.x defaults
to `/v1beta/models/...`, 3.x to `/v1/models/...` (PROTOCOL.md §13), and both must reach the Gemini protocol.
Every request's path is recorded through the SDK's own httpx client so a failure shows where it went.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from clients.payloads import tamper_signature
from conftest import API_KEY, Gateway

MODEL = "gemini-3-flash"
API_VERSIONS = [None, "v1", "v1beta"]
VERSION_IDS = ["default", "v1", "v1beta"]

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Current weather for a city",
    parameters=types.Schema(
        type="OBJECT",
        properties={"city": types.Schema(type="STRING", description="City name"),
                    "unit": types.Schema(type="STRING", enum=["celsius", "fahrenheit"])},
        required=["city"],
    ),
)
TOOLS_CONFIG = types.GenerateContentConfig(
    tools=[types.Tool(function_declarations=[WEATHER])],
    # The test plays the function itself, turn by turn.
    automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
)


class Recorder:
    """The SDK's httpx client, with every request's method and path kept for assertions and failure messages."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.http = httpx.Client(timeout=60.0, event_hooks={"request": [self._record]})

    def _record(self, request: httpx.Request) -> None:
        query = f"?{request.url.query.decode()}" if request.url.query else ""
        self.calls.append(f"{request.method} {request.url.path}{query}")


def sdk(gateway: Gateway, api_version: str | None, recorder: Recorder | None = None,
        api_key: str = API_KEY) -> genai.Client:
    options = dict(base_url=gateway.base_url, api_version=api_version)
    if recorder is not None:
        options["httpx_client"] = recorder.http
    options = {k: v for k, v in options.items() if v is not None}
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**options))


def expected_prefix(client: genai.Client) -> str:
    return f"/{client._api_client._http_options.api_version}/models/"


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=VERSION_IDS)
def test_generate_content_answers_with_text_and_usage(gateway: Gateway, api_version):
    recorder = Recorder()
    client = sdk(gateway, api_version, recorder)

    reply = client.models.generate_content(model=MODEL, contents="What is Levitate? [sim:text]")

    assert reply.text and reply.text.startswith("Echo: What is Levitate?"), reply.text
    candidate = reply.candidates[0]
    assert candidate.finish_reason == types.FinishReason.STOP
    usage = reply.usage_metadata
    assert usage.prompt_token_count > 0 and usage.candidates_token_count > 0
    assert usage.total_token_count >= usage.prompt_token_count + usage.candidates_token_count
    assert recorder.calls == [f"POST {expected_prefix(client)}{MODEL}:generateContent"], recorder.calls
    assert gateway.stats()["recent"][-1]["model"] == MODEL


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=VERSION_IDS)
def test_generate_content_stream_adds_up_to_the_same_answer(gateway: Gateway, api_version):
    recorder = Recorder()
    client = sdk(gateway, api_version, recorder)
    prompt = "Tell me about streaming. [sim:text] [sim:words=60]"
    whole = client.models.generate_content(model=MODEL, contents=prompt)

    chunks = list(client.models.generate_content_stream(model=MODEL, contents=prompt))

    assert len(chunks) >= 2, f"a stream should arrive in several chunks, got {len(chunks)}"
    streamed = "".join(c.text or "" for c in chunks)
    assert streamed == whole.text
    finishes = [c.candidates[0].finish_reason for c in chunks if c.candidates and c.candidates[0].finish_reason]
    assert finishes == [types.FinishReason.STOP], finishes
    assert chunks[-1].usage_metadata and chunks[-1].usage_metadata.candidates_token_count > 0
    assert recorder.calls[-1] == f"POST {expected_prefix(client)}{MODEL}:streamGenerateContent?alt=sse", \
        recorder.calls


def test_thoughts_come_back_as_thought_parts(gateway: Gateway):
    client = sdk(gateway, "v1beta")  # held: a dropped genai.Client closes its connection pool
    reply = client.models.generate_content(
        model=MODEL, contents="Think about 17 * 23 [sim:text]",
        config=types.GenerateContentConfig(thinking_config=types.ThinkingConfig(include_thoughts=True,
                                                                                thinking_budget=1024)))
    parts = reply.candidates[0].content.parts
    thoughts = [p for p in parts if p.thought]
    answer = [p for p in parts if not p.thought and p.text]
    assert thoughts and answer, parts
    assert parts.index(thoughts[0]) < parts.index(answer[0]), "thoughts come first"
    assert reply.usage_metadata.thoughts_token_count and reply.usage_metadata.thoughts_token_count > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("api_version", API_VERSIONS, ids=VERSION_IDS)
def test_function_calling_across_turns_keeps_the_thought_signature(gateway: Gateway, api_version, stream: bool):
    """The SDK hands the model's content back as it got it, thought_signature included but re-encoded as
    URL-safe base64; Gemini 3 (and the simulator) refuse a history call without a valid one."""
    client = sdk(gateway, api_version)
    contents = [types.Content(role="user", parts=[types.Part(text="What is the weather in Paris?")])]

    if stream:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents=contents, config=TOOLS_CONFIG))
        parts = [p for c in chunks if c.candidates and c.candidates[0].content
                 for p in c.candidates[0].content.parts or []]
        model_turn = types.Content(role="model", parts=parts)
    else:
        reply = client.models.generate_content(model=MODEL, contents=contents, config=TOOLS_CONFIG)
        model_turn = reply.candidates[0].content
    calls = [p for p in model_turn.parts if p.function_call]
    assert len(calls) == 1, model_turn
    call = calls[0]
    assert call.function_call.name == "get_weather"
    assert isinstance(call.function_call.args.get("city"), str), call.function_call.args
    assert call.thought_signature, "Gemini 3 signs its first function call"

    contents += [model_turn, types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"forecast": "sunny-42"})])]
    final = client.models.generate_content(model=MODEL, contents=contents, config=TOOLS_CONFIG)

    assert final.text and "sunny-42" in final.text, f"the function response did not reach the model: {final.text!r}"
    assert not final.function_calls
    statuses = gateway.stats()["models"][MODEL]["by_status"]
    assert statuses == {"200": 2}, f"the upstream refused a turn (signature?): {statuses}"


def test_a_tampered_thought_signature_is_refused_in_google_shape(gateway: Gateway):
    """The counter-proof: the gateway forwards the client's own signature, so a corrupted one gets Google's 400
    (as from Google itself), not a silent success."""
    client = sdk(gateway, "v1beta")
    contents = [types.Content(role="user", parts=[types.Part(text="What is the weather in Oslo?")])]
    reply = client.models.generate_content(model=MODEL, contents=contents, config=TOOLS_CONFIG)
    model_turn = reply.candidates[0].content
    call = next(p for p in model_turn.parts if p.function_call)
    call.thought_signature = base64.b64decode(tamper_signature(base64.b64encode(call.thought_signature).decode()))
    contents += [model_turn, types.Content(role="user", parts=[
        types.Part.from_function_response(name="get_weather", response={"forecast": "cold"})])]

    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model=MODEL, contents=contents, config=TOOLS_CONFIG)

    error = raised.value
    assert error.code == 400, error
    assert error.status == "INVALID_ARGUMENT", error.details
    assert "signature" in (error.message or "").lower(), error.message


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=VERSION_IDS)
def test_count_tokens_is_the_upstreams_count(gateway: Gateway, api_version):
    client = sdk(gateway, api_version)
    sentence = "The quick brown fox jumps over the lazy dog near the riverbank. "

    short = client.models.count_tokens(model=MODEL, contents=sentence * 5).total_tokens
    long = client.models.count_tokens(model=MODEL, contents=sentence * 50).total_tokens

    assert short and long and short > 0
    assert 7 <= long / short <= 13, f"10x the text should count about 10x the tokens: {short} vs {long}"
    assert gateway.stats()["totals"]["count_tokens"] == 2, "Gemini countTokens is forwarded upstream"


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=VERSION_IDS)
def test_models_list_and_get(gateway: Gateway, api_version):
    recorder = Recorder()
    client = sdk(gateway, api_version, recorder)

    names = [m.name for m in client.models.list()]
    model = client.models.get(model=MODEL)

    assert f"models/{MODEL}" in names, names
    assert "models/claude-sonnet-4-6" in names, names
    assert len(names) == len(set(names)), f"duplicates in {names}"
    assert model.name == f"models/{MODEL}"
    assert "generateContent" in (model.supported_actions or []), model
    assert model.input_token_limit and model.output_token_limit, model
    version = client._api_client._http_options.api_version
    assert recorder.calls[0].startswith(f"GET /{version}/models"), recorder.calls
    assert recorder.calls[-1] == f"GET /{version}/models/{MODEL}", recorder.calls


def test_a_wrong_key_is_a_google_shaped_401(gateway: Gateway):
    client = sdk(gateway, "v1beta", api_key="AIza-wrong")
    with pytest.raises(genai_errors.ClientError) as raised:
        client.models.generate_content(model=MODEL, contents="hi")
    assert raised.value.code in (401, 403), raised.value
    assert raised.value.message, raised.value.details
    assert gateway.stats()["totals"]["requests"] == 0


def test_count_tokens_of_a_generate_content_request_counts_its_system_instruction_and_tools(gateway: Gateway):
    """The Gemini API's countTokens also takes a whole `generateContentRequest`, whose system instruction and
    function declarations are part of the prompt and are counted (the upstream's countTokens accepts both).
    google-genai refuses to send them for the Gemini API, so this is the raw request other clients send."""
    contents = [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}]
    system = {"parts": [{"text": "You are a meticulous weather assistant. " * 40}]}
    tools = [{"functionDeclarations": [{"name": "get_weather", "description": "Current weather for a city. " * 10,
                                        "parameters": {"type": "OBJECT",
                                                       "properties": {"city": {"type": "STRING"}}}}]}]
    url = f"/v1beta/models/{MODEL}:countTokens"
    headers = {"x-goog-api-key": API_KEY}

    def count(body: dict) -> int:
        r = httpx.post(gateway.base_url + url, json=body, headers=headers, timeout=30.0)
        assert r.status_code == 200, r.text
        return r.json()["totalTokens"]

    bare = count({"contents": contents})
    whole = count({"generateContentRequest": {"model": f"models/{MODEL}", "contents": contents,
                                              "systemInstruction": system, "tools": tools}})

    # ~1,600 characters of system prompt and ~300 of tool declaration are a few hundred tokens.
    assert whole > bare + 300, f"system instruction and tools were not counted: {bare} vs {whole}"
