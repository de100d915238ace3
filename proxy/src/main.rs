//! The `levitate` binary; everything lives in the library so tests and benches can reach it.

/// mimalloc: the request transforms' many short-lived allocations cost a fraction of glibc's. Its freed
/// pages go back to the OS only when the thread owning them collects, so the library is told how to collect
/// (see `levitate::memory`). The `system-allocator` feature leaves it out, for heap profilers that see only
/// malloc (heaptrack, valgrind's massif).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "system-allocator"))]
extern "C" {
    /// mimalloc's public API (`mimalloc.h`), linked with the `mimalloc` crate.
    fn mi_collect(force: bool);
}

/// Frees this thread's empty pages; `force` also purges free memory to the OS now rather than after a delay.
#[cfg(not(feature = "system-allocator"))]
fn collect(force: bool) {
    // SAFETY: mi_collect takes no pointers; it only walks the calling thread's own mimalloc heap.
    unsafe { mi_collect(force) }
}

fn main() -> std::process::ExitCode {
    levitate::memory::disable_transparent_huge_pages();
    #[cfg(not(feature = "system-allocator"))]
    levitate::memory::set_collector(collect);
    levitate::cli::main()
}
