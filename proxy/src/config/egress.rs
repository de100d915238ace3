//! The egress keys of the configuration: `upstream.proxy` (the default), each account's `proxy` (or `direct`),
//! their `proxy_auth_env` credentials, and the account's pacing (`min_interval`, `jitter`). Every problem is
//! reported at its line like the rest of validation.

use std::sync::Arc;
use std::time::Duration;

use crate::egress::{EgressProxy, Pacing, ProxyAuth};

use super::files::AccountFile;
use super::source::At::{self, Item, Key};
use super::source::Source;
use super::{Env, Problems};

/// An account's `proxy:` value that opts out of `upstream.proxy`.
const DIRECT: &str = "direct";
/// Longest accepted pacing gap: a longer one would park the account for good.
const PACING_CAP: Duration = Duration::from_secs(3600);

/// Parses one proxy URL and its credentials; `Err(())` once the problem is recorded.
fn proxy_of(
    src: &Source,
    at: &[At<'_>],
    what: &str,
    url: &str,
    auth_env: Option<&str>,
    env: &dyn Env,
    problems: &mut Problems,
) -> Result<Arc<EgressProxy>, ()> {
    let auth =
        match auth_env {
            None => None,
            Some(name) => match env.var(name) {
                None => {
                    problems.push(src.invalid(
                        at,
                        format!("{what}: environment variable {name} (proxy_auth_env) is not set"),
                    ));
                    return Err(());
                }
                Some(value) => match ProxyAuth::parse(&value) {
                    Ok(auth) => Some(auth),
                    Err(m) => {
                        problems.push(src.invalid(at, format!("{what}: {name} (proxy_auth_env): {m}")));
                        return Err(());
                    }
                },
            },
        };
    EgressProxy::parse(url.trim(), auth)
        .map(Arc::new)
        .map_err(|m| problems.push(src.invalid(at, format!("{what}: {m}"))))
}

/// `upstream.proxy`, if set.
pub(super) fn default_proxy(
    src: &Source,
    proxy: Option<&str>,
    auth_env: Option<&str>,
    env: &dyn Env,
    problems: &mut Problems,
) -> Result<Option<Arc<EgressProxy>>, ()> {
    let at = [Key("upstream"), Key("proxy")];
    match proxy {
        None if auth_env.is_some() => {
            let at = [Key("upstream"), Key("proxy_auth_env")];
            problems.push(src.invalid(&at, "upstream.proxy_auth_env is set but upstream.proxy is not"));
            Err(())
        }
        None => Ok(None),
        Some(url) if url.trim() == DIRECT => {
            problems.push(src.invalid(&at, "upstream.proxy: leave it out for direct connections"));
            Err(())
        }
        Some(url) => proxy_of(src, &at, "upstream.proxy", url, auth_env, env, problems).map(Some),
    }
}

/// The account's egress (its own, `direct`, else `default`) and its pacing.
pub(super) fn account_edge(
    src: &Source,
    i: usize,
    a: &AccountFile,
    default: Option<&Arc<EgressProxy>>,
    env: &dyn Env,
    problems: &mut Problems,
) -> Result<(Option<Arc<EgressProxy>>, Pacing), ()> {
    let what = format!("account {}", a.email);
    let at = |key| [Key("accounts"), Item(i), Key(key)];
    let egress = match a.proxy.as_deref().map(str::trim) {
        Some(DIRECT) if a.proxy_auth_env.is_some() => {
            problems.push(
                src.invalid(&at("proxy_auth_env"), format!("{what}: proxy_auth_env with proxy: direct")),
            );
            Err(())
        }
        Some(DIRECT) => Ok(None),
        Some(url) => {
            proxy_of(src, &at("proxy"), &what, url, a.proxy_auth_env.as_deref(), env, problems).map(Some)
        }
        None if a.proxy_auth_env.is_some() => {
            let message = format!("{what}: proxy_auth_env is set but proxy is not");
            problems.push(src.invalid(&at("proxy_auth_env"), message));
            Err(())
        }
        None => Ok(default.cloned()),
    };
    let pacing = Pacing { min_interval: a.min_interval, jitter: a.jitter };
    let mut paced = Ok(pacing);
    for (key, value) in [("min_interval", a.min_interval), ("jitter", a.jitter)] {
        if value > PACING_CAP {
            let message = format!("{what}: {key} must be at most 1h");
            problems.push(src.invalid(&at(key), message));
            paced = Err(());
        }
    }
    Ok((egress?, paced?))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use crate::config::{Env, Snapshot};
    use crate::egress::ProxyKind;

    struct Vars(HashMap<&'static str, &'static str>);
    impl Env for Vars {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn load(upstream: &str, accounts: &str) -> Result<Snapshot, String> {
        let main = format!(
            "listen: 127.0.0.1:9000\nauth:\n  api_keys:\n    - {{ name: k, key: k }}\nupstream:\n  \
             user_agent: antigravity/1.15.8 linux/amd64\n{upstream}"
        );
        let env = Vars(HashMap::from([("PROXY_A", "alice:pw:1"), ("BAD_AUTH", "nocolon")]));
        Snapshot::from_texts(&main, accounts, "default: gemini-3-flash\n", &env).map_err(|e| e.to_string())
    }

    #[test]
    fn accounts_take_their_own_proxy_the_default_or_none() {
        let accounts =
            "accounts:\n  - { email: a@x.com, refresh_token: r, proxy: 'socks5h://127.0.0.1:1081', \
                        proxy_auth_env: PROXY_A, min_interval: 2s, jitter: 500ms }\n  \
                        - { email: b@x.com, refresh_token: r }\n  \
                        - { email: c@x.com, refresh_token: r, proxy: direct }\n";
        let s = load("  proxy: http://10.0.0.9:3128\n", accounts).unwrap();
        let a = s.accounts[0].egress.as_ref().expect("own proxy");
        assert_eq!((a.kind, a.port), (ProxyKind::Socks5h, 1081));
        assert_eq!(a.auth.as_ref().map(|x| x.password.as_str()), Some("pw:1"));
        assert_eq!(s.accounts[0].pacing.min_interval, Duration::from_secs(2));
        assert_eq!(s.accounts[0].pacing.jitter, Duration::from_millis(500));
        assert_eq!(
            s.accounts[1].egress.as_ref().map(|p| p.to_string()).as_deref(),
            Some("http://10.0.0.9:3128")
        );
        assert!(s.accounts[1].pacing.is_off());
        assert!(s.accounts[2].egress.is_none(), "direct opts out of the default");
        assert!(s.upstream.proxy.is_some());
        let s = load("", accounts).unwrap();
        assert!(s.accounts[1].egress.is_none() && s.upstream.proxy.is_none());
    }

    #[test]
    fn every_bad_egress_key_is_reported_at_its_line() {
        let accounts = "accounts:\n  - email: a@x.com\n    refresh_token: r\n    proxy: ftp://p:1\n  \
                        - email: b@x.com\n    refresh_token: r\n    proxy: socks5://p:1\n    proxy_auth_env: MISSING\n  \
                        - email: c@x.com\n    refresh_token: r\n    proxy: http://u:p@p:1\n  \
                        - email: d@x.com\n    refresh_token: r\n    proxy_auth_env: PROXY_A\n  \
                        - email: e@x.com\n    refresh_token: r\n    min_interval: 2h\n";
        let e = load("  proxy: socks5://p\n  proxy_auth_env: BAD_AUTH\n", accounts).unwrap_err();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(
            e.contains(
                "levitate.yaml:7: upstream.proxy: BAD_AUTH (proxy_auth_env): the value must be user:password"
            ),
            "{e}"
        );
        assert!(e.contains("accounts.yaml:4: account a@x.com: \"ftp\": the proxy scheme"), "{e}");
        assert!(e.contains("accounts.yaml:7: account b@x.com: environment variable MISSING"), "{e}");
        assert!(
            e.contains("accounts.yaml:11: account c@x.com: credentials in the proxy URL are refused"),
            "{e}"
        );
        assert!(
            e.contains("accounts.yaml:14: account d@x.com: proxy_auth_env is set but proxy is not"),
            "{e}"
        );
        assert!(e.contains("accounts.yaml:17: account e@x.com: min_interval must be at most 1h"), "{e}");
        assert!(!e.contains("alice") && !e.contains("pw:1"), "no secret in errors: {e}");
    }
}
