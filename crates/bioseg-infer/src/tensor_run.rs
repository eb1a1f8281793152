//! `bioseg run`: any ONNX model on rows of a tensor file, with an accuracy report when labels
//! are given (the course's `perceptron_predict.py`).

use ndarray::{ArrayD, IxDyn};

use crate::error::InferError;
use crate::model::OnnxModel;

/// The outcome of running a model over a tensor.
#[derive(Debug, Clone)]
pub struct TensorRun {
    /// The first output, with the batch axis first.
    pub output: ArrayD<f32>,
}

/// Runs `model` on `input`. An input one rank short of the model's gets a batch axis of 1.
pub fn run_tensor(model: &OnnxModel, input: &ArrayD<f32>) -> Result<TensorRun, InferError> {
    let rank = model.input_dims().len();
    let input =
        if rank > 0 && input.ndim() + 1 == rank { input.clone().insert_axis(ndarray::Axis(0)) } else { input.clone() };
    if input.iter().any(|v| !v.is_finite()) {
        return Err(InferError::Input("the input holds NaN or infinite values".into()));
    }
    let shape = input.shape().to_vec();
    let data: Vec<f32> = input.iter().copied().collect();
    let mut outputs = model.run(&shape, &data)?;
    let (oshape, values) = outputs.swap_remove(0);
    let output =
        ArrayD::from_shape_vec(IxDyn(&oshape), values).map_err(|e| InferError::Run(format!("output shape: {e}")))?;
    Ok(TensorRun { output })
}

/// Per-row predicted class: threshold 0.5 for one output column, argmax for several.
pub fn predicted_classes(output: &ArrayD<f32>) -> Vec<usize> {
    let rows = output.shape().first().copied().unwrap_or(0);
    let flat: Vec<f32> = output.iter().copied().collect();
    let per_row = flat.len().checked_div(rows).unwrap_or(0);
    flat.chunks(per_row.max(1))
        .map(|r| {
            if r.len() == 1 {
                usize::from(r[0] > 0.5)
            } else {
                r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
            }
        })
        .collect()
}

/// Class per row of a label tensor: a single column of 0/1 (or class indices), or one-hot rows.
pub fn label_classes(labels: &ArrayD<f32>) -> Vec<usize> {
    let rows = labels.shape().first().copied().unwrap_or(labels.len());
    let flat: Vec<f32> = labels.iter().copied().collect();
    let per_row = flat.len().checked_div(rows).map_or(1, |r| r.max(1));
    flat.chunks(per_row)
        .map(|r| {
            if r.len() == 1 {
                r[0].round().max(0.0) as usize
            } else {
                r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
            }
        })
        .collect()
}
