//! Giving memory back to the operating system after a burst of streams (issue 13).
//!
//! The binary allocates with mimalloc, which keeps a freed page in the heap of the thread that allocated it
//! until that thread collects. Tokio moves tasks between worker threads, so a stream's memory is often freed
//! on another thread than the one that allocated it, and a worker that goes idle after a burst never
//! collects: 60 s after 5,000 streams closed, 12× the idle RSS was still resident. So the binary registers
//! its allocator's collection here ([`set_collector`]; the library itself does not depend on an allocator),
//! and every stream end schedules one: on the worker that ends it, at most every [`COLLECT_EVERY`], plus
//! delayed ones ([`COLLECT_AFTER`]) that catch what the last streams of a burst free after their end.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// At most one collection per worker thread per this interval: a collection walks the thread's heap.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

/// The delayed collections after a stream end: by the first the stream's session and futures are freed; the
/// later ones run on whichever worker the timer wakes, so each worker's heap is likely collected once.
pub const COLLECT_AFTER: [Duration; 3] =
    [Duration::from_secs(2), Duration::from_secs(10), Duration::from_secs(30)];

static COLLECTOR: OnceLock<fn(bool)> = OnceLock::new();

/// The delayed collections are pending (one chain for the whole process is enough to catch a burst's tail).
static DELAYED: AtomicBool = AtomicBool::new(false);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
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
    if due(Instant::now()) {
        // Not forced: under steady load the pages are reused at once, so purging them would only cost faults.
        collect(false);
    }
    if !DELAYED.swap(true, Ordering::AcqRel) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut slept = Duration::ZERO;
                for after in COLLECT_AFTER {
                    tokio::time::sleep(after - slept).await;
                    slept = after;
                    collect(true);
                }
                DELAYED.store(false, Ordering::Release);
            });
        } else {
            DELAYED.store(false, Ordering::Release);
        }
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
}
