//! The `levitate` binary; everything lives in the library so tests and benches can reach it.

/// mimalloc: the request transforms' many short-lived allocations cost a fraction of glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    levitate::cli::main()
}
