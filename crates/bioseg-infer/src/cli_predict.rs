//! `bioseg predict`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

use bioseg_data::volume::{VolumeFormat, open_volume, tiff_page_count};
use bioseg_onnx::{Normalization, TensorLayout};

use bioseg_infer::model::OnnxModel;
use bioseg_infer::output::{OutputType, WriteOptions, output_paths, write_prediction};
use bioseg_infer::predict::{PredictOptions, Predictor, megapixels_per_second};
use bioseg_infer::tiling::{Blend, Parallelism, TileSize};
use bioseg_infer::volume_predict::{
    ByteSize, Roi, Shard, Span, VolumeJob, VolumeOptions, VolumeOutput, peak_rss_bytes,
};

/// The library's options: the one source of the defaults `bioseg predict --help` shows.
fn defaults() -> PredictOptions {
    PredictOptions::default()
}

/// Options of `bioseg predict`.
#[derive(Args, Debug, Clone)]
pub struct PredictArgs {
    /// The segmentation model: ONNX (NCHW or NHWC, fixed or symbolic size), or a BioImage Model
    /// Zoo package with ONNX weights (.zip, its rdf.yaml or its folder; its axes, pre- and
    /// postprocessing, halo and size step apply).
    #[arg(short, long)]
    pub model: PathBuf,
    /// Input: an image (PNG or TIFF; 8/16-bit or float32; gray or RGB), or a volume: a
    /// multi-page TIFF (BigTIFF too), a folder of 2-D slices (natural order) or a Zarr array or
    /// OME-Zarr group (v2 or v3). Volumes are predicted slice by slice, slab by slab.
    #[arg(short, long)]
    pub input: PathBuf,
    /// Output; the format follows the extension: .png, .tif/.tiff or .zarr (OME-Zarr 0.5, axes
    /// c, y, x) for an image; for a volume .zarr (chunked: resumable and shardable), .tif/.tiff
    /// (multi-page) or a path without extension (a folder of slices, NNNNN.png or .tif by z
    /// index). Several classes' probabilities go into one TIFF (an ImageJ hyperstack) or Zarr
    /// store (a channel axis); into PNG, one file per class (NAME_classN.png).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Tile core size in pixels, or `auto`: for each image the core (up to 512, in the
    /// model's size multiple) whose windows, halo included, compute the fewest pixels; the
    /// summary line prints the core chosen. Volumetric models take 256 under `auto`;
    /// fixed-size models use their size.
    #[arg(long, default_value_t = defaults().tile)]
    pub tile: TileSize,
    /// Volumetric (3-D, rank-5) models: tile core depth in slices (symbolic-depth models; the
    /// tile's rows and columns come from --tile).
    #[arg(long, default_value_t = defaults().tile_z)]
    pub tile_z: usize,
    /// Context read around each tile [default: the model's recommended halo, else 32].
    #[arg(long)]
    pub halo: Option<usize>,
    /// Overlap between neighbouring tile cores.
    #[arg(long, default_value_t = defaults().overlap)]
    pub overlap: usize,
    /// Blending: crop (exact: each pixel from one tile) or gaussian (weighted overlap).
    #[arg(long, default_value_t = defaults().blend)]
    pub blend: Blend,
    /// Test-time augmentation: average the predictions of the 8 flips and 90° rotations of
    /// every image or slice (8× the work; usually smoother, slightly more accurate maps).
    #[arg(long)]
    pub tta: bool,
    /// Worker threads [default: all cores].
    #[arg(long)]
    pub threads: Option<usize>,
    /// How the threads share the work: tiles (tiles in parallel, one per thread; fastest) or
    /// layers (one tile at a time, each convolution split over the threads; less memory with
    /// large tiles and wide models, as fast for F=64 U-Nets, ~20 % slower for small ones).
    #[arg(long, default_value_t = defaults().parallel)]
    pub parallel: Parallelism,
    /// Tiles per model run (when the model's batch axis is symbolic).
    #[arg(long, default_value_t = defaults().batch)]
    pub batch: usize,
    /// Input layout override: nchw or nhwc [default: from the metadata or the graph].
    #[arg(long)]
    pub layout: Option<TensorLayout>,
    /// Normalisation override: none, divide:D, zscore (the image's own mean and standard
    /// deviation), zscore:MEAN:STD or percentile:LOW:HIGH (the image's own percentiles to 0–1)
    /// [default: the model's metadata or package, else divide by the bit depth's maximum].
    #[arg(long)]
    pub normalize: Option<Normalization>,
    /// Height/width multiple the model needs [default: metadata, else 16].
    #[arg(long)]
    pub size_multiple: Option<usize>,
    /// What to write: prob-u8, prob-f32, mask or labels.
    #[arg(long, default_value_t = OutputType::default())]
    pub output_type: OutputType,
    /// Foreground threshold for mask/labels of one-channel models.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Replace existing output files.
    #[arg(long)]
    pub overwrite: bool,
    /// Volume input format: tiff, slices or zarr [default: from the path: a .zarr folder or one
    /// holding Zarr metadata is Zarr, another folder slices, a .tif with several pages tiff].
    #[arg(long)]
    pub format: Option<VolumeFormat>,
    /// Volumes: process slices A:B only (0-based, B excluded; A: and :B too).
    #[arg(long, value_name = "A:B")]
    pub z_range: Option<Span>,
    /// Volumes: process rows Y0:Y1 and columns X0:X1 of each slice only (the halo's context
    /// around it is still read from the data).
    #[arg(long, value_name = "Y0:Y1,X0:X1")]
    pub roi: Option<Roi>,
    /// Volumes: slices per slab, predicted and written together (also the Zarr chunk depth)
    /// [default: 8, or less to fit --memory-budget].
    #[arg(long, value_name = "N")]
    pub slab: Option<usize>,
    /// Volumes: keep the slab buffers within this size (e.g. 512M, 2G; the model's own memory
    /// comes on top): the slab shrinks, then slices are cut into blocks of whole chunks, and
    /// freed memory goes back to the system at once (a little slower).
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<ByteSize>,
    /// Volumes, Zarr output: compute only the I-th of N disjoint parts of the job, numbered
    /// 1..=N, into one store shared by all N runs (created by whichever starts first; a store
    /// made with another model or other options is refused). See tools/slurm/.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Volumes, Zarr or folder output: keep what an interrupted run with the same model and
    /// options wrote (whole chunks or slices) and compute the rest.
    #[arg(long)]
    pub resume: bool,
    /// Sleep this long after each volume block (test hook).
    #[arg(long, hide = true, value_name = "MS")]
    pub throttle_ms: Option<u64>,
    /// Print the peak resident memory (VmHWM) at the end.
    #[arg(long, hide = true)]
    pub report_peak_memory: bool,
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
            tta: self.tta,
            tile_z: self.tile_z,
            parallel: self.parallel,
        }
    }

    /// The volume options.
    pub fn volume_options(&self) -> VolumeOptions {
        VolumeOptions {
            z_range: self.z_range,
            roi: self.roi,
            slab: self.slab,
            memory_budget: self.memory_budget.map(|b| b.0),
            shard: self.shard,
            resume: self.resume,
            overwrite: self.overwrite,
            output_type: self.output_type,
            threshold: self.threshold,
            throttle: self.throttle_ms.map(Duration::from_millis),
        }
    }

    /// Whether a volume-only option was given.
    fn volume_flags(&self) -> bool {
        self.z_range.is_some()
            || self.roi.is_some()
            || self.slab.is_some()
            || self.memory_budget.is_some()
            || self.shard.is_some()
            || self.resume
    }
}

