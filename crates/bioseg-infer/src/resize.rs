//! Up-sampling in every exporter's form, on bioseg's ops inside tract.
//!
//! Exporters write a U-Net's ×2 up-sampling many ways: `Resize` with `scales` (PyTorch,
//! opsets 11–17), with `sizes` and `axes` (PyTorch's dynamo exporter, opset 18), the old
//! `Upsample` (opset 9), in NCHW or NHWC, nearest or linear. tract 0.23 lowers a nearest
//! `Resize` to its `NearestUpsample` only when the scales are a constant; `sizes` and every
//! linear `Resize` run on its generic resampler (`resample_axis`: a copy of the input, then per
//! output element a zero fill and a loop over the taps), which took 35 % of a 512² window of a
//! dynamo-exported U-Net (issue 16). Two passes take them over:
//!
//! 1. [`nearest_resizes_as_upsamples`], before the convolution pass: a nearest `Resize` (tract
//!    core's or the ONNX edge-case op) whose per-axis index map is pixel replication by whole
//!    factors becomes tract's `NearestUpsample`, whatever the form of its scales or sizes. The
//!    map is checked with the op's own coordinate transform and rounding (tract's `plan_axis`
//!    on the concrete lengths), so `asymmetric`/`floor`, `half_pixel`/`round_prefer_floor` and
//!    the other equivalent pairs qualify and the rest stay tract's. The convolution pass then
//!    folds a `NearestUpsample` into the convolution it feeds (gemm_conv.rs, phases).
//! 2. [`use_bioseg_resizes`], after it: a `NearestUpsample` left over (feeding a `Concat`, or
//!    in NHWC, where tract's own loop computes every source index with divisions) runs on
//!    [`BiosegUpsample`], row copies; a linear or cubic `Resize` runs on [`BiosegResize`], the
//!    same per-axis plans as tract's (same taps, same weights: the same numbers up to the
//!    order of two additions), applied axis after axis with the innermost axis first, where
//!    the gather is cheapest, and no copy or fill.

use tract_core::internal::*;
use tract_core::ops::nn::resize::{
    AxisPlan, CoordTransformer, Interpolator, NearestUpsample, Resize as CoreResize, is_pixel_replication, plan_axis,
};
use tract_onnx_opl::resize::{CoordTransform, Nearest as OnnxNearest, Resize as OnnxResize};

/// A nearest resize recognised from what it computes: the coordinate transform, the tie rule,
/// and the scale per axis the op divides by.
struct NearestResize<'a> {
    transform: &'a CoordTransformer,
    prefers_right: &'a dyn Fn(f32) -> bool,
    /// Per input axis: the scale the op uses (its `scales` constant, or output / input length).
    scales: TVec<f32>,
}

/// The scale per input axis of a resize node: its constant `scales` spread over `axes`, or the
/// ratio of the output and input lengths.
fn scales_of(
    model: &TypedModel,
    node: &TypedNode,
    scales_input: Option<usize>,
    axes: &[usize],
    shapes: (&[usize], &[usize]),
) -> TractResult<TVec<f32>> {
    let (input, output) = shapes;
    let mut scales: TVec<f32> = input.iter().zip(output).map(|(&i, &o)| o as f32 / i as f32).collect();
    let konst = scales_input
        .and_then(|ix| node.inputs.get(ix))
        .map(|&outlet| model.outlet_fact(outlet))
        .transpose()?
        .and_then(|f| f.konst.clone())
        .filter(|k| k.len() == axes.len());
    if let Some(k) = konst {
        for (&axis, &s) in axes.iter().zip(k.cast_to::<f32>()?.try_as_plain_ram()?.as_slice::<f32>()?) {
            scales[axis] = s;
        }
    }
    Ok(scales)
}

/// The whole factor per axis when `resize` maps output `x` to input `x / factor` on every axis
/// (pixel replication), from the op's own plan on the concrete lengths.
fn replication_factors(resize: &NearestResize, input: &[usize], output: &[usize]) -> Option<TVec<usize>> {
    let mut factors = tvec!();
    for ((&len_in, &len_out), &scale) in input.iter().zip(output).zip(&resize.scales) {
        if len_in == 0 || !len_out.is_multiple_of(len_in) {
            return None;
        }
        let factor = len_out / len_in;
        let coord = |x| Some(resize.transform.transform(x, scale, len_in, len_out));
        let plan = plan_axis(len_in, len_out, 2, false, coord, |r, w| {
            let right = r == 1.0 || (resize.prefers_right)(r);
            w[0] = f32::from(u8::from(!right));
            w[1] = f32::from(u8::from(right));
        });
        if !is_pixel_replication(&plan, factor) {
            return None;
        }
        factors.push(factor);
    }
    factors.iter().any(|&f| f > 1).then_some(factors)
}

