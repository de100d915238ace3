//! Model routing: which upstream model serves the model name a client asked for.
//!
//! Clients send whatever their SDK defaults to (`gpt-4o`, `claude-sonnet-4-5-20250929`, `models/gemini-…`);
//! the operator maps those names onto the upstream's models with exact aliases, `*` wildcards and a default.
//! The table is compiled once per configuration snapshot (alias chains resolved, cycles rejected, wildcards
//! split into literal segments and sorted by specificity) so that a lookup is a hash probe plus, at worst,
//! a few `starts_with`/`find` calls, with no regular expressions.
//!
//! Precedence for a client name: exact alias, then a listed upstream model (passthrough), then the most
//! specific matching wildcard (most literal characters; then fewer `*`; then declaration order), then the
//! default. Matching is case-sensitive; a leading `models/` (Google's resource form) is ignored.

use std::collections::{HashMap, HashSet};

/// Why an alias configuration was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AliasError {
    #[error("an alias has an empty model pattern")]
    EmptyPattern,
    #[error("alias `{pattern}` has an empty target")]
    EmptyTarget { pattern: String },
    #[error("alias `{pattern}` is declared more than once")]
    Duplicate { pattern: String },
    #[error("alias `{pattern}` targets `{target}`, which contains `*`: targets must name one model")]
    WildcardTarget { pattern: String, target: String },
    #[error("the default model is empty")]
    EmptyDefault,
    #[error("aliases form a cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
}

/// Which rule produced a resolution; logged and shown by the admin API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via<'a> {
    /// An exact (wildcard-free) alias.
    Exact,
    /// The client named an upstream model directly.
    Upstream,
    /// A wildcard alias, with the pattern as written.
    Wildcard { pattern: &'a str },
    /// Nothing matched; the configured default was used.
    Default,
}

/// The upstream model a client's model name resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution<'a> {
    pub upstream: &'a str,
    pub via: Via<'a>,
}

/// One configured alias, with its target resolved through any alias chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alias {
    pub pattern: String,
    /// The final upstream model (chains such as `a -> b -> gemini-3-flash` are already followed).
    pub target: String,
}

impl Alias {
    pub fn is_wildcard(&self) -> bool {
        self.pattern.contains('*')
    }
}

/// A wildcard pattern split at its `*`s: `a*b*c` has prefix `a`, middles `[b]`, suffix `c`.
#[derive(Clone, Debug)]
struct Wildcard {
    prefix: String,
    middles: Vec<String>,
    suffix: String,
    stars: usize,
    /// Index into `AliasTable::aliases`.
    alias: usize,
}

impl Wildcard {
    fn compile(pattern: &str, alias: usize) -> Self {
        let stars = pattern.matches('*').count();
        let mut segments: Vec<&str> = pattern.split('*').collect();
        // `split` yields at least two segments for a pattern containing `*`.
        let suffix = segments.pop().unwrap_or_default().to_owned();
        let prefix = if segments.is_empty() { String::new() } else { segments.remove(0).to_owned() };
        let middles = segments.into_iter().filter(|s| !s.is_empty()).map(str::to_owned).collect();
        Wildcard { prefix, middles, suffix, stars, alias }
    }

    fn literal_len(&self) -> usize {
        self.prefix.len() + self.suffix.len() + self.middles.iter().map(String::len).sum::<usize>()
    }

    /// Glob matching with `*` only: anchored prefix and suffix, then each middle segment found leftmost in
    /// what lies between them (leftmost placement is always safe when the only metacharacter is `*`).
    fn matches(&self, name: &str) -> bool {
        if name.len() < self.prefix.len() + self.suffix.len()
            || !name.starts_with(self.prefix.as_str())
            || !name.ends_with(self.suffix.as_str())
        {
            return false;
        }
        let mut rest = &name[self.prefix.len()..name.len() - self.suffix.len()];
        for middle in &self.middles {
            match rest.find(middle.as_str()) {
                Some(at) => rest = &rest[at + middle.len()..],
                None => return false,
            }
        }
        true
    }
}

/// The compiled routing table of one configuration snapshot.
#[derive(Clone, Debug)]
pub struct AliasTable {
    upstream_models: Vec<String>,
    upstream_set: HashSet<String>,
    /// Declared order.
    aliases: Vec<Alias>,
    /// Exact pattern -> index into `aliases`.
    exact: HashMap<String, usize>,
    /// Most specific first.
    wildcards: Vec<Wildcard>,
    default: Option<String>,
}

