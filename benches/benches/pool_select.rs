//! One account selection over a pool of 1,000 accounts (issue target: ≤ 1 µs): `AccountPool::select` leases
//! the best eligible account for a model and the lease is dropped at once, as a request that finished would.
//!
//! Accounts cycle through the six tiers plus "unknown", cap 3 each. `idle`: nothing in flight. `busy`: every
//! account of the two best tiers is at its cap, so the selection must pass over them. `session`: a
//! conversation bound to an account of the best tier (the sticky lookup on top of idle). `best_tiers_locked`:
//! every account of the two best tiers is locked for the model (a lockout is per model, so it is checked
//! lazily, per candidate: the case the index does not make O(1)).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use levitate::config::{AccountSpec, Secret};
use std::time::Duration;

use levitate::pool::{AccountPool, Selection};

const TIERS: [Option<&str>; 7] = [
    Some("ws-ai-ultra-business-tier"),
    Some("g1-ultra-tier"),
    Some("g1-pro-tier"),
    Some("standard-tier"),
    Some("legacy-tier"),
    Some("free-tier"),
    None,
];

fn accounts(n: usize) -> Vec<AccountSpec> {
    (0..n)
        .map(|i| AccountSpec {
            id: format!("user{i}@example.com"),
            email: format!("user{i}@example.com"),
            refresh_token: Secret::new("1//bench"),
            project_id: None,
            tier: TIERS[i % TIERS.len()].map(str::to_owned),
            enabled: true,
            max_concurrent: 3,
            egress: None,
            pacing: Default::default(),
        })
        .collect()
}

fn benches(c: &mut Criterion) {
    let pool = AccountPool::new(&accounts(1000));
    let selection = Selection { model: "gemini-3-flash", exclude: &[], session: None };
    let mut group = c.benchmark_group("pool_select");
    group.bench_function("1000_accounts/idle", |b| {
        b.iter(|| black_box(pool.select(black_box(&selection)).expect("an account is free")))
    });
    // Fill the two best tiers to their caps: 2 × 143 accounts × 3 slots.
    let mut held = Vec::new();
    while let Ok(lease) = pool.select(&selection) {
        if !matches!(lease.account.tier.as_deref(), Some("ws-ai-ultra-business-tier" | "g1-ultra-tier")) {
            break;
        }
        held.push(lease);
    }
    assert_eq!(held.len(), 2 * 143 * 3, "the best two tiers are full");
    group.bench_function("1000_accounts/best_tiers_full", |b| {
        b.iter(|| black_box(pool.select(black_box(&selection)).expect("an account is free")))
    });
    drop(held);

    let lease = pool.select(&selection).expect("an account is free");
    pool.on_success(&lease, Some("conversation"));
    drop(lease);
    let sticky = Selection { model: "gemini-3-flash", exclude: &[], session: Some("conversation") };
    group.bench_function("1000_accounts/session", |b| {
        b.iter(|| black_box(pool.select(black_box(&sticky)).expect("an account is free")))
    });

    let locked = AccountPool::new(&accounts(1000));
    for account in locked.accounts() {
        if matches!(account.tier.as_deref(), Some("ws-ai-ultra-business-tier" | "g1-ultra-tier")) {
            locked.lock(&account, "gemini-3-flash", Duration::from_secs(3600), "QUOTA_EXHAUSTED");
        }
    }
    group.bench_function("1000_accounts/best_tiers_locked", |b| {
        b.iter(|| black_box(locked.select(black_box(&selection)).expect("an account is free")))
    });
    group.finish();
}

criterion_group!(pool_select, benches);
criterion_main!(pool_select);
