//! Volume prediction: a 2-D segmentation model applied slice by slice to a 3-D volume, block by
//! block, so that memory does not grow with the volume.
//!
//! The output region (the volume, or `--z-range` × `--roi` of it) is cut into *blocks*: `slab`
//! consecutive slices × (by default) whole rows and columns. A block is read from the input with
//! enough context around it (the halo, rounded up to the model's size multiple, from the real
//! neighbouring data; mirrored only at the volume's true borders), each of its slices is
//! predicted by the tiled [`Predictor`] (slices in parallel, tiles in parallel), and the block's
//! part of the output is written. With `--memory-budget` the slab shrinks, and if one slice is
//! still too large the rows and columns are cut too, into blocks whose sides are multiples of
//! the output chunks; block origins are aligned to the model's size multiple, so every tile
//! sees the pooling grid of whole-slice inference and the result does not depend on the
//! blocking (to float rounding: with whole-slice blocks it is exactly the 2-D prediction of
//! each slice).
//!
//! Outputs, by the output path:
//! - `.zarr`: Zarr v3 with OME-Zarr 0.5 metadata, chunks `(C, slab, 256, 256)` (or `(slab,
//!   256, 256)` for one channel). Every chunk is written whole, atomically, so
//!   - `--resume` skips the blocks whose chunks all exist (a killed run loses at most the
//!     blocks in flight), and
//!   - `--shard I/N` computes only the I-th of N contiguous runs of blocks (I from 1 to N);
//!     N processes (e.g. a Slurm job array) fill one store, created by whichever starts first.
//!
//!   The store records the model (size and FNV-1a hash), options and region in its `bioseg`
//!   attributes; resuming or sharding into a store made with anything else is refused.
//! - `.tif`/`.tiff`: a multi-page TIFF (one per class for multi-class probabilities), streamed
//!   slab by slab into a temporary file renamed at the end.
//! - anything else (a folder): one image per slice named by its z index (see
//!   [`SliceFolderWriter`]); `--resume` skips slabs whose slices all exist.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bioseg_data::volume::{
    CreateMode, SliceFolderWriter, TiffStackWriter, VolumeDType, VolumeInfo, VolumeReader, VolumeSample,
    ZarrVolumeSpec, ZarrVolumeWriter,
};
use bioseg_onnx::TensorLayout;
use bioseg_onnx::proto::DimensionValue;
use ndarray::{Array3, Array4, Axis, s};
use rayon::prelude::*;
use serde_json::{Value, json};

use crate::error::InferError;
use crate::model::OnnxModel;
use crate::output::{OutputType, channel_labels, convert};
use crate::predict::{PredictOptions, Predictor};
use crate::tiling::Blend;

/// Slices per slab when neither `--slab` nor a memory budget says otherwise.
pub const DEFAULT_SLAB: usize = 8;
/// Side of the output chunks along y and x (rounded up to the model's size multiple).
pub const CHUNK_YX: usize = 256;
/// The name of the file that records a slice folder's settings (hidden: listings skip it).
pub const SLICES_IDENTITY: &str = ".bioseg-predict.json";

fn input_err(msg: impl Into<String>) -> InferError {
    InferError::Input(msg.into())
}

// ---------------------------------------------------------------------------
// Command-line values
// ---------------------------------------------------------------------------

/// A half-open index range `a:b` whose ends may be left open (`a:`, `:b`, `:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// First index (default 0).
    pub start: Option<usize>,
    /// One past the last index (default: the size).
    pub end: Option<usize>,
}

impl std::str::FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once(':').ok_or_else(|| format!("`{s}` is not a range A:B (0-based, B excluded)"))?;
        let num = |t: &str| -> Result<Option<usize>, String> {
            let t = t.trim();
            if t.is_empty() {
                Ok(None)
            } else {
                t.parse().map(Some).map_err(|_| format!("`{t}` in `{s}` is not a non-negative integer"))
            }
        };
        let span = Span { start: num(a)?, end: num(b)? };
        if let (Some(a), Some(b)) = (span.start, span.end)
            && a >= b
        {
            return Err(format!("range `{s}` is empty (A must be less than B)"));
        }
        Ok(span)
    }
}

impl Span {
    /// The range within `0..size`, or an error naming `what` when it leaves it.
    pub fn resolve(&self, size: usize, what: &str) -> Result<Range<usize>, InferError> {
        let (a, b) = (self.start.unwrap_or(0), self.end.unwrap_or(size));
        if a >= b || b > size {
            return Err(input_err(format!("{what} {a}:{b} is outside the volume's 0:{size}")));
        }
        Ok(a..b)
    }
}

/// A region of interest `y0:y1,x0:x1` of every slice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roi {
    /// Rows.
    pub y: Span,
    /// Columns.
    pub x: Span,
}

impl std::str::FromStr for Roi {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (y, x) = s.split_once(',').ok_or_else(|| format!("`{s}` is not a region Y0:Y1,X0:X1"))?;
        Ok(Roi { y: y.parse()?, x: x.parse()? })
    }
}

