//! Volumes: 3-D image stacks read slab by slab and written chunk by chunk.
//!
//! A volume is `z × y × x` voxels with one or more channels. Three on-disk forms are read
//! through one trait, [`VolumeReader`], whose [`read_slab`](VolumeReader::read_slab) returns any
//! box of the volume as a `[z, y, x, c]` array of `f32` samples on their original scale (the same
//! convention as [`crate::read_image`]):
//!
//! | form | reader | what is read for a slab |
//! | --- | --- | --- |
//! | multi-page TIFF (classic or BigTIFF) | [`TiffVolume`] | only the pages of the slab, and of each page only the strips or tiles that overlap it |
//! | a folder of 2-D slices (`.png`, `.tif`), natural sort order | [`SliceFolderVolume`] | only the slab's files |
//! | a Zarr array, v2 or v3 (OME-Zarr: level 0 of the first multiscale) | [`ZarrVolume`] | only the chunks that overlap the slab |
//!
//! [`open_volume`] picks the reader from the path ([`detect_volume_format`]), or as told.
//!
//! Writers, all atomic (a file or chunk appears complete under its final name or not at all):
//! - [`ZarrVolumeWriter`]: a Zarr v3 store with OME-Zarr 0.5 metadata (one multiscale level,
//!   axes `c, z, y, x` or `z, y, x`, `uint8` or `float32`, zstd), created idempotently by
//!   whichever of several processes comes first; every chunk is written to a temporary file and
//!   renamed ([`AtomicFilesystemStore`]), and [`ZarrVolumeWriter::chunk_exists`] tells which
//!   chunks a previous run already wrote.
//! - [`TiffStackWriter`]: a multi-page TIFF streamed page by page into a temporary file that is
//!   renamed when the last page is written (BigTIFF when the stack exceeds 3 GiB).
//! - [`SliceFolderWriter`]: one atomically written image per slice.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ndarray::{Array3, Array4, ArrayView4, ArrayViewMut3, Axis, s};
use rayon::prelude::*;
use serde_json::{Value, json};
use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::encoder::{TiffEncoder, TiffKindBig, TiffKindStandard, colortype};
use tiff::tags::Tag;
use zarrs::array::{Array, ArraySubset, CodecOptions};
use zarrs::filesystem::FilesystemStore;
use zarrs::storage::byte_range::ByteRangeIterator;
use zarrs::storage::{
    Bytes, MaybeBytesIterator, OffsetBytesIterator, ReadableStorageTraits, StorageError, StoreKey, StorePrefix,
    WritableStorageTraits,
};

use crate::atomic::write_bytes_atomic;
use crate::dataset::list_images;
use crate::error::{DataError, one_line};
use crate::image::{
    ImageFormat, MAX_PIXELS, SampleDepth, image_dimensions, read_image, write_gray_f32_tiff, write_gray_u8,
};

/// Prefix of temporary files and folders (hidden, so listings skip them).
const TEMP_PREFIX: &str = ".bioseg-tmp-";

/// The on-disk forms of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeFormat {
    /// A multi-page TIFF (classic or BigTIFF), one page per z slice.
    Tiff,
    /// A folder of 2-D images (`.png`, `.tif`, `.tiff`), one per z slice, in natural order.
    Slices,
    /// A Zarr array (v2 or v3), or an OME-Zarr group (its level 0 is read).
    Zarr,
}

impl std::str::FromStr for VolumeFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tiff" | "tif" => Ok(VolumeFormat::Tiff),
            "slices" | "folder" => Ok(VolumeFormat::Slices),
            "zarr" => Ok(VolumeFormat::Zarr),
            o => Err(format!("unknown volume format `{o}` (expected tiff, slices or zarr)")),
        }
    }
}

impl std::fmt::Display for VolumeFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VolumeFormat::Tiff => "tiff",
            VolumeFormat::Slices => "slices",
            VolumeFormat::Zarr => "zarr",
        })
    }
}

/// What a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeInfo {
    /// Size `[z, y, x]` in voxels.
    pub shape: [usize; 3],
    /// Channels per voxel.
    pub channels: usize,
    /// The stored sample type (integer types other than 8/16-bit unsigned read as `F32`).
    pub depth: SampleDepth,
    /// The storage's own blocking `[z, y, x]`: Zarr chunks, TIFF strips or tiles (z = 1), a
    /// whole slice for a folder. Reading slabs aligned to it reads nothing twice.
    pub chunks: [usize; 3],
    /// The on-disk form.
    pub format: VolumeFormat,
}

impl VolumeInfo {
    /// Number of voxels.
    pub fn voxels(&self) -> u64 {
        self.shape.iter().map(|&n| n as u64).product()
    }
}

/// A volume opened for reading slab by slab. Implementations are cheap to share between
/// threads; reads of one reader may be serialised internally.
pub trait VolumeReader: Send + Sync + std::fmt::Debug {
    /// The file or folder the volume comes from.
    fn path(&self) -> &Path;
    /// Shape, channels, sample type and native chunking.
    fn info(&self) -> &VolumeInfo;
    /// Reads the box `z × y × x` (half-open ranges within [`VolumeInfo::shape`]) as
    /// `[z, y, x, channels]` samples on their original scale.
    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError>;
}

/// A [`DataError::Volume`] for `path`.
fn vol_err(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Volume { path: path.to_path_buf(), reason: reason.into() }
}

/// The lower-case extension of `path`.
fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default()
}

/// Whether the folder `path` holds Zarr metadata at its root.
fn has_zarr_metadata(path: &Path) -> bool {
    ["zarr.json", ".zarray", ".zgroup"].iter().any(|f| path.join(f).is_file())
}

/// The format of the volume at `path`: a `.zarr` folder or one holding `zarr.json`, `.zarray`
/// or `.zgroup` is Zarr, any other folder a folder of slices, a `.tif`/`.tiff` file a
/// multi-page TIFF.
///
/// Errors: the path does not exist ([`DataError::Read`]) or names another kind of file
/// ([`DataError::UnsupportedFormat`]).
pub fn detect_volume_format(path: impl AsRef<Path>) -> Result<VolumeFormat, DataError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| DataError::read(path, e))?;
    let ext = extension(path);
    if meta.is_dir() {
        if ext == "zarr" || has_zarr_metadata(path) {
            return Ok(VolumeFormat::Zarr);
        }
        return Ok(VolumeFormat::Slices);
    }
    match ext.as_str() {
        "tif" | "tiff" => Ok(VolumeFormat::Tiff),
        _ => Err(DataError::UnsupportedFormat {
            path: path.to_path_buf(),
            expected: "a multi-page .tif/.tiff, a .zarr store or a folder of slices",
        }),
    }
}

/// Opens the volume at `path`, as `format` or as [`detect_volume_format`] finds.
pub fn open_volume(path: impl AsRef<Path>, format: Option<VolumeFormat>) -> Result<Box<dyn VolumeReader>, DataError> {
    let path = path.as_ref();
    let format = match format {
        Some(f) => {
            std::fs::metadata(path).map_err(|e| DataError::read(path, e))?;
            f
        }
        None => detect_volume_format(path)?,
    };
    Ok(match format {
        VolumeFormat::Tiff => Box::new(TiffVolume::open(path)?),
        VolumeFormat::Slices => Box::new(SliceFolderVolume::open(path)?),
        VolumeFormat::Zarr => Box::new(ZarrVolume::open(path)?),
    })
}

/// Checks that a slab request lies within `shape` and is not empty.
fn check_slab(
    path: &Path,
    shape: [usize; 3],
    z: &Range<usize>,
    y: &Range<usize>,
    x: &Range<usize>,
) -> Result<(), DataError> {
    for (name, r, n) in [("z", z, shape[0]), ("y", y, shape[1]), ("x", x, shape[2])] {
        if r.start >= r.end || r.end > n {
            return Err(vol_err(
                path,
                format!("{name} range {}..{} is empty or outside the volume's 0..{n}", r.start, r.end),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Multi-page TIFF
// ---------------------------------------------------------------------------

/// A multi-page TIFF (classic or BigTIFF) read lazily: the page directories are walked once
/// when opening, and a slab decodes only its pages' strips or tiles that overlap it.
///
/// Every page must have the size, colour model and sample type of the first. Gray, gray+alpha,
/// RGB and RGBA pages of 8/16-bit unsigned or float samples are read (alpha dropped);
/// planar-configuration colour pages are not.
pub struct TiffVolume {
    path: PathBuf,
    info: VolumeInfo,
    /// Stored samples per pixel (alpha included).
    samples: usize,
    decoder: Mutex<Decoder<BufReader<File>>>,
}

impl std::fmt::Debug for TiffVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffVolume").field("path", &self.path).field("info", &self.info).finish()
    }
}

/// Size and sample layout of one TIFF page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PageLayout {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) samples: usize,
    pub(crate) channels: usize,
    pub(crate) color: tiff::ColorType,
}

/// Maps a `tiff` error on `page` of `path` to a [`DataError`].
pub(crate) fn tiff_err(path: &Path, page: usize, e: tiff::TiffError) -> DataError {
    match e {
        tiff::TiffError::UnsupportedError(u) => {
            DataError::UnsupportedImage { path: path.to_path_buf(), reason: format!("page {page}: {}", one_line(u)) }
        }
        tiff::TiffError::IoError(io) if io.kind() != io::ErrorKind::UnexpectedEof => DataError::read(path, io),
        tiff::TiffError::IoError(_) => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: format!("page {page}: file is truncated") }
        }
        other => {
            DataError::CorruptImage { path: path.to_path_buf(), reason: format!("page {page}: {}", one_line(other)) }
        }
    }
}

