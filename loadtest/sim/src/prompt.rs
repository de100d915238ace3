//! A typed reading of one `v1internal` request (PROTOCOL §2): the facts the validators and the answer generator
//! need (model family, token estimate, last user text and its `[sim:…]` markers, declared tools, generation
//! settings), extracted once so neither has to walk JSON by string keys again. Both camelCase and snake_case
//! keys are accepted, as proto-JSON does.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::faults::{FaultKind, FaultRule};
use crate::models::Family;

/// Looks up a proto-JSON field under its camelCase or snake_case name.
pub fn field<'a>(obj: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    obj.get(camel).or_else(|| obj.get(snake))
}

/// The sim's token estimate: a quarter of the characters, rounded up.
pub fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// Per-request controls written into the last user text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Markers {
    /// `[sim:text]`: never call tools.
    pub text: bool,
    /// `[sim:tool]`: call a tool even when the default would not.
    pub tool: bool,
    /// `[sim:parallel]`: two calls in one chunk.
    pub parallel: bool,
    /// `[sim:fault=NAME]`: inject that fault with default parameters.
    pub fault: Option<FaultKind>,
    /// `[sim:words=N]`: filler words in the answer.
    pub words: Option<usize>,
    /// `[sim:call=NAME]`: call the declared tool NAME (a real client's own tool, e.g. Claude Code's
    /// `WebSearch`) instead of the first one.
    pub call: Option<String>,
}

impl Markers {
    /// Reads every `[sim:…]` marker in `text` and returns them with the text stripped of them.
    pub fn parse(text: &str) -> (Markers, String) {
        let mut markers = Markers::default();
        let mut clean = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find("[sim:") {
            let Some(len) = rest[start..].find(']') else {
                break;
            };
            clean.push_str(&rest[..start]);
            let body = &rest[start + 5..start + len];
            match body.split_once('=') {
                None if body == "text" => markers.text = true,
                None if body == "tool" => markers.tool = true,
                None if body == "parallel" => markers.parallel = true,
                Some(("fault", name)) => markers.fault = FaultKind::parse(name.trim()),
                Some(("words", n)) => markers.words = n.trim().parse().ok(),
                Some(("call", name)) => {
                    markers.call = Some(name.trim().to_string());
                    markers.tool = true;
                }
                _ => {}
            }
            rest = &rest[start + len + 1..];
        }
        clean.push_str(rest);
        (markers, clean.split_whitespace().collect::<Vec<_>>().join(" "))
    }

    /// The fault a marker asks for, as an always-firing rule.
    pub fn fault_rule(&self) -> Option<FaultRule> {
        self.fault.map(FaultRule::always)
    }
}

/// `toolConfig.functionCallingConfig.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolMode {
    Auto,
    Any,
    None,
}

/// One declared function.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDecl {
    pub name: String,
    pub parameters: Value,
}

/// What a function-response turn said, for the follow-up answer.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionResult {
    pub name: String,
    pub content: String,
}

/// The request, read.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub family: Family,
    pub prompt_tokens: u64,
    /// SHA-256 of model + system + tools + the first k contents, with that prefix's token count, k = 1..=n.
    pub prefixes: Vec<([u8; 32], u64)>,
    /// Text of the last turn (markers removed).
    pub last_text: String,
    pub markers: Markers,
    /// Function responses in the last turn.
    pub function_results: Vec<FunctionResult>,
    pub tools: Vec<ToolDecl>,
    pub tool_mode: ToolMode,
    pub allowed_functions: Vec<String>,
    pub include_thoughts: bool,
    pub thinking: bool,
    pub max_output_tokens: Option<u64>,
    pub stop_sequences: Vec<String>,
    pub json_mode: bool,
    pub response_schema: Option<Value>,
    /// Seed for every deterministic choice in the answer.
    pub seed: u64,
}