fn strip_models_prefix(name: &str) -> &str {
    name.strip_prefix("models/").unwrap_or(name)
}

impl AliasTable {
    /// Validates and compiles the routing table. `aliases` are `(pattern, target)` pairs in declaration
    /// order; a target that is itself an exact alias is followed to its end.
    pub fn compile(
        upstream_models: &[String],
        aliases: &[(String, String)],
        default: Option<&str>,
    ) -> Result<AliasTable, AliasError> {
        let mut declared: Vec<(&str, &str)> = Vec::with_capacity(aliases.len());
        let mut exact_targets: HashMap<&str, &str> = HashMap::new();
        let mut seen = HashSet::new();
        for (pattern, target) in aliases {
            let pattern = strip_models_prefix(pattern.trim());
            let target = strip_models_prefix(target.trim());
            if pattern.is_empty() {
                return Err(AliasError::EmptyPattern);
            }
            if target.is_empty() {
                return Err(AliasError::EmptyTarget { pattern: pattern.to_owned() });
            }
            if target.contains('*') {
                return Err(AliasError::WildcardTarget {
                    pattern: pattern.to_owned(),
                    target: target.to_owned(),
                });
            }
            if !seen.insert(pattern) {
                return Err(AliasError::Duplicate { pattern: pattern.to_owned() });
            }
            if !pattern.contains('*') {
                exact_targets.insert(pattern, target);
            }
            declared.push((pattern, target));
        }

        // Follows a target through exact aliases to the model that finally serves it.
        let follow = |start: &str, first: &str| -> Result<String, AliasError> {
            let mut chain = vec![start.to_owned()];
            let mut current = first;
            loop {
                if chain.iter().any(|c| c == current) {
                    chain.push(current.to_owned());
                    return Err(AliasError::Cycle { chain });
                }
                match exact_targets.get(current) {
                    Some(next) => {
                        chain.push(current.to_owned());
                        current = next;
                    }
                    None => return Ok(current.to_owned()),
                }
            }
        };

        let mut table = AliasTable {
            upstream_models: upstream_models.iter().map(|m| strip_models_prefix(m).to_owned()).collect(),
            upstream_set: HashSet::new(),
            aliases: Vec::with_capacity(declared.len()),
            exact: HashMap::new(),
            wildcards: Vec::new(),
            default: None,
        };
        table.upstream_set = table.upstream_models.iter().cloned().collect();
        for (index, (pattern, target)) in declared.iter().enumerate() {
            let target = follow(pattern, target)?;
            table.aliases.push(Alias { pattern: (*pattern).to_owned(), target });
            if pattern.contains('*') {
                table.wildcards.push(Wildcard::compile(pattern, index));
            } else {
                table.exact.insert((*pattern).to_owned(), index);
            }
        }
        // Stable sort: declaration order breaks the remaining ties.
        table.wildcards.sort_by_key(|w| (std::cmp::Reverse(w.literal_len()), w.stars));
        if let Some(default) = default {
            let default = strip_models_prefix(default.trim());
            if default.is_empty() {
                return Err(AliasError::EmptyDefault);
            }
            table.default = Some(follow("(default)", default)?);
        }
        Ok(table)
    }

    /// The upstream model for a client's model name, or `None` when nothing matches and there is no default.
    pub fn resolve(&self, client_model: &str) -> Option<Resolution<'_>> {
        let name = strip_models_prefix(client_model);
        if let Some(&index) = self.exact.get(name) {
            return Some(Resolution { upstream: &self.aliases[index].target, via: Via::Exact });
        }
        if let Some(upstream) = self.upstream_set.get(name) {
            return Some(Resolution { upstream, via: Via::Upstream });
        }
        if let Some(w) = self.wildcards.iter().find(|w| w.matches(name)) {
            let alias = &self.aliases[w.alias];
            return Some(Resolution {
                upstream: &alias.target,
                via: Via::Wildcard { pattern: &alias.pattern },
            });
        }
        self.default.as_deref().map(|upstream| Resolution { upstream, via: Via::Default })
    }

    /// The upstream models, as configured (for `GET /v1/models`).
    pub fn upstream_models(&self) -> &[String] {
        &self.upstream_models
    }

    /// Every alias in declaration order, targets resolved (exact ones can be listed as models).
    pub fn aliases(&self) -> &[Alias] {
        &self.aliases
    }

    pub fn default_model(&self) -> Option<&str> {
        self.default.as_deref()
    }
}

