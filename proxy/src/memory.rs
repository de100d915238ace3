//! Giving memory back to the operating system after a burst of streams (issue 13).
//!
//! The binary allocates with mimalloc, which keeps a freed page in the heap of the thread that allocated it
//! until that thread collects. Tokio moves tasks between worker threads, so a stream's memory is often freed
//! on another thread than the one that allocated it, and a worker that goes idle after a burst never
//! collects: 60 s after 5,000 streams closed, 12× the idle RSS was still resident. So the binary registers
//! its allocator's collection here ([`set_collector`]; the library itself does not depend on an allocator),
//! and every stream end schedules one: on the worker that ends it, at most every [`COLLECT_EVERY`], plus
//! delayed ones ([`COLLECT_AFTER`], counted from the last stream end) that catch what the last streams of a
//! burst free after their end.
//!
//! A delayed collection must run on every worker, not on the one its timer wakes: a thread can only collect
//! its own heap, and memory freed into an idle worker's pages stays resident until that worker collects
//! (60 s after 5,000 streams, the two gateway workers still held 16 MiB that a collection on each gave back).
//! Tokio cannot run a task on a chosen worker, so each delayed step spawns a few tiny tasks that idle workers
//! steal, each thread collecting once per step, until every worker has collected or a few rounds passed.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// At most one collection per worker thread per this interval: a collection walks the thread's heap.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// The delayed collections after a stream end: by the first the stream's session and futures are freed; the
/// last comes after the upstream pool's idle timeout, once the burst's pooled connections (their codec state
/// and buffers) have been closed and freed.
pub const COLLECT_AFTER: [Duration; 4] = [
    Duration::from_secs(2),
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(crate::upstream::POOL_IDLE_TIMEOUT.as_secs() + 5),
];

/// Tasks spawned per worker and round of a delayed step, and the rounds tried before the step gives up on
/// reaching every worker (a busy worker collects at its own stream ends anyway). Up to a second in all: on a
/// loaded 2-core box the operating system can keep an idle worker thread off the CPU for longer than 100 ms,
/// and a round only costs a few tiny tasks.
const SPREAD_PER_WORKER: usize = 4;
const SPREAD_ROUNDS: usize = 50;
const SPREAD_ROUND_WAIT: Duration = Duration::from_millis(20);

static COLLECTOR: OnceLock<fn(bool)> = OnceLock::new();

/// The delayed collections are pending (one chain for the whole process is enough to catch a burst's tail).
static DELAYED: AtomicBool = AtomicBool::new(false);

/// When the last stream ended, on the [`since_epoch_ms`] clock. The delayed steps count from it: a burst's
/// streams end over many seconds, and steps counted from the first end ran before the last streams' pooled
/// connections closed (60 s after 10,000 streams, a collection on every thread still gave back 9 MiB).
static LAST_END_MS: AtomicU64 = AtomicU64::new(0);

/// The delayed step in progress, and how many distinct threads have collected in it.
static STEP: AtomicU64 = AtomicU64::new(0);
static COLLECTED_IN_STEP: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
    static LAST_STEP: Cell<u64> = const { Cell::new(0) };
}

/// Registers how to collect the calling thread's free memory (the binary's allocator knows how): `false`
/// frees its empty pages for reuse (the allocator purges them to the OS after a delay), `true` also purges
/// now. Without one, [`after_stream`] does nothing.
pub fn set_collector(collect: fn(bool)) {
    let _ = COLLECTOR.set(collect);
}

/// Dropped when a stream ends (however it ends), on the worker thread that ran it: calls [`after_stream`].
pub struct StreamEnd;

impl Drop for StreamEnd {
    fn drop(&mut self) {
        after_stream();
    }
}

/// Called when a stream ended, on the worker thread that ran it.
pub fn after_stream() {
    let Some(collect) = COLLECTOR.get().copied() else { return };
    LAST_END_MS.fetch_max(since_epoch_ms(), Ordering::AcqRel);
    if due(Instant::now()) {
        // Not forced: under steady load the pages are reused at once, so purging them would only cost faults.
        collect(false);
    }
    if !DELAYED.swap(true, Ordering::AcqRel) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(delayed_collections(collect));
        } else {
            DELAYED.store(false, Ordering::Release);
        }
    }
}