/// The concrete input and output shapes of a single-output node.
fn concrete_shapes(model: &TypedModel, node: &TypedNode) -> TractResult<Option<(TVec<usize>, TVec<usize>)>> {
    let input = model.outlet_fact(node.inputs[0])?.shape.as_concrete().map(TVec::from);
    let output = node.outputs[0].fact.shape.as_concrete().map(TVec::from);
    Ok(input.zip(output))
}

/// The whole up-sampling factors of `node` when it is a nearest resize that replicates pixels.
fn nearest_factors(model: &TypedModel, node: &TypedNode) -> TractResult<Option<TVec<usize>>> {
    if !node.op_is::<CoreResize>() && !node.op_is::<OnnxResize>() {
        return Ok(None);
    }
    let Some((input, output)) = concrete_shapes(model, node)? else { return Ok(None) };
    if model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let all_axes: TVec<usize> = (0..input.len()).collect();
    if let Some(op) = node.op_as::<CoreResize>() {
        if op.interpolator != Interpolator::Nearest {
            return Ok(None);
        }
        let tie = op.nearest;
        let prefers_right = move |r: f32| tie.prefers_right(r);
        let scales = scales_of(model, node, op.optional_scales_input, &all_axes, (&input, &output))?;
        let resize = NearestResize { transform: &op.coord_transformer, prefers_right: &prefers_right, scales };
        return Ok(replication_factors(&resize, &input, &output));
    }
    if let Some(op) = node.op_as::<OnnxResize>() {
        let CoordTransform::Plain(transform) = &op.coord_transformer else { return Ok(None) };
        if op.interpolator != Interpolator::Nearest || op.antialias || op.exclude_outside {
            return Ok(None);
        }
        let tie = op.nearest;
        let prefers_right = move |r: f32| match tie {
            OnnxNearest::Floor => false,
            OnnxNearest::Ceil => true,
            OnnxNearest::RoundPreferFloor => r > 0.5,
            OnnxNearest::RoundPreferCeil => r >= 0.5,
        };
        let axes = op.resized_axes(input.len())?;
        let scales = scales_of(model, node, op.optional_scales_input, &axes, (&input, &output))?;
        let resize = NearestResize { transform, prefers_right: &prefers_right, scales };
        return Ok(replication_factors(&resize, &input, &output));
    }
    Ok(None)
}

/// Replaces every nearest resize that replicates pixels by whole factors with tract's
/// `NearestUpsample` (see the module documentation); returns how many. Run on a decluttered
/// model with concrete shapes, before the convolution pass.
pub fn nearest_resizes_as_upsamples(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::replace_each(model, |model, node| {
        Ok(nearest_factors(model, node)?.map(|scales| Box::new(NearestUpsample { scales }) as Box<dyn TypedOp>))
    })
}

/// Nearest up-sampling by whole factors `[fy, fx]` of two adjacent axes of an f32 tensor of any
/// rank: the axes before them are planes, the axes after them (channels in NHWC) are copied as
/// contiguous blocks. Each output row is written once from its input row, then copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BiosegUpsample {
    /// The first of the two up-sampled axes.
    pub axis: usize,
    /// Factors along `axis` and `axis + 1`.
    pub factors: [usize; 2],
}

impl BiosegUpsample {
    /// The op computing `scales` (one per axis), when only two adjacent axes are scaled.
    fn from_scales(scales: &[usize]) -> Option<BiosegUpsample> {
        let first = scales.iter().position(|&s| s != 1)?;
        let axis = if first + 1 < scales.len() { first } else { first - 1 };
        let others_one = scales.iter().enumerate().all(|(a, &s)| s == 1 || a == axis || a == axis + 1);
        others_one.then(|| BiosegUpsample { axis, factors: [scales[axis], scales[axis + 1]] })
    }
}

