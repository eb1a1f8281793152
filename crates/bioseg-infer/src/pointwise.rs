//! The 1×1 head of a channels-first U-Net (`Conv` 1×1, C → a few classes), on bioseg's op
//! inside tract.
//!
//! tract declutters a 1×1 convolution into an `EinSum` (`OI,NIHW→NOHW`) plus a bias `Add`, and
//! optimises the `EinSum` into a matrix product that first packs the whole activation
//! (`OptMatMulPack`) and then multiplies it with 1–3 rows of weights, one thread: the head of
//! an F=16 PyTorch-style U-Net took 6 ms of a 544² window on one thread and 15 ms of an 800²
//! window on two (BENCHMARKS.md, issue 16), for a product of 16 multiply-adds per pixel.
//! [`BiosegPointwise`] computes it plane by plane: per block of pixels, each output plane
//! starts from its bias and adds every input plane times its weight, a streaming pass over
//! the input (each plane read once per block, the block's planes in cache for every output),
//! blocks spread over rayon's threads. The bias `Add` after the `EinSum` is folded in;
//! the activation after it stays tract's (its sigmoid is vectorised; `f32::exp` per pixel
//! would not be).

use rayon::prelude::*;
use tract_core::internal::*;
use tract_core::ops::einsum::EinSum;

/// Pixels per block: `C` planes of it stay in L1/L2 for every output channel (16 channels ×
/// 1024 × 4 B = 64 KiB).
const BLOCK: usize = 1024;

/// A 1×1 convolution of a channels-first tensor `[N, C_in, H, W]` (or any `[N, C_in, ...]`):
/// `y[n, o, p] = bias[o] + Σ_i weights[o, i] · x[n, i, p]`.
#[derive(Clone, Debug, PartialEq)]
pub struct BiosegPointwise {
    /// `[c_out, c_in]`, row-major.
    pub weights: Vec<f32>,
    /// `c_out` values (zeros without a bias).
    pub bias: Vec<f32>,
    /// Input channels.
    pub c_in: usize,
}

impl std::hash::Hash for BiosegPointwise {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.c_in.hash(state);
        self.weights.iter().chain(&self.bias).for_each(|v| v.to_bits().hash(state));
    }
}

impl Eq for BiosegPointwise {}

impl BiosegPointwise {
    fn c_out(&self) -> usize {
        self.bias.len()
    }

    /// One image's `[c_in, pixels]` into its `[c_out, pixels]`.
    fn run_image(&self, x: &[f32], y: &mut [f32], pixels: usize) {
        let c_out = self.c_out();
        // Blocks of pixels in parallel; each writes its columns of every output plane.
        let y_ptr = bioseg_kernels::SendPtr(y.as_mut_ptr());
        (0..pixels.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
            bioseg_kernels::clean_upper_state();
            let start = b * BLOCK;
            let len = BLOCK.min(pixels - start);
            for o in 0..c_out {
                // SAFETY: block b owns columns start..start+len of each output plane; no other
                // block writes them, and `y` outlives the parallel loop.
                let out = unsafe { std::slice::from_raw_parts_mut(y_ptr.get().add(o * pixels + start), len) };
                out.fill(self.bias[o]);
                for (i, &w) in self.weights[o * self.c_in..][..self.c_in].iter().enumerate() {
                    let plane = &x[i * pixels + start..][..len];
                    out.iter_mut().zip(plane).for_each(|(acc, &v)| *acc += w * v);
                }
            }
        });
    }
}

