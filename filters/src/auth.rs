//! Client API-key checks.
//!
//! Each SDK presents its key differently (OpenAI `Authorization: Bearer`, Anthropic `x-api-key`, Google
//! `x-goog-api-key` or `?key=`), and the style also tells the router which protocol a Google-style client
//! speaks. Keys are compared in constant time over fixed-length SHA-256 digests, against every configured
//! key without early exit, so neither timing nor length reveals how close a guess was.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// How a client presented its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStyle {
    /// `Authorization: Bearer <key>` (OpenAI SDKs, curl).
    Bearer,
    /// `x-api-key: <key>` (Anthropic SDKs, Claude Code).
    XApiKey,
    /// `x-goog-api-key: <key>` (google-genai, Gemini CLI).
    GoogApiKey,
    /// `?key=<key>` in the query string (Google's REST convention).
    Query,
}

impl KeyStyle {
    /// Whether the client authenticated the way Google's SDKs do, which marks a Gemini-protocol request.
    pub fn is_google(self) -> bool {
        matches!(self, KeyStyle::GoogApiKey | KeyStyle::Query)
    }
}

/// A key found on a request, and where it was found.
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey<'a> {
    pub key: Cow<'a, str>,
    pub style: KeyStyle,
}

/// A presented key is a client's secret (or a guess at one): debug output shows only its style.
impl std::fmt::Debug for PresentedKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PresentedKey").field("key", &"<redacted>").field("style", &self.style).finish()
    }
}

/// The configured client keys, stored only as digests.
#[derive(Clone)]
pub struct ApiKeys {
    /// (key name for logs and metrics, SHA-256 of the secret)
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ApiKeys").field("names", &names).finish()
    }
}

impl ApiKeys {
    /// Builds the table from `(name, secret)` pairs. Empty secrets are ignored: they could never be presented.
    pub fn new(keys: impl IntoIterator<Item = (String, String)>) -> Self {
        let keys = keys
            .into_iter()
            .filter(|(_, secret)| !secret.is_empty())
            .map(|(name, secret)| (name, digest(&secret)))
            .collect();
        ApiKeys { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The name of the key matching `presented`, if any. Takes the same time whichever key matches, or none.
    pub fn verify(&self, presented: &str) -> Option<&str> {
        let presented = digest(presented);
        let mut found = u32::MAX;
        for (index, (_, secret)) in self.keys.iter().enumerate() {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            found.conditional_assign(&index, presented.ct_eq(secret));
        }
        self.keys.get(found as usize).map(|(name, _)| name.as_str())
    }
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The key a request presents, without its style. See [`presented_key_with_style`].
pub fn presented_key<'a>(headers: &'a http::HeaderMap, query: Option<&'a str>) -> Option<Cow<'a, str>> {
    presented_key_with_style(headers, query).map(|p| p.key)
}

/// The key a request presents, looked up in this order: `Authorization: Bearer`, `x-api-key`,
/// `x-goog-api-key`, then `key=` in the query (percent-decoded). Blank values count as absent.
pub fn presented_key_with_style<'a>(
    headers: &'a http::HeaderMap,
    query: Option<&'a str>,
) -> Option<PresentedKey<'a>> {
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty());
    if let Some(key) = header("authorization").and_then(bearer_token) {
        return Some(PresentedKey { key: Cow::Borrowed(key), style: KeyStyle::Bearer });
    }
    if let Some(key) = header("x-api-key") {
        return Some(PresentedKey { key: Cow::Borrowed(key), style: KeyStyle::XApiKey });
    }
    if let Some(key) = header("x-goog-api-key") {
        return Some(PresentedKey { key: Cow::Borrowed(key), style: KeyStyle::GoogApiKey });
    }
    let raw = query?.split('&').find_map(|pair| pair.strip_prefix("key="))?;
    let key = percent_decode(raw)?;
    if key.trim().is_empty() {
        return None;
    }
    Some(PresentedKey { key, style: KeyStyle::Query })
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Decodes `%XX` escapes. A `+` stays a `+`: keys never contain spaces, and a client that left a `+`
/// unencoded meant the character. Malformed escapes are kept as written; invalid UTF-8 yields `None`.
fn percent_decode(raw: &str) -> Option<Cow<'_, str>> {
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_a_presented_key() {
        let presented = PresentedKey { key: Cow::Borrowed("sk-SECRET"), style: KeyStyle::Bearer };
        let printed = format!("{presented:?} {:?}", Some(&presented));
        assert!(!printed.contains("SECRET") && printed.contains("Bearer"), "{printed}");
    }
    use http::{HeaderMap, HeaderValue};