impl Op for BiosegUpsample {
    fn name(&self) -> StaticName {
        "BiosegUpsample".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("axes {} and {} ×{:?}", self.axis, self.axis + 1, self.factors)])
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegUpsample {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        let input = &inputs[0];
        let shape = input.shape();
        let ([fy, fx], a) = (self.factors, self.axis);
        let (h, w) = (shape[a], shape[a + 1]);
        let planes: usize = shape[..a].iter().product();
        let inner: usize = shape[a + 2..].iter().product();
        let mut out_shape: TVec<usize> = shape.into();
        out_shape[a] *= fy;
        out_shape[a + 1] *= fx;
        // SAFETY: every output row is written below (h·fy rows of w·fx·inner values per plane).
        let mut output = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        {
            let x = input.try_as_plain_ram()?;
            let x = x.as_slice::<f32>()?;
            let mut y = output.try_as_plain_ram_mut()?;
            let y = y.as_slice_mut::<f32>()?;
            let (row_in, row_out) = (w * inner, w * fx * inner);
            if row_in > 0 && planes * h > 0 {
                for (x_row, y_rows) in x.chunks_exact(row_in).zip(y.chunks_exact_mut(row_out * fy)) {
                    let (first, rest) = y_rows.split_at_mut(row_out);
                    if inner == 1 && fx == 2 {
                        expand_row_2(x_row, first);
                    } else {
                        for (block, pixel) in first.chunks_exact_mut(fx * inner).zip(x_row.chunks_exact(inner)) {
                            for copy in block.chunks_exact_mut(inner) {
                                copy.copy_from_slice(pixel);
                            }
                        }
                    }
                    for copy in rest.chunks_exact_mut(row_out) {
                        copy.copy_from_slice(first);
                    }
                }
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

/// `y[2i] = y[2i + 1] = x[i]`. Written as one 64-bit word per pair (the value's bits twice),
/// which the compiler turns into vector zero-extensions, shifts and ors: the U-Net's widest
/// up-sampling (32 channels, 272² → 544², one thread) 4.3 → 3.7 ms, against 2.0 for ONNX
/// Runtime, whose arena reuses the output where tract allocates (and first touches) a new one.
fn expand_row_2(x: &[f32], y: &mut [f32]) {
    // SAFETY: u64 has no invalid bit patterns; align_to_mut only returns aligned words.
    let (head, words, tail) = unsafe { y.align_to_mut::<u64>() };
    if !head.is_empty() || !tail.is_empty() || words.len() != x.len() {
        for (pair, &v) in y.chunks_exact_mut(2).zip(x) {
            pair[0] = v;
            pair[1] = v;
        }
        return;
    }
    for (word, &v) in words.iter_mut().zip(x) {
        let bits = u64::from(v.to_bits());
        *word = bits | (bits << 32);
    }
}

impl TypedOp for BiosegUpsample {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type() && inputs[0].rank() >= self.axis + 2);
        let mut shape = inputs[0].shape.to_tvec();
        shape[self.axis] = shape[self.axis].clone() * self.factors[0];
        shape[self.axis + 1] = shape[self.axis + 1].clone() * self.factors[1];
        Ok(tvec!(f32::fact(&shape)))
    }

    as_op!();
}

/// One axis of a [`BiosegResize`]: for each output index, `window` input indices (clamped into
/// the axis) and their weights, from tract's plan for the op.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisResample {
    pub axis: usize,
    pub len_in: usize,
    pub len_out: usize,
    pub window: usize,
    pub indices: Vec<usize>,
    pub weights: Vec<f32>,
}

impl AxisResample {
    fn of(axis: usize, len_in: usize, len_out: usize, plan: AxisPlan) -> AxisResample {
        AxisResample { axis, len_in, len_out, window: plan.window, indices: plan.indices, weights: plan.weights }
    }

    /// Resamples one row `x` (this axis innermost, two-tap plan) into `y`.
    fn resample_row(&self, x: &[f32], y: &mut [f32]) {
        for (o, (i, w)) in y.iter_mut().zip(self.indices.chunks_exact(2).zip(self.weights.chunks_exact(2))) {
            *o = w[0] * x[i[0]] + w[1] * x[i[1]];
        }
    }

    /// Resamples this axis of `x` (its lengths `shape`) into `y`.
    fn apply(&self, x: &[f32], shape: &[usize], y: &mut [f32]) {
        let inner: usize = shape[self.axis + 1..].iter().product();
        let (n_in, n_out, window) = (self.len_in * inner, self.len_out * inner, self.window);
        if n_in == 0 || n_out == 0 {
            return;
        }
        for (src, dst) in x.chunks_exact(n_in).zip(y.chunks_exact_mut(n_out)) {
            if inner == 1 && window == 2 {
                self.resample_row(src, dst);
                continue;
            }
            for (o, dst) in dst.chunks_exact_mut(inner).enumerate() {
                let taps = self.indices[o * window..][..window].iter().zip(&self.weights[o * window..][..window]);
                let mut first = true;
                for (&i, &w) in taps.filter(|(_, w)| **w != 0.0) {
                    let s = &src[i * inner..][..inner];
                    if first {
                        dst.iter_mut().zip(s).for_each(|(d, s)| *d = w * s);
                        first = false;
                    } else {
                        dst.iter_mut().zip(s).for_each(|(d, s)| *d += w * s);
                    }
                }
                if first {
                    dst.fill(0.0);
                }
            }
        }
    }
}

