//! The three configuration files an operator edits (`levitate.yaml`, `accounts.yaml`, `routes.yaml`, in that
//! order, separated by NUL bytes) parsed and validated into a snapshot, as a start or a reload does.
//! Every environment variable a file names is set, so validation goes past the secrets.
#![no_main]

use levitate::config::{Env, Snapshot};
use libfuzzer_sys::fuzz_target;

struct EveryVar;

impl Env for EveryVar {
    fn var(&self, name: &str) -> Option<String> {
        Some(format!("fuzz-secret-{name}"))
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut files = text.splitn(3, '\0');
    let main = files.next().unwrap_or_default();
    let accounts = files.next().unwrap_or_default();
    let routes = files.next().unwrap_or_default();
    if let Err(e) = Snapshot::from_texts(main, accounts, routes, &EveryVar) {
        // Every problem is shown to the operator; rendering it must not fail either.
        let _ = e.to_string();
    }
});