/// The layout of the decoder's current page.
pub(crate) fn page_layout(
    path: &Path,
    page: usize,
    decoder: &mut Decoder<BufReader<File>>,
) -> Result<PageLayout, DataError> {
    let (w, h) = decoder.dimensions().map_err(|e| tiff_err(path, page, e))?;
    let (width, height) = (w as usize, h as usize);
    if width == 0 || height == 0 || (width as u64).saturating_mul(height as u64) > MAX_PIXELS {
        return Err(DataError::BadDimensions {
            path: path.to_path_buf(),
            width: width as u64,
            height: height as u64,
            reason: if width == 0 || height == 0 { "zero-sized page" } else { "more than 2^31 pixels" },
        });
    }
    let color = decoder.colortype().map_err(|e| tiff_err(path, page, e))?;
    let Some((samples, channels)) = crate::image::tiff_channels(color) else {
        return Err(DataError::UnsupportedImage {
            path: path.to_path_buf(),
            reason: format!("page {page}: TIFF color type {color:?}"),
        });
    };
    if samples > 1 {
        let planar = decoder.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).map_err(|e| tiff_err(path, page, e))?;
        if planar == Some(2) {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("page {page}: planar (separate-plane) colour samples"),
            });
        }
    }
    Ok(PageLayout { width, height, samples, channels, color })
}

/// Decoded samples as `f32`, with the sample type they had.
fn decoded_f32(path: &Path, page: usize, r: DecodingResult) -> Result<(Vec<f32>, SampleDepth), DataError> {
    Ok(match r {
        DecodingResult::U8(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U8),
        DecodingResult::U16(v) => (v.into_iter().map(f32::from).collect(), SampleDepth::U16),
        DecodingResult::F32(v) => (v, SampleDepth::F32),
        DecodingResult::F64(v) => (v.into_iter().map(|x| x as f32).collect(), SampleDepth::F32),
        _ => {
            return Err(DataError::UnsupportedImage {
                path: path.to_path_buf(),
                reason: format!("page {page}: sample format (expected unsigned 8/16-bit or float)"),
            });
        }
    })
}

