//! `bioseg-train`: see `bioseg-train --help`.

use clap::Parser;

mod cli;
mod cli_unet;

/// A training step allocates and frees hundreds of large tensors: mimalloc reuses their pages
/// where glibc's malloc returns them to the kernel and faults them in again (BENCHMARKS.md,
/// "CPU training").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Freed pages go back to the kernel after 10 ms by default, less than a training step
    // takes, and every step reaches the same peak again: never return them (U-Net F=16 step
    // 0.55 → 0.38 s with a one-second delay; never: 0.336 → 0.323 s and 26,800 → 800 page
    // faults in 13 steps, the one-second delay still purged between the step's phases).
    bioseg_data::cli_support::keep_freed_pages(-1);
    let cli = cli::Cli::parse();
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bioseg_data::cli_support::error_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
