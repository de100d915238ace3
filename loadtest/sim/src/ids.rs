//! The ids every chunk of one answer carries (`responseId`, `modelVersion`, the trace id) and the wrapper
//! around each chunk: `{"response":…,"traceId":…,"metadata":{}}` for `v1internal`, the response alone for
//! the public Gemini API.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};

use crate::answer::Usage;
use crate::models::{self, Family};

/// The ids one answer carries on every chunk.
pub struct ResponseIds {
    /// The public Gemini API's shape: the response alone, without the `v1internal` wrapper.
    bare: bool,
    model_version: String,
    response_id: String,
    trace_id: String,
}

impl ResponseIds {
    pub fn new(model: &str, trace_id: &str, bare: bool) -> ResponseIds {
        let mut rng = rand::thread_rng();
        let response_id = if Family::of(model) == Family::Claude {
            let tail: String = (0..24)
                .map(|_| {
                    char::from(
                        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789"[rng.gen_range(0..57)],
                    )
                })
                .collect();
            format!("msg_vrtx_01{tail}")
        } else {
            URL_SAFE_NO_PAD.encode(rng.gen::<[u8; 16]>())
        };
        ResponseIds {
            bare,
            model_version: models::model_version(model),
            response_id,
            trace_id: trace_id.to_string(),
        }
    }

    /// The `{"response":{…},"traceId","metadata":{}}` wrapper around one chunk's parts.
    /// `grounding` is the candidate's `groundingMetadata`, on a web search's last chunk.
    pub fn wrap(
        &self,
        parts: &[Value],
        finish: Option<&str>,
        usage: Option<Usage>,
        grounding: Option<&Value>,
    ) -> String {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        if let Some(g) = grounding {
            candidate["groundingMetadata"] = g.clone();
        }
        let mut response = json!({
            "candidates": [candidate],
            "modelVersion": self.model_version,
            "responseId": self.response_id,
        });
        if let Some(u) = usage {
            response["usageMetadata"] = u.to_json();
        }
        self.envelope(&response)
    }

    /// `{"response":…,"traceId":…,"metadata":{}}` in Google's key order (serde_json would sort them).
    fn envelope(&self, response: &Value) -> String {
        if self.bare {
            return response.to_string();
        }
        format!("{{\"response\":{response},\"traceId\":{},\"metadata\":{{}}}}", json!(self.trace_id))
    }

    /// The usage-only chunk that follows a STOP chunk in `usage: separate` mode.
    pub fn usage_only(&self, usage: Usage) -> String {
        self.envelope(&json!({"usageMetadata": usage.to_json(), "modelVersion": self.model_version,
                              "responseId": self.response_id}))
    }
}