impl TiffVolume {
    /// Opens a (multi-page) TIFF and checks that all pages agree.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| DataError::read(path, e))?;
        let mut decoder =
            Decoder::new(BufReader::new(file)).map_err(|e| tiff_err(path, 0, e))?.with_limits(Limits::unlimited());
        let first = page_layout(path, 0, &mut decoder)?;
        let (cw, ch) = decoder.chunk_dimensions();
        let chunks = [1, (ch as usize).clamp(1, first.height), (cw as usize).clamp(1, first.width)];
        let (_, depth) = decoded_f32(path, 0, decoder.read_chunk(0).map_err(|e| tiff_err(path, 0, e))?)?;
        // Later page directories are parsed with the `tiff` crate's default limits (see
        // `DIRECTORY_LIMITS_NOTE` at `tiff_page_count`); pixel reads get unlimited ones again.
        let mut decoder = decoder.with_limits(Limits::default());
        let mut pages = 1usize;
        while decoder.more_images() {
            decoder.next_image().map_err(|e| tiff_err(path, pages, e))?;
            let l = page_layout(path, pages, &mut decoder)?;
            if l != first {
                return Err(vol_err(
                    path,
                    format!(
                        "page {pages} is {}x{} {:?} but page 0 is {}x{} {:?}; a volume's pages must agree",
                        l.width, l.height, l.color, first.width, first.height, first.color
                    ),
                ));
            }
            pages += 1;
        }
        let decoder = decoder.with_limits(Limits::unlimited());
        Ok(TiffVolume {
            path: path.to_path_buf(),
            info: VolumeInfo {
                shape: [pages, first.height, first.width],
                channels: first.channels,
                depth,
                chunks,
                format: VolumeFormat::Tiff,
            },
            samples: first.samples,
            decoder: Mutex::new(decoder),
        })
    }

    /// Reads rows `y` and columns `x` of the current page into `out` (`[y, x, c]`).
    fn read_region(
        &self,
        page: usize,
        decoder: &mut Decoder<BufReader<File>>,
        y: &Range<usize>,
        x: &Range<usize>,
        out: &mut ArrayViewMut3<f32>,
    ) -> Result<(), DataError> {
        let [_, height, width] = self.info.shape;
        let (cw, ch) = decoder.chunk_dimensions();
        let (cw, ch) = (cw.max(1) as usize, ch.max(1) as usize);
        let (cw, across) = match decoder.get_chunk_type() {
            ChunkType::Strip => (width, 1),
            ChunkType::Tile => (cw, width.div_ceil(cw)),
        };
        let (cin, cout) = (self.samples, self.info.channels);
        for ty in y.start / ch..=(y.end - 1) / ch {
            for tx in x.start / cw..=(x.end - 1) / cw {
                let index = ty * across + tx;
                let (dw, dh) = (cw.min(width - tx * cw), ch.min(height - ty * ch));
                let chunk = decoder.read_chunk(index as u32).map_err(|e| tiff_err(&self.path, page, e))?;
                let (samples, depth) = decoded_f32(&self.path, page, chunk)?;
                if depth != self.info.depth {
                    return Err(vol_err(
                        &self.path,
                        format!("page {page} has {depth:?} samples but page 0 has {:?}", self.info.depth),
                    ));
                }
                if samples.len() < dw * dh * cin {
                    return Err(DataError::CorruptImage {
                        path: self.path.clone(),
                        reason: format!(
                            "page {page}: block {index} decoded {} samples, expected {}",
                            samples.len(),
                            dw * dh * cin
                        ),
                    });
                }
                let rows = y.start.max(ty * ch)..y.end.min(ty * ch + dh);
                let cols = x.start.max(tx * cw)..x.end.min(tx * cw + dw);
                for row in rows {
                    let base = (row - ty * ch) * dw;
                    for col in cols.clone() {
                        let s = (base + col - tx * cw) * cin;
                        for k in 0..cout {
                            out[[row - y.start, col - x.start, k]] = samples[s + k];
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl VolumeReader for TiffVolume {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VolumeInfo {
        &self.info
    }

    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError> {
        check_slab(&self.path, self.info.shape, &z, &y, &x)?;
        let mut out = Array4::<f32>::zeros((z.len(), y.len(), x.len(), self.info.channels));
        let mut decoder =
            self.decoder.lock().map_err(|_| vol_err(&self.path, "an earlier read failed midway (poisoned lock)"))?;
        for (i, page) in z.enumerate() {
            decoder.seek_to_image(page).map_err(|e| tiff_err(&self.path, page, e))?;
            let mut plane = out.index_axis_mut(Axis(0), i);
            self.read_region(page, &mut decoder, &y, &x, &mut plane)?;
        }
        Ok(out)
    }
}

/// The number of pages of a TIFF file (1 for other images), without decoding pixel data.
pub fn tiff_page_count(path: impl AsRef<Path>) -> Result<usize, DataError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|e| DataError::read(path, e))?;
    let mut magic = [0u8; 4];
    {
        use std::io::Read;
        let mut f = &file;
        let n = f.read(&mut magic).map_err(|e| DataError::read(path, e))?;
        if n < 4 || !(magic == *b"II*\0" || magic == *b"MM\0*" || magic == *b"II+\0" || magic == *b"MM\0+") {
            return Ok(1);
        }
    }
    let mut reader = BufReader::new(file);
    reader.seek(io::SeekFrom::Start(0)).map_err(|e| DataError::read(path, e))?;
    // DIRECTORY_LIMITS_NOTE: the `tiff` crate's default limits, not unlimited ones. In `tiff`
    // 0.11 a directory's value arrays (strip offsets, byte counts, ...) are bounded only by
    // `decoding_buffer_size`, which the pixel readers lift; with it lifted, a corrupt directory
    // declaring billions of values made the decoder allocate them (hundreds of GiB) before
    // reading any. Pixel data is never decoded here, so the default limits only bound the
    // directories (as they already do for the first page, parsed by `Decoder::new`).
    let mut decoder = Decoder::new(reader).map_err(|e| tiff_err(path, 0, e))?;
    let mut pages = 1;
    while decoder.more_images() {
        decoder.next_image().map_err(|e| tiff_err(path, pages, e))?;
        pages += 1;
    }
    Ok(pages)
}

// ---------------------------------------------------------------------------
// Folder of slices
// ---------------------------------------------------------------------------

/// A folder of 2-D images, one per z slice, in natural order of their names
/// ([`crate::list_images`]: `.png`, `.tif`, `.tiff`, hidden files skipped).
///
/// All slices must have the size, channels and sample type of the first; a slab reads its
/// slices' files (in parallel) and crops them.
#[derive(Debug)]
pub struct SliceFolderVolume {
    path: PathBuf,
    files: Vec<PathBuf>,
    info: VolumeInfo,
}

impl SliceFolderVolume {
    /// Lists the folder and checks every slice's size from its header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        let files = list_images(path)?;
        let first = read_image(&files[0])?;
        let (h, w, c) = first.data.dim();
        for f in &files[1..] {
            let (fw, fh) = image_dimensions(f)?;
            if (fw as usize, fh as usize) != (w, h) {
                return Err(vol_err(
                    path,
                    format!(
                        "slice {} is {fw}x{fh} but {} is {w}x{h}; a volume's slices must agree",
                        f.display(),
                        files[0].display()
                    ),
                ));
            }
        }
        Ok(SliceFolderVolume {
            path: path.to_path_buf(),
            info: VolumeInfo {
                shape: [files.len(), h, w],
                channels: c,
                depth: first.depth,
                chunks: [1, h, w],
                format: VolumeFormat::Slices,
            },
            files,
        })
    }

    /// The slice files, in z order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl VolumeReader for SliceFolderVolume {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VolumeInfo {
        &self.info
    }

    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError> {
        check_slab(&self.path, self.info.shape, &z, &y, &x)?;
        let [_, h, w] = self.info.shape;
        let planes: Vec<Result<Array3<f32>, DataError>> = self.files[z.clone()]
            .par_iter()
            .map(|f| {
                let img = read_image(f)?;
                if img.data.dim() != (h, w, self.info.channels) || img.depth != self.info.depth {
                    return Err(vol_err(
                        &self.path,
                        format!(
                            "slice {} is {}x{}x{} {:?} but the volume is {w}x{h}x{} {:?}",
                            f.display(),
                            img.width(),
                            img.height(),
                            img.channels(),
                            img.depth,
                            self.info.channels,
                            self.info.depth
                        ),
                    ));
                }
                Ok(img.data.slice(s![y.clone(), x.clone(), ..]).to_owned())
            })
            .collect();
        let mut out = Array4::<f32>::zeros((z.len(), y.len(), x.len(), self.info.channels));
        for (i, p) in planes.into_iter().enumerate() {
            out.index_axis_mut(Axis(0), i).assign(&p?);
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Zarr
// ---------------------------------------------------------------------------

/// A Zarr array (v2 or v3) read chunk by chunk with `zarrs`.
///
/// The path may be the array itself or a group: an OME-Zarr group (`multiscales`, in the
/// attributes' `ome` object for 0.5 or at their top for 0.4) is read at
/// `multiscales[0].datasets[0].path`, its highest resolution. Axes come from the OME `axes`,
/// else the array's dimension names, else the rank: `(y, x)`, `(z, y, x)`, `(c, z, y, x)` or
/// `(t, c, z, y, x)` (one time point). Any integer or float data type is read.
pub struct ZarrVolume {
    path: PathBuf,
    node: String,
    array: Array<FilesystemStore>,
    /// Array dimension of t, c, z, y, x (y and x always present).
    axes: [Option<usize>; 5],
    info: VolumeInfo,
}

impl std::fmt::Debug for ZarrVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrVolume")
            .field("path", &self.path)
            .field("node", &self.node)
            .field("info", &self.info)
            .finish()
    }
}

/// Reads and parses a JSON file, `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>, DataError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| vol_err(path, format!("invalid JSON: {}", one_line(e)))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(DataError::read(path, e)),
    }
}

/// Names of OME `axes` (0.4+: objects with `name`; 0.3: strings).
fn ome_axis_names(ms: &Value) -> Option<Vec<String>> {
    let axes = ms.get("axes")?.as_array()?;
    axes.iter().map(|a| a.as_str().or_else(|| a.get("name").and_then(Value::as_str)).map(str::to_owned)).collect()
}

/// The array node of the Zarr store at `path` and its axis names if known.
fn resolve_zarr_node(path: &Path) -> Result<(String, Option<Vec<String>>), DataError> {
    let from_multiscales = |attrs: &Value, meta: &Path| -> Result<(String, Option<Vec<String>>), DataError> {
        let ms = attrs
            .get("ome")
            .and_then(|o| o.get("multiscales"))
            .or_else(|| attrs.get("multiscales"))
            .and_then(Value::as_array)
            .and_then(|m| m.first())
            .ok_or_else(|| {
                vol_err(meta, "a Zarr group without OME-Zarr multiscales: give the path of an array inside it")
            })?;
        let p = ms
            .get("datasets")
            .and_then(Value::as_array)
            .and_then(|d| d.first())
            .and_then(|d| d.get("path"))
            .and_then(Value::as_str)
            .ok_or_else(|| vol_err(meta, "OME-Zarr multiscales[0] has no datasets[0].path"))?;
        let p = p.trim_matches('/');
        if p.is_empty() || p.split('/').any(|c| c == ".." || c == "." || c.is_empty()) {
            return Err(vol_err(meta, format!("OME-Zarr dataset path `{p}` is not a relative path")));
        }
        Ok((format!("/{p}"), ome_axis_names(ms)))
    };
    let v3 = path.join("zarr.json");
    if let Some(meta) = read_json(&v3)? {
        return match meta.get("node_type").and_then(Value::as_str) {
            Some("array") => Ok(("/".into(), None)),
            Some("group") => from_multiscales(meta.get("attributes").unwrap_or(&Value::Null), &v3),
            _ => Err(vol_err(&v3, "zarr.json has no node_type `array` or `group`")),
        };
    }
    if path.join(".zarray").is_file() {
        let names = read_json(&path.join(".zattrs"))?
            .and_then(|a| a.get("_ARRAY_DIMENSIONS").cloned())
            .and_then(|d| serde_json::from_value::<Vec<String>>(d).ok());
        return Ok(("/".into(), names));
    }
    if path.join(".zgroup").is_file() {
        let attrs = read_json(&path.join(".zattrs"))?.unwrap_or(Value::Null);
        return from_multiscales(&attrs, &path.join(".zattrs"));
    }
    Err(vol_err(path, "not a Zarr store (no zarr.json, .zarray or .zgroup in the folder)"))
}

/// Assigns t, c, z, y, x to array dimensions from names (when they are all known) or the rank.
fn assign_axes(path: &Path, rank: usize, names: Option<&[String]>) -> Result<[Option<usize>; 5], DataError> {
    const ORDER: [&str; 5] = ["t", "c", "z", "y", "x"];
    if let Some(names) = names.filter(|n| n.len() == rank) {
        let mut axes = [None; 5];
        let mut ok = true;
        for (d, n) in names.iter().enumerate() {
            match ORDER.iter().position(|o| n.eq_ignore_ascii_case(o)) {
                Some(i) if axes[i].is_none() => axes[i] = Some(d),
                _ => ok = false,
            }
        }
        if ok && axes[3].is_some() && axes[4].is_some() {
            return Ok(axes);
        }
    }
    let by_rank: &[usize] = match rank {
        2 => &[3, 4],
        3 => &[2, 3, 4],
        4 => &[1, 2, 3, 4],
        5 => &[0, 1, 2, 3, 4],
        _ => {
            return Err(vol_err(
                path,
                format!("a rank-{rank} array: bioseg reads (y,x), (z,y,x), (c,z,y,x) or (t,c,z,y,x)"),
            ));
        }
    };
    let mut axes = [None; 5];
    for (d, &a) in by_rank.iter().enumerate() {
        axes[a] = Some(d);
    }
    Ok(axes)
}

/// Reads `subset` of `array` as `f32`, whatever its numeric data type.
fn retrieve_f32<S: ?Sized + ReadableStorageTraits + 'static>(
    array: &Array<S>,
    subset: &ArraySubset,
) -> Result<Vec<f32>, String> {
    use zarrs::array::data_type as dt;
    let t = array.data_type();
    macro_rules! get {
        ($ty:ty) => {
            array
                .retrieve_array_subset::<Vec<$ty>>(subset)
                .map(|v| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>())
                .map_err(one_line)
        };
    }
    if *t == dt::uint8() {
        get!(u8)
    } else if *t == dt::uint16() {
        get!(u16)
    } else if *t == dt::float32() {
        get!(f32)
    } else if *t == dt::float64() {
        get!(f64)
    } else if *t == dt::int8() {
        get!(i8)
    } else if *t == dt::int16() {
        get!(i16)
    } else if *t == dt::int32() {
        get!(i32)
    } else if *t == dt::uint32() {
        get!(u32)
    } else if *t == dt::int64() {
        get!(i64)
    } else if *t == dt::uint64() {
        get!(u64)
    } else if *t == dt::bool() {
        array
            .retrieve_array_subset::<Vec<bool>>(subset)
            .map(|v| v.into_iter().map(|x| f32::from(u8::from(x))).collect())
            .map_err(one_line)
    } else {
        Err(format!("data type {t} is not supported (expected an integer or float type)"))
    }
}

