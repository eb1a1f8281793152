//! The `bioseg-train` command line (a thin layer over the library).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

pub use crate::cli_unet::{DemoArgs, ExportArgs, SynthArgs, UnetArgs};
use bioseg_train::device::DeviceSpec;
use bioseg_train::train::perceptron::{PerceptronTraining, accuracy, perceptron_samples, train_perceptron};

/// Train bioseg's networks with Burn (CPU, or CUDA with the `cuda` feature) and export ONNX.
#[derive(Parser, Debug)]
#[command(name = "bioseg-train", version, about, long_about = None)]
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
// The command line is parsed once: the size of its largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Train the course's perceptron (Dense(10→1) + sigmoid, MSE, SGD) and export ONNX.
    Perceptron(PerceptronArgs),
    /// Train a U-Net on images and masks in the seed's layout (DATA/<class>/train/{image,label}).
    Unet(UnetArgs),
    /// Export a checkpoint (a folder of checkpoints: its newest) to ONNX, and a checkpoint, a
    /// run or an ONNX model as a BioImage Model Zoo package (--bioimageio).
    Export(ExportArgs),
    /// Write a synthetic EM-like dataset (cells, membranes, mitochondria) in the seed's layout.
    Synth(SynthArgs),
    /// The built-in demo: synth data, train a small U-Net on CPU, export ONNX, predict a larger
    /// synthetic image with `bioseg`, print metrics and write an overlay.
    Demo(DemoArgs),
    /// Checks and benchmarks for a GPU machine: CPU-vs-GPU equality, tiny CUDA training and
    /// export, data parallel over the GPUs present, training throughput (tools/gpu/check.sh).
    GpuCheck(bioseg_train::gpu_check::GpuCheckArgs),
    /// Time training steps on this machine (CPU or one GPU) for a U-Net of a given size.
    Bench(BenchArgs),
}

/// Options of `bioseg-train bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Start filters.
    #[arg(short = 'F', long, default_value_t = 16)]
    pub filters: usize,
    /// Crop size (square).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Batch size.
    #[arg(short, long, default_value_t = 2)]
    pub batch: usize,
    /// Timed steps (after 3 warm-up steps).
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Also measure the CPU's matrix-product rate (2 s, all threads) and print the share of it
    /// the training step reaches.
    #[arg(long)]
    pub peak: bool,
    /// Also print the time per step of each CPU kernel (convolutions by kernel size and pass,
    /// pooling, up-sampling) and of everything else.
    #[arg(long)]
    pub profile: bool,
}

/// Options of `bioseg-train perceptron`.
#[derive(Args, Debug)]
pub struct PerceptronArgs {
    /// Number of training samples.
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    /// Features per sample.
    #[arg(long, default_value_t = 10)]
    pub features: usize,
    /// Seed of the data, the initial weights and the shuffling.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Epochs.
    #[arg(short, long, default_value_t = 100)]
    pub epochs: usize,
    /// Mini-batch size.
    #[arg(short, long, default_value_t = 32)]
    pub batch_size: usize,
    /// SGD learning rate.
    #[arg(short = 'l', long = "lr", default_value_t = 0.5)]
    pub learning_rate: f64,
    /// Output folder: checkpoints/, history.json, the ONNX file and the test set.
    #[arg(short, long, default_value = "runs/perceptron")]
    pub out: PathBuf,
    /// ONNX file to export at the end [default: OUT/perceptron.onnx].
    #[arg(long)]
    pub onnx: Option<PathBuf>,
    /// Continue from the newest checkpoint in OUT/checkpoints (same weights at the end as an
    /// uninterrupted run).
    #[arg(long)]
    pub resume: bool,
    /// Size of the fresh test set written to OUT/test_input.npy and OUT/test_labels.npy.
    #[arg(long, default_value_t = 10)]
    pub test_samples: usize,
    /// Seed of the fresh test set.
    #[arg(long, default_value_t = 7)]
    pub test_seed: u64,
    /// Size of the fresh evaluation set whose accuracy is printed at the end.
    #[arg(long, default_value_t = 1000)]
    pub eval_samples: usize,
    /// Device: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceSpec,
    /// Sleep this many milliseconds after each epoch (for kill-and-resume tests).
    #[arg(long, default_value_t = 0, hide = true)]
    pub pause_per_epoch_ms: u64,
}

/// The per-operation table of `bioseg-train bench --profile`.
fn print_profile(step: f64, steps: usize) {
    let rows = burn_flex::bioseg::profile();
    println!("{:<40} {:>9} {:>10} {:>9}", "operation (per step)", "calls", "ms", "GFLOP/s");
    let mut kernels = 0.0;
    for (name, calls, secs, macs) in &rows {
        let rate = if *macs > 0 { format!("{:.0}", 2.0 * *macs as f64 / secs / 1e9) } else { "-".into() };
        println!("{name:<40} {:>9.1} {:>10.1} {rate:>9}", *calls as f64 / steps as f64, 1000.0 * secs / steps as f64);
        kernels += secs / steps as f64;
    }
    println!(
        "{:<40} {:>9} {:>10.1} {:>9}",
        "everything else (element-wise, autodiff)",
        "",
        1000.0 * (step - kernels),
        "-"
    );
}

