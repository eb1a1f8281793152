//! A convolution followed by a ReLU, as one operation on the CPU backend.
//!
//! Design: Burn runs `relu(conv2d(x))` as two operations, and its autodiff ReLU keeps its
//! *input* for the backward pass, so each layer's pre-activation stays alive until the
//! backward pass and the ReLU writes a second tensor. On the CPU backend ([`CpuAutodiff`],
//! and [`CpuBackend`] for validation) [`conv_relu`] runs bioseg-kernels' fused forward
//! (`max(conv + bias, 0)` while each block is in cache, `burn_flex::bioseg::conv2d_relu`) as
//! one autodiff step, [`ConvRelu`], whose backward pass masks the output gradient with the
//! (post-activation) output, then takes the convolution's three gradients as Burn's own
//! `conv2d` step does. Other backends (CUDA, ndarray, LibTorch) run the two operations
//! unchanged: the dispatch is by type, so the model stays generic over `Backend`.
//!
//! Measured (`bioseg-train bench -F 16 --size 256 -b 2 --profile`): the separate ReLU passes
//! were 23 calls and 7.6 ms of a 0.21 s step; see BENCHMARKS.md ("CPU training") for the
//! step before and after.

use std::any::{Any, TypeId};

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn::tensor::activation::relu;
use burn::tensor::ops::{ActivationOps, ConvOptions, FloatTensor, ModuleOps};
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::FlexTensor;

use crate::device::{CpuAutodiff, CpuBackend};

/// `relu(conv.forward(x))`, fused on the CPU backend (see the module's note).
pub fn conv_relu<B: Backend>(conv: &Conv2d<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let on_cpu = TypeId::of::<B>() == TypeId::of::<CpuAutodiff>() || TypeId::of::<B>() == TypeId::of::<CpuBackend>();
    let Some(bias) = conv.bias.as_ref().filter(|_| on_cpu) else {
        return relu(conv.forward(x));
    };
    let Some(padding) = symmetric_padding(conv) else {
        return relu(conv.forward(x));
    };
    let options = ConvOptions::new(conv.stride, padding, conv.dilation, conv.groups);
    let (x, weight, bias) = (primitive(x), primitive(conv.weight.val()), primitive(bias.val()));
    let y = if TypeId::of::<B>() == TypeId::of::<CpuAutodiff>() {
        same::<FloatTensor<CpuAutodiff>, _>(autodiff(same(x), same(weight), same(bias), options))
    } else {
        same::<FlexTensor, _>(forward(same(x), same(weight), same(bias), &options))
    };
    Tensor::from_primitive(TensorPrimitive::Float(y))
}

/// The padding `conv.forward` applies when it is the same on both sides of each axis (as
/// `ConvOptions` takes it): `Valid`, symmetric `Explicit`, and `Same` at stride 1 with odd
/// kernels (Burn's `Same` pads `kernel − 1` in all, the larger half after); `None` otherwise.
fn symmetric_padding<B: Backend>(conv: &Conv2d<B>) -> Option<[usize; 2]> {
    match conv.padding {
        PaddingConfig2d::Valid => Some([0, 0]),
        PaddingConfig2d::Explicit(top, left, bottom, right) => (top == bottom && left == right).then_some([top, left]),
        PaddingConfig2d::Same => {
            let [kh, kw] = conv.kernel_size;
            (conv.stride == [1, 1] && kh % 2 == 1 && kw % 2 == 1).then_some([kh / 2, kw / 2])
        }
    }
}

/// The backend's tensor inside a Burn tensor.
fn primitive<B: Backend, const D: usize>(t: Tensor<B, D>) -> FloatTensor<B> {
    t.into_primitive().tensor()
}

/// `t` as type `U`, which callers have checked is `T` (by `TypeId`).
fn same<T: 'static, U: 'static>(t: T) -> U {
    let mut slot = Some(t);
    (&mut slot as &mut dyn Any)
        .downcast_mut::<Option<U>>()
        .and_then(Option::take)
        .expect("the caller checked that both are the same type")
}

/// The fused forward pass on flex (its own two operations where bioseg-kernels do not run the
/// geometry, or are switched off).
fn forward(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, options: &ConvOptions<2>) -> FlexTensor {
    burn_flex::bioseg::conv2d_relu(&x, &weight, Some(&bias), options)
        .unwrap_or_else(|| CpuBackend::relu(CpuBackend::conv2d(x, weight, Some(bias), options.clone())))
}

/// The autodiff step of `relu(conv2d(x, weight, bias))` on flex; its state: the parents'
/// checkpoints, the options and the output (the ReLU's mask).
#[derive(Debug)]
struct ConvRelu;

