//! `bioseg.predict_file`: the CLI's `bioseg predict` on files (images, and volumes streamed
//! slab by slab in bounded memory), through the same library function.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use bioseg_data::volume::VolumeFormat;
use bioseg_infer::output::OutputType;
use bioseg_infer::predict_file::{FileJob, FileProgress};
use bioseg_infer::volume_predict::{ByteSize, Roi, Shard, Span, VolumeOptions};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::interrupt::{Job, run};
use crate::model::Model;
use crate::options::{Tiling, parse_opt};

/// Volume progress in these units (a volume's total is reported as this many).
const PER_MILLE: usize = 1000;

/// Predicts the file `input` with `model` into `output` (the format follows the extension, as
/// for `bioseg predict`); returns the paths written. The options are the CLI's flags (the
/// tiling ones through [`Tiling`]).
#[pyfunction]
#[pyo3(signature = (model, input, output, *, threads=None, output_type=None, threshold=0.5, overwrite=false, format=None, z_range=None, roi=None, slab=None, memory_budget=None, shard=None, resume=false, progress=None, **tiling))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn predict_file(
    py: Python<'_>,
    model: &Model,
    input: PathBuf,
    output: PathBuf,
    threads: Option<usize>,
    output_type: Option<&str>,
    threshold: f32,
    overwrite: bool,
    format: Option<&str>,
    z_range: Option<&str>,
    roi: Option<&str>,
    slab: Option<usize>,
    memory_budget: Option<&str>,
    shard: Option<&str>,
    resume: bool,
    progress: Option<Bound<'_, PyAny>>,
    tiling: Option<&Bound<'_, PyDict>>,
) -> PyResult<Vec<PathBuf>> {
    let job = Job::default();
    let predict = Tiling::from_keywords(tiling)?.options(job.cancel.clone())?;
    let volume = VolumeOptions {
        z_range: parse_opt::<Span>("z_range", z_range)?,
        roi: parse_opt::<Roi>("roi", roi)?,
        slab,
        memory_budget: parse_opt::<ByteSize>("memory_budget", memory_budget)?.map(|b| b.0),
        shard: parse_opt::<Shard>("shard", shard)?,
        resume,
        overwrite,
        output_type: parse_opt::<OutputType>("output_type", output_type)?.unwrap_or_default(),
        threshold,
        throttle: None,
    };
    let format = parse_opt::<VolumeFormat>("format", format)?;
    let file_job = FileJob { input: &input, output: &output, format, predict, volume };
    let on_progress = |p: FileProgress| {
        let (done, total) = match p {
            FileProgress::Tiles { done, total } => (done, total),
            FileProgress::Volume(v) => ((v.fraction() * PER_MILLE as f64).round() as usize, PER_MILLE),
        };
        job.total.store(total, Ordering::Relaxed);
        job.done.store(done, Ordering::Relaxed);
    };
    let report = run(py, &job, threads, progress.as_ref(), || {
        bioseg_infer::predict_file::predict_file(model.onnx(), &file_job, &on_progress)
    })?;
    Ok(report.outputs().to_vec())
}