/// A list of model-name patterns written the way routes.yaml writes alias patterns (exact names or `*`
/// wildcards, a leading `models/` ignored), such as an API key's model allow-list. Shares the alias table's
/// matcher so a pattern means the same thing in both files.
#[derive(Clone, Debug, Default)]
pub struct ModelPatterns {
    written: Vec<String>,
    exact: HashSet<String>,
    wildcards: Vec<Wildcard>,
}

impl ModelPatterns {
    /// Compiles `patterns`; an empty (or blank) pattern is refused, as in routes.yaml.
    pub fn new(patterns: &[String]) -> Result<ModelPatterns, AliasError> {
        let mut compiled = ModelPatterns::default();
        for (index, pattern) in patterns.iter().enumerate() {
            let pattern = strip_models_prefix(pattern.trim());
            if pattern.is_empty() {
                return Err(AliasError::EmptyPattern);
            }
            compiled.written.push(pattern.to_owned());
            if pattern.contains('*') {
                compiled.wildcards.push(Wildcard::compile(pattern, index));
            } else {
                compiled.exact.insert(pattern.to_owned());
            }
        }
        Ok(compiled)
    }

    /// Whether `name` (with or without `models/`) matches one of the patterns.
    pub fn matches(&self, name: &str) -> bool {
        let name = strip_models_prefix(name);
        self.exact.contains(name) || self.wildcards.iter().any(|w| w.matches(name))
    }

