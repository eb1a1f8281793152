//! `bioseg`: see `bioseg --help`.

use clap::Parser;

/// Large tensors come and go for every tile: mimalloc reuses their pages where glibc's malloc
/// returns them to the kernel and faults them in again (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = bioseg_infer::cli::Cli::parse();
    match bioseg_infer::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bioseg_infer::model::error_chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
