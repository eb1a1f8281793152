//! Tiled prediction of 3-D blocks with volumetric (rank-5) models: the 2-D engine's geometry
//! ([`AxisPlan`]: cores, context read from the real neighbouring data, mirroring only at the
//! block's borders, crop or Gaussian blending) along z, y and x.
//!
//! The volume runner hands each block with its context on every side (z included), so that
//! mirroring happens only at the volume's true borders; with a halo covering the receptive
//! field, the result equals whole-volume inference.

use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};
use ndarray::{Array3, Array4, ArrayView4, s};
use rayon::prelude::*;

use crate::error::InferError;
use crate::predict::{Predictor, finish_blend, to_probabilities};
use crate::tiling::{AxisPlan, Blend, gaussian_weights};

/// A batch of 3-D tiles with the model's output for each (`[d, h, w, classes]`).
type BlockOutputs = Vec<(Tile3, Array4<f32>)>;

/// A 3-D tiling plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumePlan3 {
    /// Slices.
    pub z: AxisPlan,
    /// Rows.
    pub y: AxisPlan,
    /// Columns.
    pub x: AxisPlan,
}

/// One tile of a [`VolumePlan3`]: indices along each axis and the core's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile3 {
    /// Indices along z, y, x.
    pub k: [usize; 3],
    /// Core origin (z, y, x).
    pub origin: [usize; 3],
}

impl VolumePlan3 {
    /// All tiles, z-major.
    pub fn tiles(&self) -> Vec<Tile3> {
        let mut v = Vec::new();
        for (kz, &z0) in self.z.starts.iter().enumerate() {
            for (ky, &y0) in self.y.starts.iter().enumerate() {
                for (kx, &x0) in self.x.starts.iter().enumerate() {
                    v.push(Tile3 { k: [kz, ky, kx], origin: [z0, y0, x0] });
                }
            }
        }
        v
    }

