//! Tiled, seam-free prediction of a 2-D image (volumes are predicted slice by slice or slab by
//! slab through the same engine).

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use bioseg_onnx::{Normalization, TensorLayout};
use ndarray::{Array2, Array3, ArrayView3, Axis};

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::OnnxModel;
use crate::tiler::Tiler;
use crate::tiling::{Blend, Parallelism, TilePlan, TileSize};

/// The halo of a model with neither `bioseg.recommended_halo` nor a receptive field that the
/// graph analysis can find, unless `--halo` is given.
pub const FALLBACK_HALO: usize = 32;

/// How to tile and prepare the input.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Requested core size of a tile (output pixels per tile and axis), or chosen for each
    /// image ([`TileSize::Auto`], the default; volumetric models then use [`TileSize::AUTO_3D`]).
    pub tile: TileSize,
    /// Context on each side of a tile [default: the model's recommended halo, else 32].
    pub halo: Option<usize>,
    /// Overlap between neighbouring cores.
    pub overlap: usize,
    /// Blending of overlapping outputs.
    pub blend: Blend,
    /// Tiles per model run (only when the batch axis is symbolic).
    pub batch: usize,
    /// Layout override.
    pub layout: Option<TensorLayout>,
    /// Normalisation override (else the model's, else divide by the bit depth's maximum).
    pub normalize: Option<Normalization>,
    /// Size-multiple override.
    pub size_multiple: Option<usize>,
    /// Test-time augmentation: average the predictions of the 8 flips and 90° rotations of the
    /// image (each mapped back), 8× the work.
    pub tta: bool,
    /// Volumetric (3-D) models: requested tile depth in slices (symbolic-depth models).
    pub tile_z: usize,
    /// Tiles in parallel, or one tile at a time with its layers split over the threads.
    pub parallel: Parallelism,
    /// Set from another thread to stop a running prediction: no tile starts after it is set,
    /// and the prediction returns [`InferError::Cancelled`] (the Python package's Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            tile: TileSize::Auto,
            halo: None,
            overlap: 0,
            blend: Blend::Crop,
            batch: 1,
            layout: None,
            normalize: None,
            size_multiple: None,
            tta: false,
            tile_z: 32,
            parallel: Parallelism::default(),
            cancel: None,
        }
    }
}

/// A predicted image: per-class probabilities `[K, H, W]` (K = 1: foreground probability).
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Probabilities, class-major.
    pub probs: Array3<f32>,
    /// Tiles run.
    pub tiles: usize,
}

impl Prediction {
    /// Label map: argmax over classes, or `p > threshold` for a single channel ([`class_map`]).
    pub fn labels(&self, threshold: f32) -> Array2<u8> {
        class_map(self.probs.view(), threshold)
    }
}

/// Class per pixel of probabilities `[K, h, w]`: the argmax over the classes (the last of
/// equal maxima), or `p > threshold` for one channel.
pub fn class_map(probs: ArrayView3<f32>, threshold: f32) -> Array2<u8> {
    let (k, h, w) = probs.dim();
    Array2::from_shape_fn((h, w), |(y, x)| {
        if k == 1 {
            u8::from(probs[[0, y, x]] > threshold)
        } else {
            (0..k).max_by(|&a, &b| probs[[a, y, x]].total_cmp(&probs[[b, y, x]])).unwrap_or(0) as u8
        }
    })
}

/// A prepared predictor: the model's interface, tiling and normalisation resolved once.
pub struct Predictor<'m> {
    pub(crate) model: &'m OnnxModel,
    pub(crate) io: ModelIo,
    pub(crate) opts: PredictOptions,
    pub(crate) halo: usize,
    pub(crate) multiple: usize,
}

