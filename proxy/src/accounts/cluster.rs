//! Credentials several instances share (`shared_state`): access tokens, with one refresh per account per
//! expiry across the cluster, and discovered projects.
//!
//! [`ClusterCredentials`] is what the cluster offers (implemented over Redis in `crate::shared`); the
//! credentials call [`refresh_once`] instead of refreshing directly. Without a cluster, or while it cannot be
//! reached, every instance refreshes for itself as before: the cluster saves refreshes, it is never needed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::store::unix_now;

/// An access token as the cluster holds it: the bearer value and its expiry (unix seconds).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub token: Arc<str>,
    pub expires_at: u64,
}

/// A discovered project as the cluster holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedProject {
    pub id: String,
    pub tier: Option<String>,
}

/// How often a waiting instance looks for the token the refreshing one publishes.
const POLL: Duration = Duration::from_millis(100);

#[async_trait]
pub trait ClusterCredentials: Send + Sync {
    /// The token an instance stored for the account, if any.
    async fn token(&self, account: &str) -> Option<Token>;
    /// Claims the account's refresh for this instance, for at most `hold`; false when another instance
    /// holds the claim. True when the cluster cannot be reached (then each refreshes for itself).
    async fn claim_refresh(&self, account: &str, hold: Duration) -> bool;
    /// Publishes a refreshed token and ends the claim.
    async fn put_token(&self, account: &str, token: &Token);
    /// Ends this instance's claim without a token of its own (another instance's was found after all).
    async fn end_claim(&self, account: &str);
    async fn project(&self, account: &str) -> Option<SharedProject>;
    async fn put_project(&self, account: &str, project: &SharedProject);
}

/// A fresh token for `account`: one another instance refreshed, or, when this instance wins the claim,
/// one `refresh` gets (and publishes). A waiting instance gives up waiting after `patience` (the claimant
/// died or hangs) and refreshes itself.
pub async fn refresh_once<F, Fut, E>(
    cluster: &dyn ClusterCredentials,
    account: &str,
    lead: Duration,
    patience: Duration,
    refresh: F,
) -> Result<Token, E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Token, E>>,
{
    let usable = |t: &Token| t.expires_at > unix_now() + lead.as_secs();
    let started = tokio::time::Instant::now();
    loop {
        if let Some(token) = cluster.token(account).await.filter(usable) {
            return Ok(token);
        }
        if started.elapsed() >= patience {
            break;
        }
        if cluster.claim_refresh(account, patience * 2).await {
            // Another instance may have published and ended its claim between the look above and this claim:
            // look once more, or the cluster refreshes twice for one expiry. The claim then ends at once: left
            // to its hold, it would make every instance wait out the next expiry for a refresh nobody does.
            if let Some(token) = cluster.token(account).await.filter(usable) {
                cluster.end_claim(account).await;
                return Ok(token);
            }
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    let token = refresh().await?;
    cluster.put_token(account, &token).await;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    /// An in-memory cluster: one token slot and one claim.
    #[derive(Default)]
    struct Memory {
        token: Mutex<Option<Token>>,
        claimed: Mutex<bool>,
    }

    #[async_trait]
    impl ClusterCredentials for Memory {
        async fn token(&self, _: &str) -> Option<Token> {
            self.token.lock().unwrap().clone()
        }
        async fn claim_refresh(&self, _: &str, _: Duration) -> bool {
            !std::mem::replace(&mut *self.claimed.lock().unwrap(), true)
        }
        async fn put_token(&self, _: &str, token: &Token) {
            *self.token.lock().unwrap() = Some(token.clone());
            *self.claimed.lock().unwrap() = false;
        }
        async fn end_claim(&self, _: &str) {
            *self.claimed.lock().unwrap() = false;
        }
        async fn project(&self, _: &str) -> Option<SharedProject> {
            None
        }
        async fn put_project(&self, _: &str, _: &SharedProject) {}
    }

    /// A cluster where another instance publishes a fresh token and ends its claim just after this instance
    /// looked for one and just before it claims.
    struct PublishedMeanwhile(Memory);

    #[async_trait]
    impl ClusterCredentials for PublishedMeanwhile {
        async fn token(&self, account: &str) -> Option<Token> {
            self.0.token(account).await
        }
        async fn claim_refresh(&self, account: &str, hold: Duration) -> bool {
            if self.0.token.lock().unwrap().is_none() {
                self.0.put_token(account, &token(3600)).await;
            }
            self.0.claim_refresh(account, hold).await
        }
        async fn put_token(&self, account: &str, token: &Token) {
            self.0.put_token(account, token).await
        }
        async fn end_claim(&self, account: &str) {
            self.0.end_claim(account).await
        }
        async fn project(&self, _: &str) -> Option<SharedProject> {
            None
        }
        async fn put_project(&self, _: &str, _: &SharedProject) {}
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_published_just_before_the_claim_is_taken_instead_of_refreshing_again() {
        let cluster = PublishedMeanwhile(Memory::default());
        let got = refresh_once(&cluster, "a", Duration::from_secs(60), Duration::from_secs(5), || async {
            panic!("refreshed although another instance had just published a token");
            #[allow(unreachable_code)]
            Ok::<_, ()>(token(3600))
        })
        .await;
        assert!(got.is_ok());
        assert!(
            !*cluster.0.claimed.lock().unwrap(),
            "the claim outlived its use: the next expiry would stall"
        );
    }

    fn token(expires_in: u64) -> Token {
        Token { token: "t".into(), expires_at: unix_now() + expires_in }
    }

    #[tokio::test(start_paused = true)]
    async fn many_instances_refresh_once_and_the_others_take_the_published_token() {
        let cluster = Arc::new(Memory::default());
        let refreshes = Arc::new(AtomicU32::new(0));
        let mut waiters = Vec::new();
        for _ in 0..5 {
            let (cluster, refreshes) = (cluster.clone(), refreshes.clone());
            waiters.push(tokio::spawn(async move {
                refresh_once(&*cluster, "a", Duration::from_secs(60), Duration::from_secs(5), || async {
                    refreshes.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, ()>(token(3600))
                })
                .await
            }));
        }
        for waiter in waiters {
            assert!(waiter.await.unwrap().is_ok());
        }
        assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_token_is_refreshed_and_a_dead_claimant_is_waited_for_only_so_long() {
        let cluster = Memory::default();
        *cluster.token.lock().unwrap() = Some(token(10)); // inside the lead: not usable
        *cluster.claimed.lock().unwrap() = true; // a claimant that never publishes
        let got = refresh_once(&cluster, "a", Duration::from_secs(60), Duration::from_secs(2), || async {
            Ok::<_, ()>(token(3600))
        })
        .await
        .unwrap();
        assert!(got.expires_at > unix_now() + 3000);
        assert_eq!(cluster.token.lock().unwrap().as_ref().map(|t| t.expires_at), Some(got.expires_at));
    }
}
