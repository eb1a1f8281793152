//! The one module of bioseg-train that uses the inference engine (`bioseg-infer`, tract): the
//! demo's tiled prediction of an exported model and `gpu-check`'s comparison of the exported
//! ONNX with the GPU's forward pass. Training, the Keras import and the export need no engine
//! (graph analysis lives in `bioseg-onnx`); a test (`tests/inference_has_no_burn.rs`) keeps
//! every other module of this crate off `bioseg_infer`. See docs/architecture.md.

use std::path::Path;

use anyhow::Result;
use ndarray::{Array2, ArrayView2};

/// What [`predict_section`] returns.
pub struct SectionPrediction {
    /// Label per pixel (the argmax, or `p > 0.5` for one channel).
    pub labels: Array2<u8>,
    /// Tiles run.
    pub tiles: usize,
    /// Wall time of the prediction alone, in seconds.
    pub seconds: f64,
}

/// Predicts an 8-bit section with the ONNX model at `onnx` the way `bioseg predict` does
/// (tiled, default options), and writes the probabilities as an 8-bit PNG to `png`.
pub fn predict_section(onnx: &Path, section: ArrayView2<u8>, png: &Path) -> Result<SectionPrediction> {
    let model = bioseg_infer::OnnxModel::load(onnx)?;
    let predictor = bioseg_infer::predict::Predictor::new(&model, bioseg_infer::predict::PredictOptions::default())?;
    let image = section.mapv(f32::from).insert_axis(ndarray::Axis(2));
    let t0 = std::time::Instant::now();
    let pred = predictor.predict(image.view(), 255.0, &|_| {})?;
    let seconds = t0.elapsed().as_secs_f64();
    let options = bioseg_infer::output::WriteOptions { threshold: 0.5, overwrite: true, ..Default::default() };
    bioseg_infer::output::write_prediction(&pred, png, &options)?;
    Ok(SectionPrediction { labels: pred.labels(0.5), tiles: pred.tiles, seconds })
}

/// Runs the ONNX model at `onnx` once on `x` of `shape` (tract, CPU) and returns its first
/// output's values.
pub fn run_onnx(onnx: &Path, shape: &[usize], x: &[f32]) -> Result<Vec<f32>> {
    let model = bioseg_infer::OnnxModel::load(onnx)?;
    Ok(model.run(shape, x)?.swap_remove(0).1)
}
