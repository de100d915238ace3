//! The OpenAI Images API (`POST /v1/images/generations`, `POST /v1/images/edits`) served by Google's image
//! models (`gemini-3-pro-image`, `gemini-3.1-flash-image`).
//!
//! The request side ([`request`]) reads the JSON body or the multipart form ([`multipart`]) and writes the
//! inner `image_gen` request; the answer side ([`collect`]) renders each upstream image as a `data` item.
//! Errors are OpenAI's, so they reuse the chat protocol's error body.

pub mod collect;
pub mod multipart;
pub mod request;

pub use collect::{images_response, ImageCollector};
pub use request::{
    build_inner_request, parse_edits, parse_generations, ImageConfig, ImagesRequest, InputImage,
    ResponseFormat, MAX_IMAGES,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Translator;
    use serde_json::{json, Value};

    fn inner_json(request: &ImagesRequest<'_>) -> Value {
        serde_json::from_slice(&build_inner_request(request, "-1").json).unwrap()
    }

    #[test]
    fn sizes_and_qualities_map_to_the_image_config() {
        let cases = [
            (json!({"prompt": "p", "size": "1024x1024"}), json!({"aspectRatio": "1:1", "imageSize": "1K"})),
            (json!({"prompt": "p", "size": "1792x1024"}), json!({"aspectRatio": "16:9", "imageSize": "1K"})),
            (
                json!({"prompt": "p", "size": "1024x1792", "quality": "hd"}),
                json!({"aspectRatio": "9:16", "imageSize": "2K"}),
            ),
            (
                json!({"prompt": "p", "size": "1536x1024", "quality": "high"}),
                json!({"aspectRatio": "3:2", "imageSize": "4K"}),
            ),
            (
                json!({"prompt": "p", "size": "1024x1536", "quality": "low"}),
                json!({"aspectRatio": "2:3", "imageSize": "1K"}),
            ),
            (json!({"prompt": "p", "quality": "medium"}), json!({"imageSize": "2K"})),
        ];
        for (body, expected) in cases {
            let request = parse_generations(body.to_string().as_bytes()).unwrap();
            let inner = inner_json(&request);
            assert_eq!(inner["generationConfig"]["imageConfig"], expected, "{body}");
            assert_eq!(inner["generationConfig"]["responseModalities"], json!(["TEXT", "IMAGE"]));
            assert!(inner["generationConfig"].get("thinkingConfig").is_none());
        }
        let auto = parse_generations(br#"{"prompt":"p","size":"auto"}"#).unwrap();
        assert!(inner_json(&auto)["generationConfig"].get("imageConfig").is_none());
    }

    #[test]
    fn bad_fields_are_400_naming_the_field() {
        let param = |body: Value| parse_generations(body.to_string().as_bytes()).unwrap_err();
        let e = param(json!({"prompt": "p", "size": "800x600"}));
        assert_eq!((e.status, e.param.as_deref()), (400, Some("size")));
        assert!(e.message.contains("1024x1024") && e.message.contains("1792x1024"), "{}", e.message);
        assert_eq!(param(json!({"prompt": "p", "n": 5})).param.as_deref(), Some("n"));
        assert_eq!(param(json!({"prompt": "p", "n": 0})).param.as_deref(), Some("n"));
        assert_eq!(param(json!({"prompt": "p", "n": "2"})).param.as_deref(), Some("n"));
        assert_eq!(param(json!({"prompt": " "})).param.as_deref(), Some("prompt"));
        assert_eq!(param(json!({"prompt": "p", "quality": "ultra"})).param.as_deref(), Some("quality"));
        assert_eq!(
            param(json!({"prompt": "p", "response_format": "png"})).param.as_deref(),
            Some("response_format")
        );
        assert_eq!(param(json!({"prompt": "p", "stream": true})).param.as_deref(), Some("stream"));
        let ok =
            parse_generations(br#"{"prompt":"p","n":4,"style":"vivid","user":"u","response_format":"url"}"#);
        let ok = ok.unwrap();
        assert_eq!((ok.n, ok.response_format, ok.model.as_str()), (4, ResponseFormat::Url, "gpt-image-1"));
    }

    fn edit_form(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, filename, data) in parts {
            body.extend_from_slice(
                format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
            );
            if let Some(f) = filename {
                body.extend_from_slice(
                    format!("; filename=\"{f}\"\r\nContent-Type: application/octet-stream").as_bytes(),
                );
            }
            body.extend_from_slice(b"\r\n\r\n");
            body.extend_from_slice(data);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"--b--\r\n");
        body
    }

    #[test]
    fn an_edit_sends_images_then_the_mask_then_the_prompt() {
        let png: &[u8] = b"\x89PNG\r\n\x1a\nrest";
        let body = edit_form(&[
            ("image[]", Some("a.png"), png),
            ("image[]", Some("b.png"), png),
            ("mask", Some("m.png"), png),
            ("prompt", None, b"add a hat"),
            ("size", None, b"1024x1024"),
        ]);
        let request = parse_edits(&body, "multipart/form-data; boundary=b").unwrap();
        assert_eq!((request.images.len(), request.mask.is_some(), request.n), (2, true, 1));
        let parts = inner_json(&request)["contents"][0]["parts"].as_array().unwrap().clone();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, png);
        assert_eq!(parts[0], json!({"inlineData": {"mimeType": "image/png", "data": b64}}));
        assert!(parts[2]["text"].as_str().unwrap().contains("mask"));
        assert_eq!(parts[3]["inlineData"]["data"], b64);
        assert_eq!(parts[4], json!({"text": "add a hat"}));
        assert_eq!(build_inner_request(&request, "-1").request_type.as_str(), "image_gen");
    }

    #[test]
    fn an_edit_without_an_image_or_with_a_foreign_file_is_refused() {
        let e = parse_edits(&edit_form(&[("prompt", None, b"x")]), "multipart/form-data; boundary=b")
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("image"));
        let text = edit_form(&[("image", Some("a.txt"), b"hello"), ("prompt", None, b"x")]);
        assert_eq!(
            parse_edits(&text, "multipart/form-data; boundary=b").unwrap_err().param.as_deref(),
            Some("image")
        );
        assert!(parse_edits(b"{}", "application/json").is_err());
    }

    fn event(parts: Value, finish: Option<&str>) -> Vec<u8> {
        let mut candidate = json!({"content": {"role": "model", "parts": parts}});
        if let Some(f) = finish {
            candidate["finishReason"] = json!(f);
        }
        json!({"response": {"candidates": [candidate],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 1290, "totalTokenCount": 1297}}})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_collector_renders_each_image_once_as_b64_or_data_url() {
        for (format, key, prefix) in [
            (ResponseFormat::B64Json, "b64_json", ""),
            (ResponseFormat::Url, "url", "data:image/png;base64,"),
        ] {
            let mut collector = ImageCollector::new(format);
            let mut out = Vec::new();
            collector.on_event(&mut event(json!([{"text": "A red square"}]), None), &mut out).unwrap();
            let image = json!([{"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]);
            collector.on_event(&mut event(image, Some("STOP")), &mut out).unwrap();
            assert!(out.is_empty() && collector.emitted_anything());
            let usage = collector.usage().unwrap();
            let items = collector.into_items().unwrap();
            let body: Value =
                serde_json::from_slice(&images_response(9, &[items.clone(), items], usage)).unwrap();
            assert_eq!(body["created"], 9);
            assert_eq!(body["data"][1][key], format!("{prefix}iVBORw0KGgo="));
            assert_eq!(body["data"][0]["revised_prompt"], "A red square");
            assert_eq!(body["usage"]["output_tokens"], 1290);
        }
    }

    #[test]
    fn an_answer_without_an_image_is_an_error() {
        let mut collector = ImageCollector::new(ResponseFormat::B64Json);
        collector
            .on_event(&mut event(json!([{"text": "I cannot draw that"}]), Some("STOP")), &mut Vec::new())
            .unwrap();
        let e = collector.into_items().unwrap_err();
        assert_eq!(e.status, 502);
        assert!(e.message.contains("I cannot draw that"));
        let mut collector = ImageCollector::new(ResponseFormat::B64Json);
        collector.on_event(&mut event(json!([]), Some("IMAGE_SAFETY")), &mut Vec::new()).unwrap();
        assert_eq!(collector.into_items().unwrap_err().status, 400);
    }
}
