//! TLS termination at the edge: the client listener (`tls:`) and the admin listener (`admin.tls:`) can speak
//! HTTPS themselves, so Levitate needs no second proxy on the box and can sit behind Cloudflare in "Full
//! (strict)" mode, optionally accepting only Cloudflare (Authenticated Origin Pulls: a client certificate
//! signed by a CA file).
//!
//! Certificates change without a restart. Loading the files is part of validating the configuration
//! ([`load`] is called by `config::validate`), so a bad certificate, key or CA file refuses the whole reload
//! with `levitate.yaml:line: tls.cert: file:line: reason` and the running one stays. An accepted snapshot
//! is handed to [`EdgeTls::apply`] (through the Reloader's `apply` callback); that stores the new material
//! in a [`LiveTls`], which Pingora's rustls acceptor consults on every handshake as its certificate resolver
//! and client-certificate verifier. Open connections keep the session they negotiated; new handshakes use
//! the new files. The listening socket is never touched.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::protocols::ALPN;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

/// The files of one TLS listener, as configured (paths resolved against the configuration folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates a client certificate must chain to; `None` asks clients for no certificate.
    pub client_ca: Option<PathBuf>,
}

/// Why a listener's TLS files cannot be used. Each names the file, and the line in it where it can.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}: not valid PEM: {reason}")]
    BadPem { path: String, line: usize, reason: String },
    #[error("{path}: no {expected} in the file (expected a PEM block `-----BEGIN {expected}-----`)")]
    Missing { path: String, expected: &'static str },
    #[error("{path}: the private key cannot be used: {reason}")]
    BadKey { path: String, reason: String },
    #[error("{cert} and {key} do not belong together: {reason}")]
    Mismatch { cert: String, key: String, reason: String },
    #[error("{path}: not a usable CA certificate: {reason}")]
    BadCa { path: String, reason: String },
}

impl TlsError {
    /// The file the problem is in (for a key that does not match its certificate: the key).
    pub fn path(&self) -> &str {
        match self {
            TlsError::Read { path, .. }
            | TlsError::BadPem { path, .. }
            | TlsError::Missing { path, .. }
            | TlsError::BadKey { path, .. }
            | TlsError::BadCa { path, .. } => path,
            TlsError::Mismatch { key, .. } => key,
        }
    }
}

/// One listener's certificate and client verification, loaded and checked.
#[derive(Clone)]
pub struct TlsMaterial {
    pub files: TlsFiles,
    certified: Arc<CertifiedKey>,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for TlsMaterial {
    // The key is never printed: only where it came from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial").field("files", &self.files).finish_non_exhaustive()
    }
}

/// The crypto provider Pingora's acceptor uses (ring); installing it is idempotent.
fn provider() -> Arc<CryptoProvider> {
    pingora_core::tls::install_default_crypto_provider();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Reads and checks `files`: the chain parses, the key parses and matches the leaf, the CA file (if any)
/// holds at least one usable certificate.
pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TlsError> {
    let provider = provider();
    let chain: Vec<CertificateDer<'static>> = pem_items(&files.cert)?
        .into_iter()
        .filter_map(|item| match item {
            rustls_pemfile::Item::X509Certificate(cert) => Some(cert),
            _ => None,
        })
        .collect();
    if chain.is_empty() {
        return Err(TlsError::Missing { path: files.cert.display().to_string(), expected: "CERTIFICATE" });
    }
    let key: PrivateKeyDer<'static> = pem_items(&files.key)?
        .into_iter()
        .find_map(|item| match item {
            rustls_pemfile::Item::Pkcs8Key(k) => Some(k.into()),
            rustls_pemfile::Item::Pkcs1Key(k) => Some(k.into()),
            rustls_pemfile::Item::Sec1Key(k) => Some(k.into()),
            _ => None,
        })
        .ok_or_else(|| TlsError::Missing {
            path: files.key.display().to_string(),
            expected: "PRIVATE KEY",
        })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey { path: files.key.display().to_string(), reason: e.to_string() })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|e| TlsError::Mismatch {
        cert: files.cert.display().to_string(),
        key: files.key.display().to_string(),
        reason: e.to_string(),
    })?;
    let client_verifier = match &files.client_ca {
        Some(path) => Some(client_verifier(path, provider)?),
        None => None,
    };
    Ok(TlsMaterial { files: files.clone(), certified: Arc::new(certified), client_verifier })
}

