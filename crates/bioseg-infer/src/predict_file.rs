//! Prediction of a file: an image or a volume read from disk, its prediction written to disk.
//! `bioseg predict` and the Python package's `predict_file` both call [`predict_file`] and only
//! present its [`FileReport`]; the choice between the image and the volume path, the checks of
//! the options and of the outputs live here once.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bioseg_data::volume::{VolumeFormat, VolumeInfo, open_volume, tiff_page_count};

use crate::error::InferError;
use crate::model::OnnxModel;
use crate::output::{WriteOptions, output_paths, write_prediction};
use crate::predict::{PredictOptions, Predictor, megapixels_per_second};
use crate::tiling::TileSize;
use crate::volume_predict::{VolumeJob, VolumeOptions, VolumePlan, VolumeProgress, VolumeReport};

/// A file to predict and how.
#[derive(Clone, Debug)]
pub struct FileJob<'a> {
    /// The image or volume (see [`is_volume`]).
    pub input: &'a Path,
    /// Where the prediction goes; the format follows the extension.
    pub output: &'a Path,
    /// Volume input format [default: from the path].
    pub format: Option<VolumeFormat>,
    /// Tiling, normalisation, TTA.
    pub predict: PredictOptions,
    /// What to write (output type, threshold, overwrite) and the volume-only settings.
    pub volume: VolumeOptions,
}

/// Progress of a file's prediction.
#[derive(Clone, Copy, Debug)]
pub enum FileProgress<'a> {
    /// An image: tiles finished of the total.
    Tiles {
        /// Tiles finished.
        done: usize,
        /// Tiles to run (all 8 transforms with TTA).
        total: usize,
    },
    /// A volume: after each block.
    Volume(&'a VolumeProgress),
}

/// What the prediction of an image did.
#[derive(Clone, Debug)]
pub struct ImageReport {
    /// Image size, rows × columns.
    pub height: usize,
    /// Image size, rows × columns.
    pub width: usize,
    /// Tiles run.
    pub tiles: usize,
    /// Tile core (rows, columns).
    pub core: (usize, usize),
    /// Whether the core was chosen for the image (`--tile auto`).
    pub auto_tile: bool,
    /// Model window (rows, columns).
    pub window: (usize, usize),
    /// Context around each core.
    pub halo: usize,
    /// Whether 8-fold test-time augmentation ran.
    pub tta: bool,
    /// Seconds spent predicting (reading and writing excluded).
    pub seconds: f64,
    /// Image megapixels per second.
    pub megapixels_per_second: f64,
    /// Files written.
    pub outputs: Vec<PathBuf>,
}

/// What the prediction of a volume did.
#[derive(Clone, Debug)]
pub struct VolumeFileReport {
    /// The input volume.
    pub info: VolumeInfo,
    /// The block plan.
    pub plan: VolumePlan,
    /// Blocks of this run (its shard's, or all).
    pub my_blocks: Range<usize>,
    /// The run.
    pub report: VolumeReport,
}

/// What [`predict_file`] did.
#[derive(Clone, Debug)]
pub enum FileReport {
    /// A 2-D image.
    Image(ImageReport),
    /// A volume.
    Volume(Box<VolumeFileReport>),
}

impl FileReport {
    /// The files (or folders, or Zarr stores) written.
    pub fn outputs(&self) -> &[PathBuf] {
        match self {
            FileReport::Image(r) => &r.outputs,
            FileReport::Volume(v) => &v.report.outputs,
        }
    }
}

/// Whether `job` takes the volume path: a format was given, the input is a folder, a `.zarr`
/// or a TIFF of several pages, or a TIFF with volume-only settings or a folder output.
pub fn is_volume(job: &FileJob) -> Result<bool, InferError> {
    let input = job.input;
    std::fs::metadata(input).map_err(|e| bioseg_data::DataError::Read { path: input.to_path_buf(), error: e })?;
    if job.format.is_some() || input.is_dir() {
        return Ok(true);
    }
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    // A folder of slices (an output without an extension) is a volume's; a Zarr store holds a
    // 2-D image too (axes c, y, x).
    let volume_output = !matches!(ext(job.output).as_str(), "png" | "tif" | "tiff" | "zarr");
    match ext(input).as_str() {
        "zarr" => Ok(true),
        "tif" | "tiff" => Ok(tiff_page_count(input)? > 1 || job.volume.has_volume_settings() || volume_output),
        _ => Ok(false),
    }
}

