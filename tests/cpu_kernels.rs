//! bioseg's CPU kernels inside Burn's `flex` backend (vendor/burn-flex, crates/bioseg-kernels)
//! against flex's own code, switched in one process with `burn_flex::bioseg::set_enabled`:
//! convolution forward and its data, weight and bias gradients, the transposed convolution,
//! max pooling and nearest up-sampling with their gradients (proptest over kernel 1–3,
//! padding 0–2, stride 1–2, dilation 1–2, 1–64 channels, batch 1–4, sizes down to 1×1), and
//! 20 Adam steps of a small U-Net on both paths.

use bioseg_train::augment::{AugmentConfig, augment_batch, synthetic_samples};
use bioseg_train::device::{CpuAutodiff, CpuBackend};
use bioseg_train::model::unet::{Unet, UnetConfig, Upsample};
use bioseg_train::train::losses::{Loss, LossKind};
use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::module::{conv_transpose2d, conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions};
use proptest::prelude::*;

type B = CpuAutodiff;

/// Restores flex's default (bioseg kernels on) when dropped, even after a failed assertion.
struct Kernels(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl Kernels {
    fn lock() -> Self {
        Kernels(bioseg_suite::burn_lock())
    }
}

impl Drop for Kernels {
    fn drop(&mut self) {
        burn_flex::bioseg::set_enabled(true);
    }
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(1);
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn leaf<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let len = shape.iter().product();
    Tensor::<B, D>::from_data(TensorData::new(values(len, seed), shape), &Default::default()).require_grad()
}

fn data<const D: usize>(t: Tensor<CpuBackend, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest difference relative to the largest magnitude of `want` (at least 1e-3).
fn relative(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max) / scale
}

/// Runs `f` with bioseg's kernels and with flex's own code; every output pair must agree to
/// 1e-4 relative.
fn both_paths(what: &str, f: impl Fn() -> Vec<Vec<f32>>) {
    burn_flex::bioseg::set_enabled(true);
    let ours = f();
    burn_flex::bioseg::set_enabled(false);
    let theirs = f();
    burn_flex::bioseg::set_enabled(true);
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        let d = relative(a, b);
        assert!(d <= 1e-4, "{what}: output {i} differs by {d:.2e} (relative)");
    }
}

/// Forward output and the gradients of `Σ y·r` for every input of a 4-D operation.
fn forward_and_gradients<const N: usize>(
    inputs: [Tensor<B, 4>; N],
    weight_bias: Option<(Tensor<B, 4>, Tensor<B, 1>)>,
    op: impl Fn(Tensor<B, 4>, Option<(Tensor<B, 4>, Tensor<B, 1>)>) -> Tensor<B, 4>,
) -> Vec<Vec<f32>> {
    let x = inputs[0].clone();
    let y = op(x.clone(), weight_bias.clone());
    let r =
        Tensor::<B, 4>::from_data(TensorData::new(values(y.shape().num_elements(), 99), y.dims()), &Default::default());
    let grads = (y.clone() * r).sum().backward();
    let mut out = vec![data(y.inner()), data(x.grad(&grads).expect("x gradient"))];
    if let Some((w, b)) = weight_bias {
        out.push(data(w.grad(&grads).expect("weight gradient")));
        out.push(data(b.grad(&grads).expect("bias gradient")));
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn convolution_forward_and_gradients_match_flex(
        batch in 1..=4usize, c_in in 1..=64usize, c_out in 1..=64usize, h in 1..=10usize, w in 1..=10usize,
        k in 1..=3usize, pad in 0..=2usize, stride in 1..=2usize, dilation in 1..=2usize, seed in 0u64..1000,
    ) {
        let span = dilation * (k - 1) + 1;
        prop_assume!(h + 2 * pad >= span && w + 2 * pad >= span);
        let _k = Kernels::lock();
        both_paths("conv2d", || {
            let wb = (leaf([c_out, c_in, k, k], seed + 1), leaf([c_out], seed + 2));
            forward_and_gradients([leaf([batch, c_in, h, w], seed)], Some(wb), |x, wb| {
                let (w, b) = wb.unwrap();
                conv2d(x, w, Some(b), ConvOptions::new([stride, stride], [pad, pad], [dilation, dilation], 1))
            })
        });
    }

    #[test]
    fn transposed_convolution_forward_and_gradients_match_flex(
        batch in 1..=3usize, c_in in 1..=32usize, c_out in 1..=32usize, h in 1..=8usize, w in 1..=8usize,
        k in 1..=3usize, pad in 0..=1usize, stride in 1..=2usize, seed in 0u64..1000,
    ) {
        prop_assume!(pad < k);
        let _k = Kernels::lock();
        both_paths("conv_transpose2d", || {
            let wb = (leaf([c_in, c_out, k, k], seed + 1), leaf([c_out], seed + 2));
            forward_and_gradients([leaf([batch, c_in, h, w], seed)], Some(wb), |x, wb| {
                let (w, b) = wb.unwrap();
                conv_transpose2d(x, w, Some(b), ConvTransposeOptions::new([stride, stride], [pad, pad], [stride - 1, 0], [1, 1], 1))
            })
        });
    }

    #[test]
    fn max_pooling_and_nearest_upsampling_match_flex(
        planes in 1..=6usize, h in 2..=12usize, w in 2..=12usize, k in 1..=3usize, stride in 1..=3usize,
        factor in 1..=3usize, seed in 0u64..1000,
    ) {
        prop_assume!(k <= h && k <= w);
        let _k = Kernels::lock();
        both_paths("max_pool2d", || {
            forward_and_gradients([leaf([1, planes, h, w], seed)], None, |x, _| max_pool2d(x, [k, k], [stride, stride], [0, 0], [1, 1], false))
        });
        both_paths("interpolate nearest", || {
            forward_and_gradients([leaf([2, planes, h, w], seed)], None, |x, _| {
                interpolate(x, [h * factor, w * 2], InterpolateOptions::new(InterpolateMode::Nearest))
            })
        });
    }
}

/// Every float parameter of a module, in visiting order.
#[derive(Default)]
struct Flat(Vec<f32>);

impl<Bk: Backend> ModuleVisitor<Bk> for Flat {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<Bk, D>>) {
        self.0.extend(param.val().into_data().convert::<f32>().to_vec::<f32>().unwrap());
    }
}

