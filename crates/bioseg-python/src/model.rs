//! `bioseg.Model`: a loaded model, its description, and prediction of numpy arrays.
//!
//! Arrays arrive as float32 with their axes named by the Python layer (`yx`, `cyx`, `yxc` for
//! an image; `zyx`, `czyx`, `zyxc` for a volume) and the maximum of their original dtype (255
//! for uint8, 65535 for uint16, else 1), which is what a file of that type gives the CLI. They
//! are read in place (any strides: the tiler gathers each window by index), so a channel-first
//! array is not copied. Volumes go slice by slice through 2-D models and in 3-D tiles through
//! volumetric ones, as `bioseg predict` does.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor, class_map};
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, ArrayViewD, Axis, Ix3, Ix4};
use numpy::{IntoPyArray, PyReadonlyArrayDyn};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{Kind, infer_error, input_error, raise};
use crate::interrupt::{Job, run};
use crate::options::Tiling;

/// A segmentation model (ONNX file or BioImage Model Zoo package), loaded once and shared by
/// any number of predictions, also from several Python threads at once.
#[pyclass(frozen, module = "bioseg._bioseg")]
pub(crate) struct Model {
    model: OnnxModel,
}

/// What a prediction returns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Returned {
    /// Probabilities, float32.
    Prob,
    /// A class per pixel (argmax, or `p > threshold` for one channel), uint8.
    Labels,
}

/// The input, as the tiler reads it.
enum Input<'a> {
    /// `[H, W, C]`.
    Image(ArrayView3<'a, f32>),
    /// `[Z, H, W, C]`.
    Volume(ArrayView4<'a, f32>),
}

impl Model {
    /// The loaded model.
    pub(crate) fn onnx(&self) -> &OnnxModel {
        &self.model
    }
}

#[pymethods]
impl Model {
    /// Loads `path`: an ONNX file, or a BioImage Model Zoo package (.zip, rdf.yaml or folder).
    #[new]
    fn new(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        if !path.exists() {
            return Err(raise(Kind::NotFound, format!("model {}: no such file or folder", path.display())));
        }
        let model = py.detach(|| OnnxModel::load(&path)).map_err(infer_error)?;
        Ok(Model { model })
    }

    /// The model's interface and metadata as JSON (the Python layer's `Model.info`).
    fn info_json(&self) -> PyResult<String> {
        // The interface and halo a prediction with default options uses.
        let predictor = Predictor::new(&self.model, PredictOptions::default()).map_err(infer_error)?;
        let io = predictor.io();
        let md = self.model.metadata();
        let metadata: serde_json::Map<String, serde_json::Value> =
            md.to_props().into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        let info = serde_json::json!({
            "path": self.model.path().display().to_string(),
            "package": self.model.package().is_some(),
            "input": self.model.input_name(),
            "outputs": self.model.output_names(),
            "layout": io.layout.to_string(),
            "volumetric": io.volumetric,
            "channels": io.channels,
            "fixed_size": io.fixed_size.map(|(h, w)| [h, w]),
            "fixed_depth": io.fixed_depth,
            "size_multiple": io.size_multiple,
            "recommended_halo": io.recommended_halo,
            "halo": predictor.halo(),
            "classes": md.classes,
            "activation": io.activation.to_string(),
            "normalization": io.normalization.map(|n| n.to_string()),
            "metadata": metadata,
        });
        Ok(info.to_string())
    }

    /// Predicts `array` (float32, axes `axes`, raw values up to `max_value`); returns
    /// probabilities `[(K,) (Z,) Y, X]` (the class axis only for several classes) or labels
    /// `[(Z,) Y, X]`. The tiling keywords are [`Tiling`]'s; see the Python layer for all.
    #[pyo3(signature = (array, axes, max_value, *, threads=None, output="prob", threshold=0.5, progress=None, **tiling))]
    #[allow(clippy::too_many_arguments)]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        array: PyReadonlyArrayDyn<'py, f32>,
        axes: &str,
        max_value: f32,
        threads: Option<usize>,
        output: &str,
        threshold: f32,
        progress: Option<Bound<'py, PyAny>>,
        tiling: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let returned = match output {
            "prob" => Returned::Prob,
            "labels" => Returned::Labels,
            other => return Err(input_error(format!("output={other:?}: expected \"prob\" or \"labels\""))),
        };
        if !(0.0..=1.0).contains(&threshold) {
            return Err(input_error(format!("threshold must be within [0, 1], not {threshold}")));
        }
        let job = Job::default();
        let opts = Tiling::from_keywords(tiling)?.options(job.cancel.clone())?;
        let predictor = Predictor::new(&self.model, opts).map_err(infer_error)?;
        let input = arrange(array.as_array(), axes)?;
        let image = matches!(input, Input::Image(_));
        let on_tiles = |n: usize| job.done.store(n, Ordering::Relaxed);
        let probs: Array4<f32> = match input {
            Input::Image(view) => {
                let (h, w, _) = view.dim();
                job.total.store(predictor.tile_count(h, w).map_err(infer_error)?, Ordering::Relaxed);
                let pred = run(py, &job, threads, progress.as_ref(), || predictor.predict(view, max_value, &on_tiles))?;
                pred.probs.insert_axis(Axis(1))
            }
            Input::Volume(volume) if predictor.io().volumetric => {
                let (d, h, w, _) = volume.dim();
                let tiles = predictor.plan_3d(d, h, w).map_err(infer_error)?.tiles().len();
                job.total.store(tiles, Ordering::Relaxed);
                let run_volume = || predictor.predict_volume(volume, max_value, &on_tiles);
                run(py, &job, threads, progress.as_ref(), run_volume)?.probs
            }
            Input::Volume(volume) => {
                let (d, h, w, _) = volume.dim();
                let per_slice = predictor.tile_count(h, w).map_err(infer_error)?;
                job.total.store(d * per_slice, Ordering::Relaxed);
                // Each slice's probabilities go straight into the volume's (no second copy).
                let slices = || {
                    let mut out: Option<Array4<f32>> = None;
                    for (z, slice) in volume.outer_iter().enumerate() {
                        let before = z * per_slice;
                        let pred = predictor.predict(slice, max_value, &|n| on_tiles(before + n))?;
                        let k = pred.probs.dim().0;
                        out.get_or_insert_with(|| Array4::zeros((k, d, h, w)))
                            .index_axis_mut(Axis(1), z)
                            .assign(&pred.probs);
                    }
                    out.ok_or_else(|| bioseg_infer::InferError::Input("the volume has no slices".into()))
                };
                run(py, &job, threads, progress.as_ref(), slices)?
            }
        };
        let result = match returned {
            Returned::Prob => {
                let mut probs = probs.into_dyn();
                if image {
                    probs.index_axis_inplace(Axis(1), 0);
                }
                if probs.shape()[0] == 1 {
                    probs.index_axis_inplace(Axis(0), 0);
                }
                probs.into_pyarray(py).into_any()
            }
            Returned::Labels => {
                let mut labels = py.detach(|| labels_of(&probs, threshold)).into_dyn();
                if image {
                    labels.index_axis_inplace(Axis(0), 0);
                }
                labels.into_pyarray(py).into_any()
            }
        };
        Ok(result)
    }
}

