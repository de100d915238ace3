//! Per-account client identity: what a real client's install would present, generated once per account
//! and kept in the store, so a pool of accounts does not look like one device sending for all of them.
//!
//! What varies is what PROTOCOL.md §1–§3 show varying between real installs: the platform in the user agent
//! (`antigravity/<ver> <os>/<arch>`) and in `ClientMetadata.platform` of `loadCodeAssist`/`onboardUser`
//! (the same machine, so the two agree), and the install's machine id (`x-machine-id`, with
//! `x-client-name`/`x-client-version`, as Antigravity Manager sends them). The product and version stay those
//! of `upstream.user_agent`: a version Google does not know, or one below its floor, would stand out or be
//! refused. Nothing here is secret; the admin API shows it.

use serde::{Deserialize, Serialize};

/// The platforms a desktop client runs on: `(os/arch in the user agent, ClientMetadata.platform)`.
const PLATFORMS: [(&str, &str); 5] = [
    ("darwin/arm64", "DARWIN_ARM64"),
    ("darwin/amd64", "DARWIN_AMD64"),
    ("windows/amd64", "WINDOWS_AMD64"),
    ("linux/amd64", "LINUX_AMD64"),
    ("linux/arm64", "LINUX_ARM64"),
];

/// One account's identity as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientIdentity {
    /// `os/arch` as the user agent writes it, e.g. `darwin/arm64`.
    pub platform: String,
    /// The install's machine id: 64 hex digits (a SHA-256-sized id, as VS Code-based clients use).
    pub machine_id: String,
}

impl ClientIdentity {
    /// A new identity from two random draws (one for the platform, 256 bits for the machine id).
    pub fn generate() -> Self {
        let draw = uuid::Uuid::new_v4().as_u128();
        let (platform, _) = PLATFORMS[(draw % PLATFORMS.len() as u128) as usize];
        let machine_id = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        ClientIdentity { platform: platform.to_string(), machine_id }
    }

    /// The user agent of content and control calls: the product/version of `base` with this install's
    /// platform, e.g. `antigravity/1.15.8 darwin/arm64`.
    pub fn user_agent(&self, base: &str) -> String {
        let product = base.split_whitespace().next().unwrap_or(base);
        format!("{product} {}", self.platform)
    }

    /// The version in `base` (`antigravity/1.15.8 …` → `1.15.8`), for `x-client-version`.
    pub fn client_version(base: &str) -> &str {
        let product = base.split_whitespace().next().unwrap_or(base);
        product.rsplit('/').next().unwrap_or(product)
    }

    /// `ClientMetadata.platform` for this install's platform.
    pub fn metadata_platform(&self) -> &'static str {
        PLATFORMS.iter().find(|(p, _)| *p == self.platform).map_or("PLATFORM_UNSPECIFIED", |(_, m)| m)
    }

    /// The identity headers of content and control calls (the user agent is set by the caller).
    pub fn headers(&self, base: &str) -> [(&'static str, String); 3] {
        [
            ("x-client-name", "antigravity".to_string()),
            ("x-client-version", Self::client_version(base).to_string()),
            ("x-machine-id", self.machine_id.clone()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_distinct_and_consistent_with_the_configured_version() {
        let base = "antigravity/1.15.8 linux/amd64";
        let ids: Vec<ClientIdentity> = (0..50).map(|_| ClientIdentity::generate()).collect();
        for id in &ids {
            let ua = id.user_agent(base);
            assert!(ua.starts_with("antigravity/1.15.8 "), "{ua}");
            let (os, arch) = id.platform.split_once('/').unwrap();
            assert!(id.metadata_platform().starts_with(&os.to_ascii_uppercase()), "{id:?}");
            assert!(id.metadata_platform().ends_with(&arch.to_ascii_uppercase()), "{id:?}");
            assert_eq!(id.machine_id.len(), 64);
            assert!(id.machine_id.chars().all(|c| c.is_ascii_hexdigit()));
        }
        let machines: std::collections::HashSet<_> = ids.iter().map(|i| &i.machine_id).collect();
        assert_eq!(machines.len(), ids.len());
        let platforms: std::collections::HashSet<_> = ids.iter().map(|i| &i.platform).collect();
        assert!(platforms.len() > 1, "50 draws over 5 platforms: {platforms:?}");
        assert_eq!(ClientIdentity::client_version(base), "1.15.8");
        assert_eq!(ids[0].headers(base)[1].1, "1.15.8");
        let odd = ClientIdentity { platform: "plan9/mips".into(), machine_id: "x".into() };
        assert_eq!(odd.metadata_platform(), "PLATFORM_UNSPECIFIED");
    }

    #[test]
    fn a_stored_identity_reads_back_unchanged() {
        let id = ClientIdentity::generate();
        let text = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ClientIdentity>(&text).unwrap(), id);
    }
}