/// Whether `args` asks for the volume path: a format was given, the input is a folder, a
/// `.zarr` or a TIFF of several pages, or a TIFF with volume options or a folder output.
fn is_volume(args: &PredictArgs) -> Result<bool> {
    let input = &args.input;
    std::fs::metadata(input).map_err(|e| bioseg_data::DataError::Read { path: input.clone(), error: e })?;
    if args.format.is_some() || input.is_dir() {
        return Ok(true);
    }
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    // A folder of slices (an output without an extension) is a volume's; a Zarr store holds a
    // 2-D image too (axes c, y, x).
    let volume_output = !matches!(ext(&args.output).as_str(), "png" | "tif" | "tiff" | "zarr");
    match ext(input).as_str() {
        "zarr" => Ok(true),
        "tif" | "tiff" => Ok(tiff_page_count(input)? > 1 || args.volume_flags() || volume_output),
        _ => Ok(false),
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
    if args.memory_budget.is_some() {
        // Under a memory budget, freed pages go back to the kernel after mimalloc's own 10 ms
        // rather than main's second: kept pages counted against the budget (a 256-slice volume
        // under 32M peaked at 155–161 MiB with 106 MiB for the model alone; 123–133 MiB this
        // way), at some speed (main's comment: ~8 % per window).
        bioseg_data::cli_support::keep_freed_pages(10);
    }
    let volume = is_volume(&args)?;
    let model = OnnxModel::load(&args.model)?;
    if volume {
        return predict_volume(&args, &model, quiet);
    }
    if args.volume_flags() {
        anyhow::bail!(
            "--z-range, --roi, --slab, --memory-budget, --shard and --resume apply to volumes (multi-page TIFF, folder of slices, Zarr); {} is a 2-D image",
            args.input.display()
        );
    }
    let predictor = Predictor::new(&model, args.options())?;
    let image = bioseg_data::read_image(&args.input)?;
    let classes = &model.metadata().classes;
    let k_guess = if classes.len() > 2 { classes.len() } else { 1 };
    for p in output_paths(&args.output, args.output_type, k_guess) {
        bioseg_data::ensure_absent_or_overwrite(&p, args.overwrite)?;
    }
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        anyhow::ensure!(parent.is_dir(), "output folder {} does not exist", parent.display());
    }
    let (h, w, _) = image.data.dim();
    let plan = predictor.plan(h, w)?;
    let n_tiles = predictor.tile_count(h, w)?;
    let bar = bioseg_infer::progress::tile_bar(n_tiles as u64, quiet);
    let start = Instant::now();
    let max_value = image.depth.max_value().unwrap_or(1.0);
    let pred = predictor
        .predict(image.data.view(), max_value, &|n| bar.set_position(n as u64))
        .with_context(|| format!("predicting {}", args.input.display()))?;
    bar.finish_and_clear();
    let mps = megapixels_per_second(h * w, start);
    let write = WriteOptions {
        kind: args.output_type,
        threshold: args.threshold,
        classes: classes.clone(),
        overwrite: args.overwrite,
    };
    let paths = write_prediction(&pred, &args.output, &write)?;
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}x{} image, {} tile{} (core {}x{}{}, window {}x{}, halo {}{}), {:.2} s, {:.3} megapixels/s -> {}",
        w,
        h,
        pred.tiles,
        if pred.tiles == 1 { "" } else { "s" },
        plan.x.core,
        plan.y.core,
        if args.tile == TileSize::Auto { " chosen for the image" } else { "" },
        plan.window().1,
        plan.window().0,
        predictor.halo(),
        if args.tta { ", 8-fold TTA" } else { "" },
        start.elapsed().as_secs_f64(),
        mps,
        names.join(", ")
    );
    report_peak_memory(args.report_peak_memory);
    Ok(())
}

