//! A web search answered in the Responses shape: one `web_search_call` item per query Google ran
//! (`action: {type: "search", query, sources?}`), and the answer's cited spans as `url_citation` annotations
//! on the message's `output_text` part, with character offsets (Google reports bytes).
//!
//! Google sends `groundingMetadata` after the text it grounds. The text streams as it comes, so the
//! annotations are announced (`response.output_text.annotation.added`) just before the message closes at
//! the end, and the `web_search_call` items are added after it: in a stream their `output_index` follows the
//! message's, as the SDKs' accumulators need item indices in the order items were added. The folded
//! `response` object has no indices and puts them before the message, where OpenAI does.
//!
//! Google does not say which query found which page: the sources are divided among the queries in order, as
//! the Anthropic answer does. They are shown only when `include` asks for `web_search_call.action.sources`.

use serde_json::{json, Value};

use super::items::{Item, Kind};
use crate::grounding::{char_offset, DomainFilter, Grounding};

/// What a web search's answer needs from the request.
#[derive(Clone, Debug, Default)]
pub struct WebSearchOptions {
    /// The tool's `filters.allowed_domains`, applied to the sources.
    pub domains: DomainFilter,
    /// Whether `include` has `web_search_call.action.sources`.
    pub include_sources: bool,
}

/// The web-search part of one response: what Google reported so far.
#[derive(Debug)]
pub(super) struct ResponsesSearch {
    opts: WebSearchOptions,
    grounding: Grounding,
}

impl ResponsesSearch {
    pub(super) fn new(opts: WebSearchOptions) -> Self {
        ResponsesSearch { opts, grounding: Grounding::default() }
    }

    pub(super) fn absorb(&mut self, grounding: Grounding) {
        self.grounding.absorb(grounding);
        self.grounding.retain_sources(&self.opts.domains);
    }

