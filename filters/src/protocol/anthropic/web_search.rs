//! A web search answered in Anthropic's own shape, so clients (Claude Code's WebSearch above all) see real
//! searches with sources: one `server_tool_use` block (name `web_search`, input `{query}`) per query Google ran,
//! each followed by its `web_search_tool_result` with `web_search_result` items, then the answer's text in
//! `text` blocks whose cited spans carry `web_search_result_location` citations, and
//! `usage.server_tool_use.web_search_requests`.
//!
//! Google sends `groundingMetadata` after the text it grounds, while Anthropic puts the search blocks before
//! the text that cites them. So during a web search the stream machine holds the visible text back
//! ([`SearchTurn::hold`]) and writes it, cited, when the upstream ends; thinking still streams as it comes.
//! A web search answer is short and its thinking is the slow part, so little is lost.
//!
//! Google does not say which query found which page: the sources are divided among the queries in order.
//! `encrypted_content` and `encrypted_index` are opaque to clients; here they are the URL and the span,
//! base64url-encoded, since no client can send search blocks back to the upstream anyway.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::grounding::{CitedSpan, DomainFilter, Grounding};
use crate::sse::write_named_event;

/// The longest `cited_text`, in characters (Anthropic quotes at most about this much).
const MAX_CITED_CHARS: usize = 150;

/// The web-search part of one assistant turn: the held text and what Google reported.
#[derive(Debug, Default)]
pub(super) struct SearchTurn {
    /// `srvtoolu_…` prefix for the `server_tool_use` ids.
    id_prefix: String,
    /// The client's `allowed_domains`/`blocked_domains`, applied to the sources.
    domains: DomainFilter,
    held: String,
    grounding: Grounding,
}

impl SearchTurn {
    /// `tool_id_prefix` is the request's `toolu_…_` prefix; search ids become `srvtoolu_…_<n>`.
    pub(super) fn new(tool_id_prefix: &str, domains: DomainFilter) -> Self {
        SearchTurn { id_prefix: format!("srv{tool_id_prefix}"), domains, ..SearchTurn::default() }
    }

    /// Visible text, kept until the search blocks are written.
    pub(super) fn hold(&mut self, text: &str) {
        self.held.push_str(text);
    }

    pub(super) fn absorb(&mut self, grounding: Grounding) {
        self.grounding.absorb(grounding);
        self.grounding.retain_sources(&self.domains);
    }

    /// Whether the answer has anything to show (held text or search results): it is not an empty answer.
    pub(super) fn has_content(&self) -> bool {
        !self.held.is_empty() || !self.grounding.is_empty()
    }

    /// The number of searches reported (`usage.server_tool_use.web_search_requests`).
    pub(super) fn requests(&self) -> usize {
        self.queries().len()
    }

    /// Google's queries; sources without a query still get one search to belong to.
    fn queries(&self) -> Vec<&str> {
        let queries: Vec<&str> = self.grounding.queries.iter().map(String::as_str).collect();
        if queries.is_empty() && !self.grounding.sources.is_empty() {
            return vec!["web search"];
        }
        queries
    }

    /// Every block to write at the end, in order: searches with their results, then the text.
    fn blocks(&self) -> Vec<Value> {
        let queries = self.queries();
        let sources = &self.grounding.sources;
        let per_query = sources.len().div_ceil(queries.len().max(1));
        let mut blocks = Vec::with_capacity(queries.len() * 2 + 2);
        for (i, query) in queries.iter().enumerate() {
            let id = format!("{}{i}", self.id_prefix);
            let found = sources.iter().skip(i * per_query).take(per_query);
            let results: Vec<Value> = found
                .map(|s| {
                    json!({"type": "web_search_result", "url": s.url, "title": s.title,
                           "encrypted_content": URL_SAFE_NO_PAD.encode(&s.url), "page_age": null})
                })
                .collect();
            blocks.push(
                json!({"type": "server_tool_use", "id": id, "name": "web_search", "input": {"query": query}}),
            );
            blocks.push(json!({"type": "web_search_tool_result", "tool_use_id": id, "content": results}));
        }
        let text = self.held.as_str();
        let mut at = 0;
        for span in self.grounding.cited_spans(text) {
            if span.start > at {
                blocks.push(json!({"type": "text", "text": &text[at..span.start]}));
            }
            blocks.push(json!({"type": "text", "text": &text[span.start..span.end],
                               "citations": self.citations(text, &span)}));
            at = span.end;
        }
        if at < text.len() {
            blocks.push(json!({"type": "text", "text": &text[at..]}));
        }
        blocks
    }