/// Logs (and with `--report-peak-memory` prints) the peak resident memory.
fn report_peak_memory(print: bool) {
    if let Some(b) = peak_rss_bytes() {
        let mib = b as f64 / (1 << 20) as f64;
        tracing::info!("peak memory (VmHWM): {mib:.1} MiB");
        if print {
            println!("peak memory (VmHWM): {mib:.1} MiB ({b} bytes)");
        }
    }
}

/// `bioseg predict` on a volume.
fn predict_volume(args: &PredictArgs, model: &OnnxModel, quiet: bool) -> Result<()> {
    let reader = open_volume(&args.input, args.format)?;
    let info = reader.info().clone();
    let job = VolumeJob::new(model, args.options(), reader.as_ref(), &args.output, args.volume_options())
        .with_context(|| format!("predicting {}", args.input.display()))?;
    let plan = job.plan().clone();
    let mine = job.my_blocks();
    let [zn, yn, xn] = plan.shape();
    tracing::info!(
        "{} blocks of {}x{}x{} (about {:.1} MiB of buffers each), context {}, this run: blocks {}..{}",
        plan.len(),
        plan.slab,
        plan.block_yx.0,
        plan.block_yx.1,
        plan.block_bytes as f64 / (1 << 20) as f64,
        plan.context,
        mine.start,
        mine.end
    );
    let bar = indicatif::ProgressBar::new(1000);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("slices {bar:30.cyan/blue} {msg} [{elapsed_precise}<{eta_precise}]")
            .expect("valid template"),
    );
    let report = job
        .run(&|p| {
            let frac = p.voxels_done as f64 / p.voxels_total.max(1) as f64;
            bar.set_position((frac * 1000.0) as u64);
            bar.set_message(format!(
                "{:.1}/{:.0} slices, {:.2} MP/s",
                p.voxels_done as f64 / p.slice_pixels.max(1) as f64,
                p.voxels_total as f64 / p.slice_pixels.max(1) as f64,
                p.voxels_computed as f64 / 1e6 / p.seconds.max(1e-9)
            ));
        })
        .with_context(|| format!("predicting {}", args.input.display()))?;
    bar.finish_and_clear();
    let shard = args.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
    let names: Vec<String> = report.outputs.iter().map(|p| p.display().to_string()).collect();
    println!(
        "{}x{}x{} {} volume, region z {}:{} y {}:{} x {}:{}: {} of {} blocks of {}x{}x{}{}, {} computed, {} skipped, {} tiles, {:.2} s, {:.3} megapixels/s -> {}",
        info.shape[2],
        info.shape[1],
        info.shape[0],
        info.format,
        plan.region[0].start,
        plan.region[0].end,
        plan.region[1].start,
        plan.region[1].end,
        plan.region[2].start,
        plan.region[2].end,
        report.blocks.len(),
        plan.len(),
        plan.slab.min(zn),
        plan.block_yx.0.min(yn),
        plan.block_yx.1.min(xn),
        shard,
        report.blocks_run,
        report.blocks_skipped,
        report.tiles,
        report.seconds,
        report.megapixels_per_second(),
        names.join(", ")
    );
    if matches!(VolumeOutput::from_path(&args.output), Ok(VolumeOutput::Zarr)) && !report.created {
        tracing::info!("joined the existing store {}", args.output.display());
    }
    report_peak_memory(args.report_peak_memory);
    Ok(())
}