/// A class per voxel of probabilities `[K, Z, H, W]`: `[Z, H, W]`.
fn labels_of(probs: &Array4<f32>, threshold: f32) -> Array3<u8> {
    let (_, d, h, w) = probs.dim();
    let mut out = Array3::zeros((d, h, w));
    for z in 0..d {
        out.index_axis_mut(Axis(0), z).assign(&class_map(probs.index_axis(Axis(1), z), threshold));
    }
    out
}

/// `array` as `[H, W, C]` (an image) or `[Z, H, W, C]` (a volume), by its axes.
fn arrange<'a>(array: ArrayViewD<'a, f32>, axes: &str) -> PyResult<Input<'a>> {
    let want = axes.len();
    if array.ndim() != want {
        return Err(input_error(format!("axes {axes:?} name {want} axes but the array has {}", array.ndim())));
    }
    let image = |a: ArrayViewD<'a, f32>| a.into_dimensionality::<Ix3>().map(Input::Image);
    let volume = |a: ArrayViewD<'a, f32>| a.into_dimensionality::<Ix4>().map(Input::Volume);
    let arranged = match axes {
        "yx" => image(array.insert_axis(Axis(2))),
        "yxc" => image(array),
        "cyx" => image(array.permuted_axes(vec![1, 2, 0])),
        "zyx" => volume(array.insert_axis(Axis(3))),
        "zyxc" => volume(array),
        "czyx" => volume(array.permuted_axes(vec![1, 2, 3, 0])),
        other => {
            return Err(input_error(format!(
                "axes={other:?}: expected one of yx, yxc, cyx (an image) or zyx, zyxc, czyx (a volume)"
            )));
        }
    };
    arranged.map_err(|e| input_error(format!("array of axes {axes}: {e}")))
}
