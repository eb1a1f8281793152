//! bioseg: f32 NCHW convolutions (forward, data, weight and bias gradients, transposed),
//! max pooling with indices and its gradient, and whole-factor nearest up-sampling and its
//! gradient on `bioseg-kernels` (vendor/README.md gives the measured reasons).
//!
//! Each function returns `None` when the request is outside what the kernels run (another
//! dtype, groups, padding or dilation in pooling, a fractional up-sampling factor) or when the
//! kernels are switched off; `module.rs` then runs flex's own code, unchanged.
//!
//! Profiling: [`set_profiling`] and [`profile`] time each kernel call (by kind, kernel size and
//! pass; `bioseg-train bench --profile`).
//!
//! Switch: the environment variable `BIOSEG_FLEX_KERNELS=0` at start, or [`set_enabled`] (the
//! equivalence tests and `bioseg-train bench --flex-kernels` compare both paths in one process).

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use bioseg_kernels as k;
use burn_backend::DType;
use burn_backend::TensorMetadata;
use burn_backend::ops::{ConvOptions, ConvTransposeOptions, InterpolateMode, InterpolateOptions};
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// 0: not yet read from the environment, 1: on, 2: off.
static STATE: AtomicU8 = AtomicU8::new(0);

/// Whether the bioseg kernels are used (default: yes, unless `BIOSEG_FLEX_KERNELS=0`).
pub fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("BIOSEG_FLEX_KERNELS").map_or(true, |v| v != "0");
            STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        s => s == 1,
    }
}

/// Use (or stop using) the bioseg kernels from now on, in the whole process.
pub fn set_enabled(on: bool) {
    STATE.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Per-operation time of the kernels, collected while [`set_profiling`] is on: name →
/// (calls, seconds, multiply-adds).
static PROFILE: std::sync::Mutex<alloc::collections::BTreeMap<alloc::string::String, (u64, f64, u64)>> =
    std::sync::Mutex::new(alloc::collections::BTreeMap::new());
static PROFILING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Start (clearing what was collected) or stop collecting per-operation times.
pub fn set_profiling(on: bool) {
    if on {
        PROFILE.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
    PROFILING.store(on, Ordering::Relaxed);
}

/// What was collected: (operation, calls, seconds, multiply-adds), by operation name.
pub fn profile() -> Vec<(alloc::string::String, u64, f64, u64)> {
    let p = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    p.iter().map(|(k, &(n, t, m))| (k.clone(), n, t, m)).collect()
}

/// Runs `f`, adding its time to `name` when profiling (`macs`: its multiply-adds, 0 for none).
fn timed<T>(name: impl FnOnce() -> alloc::string::String, macs: usize, f: impl FnOnce() -> T) -> T {
    if !PROFILING.load(Ordering::Relaxed) {
        return f();
    }
    let t0 = std::time::Instant::now();
    let out = f();
    let dt = t0.elapsed().as_secs_f64();
    let mut p = PROFILE.lock().unwrap_or_else(|e| e.into_inner());
    let e = p.entry(name()).or_insert((0, 0.0, 0));
    *e = (e.0 + 1, e.1 + dt, e.2 + macs as u64);
    out
}

/// Runs one of flex's own element-wise operations, timed under `name` when profiling (the
/// per-operation table's element-wise rows).
pub(crate) fn timed_op<T>(name: &'static str, f: impl FnOnce() -> T) -> T {
    timed(|| name.into(), 0, f)
}

/// "conv 3×3 forward"-style names.
fn op_name(kind: &str, g: &k::Conv2dGeometry, pass: &str) -> alloc::string::String {
    alloc::format!("{kind} {}x{} {pass}", g.kernel[0], g.kernel[1])
}

/// The four dimensions of an f32 tensor of rank 4 (None for anything else, or when switched off).
fn dims4(t: &FlexTensor) -> Option<[usize; 4]> {
    let s = t.shape();
    (t.dtype() == DType::F32 && s.num_dims() == 4).then(|| [s[0], s[1], s[2], s[3]])
}

fn dims1(t: &FlexTensor) -> Option<usize> {
    let s = t.shape();
    (t.dtype() == DType::F32 && s.num_dims() == 1).then(|| s[0])
}

/// The tensor's values in row-major order (a copy only when it is a strided view).
fn values(t: &FlexTensor) -> FlexTensor {
    t.to_contiguous()
}

/// A buffer of `n` values for a kernel's output, not zeroed: every `bioseg_kernels` function
/// this module passes it to writes each element before anything reads it (their contracts),
/// so zeroing it first was a wasted pass over memory (flex's `copy_contiguous` does the same).
fn output<E: bytemuck::Pod>(n: usize) -> Vec<E> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `E` is plain data (any bit pattern is a value) and the kernel overwrites all `n`
    // elements before the buffer is read; see above.
    #[allow(clippy::uninit_vec)]
    unsafe {
        v.set_len(n)
    };
    v
}

fn tensor<E: bytemuck::Pod + Send + Sync>(shape: &[usize], data: Vec<E>, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape.to_vec())), dtype)
}