fn flat(m: &Unet<CpuBackend>) -> Vec<f32> {
    let mut v = Flat::default();
    m.visit(&mut v);
    v.0
}

/// 20 Adam steps of a small U-Net (both decoder variants) on both paths: the losses agree to
/// 1e-4 and the final weights to 1e-3 (relative), and the weights moved.
#[test]
fn twenty_adam_steps_of_a_unet_agree_with_flex() {
    let _k = Kernels::lock();
    let device = Default::default();
    let sources = synthetic_samples(2, 64, 0).unwrap();
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    for upsample in [Upsample::Nearest, Upsample::Transpose] {
        let run = |on: bool| {
            burn_flex::bioseg::set_enabled(on);
            B::seed(&device, 3);
            let mut model: Unet<B> = UnetConfig::new()
                .with_filters(4)
                .with_depth(2)
                .with_drop_rate(0.0)
                .with_upsample(upsample)
                .init(&device);
            let initial = flat(&model.valid());
            let mut optim = AdamConfig::new().init::<B, Unet<B>>();
            let mut losses = vec![];
            for step in 0..20u64 {
                let batch = augment_batch(&sources, step * 2, 2, 32, 32, &AugmentConfig::none(), 1);
                let (m, l) =
                    bioseg_train::train::data_parallel::step(model, &mut optim, &loss, &batch, &[device], 1e-3)
                        .unwrap();
                model = m;
                losses.push(l as f32);
            }
            (losses, initial, flat(&model.valid()))
        };
        let (l_ours, start, w_ours) = run(true);
        let (l_flex, _, w_flex) = run(false);
        burn_flex::bioseg::set_enabled(true);
        for (i, (a, b)) in l_ours.iter().zip(&l_flex).enumerate() {
            assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{upsample:?}: loss of step {i}: {a} vs {b}");
        }
        let d = relative(&w_ours, &w_flex);
        assert!(d <= 1e-3, "{upsample:?}: final weights differ by {d:.2e} (relative)");
        let moved = relative(&w_ours, &start);
        assert!(moved > 1e-3, "{upsample:?}: the weights did not move ({moved:.2e})");
    }
}

/// The classic decoder step as one transposed convolution (`upsample_conv2x2`, used on the
/// CPU) equals nearest ×2 up-sampling then the 2×2 convolution padded bottom and right, forward
/// and gradients (input, weights, bias), on odd and even sizes.
#[test]
fn decoder_step_as_a_transposed_convolution_equals_upsampling_then_conv() {
    use bioseg_train::model::unet::{upsample_conv2x2, upsample2};
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    let _k = Kernels::lock();
    let device = Default::default();
    for (n, c_in, c_out, h, w) in [(2, 6, 3, 5, 4), (1, 4, 8, 1, 1), (3, 2, 2, 7, 6)] {
        let run = |fold: bool| {
            B::seed(&device, 11);
            let conv = Conv2dConfig::new([c_in, c_out], [2, 2])
                .with_padding(PaddingConfig2d::Explicit(0, 0, 1, 1))
                .init::<B>(&device);
            let x = leaf([n, c_in, h, w], 5);
            let y = if fold { upsample_conv2x2(&conv, x.clone()) } else { conv.forward(upsample2(x.clone())) };
            let r = Tensor::<B, 4>::from_data(TensorData::new(values(y.shape().num_elements(), 7), y.dims()), &device);
            let grads = (y.clone() * r).sum().backward();
            let bias = conv.bias.as_ref().expect("bias").val();
            vec![
                data(y.inner()),
                data(x.grad(&grads).expect("x")),
                data(conv.weight.val().grad(&grads).expect("w")),
                data(bias.grad(&grads).expect("b")),
            ]
        };
        let (folded, plain) = (run(true), run(false));
        for (i, (a, b)) in folded.iter().zip(&plain).enumerate() {
            let d = relative(a, b);
            assert!(d <= 1e-5, "{n}×{c_in}×{h}×{w}: output {i} differs by {d:.2e}");
        }
    }
}

