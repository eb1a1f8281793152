//! `bioseg predict`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::Args;

use bioseg_data::volume::VolumeFormat;
use bioseg_onnx::{Normalization, TensorLayout};

use bioseg_infer::model::OnnxModel;
use bioseg_infer::output::OutputType;
use bioseg_infer::predict::PredictOptions;
use bioseg_infer::predict_file::{FileJob, FileProgress, FileReport, predict_file};
use bioseg_infer::tiling::{Blend, Parallelism, TileSize};
use bioseg_infer::volume_predict::{ByteSize, Roi, Shard, Span, VolumeOptions, VolumeOutput, peak_rss_bytes};

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
            cancel: None,
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
}

/// `bioseg predict`.
pub fn predict(args: PredictArgs, quiet: bool) -> Result<()> {
    if let Some(t) = args.threads {
        rayon::ThreadPoolBuilder::new().num_threads(t.max(1)).build_global().ok();
    }
    let model = OnnxModel::load(&args.model)?;
    let job = FileJob {
        input: &args.input,
        output: &args.output,
        format: args.format,
        predict: args.options(),
        volume: args.volume_options(),
    };
    let bar = indicatif::ProgressBar::new(0);
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let volume = std::sync::Once::new();
    let report = predict_file(&model, &job, &|p| match p {
        FileProgress::Tiles { done, total } => {
            if bar.length() != Some(total as u64) {
                bar.set_style(bioseg_infer::progress::tile_style());
                bar.set_length(total as u64);
            }
            bar.set_position(done as u64);
        }
        FileProgress::Volume(p) => {
            volume.call_once(|| {
                bar.set_length(1000);
                bar.set_style(bioseg_infer::progress::slice_style());
            });
            bar.set_position((p.fraction() * 1000.0) as u64);
            bar.set_message(format!(
                "{:.1}/{:.0} slices, {:.2} MP/s",
                p.voxels_done as f64 / p.slice_pixels.max(1) as f64,
                p.voxels_total as f64 / p.slice_pixels.max(1) as f64,
                p.voxels_computed as f64 / 1e6 / p.seconds.max(1e-9)
            ));
        }
    })?;
    bar.finish_and_clear();
    let names: Vec<String> = report.outputs().iter().map(|p| p.display().to_string()).collect();
    match &report {
        FileReport::Image(r) => println!(
            "{}x{} image, {} tile{} (core {}x{}{}, window {}x{}, halo {}{}), {:.2} s, {:.3} megapixels/s -> {}",
            r.width,
            r.height,
            r.tiles,
            if r.tiles == 1 { "" } else { "s" },
            r.core.1,
            r.core.0,
            if r.auto_tile { " chosen for the image" } else { "" },
            r.window.1,
            r.window.0,
            r.halo,
            if r.tta { ", 8-fold TTA" } else { "" },
            r.seconds,
            r.megapixels_per_second,
            names.join(", ")
        ),
        FileReport::Volume(v) => {
            let (info, plan, report) = (&v.info, &v.plan, &v.report);
            let [zn, yn, xn] = plan.shape();
            let shard = args.shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
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
        }
    }
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