/// A linear or cubic resize of an f32 tensor with concrete shapes: tract's per-axis plans,
/// applied innermost axis first (see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct BiosegResize {
    /// The resampled axes, innermost first.
    pub axes: Vec<AxisResample>,
}

impl BiosegResize {
    /// The op for tract's core `Resize` node, when it is linear or cubic on concrete f32 shapes.
    fn from_node(model: &TypedModel, node: &TypedNode) -> TractResult<Option<BiosegResize>> {
        let Some(op) = node.op_as::<CoreResize>() else { return Ok(None) };
        if op.interpolator == Interpolator::Nearest
            || model.outlet_fact(node.inputs[0])?.datum_type != f32::datum_type()
        {
            return Ok(None);
        }
        let Some((input, output)) = concrete_shapes(model, node)? else { return Ok(None) };
        let all_axes: Vec<usize> = (0..input.len()).collect();
        let scales = scales_of(model, node, op.optional_scales_input, &all_axes, (&input, &output))?;
        let mut axes = Vec::new();
        for axis in (0..input.len()).rev() {
            let (len_in, len_out) = (input[axis], output[axis]);
            // tract's eval skips an axis whose length and scale stay (the same rule here).
            if len_in == len_out && scales[axis] == 1.0 {
                continue;
            }
            axes.push(AxisResample::of(axis, len_in, len_out, op.plan_axis(scales[axis], len_in, len_out)));
        }
        Ok((!axes.is_empty()).then_some(BiosegResize { axes }))
    }
}

impl BiosegResize {
    /// The common case in one pass: the last two axes (rows, then columns) resampled with
    /// two-tap plans (linear). Each output row is the weighted sum of two input rows
    /// resampled along the columns, kept in two row buffers (consecutive output rows mostly
    /// share them), so no intermediate tensor is allocated and written: the 4 bilinear
    /// resizes of an F=16 U-Net's 544² window 33–40 → 16–17 ms, a 32-channel 272² → 544²
    /// resize alone 13 → 7 ms (ONNX Runtime: 13 ms), one thread.
    fn planes(&self, input: &Tensor) -> TractResult<Option<Tensor>> {
        let rank = input.rank();
        let [cols, rows] = self.axes.as_slice() else { return Ok(None) };
        if rank < 2 || cols.axis != rank - 1 || rows.axis != rank - 2 || cols.window != 2 || rows.window != 2 {
            return Ok(None);
        }
        let shape = input.shape();
        ensure!(shape[rank - 2..] == [rows.len_in, cols.len_in], "BiosegResize: input of shape {shape:?}");
        let mut out_shape: TVec<usize> = shape.into();
        out_shape[rank - 2] = rows.len_out;
        out_shape[rank - 1] = cols.len_out;
        // SAFETY: every output row is written below.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        let (plane_in, plane_out) = (rows.len_in * cols.len_in, rows.len_out * cols.len_out);
        if plane_in == 0 || plane_out == 0 {
            return Ok(Some(output));
        }
        let x = input.try_as_plain_ram()?;
        let mut y = output.try_as_plain_ram_mut()?;
        let mut buffers = [vec![0f32; cols.len_out], vec![0f32; cols.len_out]];
        for (src, dst) in
            x.as_slice::<f32>()?.chunks_exact(plane_in).zip(y.as_slice_mut::<f32>()?.chunks_exact_mut(plane_out))
        {
            // The input row each buffer holds.
            let mut held = [usize::MAX; 2];
            for (o, out_row) in dst.chunks_exact_mut(cols.len_out).enumerate() {
                let (i, w) = (&rows.indices[2 * o..][..2], &rows.weights[2 * o..][..2]);
                // Buffer 0 must hold row i[0] and buffer 1 row i[1]; going down the image, the
                // second row of one output row is usually the first of the next.
                if held[0] != i[0] && held[1] == i[0] {
                    buffers.swap(0, 1);
                    held.swap(0, 1);
                }
                let row = |r: usize| &src[r * cols.len_in..][..cols.len_in];
                if held[0] != i[0] {
                    cols.resample_row(row(i[0]), &mut buffers[0]);
                    held[0] = i[0];
                }
                if held[1] != i[1] {
                    cols.resample_row(row(i[1]), &mut buffers[1]);
                    held[1] = i[1];
                }
                for ((d, &a), &b) in out_row.iter_mut().zip(&buffers[0]).zip(&buffers[1]) {
                    *d = w[0] * a + w[1] * b;
                }
            }
        }
        Ok(Some(output))
    }
}

