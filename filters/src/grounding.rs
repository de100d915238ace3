//! Google Search grounding, protocol-neutral: when a request searches, where it goes, and what the upstream
//! says it found.
//!
//! Every client protocol has its own web-search switch (Anthropic's `web_search_*` server tool, chat's
//! `web_search_options`, the Responses `web_search` tool); all of them become the same upstream request, and
//! the same `groundingMetadata` comes back, which each protocol then shows in its own shape. The API, small on
//! purpose:
//!
//! - **Request side.** [`sends_google_search`] is the one policy for a request that also declares functions
//!   (the upstream never mixes `googleSearch` with `functionDeclarations`, PROTOCOL.md §2): the functions win
//!   and the search is dropped, so an agent that always offers a search tool beside its own tools (Codex) keeps
//!   working. A request that does search sends [`GOOGLE_SEARCH_TOOLS`] as its `tools` with
//!   [`crate::inner::RequestType::WebSearch`], and goes to [`search_model`]: the resolved model when it can
//!   ground (Gemini text models), else the `web_search_model` of routes.yaml ([`DEFAULT_WEB_SEARCH_MODEL`]),
//!   since Claude and gpt-oss models cannot.
//! - **Answer side.** [`Grounding`] is `groundingMetadata` parsed and bounded (queries, sources, supports).
//!   The chunk parser fills [`crate::stream::Chunk::grounding`]; Google sends it on one of the last events,
//!   after the text, so a stream machine keeps the visible text it streamed (or held back) and, at the end,
//!   asks [`Grounding::cited_spans`] which byte ranges of that text cite which sources.

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use crate::signature::ModelFamily;

/// The grounding model when routes.yaml names none: a Gemini text model every account can use.
pub const DEFAULT_WEB_SEARCH_MODEL: &str = "gemini-3-flash";

/// The inner request's `tools` for a web search.
pub const GOOGLE_SEARCH_TOOLS: &[u8] = br#"[{"googleSearch":{}}]"#;

/// Most search queries kept from one answer.
pub const MAX_QUERIES: usize = 16;
/// Most sources (`groundingChunks`) kept.
pub const MAX_SOURCES: usize = 32;
/// Most supports (`groundingSupports`) kept.
pub const MAX_SUPPORTS: usize = 128;
/// Most source indices kept per support.
pub const MAX_SOURCES_PER_SUPPORT: usize = 8;
/// Longest URL, title, query or segment text kept, in bytes (longer ones are cut at a character boundary).
pub const MAX_FIELD_BYTES: usize = 2048;

/// Whether a request that asks for web search (`wants`) sends `googleSearch` upstream. With function
/// declarations beside it the search is dropped: the upstream cannot take both, and an agent's own tools
/// matter more to it than search.
pub fn sends_google_search(wants: bool, has_functions: bool) -> bool {
    wants && !has_functions
}

/// Whether an upstream model can ground its answer in Google Search: Gemini text models can; Claude, gpt-oss
/// and the image models cannot.
pub fn can_ground(upstream_model: &str) -> bool {
    ModelFamily::of(upstream_model) == ModelFamily::Gemini && !upstream_model.contains("-image")
}

/// The upstream model a web search goes to: the resolved one when it can ground, else `web_search_model`.
pub fn search_model<'a>(resolved: &'a str, web_search_model: &'a str) -> &'a str {
    if can_ground(resolved) {
        resolved
    } else {
        web_search_model
    }
}

/// `groundingMetadata`, bounded: what Google searched for and which pages support which parts of the text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grounding {
    /// `webSearchQueries`.
    pub queries: Vec<String>,
    /// `groundingChunks[].web`, in Google's order (supports refer to them by index).
    pub sources: Vec<Source>,
    /// `groundingSupports`.
    pub supports: Vec<Support>,
}

/// One page the answer drew on. Google's `uri` is usually a `vertexaisearch.cloud.google.com` redirect and its
/// `title` the site's domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    pub url: String,
    pub title: String,
    /// The site: Google's `web.domain` when it sends one, else the title when it is a host name, else the
    /// URL's host. Empty when none of them says.
    pub domain: String,
}

/// A segment of the answer's text and the sources that support it. Offsets are UTF-8 byte offsets into the
/// concatenated visible text of the answer, as Google reports them; `text` is the segment as Google saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Support {
    pub start: usize,
    pub end: usize,
    pub text: String,
    pub sources: Vec<usize>,
}

