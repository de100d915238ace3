//! The `v1internal` control calls an account makes besides content: project discovery and onboarding
//! (`loadCodeAssist`, `onboardUser`), and the one-call helper the quota poller and warmup use as well. Split
//! from `credentials.rs` because these are the calls' wire shape, while that file keeps tokens and caches.

use bytes::Bytes;
use serde_json::{json, Value};

use super::{AccessToken, CredentialError, Credentials, Project, CONTROL_BODY_LIMIT, ONBOARD_POLLS};
use crate::accounts::answers::{default_allowed_tier, google_message, project_of, tier_of};
use crate::config::{AccountSpec, UpstreamSettings};
use crate::upstream::UpstreamRequest;

const ONBOARD_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

impl Credentials {
    pub(super) async fn discover(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
    ) -> Result<Project, CredentialError> {
        let platform = self.identity(account).metadata_platform();
        let metadata = json!({"ideType": "ANTIGRAVITY", "platform": platform, "pluginType": "GEMINI"});
        let answer = self
            .control_call(account, settings, token, "loadCodeAssist", json!({ "metadata": metadata }))
            .await?;
        let tier = tier_of(&answer);
        if let Some(id) = project_of(&answer) {
            tracing::info!(account = %account.email, project = %id, tier = ?tier, "project discovered");
            return Ok(Project { id: id.into(), tier });
        }
        let tier_id = default_allowed_tier(&answer).unwrap_or_else(|| "free-tier".to_string());
        let body = json!({ "tierId": tier_id, "metadata": metadata });
        for _ in 0..ONBOARD_POLLS {
            let operation = self.control_call(account, settings, token, "onboardUser", body.clone()).await?;
            if operation.get("done").and_then(Value::as_bool) == Some(true) {
                if let Some(id) = operation.get("response").and_then(project_of) {
                    tracing::info!(account = %account.email, project = %id, "account onboarded");
                    return Ok(Project { id: id.into(), tier: tier.or(Some(tier_id)) });
                }
            }
            tokio::time::sleep(ONBOARD_POLL_INTERVAL).await;
        }
        Err(CredentialError::OnboardTimeout { account: account.email.clone() })
    }

    /// One JSON call to a `v1internal` control method, trying endpoints in order on network errors and 5xx.
    /// Also the quota poller's way to call `fetchAvailableModels`.
    pub async fn control_call(
        &self,
        account: &AccountSpec,
        settings: &UpstreamSettings,
        token: &AccessToken,
        method: &'static str,
        body: Value,
    ) -> Result<Value, CredentialError> {
        let body = Bytes::from(body.to_string());
        let identity = self.identity(account);
        let mut headers = vec![
            ("Content-Type", "application/json".to_string()),
            ("Authorization", format!("Bearer {}", token.token)),
            ("User-Agent", identity.user_agent(&settings.user_agent)),
        ];
        headers.extend(identity.headers(&settings.user_agent));
        let path = format!("/v1internal:{method}");
        let mut last: Option<CredentialError> = None;
        for url in &settings.endpoints {
            let request = UpstreamRequest {
                url,
                path: &path,
                headers: &headers,
                body: body.clone(),
                egress: account.egress(),
            };
            let call = async {
                self.upstream
                    .post(request, CONTROL_BODY_LIMIT)
                    .await
                    .map_err(|source| CredentialError::Network { account: account.email.clone(), source })
            };
            match Self::bounded(account, settings, method, call).await {
                Ok((200, answer)) => {
                    return serde_json::from_slice(&answer).map_err(|e| CredentialError::Discovery {
                        account: account.email.clone(),
                        call: method,
                        status: 200,
                        message: format!("unreadable answer: {e}"),
                    })
                }
                Ok((status, answer)) => {
                    let error = CredentialError::Discovery {
                        account: account.email.clone(),
                        call: method,
                        status,
                        message: google_message(&answer),
                    };
                    if !crate::upstream::is_endpoint_problem(status) {
                        return Err(error);
                    }
                    last = Some(error);
                }
                // The next endpoint would go through the same dead proxy.
                Err(e) if e.egress_down() => return Err(e),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(CredentialError::Discovery {
            account: account.email.clone(),
            call: method,
            status: 0,
            message: "no endpoints configured".into(),
        }))
    }
}
