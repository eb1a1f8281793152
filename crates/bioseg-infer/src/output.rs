//! Turning a prediction into files: probability maps, masks or label maps.

use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::InferError;
use crate::predict::Prediction;

/// What `bioseg predict` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputType {
    /// Probabilities scaled to 0–255 (one file per class for multi-class models).
    ProbU8,
    /// Probabilities as float32 TIFF (one file per class for multi-class models).
    ProbF32,
    /// Binary mask 0/255 of the foreground (`p > threshold`; multi-class: any class but 0).
    Mask,
    /// Class index per pixel (argmax; binary models: 0/1).
    Labels,
}

impl std::str::FromStr for OutputType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "prob-u8" => Ok(OutputType::ProbU8),
            "prob-f32" => Ok(OutputType::ProbF32),
            "mask" => Ok(OutputType::Mask),
            "labels" => Ok(OutputType::Labels),
            o => Err(format!("unknown output type `{o}` (expected prob-u8, prob-f32, mask or labels)")),
        }
    }
}

/// The files a prediction of `classes` channels is written to for `output`.
pub fn output_paths(output: &Path, kind: OutputType, classes: usize) -> Vec<PathBuf> {
    let per_class = matches!(kind, OutputType::ProbU8 | OutputType::ProbF32) && classes > 1;
    if !per_class {
        return vec![output.to_path_buf()];
    }
    let stem = output.file_stem().and_then(|s| s.to_str()).unwrap_or("out");
    let ext = output.extension().and_then(|s| s.to_str()).unwrap_or("png");
    (0..classes).map(|c| output.with_file_name(format!("{stem}_class{c}.{ext}"))).collect()
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
    match kind {
        OutputType::ProbU8 => {
            for (c, p) in paths.iter().enumerate() {
                let plane = pred.probs.index_axis(ndarray::Axis(0), c);
                let bytes: Vec<u8> = plane.iter().map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8).collect();
                bioseg_data::write_gray_u8(p, wu, hu, &bytes)?;
            }
        }
        OutputType::ProbF32 => {
            for (c, p) in paths.iter().enumerate() {
                let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
                if ext != "tif" && ext != "tiff" {
                    return Err(InferError::Input(format!("prob-f32 needs a .tif/.tiff output, not {}", p.display())));
                }
                let plane = pred.probs.index_axis(ndarray::Axis(0), c);
                let v: Vec<f32> = plane.iter().copied().collect();
                bioseg_data::write_gray_f32_tiff(p, wu, hu, &v)?;
            }
        }
        OutputType::Mask => {
            let labels = pred.labels(threshold);
            let bytes: Vec<u8> = labels.iter().map(|&c| if c > 0 { 255 } else { 0 }).collect();
            bioseg_data::write_gray_u8(&paths[0], wu, hu, &bytes)?;
        }
        OutputType::Labels => {
            let labels: Array2<u8> = pred.labels(threshold);
            let bytes: Vec<u8> = labels.iter().copied().collect();
            bioseg_data::write_gray_u8(&paths[0], wu, hu, &bytes)?;
        }
    }
    Ok(paths)
}