/// A byte range of the answer's text and the sources it cites, from [`Grounding::cited_spans`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CitedSpan {
    pub start: usize,
    pub end: usize,
    /// Indexes into [`Grounding::sources`], valid and distinct.
    pub sources: Vec<usize>,
}

impl Grounding {
    /// Parses a `groundingMetadata` object (camelCase or snake_case keys), keeping at most the `MAX_*` counts
    /// and cutting long strings; `None` when it is not an object of that shape.
    pub fn from_json(json: &[u8]) -> Option<Grounding> {
        let raw: RawMetadata = serde_json::from_slice(json).ok()?;
        let sources = raw
            .chunks
            .0
            .into_iter()
            .map(|chunk| {
                let web = chunk.web.unwrap_or_default();
                let (url, title) = (cut(web.uri.unwrap_or_default()), cut(web.title.unwrap_or_default()));
                let domain = web.domain.map(cut).unwrap_or_else(|| site_of(&title, &url));
                Source { url, title, domain }
            })
            .collect();
        let supports = raw
            .supports
            .0
            .into_iter()
            .map(|support| {
                let segment = support.segment.unwrap_or_default();
                Support {
                    start: segment.start.unwrap_or(0),
                    end: segment.end.unwrap_or(0),
                    text: cut(segment.text.unwrap_or_default()),
                    sources: support.indices.0,
                }
            })
            .collect();
        let queries = raw.queries.0.into_iter().map(cut).filter(|q| !q.trim().is_empty()).collect();
        Some(Grounding { queries, sources, supports })
    }

    /// Google's own `groundingMetadata` shape again (queries, chunks, supports), for a Gemini client's folded
    /// answer. What this module does not keep (`searchEntryPoint`, `retrievalMetadata`) is left out.
    pub fn to_google_json(&self) -> Vec<u8> {
        let chunks: Vec<serde_json::Value> = self
            .sources
            .iter()
            .map(|s| serde_json::json!({"web": {"uri": s.url, "title": s.title}}))
            .collect();
        let supports: Vec<serde_json::Value> = self
            .supports
            .iter()
            .map(|s| {
                serde_json::json!({"segment": {"startIndex": s.start, "endIndex": s.end, "text": s.text},
                                   "groundingChunkIndices": s.sources})
            })
            .collect();
        let metadata = serde_json::json!({"webSearchQueries": self.queries, "groundingChunks": chunks,
                                          "groundingSupports": supports});
        metadata.to_string().into_bytes()
    }

    /// Whether there is nothing to show: no query and no source.
    pub fn is_empty(&self) -> bool {
        self.queries.is_empty() && self.sources.is_empty()
    }

    /// Takes in the metadata of a later event. Sources and supports belong together (supports index the
    /// sources), so a later set replaces an earlier one; queries are added, without repeats.
    pub fn absorb(&mut self, later: Grounding) {
        for query in later.queries {
            if self.queries.len() < MAX_QUERIES && !self.queries.contains(&query) {
                self.queries.push(query);
            }
        }
        if !later.sources.is_empty() || !later.supports.is_empty() {
            self.sources = later.sources;
            self.supports = later.supports;
        }
    }

    /// Removes the sources `filter` does not admit, renumbering the supports' references; a support left
    /// without sources is removed too.
    pub fn retain_sources(&mut self, filter: &DomainFilter) {
        if filter.allowed.is_empty() && filter.blocked.is_empty() {
            return;
        }
        let mut new_index = Vec::with_capacity(self.sources.len());
        let mut kept = 0;
        for source in &self.sources {
            new_index.push(filter.admits(source).then(|| {
                kept += 1;
                kept - 1
            }));
        }
        self.sources.retain(|source| filter.admits(source));
        for support in &mut self.supports {
            support.sources =
                support.sources.iter().filter_map(|&i| new_index.get(i).copied().flatten()).collect();
        }
        self.supports.retain(|support| !support.sources.is_empty());
    }

    /// The ranges of `text` (the answer's visible text) that cite sources, in order and never overlapping.
    /// A support whose offsets do not match `text` is placed by its segment text instead; one that cannot be
    /// placed, or cites no valid source, is left out.
    pub fn cited_spans(&self, text: &str) -> Vec<CitedSpan> {
        let mut spans: Vec<CitedSpan> = Vec::new();
        for support in &self.supports {
            let mut sources: Vec<usize> = Vec::new();
            for &index in &support.sources {
                if index < self.sources.len() && !sources.contains(&index) {
                    sources.push(index);
                }
            }
            if sources.is_empty() {
                continue;
            }
            let Some((start, end)) = locate(text, support) else { continue };
            spans.push(CitedSpan { start, end, sources });
        }
        spans.sort_by_key(|span| (span.start, span.end));
        let mut kept: Vec<CitedSpan> = Vec::with_capacity(spans.len());
        for span in spans {
            if kept.last().is_none_or(|last| span.start >= last.end) {
                kept.push(span);
            }
        }
        kept
    }
}

