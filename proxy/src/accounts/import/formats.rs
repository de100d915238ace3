//! The account exports of the tools operators migrate from, read into [`Candidate`]s.
//!
//! Each reader knows its format's fields from the tool's public source (docs/operations.md, "Importing
//! accounts", lists them): the fields Levitate maps, the ones it knows and leaves behind (cached access
//! tokens, timestamps, the tool's own rate-limit state), and nothing else. A field outside both lists is
//! reported by name, never guessed at; an entry that lacks what an account needs (email, refresh token) is an
//! error naming the file and the entry's index, so nothing half-understood is imported.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// The tools whose exports `levitate accounts import --from` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Antigravity Manager: its export (`[{email, refresh_token}]`) or its per-account files (`accounts/<id>.json`).
    AntigravityManager,
    /// CLIProxyAPI: its auth files of `"type": "antigravity"`, one account per file.
    Cliproxyapi,
    /// antigravity-claude-proxy: its `accounts.json`.
    AntigravityClaudeProxy,
}

/// One account read from an export, before it is checked against accounts.yaml and validated.
#[derive(Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where it came from, for every line printed about it: `file` or `file#index`.
    pub origin: String,
    pub email: String,
    pub refresh_token: String,
    pub project_id: Option<String>,
    pub tier: Option<String>,
    pub enabled: bool,
}

/// The token is a long-lived credential: debug output never shows it.
impl std::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Candidate")
            .field("origin", &self.origin)
            .field("email", &self.email)
            .field("refresh_token", &"<redacted>")
            .field("project_id", &self.project_id)
            .field("tier", &self.tier)
            .field("enabled", &self.enabled)
            .finish()
    }
}

/// What one file yielded: its accounts and the lines worth telling the operator (unknown fields, entries
/// that are not OAuth accounts and were passed over).
#[derive(Debug, Default)]
pub struct Parsed {
    pub candidates: Vec<Candidate>,
    pub notes: Vec<String>,
}

/// A file or entry that is not what its format says.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{origin}: {message}")]
pub struct FormatError {
    pub origin: String,
    pub message: String,
}

/// Reads one parsed JSON file of `format`. `in_folder`: the file was found in a folder given on the command
/// line, so a CLIProxyAPI auth file of another provider is passed over instead of refused.
pub fn parse(format: Format, file: &str, json: &Value, in_folder: bool) -> Result<Parsed, FormatError> {
    let mut reader = Reader { file, parsed: Parsed::default(), unknown: BTreeSet::new() };
    match format {
        Format::AntigravityManager => reader.antigravity_manager(json)?,
        Format::Cliproxyapi => reader.cliproxyapi(json, in_folder)?,
        Format::AntigravityClaudeProxy => reader.antigravity_claude_proxy(json)?,
    }
    if !reader.unknown.is_empty() {
        let names: Vec<&str> = reader.unknown.iter().map(String::as_str).collect();
        reader.parsed.notes.push(format!("{file}: unknown fields, not imported: {}", names.join(", ")));
    }
    Ok(reader.parsed)
}

/// Antigravity Manager's full account file (`models/account.rs` `Account`): mapped fields first.
const AM_ACCOUNT_MAPPED: &[&str] = &["email", "token", "disabled", "proxy_disabled", "quota"];
const AM_ACCOUNT_KNOWN: &[&str] = &[
    "id",
    "name",
    "device_profile",
    "device_history",
    "disabled_reason",
    "disabled_at",
    "proxy_disabled_reason",
    "proxy_disabled_at",
    "protected_models",
    "live_limited_models",
    "validation_blocked",
    "validation_blocked_until",
    "validation_blocked_reason",
    "validation_url",
    "created_at",
    "last_used",
    "proxy_id",
    "proxy_bound_at",
    "custom_label",
];
/// Its `token` object (`models/token.rs` `TokenData`).
const AM_TOKEN_MAPPED: &[&str] = &["refresh_token", "project_id"];
const AM_TOKEN_KNOWN: &[&str] = &[
    "access_token",
    "expires_in",
    "expiry_timestamp",
    "token_type",
    "email",
    "oauth_client_key",
    "session_id",
    "is_gcp_tos",
    "id_token",
];
/// Its export item (`AccountExportItem`), what the app's "Export" button saves as a JSON array.
const AM_EXPORT_MAPPED: &[&str] = &["email", "refresh_token"];

