//! The answer generator: turns a read `Prompt` into the chunks a real upstream would stream (PROTOCOL §2, §12):
//! thought parts first, then text in chunks of roughly 5–60 tokens or one unsplit tool-call chunk, the
//! signature where each family puts it, and usage that satisfies total = prompt + candidates + thoughts.
//! Everything but ids and signatures is deterministic in the prompt, so tests can assert on it.

use serde_json::{json, Map, Value};

use crate::faults::{model_gate_text, VERSION_GATE_TEXT};
use crate::models::Family;
use crate::prompt::{estimate_tokens, Prompt, ToolMode};
use crate::signature::{SigFamily, Signer};

const FILLER: &[&str] = &[
    "the",
    "simulator",
    "answers",
    "with",
    "a",
    "steady",
    "stream",
    "of",
    "plain",
    "words",
    "so",
    "every",
    "chunk",
    "boundary",
    "can",
    "be",
    "checked",
    "by",
    "tests",
    "that",
    "read",
    "it",
    "back",
    "carefully",
    "while",
    "tokens",
    "flow",
    "through",
    "gateway",
    "and",
    "arrive",
    "in",
    "order",
    "without",
    "loss",
    "levitate",
    "keeps",
    "accounts",
    "busy",
    "but",
    "never",
    "overloaded",
    "quota",
    "resets",
    "later",
];

const THOUGHT_TITLES: &[&str] = &["Considering the request", "Planning the answer", "Checking the details"];

/// One stream chunk before it is wrapped: its parts and, on the last one, the finish reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub parts: Vec<Value>,
    pub finish_reason: Option<&'static str>,
    /// Running usage after this chunk.
    pub usage: Usage,
}

/// Token accounting (PROTOCOL §2): cached ⊆ prompt; thoughts are not candidates.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt: u64,
    pub cached: u64,
    pub candidates: u64,
    pub thoughts: u64,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt + self.candidates + self.thoughts
    }

    /// `usageMetadata`, omitting zero optional counters as Google does.
    pub fn to_json(self) -> Value {
        let mut u = json!({
            "promptTokenCount": self.prompt,
            "candidatesTokenCount": self.candidates,
            "totalTokenCount": self.total(),
        });
        if self.thoughts > 0 {
            u["thoughtsTokenCount"] = json!(self.thoughts);
        }
        if self.cached > 0 {
            u["cachedContentTokenCount"] = json!(self.cached);
        }
        u
    }
}

/// A small deterministic generator (splitmix64) so answers depend only on the prompt.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
}

/// What the answer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Text,
    Call { parallel: bool },
}

/// Decides between text and a tool call (PROTOCOL brief: markers, tool mode, last turn).
pub fn action(p: &Prompt) -> Action {
    if p.tools.is_empty() || p.tool_mode == ToolMode::None || p.markers.text {
        return Action::Text;
    }
    let parallel = p.markers.parallel;
    let wants = p.markers.tool
        || parallel
        || p.tool_mode == ToolMode::Any
        || (p.function_results.is_empty() && !p.last_text.is_empty());
    if wants {
        Action::Call { parallel }
    } else {
        Action::Text
    }
}

