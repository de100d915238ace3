//! The Code Assist account methods (PROTOCOL §3, §4): `loadCodeAssist` (project and tiers), the `onboardUser`
//! long-running operation, and the quota views `fetchAvailableModels`, `retrieveUserQuota` and
//! `retrieveUserQuotaSummary`, all computed from the account's live state so onboarding and exhaustion show.

use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::accounts::{Account, Onboarding};
use crate::config::QuotaConfig;
use crate::error::ApiError;
use crate::models::{self, Family, INTERNAL_MODELS};
use crate::prompt::field;
use crate::wire_time::rfc3339;

const PAID_TIERS: &[&str] = &["g1-pro-tier", "g1-ultra-tier", "ws-ai-ultra-business-tier"];
const ONBOARDABLE_TIERS: &[&str] = &["free-tier", "legacy-tier", "standard-tier"];

fn tier_name(id: &str) -> &'static str {
    match id {
        "free-tier" => "Antigravity",
        "legacy-tier" => "Gemini Code Assist",
        "standard-tier" => "Gemini Code Assist Standard",
        "g1-pro-tier" => "Google AI Pro",
        "g1-ultra-tier" => "Google AI Ultra",
        "ws-ai-ultra-business-tier" => "Google AI Ultra for Business",
        _ => "Unknown",
    }
}

/// The tier a not-yet-onboarded account is offered by default.
fn default_onboard_tier(account: &Account) -> &'static str {
    match account.tier.as_str() {
        "legacy-tier" => "legacy-tier",
        "standard-tier" => "standard-tier",
        _ => "free-tier",
    }
}

fn allowed_tiers(account: &Account) -> Value {
    let default = default_onboard_tier(account);
    Value::Array(
        ["free-tier", "standard-tier"]
            .iter()
            .chain(std::iter::once(&default))
            .fold(Vec::<&str>::new(), |mut acc, t| {
                if !acc.contains(t) {
                    acc.push(t);
                }
                acc
            })
            .into_iter()
            .map(|id| {
                let mut t = json!({"id": id, "name": tier_name(id), "description": tier_name(id),
                                   "userDefinedCloudaicompanionProject": id == "standard-tier"});
                if id == default {
                    t["isDefault"] = json!(true);
                }
                t
            })
            .collect(),
    )
}

/// `loadCodeAssist`.
pub fn load_code_assist(account: &Account) -> Value {
    let mut out = json!({ "allowedTiers": allowed_tiers(account), "gcpManaged": false });
    let Some(project) = account.project() else {
        return out;
    };
    let paid = PAID_TIERS.contains(&account.tier.as_str());
    let current = match account.tier.as_str() {
        "ws-ai-ultra-business-tier" => "standard-tier",
        _ if paid => "free-tier",
        t => ONBOARDABLE_TIERS.iter().copied().find(|x| *x == t).unwrap_or("free-tier"),
    };
    out["cloudaicompanionProject"] = json!(project);
    out["currentTier"] = json!({
        "id": current, "name": tier_name(current), "description": tier_name(current),
        "isDefault": current == "free-tier", "userDefinedCloudaicompanionProject": current == "standard-tier",
        "privacyNotice": {"showNotice": false}, "hasAcceptedTos": true,
    });
    if paid {
        out["paidTier"] = json!({
            "id": account.tier, "name": tier_name(&account.tier),
            "availableCredits": [{"creditType": "GOOGLE_ONE_AI", "creditAmount": "25000",
                                  "minimumCreditAmountForUsage": "50"}],
        });
    }
    out
}

/// `onboardUser`: the long-running operation, re-posted to poll.
pub fn onboard_user(account: &Account, body: &Value, polls_needed: u32) -> Result<Value, ApiError> {
    if let Some(tier) = field(body, "tierId", "tier_id").and_then(Value::as_str) {
        if !ONBOARDABLE_TIERS.contains(&tier) {
            return Err(ApiError::InvalidArgument(format!(
                "Invalid tier id: {tier}. Choose one of the allowed tiers returned by LoadCodeAssist."
            )));
        }
    }
    Ok(match account.onboard_poll(polls_needed) {
        Onboarding::Pending { operation } => json!({"name": operation, "done": false}),
        Onboarding::Done => json!({
            "name": format!("operations/onboard-{}", account.project_id),
            "done": true,
            "response": {
                "@type": "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse",
                "cloudaicompanionProject": {"id": account.project_id, "name": account.project_id},
            },
        }),
    })
}

