//! The upstream `v1internal` request every client protocol is rewritten into, and its per-attempt envelope.
//!
//! A client request is parsed and rewritten once, by its protocol (`protocol/<name>/transform.rs`), into
//! the inner `request` object (contents, tools, generation config); each upstream attempt then only wraps
//! those bytes in a fresh envelope with its account's project and a new request id ([`wrap_envelope`]), so
//! retries on other accounts cost a memcpy, not a second transform. Tool names the upstream would reject
//! are renamed, and the [`ToolNameMap`] built here lets the stream machines give the client its own names
//! back.

use std::collections::{HashMap, HashSet};

use crate::error::ClientError;
use crate::schema::{sanitize_tool_name, SchemaError};

pub(crate) mod body;
pub(crate) mod client_json;
pub(crate) mod request;
mod tool_cache;

pub use tool_cache::ToolCache;

/// What the request is being rewritten for, decided by routing before the transform runs.
#[derive(Clone, Copy, Debug)]
pub struct Target<'a> {
    pub upstream_model: &'a str,
    /// `request.sessionId`: the conversation's affinity key (PROTOCOL.md §11).
    pub session_id: &'a str,
}

/// Why a client request could not be rewritten; always the client's fault (400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransformError {
    /// The body is not JSON, or not the JSON shape of the protocol.
    #[error("{0}")]
    Json(String),
    #[error("{message}")]
    Invalid { param: Option<String>, message: String },
    /// A feature the upstream cannot provide (`n > 1`, logprobs, audio output…).
    #[error("{message}")]
    Unsupported { param: String, message: String },
    #[error("invalid JSON schema in `{param}`: {source}")]
    Schema {
        param: String,
        #[source]
        source: SchemaError,
    },
}

impl TransformError {
    pub(crate) fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        TransformError::Invalid { param: Some(param.into()), message: message.into() }
    }

    pub(crate) fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        TransformError::Unsupported { param: param.into(), message: message.into() }
    }

    /// The request field at fault, when known.
    pub fn param(&self) -> Option<&str> {
        match self {
            TransformError::Json(_) => None,
            TransformError::Invalid { param, .. } => param.as_deref(),
            TransformError::Unsupported { param, .. } | TransformError::Schema { param, .. } => Some(param),
        }
    }
}

impl From<TransformError> for ClientError {
    fn from(error: TransformError) -> Self {
        let param = error.param().map(str::to_owned);
        let mut client = ClientError::invalid(error.to_string());
        client.param = param;
        client
    }
}

/// The transform's output: the inner `request` JSON, the tool names it had to change, and the envelope's
/// `requestType` the request calls for.
#[derive(Clone, Debug)]
pub struct InnerRequest {
    pub json: Vec<u8>,
    pub tool_names: ToolNameMap,
    pub request_type: RequestType,
}

/// The envelope's `requestType` (PROTOCOL.md §2): what kind of work the Antigravity client is asking for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RequestType {
    /// Chat and tool use: everything that is not one of the two below.
    #[default]
    Agent,
    /// A request grounded by Google Search (`googleSearch`, which the upstream never mixes with functions).
    WebSearch,
    /// A request to an image model.
    ImageGen,
}

impl RequestType {
    /// Image models generate images whatever the tools; a request with Google Search is a web search.
    pub fn of(upstream_model: &str, google_search: bool) -> Self {
        if upstream_model.contains("-image") {
            RequestType::ImageGen
        } else if google_search {
            RequestType::WebSearch
        } else {
            RequestType::Agent
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RequestType::Agent => "agent",
            RequestType::WebSearch => "web_search",
            RequestType::ImageGen => "image_gen",
        }
    }
}

impl request::GenerationConfig {
    /// Sets a `thinkingLevel` (Gemini 3's alternative to a budget) with thoughts included.
    pub fn set_thinking_level(&mut self, level: &'static str) {
        self.thinking_config = Some(request::ThinkingConfig {
            include_thoughts: true,
            thinking_budget: None,
            thinking_level: Some(level),
        });
    }