    fn citations(&self, text: &str, span: &CitedSpan) -> Vec<Value> {
        let cited: String = text[span.start..span.end].chars().take(MAX_CITED_CHARS).collect();
        span.sources
            .iter()
            .filter_map(|&i| self.grounding.sources.get(i).map(|s| (i, s)))
            .map(|(i, s)| {
                let index = URL_SAFE_NO_PAD.encode(format!("{i}:{}-{}", span.start, span.end));
                json!({"type": "web_search_result_location", "url": s.url, "title": s.title,
                       "cited_text": cited, "encrypted_index": index})
            })
            .collect()
    }

    /// Writes every block as stream events, from block index `next_index` on (advanced past them).
    pub(super) fn write_events(&self, out: &mut Vec<u8>, next_index: &mut u32) {
        for mut block in self.blocks() {
            let index = *next_index;
            *next_index += 1;
            let kind = block["type"].as_str().unwrap_or_default().to_owned();
            let mut deltas = Vec::new();
            match kind.as_str() {
                "server_tool_use" => {
                    let input = block["input"].take();
                    block["input"] = json!({});
                    deltas.push(json!({"type": "input_json_delta", "partial_json": input.to_string()}));
                }
                "text" => {
                    let text = block["text"].take();
                    block["text"] = json!("");
                    if let Some(Value::Array(citations)) =
                        block.as_object_mut().and_then(|b| b.remove("citations"))
                    {
                        deltas.extend(
                            citations.into_iter().map(|c| json!({"type": "citations_delta", "citation": c})),
                        );
                    }
                    deltas.push(json!({"type": "text_delta", "text": text}));
                }
                _ => {}
            }
            let start = json!({"type": "content_block_start", "index": index, "content_block": block});
            write_named_event(out, "content_block_start", start.to_string().as_bytes());
            for delta in deltas {
                let event = json!({"type": "content_block_delta", "index": index, "delta": delta});
                write_named_event(out, "content_block_delta", event.to_string().as_bytes());
            }
            let stop = json!({"type": "content_block_stop", "index": index});
            write_named_event(out, "content_block_stop", stop.to_string().as_bytes());
        }
    }

    /// Appends every block to a folded `content` array that already holds `written` blocks.
    pub(super) fn write_folded(&self, out: &mut Vec<u8>, written: usize) {
        for (i, block) in self.blocks().iter().enumerate() {
            if written + i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(block.to_string().as_bytes());
        }
    }