/// A CLIProxyAPI auth file's metadata (written by `sdk/auth/antigravity.go` and its file store).
const CPA_MAPPED: &[&str] = &["email", "refresh_token", "project_id", "disabled"];
/// Its token state, and the fields its management API sets (`proxy_url` is not carried over: Levitate's
/// per-account egress is configured in accounts.yaml by the operator).
const CPA_KNOWN: &[&str] = &[
    "type",
    "access_token",
    "expires_in",
    "timestamp",
    "expired",
    "label",
    "prefix",
    "priority",
    "note",
    "headers",
    "websockets",
    "proxy_url",
];

/// antigravity-claude-proxy's accounts.json (`src/account-manager/storage.js`).
const ACP_TOP: &[&str] = &["accounts", "settings", "activeIndex"];
const ACP_MAPPED: &[&str] = &["email", "refreshToken", "projectId", "enabled"];
const ACP_KNOWN: &[&str] = &[
    "source",
    "dbPath",
    "apiKey",
    "addedAt",
    "isInvalid",
    "invalidReason",
    "verifyUrl",
    "modelRateLimits",
    "lastUsed",
    "subscription",
    "quota",
    "quotaThreshold",
    "modelQuotaThresholds",
];

struct Reader<'a> {
    file: &'a str,
    parsed: Parsed,
    unknown: BTreeSet<String>,
}