/// Shard `index` (from 1) of `count` disjoint parts of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which part, 1 ..= `count`.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N (e.g. 2/8: the 2nd of 8 shards, numbered from 1)"))?;
        let parse = |t: &str| t.trim().parse::<usize>().map_err(|_| format!("`{s}` is not I/N with integers I and N"));
        let (index, count) = (parse(i)?, parse(n)?);
        if count == 0 {
            return Err(format!("shard {s}: N must be at least 1"));
        }
        if index == 0 || index > count {
            return Err(format!("shard {s} does not exist: I runs from 1 to N = {count} (shards are numbered from 1)"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The blocks of `total` this shard computes: the `index`-th of `count` contiguous runs
    /// (sizes differ by at most one; shards beyond `total` get none).
    pub fn blocks(&self, total: usize) -> Range<usize> {
        (self.index - 1) * total / self.count..self.index * total / self.count
    }
}

/// A byte count written as `512M`, `2G`, `1.5GiB`, `64MB` or plain bytes (powers of 1024).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let value: f64 = num.parse().map_err(|_| format!("`{s}` is not a size such as 512M or 2G"))?;
        let mult = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1u64,
            "K" | "KB" | "KIB" => 1 << 10,
            "M" | "MB" | "MIB" => 1 << 20,
            "G" | "GB" | "GIB" => 1 << 30,
            "T" | "TB" | "TIB" => 1 << 40,
            u => {
                return Err(format!("unknown unit `{u}` in `{s}` (expected K, M, G or T)"));
            }
        };
        let bytes = value * mult as f64;
        if !(1.0..1.8e19).contains(&bytes) {
            return Err(format!("size `{s}` is out of range"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

/// Where a volume prediction goes, from the output path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeOutput {
    /// `.zarr`: OME-Zarr v3.
    Zarr,
    /// `.tif`/`.tiff`: multi-page TIFF.
    Tiff,
    /// A folder of slices (a path without extension, or an existing folder).
    Slices,
}

impl VolumeOutput {
    /// The kind of output `path` names.
    pub fn from_path(path: &Path) -> Result<Self, InferError> {
        let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        match ext.as_str() {
            "zarr" => Ok(VolumeOutput::Zarr),
            "tif" | "tiff" => Ok(VolumeOutput::Tiff),
            _ if ext.is_empty() || path.is_dir() => Ok(VolumeOutput::Slices),
            _ => Err(input_err(format!(
                "cannot write a volume to {}: use a .zarr store, a .tif/.tiff stack or a folder",
                path.display()
            ))),
        }
    }
}

// ---------------------------------------------------------------------------
// Options, plan
// ---------------------------------------------------------------------------

/// How to predict a volume (besides the 2-D [`PredictOptions`]).
#[derive(Clone, Debug)]
pub struct VolumeOptions {
    /// Slices to process (default all).
    pub z_range: Option<Span>,
    /// Rows and columns to process (default all).
    pub roi: Option<Roi>,
    /// Slices per slab (default [`DEFAULT_SLAB`], or what the budget allows).
    pub slab: Option<usize>,
    /// Bound on the block buffers, in bytes.
    pub memory_budget: Option<u64>,
    /// Compute only this part of the blocks (Zarr output).
    pub shard: Option<Shard>,
    /// Keep what an earlier run with the same settings wrote.
    pub resume: bool,
    /// Replace an existing output.
    pub overwrite: bool,
    /// What to write.
    pub output_type: OutputType,
    /// Threshold for masks and one-channel labels.
    pub threshold: f32,
    /// Sleep after each block (a test hook to make runs slow enough to interrupt).
    pub throttle: Option<Duration>,
}

impl Default for VolumeOptions {
    fn default() -> Self {
        VolumeOptions {
            z_range: None,
            roi: None,
            slab: None,
            memory_budget: None,
            shard: None,
            resume: false,
            overwrite: false,
            output_type: OutputType::ProbU8,
            threshold: 0.5,
            throttle: None,
        }
    }
}

impl VolumeOptions {
    /// Whether a volume-only setting is given (z range, ROI, slab, memory budget, shard, resume).
    pub fn has_volume_settings(&self) -> bool {
        self.z_range.is_some()
            || self.roi.is_some()
            || self.slab.is_some()
            || self.memory_budget.is_some()
            || self.shard.is_some()
            || self.resume
    }
}

/// One block: output coordinates (relative to the processed region).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Position in the block order.
    pub index: usize,
    /// Slices.
    pub z: Range<usize>,
    /// Rows.
    pub y: Range<usize>,
    /// Columns.
    pub x: Range<usize>,
}

/// How a volume is cut into blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePlan {
    /// Processed slices, rows, columns of the input volume.
    pub region: [Range<usize>; 3],
    /// Slices per block (the Zarr chunk depth).
    pub slab: usize,
    /// Rows and columns per block (the region's size when slices are not cut).
    pub block_yx: (usize, usize),
    /// Output chunk rows and columns.
    pub chunk_yx: (usize, usize),
    /// Context read around a block (the halo rounded up to the size multiple).
    pub context: usize,
    /// The model's size multiple (block reads start at multiples of it).
    pub multiple: usize,
    /// Estimated bytes of one block's buffers.
    pub block_bytes: u64,
}

impl VolumePlan {
    /// Output size `[z, y, x]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.region[0].len(), self.region[1].len(), self.region[2].len()]
    }

    /// Number of blocks along z, y, x.
    pub fn grid(&self) -> [usize; 3] {
        let [z, y, x] = self.shape();
        [z.div_ceil(self.slab), y.div_ceil(self.block_yx.0), x.div_ceil(self.block_yx.1)]
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.grid().iter().product()
    }

    /// Whether there is no block.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Block `i` (z-major, then rows, then columns).
    pub fn block(&self, index: usize) -> Block {
        let [_, gy, gx] = self.grid();
        let [z, y, x] = self.shape();
        let (iz, iy, ix) = (index / (gy * gx), index / gx % gy, index % gx);
        let (by, bx) = self.block_yx;
        Block {
            index,
            z: iz * self.slab..((iz + 1) * self.slab).min(z),
            y: iy * by..((iy + 1) * by).min(y),
            x: ix * bx..((ix + 1) * bx).min(x),
        }
    }

    /// The input rows (or columns) read for a block spanning `r` (input coordinates) along an
    /// axis of `size`: `context` on each side, the start aligned down to the size multiple.
    pub fn read_range(&self, r: &Range<usize>, size: usize) -> Range<usize> {
        let start = r.start.saturating_sub(self.context) / self.multiple * self.multiple;
        start..(r.end + self.context).min(size)
    }
}

