//! The `energyload` binary: parses the command line and hands over to `cli`.

/// mimalloc instead of the C library's allocator: request buffers are
/// allocated on the async workers and freed on the ingest writer thread, a
/// pattern that glibc's arenas handle poorly (measured: ~12 % of a worker's
/// time in malloc/free under ingest load).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    energyload::cli::run()
}
