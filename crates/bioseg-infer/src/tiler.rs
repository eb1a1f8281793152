//! The one tiler of images and volumes: a block `[D, H, W, C]` is cut into the tiles of a
//! [`GridPlan`] (a core and its context along z, y and x; a 2-D image is one slice whose z axis
//! has no context, [`crate::tiling::AxisPlan::single`]), the tiles are gathered into batches (mirrored only at
//! the block's borders), run by the model (batches in parallel), and their cores put back by
//! cropping (each voxel from the one tile whose core holds it) or Gaussian blending. The
//! geometry (plans, tiles, weights) is [`crate::tiling`]'s; this module runs it.
//!
//! Contract: with z of one slice and no context, the gathered input, the model's tensor (rank
//! 4 instead of 5) and every blended value are those of a 2-D tiler (a z weight of exactly 1
//! multiplies the y·x Gaussian weight), so images and volumes share this code byte for byte.

use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};
use ndarray::{Array3, Array4, ArrayView4, s};
use rayon::prelude::*;

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::OnnxModel;
use crate::tiling::{Blend, GridPlan, GridTile, Parallelism, gaussian_weights};

/// A batch of tiles with each one's core as probabilities `[K, cz, cy, cx]`.
type TileOutputs = Vec<(GridTile, Array4<f32>)>;

/// What the tiler needs of a predictor: the model, its interface, the blending and the batch.
pub(crate) struct Tiler<'a> {
    pub(crate) model: &'a OnnxModel,
    pub(crate) io: &'a ModelIo,
    pub(crate) blend: Blend,
    /// Tiles per model run (1 unless the batch axis is symbolic).
    pub(crate) batch: usize,
    /// Tiles in parallel, or one at a time with the layers split over the threads.
    pub(crate) parallel: Parallelism,
    /// Stops the run before the next batch when set ([`crate::predict::PredictOptions::cancel`]).
    pub(crate) cancel: Option<&'a std::sync::atomic::AtomicBool>,
}

impl Tiler<'_> {
    /// Predicts `input` (`[D, H, W, C]`, normalised by `norm` tile by tile) tile by tile;
    /// returns the probabilities `[K, D, H, W]` and the number of tiles run. `on_tiles` is
    /// called with the number of tiles finished so far.
    pub(crate) fn run(
        &self,
        input: ArrayView4<f32>,
        plan: &GridPlan,
        norm: Normalization,
        on_tiles: &(dyn Fn(usize) + Sync),
    ) -> Result<(Array4<f32>, usize), InferError> {
        let (d, h, w, _) = input.dim();
        let tiles = plan.tiles();
        let weights = [gaussian_weights(plan.z.core), gaussian_weights(plan.y.core), gaussian_weights(plan.x.core)];
        let mut probs: Option<Array4<f32>> = None;
        let mut wsum = (self.blend == Blend::Gaussian).then(|| Array3::<f32>::zeros((d, h, w)));
        let in_flight = match self.parallel {
            Parallelism::Tiles => rayon::current_num_threads().max(1) * 2,
            Parallelism::Layers => 1,
        };
        let chunk = self.batch * in_flight;
        let done = std::sync::atomic::AtomicUsize::new(0);
        let axes = [&plan.z, &plan.y, &plan.x];
        for group in tiles.chunks(chunk) {
            let outputs: Vec<Result<TileOutputs, InferError>> = group
                .par_chunks(self.batch)
                .map(|b| {
                    if self.cancel.is_some_and(|c| c.load(std::sync::atomic::Ordering::Relaxed)) {
                        return Err(InferError::Cancelled);
                    }
                    let r = self.run_batch(plan, b, input, norm);
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
        let mut probs = probs.ok_or_else(|| InferError::Run("no tiles were run".into()))?;
        if let Some(wsum) = wsum {
            for mut class in probs.outer_iter_mut() {
                class.zip_mut_with(&wsum, |v, &wt| *v /= wt);
            }
        }
        Ok((probs, tiles.len()))
    }

    /// Runs one batch of tiles; returns each tile's core as probabilities `[K, cz, cy, cx]`.
    fn run_batch(
        &self,
        plan: &GridPlan,
        tiles: &[GridTile],
        block: ArrayView4<f32>,
        norm: Normalization,
    ) -> Result<TileOutputs, InferError> {
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
        // The model's spatial axes: (D,) H, W.
        let (spatial, what): (Vec<usize>, &str) =
            if self.io.volumetric { (vec![wd, wh, ww], "volume") } else { (vec![wh, ww], "image") };
        let shape: Vec<usize> = match layout {
            TensorLayout::Nhwc => [&[b][..], &spatial, &[c]].concat(),
            _ => [&[b, c][..], &spatial].concat(),
        };
        let mut outputs = self.model.run(&shape, &input)?;
        let (oshape, values) = outputs.swap_remove(0);
        let n = spatial.len();
        let (k, out_spatial) = match (layout, oshape.as_slice()) {
            (TensorLayout::Nhwc, [ob, rest @ .., k]) if *ob == b && rest.len() == n => (*k, rest),
            (TensorLayout::Nchw, [ob, k, rest @ ..]) if *ob == b && rest.len() == n => (*k, rest),
            (_, [ob, rest @ ..]) if *ob == b && rest.len() == n => (1, rest),
            _ => {
                return Err(InferError::Model {
                    path: self.model.path().to_path_buf(),
                    reason: format!("output shape {oshape:?} is not a batch of {b} {what}s in layout {layout}"),
                });
            }
        };
        if out_spatial != spatial.as_slice() {
            let dims = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join("x");
            return Err(InferError::Model {
                path: self.model.path().to_path_buf(),
                reason: format!(
                    "output is {} for a {} input; bioseg predicts with {what}-to-{what} models of equal input and output size",
                    dims(out_spatial),
                    dims(&spatial)
                ),
            });
        }
        let [od, oh, ow] = [wd, wh, ww];
        let [cd, ch, cw] = [plan.z.core, plan.y.core, plan.x.core];
        let [hz, hy, hx] = [plan.z.halo, plan.y.halo, plan.x.halo];
        let at = |i: usize, kk: usize, z: usize, y: usize, x: usize| match layout {
            TensorLayout::Nhwc => values[(((i * od + z) * oh + y) * ow + x) * k + kk],
            _ => values[(((i * k + kk) * od + z) * oh + y) * ow + x],
        };
        // The model's last kernel may have left the vector registers' upper halves dirty; the
        // copies and activations below are SSE code (bioseg_kernels::clean_upper_state).
        bioseg_kernels::clean_upper_state();
        let activation = self.io.activation;
        let mut cores = Vec::with_capacity(b);
        for (i, t) in tiles.iter().enumerate() {
            let mut core = Array4::from_shape_fn((k, cd, ch, cw), |(kk, z, y, x)| at(i, kk, z + hz, y + hy, x + hx));
            if activation == OutputActivation::Logits {
                // Softmax over classes at every voxel: the routine on [K, Z·Y, X].
                let mut flat = core
                    .into_shape_with_order((k, cd * ch, cw))
                    .map_err(|e| InferError::Run(format!("reshaping a tile's output: {e}")))?;
                to_probabilities(&mut flat);
                core = flat
                    .into_shape_with_order((k, cd, ch, cw))
                    .map_err(|e| InferError::Run(format!("reshaping a tile's output: {e}")))?;
            }
            cores.push((*t, core));
        }
        Ok(cores)
    }
}

/// Sigmoid (one channel) or softmax over channels, in place.
fn to_probabilities(a: &mut Array3<f32>) {
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