/// `ClientMetadata.platform` values (gemini-cli `code_assist/types.ts`); proto-JSON also takes the numbers.
/// `MACOS` is not in that list, but PROTOCOL.md records a working client (OAA) sending it, so it is taken:
/// the simulator must not refuse what Google is known to accept.
const PLATFORMS: [&str; 7] = [
    "PLATFORM_UNSPECIFIED",
    "DARWIN_AMD64",
    "DARWIN_ARM64",
    "LINUX_AMD64",
    "LINUX_ARM64",
    "WINDOWS_AMD64",
    "MACOS",
];

/// Proto-JSON refuses an enum name it does not know: a `metadata.platform` outside [`PLATFORMS`] is a 400,
/// as Google answers it.
pub fn check_metadata(body: &Value) -> Result<(), ApiError> {
    match body.get("metadata").and_then(|m| m.get("platform")) {
        Some(Value::String(p)) if !PLATFORMS.contains(&p.as_str()) => {
            Err(ApiError::InvalidArgument(format!(
                "Invalid value at 'metadata.platform' \
             (type.googleapis.com/google.internal.cloud.code.v1internal.ClientMetadata.Platform), \"{p}\""
            )))
        }
        _ => Ok(()),
    }
}

/// A 403 when the body names a project that is not the account's.
/// An account shut out of its quota views gets 403 whatever the body says.
pub fn check_quota_access(account: &Account) -> Result<(), ApiError> {
    if account.quota_denied {
        return Err(ApiError::PermissionDenied {
            message: "The caller does not have permission".to_string(),
            details: vec![],
        });
    }
    Ok(())
}

pub fn check_project(account: &Account, body: &Value) -> Result<(), ApiError> {
    match body.get("project").and_then(Value::as_str) {
        Some(p) if Some(p) != account.project() => Err(ApiError::PermissionDenied {
            message: format!("The caller does not have permission to access project {p}."),
            details: vec![],
        }),
        _ => Ok(()),
    }
}

fn quota_info(account: &Account, model: &str, quota: &QuotaConfig, now: SystemTime) -> Value {
    let view = account.quota_view(model, quota, now);
    let mut q = json!({ "resetTime": rfc3339(view.reset_time) });
    // proto3 JSON omits zero: a resetTime alone means exhausted.
    if view.remaining_fraction > 0.0 {
        q["remainingFraction"] = json!(view.remaining_fraction);
    }
    q
}

fn provider(model: &str) -> &'static str {
    match Family::of(model) {
        Family::Claude => "MODEL_PROVIDER_ANTHROPIC",
        Family::Other => "MODEL_PROVIDER_OPENAI",
        _ => "MODEL_PROVIDER_GOOGLE",
    }
}

/// `fetchAvailableModels`.
pub fn fetch_available_models(account: &Account, served: &[String], quota: &QuotaConfig) -> Value {
    let now = SystemTime::now();
    let mut models = Map::new();
    for m in served {
        let thinking = Family::of(m) == Family::Gemini3 || m.contains("thinking") || m.contains("pro");
        models.insert(
            m.clone(),
            json!({
                "displayName": models::display_name(m),
                "quotaInfo": quota_info(account, m, quota, now),
                "maxTokens": models::max_prompt_tokens(m),
                "maxOutputTokens": models::max_output_tokens(m),
                "supportsImages": Family::of(m).is_gemini() || Family::of(m) == Family::Claude,
                "supportsThinking": thinking,
                "thinkingBudget": if thinking { 32768 } else { 0 },
                "recommended": m == "gemini-3-flash" || m == "claude-sonnet-4-6",
                "modelProvider": provider(m),
            }),
        );
    }
    for m in INTERNAL_MODELS {
        models.insert(
            m.to_string(),
            json!({"quotaInfo": quota_info(account, m, quota, now), "modelProvider": "MODEL_PROVIDER_GOOGLE"}),
        );
    }
    json!({
        "models": models,
        "deprecatedModelIds": {"gemini-3.1-pro-high": {"newModelId": "gemini-pro-agent"}},
        "agentModelSorts": [],
        "imageGenerationModelIds": served.iter().filter(|m| m.contains("image")).collect::<Vec<_>>(),
        "tabModelIds": INTERNAL_MODELS,
    })
}

/// `retrieveUserQuota` (GCLI shape).
pub fn retrieve_user_quota(account: &Account, served: &[String], quota: &QuotaConfig) -> Value {
    let now = SystemTime::now();
    let buckets: Vec<Value> = served
        .iter()
        .map(|m| {
            let view = account.quota_view(m, quota, now);
            let mut b = json!({"modelId": m, "remainingFraction": view.remaining_fraction,
                               "resetTime": rfc3339(view.reset_time), "tokenType": "REQUESTS"});
            if let Some(limit) = quota.requests_per_window {
                b["remainingAmount"] = json!(((limit as f64) * view.remaining_fraction).round().to_string());
            }
            b
        })
        .collect();
    json!({ "buckets": buckets })
}

