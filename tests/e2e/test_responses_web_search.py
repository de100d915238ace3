"""The Responses API's `web_search` tool through Levitate, with the official OpenAI SDK: it becomes Google Search
grounding upstream, and the answer carries `web_search_call` items and `url_citation` annotations.

The simulator plays Google (see test_web_search.py): a `googleSearch` request on a Gemini text model with
`requestType` `web_search` is answered with text plus `groundingMetadata` (one query, the prompt's topic; three
sources titled with SITES); search beside function declarations, or on a Claude model, is a 400 there.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import Gateway, assert_openai_error
from test_web_search import REDIRECT, SITES, grounding_requests, last_sent

SEARCH = [{"type": "web_search"}]
ASK = "Perform a web search for the query: levitate gateway"


def answer_items(response) -> list:
    """The output without `reasoning` items (a Gemini 3 answer is signed, and its signature rides in one)."""
    return [item for item in response.output if item.type != "reasoning"]


def assert_cited(message) -> None:
    """The message's text part cites the simulator's sources with character offsets into its text."""
    part = message.content[0]
    assert part.type == "output_text" and part.text.startswith("Echo: "), part
    assert part.annotations, part
    for annotation in part.annotations:
        assert annotation.type == "url_citation" and annotation.url.startswith(REDIRECT), annotation
        assert annotation.title in SITES, annotation
        assert 0 <= annotation.start_index < annotation.end_index <= len(part.text), annotation


def test_a_web_search_answers_with_a_search_call_and_url_citations(gateway: Gateway):
    response = gateway.openai().responses.create(model="gpt-5", input=ASK, tools=SEARCH,
                                                 include=["web_search_call.action.sources"])

    assert response.status == "completed"
    output = answer_items(response)
    assert [item.type for item in output] == ["web_search_call", "message"], response.output
    search = output[0]
    assert search.id.startswith("ws_") and search.status == "completed", search
    assert search.action.type == "search" and search.action.query == "levitate gateway", search.action
    assert [s.url for s in search.action.sources] and all(s.url.startswith(REDIRECT) for s in search.action.sources)
    assert_cited(output[1])
    assert last_sent(gateway)["requestType"] == "web_search"
    assert grounding_requests(gateway) == 1


def test_a_streamed_web_search_sends_search_and_annotation_events(gateway: Gateway):
    with gateway.openai().responses.stream(model="gemini-2.5-flash", input=ASK,
                                           tools=[{"type": "web_search_preview", "search_context_size": "low",
                                                   "user_location": {"type": "approximate", "country": "FR"}}],
                                           ) as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for kind in ["response.web_search_call.in_progress", "response.web_search_call.searching",
                 "response.web_search_call.completed", "response.output_text.annotation.added"]:
        assert kind in kinds, f"{kind} missing from {kinds}"
    assert kinds.index("response.output_text.annotation.added") < kinds.index("response.output_text.done")
    added = [e for e in events if e.type == "response.output_text.annotation.added"]
    assert [e.annotation_index for e in added] == list(range(len(added)))
    search_added = [e for e in events if e.type == "response.output_item.added" and e.item.type == "web_search_call"]
    assert len(search_added) == 1 and search_added[0].item.status == "in_progress"
    # The SDK accumulated every event by output_index; the final response agrees with it.
    message = [item for item in final.output if item.type == "message"][0]
    assert_cited(message)
    assert [a.model_dump() for a in message.content[0].annotations] == [e.annotation for e in added]
    searches = [item for item in final.output if item.type == "web_search_call"]
    assert len(searches) == 1 and searches[0].action.query == "levitate gateway", final.output
    assert searches[0].action.sources is None, "sources only when include asks for them"
    assert final.output.index(searches[0]) == search_added[0].output_index
    assert final.output_text == "".join(e.delta for e in events if e.type == "response.output_text.delta")
    sent = last_sent(gateway)
    assert (sent["requestType"], sent["model"]) == ("web_search", "gemini-2.5-flash"), sent
    assert grounding_requests(gateway) == 1


def test_a_claude_model_is_grounded_by_the_web_search_model(gateway: Gateway):
    response = gateway.openai().responses.create(model="claude-sonnet-4-5", input=ASK, tools=SEARCH)

    output = answer_items(response)
    assert [item.type for item in output] == ["web_search_call", "message"], response.output
    assert_cited(output[1])
    sent = last_sent(gateway)
    # Claude cannot search: routes.yaml's web_search_model (gemini-3-flash by default) grounds it instead.
    assert (sent["requestType"], sent["model"]) == ("web_search", "gemini-3-flash"), sent


def test_allowed_domains_filter_the_sources_and_citations(gateway: Gateway):
    response = gateway.openai().responses.create(
        model="gpt-5", input=ASK, include=["web_search_call.action.sources"],
        tools=[{"type": "web_search", "filters": {"allowed_domains": ["levitate.dev"]}}])

    search, message = answer_items(response)
    assert len(search.action.sources) == 1, search.action
    assert {a.title for a in message.content[0].annotations} == {"levitate.dev"}, message


def test_a_function_tool_beside_web_search_wins_and_works(gateway: Gateway):
    """Codex always offers web_search beside its own tools: the search is dropped, the tools are declared."""
    tool = {"type": "function", "name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
    response = gateway.openai().responses.create(model="gpt-5", input="Weather in Rome? [sim:tool]",
                                                 tools=[tool, {"type": "web_search"}])

    calls = [item for item in response.output if item.type == "function_call"]
    assert len(calls) == 1 and json.loads(calls[0].arguments)["city"], response.output
    assert not [item for item in response.output if item.type == "web_search_call"]
    sent = last_sent(gateway)
    assert sent["requestType"] == "agent", "the upstream never gets googleSearch beside functions"
    assert grounding_requests(gateway) == 0


def test_bad_web_search_options_are_clear_400s(gateway: Gateway):
    for tool, param in [({"type": "web_search", "search_context_size": "huge"}, "tools[0].search_context_size"),
                        ({"type": "web_search", "user_location": "Paris"}, "tools[0].user_location")]:
        body = {"model": "gpt-5", "input": ASK, "tools": [tool]}
        error = assert_openai_error(gateway.http.post("/v1/responses", json=body), 400)
        assert error["param"] == param, error
    assert gateway.sim.stats()["totals"]["requests"] == 0


def test_a_replayed_search_turn_is_accepted_on_the_next_turn(gateway: Gateway):
    """A client that keeps its history replays the search items and the annotated message as they came back."""
    client = gateway.openai()
    history: list = [{"role": "user", "content": ASK}]
    first = client.responses.create(model="gemini-3-flash", input=history, tools=SEARCH,
                                    include=["web_search_call.action.sources"], store=False)
    history += [item.model_dump(exclude_none=True) for item in first.output]
    history.append({"role": "user", "content": "Perform a web search for the query: pingora"})
    second = client.responses.create(model="gemini-3-flash", input=history, tools=SEARCH, store=False)

    assert [item.type for item in answer_items(second)] == ["web_search_call", "message"], second.output
    assert answer_items(second)[0].action.query == "pingora"
    assert gateway.sim.stats()["totals"]["by_status"] == {"200": 2}
    assert grounding_requests(gateway) == 2


def test_codex_offers_web_search_beside_its_tools_and_its_tools_win(gateway: Gateway, tmp_path: Path):
    """Codex CLI sends `{"type": "web_search", "external_web_access": true}` beside its function and namespace
    tools on every request: the search is dropped (the simulator refuses googleSearch beside functions), and the
    answer comes back."""
    from test_codex_cli import agent_text, codex, responses_calls

    events, recorder, proc = codex(gateway, tmp_path, "say hi [sim:text]")

    first = json.loads(responses_calls(recorder)[0].body)
    assert any(t["type"] == "web_search" for t in first["tools"]), first["tools"]
    assert "Echo:" in agent_text(events)
    assert {r["requestType"] for r in gateway.stats()["recent"]} == {"agent"}
    assert grounding_requests(gateway) == 0
