//! The configuration in force, as every part of the process reads it.
//!
//! One [`Snapshot`] behind `ArcSwap`: a request loads it once and keeps that version for its whole life,
//! while a reload builds a complete new one and swaps it in with a single store. Background services hold an
//! `Arc<LiveConfig>` (a settings receiver) instead of the whole application, so they depend on nothing but
//! the settings they read.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Snapshot;

pub struct LiveConfig {
    current: ArcSwap<Snapshot>,
}

impl LiveConfig {
    pub fn new(snapshot: Arc<Snapshot>) -> Self {
        LiveConfig { current: ArcSwap::new(snapshot) }
    }

    /// The configuration in force now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Makes `next` the configuration in force; holders of the previous one keep it until they drop it.
    pub fn store(&self, next: Arc<Snapshot>) {
        self.current.store(next);
    }
}
