//! The one module of bioseg-train that uses the inference engine (`bioseg-infer`, tract): the
//! demo's tiled prediction of an exported model, `gpu-check`'s comparison of the exported
//! ONNX with the GPU's forward pass, and a BioImage Model Zoo package's interface and test
//! output (`bioimageio.rs`). Training, the Keras import and the export need no engine
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

/// What a package needs to know of an exported model's interface.
pub struct ModelInterface {
    /// Input layout.
    pub layout: bioseg_onnx::TensorLayout,
    /// Input channels.
    pub channels: usize,
    /// Height and width multiple.
    pub size_multiple: usize,
    /// The halo `bioseg predict` uses.
    pub halo: usize,
    /// The output activation (logits: the package applies a sigmoid or softmax).
    pub activation: bioseg_onnx::OutputActivation,
    /// Output channels (probed with one run).
    pub classes: usize,
    /// Whether the batch size is free (else it is 1).
    pub batch_symbolic: bool,
    /// The model's metadata.
    pub metadata: bioseg_onnx::ModelMetadata,
}

/// Reads the interface of the ONNX model at `onnx` the way `bioseg predict` does.
pub fn model_interface(onnx: &Path) -> Result<ModelInterface> {
    let model = bioseg_infer::OnnxModel::load(onnx)?;
    let predictor = bioseg_infer::predict::Predictor::new(&model, bioseg_infer::predict::PredictOptions::default())?;
    let io = predictor.io();
    let m = io.size_multiple;
    let shape = match io.layout {
        bioseg_onnx::TensorLayout::Nhwc => vec![1, 2 * m, 2 * m, io.channels],
        _ => vec![1, io.channels, 2 * m, 2 * m],
    };
    let (out_shape, _) = model.run(&shape, &vec![0.0; shape.iter().product()])?.swap_remove(0);
    let classes =
        if io.layout == bioseg_onnx::TensorLayout::Nhwc { out_shape[out_shape.len() - 1] } else { out_shape[1] };
    Ok(ModelInterface {
        layout: io.layout,
        channels: io.channels,
        size_multiple: m,
        halo: predictor.halo(),
        activation: io.activation,
        classes,
        batch_symbolic: io.batch_symbolic,
        metadata: model.metadata().clone(),
    })
}

/// The output a package described by `metadata` expects for input `x`: the ONNX model at
/// `onnx` run as the package says (`bioseg_infer::bioimageio::package_output`).
pub fn package_output(
    onnx: &Path,
    metadata: &bioseg_onnx::ModelMetadata,
    x: ndarray::ArrayD<f32>,
) -> Result<ndarray::ArrayD<f32>> {
    let model = bioseg_infer::OnnxModel::load(onnx)?.with_metadata(metadata.clone());
    Ok(bioseg_infer::bioimageio::package_output(&model, x)?)
}

/// The label map of probabilities `[classes, h, w]` (`bioseg predict`'s argmax, `p > 0.5` for
/// one channel).
pub fn labels_of(probs: ndarray::ArrayView3<f32>) -> Array2<u8> {
    bioseg_infer::predict::class_map(probs, 0.5)
}
