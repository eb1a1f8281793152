//! Turning a prediction into files: probability maps, masks or label maps.

use std::path::{Path, PathBuf};

use bioseg_data::volume::{CreateMode, TiffStackWriter, VolumeDType, VolumeSample, ZarrVolumeSpec, ZarrVolumeWriter};
use ndarray::{Array3, ArrayView3, Axis};

use crate::error::InferError;
use crate::predict::{Prediction, class_map};

/// What `bioseg predict` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputType {
    /// Probabilities scaled to 0–255 (multi-class models: one channel per class in a TIFF or
    /// Zarr, one PNG per class).
    #[default]
    ProbU8,
    /// Probabilities as float32 TIFF or Zarr (one channel per class).
    ProbF32,
    /// Binary mask 0/255 of the foreground (`p > threshold`; multi-class: any class but 0).
    Mask,
    /// Class index per pixel (argmax; binary models: 0/1).
    Labels,
}

impl OutputType {
    /// Every output type and its name on the command line.
    const NAMES: [(OutputType, &'static str); 4] = [
        (OutputType::ProbU8, "prob-u8"),
        (OutputType::ProbF32, "prob-f32"),
        (OutputType::Mask, "mask"),
        (OutputType::Labels, "labels"),
    ];
}

impl OutputType {
    /// Channels written for a model of `classes` output channels: each class's probability, or
    /// one mask or class map.
    pub fn channels(self, classes: usize) -> usize {
        match self {
            OutputType::ProbU8 | OutputType::ProbF32 => classes,
            OutputType::Mask | OutputType::Labels => 1,
        }
    }

    /// The sample type it is written in: float32 for `prob-f32`, else 8-bit.
    pub fn dtype(self) -> VolumeDType {
        match self {
            OutputType::ProbF32 => VolumeDType::F32,
            OutputType::ProbU8 | OutputType::Mask | OutputType::Labels => VolumeDType::U8,
        }
    }
}

impl std::str::FromStr for OutputType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&OutputType::NAMES, "output type", s)
    }
}

impl std::fmt::Display for OutputType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::names::name_of(&OutputType::NAMES, self))
    }
}

/// The lower-case extension of `path` (empty without one).
pub(crate) fn extension(path: &Path) -> String {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default()
}

/// Whether a file of `path`'s format holds several channels in one file: a TIFF (an ImageJ
/// hyperstack) or a Zarr store (a channel axis); a PNG holds one.
fn holds_channels(path: &Path) -> bool {
    matches!(extension(path).as_str(), "tif" | "tiff" | "zarr")
}

/// The files a prediction of `classes` channels is written to for `output`: `output` itself,
/// except for several channels into PNG, which go to one 8-bit file per class,
/// `STEM_classN.png`.
pub fn output_paths(output: &Path, kind: OutputType, classes: usize) -> Vec<PathBuf> {
    if kind.channels(classes) == 1 || holds_channels(output) {
        return vec![output.to_path_buf()];
    }
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    (0..classes).map(|c| output.with_file_name(format!("{stem}_class{c}.{ext}"))).collect()
}

/// The names of `channels` output channels: the model's class names where there is one per
/// channel, else `class N` (OME-Zarr `omero` labels).
pub fn channel_labels(classes: &[String], channels: usize) -> Vec<String> {
    if classes.len() == channels {
        return classes.to_vec();
    }
    (0..channels).map(|c| format!("class {c}")).collect()
}

/// Probabilities in an output type: `[channels, h, w]` samples of [`OutputType::dtype`].
#[derive(Clone, Debug, PartialEq)]
pub enum Converted {
    /// `prob-u8` (K channels), `mask` and `labels` (one channel).
    U8(Array3<u8>),
    /// `prob-f32` (K channels).
    F32(Array3<f32>),
}

