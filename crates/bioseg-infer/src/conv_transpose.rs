//! Transposed convolutions (a U-Net's 2×2 / 2 up-convolution) on bioseg's kernels inside
//! tract.
//!
//! tract 0.23 runs `ConvTranspose` as a matrix product into a column buffer followed by its
//! `DeconvSum`, which adds every column into the output pixel by pixel. [`BiosegConvTranspose`]
//! takes over the 2-D, channels-first, one-group f32 ones with constant weights and runs
//! `bioseg_kernels::conv_transpose2d_forward`, the transposed convolution of bioseg's trainer
//! (stride 2: four stride-1 phases on the direct AVX-512 kernels where they pay, else one
//! `gemm` product per block and col2im; spread over the cores with rayon), bias included.
//! A batch normalisation after it (tract: a per-channel `Mul` and `Add`, left as an
//! element-wise pass over the up-sampled tensor because tract folds it into convolutions only)
//! is folded into its weights and bias.

use tract_core::internal::*;
use tract_core::ops::cnn::{Deconv, KernelFormat, PaddingSpec};
use tract_core::ops::nn::DataFormat;

use bioseg_kernels::{Conv2dGeometry, conv_transpose2d_forward};

/// A 2-D transposed convolution of `[N, C, H, W]` (or `[C, H, W]`) f32 images.
#[derive(Clone, Debug, PartialEq)]
pub struct BiosegConvTranspose {
    /// Input and output channels.
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    /// Padding removed on each side, per axis.
    pub padding: [usize; 2],
    /// Extra rows and columns at the bottom and right (ONNX `output_padding`).
    pub adjustments: [usize; 2],
    /// Whether the tensors have a batch axis.
    pub batch_axis: bool,
    /// `[c_in, c_out, kh, kw]` (ONNX's and the kernel's layout).
    pub weights: Arc<Vec<f32>>,
    pub bias: Arc<Vec<f32>>,
}

impl Eq for BiosegConvTranspose {}

impl BiosegConvTranspose {
    /// The geometry for `batch` images of `in_hw`.
    fn geometry(&self, batch: usize, in_hw: [usize; 2]) -> TractResult<Conv2dGeometry> {
        Conv2dGeometry::transposed(
            batch,
            self.c_in,
            in_hw,
            self.c_out,
            self.kernel,
            self.stride,
            self.padding,
            self.adjustments,
            [1, 1],
        )
        .map_err(|e| format_err!("BiosegConvTranspose: {e}"))
    }

    /// The geometry and the output shape for an input of `shape`.
    fn output_shape(&self, shape: &[usize]) -> TractResult<(Conv2dGeometry, TVec<usize>)> {
        let lead = usize::from(self.batch_axis);
        ensure!(shape.len() == lead + 3, "BiosegConvTranspose: input of shape {shape:?}");
        let batch = if self.batch_axis { shape[0] } else { 1 };
        let g = self.geometry(batch, [shape[lead + 1], shape[lead + 2]])?;
        let mut out: TVec<usize> = shape.into();
        out[lead] = self.c_out;
        out[lead + 1] = g.in_hw[0];
        out[lead + 2] = g.in_hw[1];
        Ok((g, out))
    }

    /// The op for tract's `Deconv` node, or `None` when it is outside what the kernels run.
    fn from_node(model: &TypedModel, node: &TypedNode) -> TractResult<Option<BiosegConvTranspose>> {
        let Some(deconv) = node.op_as::<Deconv>() else { return Ok(None) };
        let spec = &deconv.pool_spec;
        let format = spec.data_format;
        if deconv.group != 1
            || spec.rank() != 2
            || deconv.kernel_format != KernelFormat::OIHW
            || !matches!(format, DataFormat::NCHW | DataFormat::CHW)
            || spec.dilations().iter().any(|&d| d != 1)
            || node.inputs.len() != 3
        {
            return Ok(None);
        }
        let padding = match &spec.padding {
            PaddingSpec::Valid => [0, 0],
            PaddingSpec::Explicit(before, after) if before == after && before.len() == 2 => [before[0], before[1]],
            _ => return Ok(None),
        };
        let input = model.outlet_fact(node.inputs[0])?;
        let (Some(kernel), Some(bias)) =
            (model.outlet_fact(node.inputs[1])?.konst.clone(), model.outlet_fact(node.inputs[2])?.konst.clone())
        else {
            return Ok(None);
        };
        if [input.datum_type, kernel.datum_type(), bias.datum_type()].iter().any(|&t| t != f32::datum_type()) {
            return Ok(None);
        }
        let (Some(in_shape), Some(out_shape)) = (input.shape.as_concrete(), node.outputs[0].fact.shape.as_concrete())
        else {
            return Ok(None);
        };
        // tract keeps the kernel as OIHW, O the transposed convolution's output channels.
        let &[c_out, c_in, kh, kw] = kernel.shape() else { return Ok(None) };
        let bias: Vec<f32> = match bias.len() {
            1 => vec![bias.cast_to_scalar::<f32>()?; c_out],
            n if n == c_out => bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
            _ => return Ok(None),
        };
        let oihw = kernel.try_as_plain_ram()?;
        let oihw = oihw.as_slice::<f32>()?;
        let mut weights = vec![0f32; oihw.len()];
        for o in 0..c_out {
            for c in 0..c_in {
                let taps = kh * kw;
                weights[(c * c_out + o) * taps..][..taps].copy_from_slice(&oihw[(o * c_in + c) * taps..][..taps]);
            }
        }
        let strides = spec.strides();
        let adjustments: [usize; 2] = match deconv.adjustments.as_slice() {
            &[a, b] => [a, b],
            _ => return Ok(None),
        };
        let op = BiosegConvTranspose {
            c_in,
            c_out,
            kernel: [kh, kw],
            stride: [strides[0], strides[1]],
            padding,
            adjustments,
            batch_axis: format.has_n(),
            weights: Arc::new(weights),
            bias: Arc::new(bias),
        };
        // The geometry must give tract's output shape (else leave the node to tract).
        let lead = usize::from(op.batch_axis);
        let ok =
            in_shape.get(lead) == Some(&c_in) && op.output_shape(in_shape).is_ok_and(|(_, out)| out[..] == *out_shape);
        Ok(ok.then_some(op))
    }
}

