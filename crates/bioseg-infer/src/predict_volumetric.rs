//! Tiled prediction of 3-D blocks with volumetric (rank-5) models: the plan along z, y and x
//! ([`AxisPlan`]: cores, context read from the real neighbouring data, mirroring only at the
//! block's borders), run by the one tiler of images and volumes ([`crate::tiler`]).
//!
//! The volume runner hands each block with its context on every side (z included), so that
//! mirroring happens only at the volume's true borders; with a halo covering the receptive
//! field, the result equals whole-volume inference.

use ndarray::{Array4, ArrayView4};

use crate::error::InferError;
use crate::predict::Predictor;
use crate::tiling::{AxisPlan, GridPlan};

/// A predicted block: per-class probabilities `[K, Z, Y, X]`.
#[derive(Clone, Debug)]
pub struct Prediction3 {
    /// Probabilities, class-major.
    pub probs: Array4<f32>,
    /// Tiles run.
    pub tiles: usize,
}

impl Predictor<'_> {
    /// The 3-D tiling plan of a `d × h × w` block (volumetric models).
    pub fn plan_3d(&self, d: usize, h: usize, w: usize) -> Result<GridPlan, InferError> {
        let (o, halo, m) = (self.opts.overlap, self.halo, self.multiple);
        let axis = |size: usize, fixed: Option<usize>, tile: usize| match fixed {
            Some(win) => AxisPlan::fixed_window(size, win, o, halo, m),
            None => AxisPlan::new(size, tile, o, halo, m),
        };
        let (fh, fw) = match self.io.fixed_size {
            Some((fh, fw)) => (Some(fh), Some(fw)),
            None => (None, None),
        };
        Ok(GridPlan {
            z: axis(d, self.io.fixed_depth, self.opts.tile_z).map_err(InferError::Input)?,
            y: axis(h, fh, self.opts.tile.volumetric()).map_err(InferError::Input)?,
            x: axis(w, fw, self.opts.tile.volumetric()).map_err(InferError::Input)?,
        })
    }

    /// Predicts a block `[Z, Y, X, C]` (raw sample values with maximum `max_value`) with a
    /// volumetric model. A per-image z-score is computed over the block (the volume runner
    /// refuses it, since blocks would then see different statistics).
    pub fn predict_volume(
        &self,
        block: ArrayView4<f32>,
        max_value: f32,
        on_tiles: &(dyn Fn(usize) + Sync),
    ) -> Result<Prediction3, InferError> {
        if !self.io.volumetric {
            return Err(InferError::Input(format!(
                "model {} is 2-D; volumes are predicted slice by slice with it",
                self.model.path().display()
            )));
        }
        let (d, h, w, c) = block.dim();
        let norm = self.checked_normalization(&block, c, "volume", max_value)?;
        let plan = self.plan_3d(d, h, w)?;
        let (probs, tiles) = self.tiler().run(block, &plan, norm, on_tiles)?;
        Ok(Prediction3 { probs, tiles })
    }
}
