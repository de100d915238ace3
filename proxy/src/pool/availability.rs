//! The pool's answers about what can be served beyond one account's state: which models the enabled
//! accounts list (model availability, `models`), Google's refusals of the gateway's client version, and the
//! fallback key's own slots (`fallback:`), kept apart from every account's.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::AccountSpec;
use crate::pool::models::{self, GateRecord, VersionGate};
use crate::pool::{now_ms, AccountPool, Lease, FALLBACK_ID};

impl AccountPool {
    /// Records the models an account's `fetchAvailableModels` listed: selection passes it by for any other.
    pub fn record_models(&self, account: &str, models: BTreeSet<String>) {
        if self.state.models.set(account, models) {
            // An account may now serve a model it was passed by for (or stop serving one).
            self.state.index.load().forget_rests();
            self.state.changed.notify_waiters();
        }
    }

    /// What the enabled accounts serve together, or `None` while any of them may serve anything (not polled
    /// yet). With no enabled account nothing is known either.
    pub fn served_models(&self) -> Option<BTreeSet<String>> {
        let selector = self.selector.load();
        let mut enabled = selector.entries.iter().filter(|e| e.live.enabled(&e.account)).peekable();
        enabled.peek()?;
        models::union(&self.state.models, enabled.map(|e| e.account.id.as_str()))
    }

    /// Whether any enabled account may serve `model` (it listed it, or is not known yet). With no enabled
    /// account at all the answer is yes: that is the "no account" error's to tell, not a missing model's.
    pub fn can_serve(&self, model: &str) -> bool {
        let selector = self.selector.load();
        let mut enabled = selector.entries.iter().filter(|e| e.live.enabled(&e.account)).peekable();
        enabled.peek().is_none() || enabled.any(|e| self.state.models.serves(&e.account.id, model))
    }

    /// Google refused the gateway's client version (for every model, or for `model`): a condition of the
    /// configuration, held against no account. Returns true when the gate is new.
    pub fn note_version_gate(&self, gate: VersionGate, model: &str, user_agent: &str) -> bool {
        self.state.version_gates.note(gate, model, user_agent, now_ms())
    }

    /// An answer for `model` came through: the gates it disproves are lifted.
    pub fn lift_version_gate(&self, model: &str) {
        self.state.version_gates.lift(model);
    }

    /// The version gates in force (admin API).
    pub fn version_gates(&self) -> Vec<GateRecord> {
        self.state.version_gates.snapshot()
    }

    /// A slot on the fallback key (`fallback:`), which counts against its own cap and no account's; `None`
    /// when all `cap` are taken. The lease names the pseudo-account [`FALLBACK_ID`].
    pub fn fallback_lease(&self, cap: u32) -> Option<Lease> {
        let live = self.state.fallback_live.clone();
        if !live.try_reserve(cap) {
            return None;
        }
        live.served.fetch_add(1, Ordering::Relaxed);
        let account = Arc::new(AccountSpec {
            id: FALLBACK_ID.to_string(),
            email: FALLBACK_ID.to_string(),
            refresh_token: crate::config::Secret::new(""),
            project_id: None,
            tier: None,
            enabled: true,
            max_concurrent: cap,
            egress: None,
            pacing: Default::default(),
        });
        Some(Lease { account, live, state: self.state.clone(), filed: None })
    }
}