fn float(shape: &[usize], data: Vec<f32>) -> FlexTensor {
    tensor(shape, data, DType::F32)
}

/// A bias's values: `Some(None)` without a bias, `None` (flex's code then runs) when it is not
/// an f32 vector of `channels` values.
fn bias_values(bias: Option<&FlexTensor>, channels: usize) -> Option<Option<FlexTensor>> {
    match bias {
        Some(b) if dims1(b) == Some(channels) => Some(Some(values(b))),
        Some(_) => None,
        None => Some(None),
    }
}

/// The convolution geometry of `conv2d(x, weight)` (one group).
fn conv_geometry(x: [usize; 4], w: [usize; 4], o: &ConvOptions<2>) -> Option<k::Conv2dGeometry> {
    if !enabled() || o.groups != 1 || x[1] != w[1] {
        return None;
    }
    k::Conv2dGeometry::new(x[0], x[1], [x[2], x[3]], w[0], [w[2], w[3]], o.stride, o.padding, o.dilation).ok()
}

/// The convolution geometry whose data gradient is `conv_transpose2d(x, weight)`, `x` being
/// `[batch, c_in, h, w]` and the weights `[c_in, c_out, kh, kw]`.
fn transposed_geometry(x: [usize; 4], w: [usize; 4], o: &ConvTransposeOptions<2>) -> Option<k::Conv2dGeometry> {
    if !enabled() || o.groups != 1 || x[1] != w[0] {
        return None;
    }
    k::Conv2dGeometry::transposed(x[0], x[1], [x[2], x[3]], w[1], [w[2], w[3]], o.stride, o.padding, o.padding_out, o.dilation)
        .ok()
}

pub(crate) fn conv2d(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>) -> Option<FlexTensor> {
    forward(x, weight, bias, options, false)
}

/// `max(conv2d(x, weight, bias), 0)` in one pass over the output (`bioseg-train`'s fused
/// convolution + ReLU, whose autodiff step lives there); `None` where [`conv2d`] would be, and
/// when the kernels are switched off.
pub fn conv2d_relu(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>) -> Option<FlexTensor> {
    forward(x, weight, bias, options, true)
}

fn forward(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvOptions<2>, relu: bool) -> Option<FlexTensor> {
    let g = conv_geometry(dims4(x)?, dims4(weight)?, options)?;
    let bias = bias_values(bias, g.c_out)?;
    let run = if relu { k::conv2d_forward_relu } else { k::conv2d_forward };
    timed(|| op_name("conv", &g, "forward"), g.macs(), || {
        let (x, weight) = (values(x), values(weight));
        let mut y = output::<f32>(g.output_len());
        run(&g, x.storage(), weight.storage(), bias.as_ref().map(|b| b.storage()), &mut y).ok()?;
        Some(float(&[g.batch, g.c_out, g.out_hw[0], g.out_hw[1]], y))
    })
}

pub(crate) fn conv2d_x_backward(x: &FlexTensor, weight: &FlexTensor, dy: &FlexTensor, options: &ConvOptions<2>) -> Option<FlexTensor> {
    let xs = dims4(x)?;
    let g = conv_geometry(xs, dims4(weight)?, options)?;
    (dims4(dy)? == [g.batch, g.c_out, g.out_hw[0], g.out_hw[1]]).then_some(())?;
    timed(|| op_name("conv", &g, "data gradient"), g.macs(), || {
        let (weight, dy) = (values(weight), values(dy));
        let mut dx = output::<f32>(g.input_len());
        k::conv2d_backward_data(&g, weight.storage(), dy.storage(), &mut dx).ok()?;
        Some(float(&xs, dx))
    })
}