/// flex's element-wise passes run over rayon's threads from 65,536 elements on (vendor
/// burn-flex `bioseg_par.rs`): ReLU and its gradient, a product and a sum (in place and
/// allocating), scalar arithmetic, a channel concatenation and its gradient halves, each on
/// tensors on both sides of that threshold and checked element by element against plain loops.
#[test]
fn element_wise_passes_over_threads_match_plain_loops() {
    let device = Default::default();
    for (n, c, h, w) in [(1, 2, 3, 5), (2, 3, 128, 96), (1, 5, 131, 67)] {
        let len = n * c * h * w;
        let (a, b) = (values(len, 1), values(len, 2));
        let x = leaf([n, c, h, w], 1);
        let y = Tensor::<B, 4>::from_data(TensorData::new(b.clone(), [n, c, h, w]), &device);
        // relu(x) · y + 2·x − 0.5, concatenated with x along channels; gradient of its sum
        // weighted by r.
        let z = burn::tensor::activation::relu(x.clone()) * y.clone() + x.clone().mul_scalar(2.0).sub_scalar(0.5);
        let cat = Tensor::cat(vec![z.clone(), x.clone()], 1);
        let r = values(2 * len, 3);
        let weight = Tensor::<B, 4>::from_data(TensorData::new(r.clone(), [n, 2 * c, h, w]), &device);
        let grads = (cat.clone() * weight).sum().backward();
        let plane = c * h * w;
        let want_z: Vec<f32> = (0..len).map(|i| a[i].max(0.0) * b[i] + (2.0 * a[i] - 0.5)).collect();
        let mut want_cat = Vec::with_capacity(2 * len);
        for img in 0..n {
            want_cat.extend_from_slice(&want_z[img * plane..][..plane]);
            want_cat.extend_from_slice(&a[img * plane..][..plane]);
        }
        // d/dx: through z (relu' · y + 2) times z's half of r, plus x's half of r.
        let want_dx: Vec<f32> = (0..len)
            .map(|i| {
                let (img, j) = (i / plane, i % plane);
                let (rz, rx) = (r[img * 2 * plane + j], r[img * 2 * plane + plane + j]);
                rz * (if a[i] > 0.0 { b[i] } else { 0.0 } + 2.0) + rx
            })
            .collect();
        assert_eq!(data(z.inner()), want_z, "{n}×{c}×{h}×{w}: relu · y + 2x − 0.5");
        assert_eq!(data(cat.inner()), want_cat, "{n}×{c}×{h}×{w}: concatenation");
        let dx = data(x.grad(&grads).expect("x has a gradient"));
        let d = relative(&dx, &want_dx);
        assert!(d <= 1e-6, "{n}×{c}×{h}×{w}: gradient differs by {d:.2e}");
    }
}

/// Binary operations on views whose last axis is contiguous, one operand broadcast along the
/// outer axes (the loss's per-class sums' gradients) or a channel slice, run run by run over
/// the threads (`bioseg_par::zip_runs`): element for element the plain loop's values.
#[test]
fn broadcast_and_sliced_binary_operations_match_plain_loops() {
    let device = Default::default();
    for (n, c, h, w) in [(1, 2, 3, 5), (2, 2, 256, 256), (3, 4, 67, 129)] {
        let len = n * c * h * w;
        let (a, b) = (values(len, 4), values(c * w, 5));
        let x = Tensor::<B, 4>::from_data(TensorData::new(a.clone(), [n, c, h, w]), &device);
        let y = Tensor::<B, 4>::from_data(TensorData::new(b.clone(), [1, c, 1, w]), &device);
        let want: Vec<f32> = (0..len).map(|i| a[i] * b[(i / (h * w) % c) * w + i % w]).collect();
        assert_eq!(data((x.clone() * y.clone().expand([n, c, h, w])).inner()), want, "{n}×{c}×{h}×{w}: broadcast");
        // A channel slice (not contiguous across images) minus a broadcast row.
        let top = c / 2 + 1;
        let sliced = x.slice([0..n, 0..top, 0..h, 0..w]) - y.slice([0..1, 0..top, 0..1, 0..w]).expand([n, top, h, w]);
        let want: Vec<f32> = (0..n * top * h * w)
            .map(|i| {
                let (img, ch, row, col) = (i / (top * h * w), i / (h * w) % top, i / w % h, i % w);
                a[((img * c + ch) * h + row) * w + col] - b[ch * w + col]
            })
            .collect();
        assert_eq!(data(sliced.inner()), want, "{n}×{c}×{h}×{w}: slice minus broadcast");
    }
}
