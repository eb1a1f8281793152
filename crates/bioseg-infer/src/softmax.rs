//! The softmax head of a multi-class channels-first U-Net, on bioseg's op inside tract.
//!
//! tract 0.23 runs a softmax over an axis that is not the last one pixel by pixel, gathering
//! each pixel's few class values across planes: 39 % of a 544² window of a 3-class PyTorch-style
//! U-Net (F=16) went to its `Softmax` (tools/zoo/window.py). [`BiosegSoftmax`] works plane by
//! plane instead, every step a pass over contiguous pixels: the per-pixel maximum, `exp(x − max)`
//! and its sum, then the division (or, for `LogSoftmax`, `x − max − ln(sum)`): the same formula
//! as tract's, so the same values up to the last bit of `exp`.

use tract_core::internal::*;
use tract_core::ops::nn::{Softmax, SoftmaxKind};

/// Softmax (or log-softmax) of an f32 tensor over one axis that has contiguous axes after it.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct BiosegSoftmax {
    /// The normalised axis (classes).
    pub axis: usize,
    /// Log-softmax instead of softmax.
    pub log: bool,
}

impl Op for BiosegSoftmax {
    fn name(&self) -> StaticName {
        if self.log { "BiosegLogSoftmax".into() } else { "BiosegSoftmax".into() }
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegSoftmax {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = &inputs[0];
        let shape = input.shape();
        let classes = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        // SAFETY: every output value is written below.
        let mut output = unsafe { Tensor::uninitialized::<f32>(shape)? };
        if classes * inner > 0 {
            bioseg_kernels::clean_upper_state();
            let x = input.try_as_plain_ram()?;
            let mut y = output.try_as_plain_ram_mut()?;
            let (mut max, mut sum) = (vec![0f32; inner], vec![0f32; inner]);
            for (x, y) in x
                .as_slice::<f32>()?
                .chunks_exact(classes * inner)
                .zip(y.as_slice_mut::<f32>()?.chunks_exact_mut(classes * inner))
            {
                softmax_block(x, y, inner, self.log, &mut max, &mut sum);
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

/// Softmax over the `classes` planes of `inner` values of `x` (`[classes, inner]`) into `y`.
fn softmax_block(x: &[f32], y: &mut [f32], inner: usize, log: bool, max: &mut [f32], sum: &mut [f32]) {
    max.copy_from_slice(&x[..inner]);
    for plane in x.chunks_exact(inner).skip(1) {
        max.iter_mut().zip(plane).for_each(|(m, &v)| *m = m.max(v));
    }
    sum.fill(0.0);
    for (xp, yp) in x.chunks_exact(inner).zip(y.chunks_exact_mut(inner)) {
        for (((o, &v), &m), s) in yp.iter_mut().zip(xp).zip(max.iter()).zip(sum.iter_mut()) {
            let e = (v - m).exp();
            *s += e;
            *o = if log { v - m } else { e };
        }
    }
    if log {
        sum.iter_mut().for_each(|s| *s = s.ln());
        for yp in y.chunks_exact_mut(inner) {
            yp.iter_mut().zip(sum.iter()).for_each(|(o, &s)| *o -= s);
        }
    } else {
        for yp in y.chunks_exact_mut(inner) {
            yp.iter_mut().zip(sum.iter()).for_each(|(o, &s)| *o /= s);
        }
    }
}

impl TypedOp for BiosegSoftmax {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type() && inputs[0].rank() > self.axis + 1);
        Ok(tvec!(f32::fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// Replaces tract's f32 `Softmax` / `LogSoftmax` nodes over one axis that is not the last with
/// [`BiosegSoftmax`]; returns how many. Run on a decluttered model.
pub fn use_bioseg_softmax(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::replace_each(model, |model, node| {
        let Some(softmax) = node.op_as::<Softmax>() else { return Ok(None) };
        let fact = model.outlet_fact(node.inputs[0])?;
        let &[axis] = softmax.axes.as_slice() else { return Ok(None) };
        if softmax.quant_output_dt.is_some() || fact.datum_type != f32::datum_type() || axis + 1 >= fact.rank() {
            return Ok(None);
        }
        Ok(Some(Box::new(BiosegSoftmax { axis, log: softmax.kind == SoftmaxKind::LogSoftmax })))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_block_normalises_each_pixel_over_the_planes() {
        // Two classes, three pixels.
        let x = [0.0f32, 1.0, -3.0, 0.0, -1.0, 2.0];
        let mut y = [0f32; 6];
        let (mut max, mut sum) = (vec![0f32; 3], vec![0f32; 3]);
        softmax_block(&x, &mut y, 3, false, &mut max, &mut sum);
        for p in 0..3 {
            let (a, b) = (x[p], x[3 + p]);
            let expected = a.exp() / (a.exp() + b.exp());
            assert!((y[p] - expected).abs() < 1e-6 && (y[p] + y[3 + p] - 1.0).abs() < 1e-6, "{y:?}");
        }
        softmax_block(&x, &mut y, 3, true, &mut max, &mut sum);
        let expected = x[0] - (x[0].exp() + x[3].exp()).ln();
        assert!((y[0] - expected).abs() < 1e-6, "{y:?}");
    }
}
