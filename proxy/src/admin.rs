//! The admin listener: `/metrics` for Prometheus and `/admin/health`, behind the admin key when one is set.
//!
//! It runs as its own Pingora service on its own address so that operators can firewall it separately
//! and so a flood of client traffic never starves the scrape.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora_core::apps::http_app::ServeHttp;
use pingora_core::protocols::http::ServerSession;
use subtle::ConstantTimeEq;

use crate::app::App;

pub struct Admin {
    app: Arc<App>,
}

impl Admin {
    pub fn new(app: Arc<App>) -> Self {
        Admin { app }
    }

    fn authorized(&self, session: &ServerSession) -> bool {
        let snapshot = self.app.snapshot();
        let Some(expected) = &snapshot.admin.key else {
            return true;
        };
        let presented = session
            .req_header()
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        presented.len() == expected.expose().len()
            && bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes()))
    }
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("Content-Type", content_type)
        .header("Content-Length", body.len())
        .body(body)
        .unwrap_or_default()
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        if !self.authorized(session) {
            return reply(401, "application/json", br#"{"error":"admin key required"}"#.to_vec());
        }
        match session.req_header().uri.path() {
            "/metrics" => reply(200, "text/plain; version=0.0.4", self.app.metrics.render()),
            "/admin/health" => {
                let snapshot = self.app.snapshot();
                let body = serde_json::json!({
                    "status": "ok",
                    "accounts": snapshot.accounts.len(),
                    "listen": snapshot.listen.to_string(),
                });
                reply(200, "application/json", body.to_string().into_bytes())
            }
            _ => reply(404, "application/json", br#"{"error":"not found"}"#.to_vec()),
        }
    }
}
