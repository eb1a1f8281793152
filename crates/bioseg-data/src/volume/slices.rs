//! Folders of 2-D slices: the reader (natural name order) and the writer (one atomic image per slice).

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{Array3, Array4, Axis, s};
use rayon::prelude::*;

use crate::dataset::list_images;
use crate::error::DataError;
use crate::image::{image_dimensions, read_image};

use super::{VolumeDType, VolumeFormat, VolumeInfo, VolumeReader, VolumeSample, check_slab, existing_parent, vol_err};

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

    /// Writes slice `z` (of `channel`, for several) of the folder's sample type (row-major
    /// `width × height`).
    pub fn write<T: VolumeSample>(
        &self,
        z: usize,
        channel: Option<usize>,
        width: usize,
        height: usize,
        data: &[T],
    ) -> Result<PathBuf, DataError> {
        let p = self.slice_path(z, channel);
        if self.dtype != T::DTYPE {
            return Err(DataError::BadBuffer {
                path: p,
                reason: format!("{} samples for a {} slice folder", T::DTYPE.zarr_name(), self.dtype.zarr_name()),
            });
        }
        T::image_file(&p, width as u32, height as u32, data)?;
        Ok(p)
    }
}