impl Reader<'_> {
    fn origin(&self, index: Option<usize>) -> String {
        match index {
            Some(i) => format!("{}#{i}", self.file),
            None => self.file.to_string(),
        }
    }

    fn error(&self, index: Option<usize>, message: impl Into<String>) -> FormatError {
        FormatError { origin: self.origin(index), message: message.into() }
    }

    /// Records the fields of `object` that are neither mapped nor known, prefixed with `path`.
    fn check_fields(&mut self, object: &Map<String, Value>, path: &str, lists: &[&[&str]]) {
        for key in object.keys() {
            if !lists.iter().any(|list| list.contains(&key.as_str())) {
                self.unknown.insert(format!("{path}{key}"));
            }
        }
    }

    fn object<'v>(
        &self,
        value: &'v Value,
        index: Option<usize>,
    ) -> Result<&'v Map<String, Value>, FormatError> {
        value.as_object().ok_or_else(|| self.error(index, "expected a JSON object"))
    }

    fn antigravity_manager(&mut self, json: &Value) -> Result<(), FormatError> {
        let items: Vec<(Option<usize>, &Value)> = match json {
            Value::Array(items) => items.iter().enumerate().map(|(i, v)| (Some(i), v)).collect(),
            Value::Object(o) if o.contains_key("token") => vec![(None, json)],
            Value::Object(o) => match o.get("accounts").and_then(Value::as_array) {
                Some(items) => items.iter().enumerate().map(|(i, v)| (Some(i), v)).collect(),
                None => {
                    return Err(self
                        .error(None, "neither an account file, an export array nor {\"accounts\": [...]}"))
                }
            },
            _ => return Err(self.error(None, "expected a JSON array or object")),
        };
        for (index, item) in items {
            let entry = self.object(item, index)?;
            let candidate = if let Some(token) = entry.get("token") {
                let token = self
                    .object(token, index)
                    .map_err(|e| FormatError { message: format!("token: {}", e.message), ..e })?;
                self.check_fields(entry, "", &[AM_ACCOUNT_MAPPED, AM_ACCOUNT_KNOWN]);
                self.check_fields(token, "token.", &[AM_TOKEN_MAPPED, AM_TOKEN_KNOWN]);
                let disabled = flag(entry, "disabled") || flag(entry, "proxy_disabled");
                let tier =
                    entry.get("quota").and_then(|q| q.get("subscription_tier")).and_then(Value::as_str);
                Candidate {
                    origin: self.origin(index),
                    email: self.email(entry, index)?,
                    refresh_token: self.required(token, "refresh_token", index)?,
                    project_id: text(token, "project_id"),
                    tier: tier.filter(|t| crate::config::is_known_tier(t)).map(str::to_string),
                    enabled: !disabled,
                }
            } else if entry.contains_key("refresh_token") {
                self.check_fields(entry, "", &[AM_EXPORT_MAPPED]);
                Candidate {
                    origin: self.origin(index),
                    email: self.email(entry, index)?,
                    refresh_token: self.required(entry, "refresh_token", index)?,
                    project_id: None,
                    tier: None,
                    enabled: true,
                }
            } else {
                return Err(self.error(
                    index,
                    "no refresh_token (Antigravity Manager's accounts.json index has none: import \
                     its export, or the files in its accounts/ folder)",
                ));
            };
            self.parsed.candidates.push(candidate);
        }
        Ok(())
    }

    fn cliproxyapi(&mut self, json: &Value, in_folder: bool) -> Result<(), FormatError> {
        let entry = self.object(json, None)?;
        match entry.get("type").and_then(Value::as_str) {
            Some("antigravity") => {}
            other if in_folder => {
                let kind = other.unwrap_or("none");
                self.parsed.notes.push(format!(
                    "{}: passed over: an auth file of type {kind}, not antigravity",
                    self.file
                ));
                return Ok(());
            }
            other => {
                return Err(self
                    .error(None, format!("type is {:?}, not \"antigravity\"", other.unwrap_or("(missing)"))))
            }
        }
        self.check_fields(entry, "", &[CPA_MAPPED, CPA_KNOWN]);
        let candidate = Candidate {
            origin: self.origin(None),
            email: self.email(entry, None)?,
            refresh_token: self.required(entry, "refresh_token", None)?,
            project_id: text(entry, "project_id"),
            tier: None,
            enabled: !flag(entry, "disabled"),
        };
        self.parsed.candidates.push(candidate);
        Ok(())
    }

    fn antigravity_claude_proxy(&mut self, json: &Value) -> Result<(), FormatError> {
        let top = self.object(json, None)?;
        let items = top
            .get("accounts")
            .and_then(Value::as_array)
            .ok_or_else(|| self.error(None, "no \"accounts\" array"))?;
        self.check_fields(top, "", &[ACP_TOP]);
        for (i, item) in items.iter().enumerate() {
            let entry = self.object(item, Some(i))?;
            self.check_fields(entry, "accounts[].", &[ACP_MAPPED, ACP_KNOWN]);
            let source = entry.get("source").and_then(Value::as_str).unwrap_or("oauth");
            if !entry.contains_key("refreshToken") && source != "oauth" {
                let email = text(entry, "email").unwrap_or_default();
                self.parsed.notes.push(format!(
                    "{}: passed over {email}: a {source} account has no refresh token",
                    self.origin(Some(i))
                ));
                continue;
            }
            // The refresh token may carry the projects after it: `token|projectId|managedProjectId`; the
            // managed project is the one the tool calls with, then the entry's own `projectId`.
            let composite = self.required(entry, "refreshToken", Some(i))?;
            let mut parts = composite.split('|');
            let token = parts.next().unwrap_or_default().to_string();
            if token.is_empty() {
                return Err(self.error(Some(i), "refreshToken is empty before its first '|'"));
            }
            // The second part is the user's own GCP project, which the tool sends only as metadata.
            let managed = parts.nth(1).filter(|p| !p.is_empty());
            let project = managed.map(str::to_string).or_else(|| text(entry, "projectId"));
            let candidate = Candidate {
                origin: self.origin(Some(i)),
                email: self.email(entry, Some(i))?,
                refresh_token: token,
                project_id: project,
                tier: None,
                enabled: entry.get("enabled").and_then(Value::as_bool).unwrap_or(true),
            };
            self.parsed.candidates.push(candidate);
        }
        Ok(())
    }

    /// The entry's `email`, which accounts.yaml requires to be an address (it is the account's identity).
    fn email(&self, object: &Map<String, Value>, index: Option<usize>) -> Result<String, FormatError> {
        let email = self.required(object, "email", index)?;
        if !email.contains('@') {
            return Err(self.error(index, format!("email {email:?} is not an email address")));
        }
        Ok(email)
    }

    /// A non-empty string field, or an error naming it.
    fn required(
        &self,
        object: &Map<String, Value>,
        key: &str,
        index: Option<usize>,
    ) -> Result<String, FormatError> {
        match object.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(Value::String(_)) | Some(Value::Null) | None => Err(self.error(index, format!("no {key}"))),
            Some(_) => Err(self.error(index, format!("{key} is not a string"))),
        }
    }
}