/// Builds every chunk of the answer. `cached` is the repeated-prefix token count for this account.
pub fn generate(p: &Prompt, cached: u64, filler_words: usize, signer: &Signer) -> Vec<Chunk> {
    let mut dice = Dice(p.seed);
    let mut usage =
        Usage { prompt: p.prompt_tokens, cached: cached.min(p.prompt_tokens), ..Usage::default() };
    let mut chunks = Vec::new();

    let thoughts = if p.thinking { thoughts(p, &mut dice) } else { Vec::new() };
    let sig_family = match p.family {
        Family::Claude => Some(SigFamily::Claude),
        Family::Gemini3 => Some(SigFamily::Gemini),
        _ => None,
    };
    let n_thoughts = thoughts.len();
    // Claude's signature covers the whole thinking, as one block (PROTOCOL §2: on the last thought part).
    let thinking_text = thoughts.concat();
    for (i, t) in thoughts.into_iter().enumerate() {
        usage.thoughts += estimate_tokens(t.len());
        if !p.include_thoughts {
            continue;
        }
        let mut part = json!({"text": t, "thought": true});
        if p.family == Family::Claude && i + 1 == n_thoughts {
            part["thoughtSignature"] = json!(signer.issue_for_text(SigFamily::Claude, &thinking_text));
        }
        chunks.push(Chunk { parts: vec![part], finish_reason: None, usage });
    }
    // Claude signs its thinking on a thought part only (PROTOCOL §2): with the thoughts hidden, on an empty
    // one of its own, never on a call or on text.
    if p.family == Family::Claude && p.thinking && !(p.include_thoughts && n_thoughts > 0) {
        let part = json!({"text": "", "thought": true, "thoughtSignature": signer.issue(SigFamily::Claude)});
        chunks.push(Chunk { parts: vec![part], finish_reason: None, usage });
    }

    match action(p) {
        Action::Call { parallel } => {
            let calls = tool_calls(p, parallel, &mut dice);
            let mut parts = Vec::new();
            for (i, call) in calls.into_iter().enumerate() {
                usage.candidates += estimate_tokens(call.to_string().len());
                let mut part = json!({ "functionCall": call });
                if i == 0 && sig_family == Some(SigFamily::Gemini) {
                    part["thoughtSignature"] = json!(signer.issue(SigFamily::Gemini));
                }
                parts.push(part);
            }
            chunks.push(Chunk { parts, finish_reason: Some("STOP"), usage });
        }
        Action::Text => {
            let words = p.markers.words.unwrap_or(filler_words);
            let (text, finish) = limit(p, answer_text(p, words, &mut dice));
            let pieces =
                if p.json_mode { split_chars(&text, &mut dice) } else { split_words(&text, &mut dice) };
            let n = pieces.len();
            for (i, piece) in pieces.into_iter().enumerate() {
                usage.candidates += estimate_tokens(piece.len());
                let last = i + 1 == n;
                let part = json!({ "text": piece });
                let gemini_last = last && sig_family == Some(SigFamily::Gemini);
                chunks.push(Chunk {
                    parts: vec![part],
                    finish_reason: (last && !gemini_last).then_some(finish),
                    usage,
                });
            }
            if sig_family == Some(SigFamily::Gemini) {
                chunks.push(Chunk {
                    parts: vec![json!({"thoughtSignature": signer.issue(SigFamily::Gemini), "text": ""})],
                    finish_reason: Some(finish),
                    usage,
                });
            } else if n == 0 {
                chunks.push(Chunk { parts: vec![json!({"text": ""})], finish_reason: Some(finish), usage });
            }
        }
    }
    chunks
}

/// The version-gate answer: the notice as text, zero usage.
pub fn version_gate() -> Vec<Chunk> {
    notice(VERSION_GATE_TEXT)
}

/// The per-model gate: this model needs a newer client version.
pub fn model_version_gate(model: &str) -> Vec<Chunk> {
    notice(&model_gate_text(model))
}

fn notice(text: &str) -> Vec<Chunk> {
    vec![Chunk { parts: vec![json!({ "text": text })], finish_reason: Some("STOP"), usage: Usage::default() }]
}

fn thoughts(p: &Prompt, dice: &mut Dice) -> Vec<String> {
    let n = dice.range(1, 3);
    let topic: String = p.last_text.chars().take(60).collect();
    (0..n)
        .map(|i| {
            let body = match i {
                0 if topic.is_empty() => {
                    "I'm looking at what was asked and what context is available.".to_string()
                }
                0 => format!("I'm looking at the request about \"{topic}\" and what it needs."),
                1 => "I'll lay out the answer in a clear order and keep it short.".to_string(),
                _ => "I'm double-checking the details before I reply.".to_string(),
            };
            format!("**{}**\n{}", THOUGHT_TITLES[i], body)
        })
        .collect()
}

