"""The official OpenAI Python SDK's Responses API (`client.responses`), pointed at Levitate.

Each test is one user story of a Responses client (Codex CLI's wire API): text answers, streamed events,
function tools, structured output, and multi-turn conversations whose `reasoning` items come back with their
sealed `encrypted_content`, from which the gateway must restore the exact thought signature the upstream
issued: the simulator reports, per request, which signatures it saw replayed (`replayed_signatures`).
"""

from __future__ import annotations

import json
import time

import openai
import pydantic
import pytest

from conftest import Gateway, assert_openai_error

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "City name"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def last_replayed(gateway: Gateway) -> dict:
    """The signature verdicts of the last upstream request."""
    return gateway.sim.stats()["recent"][-1]["replayed_signatures"]


def test_a_text_answer_comes_back_as_a_response_object(gateway: Gateway):
    response = gateway.openai().responses.create(
        model="gpt-5", instructions="Be brief.", input="Say hello [sim:text]", store=False)
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text.strip()
    message = [item for item in response.output if item.type == "message"]
    assert len(message) == 1 and message[0].role == "assistant"
    assert message[0].content[0].type == "output_text"
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert gateway.sim.stats()["totals"]["by_status"] == {"200": 1}


def test_a_stream_sends_the_full_event_sequence_with_increasing_sequence_numbers(gateway: Gateway):
    client = gateway.openai()
    with client.responses.stream(model="gpt-5", input="Think, then say hello [sim:text]",
                                 reasoning={"effort": "low", "summary": "auto"}) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    for kind in ["response.output_item.added", "response.reasoning_summary_part.added",
                 "response.reasoning_summary_text.delta", "response.reasoning_summary_text.done",
                 "response.content_part.added", "response.output_text.delta", "response.output_text.done",
                 "response.content_part.done", "response.output_item.done"]:
        assert kind in kinds, f"{kind} missing from {kinds}"
    assert kinds.index("response.reasoning_summary_text.delta") < kinds.index("response.output_text.delta")
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and final.output_text == text
    reasoning = [item for item in final.output if item.type == "reasoning"]
    assert reasoning and reasoning[0].summary and reasoning[0].summary[0].text.strip()
    assert reasoning[0].encrypted_content and reasoning[0].encrypted_content.startswith("lvr1.")
    assert final.usage.output_tokens_details.reasoning_tokens > 0


@pytest.mark.parametrize("model", ["gemini-3-flash", "claude-opus-4-6-thinking"])
def test_a_function_tool_round_trip_restores_the_signature_from_the_replayed_reasoning(
        gateway: Gateway, model: str):
    """Turn 1 calls a tool; the client replays the output items (reasoning with encrypted_content, the call)
    and the result. After a restart with a signature cache that forgets within a second, only the sealed
    reasoning can give the upstream its own signature back: it must see it, not a sentinel."""
    client = gateway.openai()
    history: list = [{"role": "user", "content": "What is the weather in Paris? [sim:tool]"}]
    first = client.responses.create(model=model, input=history, tools=[WEATHER_TOOL],
                                    reasoning={"effort": "low"}, include=["reasoning.encrypted_content"], store=False)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1, first.output
    assert calls[0].name == "get_weather" and isinstance(json.loads(calls[0].arguments)["city"], str)
    assert any(item.type == "reasoning" and item.encrypted_content for item in first.output), first.output

    config = json.loads(json.dumps(gateway.main_config))
    config["store"] = dict(config["store"], signature_ttl="1s")
    gateway.stop()
    gateway.start(config)
    time.sleep(2.1)  # the tool-call signature cache has expired: only the sealed reasoning remains
    client = gateway.openai()  # the restarted gateway listens on new ports

    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"type": "function_call_output", "call_id": calls[0].call_id,
                    "output": json.dumps({"forecast": "sunny-42"})})
    final = client.responses.create(model=model, input=history, tools=[WEATHER_TOOL],
                                    reasoning={"effort": "low"}, store=False)
    assert final.status == "completed"
    assert "sunny-42" in final.output_text, final.output_text
    statuses = gateway.sim.stats()["totals"]["by_status"]
    assert statuses == {"200": 2}, statuses
    seen = last_replayed(gateway)
    if model.startswith("claude"):
        assert seen["claude"] >= 1 and seen["leading_signed_thoughts"] >= 1, seen
    else:
        assert seen["gemini"] >= 1 and seen["sentinel"] == 0, seen
    assert seen["unknown"] == 0, seen


