"""Web search through Levitate: each client's own search switch becomes Google Search grounding upstream, and the
searches and sources Google reports come back in the client's own shape.

The simulator plays Google: a request with `googleSearch` (alone, on a Gemini text model, `requestType`
`web_search`) is answered with text plus `groundingMetadata` whose sources are `vertexaisearch` redirect URLs
titled with the sites in SITES; search beside function declarations, or on a Claude model, is a 400 there. So a
search that reaches a Claude model, or is mixed with tools, fails these tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import pytest

from conftest import API_KEY, Gateway

SITES = ["levitate.dev", "docs.example.org", "en.wikipedia.org"]
REDIRECT = "https://vertexaisearch.cloud.google.com/grounding-api-redirect/"
WEB_SEARCH = {"type": "web_search_20250305", "name": "web_search", "max_uses": 8}


def anthropic_client(gateway: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.base_url, api_key=API_KEY, timeout=60.0, max_retries=0)


def last_sent(gateway: Gateway) -> dict:
    return gateway.stats()["recent"][-1]


def grounding_requests(gateway: Gateway) -> int:
    return gateway.stats()["totals"]["grounding_requests"]


def assert_searched(reply) -> None:
    """An Anthropic message with a search, its results and cited text, as Claude Code reads them."""
    kinds = [b.type for b in reply.content]
    assert kinds[:2] == ["server_tool_use", "web_search_tool_result"], kinds
    search, results = reply.content[0], reply.content[1]
    assert search.name == "web_search" and search.input["query"], search
    assert results.tool_use_id == search.id
    assert [r.title for r in results.content] == SITES, results
    assert all(r.url.startswith(REDIRECT) and r.encrypted_content for r in results.content), results
    cited = [b for b in reply.content if b.type == "text" and b.citations]
    assert cited, kinds
    citation = cited[0].citations[0]
    assert citation.type == "web_search_result_location" and citation.url.startswith(REDIRECT), citation
    assert citation.cited_text and citation.cited_text in cited[0].text, citation
    text = "".join(b.text for b in reply.content if b.type == "text")
    assert text.startswith("Echo: "), text
    assert reply.usage.server_tool_use.web_search_requests == 1, reply.usage
    assert reply.stop_reason == "end_turn"


@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gemini-2.5-flash"])
def test_the_anthropic_web_search_tool_answers_with_searches_results_and_citations(gateway: Gateway, model: str):
    reply = anthropic_client(gateway).messages.create(
        model=model, max_tokens=1024, tools=[WEB_SEARCH],
        messages=[{"role": "user", "content": "Perform a web search for the query: levitate gateway"}])

    assert_searched(reply)
    assert reply.content[0].input == {"query": "levitate gateway"}
    sent = last_sent(gateway)
    assert sent["requestType"] == "web_search", sent
    # Claude cannot search: routes.yaml's web_search_model (gemini-3-flash by default) grounds it instead.
    assert sent["model"] == ("gemini-3-flash" if model.startswith("claude") else "gemini-2.5-flash"), sent
    assert grounding_requests(gateway) == 1


def test_a_streamed_web_search_rebuilds_the_same_message(gateway: Gateway):
    sdk = anthropic_client(gateway)
    messages = [{"role": "user", "content": "Perform a web search for the query: pingora"}]
    with sdk.messages.stream(model="claude-sonnet-4-5", max_tokens=1024, tools=[WEB_SEARCH],
                             thinking={"type": "enabled", "budget_tokens": 1024}, messages=messages) as stream:
        events = list(stream)
        final = stream.get_final_message()

    assert final.content[0].type == "thinking", "thinking still streams first"
    final.content = final.content[1:]
    assert_searched(final)
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]
    assert "input_json_delta" in deltas and "citations_delta" in deltas, deltas
    whole = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=1024, tools=[WEB_SEARCH], messages=messages)
    assert [b.type for b in whole.content] == [b.type for b in final.content]
    assert grounding_requests(gateway) == 2


def test_blocked_and_allowed_domains_filter_the_sources(gateway: Gateway):
    sdk = anthropic_client(gateway)
    ask = [{"role": "user", "content": "Perform a web search for the query: levitate"}]
    blocked = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=ask,
                                  tools=[dict(WEB_SEARCH, blocked_domains=["wikipedia.org"])])
    allowed = sdk.messages.create(model="claude-sonnet-4-5", max_tokens=512, messages=ask,
                                  tools=[dict(WEB_SEARCH, allowed_domains=["levitate.dev"])])

    def titles(reply) -> list[str]:
        return [r.title for b in reply.content if b.type == "web_search_tool_result" for r in b.content]

    def cited(reply) -> set[str]:
        return {c.title for b in reply.content if b.type == "text" for c in (b.citations or [])}

    assert titles(blocked) == SITES[:2] and "en.wikipedia.org" not in cited(blocked), blocked
    assert titles(allowed) == ["levitate.dev"] and cited(allowed) == {"levitate.dev"}, allowed


def test_search_beside_custom_tools_is_dropped_not_refused(gateway: Gateway):
    tool = {"name": "get_time", "description": "Now", "input_schema": {"type": "object", "properties": {}}}
    reply = anthropic_client(gateway).messages.create(
        model="gemini-3-flash", max_tokens=256, tools=[tool, WEB_SEARCH],
        messages=[{"role": "user", "content": "What time is it? [sim:text]"}])

    assert [b.type for b in reply.content] == ["text"], reply
    sent = last_sent(gateway)
    assert sent["requestType"] == "agent", "the upstream never gets googleSearch beside functions"
    assert grounding_requests(gateway) == 0


def test_claude_code_websearch_reports_real_searches_with_sources(gateway: Gateway, tmp_path: Path):
    """Claude Code's WebSearch tool runs a sub-request of its own with only the `web_search_20250305` server tool
    (and its own short system prompt); it counts the `server_tool_use` blocks as searches and hands the
    `web_search_tool_result` links to the main conversation. Behind a gateway that cannot search, it reports
    "Did 0 searches" and no links."""
    from test_real_clients import api_exchanges, claude_code, explain

    result, recorder, proc = claude_code(
        gateway, tmp_path, "Use the WebSearch tool to search the web and list the sources [sim:call=WebSearch]",
        "--max-turns", "4", "--allowedTools", "WebSearch")

    messages = api_exchanges(recorder, "/v1/messages")
    assert all(e.status == 200 for e in messages), explain(proc, recorder)
    bodies = [json.loads(e.body) for e in messages]
    searches = [b for b in bodies if any(t.get("type", "").startswith("web_search_") for t in b.get("tools", []))]
    assert len(searches) == 1, explain(proc, recorder)
    assert searches[0]["tools"] == [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}]
    # The links Claude Code built from the web_search_tool_result, as it sent them back to the model.
    tool_results = [block for body in bodies for m in body["messages"] if isinstance(m["content"], list)
                    for block in m["content"] if block.get("type") == "tool_result"]
    assert tool_results, explain(proc, recorder)
    links = str(tool_results[-1]["content"])
    assert "Links: [" in links and REDIRECT in links and all(site in links for site in SITES), links
    # Claude Code's own count of searches, from usage.server_tool_use of its sub-request ("Did 1 search").
    assert sum(m.get("webSearchRequests", 0) for m in result["modelUsage"].values()) == 1, result["modelUsage"]
    assert SITES[0] in result["result"], result["result"]
    assert grounding_requests(gateway) == 1
    assert [r["model"] for r in gateway.stats()["recent"] if r["requestType"] == "web_search"] == ["gemini-3-flash"]


def test_openai_web_search_options_answer_with_url_citations(gateway: Gateway):
    sdk = gateway.openai()
    messages = [{"role": "user", "content": "Perform a web search for the query: levitate"}]
    reply = sdk.chat.completions.create(model="gpt-4o", messages=messages, web_search_options={})

    message = reply.choices[0].message
    assert message.content.startswith("Echo: "), message
    assert message.annotations, message
    citation = message.annotations[0]
    assert citation.type == "url_citation" and citation.url_citation.url.startswith(REDIRECT), citation
    assert citation.url_citation.title in SITES
    start, end = citation.url_citation.start_index, citation.url_citation.end_index
    assert 0 <= start < end <= len(message.content), citation
    sent = last_sent(gateway)
    assert (sent["requestType"], sent["model"]) == ("web_search", "gemini-3-flash"), sent

    chunks = list(sdk.chat.completions.create(model="gpt-4o", messages=messages, web_search_options={},
                                              stream=True))
    with_annotations = [i for i, c in enumerate(chunks)
                        if c.choices and (c.choices[0].delta.model_extra or {}).get("annotations")]
    finish = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].finish_reason]
    assert len(with_annotations) == 1 and finish == [with_annotations[0] + 1], (with_annotations, finish)
    streamed = chunks[with_annotations[0]].choices[0].delta.model_extra["annotations"]
    assert streamed == [a.model_dump() for a in message.annotations]
    assert grounding_requests(gateway) == 2


def test_a_search_preview_model_searches_and_a_claude_alias_is_grounded_elsewhere(gateway: Gateway):
    sdk = gateway.openai()
    reply = sdk.chat.completions.create(model="gpt-4o-search-preview",
                                        messages=[{"role": "user", "content": "news"}])
    assert reply.choices[0].message.annotations
    sdk.chat.completions.create(model="claude-sonnet-4-5", web_search_options={},
                                messages=[{"role": "user", "content": "news"}])
    assert last_sent(gateway)["model"] == "gemini-3-flash", "Claude cannot search"
    assert grounding_requests(gateway) == 2


def test_gemini_cli_google_web_search_gets_its_sources(gateway: Gateway, tmp_path: Path):
    """Gemini CLI's google_web_search tool asks `:generateContent` (not streamed) with `googleSearch` and reads
    the sources from `groundingMetadata`: the folded answer must still carry it."""
    from test_real_clients import explain, gemini_cli

    result, recorder, proc = gemini_cli(
        gateway, tmp_path, "Search the web for levitate and cite the sources [sim:call=google_web_search]",
        "--yolo")

    searches = [e for e in recorder.exchanges if e.body and "googleSearch" in e.body.decode(errors="replace")]
    assert searches and all(e.status == 200 for e in searches), explain(proc, recorder)
    answers = [json.loads(e.body) for e in recorder.exchanges if e.body and b"functionResponse" in e.body]
    assert answers, explain(proc, recorder)
    replayed = json.dumps(answers[-1])
    assert REDIRECT in replayed and SITES[0] in replayed, f"the tool result should list the sources\n{replayed[-3000:]}"
    assert grounding_requests(gateway) >= 1