    /// The patterns as written (without `models/`), in order.
    pub fn patterns(&self) -> &[String] {
        &self.written
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(aliases: &[(&str, &str)], default: Option<&str>) -> Result<AliasTable, AliasError> {
        let upstream: Vec<String> =
            ["gemini-3-flash", "gemini-3-pro-high", "claude-sonnet-4-6", "claude-opus-4-6-thinking"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let aliases: Vec<(String, String)> =
            aliases.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect();
        AliasTable::compile(&upstream, &aliases, default)
    }

    #[test]
    fn precedence_exact_then_upstream_then_wildcard_then_default() {
        let t = table(
            &[
                ("gpt-4o", "gemini-3-flash"),
                ("gemini-3-flash", "gemini-3-pro-high"),
                ("gpt-*", "gemini-3-pro-high"),
                ("claude-*", "claude-sonnet-4-6"),
                ("claude-opus-*", "claude-opus-4-6-thinking"),
                ("claude-*-4-5*", "claude-sonnet-4-6"),
                ("*", "gemini-3-flash"),
            ],
            Some("claude-sonnet-4-6"),
        )
        .unwrap();
        let cases: &[(&str, &str, Via)] = &[
            // exact alias beats the identically named upstream model; chains are followed
            ("gpt-4o", "gemini-3-pro-high", Via::Exact),
            ("gemini-3-flash", "gemini-3-pro-high", Via::Exact),
            ("models/gemini-3-flash", "gemini-3-pro-high", Via::Exact),
            ("gemini-3-pro-high", "gemini-3-pro-high", Via::Upstream),
            ("claude-sonnet-4-6", "claude-sonnet-4-6", Via::Upstream),
            ("gpt-5", "gemini-3-pro-high", Via::Wildcard { pattern: "gpt-*" }),
            ("claude-opus-4-1", "claude-opus-4-6-thinking", Via::Wildcard { pattern: "claude-opus-*" }),
            ("claude-sonnet-4-5-20250929", "claude-sonnet-4-6", Via::Wildcard { pattern: "claude-*-4-5*" }),
            ("claude-haiku", "claude-sonnet-4-6", Via::Wildcard { pattern: "claude-*" }),
            // the target of `*` is itself aliased
            ("llama", "gemini-3-pro-high", Via::Wildcard { pattern: "*" }),
        ];
        for (client, upstream, via) in cases {
            assert_eq!(t.resolve(client), Some(Resolution { upstream, via: *via }), "{client}");
        }
    }

    #[test]
    fn default_applies_only_when_nothing_matches() {
        let t = table(&[("gpt-*", "gemini-3-flash")], Some("models/claude-sonnet-4-6")).unwrap();
        assert_eq!(
            t.resolve("mistral"),
            Some(Resolution { upstream: "claude-sonnet-4-6", via: Via::Default })
        );
        let t = table(&[("gpt-*", "gemini-3-flash")], None).unwrap();
        assert_eq!(t.resolve("mistral"), None);
        assert_eq!(t.resolve("GPT-4"), None, "matching is case-sensitive");
    }

    #[test]
    fn ties_prefer_fewer_stars_then_declaration_order() {
        let t = table(&[("a*c", "one"), ("*ab*c", "two"), ("ab*", "three"), ("*bc", "four")], None).unwrap();
        // "a*c", "ab*" and "*bc" each have 2 literal chars and one `*`: the first declared wins
        assert_eq!(t.resolve("abc").map(|r| r.upstream), Some("two"), "3 literal chars beat 2");
        assert_eq!(t.resolve("abxc").map(|r| r.upstream), Some("two"));
        assert_eq!(t.resolve("axbc").map(|r| r.upstream), Some("one"));
        let t = table(&[("x*y*", "many"), ("xy*", "few")], None).unwrap();
        assert_eq!(t.resolve("xyz").map(|r| r.upstream), Some("few"));
    }

    #[test]
    fn configuration_errors_are_reported() {
        assert_eq!(table(&[("", "x")], None).unwrap_err(), AliasError::EmptyPattern);
        assert_eq!(table(&[("a", " ")], None).unwrap_err(), AliasError::EmptyTarget { pattern: "a".into() });
        assert_eq!(
            table(&[("a", "x"), ("a", "y")], None).unwrap_err(),
            AliasError::Duplicate { pattern: "a".into() }
        );
        assert!(matches!(table(&[("a*", "b*")], None), Err(AliasError::WildcardTarget { .. })));
        assert_eq!(table(&[], Some("")).unwrap_err(), AliasError::EmptyDefault);
        let err = table(&[("a", "b"), ("b", "c"), ("c", "a")], None).unwrap_err();
        assert_eq!(err, AliasError::Cycle { chain: vec!["a".into(), "b".into(), "c".into(), "a".into()] });
        assert_eq!(err.to_string(), "aliases form a cycle: a -> b -> c -> a");
        assert!(matches!(table(&[("a", "a")], None), Err(AliasError::Cycle { .. })));
        assert!(matches!(table(&[("x*", "a"), ("a", "b"), ("b", "a")], None), Err(AliasError::Cycle { .. })));
        assert!(matches!(table(&[("a", "b"), ("b", "a")], Some("a")), Err(AliasError::Cycle { .. })));
    }

    #[test]
    fn accessors_list_models_and_resolved_aliases() {
        let t = table(&[("fast", "smart"), ("smart", "gemini-3-pro-high"), ("gpt-*", "fast")], None).unwrap();
        assert_eq!(t.upstream_models().len(), 4);
        let listed: Vec<(&str, &str, bool)> =
            t.aliases().iter().map(|a| (a.pattern.as_str(), a.target.as_str(), a.is_wildcard())).collect();
        assert_eq!(
            listed,
            [
                ("fast", "gemini-3-pro-high", false),
                ("smart", "gemini-3-pro-high", false),
                ("gpt-*", "gemini-3-pro-high", true)
            ]
        );
    }

    /// The obvious recursive definition of `*`-only glob matching, to check the compiled matcher against.
    fn naive_glob(pattern: &[u8], name: &[u8]) -> bool {
        match pattern.split_first() {
            None => name.is_empty(),
            Some((b'*', rest)) => (0..=name.len()).any(|skip| naive_glob(rest, &name[skip..])),
            Some((c, rest)) => name.first() == Some(c) && naive_glob(rest, &name[1..]),
        }
    }

    proptest! {
        #[test]
        fn wildcard_matching_agrees_with_naive_glob(pattern in "[ab*]{0,8}", name in "[ab]{0,10}") {
            prop_assume!(pattern.contains('*'));
            let compiled = Wildcard::compile(&pattern, 0);
            prop_assert_eq!(compiled.matches(&name), naive_glob(pattern.as_bytes(), name.as_bytes()));
        }
    }

    #[test]
    fn model_patterns_match_like_alias_patterns() {
        let list = |p: &[&str]| ModelPatterns::new(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let allowed = list(&["gemini-3-flash", "claude-*", "models/gpt-*-mini"]).unwrap();
        assert!(allowed.matches("gemini-3-flash") && allowed.matches("models/gemini-3-flash"));
        assert!(allowed.matches("claude-sonnet-4-6") && allowed.matches("gpt-4o-mini"));
        assert!(!allowed.matches("gemini-3-pro-high") && !allowed.matches("gpt-4o"));
        assert_eq!(allowed.patterns(), ["gemini-3-flash", "claude-*", "gpt-*-mini"]);
        assert_eq!(list(&["ok", " "]).unwrap_err(), AliasError::EmptyPattern);
    }
}
