//! Tiled, seam-free prediction of a 2-D image (volumes are predicted slice by slice or slab by
//! slab through the same engine).

use std::time::Instant;

use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};
use ndarray::{Array2, Array3, ArrayView3};
use rayon::prelude::*;

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::OnnxModel;
use crate::tiling::{Blend, Tile, TilePlan, gaussian_weights};

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

/// A prepared predictor: the model's interface, tiling and normalisation resolved once.
pub struct Predictor<'m> {
    model: &'m OnnxModel,
    io: ModelIo,
    opts: PredictOptions,
    halo: usize,
    multiple: usize,
}

impl<'m> Predictor<'m> {
    /// Resolves the model's interface and the options.
    pub fn new(model: &'m OnnxModel, opts: PredictOptions) -> Result<Self, InferError> {
        let io = ModelIo::probe(model, opts.layout)?;
        let multiple = opts.size_multiple.unwrap_or(io.size_multiple).max(1);
        let halo = opts.halo.or(io.recommended_halo).unwrap_or(32);
        if opts.tile == 0 {
            return Err(InferError::Input("--tile must be positive".into()));
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

    /// The tiling plan for an image of `h × w`.
    pub fn plan(&self, h: usize, w: usize) -> Result<TilePlan, InferError> {
        let r = match self.io.fixed_size {
            Some(win) => TilePlan::fixed(h, w, win, self.opts.overlap, self.halo, self.multiple),
            None => TilePlan::new(h, w, (self.opts.tile, self.opts.tile), self.opts.overlap, self.halo, self.multiple),
        };
        r.map_err(InferError::Input)
    }

    /// Predicts `image` (`[H, W, C]`, raw sample values with maximum `max_value`).
    /// `on_tiles` is called with the number of tiles finished so far.
    pub fn predict(
        &self,
        image: ArrayView3<f32>,
        max_value: f32,
        on_tiles: &(dyn Fn(usize) + Sync),
    ) -> Result<Prediction, InferError> {
        let (h, w, c) = image.dim();
        if c != self.io.channels {
            return Err(InferError::Input(format!(
                "the image has {c} channel(s) but model {} expects {}",
                self.model.path().display(),
                self.io.channels
            )));
        }
        if image.iter().any(|v| !v.is_finite()) {
            return Err(InferError::Input("the image holds NaN or infinite values".into()));
        }
        let mut norm = self.normalization(max_value);
        if norm == Normalization::ZScorePerImage {
            // Statistics of the whole image, never of a tile, so results do not depend on tiling.
            let n = image.len() as f64;
            let mean = image.iter().map(|&v| v as f64).sum::<f64>() / n;
            let var = image.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
            norm = Normalization::ZScore { mean: mean as f32, std: var.sqrt().max(1e-6) as f32 };
        }
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
            let outputs: Vec<Result<Vec<(Tile, Array3<f32>)>, InferError>> = group
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
        let mut probs = probs.ok_or_else(|| InferError::Run("no tiles were run".into()))?;
        if let Some(wsum) = weights {
            for mut plane in probs.outer_iter_mut() {
                plane.zip_mut_with(&wsum, |v, &wt| *v /= wt);
            }
        }
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
    ) -> Result<Vec<(Tile, Array3<f32>)>, InferError> {
        let c = image.dim().2;
        let b = tiles.len();
        let mut input = vec![0f32; b * c * wh * ww];
        let ys: Vec<Vec<usize>> = tiles.iter().map(|t| (0..wh).map(|i| plan.y.source_index(t.y0, i)).collect()).collect();
        let xs: Vec<Vec<usize>> = tiles.iter().map(|t| (0..ww).map(|i| plan.x.source_index(t.x0, i)).collect()).collect();
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
                    reason: format!("output shape {oshape:?} is not a batch of {b} images in layout {}", self.io.layout),
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
