//! `bioseg evaluate`: its options and output; the scoring is [`bioseg_infer::evaluate`].

use std::path::PathBuf;

use anyhow::Result;
use bioseg_infer::evaluate::{Evaluation, Settings};
use clap::{Args, ValueEnum};

/// Table formats of `bioseg evaluate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    /// Comma-separated values with a header row; the last row is the mean.
    Csv,
    /// A JSON object `{settings, images: [...], mean: {...}, challenge: {...}}`; `challenge`
    /// (binary sets) is the ISBI 2012 challenge's pixel error of the whole set: 1 − the best
    /// F-score of the foreground over the thresholds 0.0, 0.1, …, 1.0.
    Json,
}

/// Options of `bioseg evaluate`.
#[derive(Args, Debug, Clone)]
pub struct EvaluateArgs {
    /// Predictions: an image (PNG/TIFF), a folder of images, or a multi-page TIFF stack.
    /// Binary: probabilities or masks; multi-class: class-index maps.
    #[arg(short, long)]
    pub pred: PathBuf,
    /// Ground truth: an image, a folder of images (paired with a prediction folder by file
    /// stem), or a multi-page TIFF stack.
    #[arg(short, long)]
    pub label: PathBuf,
    /// Binary: foreground where the prediction is above this fraction of its maximum value
    /// (255 for 8-bit, 65535 for 16-bit, 1 for float images).
    #[arg(short, long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Table format.
    #[arg(long, value_enum, default_value_t = TableFormat::Csv)]
    pub format: TableFormat,
    /// Number of classes: 2 = binary (thresholded probabilities or masks), more = class-index maps.
    #[arg(long, default_value_t = 2)]
    pub classes: usize,
    /// The class that separates cells (membrane) for V_rand, V_info, adapted Rand error and VI;
    /// ISBI 2012 labels: 0 (membrane = 0, cell interior = 255).
    #[arg(long, default_value_t = 0)]
    pub boundary_class: u8,
    /// Binary probabilities: also segment them at the ISBI 2012 challenge's thresholds (0.0,
    /// 0.1, …, 1.0) and report the set's best mean V_rand and V_info and their thresholds (the
    /// challenge's protocol; 11 more segmentations per image) in the JSON table's `challenge`
    /// and the summary line.
    #[arg(long)]
    pub best_threshold: bool,
    /// Write the table to this file (atomically) instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing --output file.
    #[arg(long)]
    pub overwrite: bool,
}

/// `bioseg evaluate`.
pub fn evaluate(args: EvaluateArgs) -> Result<()> {
    let settings = Settings {
        pred: &args.pred,
        label: &args.label,
        classes: args.classes,
        threshold: args.threshold,
        boundary_class: args.boundary_class,
        best_threshold: args.best_threshold,
    };
    if let Some(out) = &args.output {
        bioseg_data::ensure_absent_or_overwrite(out, args.overwrite)?;
    }
    let evaluation = Evaluation::of(&settings)?;
    let text = match args.format {
        TableFormat::Csv => evaluation.to_csv(),
        TableFormat::Json => evaluation.to_json(&settings)?,
    };
    match &args.output {
        Some(out) => {
            bioseg_data::write_bytes_atomic(out, text.as_bytes())?;
            let mean = &evaluation.mean;
            let at = |name: &str, s: Option<bioseg_infer::evaluate::AtThreshold>| {
                s.map(|s| format!(", best {name} {:.4} (threshold {:.1})", s.value, s.threshold)).unwrap_or_default()
            };
            let challenge = evaluation
                .challenge
                .map(|c| {
                    format!(
                        ", ISBI challenge pixel error {:.4} (threshold {:.1}){}{}",
                        c.pixel.pixel_error,
                        c.pixel.threshold,
                        at("V_rand", c.best_v_rand),
                        at("V_info", c.best_v_info)
                    )
                })
                .unwrap_or_default();
            eprintln!(
                "{} image(s): mean Dice {}, pixel error {:.4}, V_rand {:.4}, V_info {:.4}{challenge} -> {}",
                evaluation.images.len(),
                bioseg_data::cli_support::rounded_list(&mean.dice),
                mean.pixel_error,
                mean.v_rand,
                mean.v_info,
                out.display()
            );
        }
        None => print!("{text}"),
    }
    Ok(())
}