impl ZarrVolume {
    /// Opens a Zarr array, or the level 0 of an OME-Zarr group.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, DataError> {
        let path = path.as_ref();
        if !path.is_dir() {
            return Err(vol_err(path, "a Zarr store must be a folder"));
        }
        let (node, names) = resolve_zarr_node(path)?;
        let store = Arc::new(FilesystemStore::new(path).map_err(|e| vol_err(path, one_line(e)))?);
        let array = Array::open(store, &node)
            .map_err(|e| vol_err(path, format!("cannot open array {node}: {}", one_line(e))))?;
        let shape: Vec<usize> = array.shape().iter().map(|&n| n as usize).collect();
        let dim_names: Option<Vec<String>> = names.or_else(|| {
            let meta = read_json(&path.join(node.trim_start_matches('/')).join("zarr.json")).ok()??;
            serde_json::from_value(meta.get("dimension_names")?.clone()).ok()
        });
        let axes = assign_axes(path, shape.len(), dim_names.as_deref())?;
        let size = |a: usize| axes[a].map(|d| shape[d]).unwrap_or(1);
        if size(0) != 1 {
            return Err(vol_err(path, format!("the array has {} time points; bioseg reads volumes with one", size(0))));
        }
        if shape.contains(&0) {
            return Err(vol_err(path, format!("empty array of shape {shape:?}")));
        }
        use zarrs::array::data_type as dt;
        let t = array.data_type();
        let depth = if *t == dt::uint8() || *t == dt::bool() {
            SampleDepth::U8
        } else if *t == dt::uint16() {
            SampleDepth::U16
        } else {
            SampleDepth::F32
        };
        let chunk: Vec<usize> = array
            .chunk_shape(&vec![0; shape.len()])
            .map_err(|e| vol_err(path, one_line(e)))?
            .iter()
            .map(|n| n.get() as usize)
            .collect();
        let chunk_of = |a: usize| axes[a].map(|d| chunk[d]).unwrap_or(1);
        let info = VolumeInfo {
            shape: [size(2), size(3), size(4)],
            channels: size(1),
            depth,
            chunks: [chunk_of(2), chunk_of(3), chunk_of(4)],
            format: VolumeFormat::Zarr,
        };
        Ok(ZarrVolume { path: path.to_path_buf(), node, array, axes, info })
    }

    /// The node path of the array read inside the store (e.g. `/0` for OME-Zarr).
    pub fn node(&self) -> &str {
        &self.node
    }
}

impl VolumeReader for ZarrVolume {
    fn path(&self) -> &Path {
        &self.path
    }

    fn info(&self) -> &VolumeInfo {
        &self.info
    }

    fn read_slab(&self, z: Range<usize>, y: Range<usize>, x: Range<usize>) -> Result<Array4<f32>, DataError> {
        check_slab(&self.path, self.info.shape, &z, &y, &x)?;
        let rank = self.array.dimensionality();
        let mut ranges = vec![0..1u64; rank];
        let c = self.info.channels;
        let wanted = [0..1, 0..c, z.clone(), y.clone(), x.clone()];
        for (a, r) in wanted.iter().enumerate() {
            if let Some(d) = self.axes[a] {
                ranges[d] = r.start as u64..r.end as u64;
            }
        }
        let dims: Vec<usize> = ranges.iter().map(|r| (r.end - r.start) as usize).collect();
        let values = retrieve_f32(&self.array, &ArraySubset::new_with_ranges(&ranges))
            .map_err(|e| vol_err(&self.path, format!("reading array {}: {e}", self.node)))?;
        if values.len() != dims.iter().product::<usize>() {
            return Err(vol_err(&self.path, "the array returned a wrong number of samples"));
        }
        let mut strides = vec![1usize; rank];
        for d in (0..rank.saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * dims[d + 1];
        }
        let stride = |a: usize| self.axes[a].map(|d| strides[d]).unwrap_or(0);
        let (sc, sz, sy, sx) = (stride(1), stride(2), stride(3), stride(4));
        Ok(Array4::from_shape_fn((z.len(), y.len(), x.len(), c), |(i, j, k, ch)| {
            values[i * sz + j * sy + k * sx + ch * sc]
        }))
    }
}

// ---------------------------------------------------------------------------
// Atomic filesystem store
// ---------------------------------------------------------------------------

/// A `zarrs` filesystem store whose writes are atomic: each value is written to a hidden
/// temporary file in its folder, synced, and renamed over its key (`zarrs`' own
/// [`FilesystemStore`] truncates and writes in place, so a killed writer leaves a torn chunk).
/// Reads go to the wrapped store.
#[derive(Debug)]
pub struct AtomicFilesystemStore {
    inner: FilesystemStore,
}

impl AtomicFilesystemStore {
    /// A store rooted at `root` (a folder; created on the first write if missing).
    pub fn new(root: impl AsRef<Path>) -> Result<Self, DataError> {
        let root = root.as_ref();
        Ok(AtomicFilesystemStore { inner: FilesystemStore::new(root).map_err(|e| vol_err(root, one_line(e)))? })
    }

    /// The file that holds `key`.
    pub fn key_path(&self, key: &StoreKey) -> PathBuf {
        self.inner.key_to_fspath(key)
    }
}

impl ReadableStorageTraits for AtomicFilesystemStore {
    fn get_partial_many<'a>(
        &'a self,
        key: &StoreKey,
        byte_ranges: ByteRangeIterator<'a>,
    ) -> Result<MaybeBytesIterator<'a>, StorageError> {
        self.inner.get_partial_many(key, byte_ranges)
    }

    fn size_key(&self, key: &StoreKey) -> Result<Option<u64>, StorageError> {
        self.inner.size_key(key)
    }

    fn supports_get_partial(&self) -> bool {
        self.inner.supports_get_partial()
    }
}

impl WritableStorageTraits for AtomicFilesystemStore {
    fn set(&self, key: &StoreKey, value: Bytes) -> Result<(), StorageError> {
        let path = self.key_path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        write_bytes_atomic(&path, &value).map_err(|e| StorageError::Other(e.to_string()))
    }

    fn set_partial_many(&self, key: &StoreKey, offset_values: OffsetBytesIterator) -> Result<(), StorageError> {
        let mut bytes: Vec<u8> = self.inner.get(key)?.map(|b| b.to_vec()).unwrap_or_default();
        for (offset, value) in offset_values {
            let offset =
                usize::try_from(offset).map_err(|_| StorageError::Other(format!("offset {offset} too large")))?;
            if bytes.len() < offset + value.len() {
                bytes.resize(offset + value.len(), 0);
            }
            bytes[offset..offset + value.len()].copy_from_slice(&value);
        }
        self.set(key, Bytes::from(bytes))
    }

    fn erase(&self, key: &StoreKey) -> Result<(), StorageError> {
        self.inner.erase(key)
    }

    fn erase_prefix(&self, prefix: &StorePrefix) -> Result<(), StorageError> {
        self.inner.erase_prefix(prefix)
    }

    fn supports_set_partial(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------
// Zarr v3 / OME-Zarr writer
// ---------------------------------------------------------------------------

/// Sample type of a written volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeDType {
    /// 8-bit unsigned.
    U8,
    /// 32-bit float.
    F32,
}

impl VolumeDType {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            VolumeDType::U8 => 1,
            VolumeDType::F32 => 4,
        }
    }

    /// The Zarr v3 data type name.
    fn zarr_name(self) -> &'static str {
        match self {
            VolumeDType::U8 => "uint8",
            VolumeDType::F32 => "float32",
        }
    }
}

/// A sample type the volume writers store.
pub trait VolumeSample: zarrs::array::Element + Copy + Default + Send + Sync + 'static {
    /// Its [`VolumeDType`].
    const DTYPE: VolumeDType;
}

impl VolumeSample for u8 {
    const DTYPE: VolumeDType = VolumeDType::U8;
}

