//! `bioseg.evaluate`: the scores of `bioseg evaluate` (pixel error, Dice, IoU, V_rand, V_info,
//! adapted Rand error, variation of information) of arrays, per image and on average.

use bioseg_data::{Image, SampleDepth};
use bioseg_infer::evaluate::{ClassMapping, Evaluation, Scoring, score_images};
use ndarray::{ArrayViewD, Axis, Ix3};
use numpy::PyReadonlyArrayDyn;
use pyo3::prelude::*;

use crate::errors::{infer_error, input_error};

/// Scores `pred` against `label` (float32 arrays `[Y, X]` or a stack `[Z, Y, X]` of the same
/// shape; `*_depth` is the original dtype's: u8, u16 or f32, which sets how values map to
/// classes as for image files). Returns the JSON of `bioseg evaluate --json` without its
/// settings: `{"images": [...], "mean": {...}, "challenge": {...}}` (`challenge` for binary maps).
#[pyfunction]
#[pyo3(signature = (pred, pred_depth, label, label_depth, *, classes=2, threshold=0.5, boundary_class=0, best_threshold=false))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate(
    py: Python<'_>,
    pred: PyReadonlyArrayDyn<'_, f32>,
    pred_depth: &str,
    label: PyReadonlyArrayDyn<'_, f32>,
    label_depth: &str,
    classes: usize,
    threshold: f32,
    boundary_class: u8,
    best_threshold: bool,
) -> PyResult<String> {
    let mapping = ClassMapping::new(classes, threshold).map_err(infer_error)?;
    mapping.check_boundary(boundary_class).map_err(infer_error)?;
    let scoring = Scoring { mapping, boundary_class, best_threshold };
    let (pred_depth, label_depth) = (depth(pred_depth)?, depth(label_depth)?);
    let (pred, label) = (stack(pred.as_array(), "pred")?, stack(label.as_array(), "label")?);
    if pred.shape() != label.shape() {
        return Err(input_error(format!("pred has shape {:?} but label has {:?}", pred.shape(), label.shape())));
    }
    let n = pred.dim().0;
    let scored = py.detach(|| {
        let mut images = Vec::with_capacity(n);
        for (z, (p, l)) in pred.outer_iter().zip(label.outer_iter()).enumerate() {
            let name = if n == 1 { "0".to_string() } else { format!("[{z}]") };
            let p = Image { data: p.insert_axis(Axis(2)).to_owned(), depth: pred_depth };
            let l = Image { data: l.insert_axis(Axis(2)).to_owned(), depth: label_depth };
            let what = (format!("pred {name}"), format!("label {name}"));
            images.push(score_images(&name, &p, &l, &scoring, (&what.0, &what.1))?);
        }
        Ok(Evaluation::from_scored(images))
    });
    let evaluation = scored.map_err(infer_error)?;
    serde_json::to_string(&evaluation).map_err(|e| infer_error(e.into()))
}

/// A sample depth by name.
fn depth(name: &str) -> PyResult<SampleDepth> {
    match name {
        "u8" => Ok(SampleDepth::U8),
        "u16" => Ok(SampleDepth::U16),
        "f32" => Ok(SampleDepth::F32),
        other => Err(input_error(format!("depth {other:?}: expected u8, u16 or f32"))),
    }
}

/// `[Y, X]` or `[Z, Y, X]` as a stack `[Z, Y, X]`.
fn stack<'a>(a: ArrayViewD<'a, f32>, what: &str) -> PyResult<ndarray::ArrayView3<'a, f32>> {
    let a = match a.ndim() {
        2 => a.insert_axis(Axis(0)),
        3 => a,
        n => return Err(input_error(format!("{what} has {n} axes; expected (y, x) or (z, y, x)"))),
    };
    a.into_dimensionality::<Ix3>().map_err(|e| input_error(format!("{what}: {e}")))
}