/// Where `support` lies in `text`: its own offsets when they fall on character boundaries and agree with its
/// segment text, else the first occurrence of that text.
fn locate(text: &str, support: &Support) -> Option<(usize, usize)> {
    let by_offsets = text.get(support.start..support.end).filter(|s| !s.is_empty());
    match by_offsets {
        Some(slice) if support.text.is_empty() || slice == support.text => Some((support.start, support.end)),
        _ if !support.text.is_empty() => {
            text.find(support.text.as_str()).map(|at| (at, at + support.text.len()))
        }
        _ => None,
    }
}

/// The site a source is on when Google sends no `domain`: its title when that is a host name (Google titles
/// sources with their domain), else the host of a URL that is not Google's own redirect.
fn site_of(title: &str, url: &str) -> String {
    let hostname =
        |s: &str| s.contains('.') && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    if hostname(title) {
        return title.to_ascii_lowercase();
    }
    let host =
        url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#', ':']).next().unwrap_or(""));
    if hostname(host) && !host.ends_with("vertexaisearch.cloud.google.com") {
        host.to_ascii_lowercase()
    } else {
        String::new()
    }
}

/// The sites a client allows or blocks (Anthropic's `allowed_domains`/`blocked_domains`, the Responses
/// `filters.allowed_domains`). Google's search takes no such options, so they are applied to what it returns:
/// sources off the list are removed, with their citations. A domain covers its subdomains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainFilter {
    pub allowed: Vec<String>,
    pub blocked: Vec<String>,
}

impl DomainFilter {
    /// Whether `source` may be shown. A source whose site is unknown passes a block list but not an allow list.
    pub fn admits(&self, source: &Source) -> bool {
        let covers = |domain: &String| {
            let domain = domain.trim().trim_start_matches("*.").trim_start_matches('.').to_ascii_lowercase();
            let site = source.domain.as_str();
            !domain.is_empty()
                && (site == domain || site.strip_suffix(domain.as_str()).is_some_and(|s| s.ends_with('.')))
        };
        (self.allowed.is_empty() || self.allowed.iter().any(covers)) && !self.blocked.iter().any(covers)
    }
}

