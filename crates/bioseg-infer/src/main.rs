//! `bioseg`: see `bioseg --help`.

use clap::Parser;

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
