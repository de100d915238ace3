"""The legacy completions API (`POST /v1/completions`) through the official OpenAI Python SDK.

Tools that still call `client.completions.create` get OpenAI's `text_completion` answers, whole or streamed,
one choice per prompt (× `n`), and a 400 in OpenAI's error shape naming each field Levitate cannot honour.
"""

from __future__ import annotations

import openai
import pytest

from conftest import Gateway, assert_openai_error

MODEL = "gpt-3.5-turbo-instruct"  # routed to gemini-3-flash by conf/routes.yaml ("gpt-*")
UPSTREAM = "gemini-3-flash"


def upstream_statuses(gateway: Gateway) -> dict:
    return gateway.stats()["models"].get(UPSTREAM, {}).get("by_status", {})


def test_a_completion_comes_back_as_a_text_completion(gateway: Gateway):
    client = gateway.openai()

    reply = client.completions.create(model=MODEL, prompt="Say this is a test", max_tokens=200,
                                      temperature=0.2, top_p=0.9, stop=["\n\n\n"])

    assert reply.object == "text_completion"
    assert reply.id.startswith("cmpl-") and reply.created > 0
    assert reply.model == MODEL, "the client's own model name comes back"
    [choice] = reply.choices
    assert choice.index == 0 and choice.text.strip(), choice
    assert choice.logprobs is None
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert upstream_statuses(gateway) == {"200": 1}


def test_a_streamed_completion_sends_text_chunks_usage_and_done(gateway: Gateway):
    client = gateway.openai()

    chunks = list(client.completions.create(model=MODEL, prompt="Tell me a story", stream=True,
                                            stream_options={"include_usage": True}))

    assert all(c.object == "text_completion" for c in chunks)
    assert len({c.id for c in chunks}) == 1
    with_choices = [c for c in chunks if c.choices]
    text = "".join(c.choices[0].text for c in with_choices)
    assert text.strip(), chunks
    finishes = [c.choices[0].finish_reason for c in with_choices if c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"]), finishes
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0, chunks[-1]


def test_a_list_of_prompts_gets_one_choice_per_prompt(gateway: Gateway):
    client = gateway.openai()

    reply = client.completions.create(model=MODEL, prompt=["First question", "Second question"])

    assert [c.index for c in reply.choices] == [0, 1]
    assert all(c.text.strip() for c in reply.choices), reply.choices
    assert upstream_statuses(gateway) == {"200": 2}, "one upstream call per choice"


def test_several_prompts_and_n_stream_every_choice_with_its_index(gateway: Gateway):
    client = gateway.openai()

    chunks = list(client.completions.create(model=MODEL, prompt=["One", "Two"], n=2, stream=True,
                                            stream_options={"include_usage": True}))

    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
    assert sorted(texts) == [0, 1, 2, 3] and all(t.strip() for t in texts.values()), texts
    assert sorted(finishes) == [0, 1, 2, 3], finishes
    assert chunks[-1].usage.prompt_tokens > 0
    assert upstream_statuses(gateway) == {"200": 4}


@pytest.mark.parametrize("field, value", [
    ("suffix", "}"),
    ("echo", True),
    ("logprobs", 2),
    ("best_of", 3),
    ("logit_bias", {"50256": -100}),
])
def test_each_field_levitate_cannot_honour_is_a_400_naming_it(gateway: Gateway, field: str, value):
    client = gateway.openai()

    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model=MODEL, prompt="hello", **{field: value})

    error = raised.value.body
    assert isinstance(error, dict) and error.get("param") == field, error
    assert error.get("type") == "invalid_request_error", error
    assert "not supported" in error["message"], error
    assert upstream_statuses(gateway) == {}, "refused before any upstream call"


@pytest.mark.parametrize("body, param", [
    ({"prompt": [101, 102, 103]}, "prompt"),
    ({"prompt": "hi", "n": 9}, "n"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({}, "prompt"),
])
def test_bad_requests_get_openai_errors_on_both_paths(gateway: Gateway, body: dict, param: str):
    for path in ("/v1/completions", "/completions"):
        response = gateway.http.post(path, json={"model": MODEL, **body})
        error = assert_openai_error(response, 400)
        assert error["param"] == param, error
