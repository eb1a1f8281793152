//! The U-Net's 2×2 / 2 max pooling plugged into tract: [`BiosegMaxPool`] replaces tract's
//! `MaxPool` nodes of that shape (channels first, no padding, floor, no index output, f32)
//! after tract has decluttered the graph, as [`crate::gemm_conv`] does for convolutions.
//!
//! Why: tract 0.23 has a vector path for stride-1 2×2 pools only; at stride 2 it visits each
//! window's taps with bounds checks. [`bioseg_kernels::max_pool_2x2`] folds the same four
//! values in the same order with the same comparison (identical output), branch-free: the
//! four pools of the F=8 U-Net on a 544² window 7.9–8.3 → 1.45–1.50 ms, the window 116–117 →
//! 107–112 ms (`bioseg run --repeat 10 --profile`, alternating binaries).

use tract_core::internal::*;
use tract_core::ops::cnn::{MaxPool, PaddingSpec};
use tract_core::ops::nn::DataFormat;

/// Max pooling 2×2 / 2 of an `[N, C, H, W]` f32 tensor (floor: an odd last row or column is
/// left out).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct BiosegMaxPool;

impl Op for BiosegMaxPool {
    fn name(&self) -> StaticName {
        "BiosegMaxPool2x2".into()
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        let input = &inputs[0];
        let &[n, c, h, w] = input.shape() else {
            bail!("BiosegMaxPool2x2: input of shape {:?}, expected [N, C, H, W]", input.shape());
        };
        // SAFETY: max_pool_2x2 writes every output value.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&[n, c, h / 2, w / 2])? };
        {
            let x = input.try_as_plain_ram()?;
            let mut y = output.try_as_plain_ram_mut()?;
            bioseg_kernels::max_pool_2x2(n * c, [h, w], x.as_slice::<f32>()?, y.as_slice_mut::<f32>()?)?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for BiosegMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type() && inputs[0].rank() == 4);
        let s = &inputs[0].shape;
        Ok(tvec!(f32::fact([s[0].clone(), s[1].clone(), s[2].clone() / 2, s[3].clone() / 2])))
    }

    as_op!();
}

/// Whether tract's `pool` is the pooling [`BiosegMaxPool`] computes.
fn is_2x2_stride_2(pool: &MaxPool) -> bool {
    let spec = &pool.pool_spec;
    let zeros = |v: &[usize]| v.iter().all(|&p| p == 0);
    let unpadded = match &spec.padding {
        PaddingSpec::Valid => true,
        PaddingSpec::Explicit(before, after) => zeros(before) && zeros(after),
        PaddingSpec::ExplicitOnnxPool(before, after, ceil) => !ceil && zeros(before) && zeros(after),
        PaddingSpec::SameUpper | PaddingSpec::SameLower => false,
    };
    pool.with_index_outputs.is_none()
        && spec.data_format == DataFormat::NCHW
        && spec.kernel_shape[..] == [2, 2]
        && spec.strides()[..] == [2, 2]
        && spec.dilations().iter().all(|&d| d == 1)
        && unpadded
}

/// Replaces every tract `MaxPool` node of a typed model that [`BiosegMaxPool`] computes;
/// returns how many were replaced. Run on a decluttered model, before `into_optimized`.
pub fn use_bioseg_max_pools(model: &mut TypedModel) -> TractResult<usize> {
    crate::passes::replace_each(model, |model, node| {
        let Some(pool) = node.op_as::<MaxPool>() else { return Ok(None) };
        let fact = model.outlet_fact(node.inputs[0])?;
        let ours = is_2x2_stride_2(pool) && fact.datum_type == f32::datum_type() && fact.rank() == 4;
        Ok(ours.then(|| Box::new(BiosegMaxPool) as Box<dyn TypedOp>))
    })
}