fn text(object: &Map<String, Value>, key: &str) -> Option<String> {
    object.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

fn flag(object: &Map<String, Value>, key: &str) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> (String, Value) {
        let path = format!("{}/tests/fixtures/import/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        (path, serde_json::from_str(&text).unwrap())
    }

    fn summary(c: &Candidate) -> (&str, &str, Option<&str>, Option<&str>, bool) {
        (&c.email, &c.refresh_token, c.project_id.as_deref(), c.tier.as_deref(), c.enabled)
    }

    #[test]
    fn antigravity_manager_export_array() {
        let (file, json) = fixture("antigravity-manager-export.json");
        let parsed = parse(Format::AntigravityManager, &file, &json, false).unwrap();
        let got: Vec<_> = parsed.candidates.iter().map(summary).collect();
        assert_eq!(
            got,
            [
                ("am.export@sim.local", "1//import-am-export", None, None, true),
                ("am.revoked@sim.local", "1//import-am-revoked", None, None, true)
            ]
        );
        assert_eq!(parsed.candidates[1].origin, format!("{file}#1"));
        assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
    }

    #[test]
    fn antigravity_manager_account_file_maps_project_tier_and_reports_the_unknown_field() {
        let (file, json) = fixture("antigravity-manager-account.json");
        let parsed = parse(Format::AntigravityManager, &file, &json, false).unwrap();
        let got: Vec<_> = parsed.candidates.iter().map(summary).collect();
        assert_eq!(
            got,
            [(
                "am.account@sim.local",
                "1//import-am-account",
                Some("am-project-1"),
                Some("g1-pro-tier"),
                true
            )]
        );
        assert_eq!(parsed.notes, [format!("{file}: unknown fields, not imported: favourite_colour")]);
        // A disabled account stays disabled; a tier name Levitate does not know is not guessed at.
        let json = json!({"email": "a@x", "disabled": true, "quota": {"subscription_tier": "PRO"},
                          "token": {"refresh_token": "1//a", "brand_new": 1}});
        let parsed = parse(Format::AntigravityManager, "f.json", &json, false).unwrap();
        assert_eq!(summary(&parsed.candidates[0]), ("a@x", "1//a", None, None, false));
        assert_eq!(parsed.notes, ["f.json: unknown fields, not imported: token.brand_new"]);
    }

    #[test]
    fn antigravity_manager_index_without_tokens_is_refused_with_a_hint() {
        let json = json!({"version": "2.0", "accounts": [{"id": "1", "email": "a@x", "created_at": 1, "last_used": 1}]});
        let e = parse(Format::AntigravityManager, "accounts.json", &json, false).unwrap_err();
        assert_eq!(e.origin, "accounts.json#0");
        assert!(e.message.contains("no refresh_token") && e.message.contains("accounts/ folder"), "{e}");
    }

    #[test]
    fn cliproxyapi_auth_files() {
        let (file, json) = fixture("cliproxyapi/antigravity-cpa.one@sim.local.json");
        let parsed = parse(Format::Cliproxyapi, &file, &json, false).unwrap();
        assert_eq!(
            summary(&parsed.candidates[0]),
            ("cpa.one@sim.local", "1//import-cpa-one", Some("cpa-project-1"), None, true)
        );
        assert!(parsed.notes.is_empty(), "{:?}", parsed.notes);
        let (file, json) = fixture("cliproxyapi/antigravity-cpa.off@sim.local.json");
        let parsed = parse(Format::Cliproxyapi, &file, &json, false).unwrap();
        assert_eq!(
            summary(&parsed.candidates[0]),
            ("cpa.off@sim.local", "1//import-cpa-off", None, None, false)
        );
        assert_eq!(parsed.notes, [format!("{file}: unknown fields, not imported: favourite_colour")]);
    }

    #[test]
    fn cliproxyapi_other_providers_are_passed_over_in_a_folder_and_refused_alone() {
        let (file, json) = fixture("cliproxyapi/gemini-someone@example.com.json");
        let parsed = parse(Format::Cliproxyapi, &file, &json, true).unwrap();
        assert!(parsed.candidates.is_empty());
        assert_eq!(
            parsed.notes,
            [format!("{file}: passed over: an auth file of type gemini, not antigravity")]
        );
        let e = parse(Format::Cliproxyapi, &file, &json, false).unwrap_err();
        assert!(e.message.contains("not \"antigravity\""), "{e}");
    }

    #[test]
    fn antigravity_claude_proxy_accounts_json() {
        let (file, json) = fixture("antigravity-claude-proxy-accounts.json");
        let parsed = parse(Format::AntigravityClaudeProxy, &file, &json, false).unwrap();
        let got: Vec<_> = parsed.candidates.iter().map(summary).collect();
        assert_eq!(
            got,
            [
                ("acp.one@sim.local", "1//import-acp-one", Some("acp-managed-1"), None, true),
                ("acp.two@sim.local", "1//import-acp-two", Some("acp-legacy-2"), None, false)
            ]
        );
        assert_eq!(
            parsed.notes,
            [format!("{file}#2: passed over default@antigravity: a database account has no refresh token")]
        );
    }

    #[test]
    fn malformed_entries_name_the_file_and_the_index() {
        let json = json!({"accounts": [{"email": "a@x", "refreshToken": "1//a"}, {"email": "b@x"}]});
        let e = parse(Format::AntigravityClaudeProxy, "acp.json", &json, false).unwrap_err();
        assert_eq!(e, FormatError { origin: "acp.json#1".into(), message: "no refreshToken".into() });
        let json = json!([{"email": "a@x", "refresh_token": 7}]);
        let e = parse(Format::AntigravityManager, "am.json", &json, false).unwrap_err();
        assert_eq!(e.to_string(), "am.json#0: refresh_token is not a string");
        let json = json!({"type": "antigravity", "refresh_token": "1//x"});
        let e = parse(Format::Cliproxyapi, "cpa.json", &json, false).unwrap_err();
        assert_eq!(e.to_string(), "cpa.json: no email");
        let json = json!({"type": "antigravity", "email": "someone", "refresh_token": "1//x"});
        let e = parse(Format::Cliproxyapi, "cpa.json", &json, false).unwrap_err();
        assert_eq!(e.to_string(), "cpa.json: email \"someone\" is not an email address");
        let e = parse(Format::AntigravityClaudeProxy, "x.json", &json!([1]), false).unwrap_err();
        assert_eq!(e.to_string(), "x.json: expected a JSON object");
    }

    #[test]
    fn debug_output_hides_the_token() {
        let (file, json) = fixture("antigravity-manager-export.json");
        let parsed = parse(Format::AntigravityManager, &file, &json, false).unwrap();
        assert!(!format!("{:?}", parsed).contains("import-am"));
    }
}
