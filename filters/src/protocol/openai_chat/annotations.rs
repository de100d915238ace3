//! A web search's sources as OpenAI chat `url_citation` annotations on the assistant message:
//! `{"type":"url_citation","url_citation":{"url","title","start_index","end_index"}}`, one per cited span and
//! source, with character offsets into `message.content` (Google reports byte offsets). Google sends its
//! `groundingMetadata` on one of the last events, so the annotations go out in one delta just before the
//! finish chunk, or on the folded message.

use serde_json::json;

use crate::grounding::{char_offset, Grounding};

/// The visible text of a web search's answer and what Google reported for it.
#[derive(Debug, Default)]
pub(super) struct ChatSearch {
    content: String,
    grounding: Grounding,
}

impl ChatSearch {
    /// Text the client was sent as `content`.
    pub(super) fn push_content(&mut self, text: &str) {
        self.content.push_str(text);
    }

    pub(super) fn absorb(&mut self, grounding: Grounding) {
        self.grounding.absorb(grounding);
    }

    /// The `annotations` array, or `None` when nothing cites a source.
    pub(super) fn annotations(&self) -> Option<Vec<u8>> {
        let text = self.content.as_str();
        let mut annotations = Vec::new();
        for span in self.grounding.cited_spans(text) {
            let (start, end) = (char_offset(text, span.start), char_offset(text, span.end));
            for source in span.sources.iter().filter_map(|&i| self.grounding.sources.get(i)) {
                annotations.push(json!({"type": "url_citation", "url_citation": {
                    "url": source.url, "title": source.title, "start_index": start, "end_index": end}}));
            }
        }
        (!annotations.is_empty()).then(|| serde_json::Value::Array(annotations).to_string().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai_chat::{OpenAiFold, OpenAiStream, OpenAiStreamOptions};
    use crate::stream::{Fold, Translator};

    fn grounded_events() -> Vec<Vec<u8>> {
        let metadata = json!({"groundingChunks": [{"web": {"uri": "https://r/1", "title": "a.dev"}}],
            "groundingSupports": [{"segment": {"endIndex": 5, "text": "Hello"}, "groundingChunkIndices": [0]}]});
        vec![
            json!({"response": {"candidates": [{"content": {"parts": [{"text": "Hello"}]}}]}}),
            json!({"response": {"candidates": [{"content": {"parts": [{"text": " you"}]}, "finishReason": "STOP",
                                                "groundingMetadata": metadata}]}}),
        ]
        .into_iter()
        .map(|v| v.to_string().into_bytes())
        .collect()
    }

    fn options() -> OpenAiStreamOptions {
        OpenAiStreamOptions {
            id: "chatcmpl-ws".into(),
            model: "gpt-4o".into(),
            created: 1,
            include_usage: false,
            tool_call_id_prefix: "call_ws_".into(),
            tool_names: Default::default(),
            web_search: true,
        }
    }

    #[test]
    fn the_machines_send_annotations_just_before_the_finish_and_on_the_folded_message() {
        let mut stream = OpenAiStream::new(options());
        let mut out = Vec::new();
        for mut event in grounded_events() {
            stream.on_event(&mut event, &mut out).unwrap();
        }
        stream.finish(&mut out);
        let deltas: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .split("\n\n")
            .filter_map(|f| f.strip_prefix("data: ").and_then(|d| serde_json::from_str(d).ok()))
            .map(|v: serde_json::Value| v["choices"][0].clone())
            .collect();
        let n = deltas.len();
        assert_eq!(deltas[n - 2]["delta"]["annotations"][0]["url_citation"]["end_index"], 5);
        assert_eq!(deltas[n - 1]["finish_reason"], "stop");
        let mut fold = OpenAiFold::new(options());
        for mut event in grounded_events() {
            fold.on_event(&mut event).unwrap();
        }
        let body: serde_json::Value = serde_json::from_slice(&fold.finish()).unwrap();
        let message = &body["choices"][0]["message"];
        assert_eq!(message["content"], "Hello you");
        assert_eq!(message["annotations"][0]["url_citation"]["title"], "a.dev");
    }

    #[test]
    fn cited_spans_become_url_citations_with_character_offsets() {
        let mut search = ChatSearch::default();
        search.push_content("Über Levitate: ");
        search.push_content("it is a gateway.");
        let metadata = json!({"groundingChunks": [{"web": {"uri": "https://r/1", "title": "levitate.dev"}},
                                                  {"web": {"uri": "https://r/2", "title": "b.org"}}],
            "groundingSupports": [{"segment": {"startIndex": 16, "endIndex": 32, "text": "it is a gateway."},
                                   "groundingChunkIndices": [1, 0]}]});
        assert_eq!(search.annotations(), None, "no metadata, no annotations");
        search.absorb(Grounding::from_json(metadata.to_string().as_bytes()).unwrap());
        let got: serde_json::Value = serde_json::from_slice(&search.annotations().unwrap()).unwrap();
        assert_eq!(
            got,
            json!([
                {"type": "url_citation", "url_citation": {"url": "https://r/2", "title": "b.org", "start_index": 15, "end_index": 31}},
                {"type": "url_citation", "url_citation": {"url": "https://r/1", "title": "levitate.dev", "start_index": 15, "end_index": 31}},
            ])
        );
    }
}
