//! `bioseg`: see `bioseg --help`.

use clap::Parser;

/// Large tensors come and go for every tile: mimalloc reuses their pages where glibc's malloc
/// returns them to the kernel and faults them in again (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h` of libmimalloc-sys 0.1.49, v2 and v3 alike;
/// the bindings do not name it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Freed pages go back to the kernel after 10 ms by default, less than one tile takes: keep
    // them for a second instead (F=16 window −8 %, same peak memory). `MIMALLOC_PURGE_DELAY`
    // still overrides it.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a process-wide allocator option; no other thread exists yet.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    }
    let cli = bioseg_infer::cli::Cli::parse();
    match bioseg_infer::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bioseg_infer::model::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