impl VolumeSample for f32 {
    const DTYPE: VolumeDType = VolumeDType::F32;
}

/// What a [`ZarrVolumeWriter`] creates.
#[derive(Debug, Clone, PartialEq)]
pub struct ZarrVolumeSpec {
    /// Size `[z, y, x]`.
    pub shape: [usize; 3],
    /// `Some(c)`: a `(c, z, y, x)` array whose chunks hold all channels; `None`: `(z, y, x)`.
    pub channels: Option<usize>,
    /// Chunk size `[z, y, x]`.
    pub chunks: [usize; 3],
    /// Sample type.
    pub dtype: VolumeDType,
    /// Position `[z, y, x]` of the first voxel in the source volume (the OME translation).
    pub origin: [usize; 3],
    /// Name of the multiscale (shown by viewers).
    pub name: String,
    /// Stored as the group attribute `bioseg`; a store is joined only when it is equal.
    pub identity: Value,
}

impl ZarrVolumeSpec {
    fn validate(&self, path: &Path) -> Result<(), DataError> {
        if self.shape.contains(&0) || self.chunks.contains(&0) || self.channels == Some(0) {
            return Err(vol_err(
                path,
                format!(
                    "cannot create an array of shape {:?} with chunks {:?} and channels {:?}",
                    self.shape, self.chunks, self.channels
                ),
            ));
        }
        Ok(())
    }

    fn array_shape(&self) -> Vec<usize> {
        let mut v = self.channels.map(|c| vec![c]).unwrap_or_default();
        v.extend(self.shape);
        v
    }

    fn array_chunks(&self) -> Vec<usize> {
        let mut v = self.channels.map(|c| vec![c]).unwrap_or_default();
        v.extend(self.chunks);
        v
    }

    /// The root group's `zarr.json`: OME-Zarr 0.5 multiscales (one level at `0`) and the
    /// identity.
    fn group_metadata(&self) -> Value {
        let mut axes = Vec::new();
        if self.channels.is_some() {
            axes.push(json!({"name": "c", "type": "channel"}));
        }
        for n in ["z", "y", "x"] {
            axes.push(json!({"name": n, "type": "space"}));
        }
        let mut scale = vec![1.0f64; axes.len()];
        scale.iter_mut().for_each(|s| *s = 1.0);
        let mut translation: Vec<f64> = self.channels.map(|_| vec![0.0]).unwrap_or_default();
        translation.extend(self.origin.iter().map(|&o| o as f64));
        json!({
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {
                "ome": {
                    "version": "0.5",
                    "multiscales": [{
                        "name": self.name,
                        "axes": axes,
                        "datasets": [{
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": scale},
                                {"type": "translation", "translation": translation}
                            ]
                        }]
                    }]
                },
                "bioseg": self.identity
            }
        })
    }

    /// The array's `zarr.json`: regular chunks, `/` chunk keys, bytes + zstd.
    fn array_metadata(&self) -> Value {
        let mut names: Vec<&str> = self.channels.map(|_| vec!["c"]).unwrap_or_default();
        names.extend(["z", "y", "x"]);
        let fill = match self.dtype {
            VolumeDType::U8 => json!(0),
            VolumeDType::F32 => json!(0.0),
        };
        json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": self.array_shape(),
            "data_type": self.dtype.zarr_name(),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": self.array_chunks()}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 3, "checksum": false}}
            ],
            "attributes": {},
            "dimension_names": names
        })
    }
}

/// What to do when a [`ZarrVolumeWriter`]'s store already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Fail with [`DataError::OutputExists`].
    New,
    /// Replace it (only a Zarr store, or a file, is ever replaced).
    Overwrite,
    /// Join it when it was created with the same spec (resume, or another shard of the same
    /// job), else fail with [`DataError::IncompatibleOutput`].
    Join,
}

/// How many chunks a [`ZarrVolumeWriter::write_region`] wrote and skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionWrite {
    /// Chunks written.
    pub written: usize,
    /// Chunks skipped because they existed.
    pub skipped: usize,
}

/// A Zarr v3 store with OME-Zarr 0.5 metadata, written chunk by chunk, atomically.
///
/// Layout: `PATH/zarr.json` (group: `ome` multiscales with one level, `bioseg` identity) and
/// `PATH/0/zarr.json` (the array), chunks at `PATH/0/c/<i>/<j>/...`.
pub struct ZarrVolumeWriter {
    path: PathBuf,
    store: Arc<AtomicFilesystemStore>,
    array: Array<AtomicFilesystemStore>,
    spec: ZarrVolumeSpec,
}

impl std::fmt::Debug for ZarrVolumeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZarrVolumeWriter").field("path", &self.path).field("spec", &self.spec).finish()
    }
}

/// The folder `path` is in (`.` for a bare name); it must exist.
fn existing_parent(path: &Path) -> Result<PathBuf, DataError> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(DataError::OutputFolder { dir: parent, reason: "folder does not exist".into() });
    }
    Ok(parent)
}

/// The first key whose values differ between two JSON objects, for error messages.
fn first_difference(stored: &Value, wanted: &Value) -> String {
    match (stored.as_object(), wanted.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (x, y) = (a.get(k).unwrap_or(&Value::Null), b.get(k).unwrap_or(&Value::Null));
                if x != y {
                    if x.is_object() && y.is_object() {
                        return format!("{k}.{}", first_difference(x, y));
                    }
                    return format!("{k} is {x} there, {y} now");
                }
            }
            "(no difference)".into()
        }
        _ => format!("{stored} there, {wanted} now"),
    }
}

impl ZarrVolumeWriter {
    /// Creates the store at `path` (its parent folder must exist), or per `mode` replaces or
    /// joins an existing one. Returns the writer and whether this call created the store.
    ///
    /// Creation is atomic and safe when several processes race: the metadata is written into
    /// a hidden temporary folder next to `path` that is then renamed to `path`; the rename
    /// fails for all but one process, and the others join (in [`CreateMode::Join`]) after
    /// checking the winner's metadata.
    pub fn create(path: impl AsRef<Path>, spec: ZarrVolumeSpec, mode: CreateMode) -> Result<(Self, bool), DataError> {
        let path = path.as_ref();
        spec.validate(path)?;
        let parent = existing_parent(path)?;
        let exists = std::fs::symlink_metadata(path).is_ok();
        if exists {
            match mode {
                CreateMode::New => {
                    return Err(DataError::OutputExists { path: path.to_path_buf() });
                }
                CreateMode::Join => {
                    Self::check_existing(path, &spec)?;
                    return Ok((Self::open_store(path, spec)?, false));
                }
                CreateMode::Overwrite => {
                    let meta = std::fs::symlink_metadata(path).map_err(|e| DataError::read(path, e))?;
                    let empty_dir =
                        meta.is_dir() && std::fs::read_dir(path).map(|mut d| d.next().is_none()).unwrap_or(false);
                    if meta.is_dir() && !empty_dir && !has_zarr_metadata(path) {
                        return Err(vol_err(path, "refusing to replace a folder that is not a Zarr store"));
                    }
                    let tmp = Self::build_temp(&parent, path, &spec)?;
                    let trash = tempfile::Builder::new()
                        .prefix(TEMP_PREFIX)
                        .tempdir_in(&parent)
                        .map_err(|e| DataError::OutputFolder { dir: parent.clone(), reason: e.to_string() })?;
                    let old = trash.path().join("old");
                    std::fs::rename(path, &old).map_err(|e| DataError::write(path, e))?;
                    std::fs::rename(tmp.path(), path).map_err(|e| DataError::write(path, e))?;
                    drop(trash);
                    return Ok((Self::open_store(path, spec)?, true));
                }
            }
        }
        let tmp = Self::build_temp(&parent, path, &spec)?;
        match std::fs::rename(tmp.path(), path) {
            Ok(()) => Ok((Self::open_store(path, spec)?, true)),
            Err(e) => {
                drop(tmp);
                if std::fs::symlink_metadata(path).is_err() {
                    return Err(DataError::write(path, e));
                }
                // Another process created it first.
                match mode {
                    CreateMode::Join => {
                        Self::check_existing(path, &spec)?;
                        Ok((Self::open_store(path, spec)?, false))
                    }
                    _ => Err(DataError::OutputExists { path: path.to_path_buf() }),
                }
            }
        }
    }