    fn keys() -> ApiKeys {
        ApiKeys::new([
            ("alice".to_string(), "sk-alice-123".to_string()),
            ("bob".to_string(), "sk-bob-456".to_string()),
            ("empty".to_string(), String::new()),
        ])
    }

    #[test]
    fn verify_finds_the_matching_key_name() {
        let keys = keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.verify("sk-alice-123"), Some("alice"));
        assert_eq!(keys.verify("sk-bob-456"), Some("bob"));
        assert_eq!(keys.verify("sk-bob-45"), None);
        assert_eq!(keys.verify("sk-bob-4567"), None);
        assert_eq!(keys.verify(""), None);
        assert_eq!(ApiKeys::new(Vec::new()).verify("x"), None);
    }

    #[test]
    fn debug_never_prints_secrets() {
        let shown = format!("{:?}", keys());
        assert!(shown.contains("alice") && !shown.contains("sk-alice"));
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn each_key_style_is_recognised() {
        type Case<'a> = (&'a [(&'static str, &'a str)], Option<&'a str>, Option<(&'a str, KeyStyle)>);
        let cases: &[Case] = &[
            (&[("authorization", "Bearer sk-1")], None, Some(("sk-1", KeyStyle::Bearer))),
            (&[("authorization", "bearer  sk-1 ")], None, Some(("sk-1", KeyStyle::Bearer))),
            (&[("authorization", "Basic abc")], None, None),
            (&[("authorization", "Bearer ")], None, None),
            (&[("x-api-key", "sk-ant")], None, Some(("sk-ant", KeyStyle::XApiKey))),
            (&[("x-goog-api-key", "AIza")], None, Some(("AIza", KeyStyle::GoogApiKey))),
            (&[], Some("alt=sse&key=AIza%2Bx%3D"), Some(("AIza+x=", KeyStyle::Query))),
            (&[], Some("key=a+b"), Some(("a+b", KeyStyle::Query))),
            (&[], Some("key=%zz"), Some(("%zz", KeyStyle::Query))),
            (&[], Some("key=%ff"), None),
            (&[], Some("key="), None),
            (&[], Some("monkey=1"), None),
            (&[], None, None),
            (
                &[("authorization", "Bearer first"), ("x-api-key", "second")],
                Some("key=third"),
                Some(("first", KeyStyle::Bearer)),
            ),
            (&[("x-api-key", ""), ("x-goog-api-key", "g")], None, Some(("g", KeyStyle::GoogApiKey))),
        ];
        for (pairs, query, want) in cases {
            let map = headers(pairs);
            let got = presented_key_with_style(&map, *query);
            let got = got.as_ref().map(|p| (p.key.as_ref(), p.style));
            assert_eq!(got, *want, "{pairs:?} {query:?}");
            assert_eq!(presented_key(&map, *query).as_deref(), want.map(|w| w.0));
        }
    }

    #[test]
    fn google_styles_mark_gemini_clients() {
        assert!(KeyStyle::GoogApiKey.is_google() && KeyStyle::Query.is_google());
        assert!(!KeyStyle::Bearer.is_google() && !KeyStyle::XApiKey.is_google());
    }
}
