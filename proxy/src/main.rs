//! The `levitate` binary; everything lives in the library so tests and benches can reach it.

fn main() -> std::process::ExitCode {
    levitate::cli::main()
}