impl<'m> Predictor<'m> {
    /// Resolves the model's interface and the options.
    pub fn new(model: &'m OnnxModel, opts: PredictOptions) -> Result<Self, InferError> {
        let io = ModelIo::probe(model, opts.layout)?;
        let multiple = opts.size_multiple.unwrap_or(io.size_multiple).max(1);
        let halo = opts.halo.or(io.recommended_halo).unwrap_or(FALLBACK_HALO);
        if opts.tile == TileSize::Pixels(0) {
            return Err(InferError::Input("--tile must be positive".into()));
        }
        if opts.tile_z == 0 {
            return Err(InferError::Input("--tile-z must be positive".into()));
        }
        if io.volumetric && opts.tta {
            return Err(InferError::Input(format!(
                "--tta is for 2-D models; {} is volumetric (3-D)",
                model.path().display()
            )));
        }
        Ok(Predictor { model, io, opts, halo, multiple })
    }

    /// The model's interface.
    pub fn io(&self) -> &ModelIo {
        &self.io
    }

    /// The halo in use.
    pub fn halo(&self) -> usize {
        self.halo
    }

    /// The normalisation applied to raw values of an image whose samples go up to `max_value`.
    pub fn normalization(&self, max_value: f32) -> Normalization {
        self.opts.normalize.or(self.io.normalization).unwrap_or(if max_value > 1.0 {
            Normalization::Divide(max_value)
        } else {
            Normalization::None
        })
    }

    /// Checks an input (`channels` on its last axis, a `what` such as "image") and resolves its
    /// normalisation; a per-image z-score or percentile range takes the statistics of the whole
    /// input, never of a tile, so results do not depend on tiling.
    pub(crate) fn checked_normalization<D: ndarray::Dimension>(
        &self,
        input: &ndarray::ArrayView<f32, D>,
        channels: usize,
        what: &str,
        max_value: f32,
    ) -> Result<Normalization, InferError> {
        if channels != self.io.channels {
            return Err(InferError::Input(format!(
                "the {what} has {channels} channel(s) but model {} expects {}",
                self.model.path().display(),
                self.io.channels
            )));
        }
        if input.iter().any(|v| !v.is_finite()) {
            return Err(InferError::Input(format!("the {what} holds NaN or infinite values")));
        }
        Ok(self.normalization(max_value).fixed_for(input.iter()))
    }

    /// The tiling plan for an image of `h × w`.
    pub fn plan(&self, h: usize, w: usize) -> Result<TilePlan, InferError> {
        let r = match self.io.fixed_size {
            Some(win) => TilePlan::fixed(h, w, win, self.opts.overlap, self.halo, self.multiple),
            None => {
                let (o, halo, m) = (self.opts.overlap, self.halo, self.multiple);
                let t = self.opts.tile.resolve(h, w, o, halo, m);
                TilePlan::new(h, w, (t, t), o, halo, m)
            }
        };
        r.map_err(InferError::Input)
    }

    /// Predicts `image` (`[H, W, C]`, raw sample values with maximum `max_value`), with
    /// test-time augmentation when the options ask for it. `on_tiles` is called with the number
    /// of tiles finished so far.
    pub fn predict(
        &self,
        image: ArrayView3<f32>,
        max_value: f32,
        on_tiles: &(dyn Fn(usize) + Sync),
    ) -> Result<Prediction, InferError> {
        if self.io.volumetric {
            return Err(InferError::Input(format!(
                "model {} is volumetric (3-D, rank-5 input): give it a volume (multi-page TIFF, folder of slices or Zarr), not a 2-D image",
                self.model.path().display()
            )));
        }
        if !self.opts.tta {
            return self.predict_once(image, max_value, on_tiles);
        }
        let (h, w, _) = image.dim();
        let mut sum: Option<Array3<f32>> = None;
        let mut tiles = 0;
        for t in Dihedral::ALL {
            let done = tiles;
            let pred = self.predict_once(t.apply(image), max_value, &|n| on_tiles(done + n))?;
            tiles += pred.tiles;
            let back = t.invert(pred.probs.view());
            match &mut sum {
                None => sum = Some(back.to_owned()),
                Some(s) => *s += &back,
            }
        }
        let mut probs = sum.expect("8 transforms");
        debug_assert_eq!((probs.dim().1, probs.dim().2), (h, w));
        probs /= Dihedral::ALL.len() as f32;
        Ok(Prediction { probs, tiles })
    }

