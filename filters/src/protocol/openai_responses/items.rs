//! The output items of a Responses answer (`reasoning`, `message`, `function_call`, `custom_tool_call`,
//! `web_search_call`) as
//! the stream machine ([`super::stream`]) builds them, and their JSON in OpenAI's shape, for the item events
//! and for the final `response` object alike.

use serde_json::{json, Value};

use super::seal::SignedOn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Reasoning,
    Message,
    FunctionCall,
    CustomToolCall,
    WebSearchCall,
}

#[derive(Debug)]
pub(super) struct Item {
    pub(super) kind: Kind,
    pub(super) id: String,
    /// Summary text, message text, arguments or custom input.
    pub(super) text: String,
    pub(super) call_id: String,
    pub(super) name: String,
    pub(super) namespace: Option<String>,
    /// Reasoning: the whole thought text and the turn's signature.
    pub(super) thought: String,
    pub(super) signature: Option<String>,
    pub(super) signed_on: SignedOn,
    pub(super) encrypted: Option<String>,
    /// Message: the `output_text` part's `url_citation` annotations (a web search's, set when it ends).
    pub(super) annotations: Vec<Value>,
    /// Web search call: its `action` (`{type: "search", query, sources?}`).
    pub(super) action: Value,
    pub(super) done: bool,
}

impl Item {
    pub(super) fn new(kind: Kind, id: String) -> Self {
        Item {
            kind,
            id,
            text: String::new(),
            call_id: String::new(),
            name: String::new(),
            namespace: None,
            thought: String::new(),
            signature: None,
            signed_on: SignedOn::Thought,
            encrypted: None,
            annotations: Vec::new(),
            action: Value::Null,
            done: false,
        }
    }

    pub(super) fn json(&self) -> Value {
        let mut json = self.json_without_namespace();
        if let (Some(namespace), Some(map)) = (&self.namespace, json.as_object_mut()) {
            map.insert("namespace".into(), Value::from(namespace.as_str()));
        }
        json
    }

    /// A message's one `output_text` part.
    pub(super) fn text_part(&self) -> Value {
        json!({"type": "output_text", "text": self.text, "annotations": self.annotations, "logprobs": []})
    }

    fn json_without_namespace(&self) -> Value {
        let status = if self.done { "completed" } else { "in_progress" };
        match self.kind {
            Kind::Reasoning => {
                let summary = if self.text.is_empty() {
                    json!([])
                } else {
                    json!([{"type": "summary_text", "text": self.text}])
                };
                json!({"id": self.id, "type": "reasoning", "summary": summary,
                       "encrypted_content": self.encrypted})
            }
            Kind::Message => {
                let content =
                    if self.done || !self.text.is_empty() { json!([self.text_part()]) } else { json!([]) };
                json!({"id": self.id, "type": "message", "role": "assistant", "status": status, "content": content})
            }
            Kind::FunctionCall => json!({"id": self.id, "type": "function_call", "call_id": self.call_id,
                "name": self.name, "arguments": if self.done { self.text.as_str() } else { "" }, "status": status}),
            Kind::CustomToolCall => {
                json!({"id": self.id, "type": "custom_tool_call", "call_id": self.call_id,
                "name": self.name, "input": if self.done { self.text.as_str() } else { "" }, "status": status})
            }
            Kind::WebSearchCall => {
                json!({"id": self.id, "type": "web_search_call", "status": status, "action": self.action})
            }
        }
    }
}