def test_a_streamed_tool_call_arrives_as_function_call_events(gateway: Gateway):
    with gateway.openai().responses.stream(model="gpt-5", input="Weather in Rome? [sim:tool]",
                                           tools=[WEATHER_TOOL]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert "response.function_call_arguments.delta" in kinds and "response.function_call_arguments.done" in kinds
    done = [e for e in events if e.type == "response.function_call_arguments.done"][0]
    assert json.loads(done.arguments)["city"]
    call = [item for item in final.output if item.type == "function_call"][0]
    assert call.call_id and call.arguments == done.arguments


def test_a_custom_tool_gets_freeform_input_back(gateway: Gateway):
    tool = {"type": "custom", "name": "apply_patch", "description": "Apply a patch",
            "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}
    response = gateway.openai().responses.create(model="gpt-5", input="Patch it [sim:tool]", tools=[tool])
    calls = [item for item in response.output if item.type == "custom_tool_call"]
    assert len(calls) == 1, response.output
    assert calls[0].name == "apply_patch" and isinstance(calls[0].input, str) and calls[0].input
    follow = gateway.openai().responses.create(model="gpt-5", tools=[tool], input=[
        {"role": "user", "content": "Patch it [sim:tool]"},
        *[item.model_dump(exclude_none=True) for item in response.output],
        {"type": "custom_tool_call_output", "call_id": calls[0].call_id, "output": "patched-ok"}])
    assert "patched-ok" in follow.output_text


class City(pydantic.BaseModel):
    name: str
    population: int


def test_structured_output_parses_into_the_schema(gateway: Gateway):
    parsed = gateway.openai().responses.parse(model="gpt-5", input="Describe Paris [sim:text]", text_format=City)
    assert isinstance(parsed.output_parsed, City), parsed.output_text


def test_input_tokens_are_estimated_locally(gateway: Gateway):
    r = gateway.http.post("/v1/responses/input_tokens", json={"model": "gpt-5", "input": "hello " * 100})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "response.input_tokens" and r.json()["input_tokens"] > 50


def test_a_tampered_encrypted_content_is_a_400(gateway: Gateway):
    first = gateway.openai().responses.create(model="gpt-5", input="Think [sim:text]", reasoning={"effort": "low"})
    reasoning = [item.model_dump(exclude_none=True) for item in first.output if item.type == "reasoning"][0]
    blob = reasoning["encrypted_content"]
    reasoning["encrypted_content"] = blob[:-4] + ("AAAA" if not blob.endswith("AAAA") else "BBBB")
    body = {"model": "gpt-5", "input": [{"role": "user", "content": "Think"}, reasoning,
                                        {"role": "user", "content": "again"}]}
    error = assert_openai_error(gateway.http.post("/v1/responses", json=body), 400)
    assert "altered or forged" in error["message"] and error["param"] == "input[1].encrypted_content"
    body["input"][1]["encrypted_content"] = "gAAAAABforeign-openai-blob"
    error = assert_openai_error(gateway.http.post("/v1/responses", json=body), 400)
    assert "not an encrypted_content issued by Levitate" in error["message"]
    gateway.assert_serves()


def test_previous_response_id_is_refused_because_no_response_is_kept(gateway: Gateway):
    with pytest.raises(openai.BadRequestError) as raised:
        gateway.openai().responses.create(model="gpt-5", input="again", previous_response_id="resp_123")
    assert "does not keep responses" in str(raised.value)
    assert raised.value.body["param"] == "previous_response_id"


def test_unknown_tool_types_are_refused_by_name(gateway: Gateway):
    body = {"model": "gpt-5", "input": "x", "tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}
    error = assert_openai_error(gateway.http.post("/v1/responses", json=body), 400)
    assert '"file_search"' in error["message"] and error["param"] == "tools[0].type"


@pytest.mark.parametrize("path", ["/v1/responses/compact", "/v1/responses/resp_1"])
def test_stateful_endpoints_answer_a_clear_404_never_a_hang(gateway: Gateway, path: str):
    r = gateway.http.post(path, json={"model": "gpt-5", "input": []}, timeout=10.0)
    error = assert_openai_error(r, 404)
    assert "keeps no responses" in error["message"]


def test_an_upstream_broken_mid_stream_raises_in_the_sdk_after_an_error_event(gateway: Gateway):
    """The connection breaks after two chunks: the client must see a failure (an `error` event, on which the
    SDK raises, then `response.failed`), never a `response.completed` for half an answer."""
    gateway.set_faults([{"kind": "stream_cut", "after_chunks": 2, "abort": True},
                        {"kind": "inter_chunk_delay", "delay_ms": 100}])
    received = []
    with pytest.raises(openai.APIError) as raised:
        for event in gateway.openai().responses.create(
                model="gpt-5", input="a long answer [sim:text] [sim:words=200]", stream=True):
            received.append(event.type)
    assert "upstream" in str(raised.value.message), raised.value
    assert "response.output_text.delta" in received and "response.completed" not in received, received
    with gateway.http.stream("POST", "/v1/responses", json={
            "model": "gpt-5", "stream": True, "input": "a long answer [sim:text] [sim:words=200]"}) as response:
        kinds = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert kinds[0] == "response.created" and kinds[-2:] == ["error", "response.failed"], kinds
    gateway.clear_faults()
    gateway.assert_serves()