    /// The number of tiles a prediction of an `h × w` image runs (all 8 transforms with TTA).
    pub fn tile_count(&self, h: usize, w: usize) -> Result<usize, InferError> {
        if !self.opts.tta {
            return Ok(self.plan(h, w)?.tiles().len());
        }
        // Transposed transforms tile a `w × h` image.
        Ok(4 * self.plan(h, w)?.tiles().len() + 4 * self.plan(w, h)?.tiles().len())
    }

    /// One prediction of `image`, as it is.
    fn predict_once(
        &self,
        image: ArrayView3<f32>,
        max_value: f32,
        on_tiles: &(dyn Fn(usize) + Sync),
    ) -> Result<Prediction, InferError> {
        let (h, w, c) = image.dim();
        let norm = self.checked_normalization(&image, c, "image", max_value)?;
        let grid = self.plan(h, w)?.grid();
        let (probs, tiles) = self.tiler().run(image.insert_axis(Axis(0)), &grid, norm, on_tiles)?;
        Ok(Prediction { probs: probs.remove_axis(Axis(1)), tiles })
    }

    /// The one tiler of images and volumes, with this predictor's model and options.
    pub(crate) fn tiler(&self) -> Tiler<'_> {
        let batch = if self.io.batch_symbolic { self.opts.batch.max(1) } else { 1 };
        Tiler {
            model: self.model,
            io: &self.io,
            blend: self.opts.blend,
            batch,
            parallel: self.opts.parallel,
            cancel: self.opts.cancel.as_deref(),
        }
    }
}

/// Megapixels per second of `pixels` processed since `start`.
pub fn megapixels_per_second(pixels: usize, start: Instant) -> f64 {
    pixels as f64 / 1e6 / start.elapsed().as_secs_f64().max(1e-9)
}

/// One of the 8 symmetries of the square (flips and 90° rotations) used by test-time
/// augmentation: optionally transpose (swap rows and columns), then flip rows and/or columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dihedral {
    /// Swap the row and column axes first.
    pub transpose: bool,
    /// Then reverse the rows.
    pub flip_y: bool,
    /// Then reverse the columns.
    pub flip_x: bool,
}

impl Dihedral {
    /// All 8: identity, the 3 rotations, the 4 reflections.
    pub const ALL: [Dihedral; 8] = {
        let mut all = [Dihedral { transpose: false, flip_y: false, flip_x: false }; 8];
        let mut i = 0;
        while i < 8 {
            all[i] = Dihedral { transpose: i & 4 != 0, flip_y: i & 2 != 0, flip_x: i & 1 != 0 };
            i += 1;
        }
        all
    };

    /// The transformed view of an image `[H, W, C]` (no copy).
    pub fn apply<'a>(self, image: ArrayView3<'a, f32>) -> ArrayView3<'a, f32> {
        let mut v = if self.transpose { image.permuted_axes([1, 0, 2]) } else { image };
        if self.flip_y {
            v.invert_axis(Axis(0));
        }
        if self.flip_x {
            v.invert_axis(Axis(1));
        }
        v
    }

    /// Maps class maps `[K, H', W']` of a transformed image back onto the original's grid.
    pub fn invert<'a>(self, probs: ArrayView3<'a, f32>) -> ArrayView3<'a, f32> {
        let mut v = probs;
        if self.flip_y {
            v.invert_axis(Axis(1));
        }
        if self.flip_x {
            v.invert_axis(Axis(2));
        }
        if self.transpose { v.permuted_axes([0, 2, 1]) } else { v }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_symmetry_is_undone_by_its_inverse_and_all_eight_differ() {
        let img = Array3::from_shape_fn((3, 5, 2), |(y, x, c)| (y * 10 + x + 100 * c) as f32);
        let mut seen = Vec::new();
        for t in Dihedral::ALL {
            let v = t.apply(img.view());
            // As class maps [K, H', W'].
            let maps = v.permuted_axes([2, 0, 1]);
            let back = t.invert(maps);
            assert_eq!(back.permuted_axes([1, 2, 0]), img.view(), "{t:?}");
            seen.push(v.to_owned());
        }
        for i in 0..8 {
            for j in 0..i {
                assert_ne!(seen[i], seen[j], "symmetries {i} and {j} coincide");
            }
        }
    }
}