/// The delayed steps, each [`COLLECT_AFTER`] past the last stream end (a later end moves the step). Under
/// steady load the first step keeps moving and the chain only sleeps; stream ends collect meanwhile.
async fn delayed_collections(collect: fn(bool)) {
    loop {
        let mut counted_from = 0;
        for after in COLLECT_AFTER {
            loop {
                counted_from = LAST_END_MS.load(Ordering::Acquire);
                match wait_before_step(after, counted_from, since_epoch_ms()) {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => break,
                }
            }
            collect_on_every_worker(collect).await;
        }
        DELAYED.store(false, Ordering::Release);
        // A stream that ended during the last step found the chain still running and started none.
        if LAST_END_MS.load(Ordering::Acquire) <= counted_from || DELAYED.swap(true, Ordering::AcqRel) {
            return;
        }
    }
}

/// How long to wait before the step `after` past a stream end at `last_end_ms`, or `None` when it is due.
fn wait_before_step(after: Duration, last_end_ms: u64, now_ms: u64) -> Option<Duration> {
    let due_ms = last_end_ms.saturating_add(after.as_millis() as u64);
    (now_ms < due_ms).then(|| Duration::from_millis(due_ms - now_ms))
}

/// Milliseconds since this module first looked at the clock (a monotonic clock, so ends only move forward).
fn since_epoch_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// One forced collection on each worker thread of the current runtime (see the module's comment).
async fn collect_on_every_worker(collect: fn(bool)) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let workers = runtime.metrics().num_workers();
    let step = STEP.fetch_add(1, Ordering::AcqRel) + 1;
    COLLECTED_IN_STEP.store(0, Ordering::Release);
    collect_once_in_step(step, collect);
    for _ in 0..SPREAD_ROUNDS {
        if COLLECTED_IN_STEP.load(Ordering::Acquire) >= workers {
            return;
        }
        for _ in 0..workers * SPREAD_PER_WORKER {
            runtime.spawn(async move { collect_once_in_step(step, collect) });
        }
        tokio::time::sleep(SPREAD_ROUND_WAIT).await;
    }
}

/// Collects on this thread unless it already did in `step`; counts the threads that did.
fn collect_once_in_step(step: u64, collect: fn(bool)) {
    let first = LAST_STEP.with(|last| last.replace(step) != step);
    if first && STEP.load(Ordering::Acquire) == step {
        collect(true);
        COLLECTED_IN_STEP.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether this thread's last collection is at least [`COLLECT_EVERY`] old (and records `now` if so).
fn due(now: Instant) -> bool {
    LAST_COLLECT.with(|last| {
        let due = last.get().is_none_or(|at| now.duration_since(at) >= COLLECT_EVERY);
        if due {
            last.set(Some(now));
        }
        due
    })
}

/// Turns transparent huge pages off for this process. mimalloc advises huge pages on its arenas; with THP
/// in `madvise` mode (the usual default) every 4 KiB page touched then made a 2 MiB page resident: the idle
/// gateway held 68 MiB instead of 23, and an open stream cost 180 KiB instead of 109.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag on this process's memory descriptor; no pointers involved.
    let result = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "could not turn transparent huge pages off");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_collects_at_most_once_per_interval() {
        std::thread::spawn(|| {
            let start = Instant::now();
            assert!(due(start), "the first stream end on a thread collects");
            assert!(!due(start + COLLECT_EVERY / 2), "not again within the interval");
            assert!(due(start + COLLECT_EVERY), "again once the interval passed");
            assert!(!due(start + COLLECT_EVERY + Duration::from_millis(1)));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn delayed_steps_count_from_the_last_stream_end() {
        let step = Duration::from_secs(10);
        assert_eq!(wait_before_step(step, 1_000, 1_000), Some(step));
        assert_eq!(wait_before_step(step, 1_000, 6_000), Some(Duration::from_secs(5)));
        assert_eq!(wait_before_step(step, 1_000, 11_000), None, "due once the step has passed");
        assert_eq!(
            wait_before_step(step, 9_000, 11_000),
            Some(Duration::from_secs(8)),
            "a later stream end moves the step"
        );
    }

    static COLLECTED_ON: std::sync::Mutex<Vec<std::thread::ThreadId>> = std::sync::Mutex::new(Vec::new());

    fn record_thread(_force: bool) {
        COLLECTED_ON.lock().unwrap().push(std::thread::current().id());
    }

    #[test]
    fn a_delayed_step_collects_once_on_every_worker() {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        for _ in 0..3 {
            COLLECTED_ON.lock().unwrap().clear();
            runtime.block_on(async { tokio::spawn(collect_on_every_worker(record_thread)).await.unwrap() });
            let mut threads = COLLECTED_ON.lock().unwrap().clone();
            let collections = threads.len();
            threads.sort_by_key(|id| format!("{id:?}"));
            threads.dedup();
            assert_eq!(threads.len(), 2, "both workers collected");
            assert_eq!(collections, 2, "each of them once");
        }
    }
}
