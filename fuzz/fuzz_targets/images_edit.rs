//! `POST /v1/images/edits`: the `Content-Type` value (the input up to its first NUL) and the multipart body
//! (the rest) read as a form, then rewritten into the inner request, which must be valid JSON whenever the
//! form was accepted.
#![no_main]

use levitate_filters::protocol::openai_images::{build_inner_request, multipart, parse_edits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&b"multipart/form-data; boundary=x"[..], data),
    };
    let Ok(content_type) = std::str::from_utf8(content_type) else { return };
    if let Ok(boundary) = multipart::boundary(content_type) {
        if let Ok(parts) = multipart::parse(body, boundary) {
            assert!(parts.len() <= multipart::MAX_PARTS);
            for part in &parts {
                let inside = body.as_ptr_range();
                assert!(
                    inside.contains(&part.data.as_ptr()) || part.data.is_empty(),
                    "a part outside the body"
                );
            }
        }
    }
    if let Ok(request) = parse_edits(body, content_type) {
        let inner = build_inner_request(&request, "-1");
        serde_json::from_slice::<serde_json::Value>(&inner.json).expect("the inner request is JSON");
    }
});
