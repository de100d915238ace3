//! What one upstream attempt asks of the pool ([`Selection`]) and why the pool may have nothing to give it
//! ([`SelectError`]), with whether waiting could change that answer.

use std::time::Duration;

use crate::store::unix_now_ms as now_ms;

/// Why no account could be leased.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectError {
    #[error("no account is configured, enabled and allowed to serve")]
    NoAccounts,
    #[error("every eligible account was already tried for this request")]
    Exhausted,
    #[error("every account is at its concurrency limit")]
    Busy,
    /// Every account that could serve is resting; the earliest may serve again at `until_ms`.
    #[error("every account is resting for this model")]
    Locked { until_ms: u64 },
}

impl SelectError {
    /// Whether waiting up to `max_wait` could turn this into a lease: a busy pool (a slot may free) or an
    /// unlock within the wait. Anything else is answered at once.
    pub fn may_wait(&self, max_wait: Duration) -> bool {
        match self {
            SelectError::Busy => !max_wait.is_zero(),
            SelectError::Locked { until_ms } => {
                until_ms.saturating_sub(now_ms()) <= max_wait.as_millis() as u64
            }
            SelectError::NoAccounts | SelectError::Exhausted => false,
        }
    }
}

/// A selection that found no slot: why, and when the earliest resting candidate may serve again (also when
/// the answer is `Busy`: the wait queue looks again then, since the end of a rest announces itself nowhere).
#[derive(Debug)]
pub(super) struct Miss {
    pub error: SelectError,
    pub resting_until: Option<u64>,
}

/// What one upstream attempt asks of the pool.
pub struct Selection<'a> {
    pub model: &'a str,
    /// Accounts this request already tried.
    pub exclude: &'a [String],
    /// The conversation's affinity key, if any.
    pub session: Option<&'a str>,
}