    /// Image models refuse a `thinkingConfig` (the upstream answers 400): whatever thinking the client asked
    /// for is dropped for them, in every protocol; and they are asked for text and image, as the Images
    /// endpoints ask (PROTOCOL.md §2 `responseModalities`), so a chat or Anthropic client gets its image.
    pub(crate) fn for_request_type(mut self, request_type: RequestType) -> Self {
        if request_type == RequestType::ImageGen {
            self.thinking_config = None;
            self.response_modalities = Some(&["TEXT", "IMAGE"]);
        }
        self
    }
}

/// The tool-name map's hasher: every request builds a map and looks each tool name up a few times, and
/// SipHash was a tenth of a cold build. `ahash` is keyed randomly per map too, so a client still cannot
/// choose names that collide.
type NameHasher = ahash::RandomState;

/// Client tool names <-> the names sent upstream (`[A-Za-z0-9_-]{1,64}`, unique).
///
/// Names that are already valid map to themselves and are not stored, so for most requests the map is
/// empty and both lookups are a miss that returns the input.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolNameMap {
    to_upstream: HashMap<String, String, NameHasher>,
    to_client: HashMap<String, String, NameHasher>,
    /// Every upstream name handed out, renamed or not, to keep renames unique.
    used: HashSet<String, NameHasher>,
    /// The next `_n` suffix to try for a clashing name, shared by all names (see [`ToolNameMap::register`]).
    next_suffix: usize,
}

impl ToolNameMap {
    /// A map for `names`. Names that need no change are reserved first, so a renamed tool never takes the
    /// name of a tool that kept its own.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str> + Clone) -> Self {
        let mut map = ToolNameMap::default();
        for name in names.clone() {
            if matches!(sanitize_tool_name(name), std::borrow::Cow::Borrowed(_)) {
                map.used.insert(name.to_owned());
            }
        }
        for name in names {
            map.register(name);
        }
        map
    }

    /// The upstream name for `client`, assigning one if the name was not seen yet.
    ///
    /// A sanitized name that is taken gets the suffix `_n` from one counter for the whole map, never reset:
    /// every suffix is tried at most once, so renaming any number of clashing names costs linear time (a
    /// counter per name, restarting at `_2`, costs quadratic time on thousands of names that clash).
    pub fn register(&mut self, client: &str) -> &str {
        let sanitized = sanitize_tool_name(client);
        if let std::borrow::Cow::Borrowed(same) = sanitized {
            // `client` is valid as is; borrow it back from the set to return a `&self` lifetime. Names given
            // to `new` are in the set already, so this is usually one lookup and no allocation.
            if !self.used.contains(same) {
                self.used.insert(same.to_owned());
            }
            return self.used.get(client).map(String::as_str).unwrap_or_default();
        }
        if !self.to_upstream.contains_key(client) {
            let base = sanitized.into_owned();
            let mut candidate = base.clone();
            while self.used.contains(&candidate) {
                let n = self.next_suffix.max(2);
                self.next_suffix = n + 1;
                let suffix = format!("_{n}");
                let keep = base.len().min(64 - suffix.len());
                candidate = format!("{}{suffix}", &base[..keep]);
            }
            self.used.insert(candidate.clone());
            self.to_client.insert(candidate.clone(), client.to_owned());
            self.to_upstream.insert(client.to_owned(), candidate);
        }
        self.to_upstream.get(client).map(String::as_str).unwrap_or_default()
    }

    /// The name sent upstream for a client tool name.
    pub fn upstream_name<'a>(&'a self, client: &'a str) -> &'a str {
        self.to_upstream.get(client).map_or(client, String::as_str)
    }

    /// The client's own name for a name the upstream used in a `functionCall`.
    pub fn client_name<'a>(&'a self, upstream: &'a str) -> &'a str {
        self.to_client.get(upstream).map_or(upstream, String::as_str)
    }

    /// Whether no name had to change.
    pub fn is_identity(&self) -> bool {
        self.to_client.is_empty()
    }
}

/// Appends the per-attempt `v1internal` envelope around an already-built inner `request` object:
/// `{"project","model","userAgent":"antigravity","requestType","requestId","request":<inner>}`.
pub fn wrap_envelope(
    inner: &InnerRequest,
    project: &str,
    upstream_model: &str,
    request_id: &str,
    out: &mut Vec<u8>,
) {
    out.reserve(inner.json.len() + project.len() + upstream_model.len() + request_id.len() + 104);
    out.extend_from_slice(b"{\"project\":");
    push_json_string(out, project);
    out.extend_from_slice(b",\"model\":");
    push_json_string(out, upstream_model);
    out.extend_from_slice(b",\"userAgent\":\"antigravity\",\"requestType\":\"");
    out.extend_from_slice(inner.request_type.as_str().as_bytes());
    out.extend_from_slice(b"\",\"requestId\":");
    push_json_string(out, request_id);
    out.extend_from_slice(b",\"request\":");
    out.extend_from_slice(&inner.json);
    out.push(b'}');
}

