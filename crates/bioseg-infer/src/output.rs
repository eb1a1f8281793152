//! Turning a prediction into files: probability maps, masks or label maps.

use std::path::{Path, PathBuf};

use bioseg_data::volume::{VolumeDType, VolumeSample};
use ndarray::{Array3, ArrayView3, Axis};

use crate::error::InferError;
use crate::predict::{Prediction, class_map};

/// What `bioseg predict` writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputType {
    /// Probabilities scaled to 0–255 (one file per class for multi-class models).
    #[default]
    ProbU8,
    /// Probabilities as float32 TIFF (one file per class for multi-class models).
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

/// The files a prediction of `classes` channels is written to for `output`.
pub fn output_paths(output: &Path, kind: OutputType, classes: usize) -> Vec<PathBuf> {
    let per_class = kind.channels(classes) > 1;
    if !per_class {
        return vec![output.to_path_buf()];
    }
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    (0..classes).map(|c| output.with_file_name(format!("{stem}_class{c}.{ext}"))).collect()
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

/// Writes `pred` as `kind` to `output` (atomically; format from the extension).
pub fn write_prediction(
    pred: &Prediction,
    output: &Path,
    kind: OutputType,
    threshold: f32,
) -> Result<Vec<PathBuf>, InferError> {
    let (k, h, w) = pred.probs.dim();
    let (wu, hu) = (w as u32, h as u32);
    let paths = output_paths(output, kind, k);
    match convert(pred.probs.view(), kind, threshold) {
        Converted::U8(a) => {
            for (c, p) in paths.iter().enumerate() {
                bioseg_data::write_gray_u8(p, wu, hu, &plane(&a, c))?;
            }
        }
        Converted::F32(a) => {
            for (c, p) in paths.iter().enumerate() {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
                if ext != "tif" && ext != "tiff" {
                    return Err(InferError::Input(format!("prob-f32 needs a .tif/.tiff output, not {}", p.display())));
                }
                bioseg_data::write_gray_f32_tiff(p, wu, hu, &plane(&a, c))?;
            }
        }
    }
    Ok(paths)
}

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