impl Eq for BiosegResize {}

impl Op for BiosegResize {
    fn name(&self) -> StaticName {
        "BiosegResize".into()
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegResize {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        let mut shape: TVec<usize> = inputs[0].shape().into();
        if let Some(output) = self.planes(&inputs[0])? {
            return Ok(tvec!(output.into_tvalue()));
        }
        let mut current: Option<Tensor> = None;
        for resample in &self.axes {
            ensure!(shape.get(resample.axis) == Some(&resample.len_in), "BiosegResize: input of shape {shape:?}");
            let mut next_shape = shape.clone();
            next_shape[resample.axis] = resample.len_out;
            // SAFETY: `apply` writes every output value.
            let mut next = unsafe { Tensor::uninitialized::<f32>(&next_shape)? };
            {
                let source = current.as_ref().unwrap_or(&inputs[0]);
                let x = source.try_as_plain_ram()?;
                let mut y = next.try_as_plain_ram_mut()?;
                resample.apply(x.as_slice::<f32>()?, &shape, y.as_slice_mut::<f32>()?);
            }
            current = Some(next);
            shape = next_shape;
        }
        let output = current.context("BiosegResize without axes")?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for BiosegResize {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        let mut shape = inputs[0].shape.to_tvec();
        for resample in &self.axes {
            shape[resample.axis] = resample.len_out.to_dim();
        }
        Ok(tvec!(f32::fact(&shape)))
    }

    as_op!();
}

/// Whether `op` is one of this module's ops.
pub(crate) fn is_bioseg_op(op: &dyn tract_core::ops::Op) -> bool {
    op.is::<BiosegUpsample>() || op.is::<BiosegResize>()
}

/// Replaces tract's remaining `NearestUpsample` nodes with [`BiosegUpsample`] and its linear
/// and cubic core `Resize` nodes with [`BiosegResize`]; returns how many. Run after the
/// convolution pass (which folds the up-samplings that feed a convolution).
pub fn use_bioseg_resizes(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::replace_each(model, |model, node| {
        if let Some(up) = node.op_as::<NearestUpsample>().and_then(|u| BiosegUpsample::from_scales(&u.scales))
            && model.outlet_fact(node.inputs[0])?.datum_type == f32::datum_type()
        {
            return Ok(Some(Box::new(up)));
        }
        Ok(BiosegResize::from_node(model, node)?.map(|r| Box::new(r) as Box<dyn TypedOp>))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_core::ops::nn::resize::Nearest;
    use tract_core::plan::SimplePlan;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let values: Vec<f32> = (0..shape.iter().product::<usize>())
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// A model of one core `Resize` of `input` shape, driven by `scales` or `sizes` (full rank).
    fn resize_model(op: CoreResize, input: &[usize], aux: Tensor) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(input)).unwrap();
        let aux = model.add_const("aux", aux).unwrap();
        let y = model.wire_node("resize", op, &[x, aux]).unwrap();
        model.select_output_outlets(&y).unwrap();
        model
    }

    fn run(model: &TypedModel, input: &Tensor) -> Tensor {
        let plan = SimplePlan::new(model.clone()).unwrap();
        plan.run(tvec!(input.clone().into_tvalue())).unwrap().remove(0).into_tensor()
    }

    fn op_names(model: &TypedModel) -> Vec<String> {
        model.nodes().iter().map(|n| n.op().name().to_string()).collect()
    }

    fn core(interpolator: Interpolator, transform: CoordTransformer, nearest: Nearest, sizes: bool) -> CoreResize {
        CoreResize {
            coord_transformer: transform,
            interpolator,
            nearest,
            optional_scales_input: (!sizes).then_some(1),
            optional_sizes_input: sizes.then_some(1),
        }
    }

    #[test]
    fn nearest_resizes_that_replicate_pixels_become_upsamples_with_the_same_values() {
        use CoordTransformer::*;
        let cases = [
            // (transform, tie, driven by sizes, input shape, output shape, replicates)
            (Asymmetric, Nearest::Floor, true, [1, 2, 5, 6], [1, 2, 10, 12], true),
            (Asymmetric, Nearest::Floor, false, [1, 5, 6, 3], [1, 10, 18, 3], true),
            (HalfPixel, Nearest::RoundPreferCeil, true, [1, 2, 5, 6], [1, 2, 10, 12], true),
            (AlignCorners, Nearest::Floor, false, [1, 2, 5, 6], [1, 2, 10, 12], false),
            (HalfPixel, Nearest::Floor, false, [1, 2, 5, 6], [1, 2, 10, 12], false),
            (Asymmetric, Nearest::Floor, true, [1, 2, 5, 6], [1, 2, 7, 12], false),
        ];
        for (transform, tie, sizes, input, output, replicates) in cases {
            let aux = if sizes {
                tensor1(&output.iter().map(|&d| d as i64).collect::<Vec<_>>())
            } else {
                tensor1(&input.iter().zip(&output).map(|(&i, &o)| o as f32 / i as f32).collect::<Vec<_>>())
            };
            let what = format!("{transform:?} {tie:?} sizes {sizes} {input:?} → {output:?}");
            let model = resize_model(core(Interpolator::Nearest, transform, tie, sizes), &input, aux);
            let x = random(&input, 7);
            let expected = run(&model, &x);
            let mut rewritten = model.clone();
            let n = nearest_resizes_as_upsamples(&mut rewritten).unwrap();
            assert_eq!(n, usize::from(replicates), "{what}");
            use_bioseg_resizes(&mut rewritten).unwrap();
            let names = op_names(&rewritten);
            assert_eq!(names.iter().any(|n| n == "BiosegUpsample"), replicates, "{what}: {names:?}");
            assert_eq!(run(&rewritten, &x), expected, "{what}");
        }
    }

    #[test]
    fn bioseg_resize_gives_tracts_values_for_every_linear_and_cubic_mode() {
        use CoordTransformer::*;
        for interpolator in [Interpolator::Linear, Interpolator::Cubic] {
            for transform in [AlignCorners, HalfPixel, PytorchHalfPixel, Asymmetric] {
                for (input, output) in
                    [([1, 3, 6, 5], [1, 3, 12, 10]), ([1, 6, 5, 4], [1, 12, 15, 4]), ([2, 1, 4, 7], [2, 1, 9, 3])]
                {
                    let what = format!("{interpolator:?} {transform:?} {input:?} → {output:?}");
                    let aux = tensor1(&output.iter().map(|&d| d as i64).collect::<Vec<_>>());
                    let model =
                        resize_model(core(interpolator.clone(), transform.clone(), Nearest::Floor, true), &input, aux);
                    let x = random(&input, 11);
                    let expected = run(&model, &x);
                    let mut rewritten = model.clone();
                    assert_eq!(use_bioseg_resizes(&mut rewritten).unwrap(), 1, "{what}");
                    assert!(op_names(&rewritten).iter().any(|n| n == "BiosegResize"), "{what}");
                    let got = run(&rewritten, &x);
                    assert_eq!(got.shape(), output, "{what}");
                    let (got, expected) =
                        (got.to_plain_array_view::<f32>().unwrap(), expected.to_plain_array_view::<f32>().unwrap());
                    let d = got.iter().zip(expected.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
                    assert!(d <= 1e-6, "{what}: max difference {d}");
                }
            }
        }
    }

    #[test]
    fn bioseg_upsample_copies_any_layout() {
        // NCHW ×2, NHWC ×(2, 3), rank 3 (CHW) ×(3, 1).
        for (shape, scales) in
            [(vec![1, 2, 3, 4], vec![1, 1, 2, 2]), (vec![1, 3, 4, 5], vec![1, 2, 3, 1]), (vec![2, 3, 4], vec![1, 3, 1])]
        {
            let mut model = TypedModel::default();
            let x = model.add_source("x", f32::fact(&shape)).unwrap();
            let y = model.wire_node("up", NearestUpsample { scales: scales.iter().copied().collect() }, &[x]).unwrap();
            model.select_output_outlets(&y).unwrap();
            let input = random(&shape, 3);
            let expected = run(&model, &input);
            let mut rewritten = model.clone();
            assert_eq!(use_bioseg_resizes(&mut rewritten).unwrap(), 1, "{shape:?} {scales:?}");
            assert_eq!(run(&rewritten, &input), expected, "{shape:?} {scales:?}");
        }
    }
}