fn answer_text(p: &Prompt, words: usize, dice: &mut Dice) -> String {
    let filler: Vec<&str> = (0..words).map(|_| FILLER[dice.range(0, FILLER.len() - 1)]).collect();
    let filler = filler.join(" ");
    let echo: String = p.last_text.chars().take(200).collect();
    let lead = if !p.function_results.is_empty() {
        let results: Vec<String> = p
            .function_results
            .iter()
            .map(|r| {
                let content: String = r.content.chars().take(200).collect();
                format!("The function {} returned {}.", r.name, content)
            })
            .collect();
        results.join(" ")
    } else {
        format!("Echo: {echo}")
    };
    if !p.json_mode {
        return if filler.is_empty() { lead } else { format!("{lead} {filler}.") };
    }
    match p.response_schema.as_ref().filter(|s| s.get("properties").is_some()) {
        Some(schema) => example_value(schema, &lead, 0).to_string(),
        None => json!({"echo": lead, "note": filler}).to_string(),
    }
}

/// Applies stop sequences, then `maxOutputTokens`; returns the text and its finish reason.
fn limit(p: &Prompt, mut text: String) -> (String, &'static str) {
    if let Some(cut) = p.stop_sequences.iter().filter_map(|s| text.find(s.as_str())).min() {
        text.truncate(cut);
    }
    if let Some(max) = p.max_output_tokens {
        let max_chars = (max as usize).saturating_mul(4);
        if text.len() > max_chars {
            let mut end = max_chars;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            return (text, "MAX_TOKENS");
        }
    }
    (text, "STOP")
}

/// Word groups of 4–24 words (about 5–30 tokens); the concatenation is the text.
fn split_words(text: &str, dice: &mut Dice) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut budget = dice.range(4, 24);
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            current.push(' ');
        }
        current.push_str(word);
        budget -= 1;
        if budget == 0 {
            out.push(std::mem::take(&mut current));
            budget = dice.range(4, 24);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Character runs of 20–120 chars (JSON answers split anywhere, like the real thing).
fn split_chars(text: &str, dice: &mut Dice) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let n = dice.range(20, 120).min(chars.len() - i);
        out.push(chars[i..i + n].iter().collect());
        i += n;
    }
    out
}

fn tool_calls(p: &Prompt, parallel: bool, dice: &mut Dice) -> Vec<Value> {
    let allowed: Vec<_> = p
        .tools
        .iter()
        .filter(|t| p.allowed_functions.is_empty() || p.allowed_functions.contains(&t.name))
        .collect();
    let mut pool = if allowed.is_empty() { p.tools.iter().collect() } else { allowed };
    if let Some(named) = p.markers.call.as_deref() {
        if pool.iter().any(|t| t.name == named) {
            pool.retain(|t| t.name == named);
        }
    }
    let count = if parallel { 2 } else { 1 };
    (0..count)
        .filter_map(|i| pool.get(i % pool.len().max(1)))
        .map(|tool| {
            let mut call = json!({"name": tool.name, "args": args_for(&tool.parameters)});
            if p.family == Family::Claude {
                let id: String =
                    (0..24).map(|_| char::from(b"0123456789abcdef"[dice.range(0, 15)])).collect();
                call["id"] = json!(format!("toolu_vrtx_{id}"));
            }
            call
        })
        .collect()
}

/// Arguments from a schema: required properties (all when none are required).
pub fn args_for(schema: &Value) -> Value {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return json!({});
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    for (name, sub) in props {
        if required.is_empty() || required.contains(&name.as_str()) {
            out.insert(name.clone(), example_value(sub, "sim", 1));
        }
    }
    Value::Object(out)
}

/// A value conforming to a simple schema: strings get `text`, numbers 1, booleans true.
fn example_value(schema: &Value, text: &str, depth: usize) -> Value {
    if let Some(first) = schema.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
        return first.clone();
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("string").to_ascii_lowercase();
    match ty.as_str() {
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "array" if depth < 8 => {
            json!([example_value(schema.get("items").unwrap_or(&Value::Null), text, depth + 1)])
        }
        "object" if depth < 8 => {
            let mut out = Map::new();
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    out.insert(name.clone(), example_value(sub, text, depth + 1));
                }
            }
            Value::Object(out)
        }
        "null" => Value::Null,
        _ => json!(text),
    }
}

