//! The `bioseg` command line (a thin layer over the library).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use bioseg_infer::model::OnnxModel;
use bioseg_infer::tensor_run::{label_classes, predicted_classes, run_tensor};

/// Run segmentation ONNX models (bioseg's, Keras', PyTorch's) on CPUs with tract.
#[derive(Parser, Debug)]
#[command(name = "bioseg", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for more detail); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Hide progress bars.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run any ONNX model on a tensor file (.npy or .csv rows); with --labels, print predicted
    /// vs true rows and the accuracy.
    Run(RunArgs),
    /// Segment an image tile by tile with halos and seam-free blending.
    Predict(crate::cli_predict::PredictArgs),
    /// Describe an ONNX model: inputs and outputs (layout, symbolic axes), op histogram,
    /// parameters, metadata, recommended tile and halo, and whether tract supports every op.
    Inspect(crate::cli_inspect::InspectArgs),
    /// Score predictions against ground truth (Dice, IoU, pixel error, ISBI V_rand/V_info,
    /// adapted Rand error, VI) per image and on average.
    Evaluate(crate::cli_evaluate::EvaluateArgs),
    /// Draw image | ground truth | prediction | overlay (and an error map) into one PNG.
    Visualize(crate::cli_visualize::VisualizeArgs),
}

/// Options of `bioseg run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The ONNX model (or a BioImage Model Zoo package: its ONNX weights, run as they are).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Input tensor: .npy (float32/float64) or .csv (one sample per row).
    #[arg(short, long)]
    pub input: PathBuf,
    /// True labels (.npy or .csv): one value per row, or one-hot rows.
    #[arg(short, long)]
    pub labels: Option<PathBuf>,
    /// Write the model's output here (.npy or .csv); never overwrites without --overwrite.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file.
    #[arg(long)]
    pub overwrite: bool,
    /// Time the model: run it this many more times after the first (plan built once, one
    /// thread) and print the mean and best milliseconds per run (tools/bench compares them with
    /// ONNX Runtime op by op).
    #[arg(long, default_value_t = 0)]
    pub repeat: usize,
    /// With --repeat: also print where the time goes, per kind of operation (milliseconds per
    /// run and share of the total, slowest first).
    #[arg(long, requires = "repeat")]
    pub profile: bool,
}

/// Runs the command line; the binary's `main` only reports the error.
pub fn run(cli: Cli) -> Result<()> {
    init_logging(cli.verbose);
    match cli.command {
        Command::Run(args) => run_cmd(args),
        Command::Predict(args) => crate::cli_predict::predict(args, cli.quiet),
        Command::Inspect(args) => crate::cli_inspect::inspect(args),
        Command::Evaluate(args) => crate::cli_evaluate::evaluate(args),
        Command::Visualize(args) => crate::cli_visualize::visualize(args, cli.quiet),
    }
}

/// Sets up `tracing` to stderr at a level from `-v` (RUST_LOG overrides).
pub fn init_logging(verbose: u8) {
    bioseg_data::cli_support::init_logging(verbose, "warn");
}

fn run_cmd(args: RunArgs) -> Result<()> {
    if let Some(out) = &args.output {
        bioseg_data::ensure_absent_or_overwrite(out, args.overwrite)?;
    }
    let model = OnnxModel::load(&args.model)?;
    let input =
        bioseg_data::read_tensor(&args.input).with_context(|| format!("cannot read input {}", args.input.display()))?;
    let result = run_tensor(&model, &input)
        .with_context(|| format!("running {} on {}", args.model.display(), args.input.display()))?;
    if args.repeat > 0 {
        // Time the model call alone (the input as the tensor it was given, batch axis added).
        let batched = if input.ndim() + 1 == model.input_dims().len() {
            input.clone().insert_axis(ndarray::Axis(0))
        } else {
            input.clone()
        };
        let (shape, data) = (batched.shape().to_vec(), batched.iter().copied().collect::<Vec<f32>>());
        let mut times = Vec::with_capacity(args.repeat);
        for _ in 0..args.repeat {
            let t0 = std::time::Instant::now();
            model.run(&shape, &data)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        let best = times.iter().copied().fold(f64::INFINITY, f64::min);
        println!("timing: {} runs, mean {mean:.3} ms, best {best:.3} ms per run", times.len());
        if args.profile {
            let ops = model.profile(&shape, &data, args.repeat)?;
            let total: f64 = ops.iter().map(|o| o.ms).sum();
            println!("| operation | nodes | ms per run | share |\n|---|---|---|---|");
            for o in &ops {
                println!("| {} | {} | {:.3} | {:.1} % |", o.op, o.nodes, o.ms, 100.0 * o.ms / total.max(1e-12));
            }
        }
    }
    let predicted = predicted_classes(&result.output);
    let rows = result.output.shape()[0];
    let per_row = result.output.len() / rows.max(1);
    let values: Vec<f32> = result.output.iter().copied().collect();

    let truth = match &args.labels {
        Some(p) => {
            let labels = bioseg_data::read_tensor(p).with_context(|| format!("cannot read labels {}", p.display()))?;
            let t = label_classes(&labels);
            if t.len() != rows {
                bail!("labels {} hold {} rows but the input has {rows}", p.display(), t.len());
            }
            Some(t)
        }
        None => None,
    };
    if per_row <= 8 {
        for (i, row) in values.chunks(per_row.max(1)).enumerate() {
            let shown: Vec<String> = row.iter().map(|v| format!("{v:.4}")).collect();
            match &truth {
                Some(t) => println!(
                    "row {i:>4}: output [{}] predicted {} true {}{}",
                    shown.join(", "),
                    predicted[i],
                    t[i],
                    if predicted[i] == t[i] { "" } else { "  <- wrong" }
                ),
                None => println!("row {i:>4}: output [{}] predicted {}", shown.join(", "), predicted[i]),
            }
        }
    } else {
        println!("output shape {:?}", result.output.shape());
    }
    if let Some(t) = &truth {
        let correct = predicted.iter().zip(t).filter(|(p, t)| p == t).count();
        println!("accuracy: {:.4} ({correct}/{rows})", correct as f64 / rows as f64);
    }
    if let Some(out) = &args.output {
        bioseg_data::write_tensor(out, &result.output).with_context(|| format!("cannot write {}", out.display()))?;
        println!("output written to {}", out.display());
    }
    Ok(())
}
