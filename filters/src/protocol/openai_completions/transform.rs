//! A completions prompt -> `v1internal` inner request.
//!
//! Each prompt is one upstream request: a single user turn with the prompt text, and the sampling fields in
//! `generationConfig` (`max_tokens` → `maxOutputTokens`, `temperature`, `top_p` → `topP`, `stop` →
//! `stopSequences`, `seed`). The upstream models are chat models, so the prompt is what the user says, not
//! text to continue. Without `max_tokens` no limit is sent (the model's own): OpenAI's default of 16 tokens
//! would leave a thinking model (Gemini 3 thinks by default) with nothing to answer with.

use crate::inner::body::StrOr;
use crate::inner::request::{GenerationConfig, InnerJson, Part, Turn};
use crate::inner::{InnerRequest, RequestType, Target, ToolNameMap};

use super::request::CompletionRequest;

/// The inner request for `prompt` (one of `req`'s prompts) to `target`.
pub fn build_inner_request(req: &CompletionRequest, prompt: &str, target: &Target) -> InnerRequest {
    let mut generation_config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        max_output_tokens: req.max_tokens,
        seed: req.seed,
        ..GenerationConfig::default()
    };
    generation_config.stop_sequences = match &req.stop {
        None => Vec::new(),
        Some(StrOr::Str(stop)) => vec![stop.clone()],
        Some(StrOr::Other(stops)) => stops.clone(),
    };
    generation_config.stop_sequences.retain(|s| !s.is_empty());
    // The prompt was checked non-blank when parsed.
    let parts: Vec<Part<'_>> = Part::text(prompt).into_iter().collect();
    let inner = InnerJson {
        contents: vec![Turn { role: "user", parts }],
        system_instruction: None,
        tools: &[],
        tool_config: None,
        generation_config,
        session_id: target.session_id,
    };
    InnerRequest {
        json: inner.encode(prompt.len() + 512),
        tool_names: ToolNameMap::default(),
        request_type: RequestType::of(target.upstream_model, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::openai_completions::parse_completion_request;
    use serde_json::{json, Value};

    fn build(body: Value) -> Vec<Value> {
        let req = parse_completion_request(&mut serde_json::to_vec(&body).unwrap()).unwrap();
        let target = Target { upstream_model: "gemini-3-flash", session_id: "-7" };
        req.prompts()
            .iter()
            .map(|p| serde_json::from_slice(&build_inner_request(&req, p, &target).json).unwrap())
            .collect()
    }

    #[test]
    fn a_prompt_is_one_user_turn_with_the_sampling_fields() {
        let got = build(json!({"model": "m", "prompt": "Once upon", "max_tokens": 20, "temperature": 0.5,
                               "top_p": 0.9, "stop": ["\n", ""], "seed": 3}));
        assert_eq!(
            got,
            [json!({"contents": [{"role": "user", "parts": [{"text": "Once upon"}]}],
                    "generationConfig": {"temperature": 0.5, "topP": 0.9, "maxOutputTokens": 20,
                                         "stopSequences": ["\n"], "seed": 3},
                    "sessionId": "-7"})]
        );
    }

    #[test]
    fn each_prompt_is_its_own_request_and_no_default_limit_is_sent() {
        let got = build(json!({"model": "m", "prompt": ["a", "b"], "stop": "END"}));
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["contents"][0]["parts"][0]["text"], "b");
        assert_eq!(got[0]["generationConfig"], json!({"stopSequences": ["END"]}));
    }
}