impl Converted {
    /// The samples as `T` (the caller's sample type must be the output type's
    /// [`dtype`](OutputType::dtype)).
    pub fn into_samples<T: VolumeSample>(self) -> Result<Array3<T>, InferError> {
        let (held, any): (VolumeDType, Box<dyn std::any::Any>) = match self {
            Converted::U8(a) => (VolumeDType::U8, Box::new(a)),
            Converted::F32(a) => (VolumeDType::F32, Box::new(a)),
        };
        any.downcast::<Array3<T>>()
            .map(|a| *a)
            .map_err(|_| InferError::Run(format!("{held:?} samples asked for as {:?} samples", T::DTYPE)))
    }
}

/// The one place probabilities `[K, h, w]` become each output type, for images and volumes:
/// `prob-u8` scales to 0–255 (rounded), `prob-f32` keeps them, `mask` is 0/255 of
/// [`class_map`] > 0 and `labels` the class map itself.
pub fn convert(probs: ArrayView3<f32>, kind: OutputType, threshold: f32) -> Converted {
    match kind {
        OutputType::ProbF32 => Converted::F32(probs.to_owned()),
        OutputType::ProbU8 => Converted::U8(probs.mapv(|v| (v * 255.0).round().clamp(0.0, 255.0) as u8)),
        OutputType::Mask => {
            Converted::U8(class_map(probs, threshold).mapv(|c| if c > 0 { 255 } else { 0 }).insert_axis(Axis(0)))
        }
        OutputType::Labels => Converted::U8(class_map(probs, threshold).insert_axis(Axis(0))),
    }
}

/// How [`write_prediction`] writes.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// The output type.
    pub kind: OutputType,
    /// The foreground threshold of `mask` and `labels` ([`convert`]).
    pub threshold: f32,
    /// Names of the model's classes (channel labels of a Zarr store; [`channel_labels`]).
    pub classes: Vec<String>,
    /// Replace existing outputs.
    pub overwrite: bool,
}

/// Writes `pred` to `output`, atomically, in the format of its extension: PNG (8-bit; one file
/// per class for several channels, [`output_paths`]), TIFF (one page, or an ImageJ hyperstack
/// of one page per channel; float32 for `prob-f32`) or a Zarr store (OME-Zarr 0.5, axes `c, y,
/// x` or `y, x`, with `omero` channel labels). Returns the files written.
pub fn write_prediction(pred: &Prediction, output: &Path, options: &WriteOptions) -> Result<Vec<PathBuf>, InferError> {
    let (k, h, w) = pred.probs.dim();
    let paths = output_paths(output, options.kind, k);
    let converted = convert(pred.probs.view(), options.kind, options.threshold);
    let ext = extension(output);
    if ext == "zarr" {
        match converted {
            Converted::U8(a) => write_zarr_image(&a, output, options)?,
            Converted::F32(a) => write_zarr_image(&a, output, options)?,
        }
        return Ok(paths);
    }
    let tiff = ext == "tif" || ext == "tiff";
    match converted {
        Converted::F32(_) if !tiff => {
            return Err(InferError::Input(format!(
                "prob-f32 needs a .tif/.tiff or .zarr output, not {}",
                output.display()
            )));
        }
        Converted::U8(a) if a.dim().0 > 1 && tiff => write_tiff_hyperstack(&a, output, options.overwrite)?,
        Converted::F32(a) if a.dim().0 > 1 => write_tiff_hyperstack(&a, output, options.overwrite)?,
        Converted::U8(a) => {
            for (c, p) in paths.iter().enumerate() {
                bioseg_data::write_gray_u8(p, w as u32, h as u32, &plane(&a, c))?;
            }
        }
        Converted::F32(a) => bioseg_data::write_gray_f32_tiff(output, w as u32, h as u32, &plane(&a, 0))?,
    }
    Ok(paths)
}

/// Channels `[c, h, w]` as one TIFF: an ImageJ hyperstack of `c` pages.
fn write_tiff_hyperstack<T: VolumeSample>(a: &Array3<T>, output: &Path, overwrite: bool) -> Result<(), InferError> {
    let (k, h, w) = a.dim();
    let mut writer = TiffStackWriter::create(output, w, h, k, T::DTYPE, overwrite)?.hyperstack(k, 1)?;
    for c in 0..k {
        writer.write_page(&plane(a, c))?;
    }
    Ok(writer.finish()?)
}