    /// Writes the metadata into a temporary folder beside `path`.
    fn build_temp(parent: &Path, path: &Path, spec: &ZarrVolumeSpec) -> Result<tempfile::TempDir, DataError> {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "volume".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{name}-"))
            .tempdir_in(parent)
            .map_err(|e| DataError::OutputFolder { dir: parent.to_path_buf(), reason: e.to_string() })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| DataError::write(tmp.path(), e))?;
        }
        let json = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
        write_bytes_atomic(tmp.path().join("zarr.json"), &json(&spec.group_metadata()))?;
        let arr = tmp.path().join("0");
        std::fs::create_dir(&arr).map_err(|e| DataError::write(&arr, e))?;
        write_bytes_atomic(arr.join("zarr.json"), &json(&spec.array_metadata()))?;
        Ok(tmp)
    }

    /// Checks that the store at `path` was created with `spec`.
    fn check_existing(path: &Path, spec: &ZarrVolumeSpec) -> Result<(), DataError> {
        let incompatible = |reason: String| DataError::IncompatibleOutput { path: path.to_path_buf(), reason };
        let group = read_json(&path.join("zarr.json"))?
            .ok_or_else(|| incompatible("it is not a Zarr v3 store written by bioseg".into()))?;
        let stored = group
            .get("attributes")
            .and_then(|a| a.get("bioseg"))
            .ok_or_else(|| incompatible("it was not written by bioseg predict".into()))?;
        if *stored != spec.identity {
            return Err(incompatible(first_difference(stored, &spec.identity)));
        }
        let array = read_json(&path.join("0").join("zarr.json"))?
            .ok_or_else(|| incompatible("its array 0/zarr.json is missing".into()))?;
        let wanted = spec.array_metadata();
        for key in ["shape", "data_type", "chunk_grid", "dimension_names"] {
            if array.get(key) != wanted.get(key) {
                return Err(incompatible(format!(
                    "array {key} is {} there, {} now",
                    array.get(key).unwrap_or(&Value::Null),
                    wanted.get(key).unwrap_or(&Value::Null)
                )));
            }
        }
        Ok(())
    }

    fn open_store(path: &Path, spec: ZarrVolumeSpec) -> Result<Self, DataError> {
        let store = Arc::new(AtomicFilesystemStore::new(path)?);
        let array = Array::open(store.clone(), "/0")
            .map_err(|e| vol_err(path, format!("cannot open array 0: {}", one_line(e))))?;
        Ok(ZarrVolumeWriter { path: path.to_path_buf(), store, array, spec })
    }

    /// The store's folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the store holds.
    pub fn spec(&self) -> &ZarrVolumeSpec {
        &self.spec
    }

    /// Number of chunks along z, y, x.
    pub fn chunk_grid(&self) -> [usize; 3] {
        let s = &self.spec;
        [0, 1, 2].map(|i| s.shape[i].div_ceil(s.chunks[i]))
    }

    fn chunk_indices(&self, chunk: [usize; 3]) -> Vec<u64> {
        let mut v: Vec<u64> = self.spec.channels.map(|_| vec![0]).unwrap_or_default();
        v.extend(chunk.iter().map(|&c| c as u64));
        v
    }

    /// The file that holds chunk `[iz, iy, ix]`.
    pub fn chunk_path(&self, chunk: [usize; 3]) -> PathBuf {
        self.store.key_path(&self.array.chunk_key(&self.chunk_indices(chunk)))
    }

    /// Whether chunk `[iz, iy, ix]` was written (chunks appear only complete).
    pub fn chunk_exists(&self, chunk: [usize; 3]) -> bool {
        self.chunk_path(chunk).is_file()
    }

    /// Writes `data` (`[channels, z, y, x]`) at voxel `origin` (`[z, y, x]`). The region must
    /// start on chunk boundaries and end on chunk boundaries or at the array's end, so every
    /// chunk is written whole (in parallel); with `skip_existing`, chunks already in the store
    /// are left as they are.
    pub fn write_region<T: VolumeSample>(
        &self,
        origin: [usize; 3],
        data: ArrayView4<T>,
        skip_existing: bool,
    ) -> Result<RegionWrite, DataError> {
        let s = &self.spec;
        let (kc, nz, ny, nx) = data.dim();
        let size = [nz, ny, nx];
        let bad = |reason: String| DataError::BadBuffer { path: self.path.clone(), reason };
        if T::DTYPE != s.dtype {
            return Err(bad(format!("{:?} samples for a {:?} array", T::DTYPE, s.dtype)));
        }
        if kc != s.channels.unwrap_or(1) {
            return Err(bad(format!("{kc} channels for an array of {:?}", s.channels)));
        }
        for i in 0..3 {
            let end = origin[i] + size[i];
            if !origin[i].is_multiple_of(s.chunks[i])
                || end > s.shape[i]
                || (!end.is_multiple_of(s.chunks[i]) && end != s.shape[i])
            {
                return Err(bad(format!(
                    "region at {origin:?} of size {size:?} is not aligned to chunks {:?} of an array {:?}",
                    s.chunks, s.shape
                )));
            }
        }
        let c0 = [0, 1, 2].map(|i| origin[i] / s.chunks[i]);
        let c1 = [0, 1, 2].map(|i| (origin[i] + size[i]).div_ceil(s.chunks[i]));
        let mut chunks = Vec::new();
        for iz in c0[0]..c1[0] {
            for iy in c0[1]..c1[1] {
                for ix in c0[2]..c1[2] {
                    chunks.push([iz, iy, ix]);
                }
            }
        }
        let options = CodecOptions::default().with_store_empty_chunks(true);
        let [cz, cy, cx] = s.chunks;
        let results: Vec<Result<bool, DataError>> = chunks
            .par_iter()
            .map(|&chunk| {
                if skip_existing && self.chunk_exists(chunk) {
                    return Ok(false);
                }
                let mut buf = vec![T::default(); kc * cz * cy * cx];
                let start = [0, 1, 2].map(|i| chunk[i] * s.chunks[i] - origin[i]);
                let end = [0, 1, 2].map(|i| (start[i] + s.chunks[i]).min(size[i]));
                for k in 0..kc {
                    for z in start[0]..end[0] {
                        for y in start[1]..end[1] {
                            let row = ((k * cz + z - start[0]) * cy + y - start[1]) * cx;
                            for x in start[2]..end[2] {
                                buf[row + x - start[2]] = data[[k, z, y, x]];
                            }
                        }
                    }
                }
                self.array
                    .store_chunk_opt(&self.chunk_indices(chunk), buf, &options)
                    .map_err(|e| vol_err(&self.path, format!("writing chunk {chunk:?}: {}", one_line(e))))?;
                Ok(true)
            })
            .collect();
        let mut report = RegionWrite::default();
        for r in results {
            if r? {
                report.written += 1;
            } else {
                report.skipped += 1;
            }
        }
        Ok(report)
    }
}

// ---------------------------------------------------------------------------
// Multi-page TIFF writer
// ---------------------------------------------------------------------------

/// A file shared between the TIFF encoder and the writer that finishes it.
#[derive(Clone)]
struct SharedFile(Arc<Mutex<BufWriter<File>>>);

impl SharedFile {
    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, BufWriter<File>>> {
        self.0.lock().map_err(|_| io::Error::other("poisoned writer"))
    }
}

impl Write for SharedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.lock()?.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock()?.flush()
    }
}

impl Seek for SharedFile {
    fn seek(&mut self, pos: io::SeekFrom) -> io::Result<u64> {
        self.lock()?.seek(pos)
    }
}

enum StackEncoder {
    Standard(TiffEncoder<SharedFile, TiffKindStandard>),
    Big(TiffEncoder<SharedFile, TiffKindBig>),
}

/// A multi-page gray TIFF written page by page into a hidden temporary file in the target's
/// folder, renamed to the target by [`finish`](TiffStackWriter::finish) (dropping the writer
/// unfinished removes the temporary file). BigTIFF when the pages add up to more than 3 GiB.
pub struct TiffStackWriter {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    file: SharedFile,
    encoder: StackEncoder,
    width: u32,
    height: u32,
    dtype: VolumeDType,
    pages: usize,
    expected: usize,
}

impl std::fmt::Debug for TiffStackWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TiffStackWriter")
            .field("path", &self.path)
            .field("pages", &self.pages)
            .field("expected", &self.expected)
            .finish()
    }
}

