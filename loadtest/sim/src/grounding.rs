//! Google Search grounding as the upstream does it (PROTOCOL §2): a request whose `tools` hold `googleSearch`
//! (or the older `googleSearchRetrieval`) is a web search, which Gemini text models answer with their text plus
//! a candidate-level `groundingMetadata`: the queries it ran, the pages it used (`groundingChunks`, each a
//! `vertexaisearch.cloud.google.com` redirect titled with the site's domain) and which byte ranges of the text
//! each page supports (`groundingSupports`). Google's tools are never mixed with function declarations, and
//! Claude models cannot search: both are 400s here, so a gateway that sends them fails a test.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use crate::answer::Chunk;
use crate::error::ApiError;
use crate::models::Family;
use crate::prompt::{field, Prompt};

/// The sites every simulated search finds, in the order of `groundingChunks`.
pub const SITES: [&str; 3] = ["levitate.dev", "docs.example.org", "en.wikipedia.org"];

/// The Gemini API's answer to search beside functions, for the models that cannot combine them.
pub const MIXED_TOOLS_MESSAGE: &str = "Tool use with function calling is unsupported";

/// Whether the request asks for Google Search; a 400 when it mixes search with function declarations or asks a
/// model that cannot search.
pub fn check(request: Option<&Value>, model: &str) -> Result<bool, ApiError> {
    let tools = request.and_then(|r| r.get("tools")).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
    let is_search = |tool: &Value| {
        ["googleSearch", "google_search", "googleSearchRetrieval", "google_search_retrieval"]
            .iter()
            .any(|key| tool.get(*key).is_some())
    };
    let search = tools.iter().any(is_search);
    if !search {
        return Ok(false);
    }
    if tools.iter().any(|t| field(t, "functionDeclarations", "function_declarations").is_some()) {
        return Err(ApiError::InvalidArgument(MIXED_TOOLS_MESSAGE.into()));
    }
    if Family::of(model) == Family::Claude || model.contains("-image") || !model.starts_with("gemini") {
        return Err(ApiError::InvalidArgument(format!(
            "Google Search grounding is not supported for model {model}."
        )));
    }
    Ok(true)
}

/// The `groundingMetadata` for an answer made of `chunks`: one query (the prompt's topic), the three
/// [`SITES`], and supports over the first two thirds of the visible text, each segment exactly as it appears
/// (byte offsets into the concatenated non-thought text, as Google counts them).
pub fn metadata(prompt: &Prompt, chunks: &[Chunk]) -> Value {
    let text: String = chunks
        .iter()
        .flat_map(|c| &c.parts)
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let topic = prompt.last_text.rsplit_once("query:").map_or(prompt.last_text.as_str(), |(_, q)| q).trim();
    let topic: String = topic.chars().take(100).collect();
    let seed = prompt.seed.to_le_bytes();
    let chunks_json: Vec<Value> = SITES
        .iter()
        .enumerate()
        .map(|(i, site)| {
            let token = URL_SAFE_NO_PAD.encode([&seed[..], site.as_bytes(), &[i as u8]].concat());
            json!({"web": {"uri": format!("https://vertexaisearch.cloud.google.com/grounding-api-redirect/{token}"),
                           "title": site, "domain": site}})
        })
        .collect();
    let mut supports = Vec::new();
    let words: Vec<(usize, &str)> = text
        .split(' ')
        .scan(0, |at, w| {
            let start = *at;
            *at += w.len() + 1;
            Some((start, w))
        })
        .collect();
    let third = words.len() / 3;
    if third > 0 {
        for (n, range) in [(0, 0..third), (1, third..2 * third)] {
            let (start, end) = (words[range.start].0, words[range.end - 1].0 + words[range.end - 1].1.len());
            let mut segment = json!({"endIndex": end, "text": &text[start..end]});
            if start > 0 {
                // proto3 leaves zero out, as Google does for a segment at the start of the text.
                segment["startIndex"] = json!(start);
            }
            supports.push(json!({"segment": segment, "groundingChunkIndices": [n, 2]}));
        }
    }
    json!({
        "webSearchQueries": if topic.is_empty() { vec![] } else { vec![topic] },
        "searchEntryPoint": {"renderedContent": "<style>.container{}</style><div class=\"container\">Google Search</div>"},
        "groundingChunks": chunks_json,
        "groundingSupports": supports,
        "retrievalMetadata": {},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::generate;
    use crate::signature::Signer;

    fn search_request(extra_tools: Value) -> Value {
        let mut tools = vec![json!({"googleSearch": {}})];
        if !extra_tools.is_null() {
            tools.push(extra_tools);
        }
        json!({"contents": [{"role": "user", "parts": [{"text": "Perform a web search for the query: levitate"}]}],
               "tools": tools})
    }

    #[test]
    fn search_is_accepted_alone_on_gemini_and_refused_mixed_or_on_claude() {
        assert_eq!(check(Some(&search_request(Value::Null)), "gemini-3-flash").ok(), Some(true));
        assert_eq!(check(Some(&json!({"contents": []})), "claude-sonnet-4-6").ok(), Some(false));
        let mixed = search_request(json!({"functionDeclarations": [{"name": "f"}]}));
        assert!(
            matches!(check(Some(&mixed), "gemini-3-flash"), Err(ApiError::InvalidArgument(m)) if m == MIXED_TOOLS_MESSAGE)
        );
        for model in ["claude-sonnet-4-6", "gemini-3-pro-image", "gpt-oss-120b-medium"] {
            assert!(check(Some(&search_request(Value::Null)), model).is_err(), "{model}");
        }
    }

    #[test]
    fn metadata_supports_match_the_text_byte_for_byte() {
        let request = search_request(Value::Null);
        let prompt = Prompt::read("gemini-3-flash", &request);
        let chunks = generate(&prompt, 0, 30, &Signer::new("k"));
        let meta = metadata(&prompt, &chunks);
        let text: String = chunks
            .iter()
            .flat_map(|c| &c.parts)
            .filter(|p| p.get("thought").is_none())
            .filter_map(|p| p["text"].as_str())
            .collect();
        assert_eq!(meta["webSearchQueries"], json!(["levitate"]));
        assert_eq!(meta["groundingChunks"].as_array().map(Vec::len), Some(3));
        let supports = meta["groundingSupports"].as_array().expect("supports");
        assert_eq!(supports.len(), 2);
        for s in supports {
            let start = s["segment"]["startIndex"].as_u64().unwrap_or(0) as usize;
            let end = s["segment"]["endIndex"].as_u64().expect("end") as usize;
            assert_eq!(&text[start..end], s["segment"]["text"].as_str().expect("text"));
        }
        assert!(supports[0]["segment"].get("startIndex").is_none());
    }
}