impl Backward<CpuBackend, 3> for ConvRelu {
    type State = (NodeId, NodeId, NodeId, ConvOptions<2>, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let (x, weight, bias, options, y) = ops.state;
        let grad = CpuBackend::relu_backward(y, grads.consume::<CpuBackend>(&ops.node));
        let x: FlexTensor = checkpointer.retrieve_node_output(x);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight);
        let bias: FlexTensor = checkpointer.retrieve_node_output(bias);
        if let Some(node) = node_x {
            let dx = CpuBackend::conv2d_x_backward(x.clone(), weight.clone(), grad.clone(), options.clone());
            grads.register::<CpuBackend>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = CpuBackend::conv2d_weight_backward(x.clone(), weight, grad.clone(), options);
            grads.register::<CpuBackend>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<CpuBackend>(node.id, CpuBackend::conv2d_bias_backward(x, bias, grad));
        }
    }
}

fn autodiff(
    x: FloatTensor<CpuAutodiff>,
    weight: FloatTensor<CpuAutodiff>,
    bias: FloatTensor<CpuAutodiff>,
    options: ConvOptions<2>,
) -> FloatTensor<CpuAutodiff> {
    match ConvRelu
        .prepare::<NoCheckpointing>([x.node.clone(), weight.node.clone(), bias.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(&x), prep.checkpoint(&weight), prep.checkpoint(&bias));
            let y = forward(x.primitive, weight.primitive, bias.primitive, &options);
            prep.finish((state.0, state.1, state.2, options, y.clone()), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.primitive, weight.primitive, bias.primitive, &options)),
    }
}

#[cfg(test)]
mod tests {
    use burn::module::AutodiffModule;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    use super::*;

    /// Largest difference relative to the largest value of `want`.
    fn rel_diff<B: Backend, const D: usize>(got: Tensor<B, D>, want: Tensor<B, D>) -> f32 {
        let scale = want.clone().abs().max().into_scalar().to_f32().max(1e-6);
        (got - want).abs().max().into_scalar().to_f32() / scale
    }

    /// The fused step against Burn's `relu(conv2d(x))`: outputs and the gradients of the
    /// input, weights and bias, on the direct kernels (8→16, 16→32), on im2col (3→5), with
    /// valid, explicit and same padding and a stride of 2 (not fused: Burn's `Same` differs).
    #[test]
    fn fused_convolution_relu_matches_burns_two_operations() {
        type B = CpuAutodiff;
        let device = Default::default();
        for (c_in, c_out, [h, w], padding, stride) in [
            (8, 16, [12, 10], PaddingConfig2d::Same, 1),
            (16, 32, [9, 17], PaddingConfig2d::Explicit(1, 1, 1, 1), 1),
            (3, 5, [7, 6], PaddingConfig2d::Valid, 1),
            (3, 5, [7, 6], PaddingConfig2d::Explicit(2, 0, 2, 0), 2),
            (8, 16, [8, 8], PaddingConfig2d::Same, 2),
        ] {
            let conv: Conv2d<B> = Conv2dConfig::new([c_in, c_out], [3, 3])
                .with_padding(padding.clone())
                .with_stride([stride; 2])
                .init(&device);
            let x = Tensor::<B, 4>::random([2, c_in, h, w], Distribution::Normal(0.0, 1.0), &device).require_grad();
            let fused = conv_relu(&conv, x.clone());
            let plain = relu(conv.forward(x.clone()));
            let zeros = fused.clone().equal_elem(0.0).int().sum().into_scalar().to_usize();
            assert!(
                zeros > 0 && zeros < fused.shape().num_elements(),
                "{padding:?}: {zeros} zeros: a ReLU that clamps some"
            );
            assert!(rel_diff(fused.clone(), plain.clone()) < 1e-5, "{padding:?}: forward");
            let r = Tensor::<B, 4>::random(fused.shape(), Distribution::Normal(0.0, 1.0), &device);
            let grads_fused = (fused * r.clone()).sum().backward();
            let grads_plain = (plain * r).sum().backward();
            let bias = conv.bias.as_ref().expect("a bias");
            let pairs = [
                (
                    x.grad(&grads_fused).unwrap().flatten::<1>(0, 3),
                    x.grad(&grads_plain).unwrap().flatten::<1>(0, 3),
                    "input",
                ),
                (
                    conv.weight.grad(&grads_fused).unwrap().flatten::<1>(0, 3),
                    conv.weight.grad(&grads_plain).unwrap().flatten::<1>(0, 3),
                    "weights",
                ),
                (bias.grad(&grads_fused).unwrap(), bias.grad(&grads_plain).unwrap(), "bias"),
            ];
            for (got, want, what) in pairs {
                assert!(rel_diff(got, want) < 1e-5, "{padding:?}: {what} gradient");
            }
            // Without autodiff (validation runs on the inner backend).
            let inner = conv.valid();
            let x = x.inner();
            assert!(
                rel_diff(conv_relu(&inner, x.clone()), relu(inner.forward(x))) < 1e-5,
                "{padding:?}: inner backend"
            );
        }
    }
}