/// Channels `[c, h, w]` as a 2-D OME-Zarr store (`c, y, x`, or `y, x` for one channel).
fn write_zarr_image<T: VolumeSample>(a: &Array3<T>, output: &Path, options: &WriteOptions) -> Result<(), InferError> {
    let (k, h, w) = a.dim();
    let spec = ZarrVolumeSpec {
        shape: [1, h, w],
        channels: (k > 1).then_some(k),
        chunks: [1, h.min(ZARR_IMAGE_CHUNK), w.min(ZARR_IMAGE_CHUNK)],
        dtype: T::DTYPE,
        origin: [0, 0, 0],
        name: format!("{}", options.kind),
        identity: serde_json::json!({"output_type": options.kind.to_string()}),
        planar: true,
        channel_labels: channel_labels(&options.classes, k),
    };
    let mode = if options.overwrite { CreateMode::Overwrite } else { CreateMode::New };
    let (writer, _) = ZarrVolumeWriter::create(output, spec, mode)?;
    writer.write_region([0, 0, 0], a.view().insert_axis(Axis(1)), false)?;
    Ok(())
}

/// Chunk side of a 2-D Zarr output.
const ZARR_IMAGE_CHUNK: usize = 1024;

/// Channel `c` of `[channels, h, w]` samples, row-major.
fn plane<T: Copy>(a: &Array3<T>, c: usize) -> Vec<T> {
    a.index_axis(Axis(0), c).iter().copied().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn every_output_type_converts_in_one_place() {
        // Two classes at three pixels; the last is a tie (the later class wins).
        let probs = array![[[0.9f32, 0.2, 0.5]], [[0.1, 0.8, 0.5]]];
        let (v, t) = (probs.view(), 0.5);
        assert_eq!(convert(v, OutputType::ProbU8, t), Converted::U8(array![[[230u8, 51, 128]], [[26, 204, 128]]]));
        assert_eq!(convert(v, OutputType::ProbF32, t), Converted::F32(probs.clone()));
        assert_eq!(convert(v, OutputType::Labels, t), Converted::U8(array![[[0u8, 1, 1]]]));
        assert_eq!(convert(v, OutputType::Mask, t), Converted::U8(array![[[0u8, 255, 255]]]));
        // One channel: thresholded, strictly above.
        let one = array![[[0.2f32, 0.5, 0.7]]];
        assert_eq!(convert(one.view(), OutputType::Mask, 0.5), Converted::U8(array![[[0u8, 0, 255]]]));
        // The samples come out as the output type's sample type only.
        assert!(convert(v, OutputType::ProbF32, t).into_samples::<f32>().is_ok());
        let e = convert(v, OutputType::ProbF32, t).into_samples::<u8>().unwrap_err().to_string();
        assert!(e.contains("F32 samples asked for as U8"), "{e}");
        assert_eq!(convert(v, OutputType::Labels, t).into_samples::<u8>().unwrap().dim(), (1, 1, 3));
    }

    #[test]
    fn output_types_name_their_channels_and_samples() {
        for kind in [OutputType::ProbU8, OutputType::ProbF32, OutputType::Mask, OutputType::Labels] {
            assert_eq!(kind.to_string().parse::<OutputType>(), Ok(kind));
            let samples = convert(Array3::zeros((3, 1, 1)).view(), kind, 0.5);
            let (channels, dtype) = match samples {
                Converted::U8(a) => (a.dim().0, VolumeDType::U8),
                Converted::F32(a) => (a.dim().0, VolumeDType::F32),
            };
            assert_eq!((kind.channels(3), kind.dtype()), (channels, dtype), "{kind}");
        }
        assert_eq!(OutputType::default(), OutputType::ProbU8);
        assert!("probs".parse::<OutputType>().unwrap_err().contains("prob-u8, prob-f32, mask or labels"));
    }
}