impl TiffStackWriter {
    /// Starts a stack of `pages` pages of `width × height` `dtype` samples at `path` (`.tif` or
    /// `.tiff`). An existing file is refused unless `overwrite`.
    pub fn create(
        path: impl AsRef<Path>,
        width: usize,
        height: usize,
        pages: usize,
        dtype: VolumeDType,
        overwrite: bool,
    ) -> Result<Self, DataError> {
        let path = path.as_ref();
        if ImageFormat::from_path(path)? != ImageFormat::Tiff {
            return Err(DataError::UnsupportedFormat { path: path.to_path_buf(), expected: ".tif or .tiff" });
        }
        crate::atomic::ensure_absent_or_overwrite(path, overwrite)?;
        if width == 0 || height == 0 || pages == 0 || width > u32::MAX as usize || height > u32::MAX as usize {
            return Err(DataError::BadDimensions {
                path: path.to_path_buf(),
                width: width as u64,
                height: height as u64,
                reason: "zero-sized or oversized pages",
            });
        }
        let parent = existing_parent(path)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(TEMP_PREFIX).suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o644));
        }
        let tmp = builder
            .tempfile_in(&parent)
            .map_err(|e| DataError::OutputFolder { dir: parent.clone(), reason: e.to_string() })?;
        let clone = tmp.as_file().try_clone().map_err(|e| DataError::write(path, e))?;
        let file = SharedFile(Arc::new(Mutex::new(BufWriter::with_capacity(1 << 20, clone))));
        let total = (width * height * pages * dtype.bytes()) as u64;
        let tiff_io = |e: tiff::TiffError| DataError::write(path, io::Error::other(e.to_string()));
        let encoder = if total > 3 << 30 {
            StackEncoder::Big(TiffEncoder::new_big(file.clone()).map_err(tiff_io)?)
        } else {
            StackEncoder::Standard(TiffEncoder::new(file.clone()).map_err(tiff_io)?)
        };
        Ok(TiffStackWriter {
            path: path.to_path_buf(),
            tmp,
            file,
            encoder,
            width: width as u32,
            height: height as u32,
            dtype,
            pages: 0,
            expected: pages,
        })
    }

    /// The target file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_page(&self, len: usize, dtype: VolumeDType) -> Result<(), DataError> {
        let n = self.width as usize * self.height as usize;
        if len != n || dtype != self.dtype || self.pages >= self.expected {
            return Err(DataError::BadBuffer {
                path: self.path.clone(),
                reason: format!(
                    "page {} of {} with {len} {dtype:?} samples, expected {}x{} {:?}",
                    self.pages, self.expected, self.width, self.height, self.dtype
                ),
            });
        }
        Ok(())
    }

    /// Appends a page of 8-bit samples (row-major).
    pub fn write_page_u8(&mut self, data: &[u8]) -> Result<(), DataError> {
        self.check_page(data.len(), VolumeDType::U8)?;
        let (w, h) = (self.width, self.height);
        let r = match &mut self.encoder {
            StackEncoder::Standard(e) => e.write_image::<colortype::Gray8>(w, h, data),
            StackEncoder::Big(e) => e.write_image::<colortype::Gray8>(w, h, data),
        };
        r.map_err(|e| DataError::write(&self.path, io::Error::other(e.to_string())))?;
        self.pages += 1;
        Ok(())
    }

    /// Appends a page of float samples (row-major).
    pub fn write_page_f32(&mut self, data: &[f32]) -> Result<(), DataError> {
        self.check_page(data.len(), VolumeDType::F32)?;
        let (w, h) = (self.width, self.height);
        let r = match &mut self.encoder {
            StackEncoder::Standard(e) => e.write_image::<colortype::Gray32Float>(w, h, data),
            StackEncoder::Big(e) => e.write_image::<colortype::Gray32Float>(w, h, data),
        };
        r.map_err(|e| DataError::write(&self.path, io::Error::other(e.to_string())))?;
        self.pages += 1;
        Ok(())
    }

    /// Flushes, syncs and renames the file into place once every page was written.
    pub fn finish(self) -> Result<(), DataError> {
        if self.pages != self.expected {
            return Err(DataError::BadBuffer {
                path: self.path.clone(),
                reason: format!("{} of {} pages written", self.pages, self.expected),
            });
        }
        drop(self.encoder);
        {
            let mut f = self.file.lock().map_err(|e| DataError::write(&self.path, e))?;
            f.flush().map_err(|e| DataError::write(&self.path, e))?;
            f.get_ref().sync_all().map_err(|e| DataError::write(&self.path, e))?;
        }
        self.tmp.persist(&self.path).map_err(|e| DataError::write(&self.path, e.error))?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Folder of slices writer
// ---------------------------------------------------------------------------

/// One image per slice in a folder, each written atomically: `NNNNN.png` for 8-bit slices,
/// `NNNNN.tif` for float slices (`NNNNN_cK.*` for channel K of multi-channel volumes), where
/// NNNNN is the slice's z index, zero-padded to 5 digits (so natural and plain sort agree).
#[derive(Debug, Clone)]
pub struct SliceFolderWriter {
    dir: PathBuf,
    dtype: VolumeDType,
}

impl SliceFolderWriter {
    /// Uses (and creates if needed) the folder `dir`; its parent must exist.
    pub fn create(dir: impl AsRef<Path>, dtype: VolumeDType) -> Result<Self, DataError> {
        let dir = dir.as_ref();
        existing_parent(dir)?;
        if dir.exists() && !dir.is_dir() {
            return Err(DataError::OutputFolder { dir: dir.to_path_buf(), reason: "not a folder".into() });
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| DataError::OutputFolder { dir: dir.to_path_buf(), reason: e.to_string() })?;
        Ok(SliceFolderWriter { dir: dir.to_path_buf(), dtype })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of slice `z` (channel `channel` when the volume has several).
    pub fn slice_path(&self, z: usize, channel: Option<usize>) -> PathBuf {
        let ext = match self.dtype {
            VolumeDType::U8 => "png",
            VolumeDType::F32 => "tif",
        };
        match channel {
            Some(c) => self.dir.join(format!("{z:05}_c{c}.{ext}")),
            None => self.dir.join(format!("{z:05}.{ext}")),
        }
    }

    /// Writes slice `z` of 8-bit samples (row-major `width × height`).
    pub fn write_u8(
        &self,
        z: usize,
        channel: Option<usize>,
        width: usize,
        height: usize,
        data: &[u8],
    ) -> Result<PathBuf, DataError> {
        let p = self.slice_path(z, channel);
        if self.dtype != VolumeDType::U8 {
            return Err(DataError::BadBuffer { path: p, reason: "8-bit samples for a float slice folder".into() });
        }
        write_gray_u8(&p, width as u32, height as u32, data)?;
        Ok(p)
    }

    /// Writes slice `z` of float samples (row-major `width × height`).
    pub fn write_f32(
        &self,
        z: usize,
        channel: Option<usize>,
        width: usize,
        height: usize,
        data: &[f32],
    ) -> Result<PathBuf, DataError> {
        let p = self.slice_path(z, channel);
        if self.dtype != VolumeDType::F32 {
            return Err(DataError::BadBuffer { path: p, reason: "float samples for an 8-bit slice folder".into() });
        }
        write_gray_f32_tiff(&p, width as u32, height as u32, data)?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(z: usize, y: usize, x: usize) -> Vec<Vec<u8>> {
        (0..z).map(|k| (0..y * x).map(|i| ((i * 7 + k * 31) % 251) as u8).collect()).collect()
    }

    fn expect_slab(
        r: &dyn VolumeReader,
        pages: &[Vec<u8>],
        w: usize,
        z: Range<usize>,
        y: Range<usize>,
        x: Range<usize>,
    ) {
        let a = r.read_slab(z.clone(), y.clone(), x.clone()).unwrap();
        assert_eq!(a.dim(), (z.len(), y.len(), x.len(), 1));
        for (i, zz) in z.enumerate() {
            for (j, yy) in y.clone().enumerate() {
                for (k, xx) in x.clone().enumerate() {
                    assert_eq!(a[[i, j, k, 0]], f32::from(pages[zz][yy * w + xx]), "at {zz},{yy},{xx}");
                }
            }
        }
    }

    #[test]
    fn tiff_stack_round_trip_reads_only_what_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.tif");
        let pages = ramp(5, 300, 70);
        let mut w = TiffStackWriter::create(&p, 70, 300, 5, VolumeDType::U8, false).unwrap();
        for pg in &pages {
            w.write_page_u8(pg).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(tiff_page_count(&p).unwrap(), 5);
        assert_eq!(detect_volume_format(&p).unwrap(), VolumeFormat::Tiff);
        let v = open_volume(&p, None).unwrap();
        assert_eq!(v.info().shape, [5, 300, 70]);
        assert_eq!(v.info().depth, SampleDepth::U8);
        expect_slab(v.as_ref(), &pages, 70, 1..4, 37..250, 5..61);
        expect_slab(v.as_ref(), &pages, 70, 0..5, 0..300, 0..70);
        assert!(v.read_slab(0..6, 0..1, 0..1).is_err());
        assert!(v.read_slab(2..2, 0..1, 0..1).is_err());
        // Existing files are kept without overwrite.
        assert!(matches!(
            TiffStackWriter::create(&p, 70, 300, 5, VolumeDType::U8, false),
            Err(DataError::OutputExists { .. })
        ));
        // An unfinished writer leaves nothing behind.
        let q = dir.path().join("partial.tif");
        let mut w = TiffStackWriter::create(&q, 70, 300, 5, VolumeDType::U8, false).unwrap();
        w.write_page_u8(&pages[0]).unwrap();
        assert!(w.finish().is_err());
        assert!(!q.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn bigtiff_and_tiled_pages_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.tif");
        let pages: Vec<Vec<f32>> =
            (0..3).map(|k| (0..40 * 30).map(|i| (i + k * 1000) as f32 * 0.5).collect()).collect();
        {
            let f = File::create(&p).unwrap();
            let mut enc = TiffEncoder::new_big(BufWriter::new(f)).unwrap();
            for pg in &pages {
                enc.write_image::<colortype::Gray32Float>(40, 30, pg).unwrap();
            }
        }
        let v = open_volume(&p, None).unwrap();
        assert_eq!(v.info().shape, [3, 30, 40]);
        assert_eq!(v.info().depth, SampleDepth::F32);
        let a = v.read_slab(1..3, 10..20, 3..9).unwrap();
        assert_eq!(a[[1, 2, 3, 0]], pages[2][12 * 40 + 6]);
    }

    #[test]
    fn slice_folder_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        let pages = ramp(11, 20, 30);
        let out = SliceFolderWriter::create(dir.path().join("s"), VolumeDType::U8).unwrap();
        for (z, pg) in pages.iter().enumerate() {
            // Names without padding: natural order must still put 2 before 10.
            crate::write_gray_u8_png(out.dir().join(format!("slice{z}.png")), 30, 20, pg).unwrap();
        }
        let v = open_volume(out.dir(), None).unwrap();
        assert_eq!(v.info().format, VolumeFormat::Slices);
        assert_eq!(v.info().shape, [11, 20, 30]);
        expect_slab(v.as_ref(), &pages, 30, 1..11, 3..17, 0..30);
        assert_eq!(out.slice_path(7, None).file_name().unwrap(), "00007.png");
        assert_eq!(out.slice_path(7, Some(1)).file_name().unwrap(), "00007_c1.png");
    }

    fn spec(channels: Option<usize>, identity: Value) -> ZarrVolumeSpec {
        ZarrVolumeSpec {
            shape: [5, 40, 70],
            channels,
            chunks: [2, 16, 32],
            dtype: VolumeDType::U8,
            origin: [3, 0, 0],
            name: "test".into(),
            identity,
        }
    }

    #[test]
    fn zarr_v3_writer_round_trip_join_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.zarr");
        let data = Array4::from_shape_fn((2, 5, 40, 70), |(c, z, y, x)| ((c * 97 + z * 13 + y * 3 + x) % 256) as u8);
        let (w, created) = ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::New).unwrap();
        assert!(created);
        assert_eq!(w.chunk_grid(), [3, 3, 3]);
        // Two z-slabs of chunks, the second (ending at the array's end) written twice.
        let r = w.write_region([0, 0, 0], data.slice(s![.., 0..2, .., ..]), true).unwrap();
        assert_eq!(r, RegionWrite { written: 9, skipped: 0 });
        assert!(w.chunk_exists([0, 2, 2]) && !w.chunk_exists([1, 0, 0]));
        w.write_region([2, 0, 0], data.slice(s![.., 2..5, .., ..]), true).unwrap();
        let r = w.write_region([4, 0, 0], data.slice(s![.., 4..5, .., ..]), true).unwrap();
        assert_eq!(r, RegionWrite { written: 0, skipped: 9 });
        assert!(w.write_region([1, 0, 0], data.slice(s![.., 1..2, .., ..]), true).is_err());
        // No temporary files are left in the store.
        let mut stack = vec![p.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                assert!(!e.file_name().to_string_lossy().starts_with('.'), "{:?}", e.path());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        // Read back through the OME-Zarr group.
        let v = open_volume(&p, None).unwrap();
        assert_eq!(v.info().shape, [5, 40, 70]);
        assert_eq!(v.info().channels, 2);
        assert_eq!(v.info().chunks, [2, 16, 32]);
        let a = v.read_slab(1..5, 3..39, 10..70).unwrap();
        for (i, j, k, c) in [(0, 0, 0, 0), (3, 35, 59, 1), (2, 17, 33, 0)] {
            assert_eq!(a[[i, j, k, c]], f32::from(data[[c, i + 1, j + 3, k + 10]]));
        }
        // The metadata: OME 0.5 with a translation, identity kept.
        let g: Value = serde_json::from_slice(&std::fs::read(p.join("zarr.json")).unwrap()).unwrap();
        assert_eq!(g["attributes"]["ome"]["version"], "0.5");
        assert_eq!(
            g["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]["translation"],
            json!([0.0, 3.0, 0.0, 0.0])
        );
        // New refuses, Join accepts the same spec and refuses another.
        assert!(matches!(
            ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::New),
            Err(DataError::OutputExists { .. })
        ));
        let (_, created) =
            ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "a"})), CreateMode::Join).unwrap();
        assert!(!created);
        let e = ZarrVolumeWriter::create(&p, spec(Some(2), json!({"model": "b"})), CreateMode::Join).unwrap_err();
        assert!(matches!(e, DataError::IncompatibleOutput { .. }), "{e}");
        assert!(e.to_string().contains("model"), "{e}");
        let e = ZarrVolumeWriter::create(&p, spec(None, json!({"model": "a"})), CreateMode::Join).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
        // Overwrite replaces the store with an empty one.
        let (w, created) =
            ZarrVolumeWriter::create(&p, spec(None, json!({"model": "b"})), CreateMode::Overwrite).unwrap();
        assert!(created && !w.chunk_exists([0, 0, 0]));
        // Overwrite never deletes a folder that is not a store.
        let not_zarr = dir.path().join("data");
        std::fs::create_dir(&not_zarr).unwrap();
        std::fs::write(not_zarr.join("keep.txt"), b"x").unwrap();
        assert!(ZarrVolumeWriter::create(&not_zarr, spec(None, json!(1)), CreateMode::Overwrite).is_err());
        assert!(not_zarr.join("keep.txt").exists());
    }

    #[test]
    fn racing_creators_agree_on_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("race.zarr");
        let created: Vec<bool> = (0..8)
            .into_par_iter()
            .map(|_| ZarrVolumeWriter::create(&p, spec(None, json!({"k": 1})), CreateMode::Join).unwrap().1)
            .collect();
        assert_eq!(created.iter().filter(|&&c| c).count(), 1);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn zarr_v2_array_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v2.zarr");
        std::fs::create_dir(&p).unwrap();
        let (z, y, x) = (3usize, 5usize, 7usize);
        let zarray = json!({
            "zarr_format": 2, "shape": [z, y, x], "chunks": [2, 4, 4], "dtype": "<u2",
            "compressor": null, "fill_value": 0, "order": "C", "filters": null
        });
        std::fs::write(p.join(".zarray"), serde_json::to_vec(&zarray).unwrap()).unwrap();
        let value = |zz: usize, yy: usize, xx: usize| (zz * 1000 + yy * 10 + xx) as u16;
        for iz in 0..2 {
            for iy in 0..2 {
                for ix in 0..2 {
                    let mut bytes = Vec::new();
                    for a in 0..2 {
                        for b in 0..4 {
                            for c in 0..4 {
                                let (zz, yy, xx) = (iz * 2 + a, iy * 4 + b, ix * 4 + c);
                                let v = if zz < z && yy < y && xx < x { value(zz, yy, xx) } else { 0 };
                                bytes.extend(v.to_le_bytes());
                            }
                        }
                    }
                    std::fs::write(p.join(format!("{iz}.{iy}.{ix}")), bytes).unwrap();
                }
            }
        }
        let v = open_volume(&p, None).unwrap();
        assert_eq!(v.info().shape, [3, 5, 7]);
        assert_eq!(v.info().depth, SampleDepth::U16);
        let a = v.read_slab(1..3, 2..5, 3..7).unwrap();
        assert_eq!(a[[1, 2, 3, 0]], f32::from(value(2, 4, 6)));
        assert_eq!(a[[0, 0, 0, 0]], f32::from(value(1, 2, 3)));
    }

    #[test]
    fn detection_and_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = open_volume(dir.path().join("missing.tif"), None).unwrap_err();
        assert!(e.to_string().contains("missing.tif"), "{e}");
        let f = dir.path().join("v.npy");
        std::fs::write(&f, b"x").unwrap();
        assert!(matches!(detect_volume_format(&f), Err(DataError::UnsupportedFormat { .. })));
        let z = dir.path().join("empty.zarr");
        std::fs::create_dir(&z).unwrap();
        assert_eq!(detect_volume_format(&z).unwrap(), VolumeFormat::Zarr);
        let e = open_volume(&z, None).unwrap_err();
        assert!(e.to_string().contains("not a Zarr store"), "{e}");
        assert_eq!("slices".parse::<VolumeFormat>().unwrap(), VolumeFormat::Slices);
        assert!("png".parse::<VolumeFormat>().is_err());
    }
}