/// A verifier that requires a client certificate chaining to one of the CA certificates in `path`.
fn client_verifier(
    path: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::BadCa { path: path.display().to_string(), reason };
    let mut roots = RootCertStore::empty();
    for item in pem_items(path)? {
        if let rustls_pemfile::Item::X509Certificate(cert) = item {
            roots.add(cert).map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(TlsError::Missing { path: path.display().to_string(), expected: "CERTIFICATE" });
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Every PEM block of the file at `path`; a malformed block is reported with the line it starts on.
fn pem_items(path: &Path) -> Result<Vec<rustls_pemfile::Item>, TlsError> {
    let shown = || path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read { path: shown(), source })?;
    let mut items = Vec::new();
    let mut rest = bytes.as_slice();
    loop {
        match rustls_pemfile::read_one_from_slice(rest) {
            Ok(Some((item, after))) => {
                items.push(item);
                rest = after;
            }
            Ok(None) => return Ok(items),
            Err(e) => {
                let at = bytes.len() - rest.len();
                return Err(TlsError::BadPem {
                    path: shown(),
                    line: block_line(&bytes, at),
                    reason: pem_reason(e),
                });
            }
        }
    }
}

/// The 1-based line of the first `-----BEGIN` at or after `from` (the block that failed), else of `from`.
fn block_line(bytes: &[u8], from: usize) -> usize {
    let begin = bytes[from..].windows(10).position(|w| w == b"-----BEGIN").map_or(from, |p| from + p);
    1 + bytes[..begin].iter().filter(|&&b| b == b'\n').count()
}

fn pem_reason(e: rustls_pemfile::Error) -> String {
    match e {
        rustls_pemfile::Error::MissingSectionEnd { end_marker } => {
            format!("the block has no `-----END {}-----` line", String::from_utf8_lossy(&end_marker))
        }
        rustls_pemfile::Error::IllegalSectionStart { line } => {
            format!("malformed BEGIN line `{}`", String::from_utf8_lossy(&line))
        }
        rustls_pemfile::Error::Base64Decode(reason) => format!("the block is not base64: {reason}"),
    }
}

/// The TLS state of one running listener: what new handshakes use. Swapped on reload.
pub struct LiveTls {
    certified: ArcSwap<CertifiedKey>,
    client_verifier: ArcSwapOption<Arc<dyn ClientCertVerifier>>,
    /// The signature schemes to announce when no client certificate is asked for (never used then).
    schemes: Vec<SignatureScheme>,
}

impl fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTls").field("client_auth", &self.client_verifier.load().is_some()).finish()
    }
}

impl LiveTls {
    pub fn new(material: &TlsMaterial) -> Arc<LiveTls> {
        let schemes = provider().signature_verification_algorithms.supported_schemes();
        let live = LiveTls {
            certified: ArcSwap::new(material.certified.clone()),
            client_verifier: ArcSwapOption::empty(),
            schemes,
        };
        live.update(material);
        Arc::new(live)
    }

    /// New handshakes use `material` from now on; established connections are not affected.
    pub fn update(&self, material: &TlsMaterial) {
        self.certified.store(material.certified.clone());
        self.client_verifier.store(material.client_verifier.clone().map(Arc::new));
    }

    /// Pingora listener settings whose every handshake asks this state for the certificate and the client
    /// verification. `h2` offers HTTP/2 by ALPN (with HTTP/1.1 as the fallback).
    pub fn settings(self: &Arc<Self>, h2: bool) -> TlsSettings {
        // Both paths are ignored once a resolver is set; `intermediate` only fills in the defaults.
        let Ok(mut settings) = TlsSettings::intermediate("", "") else {
            unreachable!("TlsSettings::intermediate does not fail for rustls")
        };
        settings.set_cert_resolver(self.clone());
        settings.set_client_cert_verifier(self.clone());
        settings.set_alpn(if h2 { ALPN::H2H1 } else { ALPN::H1 });
        settings
    }