    /// `,"server_tool_use":{…}` for the usage object.
    pub(super) fn write_usage(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b",\"server_tool_use\":{\"web_search_requests\":");
        out.extend_from_slice(self.requests().to_string().as_bytes());
        out.extend_from_slice(b",\"web_fetch_requests\":0}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::anthropic::{AnthropicFold, AnthropicStream, AnthropicStreamOptions};
    use crate::stream::{Fold, Translator};

    fn turn() -> SearchTurn {
        let metadata = json!({
            "webSearchQueries": ["levitate gateway", "pingora"],
            "groundingChunks": [
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A", "title": "levitate.dev"}},
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/B", "title": "cloudflare.com"}},
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/C", "title": "wikipedia.org"}},
            ],
            "groundingSupports": [
                {"segment": {"startIndex": 9, "endIndex": 31, "text": "Levitate is a gateway."}, "groundingChunkIndices": [0, 2]},
            ],
        });
        let mut turn = SearchTurn::new("toolu_abc_", DomainFilter::default());
        turn.hold("Summary: ");
        turn.hold("Levitate is a gateway. Thanks.");
        turn.absorb(Grounding::from_json(metadata.to_string().as_bytes()).unwrap());
        turn
    }

    #[test]
    fn searches_results_and_cited_text_fold_in_order() {
        let mut out = b"[".to_vec();
        turn().write_folded(&mut out, 0);
        out.push(b']');
        let blocks: Value = serde_json::from_slice(&out).unwrap();
        let kinds: Vec<&str> =
            blocks.as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "server_tool_use",
                "web_search_tool_result",
                "server_tool_use",
                "web_search_tool_result",
                "text",
                "text",
                "text"
            ]
        );
        assert_eq!(blocks[0]["id"], "srvtoolu_abc_0");
        assert_eq!(blocks[0]["input"], json!({"query": "levitate gateway"}));
        assert_eq!(blocks[1]["tool_use_id"], "srvtoolu_abc_0");
        assert_eq!(blocks[1]["content"].as_array().unwrap().len(), 2, "three sources over two queries");
        assert_eq!(blocks[3]["content"][0]["title"], "wikipedia.org");
        assert_eq!(blocks[1]["content"][0]["page_age"], Value::Null);
        assert!(blocks[1]["content"][0]["encrypted_content"].as_str().is_some_and(|s| !s.is_empty()));
        assert_eq!(blocks[4], json!({"type": "text", "text": "Summary: "}));
        assert_eq!(blocks[5]["text"], "Levitate is a gateway.");
        let citation = &blocks[5]["citations"][1];
        assert_eq!(citation["type"], "web_search_result_location");
        assert_eq!(citation["title"], "wikipedia.org");
        assert_eq!(citation["cited_text"], "Levitate is a gateway.");
        assert_eq!(blocks[6], json!({"type": "text", "text": " Thanks."}));
        let text: String = blocks.as_array().unwrap().iter().filter_map(|b| b["text"].as_str()).collect();
        assert_eq!(text, "Summary: Levitate is a gateway. Thanks.", "no text is lost or repeated");
    }

    #[test]
    fn stream_events_carry_the_query_and_citations_as_deltas() {
        let mut out = Vec::new();
        let mut next = 2;
        turn().write_events(&mut out, &mut next);
        assert_eq!(next, 9);
        let text = String::from_utf8(out).unwrap();
        let events: Vec<Value> = text
            .split("\n\n")
            .filter_map(|frame| {
                frame.split_once("data: ").map(|(_, data)| serde_json::from_str(data).unwrap())
            })
            .collect();
        assert_eq!(
            events[0]["content_block"],
            json!({"type": "server_tool_use", "id": "srvtoolu_abc_0", "name": "web_search", "input": {}})
        );
        assert_eq!(events[0]["index"], 2);
        assert_eq!(
            events[1]["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"query\":\"levitate gateway\"}"})
        );
        let cited: Vec<&Value> = events.iter().filter(|e| e["delta"]["type"] == "citations_delta").collect();
        assert_eq!(cited.len(), 2);
        assert_eq!(
            cited[0]["delta"]["citation"]["url"],
            "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A"
        );
        let mut usage = Vec::new();
        turn().write_usage(&mut usage);
        assert_eq!(
            String::from_utf8(usage).unwrap(),
            ",\"server_tool_use\":{\"web_search_requests\":2,\"web_fetch_requests\":0}"
        );
    }

    /// Upstream events of a grounded Gemini answer: a thought, text in two events, then the metadata with the
    /// finish reason and a signature on an empty text part.
    fn grounded_events() -> Vec<String> {
        let event = |parts: Value, extra: Value| {
            let mut candidate = json!({"content": {"role": "model", "parts": parts}});
            candidate.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({"response": {"candidates": [candidate]}}).to_string()
        };
        let metadata = json!({"webSearchQueries": ["levitate"],
            "groundingChunks": [{"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A", "title": "levitate.dev"}}],
            "groundingSupports": [{"segment": {"endIndex": 8, "text": "Levitate"}, "groundingChunkIndices": [0]}]});
        vec![
            event(json!([{"text": "**Searching**", "thought": true}]), json!({})),
            event(json!([{"text": "Levitate"}]), json!({})),
            event(json!([{"text": " serves clients."}]), json!({})),
            event(
                json!([{"text": "", "thoughtSignature": "EsigG"}]),
                json!({"finishReason": "STOP", "groundingMetadata": metadata,
                "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13}}),
            ),
        ]
    }

    fn options() -> AnthropicStreamOptions {
        AnthropicStreamOptions {
            id: "msg_ws".into(),
            model: "claude-sonnet-4-5".into(),
            tool_id_prefix: "toolu_ws_".into(),
            tool_names: crate::inner::ToolNameMap::default(),
            input_tokens_hint: 1,
            web_search: Some(DomainFilter::default()),
        }
    }

    #[test]
    fn the_stream_machine_streams_thinking_then_searches_then_cited_text() {
        let mut stream = AnthropicStream::new(options());
        let mut out = Vec::new();
        for (i, event) in grounded_events().into_iter().enumerate() {
            stream.on_event(&mut event.into_bytes(), &mut out).unwrap();
            if i == 2 {
                assert!(!String::from_utf8_lossy(&out).contains("text_delta"), "text is held until the end");
                assert!(stream.emitted_anything(), "held text is an answer, not an empty one");
            }
        }
        stream.finish(&mut out);
        let events: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|frame| {
                frame.split_once("data: ").map(|(_, data)| serde_json::from_str(data).unwrap())
            })
            .collect();
        let starts: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .map(|e| (e["index"].as_u64().unwrap(), e["content_block"]["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            starts,
            [
                (0, "thinking"),
                (1, "server_tool_use"),
                (2, "web_search_tool_result"),
                (3, "text"),
                (4, "text")
            ]
        );
        let delta = events.iter().find(|e| e["type"] == "message_delta").unwrap();
        assert_eq!(delta["usage"]["server_tool_use"]["web_search_requests"], 1);
        assert_eq!(delta["delta"]["stop_reason"], "end_turn");

        let mut fold = AnthropicFold::new(options());
        for event in grounded_events() {
            fold.on_event(&mut event.into_bytes()).unwrap();
        }
        let message: Value = serde_json::from_slice(&fold.finish()).unwrap();
        let kinds: Vec<&str> =
            message["content"].as_array().unwrap().iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["thinking", "server_tool_use", "web_search_tool_result", "text", "text"]);
        assert_eq!(message["content"][3]["citations"][0]["cited_text"], "Levitate");
        assert_eq!(message["content"][4]["text"], " serves clients.");
        assert_eq!(message["usage"]["server_tool_use"]["web_search_requests"], 1);
    }

    #[test]
    fn blocked_domains_remove_results_and_citations() {
        let mut turn = turn();
        turn.domains = DomainFilter { allowed: vec![], blocked: vec!["wikipedia.org".into()] };
        turn.grounding.retain_sources(&turn.domains);
        let blocks = turn.blocks();
        let titles: Vec<&str> = blocks
            .iter()
            .filter(|b| b["type"] == "web_search_tool_result")
            .flat_map(|b| b["content"].as_array().unwrap())
            .map(|r| r["title"].as_str().unwrap())
            .collect();
        assert_eq!(titles, ["levitate.dev", "cloudflare.com"]);
        let citations: Vec<&Value> = blocks.iter().filter_map(|b| b.get("citations")).collect();
        assert_eq!(citations[0].as_array().unwrap().len(), 1);
    }

    #[test]
    fn without_grounding_the_held_text_is_one_plain_block() {
        let mut turn = SearchTurn::new("toolu_x_", DomainFilter::default());
        turn.hold("No search was needed.");
        assert_eq!(turn.requests(), 0);
        assert_eq!(turn.blocks(), vec![json!({"type": "text", "text": "No search was needed."})]);
        assert!(SearchTurn::new("p", DomainFilter::default()).blocks().is_empty());
    }
}