fn push_json_string(out: &mut Vec<u8>, value: &str) {
    // Writing into a Vec cannot fail, and a `str` always serializes.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// Test helper for the transforms' tests: `body` with `extra`'s fields set on it.
#[cfg(test)]
pub(crate) fn with_fields(mut body: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        body[k] = v.clone();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_wraps_inner_request_bytes() {
        let mut out = b"junk".to_vec();
        out.clear();
        let inner = InnerRequest {
            json: br#"{"contents":[]}"#.to_vec(),
            tool_names: ToolNameMap::default(),
            request_type: RequestType::Agent,
        };
        wrap_envelope(&inner, "proj-\"1\"", "gemini-3-flash", "agent-abc", &mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"project": "proj-\"1\"", "model": "gemini-3-flash", "userAgent": "antigravity",
                "requestType": "agent", "requestId": "agent-abc", "request": {"contents": []}})
        );
    }

    #[test]
    fn request_type_follows_the_model_then_the_tools() {
        assert_eq!(RequestType::of("gemini-3-flash", false), RequestType::Agent);
        assert_eq!(RequestType::of("claude-sonnet-4-5", false).as_str(), "agent");
        assert_eq!(RequestType::of("gemini-3-flash", true).as_str(), "web_search");
        assert_eq!(RequestType::of("gemini-3-pro-image", false).as_str(), "image_gen");
        assert_eq!(RequestType::of("gemini-3-pro-image", true), RequestType::ImageGen);
    }

    #[test]
    fn tool_names_map_both_ways_and_stay_unique() {
        let mut map = ToolNameMap::new(["a_b", "a.b", "a:b", "ok"]);
        assert_eq!(map.upstream_name("a_b"), "a_b");
        assert_eq!(map.upstream_name("a.b"), "a_b_2");
        assert_eq!(map.upstream_name("a:b"), "a_b_3");
        assert_eq!(map.client_name("a_b_3"), "a:b");
        assert_eq!(map.client_name("ok"), "ok");
        assert_eq!(map.client_name("unknown"), "unknown");
        assert_eq!(map.register("x y"), "x_y");
        assert_eq!(map.register("x y"), "x_y");
        assert!(!map.is_identity());
        assert!(ToolNameMap::new(["read", "write"]).is_identity());
    }

    #[test]
    fn thousands_of_clashing_names_get_distinct_names_each_suffix_tried_once() {
        // Distinct client names that all sanitize to `t__`, and valid names that take two suffixes ahead.
        let cjk = |i: u32| char::from_u32(0x4e00 + i).unwrap_or('x');
        let names: Vec<String> = (0..3000).map(|i| format!("t{}{}", cjk(i / 60), cjk(i % 60))).collect();
        let reserved = ["t___2", "t___3"];
        let mut map = ToolNameMap::new(reserved.into_iter().chain(names.iter().map(String::as_str)));
        let upstream: HashSet<&str> = names.iter().map(|n| map.upstream_name(n)).collect();
        assert_eq!(upstream.len(), names.len(), "every renamed tool has its own name");
        assert!(reserved.iter().all(|r| !upstream.contains(r) && map.upstream_name(r) == *r), "kept");
        for name in &names {
            assert_eq!(map.client_name(map.upstream_name(name)), name);
        }
        // One suffix per clash and per name already taken: none is tried twice.
        assert!(map.next_suffix <= 2 + names.len() + 2, "{}", map.next_suffix);
        let first = map.upstream_name(&names[0]).to_owned();
        assert_eq!(map.register(&names[0]), first, "registering again keeps the name");
    }

    #[test]
    fn errors_become_400_with_param() {
        let e: ClientError = TransformError::unsupported("n", "n > 1 is not supported by Levitate").into();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("n")));
        let e: ClientError = TransformError::Json("bad".into()).into();
        assert_eq!((e.status, e.param), (400, None));
    }
}