/// Predicts `job.input` with `model` and writes the prediction to `job.output`; `on_progress`
/// hears of the tiles (images) or blocks (volumes) done. Existing outputs are refused unless
/// `job.volume.overwrite` (or `resume` for volumes); nothing is left half-written on error.
///
/// Under a memory budget, freed pages go back to the system after 10 ms instead of being kept
/// (a process-wide setting of bioseg's allocator; see `volume_predict`).
pub fn predict_file(
    model: &OnnxModel,
    job: &FileJob,
    on_progress: &(dyn Fn(FileProgress) + Sync),
) -> Result<FileReport, InferError> {
    let threshold = job.volume.threshold;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(InferError::Input(format!("--threshold must be within [0, 1], not {threshold}")));
    }
    if job.volume.memory_budget.is_some() {
        // Kept pages counted against the budget (a 256-slice volume under 32M peaked at
        // 155–161 MiB with 106 MiB for the model alone; 123–133 MiB this way), at some speed
        // (~8 % per window).
        bioseg_data::cli_support::keep_freed_pages(10);
    }
    if is_volume(job)? {
        return predict_volume_file(model, job, on_progress).map(|r| FileReport::Volume(Box::new(r)));
    }
    if job.volume.has_volume_settings() {
        return Err(InferError::Input(format!(
            "--z-range, --roi, --slab, --memory-budget, --shard and --resume apply to volumes (multi-page TIFF, folder of slices, Zarr); {} is a 2-D image",
            job.input.display()
        )));
    }
    predict_image_file(model, job, on_progress).map(FileReport::Image)
}

/// The image path of [`predict_file`].
fn predict_image_file(
    model: &OnnxModel,
    job: &FileJob,
    on_progress: &(dyn Fn(FileProgress) + Sync),
) -> Result<ImageReport, InferError> {
    let predictor = Predictor::new(model, job.predict.clone())?;
    let image = bioseg_data::read_image(job.input)?;
    let classes = &model.metadata().classes;
    let k_guess = if classes.len() > 2 { classes.len() } else { 1 };
    let (kind, overwrite) = (job.volume.output_type, job.volume.overwrite);
    for p in output_paths(job.output, kind, k_guess) {
        bioseg_data::ensure_absent_or_overwrite(&p, overwrite)?;
    }
    if let Some(parent) = job.output.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        return Err(InferError::Input(format!("output folder {} does not exist", parent.display())));
    }
    let (h, w, _) = image.data.dim();
    let plan = predictor.plan(h, w)?;
    let total = predictor.tile_count(h, w)?;
    let start = Instant::now();
    let max_value = image.depth.max_value().unwrap_or(1.0);
    let pred = predictor
        .predict(image.data.view(), max_value, &|done| on_progress(FileProgress::Tiles { done, total }))
        .map_err(|e| e.context(format!("predicting {}", job.input.display())))?;
    let seconds = start.elapsed().as_secs_f64();
    let megapixels_per_second = megapixels_per_second(h * w, start);
    let write = WriteOptions { kind, threshold: job.volume.threshold, classes: classes.clone(), overwrite };
    let outputs = write_prediction(&pred, job.output, &write)?;
    Ok(ImageReport {
        height: h,
        width: w,
        tiles: pred.tiles,
        core: (plan.y.core, plan.x.core),
        auto_tile: job.predict.tile == TileSize::Auto,
        window: plan.window(),
        halo: predictor.halo(),
        tta: job.predict.tta,
        seconds,
        megapixels_per_second,
        outputs,
    })
}

/// The volume path of [`predict_file`].
fn predict_volume_file(
    model: &OnnxModel,
    job: &FileJob,
    on_progress: &(dyn Fn(FileProgress) + Sync),
) -> Result<VolumeFileReport, InferError> {
    let context = || format!("predicting {}", job.input.display());
    let reader = open_volume(job.input, job.format)?;
    let info = reader.info().clone();
    let vjob = VolumeJob::new(model, job.predict.clone(), reader.as_ref(), job.output, job.volume.clone())
        .map_err(|e| e.context(context()))?;
    let plan = vjob.plan().clone();
    let my_blocks = vjob.my_blocks();
    tracing::info!(
        "{} blocks of {}x{}x{} (about {:.1} MiB of buffers each), context {}, this run: blocks {}..{}",
        plan.len(),
        plan.slab,
        plan.block_yx.0,
        plan.block_yx.1,
        plan.block_bytes as f64 / (1 << 20) as f64,
        plan.context,
        my_blocks.start,
        my_blocks.end
    );
    let report = vjob.run(&|p| on_progress(FileProgress::Volume(p))).map_err(|e| e.context(context()))?;
    Ok(VolumeFileReport { info, plan, my_blocks, report })
}