    fn verifier(&self) -> Result<Arc<Arc<dyn ClientCertVerifier>>, rustls::Error> {
        // Only reachable when a reload removed client_ca during a handshake that had asked for a certificate.
        self.client_verifier.load_full().ok_or_else(|| rustls::Error::General("client_ca was removed".into()))
    }
}

impl ResolvesServerCert for LiveTls {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified.load_full())
    }
}

/// Delegates to the verifier of the current `client_ca`; with none, no client certificate is asked for.
impl ClientCertVerifier for LiveTls {
    fn offer_client_auth(&self) -> bool {
        self.client_verifier.load().is_some()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.client_verifier.load().as_ref().is_some_and(|v| v.client_auth_mandatory())
    }

    /// The CA names hinted to clients. Empty (allowed by TLS: "any CA") because the CA can change on reload
    /// and this must borrow from `self`; Cloudflare and other clients with one certificate send it anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verifier()?.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        match self.client_verifier.load().as_ref() {
            Some(v) => v.supported_verify_schemes(),
            None => self.schemes.clone(),
        }
    }
}

/// The TLS state of both listeners, fixed at start as on or off (like their addresses); the files behind
/// an enabled one follow every accepted reload.
#[derive(Debug, Default)]
pub struct EdgeTls {
    pub gateway: Option<Arc<LiveTls>>,
    pub admin: Option<Arc<LiveTls>>,
}

impl EdgeTls {
    /// The listeners' material at start: `tls:` and `admin.tls:` of the boot configuration.
    pub fn new(gateway: Option<&TlsMaterial>, admin: Option<&TlsMaterial>) -> EdgeTls {
        EdgeTls { gateway: gateway.map(LiveTls::new), admin: admin.map(LiveTls::new) }
    }

    /// Puts the certificates of an accepted configuration in force. A listener started without TLS stays
    /// plain (and one started with TLS keeps its last certificate if `tls:` was removed): that needs an
    /// upgrade, which `Snapshot::needs_upgrade` reports.
    pub fn apply(&self, gateway: Option<&TlsMaterial>, admin: Option<&TlsMaterial>) {
        for (live, material, name) in [(&self.gateway, gateway, "tls"), (&self.admin, admin, "admin.tls")] {
            if let (Some(live), Some(material)) = (live, material) {
                live.update(material);
                tracing::info!(listener = name, cert = %material.files.cert.display(), "TLS certificate (re)loaded");
            }
        }
    }
}

/// A self-signed certificate (valid for a century) and keys for tests: no secret, made for this purpose.
#[cfg(test)]
pub(crate) mod fixtures {
    pub const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBpzCCAU2gAwIBAgIUYFBRtx9HAoUc7WW+ITr3jjdwunMwCgYIKoZIzj0EAwIw\nHTEbMBkGA1UEAwwSbGV2aXRhdGUtdW5pdC10ZXN0MCAXDTI2MTIwNjA4MTAzMFoY\nDzIxMjYxMTEyMDgxMDMwWjAdMRswGQYDVQQDDBJsZXZpdGF0ZS11bml0LXRlc3Qw\nWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATemIP66lyIOChuVxILvozw7mT/PnIu\nJZJesCFRmYxHP/iWUpU5MwgUsLOLnTRbjQJA1OoTmuzVA/T6l934kG7bo2kwZzAd\nBgNVHQ4EFgQUMrDL/InfS5ZlmtJ3aNMQP+dnixgwHwYDVR0jBBgwFoAUMrDL/Inf\nS5ZlmtJ3aNMQP+dnixgwDwYDVR0TAQH/BAUwAwEB/zAUBgNVHREEDTALgglsb2Nh\nbGhvc3QwCgYIKoZIzj0EAwIDSAAwRQIge9g+R0jmzre8PbdVft46bpooWQwLBH7x\nwI8HieT2fJECIQCxboYSEhsy5+civLvBuXrj8k+F/VV6eBKLy+DWBwEmWQ==\n-----END CERTIFICATE-----\n";
    pub const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgX0gjErUk5mFZcDH5\n07yFhZPsUxgppn4XZNSoM8fma2OhRANCAATemIP66lyIOChuVxILvozw7mT/PnIu\nJZJesCFRmYxHP/iWUpU5MwgUsLOLnTRbjQJA1OoTmuzVA/T6l934kG7b\n-----END PRIVATE KEY-----\n";
    /// A key that does not belong to `CERT`.
    pub const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghz78EvulVtZGC7DA\ngb/L/IHcHpm6SaGA4Nz0Z5wY+6qhRANCAAQv+X6z3Ph/+kD+z0MxeUVlnuQAlT0I\nUEtu/oPMJi1povkZirhgRVVjr7JmG+zXwTWQOM2msSAmC4s26HPXWgzF\n-----END PRIVATE KEY-----\n";