/// Whether the model thinks for this request: thoughts asked for, a non-zero budget, a level, a Gemini 3 model
/// unless its budget is 0, or a `-thinking` model. Validation (Claude's thinking-block rules) and the answer
/// decide it the same way.
pub fn thinking_enabled(model: &str, request: &Value) -> bool {
    let cfg = field(request, "generationConfig", "generation_config")
        .and_then(|g| field(g, "thinkingConfig", "thinking_config"));
    let include_thoughts = cfg
        .and_then(|t| field(t, "includeThoughts", "include_thoughts"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let budget = cfg.and_then(|t| field(t, "thinkingBudget", "thinking_budget")).and_then(Value::as_i64);
    let level = cfg.and_then(|t| field(t, "thinkingLevel", "thinking_level"));
    include_thoughts
        || budget.is_some_and(|b| b != 0)
        || level.is_some()
        || (Family::of(model) == Family::Gemini3 && budget != Some(0))
        || model.contains("thinking")
}

impl Prompt {
    /// Reads `request` (the inner object of the envelope). Validation has already run.
    pub fn read(model: &str, request: &Value) -> Prompt {
        let family = Family::of(model);
        let empty = Vec::new();
        let contents = request.get("contents").and_then(Value::as_array).unwrap_or(&empty);
        let system = field(request, "systemInstruction", "system_instruction")
            .map(Value::to_string)
            .unwrap_or_default();
        let tools_json = request.get("tools").map(Value::to_string).unwrap_or_default();

        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        hasher.update(system.as_bytes());
        hasher.update(tools_json.as_bytes());
        let mut chars = system.len() + tools_json.len();
        let mut prefixes = Vec::new();
        for content in contents {
            let text = content.to_string();
            chars += content_chars(content);
            hasher.update(text.as_bytes());
            prefixes.push((hasher.clone().finalize().into(), estimate_tokens(chars)));
        }
        let digest: [u8; 32] = hasher.finalize().into();
        let seed = u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8]));

        let last = contents.last();
        let last_parts = last.and_then(|c| c.get("parts")).and_then(Value::as_array).unwrap_or(&empty);
        let raw_text: String = last_parts
            .iter()
            .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let (markers, last_text) = Markers::parse(&raw_text);
        let function_results = last_parts
            .iter()
            .filter_map(|p| field(p, "functionResponse", "function_response"))
            .map(|fr| FunctionResult {
                name: fr.get("name").and_then(Value::as_str).unwrap_or("").to_string(),
                content: fr.get("response").map(Value::to_string).unwrap_or_default(),
            })
            .collect();

        let gen = field(request, "generationConfig", "generation_config");
        let get_gen = |camel: &str, snake: &str| gen.and_then(|g| field(g, camel, snake));
        let include_thoughts = get_gen("thinkingConfig", "thinking_config")
            .and_then(|t| field(t, "includeThoughts", "include_thoughts"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let thinking = thinking_enabled(model, request);
        let tool_cfg = field(request, "toolConfig", "tool_config")
            .and_then(|t| field(t, "functionCallingConfig", "function_calling_config"));
        let tool_mode = match tool_cfg.and_then(|c| c.get("mode")).and_then(Value::as_str) {
            Some("ANY") => ToolMode::Any,
            Some("NONE") => ToolMode::None,
            _ => ToolMode::Auto,
        };
        let allowed_functions = tool_cfg
            .and_then(|c| field(c, "allowedFunctionNames", "allowed_function_names"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();

        Prompt {
            family,
            prompt_tokens: estimate_tokens(chars).max(1),
            prefixes,
            last_text,
            markers,
            function_results,
            tools: declared_tools(request),
            tool_mode,
            allowed_functions,
            include_thoughts,
            thinking,
            max_output_tokens: get_gen("maxOutputTokens", "max_output_tokens").and_then(Value::as_u64),
            stop_sequences: get_gen("stopSequences", "stop_sequences")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter().filter_map(Value::as_str).filter(|s| !s.is_empty()).map(String::from).collect()
                })
                .unwrap_or_default(),
            json_mode: get_gen("responseMimeType", "response_mime_type").and_then(Value::as_str)
                == Some("application/json"),
            response_schema: get_gen("responseSchema", "response_schema").cloned(),
            seed,
        }
    }
}

/// Characters a content turn contributes to the prompt: texts plus the JSON of calls, responses and media.
pub fn content_chars(content: &Value) -> usize {
    let Some(parts) = content.get("parts").and_then(Value::as_array) else {
        return 0;
    };
    parts
        .iter()
        .map(|p| match p.get("text").and_then(Value::as_str) {
            Some(t) => t.len(),
            None => p.as_object().map_or(0, json_len),
        })
        .sum()
}

fn json_len(o: &Map<String, Value>) -> usize {
    o.iter()
        .filter(|(k, _)| k.as_str() != "thoughtSignature" && k.as_str() != "thought_signature")
        .map(|(_, v)| v.to_string().len())
        .sum()
}

/// Every `functionDeclarations` entry across `tools`.
fn declared_tools(request: &Value) -> Vec<ToolDecl> {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return Vec::new();
    };
    tools
        .iter()
        .filter_map(|t| field(t, "functionDeclarations", "function_declarations"))
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(|d| {
            Some(ToolDecl {
                name: d.get("name")?.as_str()?.to_string(),
                parameters: field(d, "parameters", "parameters")
                    .or_else(|| field(d, "parametersJsonSchema", "parameters_json_schema"))
                    .cloned()
                    .unwrap_or(Value::Null),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn markers_are_read_and_stripped() {
        let (m, t) = Markers::parse("hello [sim:tool] there [sim:fault=rate_limit][sim:words=3]");
        assert!(m.tool && !m.text);
        assert_eq!(m.fault, Some(FaultKind::RateLimit));
        assert_eq!(m.words, Some(3));
        assert_eq!(t, "hello there");
        let (m, t) = Markers::parse("no markers [sim:unclosed");
        assert_eq!(m, Markers::default());
        assert_eq!(t, "no markers [sim:unclosed");
    }

    #[test]
    fn reads_generation_settings_in_both_casings() {
        let p = Prompt::read(
            "gemini-3-flash",
            &json!({"contents":[{"role":"user","parts":[{"text":"hi there"}]}],
                    "generation_config":{"max_output_tokens":10,"thinking_config":{"include_thoughts":true},
                    "stopSequences":["x"],"responseMimeType":"application/json"},
                    "tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"object"}}]}]}),
        );
        assert!(p.include_thoughts && p.thinking && p.json_mode);
        assert_eq!(p.max_output_tokens, Some(10));
        assert_eq!(p.stop_sequences, vec!["x".to_string()]);
        assert_eq!(p.tools.len(), 1);
        assert_eq!(p.last_text, "hi there");
        assert_eq!(p.prefixes.len(), 1);
    }

    #[test]
    fn same_request_same_seed_and_prefix_chain() {
        let req = json!({"contents":[{"role":"user","parts":[{"text":"a"}]},{"role":"model","parts":[{"text":"b"}]},
                                     {"role":"user","parts":[{"text":"c"}]}]});
        let a = Prompt::read("gemini-3-flash", &req);
        let b = Prompt::read("gemini-3-flash", &req);
        assert_eq!(a.seed, b.seed);
        assert_eq!(a.prefixes.len(), 3);
    }
}