pub(crate) fn conv2d_weight_backward(x: &FlexTensor, weight: &FlexTensor, dy: &FlexTensor, options: &ConvOptions<2>) -> Option<FlexTensor> {
    let ws = dims4(weight)?;
    let g = conv_geometry(dims4(x)?, ws, options)?;
    (dims4(dy)? == [g.batch, g.c_out, g.out_hw[0], g.out_hw[1]]).then_some(())?;
    timed(|| op_name("conv", &g, "weight gradient"), g.macs(), || {
        let (x, dy) = (values(x), values(dy));
        let mut dw = output::<f32>(g.weight_len());
        k::conv2d_backward_weight(&g, x.storage(), dy.storage(), &mut dw).ok()?;
        Some(float(&ws, dw))
    })
}

/// The bias gradient of a convolution or a transposed convolution: per-channel sums of `dy`.
pub(crate) fn bias_backward(bias: &FlexTensor, dy: &FlexTensor) -> Option<FlexTensor> {
    let [n, c, h, w] = dims4(dy)?;
    if !enabled() || dims1(bias)? != c {
        return None;
    }
    timed(|| "bias gradient".into(), 0, || {
        let dy = values(dy);
        let mut db = output::<f32>(c);
        k::channel_sums(dy.storage(), n, c, h * w, &mut db).ok()?;
        Some(float(&[c], db))
    })
}

pub(crate) fn conv_transpose2d(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>, options: &ConvTransposeOptions<2>) -> Option<FlexTensor> {
    let g = transposed_geometry(dims4(x)?, dims4(weight)?, options)?;
    let bias = bias_values(bias, g.c_in)?;
    timed(|| op_name("transposed conv", &g, "forward"), g.macs(), || {
        let (x, weight) = (values(x), values(weight));
        let mut y = output::<f32>(g.input_len());
        k::conv_transpose2d_forward(&g, x.storage(), weight.storage(), bias.as_ref().map(|b| b.storage()), &mut y).ok()?;
        Some(float(&[g.batch, g.c_in, g.in_hw[0], g.in_hw[1]], y))
    })
}

pub(crate) fn conv_transpose2d_x_backward(weight: &FlexTensor, dy: &FlexTensor, options: &ConvTransposeOptions<2>) -> Option<FlexTensor> {
    let [n, c_out, h, w] = dims4(dy)?;
    let ws = dims4(weight)?;
    if !enabled() || options.groups != 1 || ws[1] != c_out {
        return None;
    }
    // The transposed convolution's input gradient is the plain convolution of dy.
    let g = k::Conv2dGeometry::new(n, c_out, [h, w], ws[0], [ws[2], ws[3]], options.stride, options.padding, options.dilation).ok()?;
    timed(|| op_name("transposed conv", &g, "data gradient"), g.macs(), || {
        let (weight, dy) = (values(weight), values(dy));
        let mut dx = output::<f32>(g.output_len());
        k::conv2d_forward(&g, dy.storage(), weight.storage(), None, &mut dx).ok()?;
        Some(float(&[n, g.c_out, g.out_hw[0], g.out_hw[1]], dx))
    })
}

pub(crate) fn conv_transpose2d_weight_backward(
    x: &FlexTensor,
    weight: &FlexTensor,
    dy: &FlexTensor,
    options: &ConvTransposeOptions<2>,
) -> Option<FlexTensor> {
    let ws = dims4(weight)?;
    let g = transposed_geometry(dims4(x)?, ws, options)?;
    (dims4(dy)? == [g.batch, g.c_in, g.in_hw[0], g.in_hw[1]]).then_some(())?;
    // Weight gradient of the convolution from dy (its input) to x (its output).
    timed(|| op_name("transposed conv", &g, "weight gradient"), g.macs(), || {
        let (x, dy) = (values(x), values(dy));
        let mut dw = output::<f32>(g.weight_len());
        k::conv2d_backward_weight(&g, dy.storage(), x.storage(), &mut dw).ok()?;
        Some(float(&ws, dw))
    })
}