/// Folds a stream's chunks into one response's parts (generateContent): adjacent texts of the same kind merge,
/// signatures stay on the part that carried them (or on the text they are merged into).
pub fn fold(chunks: &[Chunk]) -> (Vec<Value>, Option<&'static str>, Usage) {
    let mut parts: Vec<Value> = Vec::new();
    for part in chunks.iter().flat_map(|c| c.parts.iter()) {
        let is_text = part.get("text").is_some();
        let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
        if let Some(prev) = parts.last_mut() {
            let prev_thought = prev.get("thought").and_then(Value::as_bool) == Some(true);
            let prev_signed = prev.get("thoughtSignature").is_some();
            if is_text && prev.get("text").is_some() && prev_thought == thought && !prev_signed {
                let joined =
                    format!("{}{}", prev["text"].as_str().unwrap_or(""), part["text"].as_str().unwrap_or(""));
                prev["text"] = json!(joined);
                if let Some(sig) = part.get("thoughtSignature") {
                    prev["thoughtSignature"] = sig.clone();
                }
                continue;
            }
        }
        parts.push(part.clone());
    }
    let finish = chunks.iter().rev().find_map(|c| c.finish_reason);
    let usage = chunks.last().map(|c| c.usage).unwrap_or_default();
    (parts, finish, usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(model: &str, request: Value) -> Prompt {
        Prompt::read(model, &request)
    }

    fn text_of(chunks: &[Chunk]) -> String {
        chunks
            .iter()
            .flat_map(|c| &c.parts)
            .filter(|p| p.get("thought").is_none())
            .filter_map(|p| p["text"].as_str())
            .collect()
    }

    #[test]
    fn text_answer_echoes_streams_and_signs() {
        let p = prompt(
            "gemini-3-flash",
            json!({"contents":[{"role":"user","parts":[{"text":"What is Levitate?"}]}],
                   "generationConfig":{"thinkingConfig":{"includeThoughts":true}}}),
        );
        let s = Signer::new("k");
        let chunks = generate(&p, 0, 40, &s);
        assert!(chunks[0].parts[0]["thought"] == json!(true));
        assert!(chunks[0].parts[0]["text"].as_str().unwrap_or("").starts_with("**"));
        let text = text_of(&chunks);
        assert!(text.starts_with("Echo: What is Levitate?"), "{text}");
        assert!(chunks.len() >= 4);
        let last = chunks.last().expect("chunks");
        assert_eq!(last.finish_reason, Some("STOP"));
        assert!(last.parts[0]["thoughtSignature"].as_str().unwrap_or("").starts_with('E'));
        let u = last.usage;
        assert!(u.thoughts > 0 && u.candidates > 0);
        assert_eq!(u.total(), u.prompt + u.candidates + u.thoughts);
        // deterministic
        assert_eq!(text, text_of(&generate(&p, 0, 40, &s)));
    }

    #[test]
    fn tools_are_called_unsplit_with_signature() {
        let p = prompt(
            "gemini-3-flash",
            json!({"contents":[{"role":"user","parts":[{"text":"list files [sim:parallel]"}]}],
                   "tools":[{"functionDeclarations":[{"name":"ls","parameters":{"type":"object",
                     "properties":{"path":{"type":"string"},"depth":{"type":"integer"}},"required":["path"]}},
                     {"name":"cat","parameters":{"type":"object","properties":{"all":{"type":"boolean"}}}}]}]}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        let last = chunks.last().expect("chunk");
        assert_eq!(last.parts.len(), 2);
        assert_eq!(last.parts[0]["functionCall"], json!({"name":"ls","args":{"path":"sim"}}));
        assert!(last.parts[0]["thoughtSignature"].is_string());
        assert!(last.parts[1].get("thoughtSignature").is_none());
        assert_eq!(last.parts[1]["functionCall"]["args"], json!({"all": true}));
    }

    #[test]
    fn function_response_gets_text_and_text_marker_wins() {
        let tools = json!([{"functionDeclarations":[{"name":"ls","parameters":{"type":"object"}}]}]);
        let p = prompt(
            "gemini-3-flash",
            json!({"tools": tools, "contents":[
            {"role":"user","parts":[{"text":"go"}]},
            {"role":"model","parts":[{"functionCall":{"name":"ls","args":{}},"thoughtSignature":"skip_thought_signature_validator"}]},
            {"role":"user","parts":[{"functionResponse":{"name":"ls","response":{"result":"a.txt"}}}]}]}),
        );
        assert_eq!(action(&p), Action::Text);
        assert!(text_of(&generate(&p, 0, 5, &Signer::new("k"))).contains("a.txt"));
        let p = prompt(
            "gemini-3-flash",
            json!({"tools": tools, "contents":[{"role":"user","parts":[{"text":"[sim:text] hi"}]}]}),
        );
        assert_eq!(action(&p), Action::Text);
    }

    #[test]
    fn limits_and_json_mode() {
        let p = prompt(
            "gemini-2.5-flash",
            json!({"contents":[{"role":"user","parts":[{"text":"one two STOPHERE three"}]}],
            "generationConfig":{"stopSequences":["STOPHERE"]}}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        assert_eq!(text_of(&chunks), "Echo: one two ");
        assert_eq!(chunks.last().and_then(|c| c.finish_reason), Some("STOP"));
        let p = prompt(
            "gemini-2.5-flash",
            json!({"contents":[{"role":"user","parts":[{"text":"hello"}]}],
            "generationConfig":{"maxOutputTokens":3}}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        assert_eq!(text_of(&chunks).len(), 12);
        assert_eq!(chunks.last().and_then(|c| c.finish_reason), Some("MAX_TOKENS"));
        let p = prompt(
            "gemini-2.5-flash",
            json!({"contents":[{"role":"user","parts":[{"text":"hello"}]}],
            "generationConfig":{"responseMimeType":"application/json","responseSchema":{"type":"object",
              "properties":{"name":{"type":"string"},"n":{"type":"integer"}}}}}),
        );
        let v: Value = serde_json::from_str(&text_of(&generate(&p, 0, 40, &Signer::new("k")))).expect("json");
        assert_eq!(v["n"], 1);
        assert_eq!(v["name"], "Echo: hello");
    }

    #[test]
    fn claude_shapes() {
        let p = prompt(
            "claude-sonnet-4-6",
            json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}],
            "generationConfig":{"thinkingConfig":{"includeThoughts":true,"thinkingBudget":1024}},
            "tools":[{"functionDeclarations":[{"name":"ls","parameters":{"type":"object"}}]}]}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        let thoughts: Vec<&Value> =
            chunks.iter().flat_map(|c| &c.parts).filter(|p| p["thought"] == json!(true)).collect();
        assert!(thoughts.last().and_then(|t| t["thoughtSignature"].as_str()).unwrap_or("").starts_with('R'));
        let call = &chunks.last().expect("chunk").parts[0];
        assert!(call["functionCall"]["id"].as_str().unwrap_or("").starts_with("toolu_vrtx_"));
        assert!(call.get("thoughtSignature").is_none(), "Claude never signs a call");

        // A -thinking model with its thoughts hidden: the signature alone, on an empty thought part first.
        let p = prompt(
            "claude-opus-4-6-thinking",
            json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}],
            "tools":[{"functionDeclarations":[{"name":"ls","parameters":{"type":"object"}}]}]}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        let first = &chunks[0].parts[0];
        assert_eq!((first["thought"].clone(), first["text"].clone()), (json!(true), json!("")));
        assert!(first["thoughtSignature"].as_str().unwrap_or("").starts_with('R'));
        let signed =
            chunks.iter().flat_map(|c| &c.parts).filter(|p| p.get("thoughtSignature").is_some()).count();
        assert_eq!(signed, 1);
        // Without thinking, Claude signs nothing.
        let p = prompt(
            "claude-sonnet-4-6",
            json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}],
            "tools":[{"functionDeclarations":[{"name":"ls","parameters":{"type":"object"}}]}]}),
        );
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        assert!(chunks.iter().flat_map(|c| &c.parts).all(|p| p.get("thoughtSignature").is_none()));
    }

    #[test]
    fn fold_merges_text() {
        let p = prompt("gemini-3-flash", json!({"contents":[{"role":"user","parts":[{"text":"hi"}]}]}));
        let chunks = generate(&p, 0, 40, &Signer::new("k"));
        let (parts, finish, usage) = fold(&chunks);
        assert_eq!(parts.len(), 1);
        assert!(parts[0]["text"].as_str().unwrap_or("").starts_with("Echo: hi"));
        assert!(parts[0]["thoughtSignature"].is_string());
        assert_eq!(finish, Some("STOP"));
        assert_eq!(usage, chunks.last().expect("c").usage);
    }
}