/// `retrieveUserQuotaSummary` (AM shape): the tightest model of each group.
pub fn retrieve_user_quota_summary(account: &Account, served: &[String], quota: &QuotaConfig) -> Value {
    let now = SystemTime::now();
    let group = |name: &str, bucket: &str, window: &str, gemini: bool| {
        let views: Vec<_> = served
            .iter()
            .filter(|m| Family::of(m).is_gemini() == gemini)
            .map(|m| account.quota_view(m, quota, now))
            .collect();
        let fraction = views.iter().map(|v| v.remaining_fraction).fold(1.0, f64::min);
        let reset = views.iter().map(|v| v.reset_time).max().unwrap_or(now);
        json!({"displayName": name, "buckets": [{"bucketId": bucket, "window": window,
               "remainingFraction": fraction, "resetTime": rfc3339(reset)}]})
    };
    json!({"groups": [group("Gemini", "gemini-weekly", "weekly", true),
                      group("Claude and GPT-OSS", "3p-5h", "5h", false)]})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;
    use crate::config::AccountConfig;

    fn account(tier: &str, onboarded: bool) -> std::sync::Arc<Account> {
        let accounts = Accounts::new(
            &[AccountConfig {
                email: "a@x".into(),
                refresh_token: "r".into(),
                project_id: Some("proj-1".into()),
                tier: Some(tier.into()),
                onboarded,
                quota_denied: false,
                models: None,
            }],
            60,
        );
        accounts.by_refresh_token("r").expect("configured")
    }

    #[test]
    fn client_metadata_platform_must_be_a_known_enum_name() {
        assert!(check_metadata(&json!({"metadata": {"ideType": "ANTIGRAVITY", "platform": "DARWIN_ARM64"}}))
            .is_ok());
        assert!(check_metadata(&json!({"metadata": {"platform": 2}})).is_ok());
        assert!(check_metadata(&json!({})).is_ok());
        assert!(
            check_metadata(&json!({"metadata": {"platform": "MACOS"}})).is_ok(),
            "OAA sends it (PROTOCOL.md)"
        );
        let e = check_metadata(&json!({"metadata": {"platform": "AMIGA_68K"}})).unwrap_err();
        assert_eq!(e.code(), 400);
    }

    #[test]
    fn load_code_assist_shapes() {
        let v = load_code_assist(&account("g1-pro-tier", true));
        assert_eq!(v["cloudaicompanionProject"], "proj-1");
        assert_eq!(v["currentTier"]["id"], "free-tier");
        assert_eq!(v["paidTier"]["id"], "g1-pro-tier");
        let v = load_code_assist(&account("free-tier", false));
        assert!(v.get("cloudaicompanionProject").is_none());
        assert!(v.get("currentTier").is_none());
        assert_eq!(v["allowedTiers"][0]["isDefault"], true);
    }

    #[test]
    fn onboarding_flow() {
        let a = account("free-tier", false);
        let body = json!({"tierId": "free-tier", "metadata": {"ideType": "ANTIGRAVITY"}});
        let first = onboard_user(&a, &body, 2).expect("op");
        assert_eq!(first["done"], false);
        let second = onboard_user(&a, &body, 2).expect("op");
        assert_eq!(second["done"], true);
        assert_eq!(second["response"]["cloudaicompanionProject"]["id"], "proj-1");
        assert_eq!(load_code_assist(&a)["cloudaicompanionProject"], "proj-1");
        assert!(onboard_user(&a, &json!({"tierId": "g1-pro-tier"}), 2).is_err());
    }

    #[test]
    fn models_list_quota() {
        let a = account("free-tier", true);
        let served = vec!["gemini-3-flash".to_string()];
        let q = QuotaConfig::default();
        let v = fetch_available_models(&a, &served, &q);
        assert_eq!(v["models"]["gemini-3-flash"]["quotaInfo"]["remainingFraction"], 1.0);
        assert!(v["models"]["chat_20706"].is_object());
        let now = SystemTime::now();
        a.mark_exhausted("gemini-3-flash", now + std::time::Duration::from_secs(60), false, &q, now);
        let v = fetch_available_models(&a, &served, &q);
        assert!(v["models"]["gemini-3-flash"]["quotaInfo"].get("remainingFraction").is_none());
        assert!(v["models"]["gemini-3-flash"]["quotaInfo"]["resetTime"].is_string());
    }
}