    /// The `url_citation` annotations of the message `items[message]`. Google's offsets count the whole
    /// visible text of the answer, every message item's text in order, so spans before this message are
    /// left out (they were closed before the metadata came) and the rest are shifted into it.
    pub(super) fn annotations(&self, items: &[Item], message: usize) -> Vec<Value> {
        let texts = |items: &'_ [Item]| -> String {
            items.iter().filter(|i| i.kind == Kind::Message).map(|i| i.text.as_str()).collect()
        };
        let (Some(before), Some(own)) = (items.get(..message), items.get(message)) else {
            return Vec::new();
        };
        let offset = texts(before).len();
        let full = texts(items);
        let own = own.text.as_str();
        let mut annotations = Vec::new();
        for span in self.grounding.cited_spans(&full).into_iter().filter(|s| s.start >= offset) {
            let (start, end) = (char_offset(own, span.start - offset), char_offset(own, span.end - offset));
            for source in span.sources.iter().filter_map(|&i| self.grounding.sources.get(i)) {
                annotations.push(json!({"type": "url_citation", "url": source.url, "title": source.title,
                                        "start_index": start, "end_index": end}));
            }
        }
        annotations
    }

    /// One `search` action per query Google ran; sources without a query still make one search.
    pub(super) fn actions(&self) -> Vec<Value> {
        let mut queries: Vec<Option<&str>> =
            self.grounding.queries.iter().map(|q| Some(q.as_str())).collect();
        let sources = &self.grounding.sources;
        if queries.is_empty() && !sources.is_empty() {
            queries.push(None);
        }
        let per_query = sources.len().div_ceil(queries.len().max(1));
        let mut actions = Vec::with_capacity(queries.len());
        for (i, query) in queries.into_iter().enumerate() {
            let mut action = json!({"type": "search"});
            if let Some(query) = query {
                action["query"] = json!(query);
            }
            if self.opts.include_sources {
                let found = sources.iter().skip(i * per_query).take(per_query);
                action["sources"] = found.map(|s| json!({"type": "url", "url": s.url})).collect();
            }
            actions.push(action);
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::WebSearchOptions;
    use crate::grounding::{DomainFilter, GOOGLE_SEARCH_TOOLS};
    use crate::inner::{RequestType, Target, ToolNameMap};
    use crate::protocol::openai_responses::seal::{ReasoningState, SealKey, SealKeys, KEY_LEN};
    use crate::protocol::openai_responses::*;
    use crate::signature::{ModelFamily, NoSignatures};
    use crate::stream::{Fold, Translator};

    fn keys() -> SealKeys {
        SealKeys::new(SealKey::new(1, &[3; KEY_LEN]).unwrap(), None)
    }

    struct FixedSealer;

    impl Sealer for FixedSealer {
        fn seal(&self, state: &ReasoningState) -> String {
            keys().seal(state, [0; 12])
        }
    }

    /// The inner request (as JSON) and its request type for `body` sent to `model`.
    fn build(model: &str, body: Value) -> (Value, RequestType) {
        let req = parse_responses_request(serde_json::to_vec(&body).unwrap().leak()).unwrap();
        let target = Target { upstream_model: model, session_id: "-1" };
        let inner = build_inner_request(&req, &target, &NoSignatures, &keys()).unwrap();
        (serde_json::from_slice(&inner.json).unwrap(), inner.request_type)
    }

    fn ask(tools: Value) -> Value {
        json!({"model": "gpt-5", "input": "Who makes Pingora?", "tools": tools})
    }

    #[test]
    fn a_web_search_tool_becomes_google_search_unless_functions_are_declared() {
        let google: Value = serde_json::from_slice(GOOGLE_SEARCH_TOOLS).unwrap();
        for kind in ["web_search", "web_search_preview"] {
            let (inner, request_type) = build("gemini-3-flash", ask(json!([{"type": kind}])));
            assert_eq!((&inner["tools"], request_type), (&google, RequestType::WebSearch), "{kind}");
            assert!(inner.get("toolConfig").is_none(), "{inner}");
        }
        // Codex offers web search beside its own tools: they win, and the search is dropped.
        let codex = ask(json!([{"type": "function", "name": "shell", "parameters": {"type": "object"}},
                               {"type": "web_search", "external_web_access": true}]));
        let (inner, request_type) = build("gemini-3-flash", codex.clone());
        assert_eq!(request_type, RequestType::Agent);
        assert_eq!(inner["tools"][0]["functionDeclarations"][0]["name"], "shell");
        assert_eq!(inner["tools"].as_array().unwrap().len(), 1, "no googleSearch beside functions: {inner}");
        let req = parse_responses_request(serde_json::to_vec(&codex).unwrap().leak()).unwrap();
        assert!(!req.web_search());
        let custom = ask(json!([{"type": "custom", "name": "apply_patch"}, {"type": "web_search_preview"}]));
        assert_eq!(build("gemini-3-flash", custom).1, RequestType::Agent);
    }

    #[test]
    fn web_search_options_are_checked_and_the_allowed_domains_kept() {
        let body = json!({"model": "gpt-5", "input": "x", "include": ["web_search_call.action.sources"],
            "tools": [{"type": "web_search", "search_context_size": "high",
                       "user_location": {"type": "approximate", "country": "DE"},
                       "filters": {"allowed_domains": ["docs.rs", "rust-lang.org"]}}]});
        let req = parse_responses_request(serde_json::to_vec(&body).unwrap().leak()).unwrap();
        assert!(req.web_search() && req.includes_search_sources());
        assert_eq!(
            req.search_domains(),
            DomainFilter { allowed: vec!["docs.rs".into(), "rust-lang.org".into()], blocked: vec![] }
        );
        let refused = |tool: Value| {
            let body = serde_json::to_vec(&ask(json!([tool]))).unwrap();
            parse_responses_request(body.leak()).unwrap_err()
        };
        let e = refused(json!({"type": "web_search", "search_context_size": "huge"}));
        assert_eq!(e.param(), Some("tools[0].search_context_size"), "{e}");
        let e = refused(json!({"type": "web_search", "user_location": "Berlin"}));
        assert_eq!(e.param(), Some("tools[0].user_location"), "{e}");
        let e = refused(json!({"type": "web_search", "filters": {"allowed_domains": "docs.rs"}}));
        assert!(e.to_string().contains("allowed_domains"), "{e}");
    }

    // --- the answer ---

    const TEXT_A: &str = "Pingora is by Cloudflare.";
    const TEXT_B: &str = " Café: it is Rust.";

    fn options(include_sources: bool, domains: DomainFilter) -> ResponsesStreamOptions {
        ResponsesStreamOptions {
            id: "resp_ws".into(),
            model: "gpt-5".into(),
            created_at: 1,
            tool_call_id_prefix: "call_ws_".into(),
            tool_names: ToolNameMap::default(),
            tools: Vec::new(),
            family: ModelFamily::Gemini,
            sealer: Arc::new(FixedSealer),
            show_summary: true,
            web_search: Some(WebSearchOptions { domains, include_sources }),
        }
    }

    /// A grounded answer as Google streams it: the text, then the metadata with the finish reason.
    fn grounded_events() -> Vec<Vec<u8>> {
        let whole = format!("{TEXT_A}{TEXT_B}");
        let rust_at = whole.find("it is Rust.").unwrap();
        let metadata = json!({
            "webSearchQueries": ["pingora maker", "pingora language"],
            "groundingChunks": [
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A", "title": "cloudflare.com"}},
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/B", "title": "github.com"}},
            ],
            "groundingSupports": [
                {"segment": {"endIndex": TEXT_A.len(), "text": TEXT_A}, "groundingChunkIndices": [0]},
                {"segment": {"startIndex": rust_at, "endIndex": whole.len(), "text": "it is Rust."},
                 "groundingChunkIndices": [1, 0]},
            ],
        });
        let candidate = |parts: Value| json!({"content": {"role": "model", "parts": parts}});
        let mut last = candidate(json!([{"text": TEXT_B}]));
        last["finishReason"] = json!("STOP");
        last["groundingMetadata"] = metadata;
        [candidate(json!([{"text": TEXT_A}])), last]
            .into_iter()
            .map(|c| serde_json::to_vec(&json!({"response": {"candidates": [c]}})).unwrap())
            .collect()
    }

    fn frames(opts: ResponsesStreamOptions) -> Vec<Value> {
        let mut stream = ResponsesStream::new(opts);
        let mut out = Vec::new();
        for mut event in grounded_events() {
            stream.on_event(&mut event, &mut out).unwrap();
        }
        stream.finish(&mut out);
        String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|f| f.split_once("\ndata: ").map(|(_, data)| serde_json::from_str(data).unwrap()))
            .collect()
    }

    #[test]
    fn a_grounded_stream_annotates_the_message_then_adds_one_search_call_per_query() {
        let frames = frames(options(true, DomainFilter::default()));
        let names: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
        let search_call = [
            "response.output_item.added",
            "response.web_search_call.in_progress",
            "response.web_search_call.searching",
            "response.web_search_call.completed",
            "response.output_item.done",
        ];
        let mut expected = vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.annotation.added",
            "response.output_text.annotation.added",
            "response.output_text.annotation.added",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
        ];
        expected.extend(search_call);
        expected.extend(search_call);
        expected.push("response.completed");
        assert_eq!(names, expected);
        // What the SDKs' accumulators rely on: sequence numbers count up, and every event's output_index
        // names the item added at that position.
        let mut added: Vec<Value> = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            assert_eq!(frame["sequence_number"], json!(i));
            if frame["type"] == "response.output_item.added" {
                assert_eq!(frame["output_index"], json!(added.len()));
                added.push(frame["item"].clone());
            } else if let Some(index) = frame["output_index"].as_u64() {
                assert_eq!(
                    added[index as usize]["id"],
                    frame["item_id"].as_str().map_or(frame["item"]["id"].clone(), Value::from)
                );
            }
        }
        let first = &frames[6];
        assert_eq!((first["output_index"].clone(), first["content_index"].clone()), (json!(0), json!(0)));
        assert_eq!(first["annotation_index"], 0);
        let chars = |s: &str| s.chars().count();
        let rust_start = chars(TEXT_A) + chars(" Café: ");
        assert_eq!(
            first["annotation"],
            json!({"type": "url_citation", "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A",
                   "title": "cloudflare.com", "start_index": 0, "end_index": chars(TEXT_A)})
        );
        assert_eq!(frames[7]["annotation"]["title"], "github.com");
        assert_eq!(
            (frames[7]["annotation"]["start_index"].clone(), frames[7]["annotation"]["end_index"].clone()),
            (json!(rust_start), json!(rust_start + chars("it is Rust."))),
            "character offsets, though Google counts the bytes of `é`"
        );
        assert_eq!(frames[8]["annotation_index"], 2);
        let part = &frames[10]["part"];
        assert_eq!(part["annotations"].as_array().unwrap().len(), 3);
        assert_eq!(frames[11]["item"]["content"][0], *part);
        let added_call = &frames[12]["item"];
        assert_eq!(
            (added_call["type"].as_str(), added_call["status"].as_str()),
            (Some("web_search_call"), Some("in_progress"))
        );
        let done_call = &frames[16]["item"];
        assert_eq!(done_call["status"], "completed");
        assert_eq!(
            done_call["action"],
            json!({"type": "search", "query": "pingora maker", "sources": [
                {"type": "url", "url": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/A"}]})
        );
        assert!(done_call["id"].as_str().unwrap().starts_with("ws_"));
        let response = &frames.last().unwrap()["response"];
        let kinds: Vec<&str> =
            response["output"].as_array().unwrap().iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["message", "web_search_call", "web_search_call"],
            "the final output keeps the stream's indices"
        );
        assert_eq!(response["output"][2]["action"]["query"], "pingora language");
    }

    #[test]
    fn the_fold_puts_searches_before_the_message_and_filters_sources_by_domain() {
        let fold = |opts| {
            let mut fold = ResponsesFold::new(opts);
            for mut event in grounded_events() {
                fold.on_event(&mut event).unwrap();
            }
            let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
            body
        };
        let body = fold(options(false, DomainFilter::default()));
        let output = body["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["web_search_call", "web_search_call", "message"]);
        assert_eq!(
            output[0]["action"],
            json!({"type": "search", "query": "pingora maker"}),
            "no sources unless included"
        );
        let text = &output[2]["content"][0];
        assert_eq!(text["text"], format!("{TEXT_A}{TEXT_B}"));
        assert_eq!(text["annotations"].as_array().unwrap().len(), 3);
        let only_github = DomainFilter { allowed: vec!["github.com".into()], blocked: vec![] };
        let body = fold(options(true, only_github));
        let annotations = body["output"][2]["content"][0]["annotations"].as_array().unwrap().clone();
        assert_eq!(annotations.len(), 1, "{annotations:?}");
        assert_eq!(annotations[0]["title"], "github.com");
        assert_eq!(
            body["output"][0]["action"]["sources"][0]["url"],
            "https://vertexaisearch.cloud.google.com/grounding-api-redirect/B"
        );
    }

    #[test]
    fn an_answer_without_grounding_metadata_has_no_search_items() {
        let mut fold = ResponsesFold::new(options(true, DomainFilter::default()));
        let event = json!({"response": {"candidates": [{"content": {"parts": [{"text": "Hi"}]}, "finishReason": "STOP"}]}});
        fold.on_event(&mut serde_json::to_vec(&event).unwrap()).unwrap();
        let body: Value = serde_json::from_slice(&fold.finish()).unwrap();
        assert_eq!(body["output"].as_array().unwrap().len(), 1);
        assert_eq!(body["output"][0]["content"][0]["annotations"], json!([]));
    }
}