    /// Writes `cert.pem` and `key.pem` (with `key` as its contents) into `dir`.
    pub fn write(dir: &std::path::Path, key: &str) {
        std::fs::write(dir.join("cert.pem"), CERT).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("levitate-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn files(d: &Path) -> TlsFiles {
        TlsFiles { cert: d.join("cert.pem"), key: d.join("key.pem"), client_ca: None }
    }

    #[test]
    fn a_missing_file_is_named() {
        let d = dir("missing");
        let e = load(&files(&d)).unwrap_err().to_string();
        assert!(e.contains("cert.pem: cannot read"), "{e}");
    }

    #[test]
    fn a_broken_pem_block_is_reported_with_its_line() {
        let d = dir("bad-pem");
        let text = "# comment\n\n-----BEGIN CERTIFICATE-----\nnot*base64!\n-----END CERTIFICATE-----\n";
        std::fs::write(d.join("cert.pem"), text).unwrap();
        let e = load(&files(&d)).unwrap_err().to_string();
        assert!(e.contains("cert.pem:3: not valid PEM"), "{e}");
        std::fs::write(d.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
        let e = load(&files(&d)).unwrap_err().to_string();
        assert!(e.contains("cert.pem:1: not valid PEM") && e.contains("END CERTIFICATE"), "{e}");
    }

    #[test]
    fn a_file_without_the_expected_block_says_what_was_expected() {
        let d = dir("empty");
        std::fs::write(d.join("cert.pem"), "just text\n").unwrap();
        let e = load(&files(&d)).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE in the file"), "{e}");
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused() {
        let d = dir("not-der");
        std::fs::write(d.join("cert.pem"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .unwrap();
        std::fs::write(d.join("key.pem"), "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            .unwrap();
        let e = load(&files(&d)).unwrap_err().to_string();
        assert!(e.contains("key.pem: the private key cannot be used"), "{e}");
    }

    #[test]
    fn a_matching_pair_loads_and_a_reload_swaps_what_new_handshakes_get() {
        let d = dir("ok");
        fixtures::write(&d, fixtures::KEY);
        let plain = load(&files(&d)).unwrap();
        let live = LiveTls::new(&plain);
        assert!(!live.offer_client_auth(), "no client_ca: no client certificate is asked for");
        let with_ca = load(&TlsFiles { client_ca: Some(d.join("cert.pem")), ..files(&d) }).unwrap();
        live.update(&with_ca);
        assert!(Arc::ptr_eq(&live.certified.load_full(), &with_ca.certified));
        assert!(live.offer_client_auth() && live.client_auth_mandatory());
        live.update(&plain);
        assert!(!live.offer_client_auth());
        assert!(!format!("{plain:?}").contains("PRIVATE"), "the key is never printed");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let d = dir("mismatch");
        fixtures::write(&d, fixtures::OTHER_KEY);
        let e = load(&files(&d)).unwrap_err();
        assert!(e.to_string().contains("do not belong together"), "{e}");
        assert!(e.path().ends_with("key.pem"));
    }

    #[test]
    fn block_lines_count_from_one() {
        assert_eq!(block_line(b"-----BEGIN X", 0), 1);
        assert_eq!(block_line(b"a\nb\n-----BEGIN X", 2), 3);
        assert_eq!(block_line(b"a\nb\n", 4), 3);
    }
}