    /// Model input size (depth, height, width) of every tile.
    pub fn window(&self) -> [usize; 3] {
        [self.z.window(), self.y.window(), self.x.window()]
    }
}

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
    pub fn plan_3d(&self, d: usize, h: usize, w: usize) -> Result<VolumePlan3, InferError> {
        let (o, halo, m) = (self.opts.overlap, self.halo, self.multiple);
        let axis = |size: usize, fixed: Option<usize>, tile: usize| match fixed {
            Some(win) => AxisPlan::fixed_window(size, win, o, halo, m),
            None => AxisPlan::new(size, tile, o, halo, m),
        };
        let (fh, fw) = match self.io.fixed_size {
            Some((fh, fw)) => (Some(fh), Some(fw)),
            None => (None, None),
        };
        Ok(VolumePlan3 {
            z: axis(d, self.io.fixed_depth, self.opts.tile_z).map_err(InferError::Input)?,
            y: axis(h, fh, self.opts.tile).map_err(InferError::Input)?,
            x: axis(w, fw, self.opts.tile).map_err(InferError::Input)?,
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
        let tiles = plan.tiles();
        let batch = if self.io.batch_symbolic { self.opts.batch.max(1) } else { 1 };
        let gaussian = self.opts.blend == Blend::Gaussian;
        let weights = [gaussian_weights(plan.z.core), gaussian_weights(plan.y.core), gaussian_weights(plan.x.core)];
        let mut probs: Option<Array4<f32>> = None;
        let mut wsum = gaussian.then(|| Array3::<f32>::zeros((d, h, w)));
        let chunk = batch * rayon::current_num_threads().max(1) * 2;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let axes = [&plan.z, &plan.y, &plan.x];
        for group in tiles.chunks(chunk) {
            let outputs: Vec<Result<BlockOutputs, InferError>> = group
                .par_chunks(batch)
                .map(|b| {
                    let r = self.run_batch_3d(&plan, b, block, norm);
                    let n = done.fetch_add(b.len(), std::sync::atomic::Ordering::Relaxed) + b.len();
                    on_tiles(n);
                    r
                })
                .collect();
            for out in outputs {
                for (tile, core) in out? {
                    let k = core.dim().0;
                    let p = probs.get_or_insert_with(|| Array4::zeros((k, d, h, w)));
                    if p.dim().0 != k {
                        return Err(InferError::Run("tiles returned different channel counts".into()));
                    }
                    let [z0, y0, x0] = tile.origin;
                    match &mut wsum {
                        None => {
                            let [(zf, zt), (yf, yt), (xf, xt)] = [0, 1, 2].map(|a| axes[a].crop_range(tile.k[a]));
                            p.slice_mut(s![.., zf..zt, yf..yt, xf..xt]).assign(&core.slice(s![
                                ..,
                                zf - z0..zt - z0,
                                yf - y0..yt - y0,
                                xf - x0..xt - x0
                            ]));
                        }
                        Some(ws) => {
                            let ends =
                                [(z0 + plan.z.core).min(d), (y0 + plan.y.core).min(h), (x0 + plan.x.core).min(w)];
                            for z in z0..ends[0] {
                                for y in y0..ends[1] {
                                    for x in x0..ends[2] {
                                        let wt = weights[0][z - z0] * weights[1][y - y0] * weights[2][x - x0];
                                        ws[[z, y, x]] += wt;
                                        for c in 0..k {
                                            p[[c, z, y, x]] += wt * core[[c, z - z0, y - y0, x - x0]];
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let probs = finish_blend(probs, wsum)?;
        Ok(Prediction3 { probs, tiles: tiles.len() })
    }

    /// Runs one batch of 3-D tiles; returns each tile's core as probabilities `[K, cz, cy, cx]`.
    fn run_batch_3d(
        &self,
        plan: &VolumePlan3,
        tiles: &[Tile3],
        block: ArrayView4<f32>,
        norm: Normalization,
    ) -> Result<BlockOutputs, InferError> {
        let c = block.dim().3;
        let b = tiles.len();
        let [wd, wh, ww] = plan.window();
        let layout = self.io.layout;
        let mut input = vec![0f32; b * c * wd * wh * ww];
        for (i, t) in tiles.iter().enumerate() {
            let zs: Vec<usize> = (0..wd).map(|j| plan.z.source_index(t.origin[0], j)).collect();
            let ys: Vec<usize> = (0..wh).map(|j| plan.y.source_index(t.origin[1], j)).collect();
            let xs: Vec<usize> = (0..ww).map(|j| plan.x.source_index(t.origin[2], j)).collect();
            for (wz, &sz) in zs.iter().enumerate() {
                for (wy, &sy) in ys.iter().enumerate() {
                    for (wx, &sx) in xs.iter().enumerate() {
                        for ch in 0..c {
                            let idx = match layout {
                                TensorLayout::Nhwc => (((i * wd + wz) * wh + wy) * ww + wx) * c + ch,
                                _ => (((i * c + ch) * wd + wz) * wh + wy) * ww + wx,
                            };
                            input[idx] = block[[sz, sy, sx, ch]];
                        }
                    }
                }
            }
        }
        norm.apply(&mut input);
        let shape = match layout {
            TensorLayout::Nhwc => vec![b, wd, wh, ww, c],
            _ => vec![b, c, wd, wh, ww],
        };
        let mut outputs = self.model.run(&shape, &input)?;
        let (oshape, values) = outputs.swap_remove(0);
        let (k, od, oh, ow) = match (layout, oshape.as_slice()) {
            (TensorLayout::Nhwc, [ob, od, oh, ow, k]) if *ob == b => (*k, *od, *oh, *ow),
            (TensorLayout::Nchw, [ob, k, od, oh, ow]) if *ob == b => (*k, *od, *oh, *ow),
            (_, [ob, od, oh, ow]) if *ob == b => (1, *od, *oh, *ow),
            _ => {
                return Err(InferError::Model {
                    path: self.model.path().to_path_buf(),
                    reason: format!("output shape {oshape:?} is not a batch of {b} volumes in layout {layout}"),
                });
            }
        };
        if [od, oh, ow] != [wd, wh, ww] {
            return Err(InferError::Model {
                path: self.model.path().to_path_buf(),
                reason: format!(
                    "output is {od}x{oh}x{ow} for a {wd}x{wh}x{ww} input; bioseg predicts with volume-to-volume models of equal input and output size"
                ),
            });
        }
        let [cd, ch, cw] = [plan.z.core, plan.y.core, plan.x.core];
        let [hz, hy, hx] = [plan.z.halo, plan.y.halo, plan.x.halo];
        let at = |i: usize, kk: usize, z: usize, y: usize, x: usize| match layout {
            TensorLayout::Nhwc => values[(((i * od + z) * oh + y) * ow + x) * k + kk],
            _ => values[(((i * k + kk) * od + z) * oh + y) * ow + x],
        };
        let activation = self.io.activation;
        Ok(tiles
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut core =
                    Array4::from_shape_fn((k, cd, ch, cw), |(kk, z, y, x)| at(i, kk, z + hz, y + hy, x + hx));
                if activation == OutputActivation::Logits {
                    // Softmax over classes at every voxel: the 2-D routine on [K, Z·Y, X].
                    let mut flat = core.into_shape_with_order((k, cd * ch, cw)).expect("contiguous");
                    to_probabilities(&mut flat);
                    core = flat.into_shape_with_order((k, cd, ch, cw)).expect("contiguous");
                }
                (*t, core)
            })
            .collect())
    }
}
