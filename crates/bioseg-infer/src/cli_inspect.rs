//! `bioseg inspect`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Options of `bioseg inspect`.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// The ONNX model.
    #[arg(short, long)]
    pub model: PathBuf,
    /// Print the report as JSON (the fields of `bioseg_infer::inspect::ModelReport`).
    #[arg(long)]
    pub json: bool,
}

/// `bioseg inspect`: prints what the model holds and whether tract can run it. A model tract
/// cannot run is reported, not an error; only an unreadable file is.
pub fn inspect(args: InspectArgs) -> Result<()> {
    let report = bioseg_infer::inspect::inspect(&args.model)
        .with_context(|| format!("cannot inspect {}", args.model.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(())
}
