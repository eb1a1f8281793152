//! Tiled, seam-free prediction of a 2-D image (volumes are predicted slice by slice or slab by
//! slab through the same engine).

use std::time::Instant;

use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};
use ndarray::{Array2, Array3, ArrayView3, Axis};
use rayon::prelude::*;

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::OnnxModel;
use crate::tiling::{Blend, Tile, TilePlan, gaussian_weights};

/// The halo of a model with neither `bioseg.recommended_halo` nor a receptive field that the
/// graph analysis can find, unless `--halo` is given.
pub const FALLBACK_HALO: usize = 32;

/// How to tile and prepare the input.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Requested core size of a tile (output pixels per tile and axis).
    pub tile: usize,
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
}

impl Default for PredictOptions {
    fn default() -> Self {
        PredictOptions {
            tile: 256,
            halo: None,
            overlap: 0,
            blend: Blend::Crop,
            batch: 1,
            layout: None,
            normalize: None,
            size_multiple: None,
            tta: false,
            tile_z: 32,
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
    /// Label map: argmax over classes, or `p > threshold` for a single channel.
    pub fn labels(&self, threshold: f32) -> Array2<u8> {
        let (k, h, w) = self.probs.dim();
        Array2::from_shape_fn((h, w), |(y, x)| {
            if k == 1 {
                u8::from(self.probs[[0, y, x]] > threshold)
            } else {
                (0..k).max_by(|&a, &b| self.probs[[a, y, x]].total_cmp(&self.probs[[b, y, x]])).unwrap_or(0) as u8
            }
        })
    }
}

/// A batch of tiles with the model's output for each (`[h, w, classes]`).
type TileOutputs = Vec<(Tile, Array3<f32>)>;

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
        if opts.tile == 0 {
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
    /// normalisation; a per-image z-score takes the statistics of the whole input, never of a
    /// tile, so results do not depend on tiling.
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
        let norm = self.normalization(max_value);
        if norm != Normalization::ZScorePerImage {
            return Ok(norm);
        }
        let n = input.len() as f64;
        let mean = input.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = input.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        Ok(Normalization::ZScore { mean: mean as f32, std: var.sqrt().max(1e-6) as f32 })
    }

    /// The tiling plan for an image of `h × w`.
    pub fn plan(&self, h: usize, w: usize) -> Result<TilePlan, InferError> {
        let r = match self.io.fixed_size {
            Some(win) => TilePlan::fixed(h, w, win, self.opts.overlap, self.halo, self.multiple),
            None => TilePlan::new(h, w, (self.opts.tile, self.opts.tile), self.opts.overlap, self.halo, self.multiple),
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
        let plan = self.plan(h, w)?;
        let tiles = plan.tiles();
        let batch = if self.io.batch_symbolic { self.opts.batch.max(1) } else { 1 };
        let (wh, ww) = plan.window();
        let mut probs: Option<Array3<f32>> = None;
        let mut weights = match self.opts.blend {
            Blend::Gaussian => Some(Array2::<f32>::zeros((h, w))),
            Blend::Crop => None,
        };
        let (gy, gx) = (gaussian_weights(plan.y.core), gaussian_weights(plan.x.core));
        let chunk = batch * rayon::current_num_threads().max(1) * 2;
        let done = std::sync::atomic::AtomicUsize::new(0);
        for group in tiles.chunks(chunk) {
            let outputs: Vec<Result<TileOutputs, InferError>> = group
                .par_chunks(batch)
                .map(|b| {
                    let r = self.run_batch(&plan, b, image, norm, (wh, ww));
                    let n = done.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed) + b.len();
                    on_tiles(n);
                    r
                })
                .collect();
            for out in outputs {
                for (tile, core) in out? {
                    let k = core.dim().0;
                    let p = probs.get_or_insert_with(|| Array3::zeros((k, h, w)));
                    if p.dim().0 != k {
                        return Err(InferError::Run("tiles returned different channel counts".into()));
                    }
                    match &mut weights {
                        None => {
                            let (yf, yt) = plan.y.crop_range(tile.ky);
                            let (xf, xt) = plan.x.crop_range(tile.kx);
                            for c in 0..k {
                                for y in yf..yt {
                                    for x in xf..xt {
                                        p[[c, y, x]] = core[[c, y - tile.y0, x - tile.x0]];
                                    }
                                }
                            }
                        }
                        Some(wsum) => {
                            let yt = (tile.y0 + plan.y.core).min(h);
                            let xt = (tile.x0 + plan.x.core).min(w);
                            for y in tile.y0..yt {
                                for x in tile.x0..xt {
                                    let wt = gy[y - tile.y0] * gx[x - tile.x0];
                                    wsum[[y, x]] += wt;
                                    for c in 0..k {
                                        p[[c, y, x]] += wt * core[[c, y - tile.y0, x - tile.x0]];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let probs = finish_blend(probs, weights)?;
        Ok(Prediction { probs, tiles: tiles.len() })
    }

    /// Runs one batch of tiles; returns each tile's core as probabilities `[K, core_h, core_w]`.
    fn run_batch(
        &self,
        plan: &TilePlan,
        tiles: &[Tile],
        image: ArrayView3<f32>,
        norm: Normalization,
        (wh, ww): (usize, usize),
    ) -> Result<TileOutputs, InferError> {
        let c = image.dim().2;
        let b = tiles.len();
        let mut input = vec![0f32; b * c * wh * ww];
        let ys: Vec<Vec<usize>> =
            tiles.iter().map(|t| (0..wh).map(|i| plan.y.source_index(t.y0, i)).collect()).collect();
        let xs: Vec<Vec<usize>> =
            tiles.iter().map(|t| (0..ww).map(|i| plan.x.source_index(t.x0, i)).collect()).collect();
        for (i, _) in tiles.iter().enumerate() {
            for (wy, &sy) in ys[i].iter().enumerate() {
                for (wx, &sx) in xs[i].iter().enumerate() {
                    for ch in 0..c {
                        let v = image[[sy, sx, ch]];
                        let idx = match self.io.layout {
                            TensorLayout::Nhwc => ((i * wh + wy) * ww + wx) * c + ch,
                            _ => ((i * c + ch) * wh + wy) * ww + wx,
                        };
                        input[idx] = v;
                    }
                }
            }
        }
        norm.apply(&mut input);
        let shape = match self.io.layout {
            TensorLayout::Nhwc => vec![b, wh, ww, c],
            _ => vec![b, c, wh, ww],
        };
        let mut outputs = self.model.run(&shape, &input)?;
        let (oshape, values) = outputs.swap_remove(0);
        let (k, oh, ow) = match (self.io.layout, oshape.as_slice()) {
            (TensorLayout::Nhwc, [ob, oh, ow, k]) if *ob == b => (*k, *oh, *ow),
            (TensorLayout::Nchw, [ob, k, oh, ow]) if *ob == b => (*k, *oh, *ow),
            (_, [ob, oh, ow]) if *ob == b => (1, *oh, *ow),
            _ => {
                return Err(InferError::Model {
                    path: self.model.path().to_path_buf(),
                    reason: format!(
                        "output shape {oshape:?} is not a batch of {b} images in layout {}",
                        self.io.layout
                    ),
                });
            }
        };
        if (oh, ow) != (wh, ww) {
            return Err(InferError::Model {
                path: self.model.path().to_path_buf(),
                reason: format!(
                    "output is {oh}x{ow} for a {wh}x{ww} input; bioseg predicts with image-to-image models of equal input and output size"
                ),
            });
        }
        let (ch, cw, hy, hx) = (plan.y.core, plan.x.core, plan.y.halo, plan.x.halo);
        let layout = self.io.layout;
        let at = |i: usize, kk: usize, y: usize, x: usize| match layout {
            TensorLayout::Nhwc => values[((i * oh + y) * ow + x) * k + kk],
            _ => values[((i * k + kk) * oh + y) * ow + x],
        };
        let activation = self.io.activation;
        Ok(tiles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut core = Array3::from_shape_fn((k, ch, cw), |(kk, y, x)| at(i, kk, y + hy, x + hx));
                if activation == OutputActivation::Logits {
                    to_probabilities(&mut core);
                }
                (*t, core)
            })
            .collect())
    }
}

/// The blended class maps of a prediction: with Gaussian blending, the weighted sums divided by
/// the summed weights (`wsum`, one per pixel or voxel, shared by every class).
pub(crate) fn finish_blend<D: ndarray::RemoveAxis>(
    probs: Option<ndarray::Array<f32, D>>,
    wsum: Option<ndarray::Array<f32, D::Smaller>>,
) -> Result<ndarray::Array<f32, D>, InferError> {
    let mut probs = probs.ok_or_else(|| InferError::Run("no tiles were run".into()))?;
    if let Some(wsum) = wsum {
        for mut class in probs.outer_iter_mut() {
            class.zip_mut_with(&wsum, |v, &wt| *v /= wt);
        }
    }
    Ok(probs)
}

/// Sigmoid (one channel) or softmax over channels, in place.
pub fn to_probabilities(a: &mut Array3<f32>) {
    let (k, h, w) = a.dim();
    if k == 1 {
        a.mapv_inplace(|v| 1.0 / (1.0 + (-v).exp()));
        return;
    }
    for y in 0..h {
        for x in 0..w {
            let m = (0..k).map(|c| a[[c, y, x]]).fold(f32::NEG_INFINITY, f32::max);
            let s: f32 = (0..k).map(|c| (a[[c, y, x]] - m).exp()).sum();
            for c in 0..k {
                a[[c, y, x]] = (a[[c, y, x]] - m).exp() / s;
            }
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