impl Op for BiosegConvTranspose {
    fn name(&self) -> StaticName {
        "BiosegConvTranspose".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("{}→{} {:?} / {:?}", self.c_in, self.c_out, self.kernel, self.stride)])
    }

    op_as_typed_op!();
}

impl EvalOp for BiosegConvTranspose {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        let input = &inputs[0];
        let (g, out_shape) = self.output_shape(input.shape())?;
        // SAFETY: the transposed convolution writes every output value.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&out_shape)? };
        {
            let x = input.try_as_plain_ram()?;
            let mut y = output.try_as_plain_ram_mut()?;
            conv_transpose2d_forward(
                &g,
                x.as_slice::<f32>()?,
                &self.weights,
                Some(&self.bias),
                y.as_slice_mut::<f32>()?,
            )
            .map_err(|e| format_err!("BiosegConvTranspose: {e}"))?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for BiosegConvTranspose {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let shape = inputs[0].shape.as_concrete().context("BiosegConvTranspose needs a concrete input shape")?;
        Ok(tvec!(f32::fact(&self.output_shape(shape)?.1)))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let macs = inputs[0].shape.volume() * (self.c_out * self.kernel[0] * self.kernel[1]);
        Ok(tvec!((Cost::FMA(f32::datum_type()), macs)))
    }

    as_op!();
}

/// The per-channel scale and shift of the `Mul` and `Add` nodes that follow `node`, each the
/// only consumer of the previous output, with a constant of one value or one per channel along
/// `c_axis` (of `c_out` channels); the last of them (or `node`'s own id when there is none).
fn affine_successors(
    model: &TypedModel,
    node: &TypedNode,
    c_axis: usize,
    c_out: usize,
) -> TractResult<(usize, Vec<f32>, Vec<f32>)> {
    use tract_core::ops::binary::TypedBinOp;
    use tract_core::ops::math::{Add, Mul};
    let (mut scale, mut shift) = (vec![1f32; c_out], vec![0f32; c_out]);
    let shape = &node.outputs[0].fact.shape;
    let mut last = node.id;
    while let Some((next, slot)) = crate::passes::sole_consumer(model, &model.nodes[last])? {
        let Some(bin) = next.op_as::<TypedBinOp>() else { break };
        let (mul, add) = (bin.0.is::<Mul>(), bin.0.is::<Add>());
        if !(mul || add) || next.inputs.len() != 2 || next.outputs[0].fact.shape != *shape {
            break;
        }
        let other = model.outlet_fact(next.inputs[1 - slot])?;
        let Some(k) = other.konst.as_ref().filter(|k| k.datum_type() == f32::datum_type()) else { break };
        // One value, or c_out values along the channel axis (right-aligned broadcasting).
        let rank = shape.rank();
        let per_channel = k.rank() <= rank
            && k.len() == c_out
            && k.shape().iter().enumerate().all(|(i, &d)| d == 1 || i + rank - k.rank() == c_axis);
        if k.len() != 1 && !per_channel {
            break;
        }
        let k = k.try_as_plain_ram()?;
        let k = k.as_slice::<f32>()?;
        for o in 0..c_out {
            let v = if k.len() == 1 { k[0] } else { k[o] };
            if mul {
                scale[o] *= v;
                shift[o] *= v;
            } else {
                shift[o] += v;
            }
        }
        last = next.id;
    }
    Ok((last, scale, shift))
}

/// Replaces every tract `Deconv` node [`BiosegConvTranspose`] runs, with the per-channel
/// `Mul`/`Add` after it folded in; returns how many. Run on a decluttered model with concrete
/// shapes.
pub fn use_bioseg_conv_transposes(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(mut op) = BiosegConvTranspose::from_node(model, node)? else { continue };
        let (last, scale, shift) = affine_successors(model, node, usize::from(op.batch_axis), op.c_out)?;
        if last != id {
            let weights = Arc::make_mut(&mut op.weights);
            let taps = op.kernel[0] * op.kernel[1];
            for (i, w) in weights.iter_mut().enumerate() {
                *w *= scale[(i / taps) % op.c_out];
            }
            let bias = Arc::make_mut(&mut op.bias);
            for (o, b) in bias.iter_mut().enumerate() {
                *b = *b * scale[o] + shift[o];
            }
        }
        let (input, name) = (node.inputs[0], node.name.clone());
        crate::passes::replace_chain(model, &[input], last, &name, op)?;
        replaced += 1;
    }
    Ok(replaced)
}
