//! Option values given as strings in Python (`blend="gaussian"`, `normalize="zscore"`), parsed
//! by the same `FromStr` implementations as the CLI's flags, so they accept the same spellings
//! and fail with the same messages.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bioseg_infer::predict::PredictOptions;
use bioseg_infer::tiling::{Blend, Parallelism, TileSize};
use bioseg_onnx::Normalization;
use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::input_error;

/// `value` as a `T`, or an `InputError` naming the argument.
pub(crate) fn parse<T: FromStr<Err = String>>(argument: &str, value: &str) -> PyResult<T> {
    value.parse().map_err(|e: String| input_error(format!("{argument}={value:?}: {e}")))
}

/// An optional string argument parsed.
pub(crate) fn parse_opt<T: FromStr<Err = String>>(argument: &str, value: Option<&str>) -> PyResult<Option<T>> {
    value.map(|v| parse(argument, v)).transpose()
}

/// The tiling keywords `Model.predict` and `predict_file` share (the CLI's flags of those
/// names), read from the call's remaining keywords (`**tiling`).
pub(crate) struct Tiling {
    /// Core size; None: `auto`.
    tile: Option<usize>,
    /// Core depth of volumetric tiles; None: the library's default.
    tile_z: Option<usize>,
    /// Context around each core; None: the model's.
    halo: Option<usize>,
    /// Overlap of neighbouring cores.
    overlap: usize,
    /// `crop` or `gaussian`; None: the library's default.
    blend: Option<String>,
    /// Test-time augmentation.
    tta: bool,
    /// `tiles` or `layers`; None: the library's default.
    parallel: Option<String>,
    /// Tiles per model run; None: the library's default.
    batch: Option<usize>,
    /// Normalisation override.
    normalize: Option<String>,
}

impl Tiling {
    /// The tiling keywords of `keywords`; any other keyword is refused as the call's own
    /// parameters would be.
    pub(crate) fn from_keywords(keywords: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let mut t = Tiling {
            tile: None,
            tile_z: None,
            halo: None,
            overlap: 0,
            blend: None,
            tta: false,
            parallel: None,
            batch: None,
            normalize: None,
        };
        for (key, value) in keywords.into_iter().flat_map(|k| k.iter()) {
            let key: String = key.extract()?;
            fn get<'py, T: FromPyObjectOwned<'py>>(key: &str, value: &Bound<'py, PyAny>) -> PyResult<T> {
                value.extract::<T>().map_err(|e| input_error(format!("{key}: {}", Into::<PyErr>::into(e))))
            }
            match key.as_str() {
                "tile" => t.tile = get(&key, &value)?,
                "tile_z" => t.tile_z = get(&key, &value)?,
                "halo" => t.halo = get(&key, &value)?,
                "overlap" => t.overlap = get(&key, &value)?,
                "blend" => t.blend = get(&key, &value)?,
                "tta" => t.tta = get(&key, &value)?,
                "parallel" => t.parallel = get(&key, &value)?,
                "batch" => t.batch = get(&key, &value)?,
                "normalize" => t.normalize = get(&key, &value)?,
                other => return Err(input_error(format!("unexpected keyword argument {other:?}"))),
            }
        }
        Ok(t)
    }

    /// The library's options, stopped by `cancel`.
    pub(crate) fn options(&self, cancel: Arc<AtomicBool>) -> PyResult<PredictOptions> {
        let defaults = PredictOptions::default();
        Ok(PredictOptions {
            tile: self.tile.map_or(TileSize::Auto, TileSize::Pixels),
            tile_z: self.tile_z.unwrap_or(defaults.tile_z),
            halo: self.halo,
            overlap: self.overlap,
            blend: parse_opt::<Blend>("blend", self.blend.as_deref())?.unwrap_or(defaults.blend),
            batch: self.batch.unwrap_or(defaults.batch),
            normalize: parse_opt::<Normalization>("normalize", self.normalize.as_deref())?,
            tta: self.tta,
            parallel: parse_opt::<Parallelism>("parallel", self.parallel.as_deref())?.unwrap_or(defaults.parallel),
            cancel: Some(cancel),
            ..defaults
        })
    }
}
