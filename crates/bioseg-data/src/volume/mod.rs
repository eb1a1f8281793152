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
//!
//! One file per format, each with its reader and its writer: `tiff.rs`, `slices.rs`, `zarr.rs`
//! (with the atomic store); this file holds the trait, the format detection and what the
//! formats share (slab checks, sample types, the output folder check).

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::Array4;

mod slices;
mod tiff;
mod zarr;

pub use slices::{SliceFolderVolume, SliceFolderWriter};
pub use tiff::{TiffStackWriter, TiffVolume, tiff_page_count};
pub(crate) use tiff::{page_layout, tiff_err};
pub use zarr::{AtomicFilesystemStore, CreateMode, RegionWrite, ZarrVolume, ZarrVolumeSpec, ZarrVolumeWriter};

use crate::error::DataError;
use crate::image::SampleDepth;

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

/// A sample type the volume writers store: every writer is generic over it, and the two
/// things that differ by type (a TIFF page's colour type, a slice file's format) are the
/// methods of its sealed supertrait, written once per type here.
pub trait VolumeSample: encode::Encode + zarrs::array::Element + Copy + Default + Send + Sync + 'static {
    /// Its [`VolumeDType`].
    const DTYPE: VolumeDType;
}

impl VolumeSample for u8 {
    const DTYPE: VolumeDType = VolumeDType::U8;
}

impl VolumeSample for f32 {
    const DTYPE: VolumeDType = VolumeDType::F32;
}

/// How each sample type is encoded (sealed: the module is private, so only `u8` and `f32`
/// are volume samples).
mod encode {
    use std::io::{Seek, Write};
    use std::path::Path;

    use ::tiff::TiffResult;
    use ::tiff::encoder::{TiffEncoder, TiffKind, colortype};
    use ::tiff::tags::Tag;

    use crate::error::DataError;
    use crate::image::{write_gray_f32_tiff, write_gray_u8};

    pub trait Encode: Sized {
        /// Appends a gray page of `width × height` samples to a TIFF, with an
        /// `ImageDescription` where given.
        fn tiff_page<W: Write + Seek, K: TiffKind>(
            encoder: &mut TiffEncoder<W, K>,
            width: u32,
            height: u32,
            data: &[Self],
            description: Option<&str>,
        ) -> TiffResult<()>;
        /// Writes a gray image file of `width × height` samples (atomically): 8-bit PNG or
        /// TIFF by the extension, float32 TIFF.
        fn image_file(path: &Path, width: u32, height: u32, data: &[Self]) -> Result<(), DataError>;
    }

    impl Encode for u8 {
        fn tiff_page<W: Write + Seek, K: TiffKind>(
            encoder: &mut TiffEncoder<W, K>,
            width: u32,
            height: u32,
            data: &[u8],
            description: Option<&str>,
        ) -> TiffResult<()> {
            let mut page = encoder.new_image::<colortype::Gray8>(width, height)?;
            if let Some(d) = description {
                page.encoder().write_tag(Tag::ImageDescription, d)?;
            }
            page.write_data(data)
        }
        fn image_file(path: &Path, width: u32, height: u32, data: &[u8]) -> Result<(), DataError> {
            write_gray_u8(path, width, height, data)
        }
    }

    impl Encode for f32 {
        fn tiff_page<W: Write + Seek, K: TiffKind>(
            encoder: &mut TiffEncoder<W, K>,
            width: u32,
            height: u32,
            data: &[f32],
            description: Option<&str>,
        ) -> TiffResult<()> {
            let mut page = encoder.new_image::<colortype::Gray32Float>(width, height)?;
            if let Some(d) = description {
                page.encoder().write_tag(Tag::ImageDescription, d)?;
            }
            page.write_data(data)
        }
        fn image_file(path: &Path, width: u32, height: u32, data: &[f32]) -> Result<(), DataError> {
            write_gray_f32_tiff(path, width, height, data)
        }
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

#[cfg(test)]
mod tests;
