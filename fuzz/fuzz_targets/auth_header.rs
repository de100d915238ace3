//! The request key as a client presents it: `Authorization`, `x-api-key`, `x-goog-api-key` and the `key=`
//! query parameter (fields of the input separated by NUL), found and then checked against the key table.
#![no_main]

use http::{HeaderMap, HeaderValue};
use levitate_filters::auth::{presented_key, presented_key_with_style, ApiKeys};
use libfuzzer_sys::fuzz_target;

const HEADERS: [&str; 3] = ["authorization", "x-api-key", "x-goog-api-key"];

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|b| *b == 0);
    let mut headers = HeaderMap::new();
    for name in HEADERS {
        // A value http would refuse never reaches the gateway; skip it as Pingora's parser would.
        if let Some(value) = fields.next().and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.append(name, value);
        }
    }
    let query = fields.next().and_then(|q| std::str::from_utf8(q).ok());
    let keys = ApiKeys::new([
        ("default".to_owned(), "sk-levitate-fuzz".to_owned()),
        ("other".to_owned(), "a b%20c".to_owned()),
        ("blank".to_owned(), String::new()),
    ]);
    let found = presented_key_with_style(&headers, query);
    assert_eq!(found.as_ref().map(|p| p.key.as_ref()), presented_key(&headers, query).as_deref());
    if let Some(presented) = found {
        assert!(!presented.key.trim().is_empty(), "a blank key counted as presented");
        let _ = presented.style.is_google();
        let _ = keys.verify(&presented.key);
    }
    if let Ok(raw) = std::str::from_utf8(data) {
        assert!(keys.verify(raw).is_none_or(|name| name != "blank"), "the empty key matched");
    }
});