/// The pooling geometry when the kernels run it: no padding, dilation 1, and windows that
/// tile the input the same way in floor and ceil mode.
fn pool_geometry(x: [usize; 4], kernel: [usize; 2], stride: [usize; 2], padding: [usize; 2], dilation: [usize; 2], ceil_mode: bool) -> Option<k::Pool2dGeometry> {
    if !enabled() || padding != [0, 0] || dilation != [1, 1] {
        return None;
    }
    let g = k::Pool2dGeometry::new(x[0] * x[1], [x[2], x[3]], kernel, stride).ok()?;
    let exact = (0..2).all(|a| (x[2 + a] - kernel[a]) % stride[a] == 0);
    (!ceil_mode || exact).then_some(g)
}

pub(crate) fn max_pool2d_with_indices(
    x: &FlexTensor,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    ceil_mode: bool,
) -> Option<(FlexTensor, FlexTensor)> {
    let xs = dims4(x)?;
    let g = pool_geometry(xs, kernel, stride, padding, dilation, ceil_mode)?;
    timed(|| "max pool forward".into(), 0, || {
        let x = values(x);
        let out = g.planes * g.out_hw[0] * g.out_hw[1];
        let (mut y, mut idx) = (output::<f32>(out), output::<i64>(out));
        k::max_pool2d_forward(&g, x.storage(), &mut y, &mut idx).ok()?;
        let shape = [xs[0], xs[1], g.out_hw[0], g.out_hw[1]];
        Some((float(&shape, y), tensor(&shape, idx, DType::I64)))
    })
}

/// Routes each output gradient to its window's maximum (`indices` from
/// [`max_pool2d_with_indices`] or flex's own, which use the same positions).
pub(crate) fn max_pool2d_backward(x: &FlexTensor, dy: &FlexTensor, indices: &FlexTensor) -> Option<FlexTensor> {
    let xs = dims4(x)?;
    let ys = dims4(dy)?;
    if !enabled() || indices.dtype() != DType::I64 || indices.shape().dims::<4>() != ys || ys[..2] != xs[..2] {
        return None;
    }
    timed(|| "max pool backward".into(), 0, || {
        let (dy, indices) = (values(dy), values(indices));
        let mut dx = output::<f32>(xs.iter().product());
        k::max_pool2d_backward(xs[0] * xs[1], [xs[2], xs[3]], dy.storage(), indices.storage(), &mut dx).ok()?;
        Some(float(&xs, dx))
    })
}

/// The whole up-sampling factors of a nearest interpolation when they give exactly flex's
/// source pixels (`floor(o · in / out)` in f64).
fn nearest_factors(x: [usize; 4], out: [usize; 2], options: &InterpolateOptions) -> Option<[usize; 2]> {
    if !enabled() || !matches!(options.mode, InterpolateMode::Nearest) {
        return None;
    }
    let f = k::whole_factors([x[2], x[3]], out).ok()?;
    let same = (0..2).all(|a| {
        let ratio = x[2 + a] as f64 / out[a] as f64;
        (0..out[a]).all(|o| ((o as f64 * ratio).floor() as usize).min(x[2 + a] - 1) == o / f[a])
    });
    same.then_some(f)
}

pub(crate) fn interpolate(x: &FlexTensor, out: [usize; 2], options: &InterpolateOptions) -> Option<FlexTensor> {
    let xs = dims4(x)?;
    let f = nearest_factors(xs, out, options)?;
    timed(|| "nearest up-sampling forward".into(), 0, || {
        let x = values(x);
        let mut y = output::<f32>(xs[0] * xs[1] * out[0] * out[1]);
        k::upsample_nearest(xs[0] * xs[1], [xs[2], xs[3]], f, x.storage(), &mut y).ok()?;
        Some(float(&[xs[0], xs[1], out[0], out[1]], y))
    })
}

pub(crate) fn interpolate_backward(x: &FlexTensor, dy: &FlexTensor, out: [usize; 2], options: &InterpolateOptions) -> Option<FlexTensor> {
    let xs = dims4(x)?;
    let f = nearest_factors(xs, out, options)?;
    (dims4(dy)? == [xs[0], xs[1], out[0], out[1]]).then_some(())?;
    timed(|| "nearest up-sampling backward".into(), 0, || {
        let dy = values(dy);
        let mut dx = output::<f32>(xs.iter().product());
        k::upsample_nearest_backward(xs[0] * xs[1], [xs[2], xs[3]], f, dy.storage(), &mut dx).ok()?;
        Some(float(&xs, dx))
    })
}
