//! `bioseg`: see `bioseg --help`.

use clap::Parser;

mod cli;
mod cli_evaluate;
mod cli_inspect;
mod cli_predict;
mod cli_visualize;

/// Large tensors come and go for every tile: mimalloc reuses their pages where glibc's malloc
/// returns them to the kernel and faults them in again (BENCHMARKS.md). glibc's own tuning
/// (`malloc_trim` after each volume block, `mallopt(M_MMAP_THRESHOLD)` under a memory budget,
/// written before mimalloc) reached none of these buffers and was removed: 30 slices of 512²
/// under `--memory-budget 32M`, peak 205–227 MiB with it and 202–237 MiB without, 7 runs each.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Freed pages go back to the kernel after 10 ms by default, less than one tile takes: keep
    // them for a second instead (F=16 window −8 %, same peak memory).
    bioseg_data::cli_support::keep_freed_pages(1000);
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bioseg_infer::model::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
