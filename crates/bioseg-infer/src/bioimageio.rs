//! Running a BioImage Model Zoo package's own check: its test input through the model as the
//! package describes it (preprocessing as bioseg's normalisation over the whole tensor, one run
//! of the graph without tiling, the sigmoid or softmax of its postprocessing), compared with
//! its expected output, as `bioimageio.core`'s `test_model` does.

use ndarray::{ArrayD, Axis, IxDyn};
use serde::Serialize;

use crate::error::InferError;
use crate::model::OnnxModel;
use bioseg_onnx::{OutputActivation, TensorLayout};

/// What running a package's test tensors gave.
#[derive(Clone, Debug, Serialize)]
pub struct PackageTest {
    /// The test input's shape.
    pub input_shape: Vec<usize>,
    /// The output's shape.
    pub output_shape: Vec<usize>,
    /// Largest |bioseg − expected| over the output.
    pub max_abs_diff: f32,
    /// Largest |expected| (the scale of the difference).
    pub expected_max_abs: f32,
}

/// `x` through the package's model: normalised as the package says (per-sample statistics of
/// the whole tensor), run once, then the package's sigmoid or softmax over the channel axis.
pub fn package_output(model: &OnnxModel, x: ArrayD<f32>) -> Result<ArrayD<f32>, InferError> {
    let md = model.metadata();
    let shape = x.shape().to_vec();
    let mut values = x.as_standard_layout().into_owned().into_raw_vec_and_offset().0;
    // Per-sample statistics over the whole tensor.
    md.normalization.unwrap_or(bioseg_onnx::Normalization::None).apply(&mut values);
    let (out_shape, values) = model
        .run(&shape, &values)?
        .into_iter()
        .next()
        .ok_or_else(|| InferError::Run("the model gave no output".into()))?;
    let mut y = ArrayD::from_shape_vec(IxDyn(&out_shape), values).map_err(|e| InferError::Run(e.to_string()))?;
    if md.output == Some(OutputActivation::Logits) && y.ndim() >= 3 {
        let c = if md.layout == Some(TensorLayout::Nhwc) { y.ndim() - 1 } else { 1 };
        for mut lane in y.lanes_mut(Axis(c)) {
            if lane.len() == 1 {
                lane.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp()));
            } else {
                let m = lane.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                lane.mapv_inplace(|v| (v - m).exp());
                let s = lane.sum();
                lane.mapv_inplace(|v| v / s);
            }
        }
    }
    Ok(y)
}

/// Runs the test input of the package `model` was loaded from and compares the result with its
/// expected output.
pub fn run_test_tensors(model: &OnnxModel) -> Result<PackageTest, InferError> {
    let package = model.package().ok_or_else(|| InferError::Model {
        path: model.path().to_path_buf(),
        reason: "not a BioImage Model Zoo package: no test tensors".into(),
    })?;
    let Some((input, expected)) = package.test_tensors()? else {
        return Err(InferError::Model {
            path: model.path().to_path_buf(),
            reason: "the package has no test tensors".into(),
        });
    };
    let names = package.description().test_tensors.clone().expect("test tensors read");
    let x = bioseg_data::parse_npy(&package.path().join(&names.0.source), &input)?;
    let want = bioseg_data::parse_npy(&package.path().join(&names.1.source), &expected)?;
    let input_shape = x.shape().to_vec();
    let got = package_output(model, x)?;
    if got.shape() != want.shape() {
        return Err(InferError::Run(format!(
            "the test output has shape {:?}, the package expects {:?}",
            got.shape(),
            want.shape()
        )));
    }
    let max_abs_diff = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    let expected_max_abs = want.iter().map(|v| v.abs()).fold(0.0, f32::max);
    Ok(PackageTest { input_shape, output_shape: got.shape().to_vec(), max_abs_diff, expected_max_abs })
}
