//! `levitate-sim`: a stand-in for Google's Cloud Code `v1internal` API ("Antigravity"), written from
//! PROTOCOL.md alone so the Levitate gateway and its test double cannot share a mistake. It serves OAuth,
//! `loadCodeAssist`/`onboardUser`, the quota views and the content methods with Google's validations, realistic
//! streamed answers and injectable faults, and counts everything for tests (`/_sim/stats`).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let sim = levitate_sim::start(levitate_sim::SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("upstream at http://{}", sim.addr);
//! # Ok(()) }
//! ```

mod accounts;
mod answer;
mod body;
mod codeassist;
mod config;
mod error;
mod faults;
mod grounding;
mod ids;
mod image;
mod models;
mod oauth;
mod prompt;
mod public_api;
mod replay;
mod server;
mod signature;
mod stats;
mod validate;
mod wire_time;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

pub use config::{AccountConfig, ConfigError, Latency, LineEnding, QuotaConfig, SimConfig, UsageMode, TIERS};
pub use faults::{FaultKind, FaultRule};
pub use models::{DEFAULT_MODELS, SENTINELS};
pub use validate::missing_signature_message;

/// A running sim. Dropping it (or calling `shutdown`) stops the server and closes its connections.
#[derive(Debug)]
pub struct SimHandle {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    state: Arc<server::SimState>,
    shutdown: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimHandle {
    /// `http://ADDR`, the base URL to configure a client with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `/_sim/stats` document.
    pub fn stats(&self) -> serde_json::Value {
        self.state.stats.snapshot()
    }

    /// Zeroes the counters (`POST /_sim/stats/reset`).
    pub fn reset_stats(&self) {
        self.state.stats.reset();
    }

    /// Replaces the fault set (`POST /_sim/faults`); an invalid rule changes nothing.
    pub fn set_faults(&self, faults: Vec<FaultRule>) -> Result<(), String> {
        self.state.set_faults(faults)
    }

    /// Removes every fault (`DELETE /_sim/faults`).
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// Stops the server and waits for its thread, if it has one.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Binds `listen` (port 0 allowed) and serves on the current tokio runtime.
pub async fn start(config: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
    let (listener, state) = server::bind(config, listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, rx) = watch::channel(false);
    tokio::spawn(server::serve(listener, state.clone(), rx));
    Ok(SimHandle { addr, state, shutdown, thread: None })
}

/// Like `start`, for callers without a runtime: serves on its own multi-thread runtime in a dedicated thread
/// and returns once bound.
pub fn spawn_in_thread(config: SimConfig, listen: SocketAddr) -> std::io::Result<SimHandle> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("levitate-sim")
        .enable_all()
        .build()?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (shutdown, rx) = watch::channel(false);
    let thread = std::thread::Builder::new().name("levitate-sim".into()).spawn(move || {
        runtime.block_on(async move {
            match server::bind(config, listen).await {
                Ok((listener, state)) => {
                    let addr = listener.local_addr();
                    let _ = ready_tx.send(addr.map(|a| (a, state.clone())));
                    server::serve(listener, state, rx).await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
        // Dropping the runtime here ends every connection task.
    })?;
    let (addr, state) =
        ready_rx.recv().map_err(|_| std::io::Error::other("levitate-sim thread exited before binding"))??;
    Ok(SimHandle { addr, state, shutdown, thread: Some(thread) })
}