/// Runs the command line; the binary's `main` only reports the error.
pub fn run(cli: Cli) -> Result<()> {
    init_logging(cli.verbose);
    match cli.command {
        Command::Perceptron(args) => perceptron(args, cli.quiet),
        Command::Unet(args) => crate::cli_unet::unet(args, cli.quiet),
        Command::Export(args) => crate::cli_unet::export(args),
        Command::Synth(args) => crate::cli_unet::synth(args),
        Command::Demo(args) => crate::cli_unet::demo(args, cli.quiet),
        Command::GpuCheck(args) => bioseg_train::gpu_check::gpu_check(args),
        Command::Bench(args) => bioseg_train::with_backend!(&args.device, |B, device| {
            let ips = bioseg_train::gpu_check::bench::<B>(
                args.filters,
                args.size,
                args.batch,
                args.steps,
                &[device],
                args.profile,
            )?;
            let step = args.batch as f64 / ips;
            let gflop = bioseg_train::gpu_check::training_flops(args.filters, args.size, args.batch) as f64 / 1e9;
            println!(
                "U-Net F={} {}x{} batch {} on {}: {:.3} s/step, {:.2} images/s, {:.1} GFLOP/step, {:.0} GFLOP/s",
                args.filters,
                args.size,
                args.size,
                args.batch,
                args.device,
                step,
                ips,
                gflop,
                gflop / step
            );
            if args.peak {
                let peak = bioseg_kernels::matrix_product_rate(2.0);
                println!(
                    "matrix-product peak on {} threads: {peak:.0} GFLOP/s ({:.0} % reached)",
                    rayon::current_num_threads(),
                    100.0 * gflop / step / peak
                );
            }
            if args.profile {
                print_profile(step, args.steps);
            }
            println!("seconds_per_step={step:.4}");
            Ok(())
        }),
    }
}

/// Sets up `tracing` to stderr at a level from `-v` (RUST_LOG overrides).
pub fn init_logging(verbose: u8) {
    bioseg_data::cli_support::init_logging(verbose, "warn,bioseg_train=info");
}

fn perceptron(args: PerceptronArgs, quiet: bool) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    let cfg = PerceptronTraining {
        samples: args.samples,
        features: args.features,
        seed: args.seed,
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.learning_rate,
        checkpoint_dir: Some(args.out.join("checkpoints")),
        resume: args.resume,
        quiet,
        pause_per_epoch: Duration::from_millis(args.pause_per_epoch_ms),
    };
    let onnx_path = args.onnx.clone().unwrap_or_else(|| args.out.join("perceptron.onnx"));
    bioseg_train::with_backend!(&args.device, |B, device| {
        let (model, history) = train_perceptron::<B>(&cfg, &device)?;
        let history_path = args.out.join("history.json");
        bioseg_data::write_bytes_atomic(
            &history_path,
            &serde_json::to_vec_pretty(&history).expect("history serialises"),
        )
        .with_context(|| format!("cannot write {}", history_path.display()))?;

        let (ex, ey) = perceptron_samples(args.eval_samples, args.features, args.seed.wrapping_add(1_000_003));
        let acc = accuracy(&model, &ex, &ey, &device);

        let mut md = bioseg_train::export::base_metadata();
        md.training = Some(
            serde_json::json!({
                "samples": args.samples, "epochs": args.epochs, "batch_size": args.batch_size,
                "learning_rate": args.learning_rate, "seed": args.seed, "loss": "mse",
                "optimizer": "sgd", "final_loss": history.last().map(|h| h.loss),
                "fresh_accuracy": acc,
            })
            .to_string(),
        );
        bioseg_train::export::write_onnx(&model.to_onnx(&md), &onnx_path)
            .with_context(|| format!("cannot export {}", onnx_path.display()))?;

        let (tx, ty) = perceptron_samples(args.test_samples, args.features, args.test_seed);
        let tx = ndarray::Array2::from_shape_vec((args.test_samples, args.features), tx)?.into_dyn();
        let ty = ndarray::Array2::from_shape_vec((args.test_samples, 1), ty)?.into_dyn();
        for (name, arr) in [("test_input.npy", &tx), ("test_labels.npy", &ty)] {
            let p = args.out.join(name);
            bioseg_data::write_tensor(&p, arr).with_context(|| format!("cannot write {}", p.display()))?;
        }
        if let Some(last) = history.last() {
            println!("final epoch {}: loss {:.5}, training accuracy {:.4}", last.epoch, last.loss, last.accuracy);
        }
        println!("accuracy on {} fresh samples: {:.4}", args.eval_samples, acc);
        println!("ONNX written to {}", onnx_path.display());
        println!(
            "test set written to {} and {}",
            args.out.join("test_input.npy").display(),
            args.out.join("test_labels.npy").display()
        );
        Ok(())
    })
}
