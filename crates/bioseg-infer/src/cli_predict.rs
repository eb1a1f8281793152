//! `bioseg predict`.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use bioseg_onnx::{Normalization, TensorLayout};

use crate::model::OnnxModel;
use crate::output::{OutputType, output_paths, write_prediction};
use crate::predict::{PredictOptions, Predictor, megapixels_per_second};
use crate::tiling::Blend;

/// Options of `bioseg predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The segmentation model (ONNX; NCHW or NHWC, fixed or symbolic size).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Input image (PNG or TIFF; 8/16-bit or float32; gray or RGB).
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output file; the format follows the extension (.png, .tif/.tiff).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tile core size in pixels (symbolic-size models; fixed-size models use their size).
    #[arg(long, default_value_t = 256)]
    pub tile: usize,
    /// Context read around each tile [default: the model's recommended halo, else 32].
    #[arg(long)]
    pub halo: Option<usize>,
    /// Overlap between neighbouring tile cores.
    #[arg(long, default_value_t = 0)]
    pub overlap: usize,
    /// Blending: crop (exact: each pixel from one tile) or gaussian (weighted overlap).
    #[arg(long, default_value = "crop")]
    pub blend: Blend,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Tiles per model run (when the model's batch axis is symbolic).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Input layout override: nchw or nhwc [default: from the metadata or the graph].
    #[arg(long)]
    pub layout: Option<TensorLayout>,
    /// Normalisation override: none, divide:D, zscore or zscore:MEAN:STD [default: the
    /// model's metadata, else divide by the bit depth's maximum].
    #[arg(long)]
    pub normalize: Option<Normalization>,
    /// Height/width multiple the model needs [default: metadata, else 16].
    #[arg(long)]
    pub size_multiple: Option<usize>,
    /// What to write: prob-u8, prob-f32, mask or labels.
    #[arg(long, default_value = "prob-u8")]
    pub output_type: OutputType,
    /// Foreground threshold for mask/labels of one-channel models.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
}

impl PredictArgs {
    /// The library options.
    pub fn options(&self) -> PredictOptions {
        PredictOptions {
            tile: self.tile,
            halo: self.halo,
            overlap: self.overlap,
            blend: self.blend,
            batch: self.batch,
            layout: self.layout,
            normalize: self.normalize,
            size_multiple: self.size_multiple,
        }
    }
}

/// `bioseg predict`.
pub fn predict(args: PredictArgs, quiet: bool) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t.max(1)).build_global().ok();
    }
    if !(0.0..=1.0).contains(&args.threshold) {
        anyhow::bail!("--threshold must be within [0, 1], not {}", args.threshold);
    }
    let model = OnnxModel::load(&args.model)?;
    let predictor = Predictor::new(&model, args.options())?;
    let image = bioseg_data::read_image(&args.input)?;
    let k_guess = model.metadata().classes.len().max(1);
    for p in output_paths(&args.output, args.output_type, if k_guess > 2 { k_guess } else { 1 }) {
        bioseg_data::ensure_absent_or_overwrite(&p, args.overwrite)?;
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        anyhow::ensure!(parent.is_dir(), "output folder {} does not exist", parent.display());
    }
    let (h, w, _) = image.data.dim();
    let plan = predictor.plan(h, w)?;
    let n_tiles = plan.tiles().len();
    let bar = progress_bar(n_tiles as u64, quiet);
    let start = Instant::now();
    let max_value = image.depth.max_value().unwrap_or(1.0);
    let pred = predictor
        .predict(image.data.view(), max_value, &|n| bar.set_position(n as u64))
        .with_context(|| format!("predicting {}", args.input.display()))?;
    bar.finish_and_clear();
    let mps = megapixels_per_second(h * w, start);
    let paths = write_prediction(&pred, &args.output, args.output_type, args.threshold)?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}x{} image, {} tiles of {}x{} (halo {}), {:.2} s, {:.3} megapixels/s -> {}",
        w,
        h,
        pred.tiles,
        plan.window().1,
        plan.window().0,
        predictor.halo(),
        start.elapsed().as_secs_f64(),
        mps,
        names.join(", ")
    );
    Ok(())
}

/// A tile progress bar (hidden when quiet or stderr is not a terminal).
pub fn progress_bar(total: u64, quiet: bool) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(total);
    if quiet {
        pb.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "tiles {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {per_sec}",
        )
        .expect("valid template"),
    );
    pb
}
