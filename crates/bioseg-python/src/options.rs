//! Option values given as strings in Python (`blend="gaussian"`, `normalize="zscore"`), parsed
//! by the same `FromStr` implementations as the CLI's flags, so they accept the same spellings
//! and fail with the same messages.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bioseg_infer::predict::PredictOptions;
use bioseg_infer::tiling::{Blend, Parallelism, TileSize};
use bioseg_onnx::Normalization;
use pyo3::PyResult;

use crate::errors::input_error;

/// `value` as a `T`, or an `InputError` naming the argument.
pub(crate) fn parse<T: FromStr<Err = String>>(argument: &str, value: &str) -> PyResult<T> {
    value.parse().map_err(|e: String| input_error(format!("{argument}={value:?}: {e}")))
}

/// An optional string argument parsed.
pub(crate) fn parse_opt<T: FromStr<Err = String>>(argument: &str, value: Option<&str>) -> PyResult<Option<T>> {
    value.map(|v| parse(argument, v)).transpose()
}

/// The tiling keywords `Model.predict` and `predict_file` share (the CLI's flags of those names).
pub(crate) struct Tiling<'a> {
    /// Core size; None: `auto`.
    pub tile: Option<usize>,
    /// Core depth of volumetric tiles; None: the library's default.
    pub tile_z: Option<usize>,
    /// Context around each core; None: the model's.
    pub halo: Option<usize>,
    /// Overlap of neighbouring cores.
    pub overlap: usize,
    /// `crop` or `gaussian`.
    pub blend: &'a str,
    /// Test-time augmentation.
    pub tta: bool,
    /// `tiles` or `layers`; None: the library's default.
    pub parallel: Option<&'a str>,
    /// Tiles per model run.
    pub batch: usize,
    /// Normalisation override.
    pub normalize: Option<&'a str>,
}

impl Tiling<'_> {
    /// The library's options, stopped by `cancel`.
    pub(crate) fn options(&self, cancel: Arc<AtomicBool>) -> PyResult<PredictOptions> {
        let defaults = PredictOptions::default();
        Ok(PredictOptions {
            tile: self.tile.map_or(TileSize::Auto, TileSize::Pixels),
            tile_z: self.tile_z.unwrap_or(defaults.tile_z),
            halo: self.halo,
            overlap: self.overlap,
            blend: parse::<Blend>("blend", self.blend)?,
            batch: self.batch,
            normalize: parse_opt::<Normalization>("normalize", self.normalize)?,
            tta: self.tta,
            parallel: parse_opt::<Parallelism>("parallel", self.parallel)?.unwrap_or(defaults.parallel),
            cancel: Some(cancel),
            ..defaults
        })
    }
}