/// Inputs of [`plan_volume`] besides the options.
#[derive(Clone, Copy, Debug)]
pub struct PlanInputs<'a> {
    /// The input volume.
    pub info: &'a VolumeInfo,
    /// Model output channels.
    pub classes: usize,
    /// Halo of the predictor.
    pub halo: usize,
    /// Size multiple of the model.
    pub multiple: usize,
    /// Whether Gaussian blending (one more weight plane per slice) is used.
    pub gaussian: bool,
    /// Whether the model is volumetric (blocks are read with context along z too).
    pub volumetric: bool,
    /// Where the output goes.
    pub output: VolumeOutput,
}

/// Cuts the processed region into blocks: `--slab` (default [`DEFAULT_SLAB`]) whole slices
/// per block, or, under a memory budget, the largest slab of whole slices whose buffers fit in
/// three quarters of it, else one slice cut into the largest square-ish blocks of whole chunks
/// that fit.
pub fn plan_volume(p: PlanInputs, opts: &VolumeOptions) -> Result<VolumePlan, InferError> {
    let info = p.info;
    let [zs, ys, xs] = info.shape;
    let z = opts.z_range.map(|s| s.resolve(zs, "--z-range")).transpose()?.unwrap_or(0..zs);
    let y = opts.roi.map(|r| r.y.resolve(ys, "--roi rows")).transpose()?.unwrap_or(0..ys);
    let x = opts.roi.map(|r| r.x.resolve(xs, "--roi columns")).transpose()?.unwrap_or(0..xs);
    let m = p.multiple.max(1);
    let context = p.halo.div_ceil(m) * m;
    let chunk_side = CHUNK_YX.div_ceil(m) * m;
    let chunk_yx = (chunk_side.min(y.len()), chunk_side.min(x.len()));
    if opts.slab == Some(0) {
        return Err(input_err("--slab must be at least 1"));
    }
    let slab_wanted = opts.slab.unwrap_or(DEFAULT_SLAB).min(z.len()).max(1);
    let kout = opts.output_type.channels(p.classes);
    let ob = opts.output_type.dtype().bytes();
    let threads = rayon::current_num_threads().max(1);
    let read = |n: usize, size: usize| (n + 2 * context + m).min(size);
    // Bytes of one block's buffers: the input slab, each slice's probabilities (and Gaussian
    // weights), the block's output, a slab of whole output slices for TIFF and folders, and the
    // chunk buffers being encoded.
    // A volumetric model reads (and predicts) the slab's context slices too.
    let read_slices = |slab: usize| if p.volumetric { read(slab, zs) } else { slab } as u64;
    let estimate = |slab: usize, by: usize, bx: usize| -> u64 {
        let (ry, rx) = (read(by, ys) as u64, read(bx, xs) as u64);
        let per_read_slice =
            ry * rx * (info.channels as u64 * 4 + p.classes as u64 * 4 + if p.gaussian { 4 } else { 0 });
        let per_slice = (kout * by * bx * ob) as u64;
        let assembly = match p.output {
            VolumeOutput::Zarr => (threads * 2 * kout * slab * chunk_yx.0 * chunk_yx.1 * ob) as u64,
            _ => (kout * slab * y.len() * x.len() * ob) as u64,
        };
        read_slices(slab) * per_read_slice + slab as u64 * per_slice + assembly
    };
    let (slab, block_yx) = match opts.memory_budget {
        None => (slab_wanted, (y.len(), x.len())),
        Some(budget) => {
            let target = budget / 4 * 3;
            let slabs: Vec<usize> =
                if opts.slab.is_some() { vec![slab_wanted] } else { (1..=slab_wanted).rev().collect() };
            let whole = slabs.iter().copied().find(|&s| estimate(s, y.len(), x.len()) <= target);
            match whole {
                Some(s) => (s, (y.len(), x.len())),
                None => {
                    let s = *slabs.last().unwrap_or(&1);
                    let max_k = y.len().div_ceil(chunk_yx.0).max(x.len().div_ceil(chunk_yx.1));
                    let fit = (1..=max_k)
                        .rev()
                        .map(|k| ((k * chunk_yx.0).min(y.len()), (k * chunk_yx.1).min(x.len())))
                        .find(|&(by, bx)| estimate(s, by, bx) <= target);
                    match fit {
                        Some(b) => (s, b),
                        None => {
                            return Err(input_err(format!(
                                "--memory-budget {budget} bytes is too small: a block of {s} slice(s) of {}x{} with its context needs about {} MiB (budget the buffers at most 3/4 of it)",
                                chunk_yx.0,
                                chunk_yx.1,
                                estimate(s, chunk_yx.0, chunk_yx.1).div_ceil(1 << 20)
                            )));
                        }
                    }
                }
            }
        }
    };
    let block_bytes = estimate(slab, block_yx.0, block_yx.1);
    Ok(VolumePlan { region: [z, y, x], slab, block_yx, chunk_yx, context, multiple: m, block_bytes })
}

