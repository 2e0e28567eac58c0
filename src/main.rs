//! The `energyload` binary: parses the command line and hands over to `cli`.

/// mimalloc instead of the C library's allocator: request buffers are
/// allocated on the async workers and freed on the ingest writer thread, a
/// pattern that glibc's arenas handle poorly (measured: ~12 % of a worker's
/// time in malloc/free under ingest load).
///
/// Built with `no_thp` (see [`disable_transparent_huge_pages`]): mimalloc
/// does not `madvise` its arenas for transparent huge pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    disable_transparent_huge_pages();
    energyload::cli::run()
}

/// Transparent huge pages off for the whole process (`PR_SET_THP_DISABLE`;
/// covers memory mapped before `main` too, and SQLite's glibc heap on
/// machines whose THP setting is `always`). A touched 2 MiB huge page
/// counts whole in RSS, and mimalloc's arenas are mostly sparse.
///
/// Measured (`no_thp` and this together, on a kernel with THP `madvise`;
/// 60,000 messages, eSight simulator at 100 ms, 1,024 posts outstanding):
/// RSS after ingest 126–130 → 105 MiB; peak 190–203 → 156–171 MiB; at
/// 0 ms peak 162 → 129–139 MiB; the same delivery rate (~6,800/s over the run at
/// 100 ms, ~15,500/s at 0 ms). This call alone leaves ~3 MiB more at idle
/// (huge pages touched before `main`). A kernel without the call (before
/// 3.15) keeps its default.
fn disable_transparent_huge_pages() {
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}
