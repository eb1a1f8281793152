//! `bioseg inspect`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

/// Options of `bioseg inspect`.
#[derive(Args, Debug, Clone)]
pub struct InspectArgs {
    /// The ONNX model, or a BioImage Model Zoo package (.zip, its rdf.yaml or its folder).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Print the report as JSON (the fields of `bioseg_infer::inspect::ModelReport`).
    #[arg(long)]
    pub json: bool,
    /// Packages: run the package's test input as it describes (preprocessing, one run of the
    /// whole tensor, postprocessing) and compare with its expected output; fails when they
    /// differ by more than --tolerance.
    #[arg(long)]
    pub test: bool,
    /// --test: the largest absolute difference accepted.
    #[arg(long, default_value_t = 1e-4)]
    pub tolerance: f32,
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
    if args.test {
        let model = bioseg_infer::OnnxModel::load(&args.model)?;
        let t = bioseg_infer::bioimageio::run_test_tensors(&model)
            .with_context(|| format!("cannot run the test tensors of {}", args.model.display()))?;
        println!(
            "test tensors: input {:?} -> output {:?}, max |bioseg - expected| = {:.2e} (expected values up to {:.3})",
            t.input_shape, t.output_shape, t.max_abs_diff, t.expected_max_abs
        );
        anyhow::ensure!(
            t.max_abs_diff <= args.tolerance,
            "{}: the test output differs from the expected one by {:.2e}, more than --tolerance {:.0e}",
            args.model.display(),
            t.max_abs_diff,
            args.tolerance
        );
    }
    Ok(())
}