// ---------------------------------------------------------------------------
// Model facts
// ---------------------------------------------------------------------------

/// The model's output channels: from the graph when its output declares them, else by running
/// the model once on the window the tiles of a `d × h × w` block use (`d` matters only for
/// volumetric models).
pub fn model_classes(model: &OnnxModel, predictor: &Predictor, [d, h, w]: [usize; 3]) -> Result<usize, InferError> {
    let layout = predictor.io().layout;
    let declared = model
        .proto()
        .graph
        .as_ref()
        .and_then(|g| g.output.first())
        .and_then(|o| o.r#type.as_ref())
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .and_then(|s| {
            let axis = match (s.dim.len(), layout) {
                (4, TensorLayout::Nhwc) => 3,
                (5, TensorLayout::Nhwc) => 4,
                (4 | 5, _) => 1,
                _ => return None,
            };
            match s.dim[axis].value {
                Some(DimensionValue::DimValue(v)) if v > 0 => Some(v as usize),
                _ => None,
            }
        });
    if let Some(k) = declared {
        return Ok(k);
    }
    let c = predictor.io().channels;
    // The spatial window of the first block's tiles ([depth,] height, width).
    let window: Vec<usize> = if predictor.io().volumetric {
        predictor.plan_3d(d, h, w)?.window().to_vec()
    } else {
        let (wh, ww) = predictor.plan(h, w)?.window();
        vec![wh, ww]
    };
    let mut shape = vec![1];
    match layout {
        TensorLayout::Nhwc => shape.extend(window.iter().copied().chain([c])),
        _ => shape.extend([c].into_iter().chain(window.iter().copied())),
    }
    let n: usize = shape.iter().product();
    let (oshape, _) = model.run(&shape, &vec![0f32; n])?.swap_remove(0);
    let rank = shape.len();
    Ok(match layout {
        _ if oshape.len() == rank - 1 => 1,
        TensorLayout::Nhwc => oshape.last().copied().unwrap_or(1),
        _ => oshape.get(1).copied().unwrap_or(1),
    })
}

/// FNV-1a (64-bit) of `bytes`: a stable fingerprint of the model file.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

// ---------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------

/// Progress after a block.
#[derive(Clone, Copy, Debug)]
pub struct VolumeProgress {
    /// Voxels of this run's blocks done (computed or skipped).
    pub voxels_done: u64,
    /// Voxels of this run's blocks.
    pub voxels_total: u64,
    /// Voxels computed (not skipped) so far.
    pub voxels_computed: u64,
    /// Rows × columns of one output slice.
    pub slice_pixels: u64,
    /// Seconds since the start.
    pub seconds: f64,
}

impl VolumeProgress {
    /// The share of this run's voxels done, 0 to 1.
    pub fn fraction(&self) -> f64 {
        self.voxels_done as f64 / self.voxels_total.max(1) as f64
    }
}

/// What a volume prediction did.
#[derive(Clone, Debug)]
pub struct VolumeReport {
    /// The block plan.
    pub plan: VolumePlan,
    /// Model output channels.
    pub classes: usize,
    /// Blocks this run was to compute (its shard's, or all).
    pub blocks: Range<usize>,
    /// Blocks computed.
    pub blocks_run: usize,
    /// Blocks skipped because their output existed (`--resume`).
    pub blocks_skipped: usize,
    /// Tiles run.
    pub tiles: usize,
    /// Voxels computed.
    pub voxels: u64,
    /// Seconds spent.
    pub seconds: f64,
    /// Whether this run created the Zarr store (false: it joined one).
    pub created: bool,
    /// Files written (the store's folder, the TIFF files or the slice folder).
    pub outputs: Vec<PathBuf>,
}

impl VolumeReport {
    /// Megapixels (voxels) computed per second.
    pub fn megapixels_per_second(&self) -> f64 {
        self.voxels as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Where blocks (`[channels, z, y, x]` samples of `T`) go.
enum Sink<T> {
    Zarr(Box<ZarrVolumeWriter>),
    /// The TIFF writer (slices × channels pages) and the slab being assembled.
    Tiff(Box<TiffStackWriter>, Option<(usize, Array4<T>)>),
    /// Slice folder and the slab being assembled.
    Slices(SliceFolderWriter, Option<(usize, Array4<T>)>),
}

/// A volume prediction job, ready to run.
pub struct VolumeJob<'a> {
    model: &'a OnnxModel,
    predictor: Predictor<'a>,
    reader: &'a dyn VolumeReader,
    output: PathBuf,
    kind: VolumeOutput,
    opts: VolumeOptions,
    plan: VolumePlan,
    classes: usize,
    identity: Value,
}

impl<'a> VolumeJob<'a> {
    /// Checks the model, the volume and the options, and plans the blocks. Nothing is written.
    pub fn new(
        model: &'a OnnxModel,
        predict: PredictOptions,
        reader: &'a dyn VolumeReader,
        output: &Path,
        opts: VolumeOptions,
    ) -> Result<Self, InferError> {
        let kind = VolumeOutput::from_path(output)?;
        if opts.shard.is_some() && kind != VolumeOutput::Zarr {
            return Err(input_err(format!(
                "--shard needs a .zarr output (shards share one store), not {}",
                output.display()
            )));
        }
        if opts.resume && kind == VolumeOutput::Tiff {
            return Err(input_err(format!(
                "--resume needs a .zarr or folder output: a TIFF stack is written whole ({})",
                output.display()
            )));
        }
        if opts.overwrite && (opts.resume || opts.shard.is_some()) {
            return Err(input_err(
                "--overwrite cannot be combined with --resume or --shard (they keep what is there; delete the output first)",
            ));
        }
        if !(0.0..=1.0).contains(&opts.threshold) {
            return Err(input_err(format!("--threshold must be within [0, 1], not {}", opts.threshold)));
        }
        let predictor = Predictor::new(model, predict.clone())?;
        let info = reader.info().clone();
        if info.channels != predictor.io().channels {
            return Err(input_err(format!(
                "volume {} has {} channel(s) but model {} expects {}",
                reader.path().display(),
                info.channels,
                model.path().display(),
                predictor.io().channels
            )));
        }
        let multiple = predict.size_multiple.unwrap_or(predictor.io().size_multiple).max(1);
        let halo = predictor.halo();
        // Plan once with one class to learn the first block's read window, then count classes.
        let volumetric = predictor.io().volumetric;
        let max_value = info.depth.max_value().unwrap_or(1.0);
        if volumetric && predictor.normalization(max_value).per_image() {
            return Err(input_err(format!(
                "model {} is volumetric and normalises by its input's own statistics: blocks would see different ones; give them with --normalize zscore:MEAN:STD",
                model.path().display()
            )));
        }
        let inputs = PlanInputs {
            info: &info,
            classes: 1,
            halo,
            multiple,
            gaussian: predict.blend == Blend::Gaussian,
            volumetric,
            output: kind,
        };
        let probe = plan_volume(inputs, &opts)?;
        let first = probe.block(0);
        let rz = probe
            .read_range(&(probe.region[0].start + first.z.start..probe.region[0].start + first.z.end), info.shape[0]);
        let ry = probe
            .read_range(&(probe.region[1].start + first.y.start..probe.region[1].start + first.y.end), info.shape[1]);
        let rx = probe
            .read_range(&(probe.region[2].start + first.x.start..probe.region[2].start + first.x.end), info.shape[2]);
        let classes = model_classes(model, &predictor, [rz.len(), ry.len(), rx.len()])?;
        let plan = plan_volume(PlanInputs { classes, ..inputs }, &opts)?;
        let whole_slices = plan.region[1] == (0..info.shape[1])
            && plan.region[2] == (0..info.shape[2])
            && plan.block_yx == (info.shape[1], info.shape[2]);
        if !whole_slices && predictor.normalization(max_value).per_image() {
            tracing::warn!(
                "per-image normalisation uses the statistics of each block with its context, not of whole slices (blocks of {}x{} in slices of {}x{})",
                plan.block_yx.0,
                plan.block_yx.1,
                info.shape[1],
                info.shape[2]
            );
        }
        let model_bytes = model.bytes();
        let identity = json!({
            "format": 1,
            "model": {
                "file": model.path().file_name().map(|n| n.to_string_lossy().into_owned()),
                "bytes": model_bytes.len(),
                "fnv1a64": format!("{:016x}", fnv1a64(model_bytes)),
            },
            "options": {
                "tile": predict.tile.to_string(),
                "halo": halo,
                "overlap": predict.overlap,
                "blend": format!("{:?}", predict.blend),
                "tta": predict.tta,
                "tile_z": volumetric.then_some(predict.tile_z),
                "batch": predict.batch,
                "layout": predictor.io().layout.to_string(),
                "normalize": format!("{:?}", predict.normalize),
                "size_multiple": multiple,
                "output_type": opts.output_type.to_string(),
                "threshold": opts.threshold,
            },
            "input": {
                "shape": info.shape,
                "channels": info.channels,
                "depth": format!("{:?}", info.depth),
            },
            "region": {
                "z": [plan.region[0].start, plan.region[0].end],
                "y": [plan.region[1].start, plan.region[1].end],
                "x": [plan.region[2].start, plan.region[2].end],
            },
            "blocks": {"slab": plan.slab, "rows": plan.block_yx.0, "columns": plan.block_yx.1},
        });
        Ok(VolumeJob { model, predictor, reader, output: output.to_path_buf(), kind, opts, plan, classes, identity })
    }

    /// The block plan.
    pub fn plan(&self) -> &VolumePlan {
        &self.plan
    }

    /// Model output channels.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The blocks this run computes (its shard's, or all).
    pub fn my_blocks(&self) -> Range<usize> {
        match self.opts.shard {
            Some(s) => s.blocks(self.plan.len()),
            None => 0..self.plan.len(),
        }
    }

    /// The settings recorded in the output (compared when resuming or joining).
    pub fn identity(&self) -> &Value {
        &self.identity
    }

    /// The predictor (tiling, halo, model interface).
    pub fn predictor(&self) -> &Predictor<'a> {
        &self.predictor
    }

    fn kout(&self) -> usize {
        self.opts.output_type.channels(self.classes)
    }

    /// Opens (creates, joins or replaces) the output.
    fn open_sink<T: VolumeSample>(&self) -> Result<(Sink<T>, bool, Vec<PathBuf>), InferError> {
        let [zn, yn, xn] = self.plan.shape();
        let kout = self.kout();
        let dtype = T::DTYPE;
        match self.kind {
            VolumeOutput::Zarr => {
                let spec = ZarrVolumeSpec {
                    shape: [zn, yn, xn],
                    channels: (kout > 1).then_some(kout),
                    chunks: [self.plan.slab, self.plan.chunk_yx.0, self.plan.chunk_yx.1],
                    dtype,
                    origin: [self.plan.region[0].start, self.plan.region[1].start, self.plan.region[2].start],
                    name: self
                        .model
                        .path()
                        .file_stem()
                        .map(|n| format!("{} {}", n.to_string_lossy(), self.opts.output_type))
                        .unwrap_or_default(),
                    identity: self.identity.clone(),
                    planar: false,
                    channel_labels: channel_labels(&self.model.metadata().classes, kout),
                };
                let mode = if self.opts.overwrite {
                    CreateMode::Overwrite
                } else if self.opts.resume || self.opts.shard.is_some() {
                    CreateMode::Join
                } else {
                    CreateMode::New
                };
                let (w, created) = ZarrVolumeWriter::create(&self.output, spec, mode)?;
                Ok((Sink::Zarr(Box::new(w)), created, vec![self.output.clone()]))
            }
            VolumeOutput::Tiff => {
                // One ImageJ hyperstack: per slice, a page per channel (the order of `write_slab`).
                let writer = TiffStackWriter::create(&self.output, xn, yn, zn * kout, dtype, self.opts.overwrite)?
                    .hyperstack(kout, zn)?;
                Ok((Sink::Tiff(Box::new(writer), None), true, vec![self.output.clone()]))
            }
            VolumeOutput::Slices => {
                let writer = SliceFolderWriter::create(&self.output, dtype)?;
                let id_path = self.output.join(SLICES_IDENTITY);
                let stored = std::fs::read(&id_path).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                let channel = |c: usize| (kout > 1).then_some(c);
                let planned = |z: usize| (0..kout).map(move |c| (z, channel(c)));
                let first_existing = self.plan.region[0]
                    .clone()
                    .flat_map(planned)
                    .map(|(z, c)| writer.slice_path(z, c))
                    .find(|p| p.exists());
                if self.opts.resume {
                    match (&stored, &first_existing) {
                        (Some(s), _) if *s != self.identity => {
                            return Err(bioseg_data::DataError::IncompatibleOutput {
                                path: self.output.clone(),
                                reason: format!("{} differs", SLICES_IDENTITY),
                            }
                            .into());
                        }
                        (None, Some(p)) => {
                            return Err(bioseg_data::DataError::IncompatibleOutput {
                                path: self.output.clone(),
                                reason: format!(
                                    "{} exists but no {} says how it was made",
                                    p.display(),
                                    SLICES_IDENTITY
                                ),
                            }
                            .into());
                        }
                        _ => {}
                    }
                } else if let Some(p) = first_existing
                    && !self.opts.overwrite
                {
                    return Err(bioseg_data::DataError::OutputExists { path: p }.into());
                }
                bioseg_data::write_bytes_atomic(
                    &id_path,
                    &serde_json::to_vec_pretty(&self.identity).unwrap_or_default(),
                )?;
                Ok((Sink::Slices(writer, None), stored.is_none(), vec![self.output.clone()]))
            }
        }
    }

    /// Whether block `b`'s output exists (resume).
    fn block_done<T>(&self, sink: &Sink<T>, b: &Block) -> bool {
        match sink {
            Sink::Zarr(w) => {
                let (cy, cx) = self.plan.chunk_yx;
                let iz = b.z.start / self.plan.slab;
                (b.y.start / cy..b.y.end.div_ceil(cy))
                    .all(|iy| (b.x.start / cx..b.x.end.div_ceil(cx)).all(|ix| w.chunk_exists([iz, iy, ix])))
            }
            Sink::Slices(w, _) => {
                let kout = self.kout();
                let z0 = self.plan.region[0].start;
                b.z.clone().all(|z| (0..kout).all(|c| w.slice_path(z0 + z, (kout > 1).then_some(c)).exists()))
            }
            Sink::Tiff(..) => false,
        }
    }

    /// Reads block `b` with its context and predicts each slice; returns the block's output
    /// and the number of tiles run.
    fn predict_block<T: VolumeSample>(&self, b: &Block) -> Result<(Array4<T>, usize), InferError> {
        let info = self.reader.info();
        let [rz, ry, rx] = &self.plan.region;
        let zabs = rz.start + b.z.start..rz.start + b.z.end;
        let yabs = ry.start + b.y.start..ry.start + b.y.end;
        let xabs = rx.start + b.x.start..rx.start + b.x.end;
        let read_y = self.plan.read_range(&yabs, info.shape[1]);
        let read_x = self.plan.read_range(&xabs, info.shape[2]);
        let max_value = info.depth.max_value().unwrap_or(1.0);
        let (oy, ox) = (yabs.start - read_y.start, xabs.start - read_x.start);
        let (ny, nx) = (yabs.len(), xabs.len());
        if self.predictor.io().volumetric {
            return self.predict_block_3d(b, [zabs, read_y, read_x], max_value);
        }
        let input = self.reader.read_slab(zabs, read_y.clone(), read_x.clone())?;
        let slices: Vec<Result<(Array3<T>, usize), InferError>> = (0..b.z.len())
            .into_par_iter()
            .map(|i| {
                let pred = self.predictor.predict(input.index_axis(Axis(0), i), max_value, &|_| {})?;
                let crop = pred.probs.slice(s![.., oy..oy + ny, ox..ox + nx]);
                Ok((convert(crop, self.opts.output_type, self.opts.threshold).into_samples()?, pred.tiles))
            })
            .collect();
        drop(input);
        let kout = self.kout();
        let nz = b.z.len();
        let mut tiles = 0;
        let mut out = Array4::default((kout, nz, ny, nx));
        for (i, r) in slices.into_iter().enumerate() {
            let (slice, t) = r?;
            tiles += t;
            out.slice_mut(s![.., i, .., ..]).assign(&slice);
        }
        Ok((out, tiles))
    }

    /// [`predict_block`](Self::predict_block) for a volumetric model: the block is read with
    /// its context along z too and predicted in 3-D tiles.
    fn predict_block_3d<T: VolumeSample>(
        &self,
        b: &Block,
        [zabs, read_y, read_x]: [Range<usize>; 3],
        max_value: f32,
    ) -> Result<(Array4<T>, usize), InferError> {
        let info = self.reader.info();
        let [_, ry, rx] = &self.plan.region;
        let read_z = self.plan.read_range(&zabs, info.shape[0]);
        let oz = zabs.start - read_z.start;
        let oy = ry.start + b.y.start - read_y.start;
        let ox = rx.start + b.x.start - read_x.start;
        let (nz, ny, nx) = (b.z.len(), b.y.len(), b.x.len());
        let input = self.reader.read_slab(read_z, read_y, read_x)?;
        let pred = self.predictor.predict_volume(input.view(), max_value, &|_| {})?;
        drop(input);
        let kout = self.kout();
        let mut out = Array4::default((kout, nz, ny, nx));
        for i in 0..nz {
            let crop = pred.probs.slice(s![.., oz + i, oy..oy + ny, ox..ox + nx]);
            let slice: Array3<T> = convert(crop, self.opts.output_type, self.opts.threshold).into_samples()?;
            out.slice_mut(s![.., i, .., ..]).assign(&slice);
        }
        Ok((out, pred.tiles))
    }

    /// Hands block `b`'s output to the sink; TIFF and folder sinks write a slab once its last
    /// block is in.
    fn store_block<T: VolumeSample>(&self, sink: &mut Sink<T>, b: &Block, data: Array4<T>) -> Result<(), InferError> {
        let [_, yn, xn] = self.plan.shape();
        let kout = self.kout();
        match sink {
            Sink::Zarr(w) => {
                let origin = [b.z.start, b.y.start, b.x.start];
                w.write_region(origin, data.view(), self.opts.resume)?;
                Ok(())
            }
            Sink::Tiff(_, slot) | Sink::Slices(_, slot) => {
                let iz = b.z.start / self.plan.slab;
                if slot.as_ref().is_none_or(|(z, _)| *z != iz) {
                    *slot = Some((iz, Array4::default((kout, b.z.len(), yn, xn))));
                }
                if let Some((_, buf)) = slot.as_mut() {
                    buf.slice_mut(s![.., .., b.y.clone(), b.x.clone()]).assign(&data);
                }
                let full = if b.y.end == yn && b.x.end == xn { slot.take() } else { None };
                if let Some((_, full)) = full {
                    self.write_slab(sink, b.z.start, full)?;
                }
                Ok(())
            }
        }
    }

    /// Writes a slab of whole output slices (`[channels, z, y, x]`) to a TIFF or folder sink.
    fn write_slab<T: VolumeSample>(
        &self,
        sink: &mut Sink<T>,
        z_start: usize,
        data: Array4<T>,
    ) -> Result<(), InferError> {
        let [_, yn, xn] = self.plan.shape();
        let kout = self.kout();
        let z0 = self.plan.region[0].start + z_start;
        for i in 0..data.dim().1 {
            for c in 0..kout {
                let plane: Vec<T> = data.slice(s![c, i, .., ..]).iter().copied().collect();
                match &mut *sink {
                    Sink::Tiff(w, _) => w.write_page(&plane)?,
                    Sink::Slices(w, _) => {
                        w.write(z0 + i, (kout > 1).then_some(c), xn, yn, &plane)?;
                    }
                    Sink::Zarr(_) => {}
                }
            }
        }
        Ok(())
    }

    /// Runs the job: creates or joins the output and computes this run's blocks in order,
    /// calling `on_progress` after each.
    pub fn run(self, on_progress: &dyn Fn(&VolumeProgress)) -> Result<VolumeReport, InferError> {
        match self.opts.output_type.dtype() {
            VolumeDType::U8 => self.run_as::<u8>(on_progress),
            VolumeDType::F32 => self.run_as::<f32>(on_progress),
        }
    }

    /// [`run`](Self::run) with the output type's sample type.
    fn run_as<T: VolumeSample>(self, on_progress: &dyn Fn(&VolumeProgress)) -> Result<VolumeReport, InferError> {
        let start = Instant::now();
        let (mut sink, created, outputs) = self.open_sink::<T>()?;
        let mine = self.my_blocks();
        let [_, yn, xn] = self.plan.shape();
        let slice_pixels = (yn * xn) as u64;
        let voxels = |b: &Block| (b.z.len() * b.y.len() * b.x.len()) as u64;
        let voxels_total: u64 = mine.clone().map(|i| voxels(&self.plan.block(i))).sum();
        let mut progress =
            VolumeProgress { voxels_done: 0, voxels_total, voxels_computed: 0, slice_pixels, seconds: 0.0 };
        let (mut run, mut skipped, mut tiles) = (0, 0, 0);
        for i in mine.clone() {
            let b = self.plan.block(i);
            if self.opts.resume && self.block_done(&sink, &b) {
                skipped += 1;
                progress.voxels_done += voxels(&b);
            } else {
                let (data, t) = self.predict_block::<T>(&b)?;
                self.store_block(&mut sink, &b, data)?;
                run += 1;
                tiles += t;
                progress.voxels_done += voxels(&b);
                progress.voxels_computed += voxels(&b);
                if let Some(d) = self.opts.throttle {
                    std::thread::sleep(d);
                }
            }
            progress.seconds = start.elapsed().as_secs_f64();
            on_progress(&progress);
        }
        if let Sink::Tiff(writer, _) = sink {
            writer.finish()?;
        }
        Ok(VolumeReport {
            plan: self.plan.clone(),
            classes: self.classes,
            blocks: mine,
            blocks_run: run,
            blocks_skipped: skipped,
            tiles,
            voxels: progress.voxels_computed,
            seconds: start.elapsed().as_secs_f64(),
            created,
            outputs,
        })
    }
}

/// Peak resident memory of this process (`VmHWM` of `/proc/self/status`), in bytes, where the
/// system reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bioseg_data::SampleDepth;
    use bioseg_data::volume::VolumeFormat;

    #[test]
    fn parses_command_line_values() {
        assert_eq!("2:5".parse::<Span>().unwrap(), Span { start: Some(2), end: Some(5) });
        assert_eq!(":5".parse::<Span>().unwrap(), Span { start: None, end: Some(5) });
        assert!("5:2".parse::<Span>().is_err());
        assert!("5".parse::<Span>().is_err());
        assert!("a:2".parse::<Span>().is_err());
        let roi: Roi = "10:20,0:".parse().unwrap();
        assert_eq!(roi.x.resolve(30, "x").unwrap(), 0..30);
        assert!(roi.y.resolve(15, "y").is_err());
        assert_eq!("2/3".parse::<Shard>().unwrap(), Shard { index: 2, count: 3 });
        for bad in ["0/3", "5/3", "1/0", "x", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert!("5/3".parse::<Shard>().unwrap_err().contains("numbered from 1"));
        assert_eq!("512M".parse::<ByteSize>().unwrap(), ByteSize(512 << 20));
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert!("12Q".parse::<ByteSize>().is_err());
        assert!("0".parse::<ByteSize>().is_err());
    }

    #[test]
    fn shards_partition_the_blocks() {
        for total in [0, 1, 2, 7, 100] {
            for n in 1..6 {
                let mut next = 0;
                for i in 1..=n {
                    let r = Shard { index: i, count: n }.blocks(total);
                    assert_eq!(r.start, next);
                    next = r.end;
                }
                assert_eq!(next, total);
            }
        }
    }

    fn info(shape: [usize; 3]) -> VolumeInfo {
        VolumeInfo {
            shape,
            channels: 1,
            depth: SampleDepth::U8,
            chunks: [1, shape[1], shape[2]],
            format: VolumeFormat::Tiff,
        }
    }

    #[test]
    fn plans_cover_the_region_and_respect_the_budget() {
        let i = info([40, 1000, 900]);
        let inputs = PlanInputs {
            info: &i,
            classes: 2,
            halo: 44,
            multiple: 16,
            gaussian: false,
            volumetric: false,
            output: VolumeOutput::Zarr,
        };
        let opts = VolumeOptions {
            z_range: Some("3:37".parse().unwrap()),
            roi: Some("5:995,100:".parse().unwrap()),
            ..Default::default()
        };
        let p = plan_volume(inputs, &opts).unwrap();
        assert_eq!(p.slab, DEFAULT_SLAB);
        assert_eq!(p.block_yx, (990, 800));
        assert_eq!(p.context, 48);
        let mut covered = 0;
        for k in 0..p.len() {
            let b = p.block(k);
            covered += b.z.len() * b.y.len() * b.x.len();
        }
        assert_eq!(covered, 34 * 990 * 800);
        // Reads start on the size multiple and include the context where data exists.
        let r = p.read_range(&(105..300), 1000);
        assert_eq!((r.start % 16, r.end), (0, 348));
        assert!(r.start <= 105 - 48);
        for budget in [64u64 << 20, 16 << 20, 4 << 20] {
            let p = plan_volume(inputs, &VolumeOptions { memory_budget: Some(budget), ..opts.clone() }).unwrap();
            assert!(p.block_bytes <= budget / 4 * 3, "{p:?}");
            assert!(p.block_yx.0.is_multiple_of(p.chunk_yx.0) || p.block_yx.0 == 990);
        }
        let p = plan_volume(inputs, &VolumeOptions { memory_budget: Some(4 << 20), ..opts.clone() }).unwrap();
        assert_eq!(p.slab, 1);
        assert!(p.block_yx.0 < 990);
        let e = plan_volume(inputs, &VolumeOptions { memory_budget: Some(1 << 16), ..opts.clone() }).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        let e = plan_volume(inputs, &VolumeOptions { z_range: Some("30:41".parse().unwrap()), ..Default::default() })
            .unwrap_err();
        assert!(e.to_string().contains("--z-range 30:41"), "{e}");
    }
}
