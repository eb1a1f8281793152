//! `bioseg-train`: see `bioseg-train --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = bioseg_train::cli::Cli::parse();
    match bioseg_train::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", bioseg_data::cli_support::error_line(e.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}