/// `s` cut to at most [`MAX_FIELD_BYTES`], at a character boundary.
fn cut(mut s: String) -> String {
    if s.len() > MAX_FIELD_BYTES {
        let mut end = MAX_FIELD_BYTES;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// `text[..end]` counted in characters (`end` a byte offset on a boundary), for clients that index text by
/// character, as OpenAI's `url_citation` does.
pub fn char_offset(text: &str, end: usize) -> usize {
    text.get(..end).map_or_else(|| text.chars().count(), |head| head.chars().count())
}

/// The wire shape, every field optional (proto3 leaves out zeros and empties: a segment at the start of the
/// text has no `startIndex`).
#[derive(Deserialize)]
struct RawMetadata {
    #[serde(default, rename = "webSearchQueries", alias = "web_search_queries")]
    queries: Bounded<String, MAX_QUERIES>,
    #[serde(default, rename = "groundingChunks", alias = "grounding_chunks")]
    chunks: Bounded<RawChunk, MAX_SOURCES>,
    #[serde(default, rename = "groundingSupports", alias = "grounding_supports")]
    supports: Bounded<RawSupport, MAX_SUPPORTS>,
}

#[derive(Deserialize)]
struct RawChunk {
    web: Option<RawWeb>,
}

#[derive(Default, Deserialize)]
struct RawWeb {
    uri: Option<String>,
    title: Option<String>,
    domain: Option<String>,
}

#[derive(Deserialize)]
struct RawSupport {
    segment: Option<RawSegment>,
    #[serde(default, rename = "groundingChunkIndices", alias = "grounding_chunk_indices")]
    indices: Bounded<usize, MAX_SOURCES_PER_SUPPORT>,
}

#[derive(Default, Deserialize)]
struct RawSegment {
    #[serde(rename = "startIndex", alias = "start_index")]
    start: Option<usize>,
    #[serde(rename = "endIndex", alias = "end_index")]
    end: Option<usize>,
    text: Option<String>,
}

/// A list that keeps its first `N` elements and skips the rest without building them.
struct Bounded<T, const N: usize>(Vec<T>);

impl<T, const N: usize> Default for Bounded<T, N> {
    fn default() -> Self {
        Bounded(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>, const N: usize> Deserialize<'de> for Bounded<T, N> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BoundedVisitor<T, const N: usize>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for BoundedVisitor<T, N> {
            type Value = Bounded<T, N>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N));
                while items.len() < N {
                    match seq.next_element()? {
                        Some(item) => items.push(item),
                        None => return Ok(Bounded(items)),
                    }
                }
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Bounded(items))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Bounded(Vec::new()))
            }
        }
        deserializer.deserialize_any(BoundedVisitor::<T, N>(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TEXT: &str = "Levitate is a gateway. It runs on Pingora. Café crème.";

    fn metadata() -> serde_json::Value {
        json!({
            "webSearchQueries": ["levitate gateway", "pingora proxy"],
            "groundingChunks": [
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/AAA", "title": "levitate.dev"}},
                {"web": {"uri": "https://vertexaisearch.cloud.google.com/grounding-api-redirect/BBB", "title": "cloudflare.com"}},
            ],
            "groundingSupports": [
                {"segment": {"endIndex": 22, "text": "Levitate is a gateway."}, "groundingChunkIndices": [0]},
                {"segment": {"startIndex": 23, "endIndex": 42, "text": "It runs on Pingora."}, "groundingChunkIndices": [1, 0, 1]},
            ],
            "searchEntryPoint": {"renderedContent": "<div>…</div>"},
        })
    }

    fn parse(value: serde_json::Value) -> Grounding {
        Grounding::from_json(value.to_string().as_bytes()).expect("grounding metadata")
    }

    #[test]
    fn metadata_parses_into_queries_sources_and_supports() {
        let g = parse(metadata());
        assert_eq!(g.queries, ["levitate gateway", "pingora proxy"]);
        assert_eq!(g.sources[1].title, "cloudflare.com");
        assert!(g.sources[0].url.contains("grounding-api-redirect"));
        assert_eq!(g.supports[0].start, 0, "a missing startIndex is 0, as proto3 leaves it out");
        assert_eq!(
            g.cited_spans(TEXT),
            vec![
                CitedSpan { start: 0, end: 22, sources: vec![0] },
                CitedSpan { start: 23, end: 42, sources: vec![1, 0] },
            ]
        );
        let snake = json!({"web_search_queries": ["q"], "grounding_chunks": [{"web": {"uri": "u", "title": "t"}}],
            "grounding_supports": [{"segment": {"start_index": 1, "end_index": 3}, "grounding_chunk_indices": [0]}]});
        let g = parse(snake);
        assert_eq!((g.queries.len(), g.sources.len(), g.supports[0].start), (1, 1, 1));
        assert!(Grounding::from_json(b"[1,2]").is_none());
        assert!(parse(json!({})).is_empty());
    }

    #[test]
    fn supports_that_do_not_match_the_text_are_placed_by_their_text_or_left_out() {
        let mut g = parse(metadata());
        g.supports.push(Support { start: 43, end: 50, text: String::new(), sources: vec![0] });
        g.supports.push(Support { start: 1000, end: 2000, text: "Café crème.".into(), sources: vec![0] });
        g.supports.push(Support { start: 46, end: 47, text: String::new(), sources: vec![0] });
        g.supports.push(Support { start: 0, end: 5, text: "not in the text".into(), sources: vec![0] });
        g.supports.push(Support { start: 0, end: 8, text: String::new(), sources: vec![7] });
        let spans = g.cited_spans(TEXT);
        let texts: Vec<&str> = spans.iter().map(|s| &TEXT[s.start..s.end]).collect();
        assert_eq!(
            texts,
            ["Levitate is a gateway.", "It runs on Pingora.", "Café c"],
            "overlaps, splits inside a character, unknown texts and unknown sources are dropped"
        );
        assert_eq!(
            char_offset(TEXT, spans[2].end),
            "Levitate is a gateway. It runs on Pingora. Café c".len() - 1
        );
    }

    #[test]
    fn huge_or_hostile_metadata_stays_bounded() {
        let chunk = json!({"web": {"uri": "u".repeat(100_000), "title": "é".repeat(10_000)}});
        let support = json!({"segment": {"startIndex": -5, "endIndex": 3}, "groundingChunkIndices": [0]});
        let hostile = json!({
            "webSearchQueries": vec!["q"; 10_000],
            "groundingChunks": vec![chunk; 5_000],
            "groundingSupports": vec![json!({"segment": {"endIndex": 3}, "groundingChunkIndices": (0..1000).collect::<Vec<_>>()}); 10_000],
        });
        let g = parse(hostile);
        assert_eq!(
            (g.queries.len(), g.sources.len(), g.supports.len()),
            (MAX_QUERIES, MAX_SOURCES, MAX_SUPPORTS)
        );
        assert!(g.sources[0].url.len() <= MAX_FIELD_BYTES && g.sources[0].title.len() <= MAX_FIELD_BYTES);
        assert!(g.sources[0].title.chars().all(|c| c == 'é'));
        assert_eq!(g.supports[0].sources.len(), MAX_SOURCES_PER_SUPPORT);
        assert!(
            Grounding::from_json(json!({"groundingSupports": [support]}).to_string().as_bytes()).is_none()
        );
        let wrong_types = json!({"webSearchQueries": "q", "groundingChunks": [{"web": 5}]});
        assert!(Grounding::from_json(wrong_types.to_string().as_bytes()).is_none());
        let nulls = json!({"webSearchQueries": null, "groundingChunks": [{"web": null}, {}]});
        assert_eq!(parse(nulls).sources, vec![Source::default(), Source::default()]);
    }

    #[test]
    fn google_json_parses_back_to_the_same_grounding() {
        let g = parse(metadata());
        assert_eq!(Grounding::from_json(&g.to_google_json()), Some(g));
    }

    #[test]
    fn a_domain_filter_removes_sources_and_their_citations() {
        let g = parse(metadata());
        assert_eq!(
            (g.sources[0].domain.as_str(), g.sources[1].domain.as_str()),
            ("levitate.dev", "cloudflare.com")
        );
        let blocked = DomainFilter { allowed: vec![], blocked: vec!["levitate.dev".into()] };
        let mut filtered = g.clone();
        filtered.retain_sources(&blocked);
        assert_eq!(filtered.sources.len(), 1);
        assert_eq!(filtered.cited_spans(TEXT), vec![CitedSpan { start: 23, end: 42, sources: vec![0] }]);
        let mut only = g.clone();
        only.retain_sources(&DomainFilter {
            allowed: vec!["*.levitate.dev".into(), "levitate.dev".into()],
            blocked: vec![],
        });
        assert_eq!(only.sources.len(), 1);
        assert_eq!(only.supports.len(), 2, "both supports cite levitate.dev");
        let source = |domain: &str| Source { domain: domain.into(), ..Source::default() };
        let wiki = DomainFilter { allowed: vec!["wikipedia.org".into()], blocked: vec![] };
        assert!(wiki.admits(&source("en.wikipedia.org")) && !wiki.admits(&source("notwikipedia.org")));
        assert!(!wiki.admits(&source("")), "an unknown site is not on an allow list");
        assert_eq!(site_of("A page title", "https://docs.rs/x"), "docs.rs");
        assert_eq!(site_of("Page", "https://vertexaisearch.cloud.google.com/grounding-api-redirect/x"), "");
        let domain =
            parse(json!({"groundingChunks": [{"web": {"uri": "u", "title": "T", "domain": "a.org"}}]}));
        assert_eq!(domain.sources[0].domain, "a.org");
    }

    #[test]
    fn a_later_event_replaces_sources_and_adds_queries() {
        let mut g = parse(json!({"webSearchQueries": ["a"]}));
        g.absorb(parse(metadata()));
        g.absorb(parse(json!({"webSearchQueries": ["a", "c"]})));
        assert_eq!(g.queries, ["a", "levitate gateway", "pingora proxy", "c"]);
        assert_eq!(g.sources.len(), 2, "an event without sources keeps the earlier ones");
    }

    #[test]
    fn searches_go_to_a_model_that_can_ground_and_never_beside_functions() {
        assert_eq!(search_model("gemini-2.5-flash", "gemini-3-flash"), "gemini-2.5-flash");
        assert_eq!(search_model("claude-sonnet-4-6", "gemini-3-flash"), "gemini-3-flash");
        assert_eq!(search_model("gpt-oss-120b-medium", "gemini-3-flash"), "gemini-3-flash");
        assert_eq!(search_model("gemini-3-pro-image", "gemini-3-flash"), "gemini-3-flash");
        assert!(sends_google_search(true, false));
        assert!(!sends_google_search(true, true) && !sends_google_search(false, false));
    }
}