impl Op for BiosegPointwise {
    fn name(&self) -> StaticName {
        "BiosegPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("1×1 convolution {}→{}, bias folded", self.c_in, self.c_out())])
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegPointwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        let input = &inputs[0];
        let shape = input.shape();
        ensure!(shape.len() >= 2 && shape[1] == self.c_in, "BiosegPointwise: input of shape {shape:?}");
        let pixels: usize = shape[2..].iter().product();
        let mut out_shape: TVec<usize> = shape.into();
        out_shape[1] = self.c_out();
        // SAFETY: every output value is written (each block fills its columns of every plane).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        if pixels > 0 {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut y = output.try_as_plain_ram_mut()?;
            let y = y.as_slice_mut::<f32>()?;
            for (x, y) in x.chunks_exact(self.c_in * pixels).zip(y.chunks_exact_mut(self.c_out() * pixels)) {
                self.run_image(x, y, pixels);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for BiosegPointwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let fact = inputs[0];
        ensure!(fact.datum_type == f32::datum_type() && fact.rank() >= 2);
        let mut shape = fact.shape.to_tvec();
        shape[1] = self.c_out().to_dim();
        Ok(tvec!(f32::fact(shape)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let pixels: TDim = inputs[0].shape.iter().skip(2).product();
        let n = inputs[0].shape[0].clone();
        Ok(tvec!((Cost::FMA(f32::datum_type()), n * pixels * (self.c_in * self.c_out()))))
    }

    as_op!();
}

/// The `[c_out, c_in]` weights of `node` when it is an f32 `EinSum` computing a 1×1
/// convolution of a computed channels-first input (`NIHW,OI→NOHW`: input 1 a constant `[O, I]`,
/// or `[I]` for one output channel, `NIHW,I→NOHW`; input 0 of rank ≥ 3, every other input axis
/// passed through in place).
fn pointwise_weights(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(Vec<f32>, usize, usize)>> {
    let Some(einsum) = node.op_as::<EinSum>() else { return Ok(None) };
    if einsum.q_params.is_some() || einsum.operating_dt != f32::datum_type() || node.inputs.len() != 2 {
        return Ok(None);
    }
    let (x, w) = (model.outlet_fact(node.inputs[0])?, model.outlet_fact(node.inputs[1])?);
    let Some(weights) = w.konst.as_ref() else { return Ok(None) };
    if x.konst.is_some() || x.datum_type != f32::datum_type() || weights.datum_type() != f32::datum_type() {
        return Ok(None);
    }
    let (rank, y) = (x.rank(), model.outlet_fact(OutletId::new(node.id, 0))?);
    let w_rank = weights.rank();
    if rank < 3 || !(1..=2).contains(&w_rank) || y.rank() != rank {
        return Ok(None);
    }
    let axes = &einsum.axes;
    let at = |axis: &tract_core::axes::Axis| (axis.inputs[0].clone(), axis.inputs[1].clone(), axis.outputs[0].clone());
    // I: the weights' last axis and x's axis 1, summed. O: the output's axis 1, the weights'
    // first when they have two (one output channel: tract drops it from the weights).
    let i = at(axes.axis((InOut::In(1), w_rank - 1))?);
    let o = at(axes.axis((InOut::Out(0), 1))?);
    let o_in_weights: TVec<usize> = if w_rank == 2 { tvec![0] } else { tvec![] };
    if i != (tvec![1], tvec![w_rank - 1], tvec![]) || o != (tvec![], o_in_weights, tvec![1]) {
        return Ok(None);
    }
    for k in (0..rank).filter(|&k| k != 1) {
        if at(axes.axis((InOut::In(0), k))?) != (tvec![k], tvec![], tvec![k]) {
            return Ok(None);
        }
    }
    let (c_out, c_in) = if w_rank == 2 { (weights.shape()[0], weights.shape()[1]) } else { (1, weights.shape()[0]) };
    if x.shape[1] != c_in.to_dim() || y.shape[1] != c_out.to_dim() || c_out == 0 {
        return Ok(None);
    }
    let values = weights.try_as_plain_ram()?.as_slice::<f32>()?.to_vec();
    Ok(Some((values, c_out, c_in)))
}

/// The per-channel bias of the `Add` that alone consumes `node`'s `[N, c_out, ...]` output,
/// with that node, when the added constant holds one value per channel (shape `[1, c_out, 1, …]`
/// or `[c_out, 1, …]`) and keeps the shape.
fn bias_successor(model: &TypedModel, node: &TypedNode, c_out: usize) -> TractResult<Option<(Vec<f32>, usize)>> {
    let Some((next, slot)) = crate::passes::sole_consumer(model, node)? else { return Ok(None) };
    let Some(bin) = next.op_as::<tract_core::ops::binary::TypedBinOp>() else { return Ok(None) };
    if !bin.0.is::<tract_core::ops::math::Add>() || next.inputs.len() != 2 {
        return Ok(None);
    }
    let y = model.outlet_fact(OutletId::new(node.id, 0))?;
    if model.outlet_fact(OutletId::new(next.id, 0))?.shape != y.shape {
        return Ok(None);
    }
    let other = model.outlet_fact(next.inputs[1 - slot])?;
    let Some(k) = other.konst.as_ref().filter(|k| k.datum_type() == f32::datum_type()) else { return Ok(None) };
    // Align the constant's axes to the right of the output's: the channel axis is 1.
    let shape = k.shape();
    let rank = y.rank();
    if shape.len() > rank || shape.len() + 1 < rank {
        return Ok(None);
    }
    let offset = rank - shape.len();
    let per_channel = shape.iter().enumerate().all(|(a, &d)| if a + offset == 1 { d == c_out } else { d == 1 });
    if !per_channel {
        return Ok(None);
    }
    Ok(Some((k.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(), next.id)))
}

/// Replaces the f32 `EinSum`s that compute 1×1 convolutions of channels-first tensors (and the
/// per-channel bias `Add` after them) with [`BiosegPointwise`]; returns how many. Run on a
/// decluttered model.
pub fn use_bioseg_pointwise(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some((weights, c_out, c_in)) = pointwise_weights(model, node)? else { continue };
        let bias = bias_successor(model, node, c_out)?;
        let last = bias.as_ref().map_or(id, |(_, add)| *add);
        let op = BiosegPointwise { weights, bias: bias.map_or_else(|| vec![0.0; c_out], |(b, _)| b), c_in };
        let (input, name) = (node.inputs[0], node.name.clone());
        crate::passes::replace_chain(model, &[input], last, &name, op)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_output_plane_is_its_bias_plus_the_weighted_input_planes() {
        // 3 input channels, 2 outputs, 2500 pixels (two blocks and a partial one).
        let (c_in, pixels) = (3, 2500);
        let op = BiosegPointwise { weights: vec![1.0, -2.0, 0.5, 0.0, 3.0, 1.0], bias: vec![0.25, -1.0], c_in };
        let x: Vec<f32> = (0..c_in * pixels).map(|v| ((v * 7919) % 101) as f32 / 50.0 - 1.0).collect();
        let mut y = vec![f32::NAN; 2 * pixels];
        op.run_image(&x, &mut y, pixels);
        for p in [0, 1023, 1024, 2047, 2048, 2499] {
            let v = |i: usize| x[i * pixels + p];
            // The same sums in the same order: bias first, then the planes.
            assert_eq!(y[p], ((0.25 + v(0)) + -2.0 * v(1)) + 0.5 * v(2), "pixel {p}");
            assert_eq!(y[pixels + p], ((-1.0 + 0.0 * v(0)) + 3.0 * v(1)) + v(2), "pixel {p}");
        }
    }
}
