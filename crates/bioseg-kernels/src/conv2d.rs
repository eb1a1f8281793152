//! Convolutions for training: NCHW f32, forward, data, weight and bias gradients, and the
//! transposed convolution, each spread over the cores (rayon) inside the call.
//!
//! Design (measured reasons in BENCHMARKS.md, "CPU training"): everything is im2col/col2im over
//! blocks of output pixels plus one `gemm` product per block, so a step's time is in the
//! matrix kernels rather than in index arithmetic or strided copies:
//! - forward: per (image, block), `Y[block, c_out] = cols[block, K+1] × Wᵀ[K+1, c_out]`, the
//!   bias folded in as a row of ones;
//! - data gradient, stride 1: the forward kernel run on the output gradient with the kernel
//!   flipped and transposed (a "full" convolution: no scatter, no zero-filled buffer);
//!   stride > 1: `cols = Wᵀ × dY` then col2im, one image's group of channels per task;
//! - weight gradient: one product over all N·H·W pixels, `dWᵀ[K, c_out] += cols[K, block] ×
//!   dYᵀ[block, c_out]`, blocks spread over threads with one partial sum per thread, or, for
//!   512 output channels and more (and layers with fewer pixels than channels per thread), K
//!   shared out between the threads over large chunks of pixels;
//! - bias gradient: per-channel sums.
//!
//! Blocks are sized so that a column block stays within half a MiB (in L2), in multiples of 64
//! pixels (the microkernels' height).
//!
//! Stride-1 and stride-2 layers reading 8–64 channels and writing whole vectors of 16 skip all
//! of this on AVX-512 machines: their forward pass, data gradient and (3-wide kernels) weight
//! gradient run on the direct kernels of `direct.rs` (no im2col, no packing, no col2im; the
//! reasons are measured there).

use std::cell::RefCell;

use rayon::prelude::*;

use crate::direct::{self, Direct, kernel_weights};
use crate::error::KernelError;
use crate::gemm::{SendPtr, grow, product, product_acc};
use crate::geometry::Conv2dGeometry;
use crate::im2col::{Taps, col2im_block, im2col_block};
use crate::input::{ConvInput, channel_lookup};

/// Values per column block (512 KiB of f32).
const COLS_BUDGET: usize = 128 * 1024;

/// Values per column block of a weight gradient (2 MiB of f32, up to 4096 pixels): each product
/// adds into the whole `K × c_out` partial sum, so deeper blocks rewrite it less often
/// (measured, 64 start filters at 512²: 128→128 3×3 at 256² 159 → 182 GFLOP/s, 256→128 at 256²
/// 170 → 192, 64→64 at 512² 147 → 155; the 16-filter layers unchanged).
const WEIGHT_GRADIENT_COLS_BUDGET: usize = 4 * COLS_BUDGET;

/// Values per chunk of columns when the threads share out K (16 MiB of f32, half the L3 cache).
const K_SPLIT_COLS_BUDGET: usize = 4 << 20;

/// Fewest output channels for which a weight gradient's threads share out K rather than the
/// pixels (as do layers with more output channels per thread than pixels). Measured, GFLOP/s,
/// 64 start filters at 512², partial sums → K shared: 256→512 at 64² 162 → 191, 1024→512 at
/// 64² 163 → 194, 1024→1024 at 32² 73 → 165; but 256→256 at 128² 189 → 167 and 128→128 at
/// 32² 166 → 108.
const K_SPLIT_CHANNELS: usize = 512;

/// Output pixels per block for column blocks of `rows` rows over `pixels` output pixels: within
/// [`COLS_BUDGET`] and 1024 pixels.
fn block_pixels(rows: usize, pixels: usize) -> usize {
    block_pixels_within(rows, pixels, COLS_BUDGET, 1024)
}

/// Output pixels per block: within `budget` values and `max` pixels (at least 64), then evened
/// out over the blocks an image needs, in multiples of 64 (the height of the gemm microkernels:
/// a 224-pixel block ran its last 32 rows in a half-empty kernel).
fn block_pixels_within(rows: usize, pixels: usize, budget: usize, max: usize) -> usize {
    let most = (budget / rows.max(1)).clamp(64, max) / 64 * 64;
    let blocks = pixels.div_ceil(most).max(1);
    pixels.div_ceil(blocks).next_multiple_of(64).min(most)
}

/// Fewest output channels for which a weight gradient's sums are kept in `dw`'s own `[c_out, K]`
/// layout (64 contiguous rows of K per microkernel store) rather than `[K, c_out]` (64 rows
/// c_out apart: a page each for 1024 channels). Below it the `gemm` crate turns the product
/// round and runs c_out as its short side. Measured (GFLOP/s, `[K, c_out]` → `[c_out, K]`):
/// 1024→1024 3×3 at 16² 20 → 43, 512→1024 71 → 126, 256→256 121 → 154, but 128→128 158 → 78,
/// 16→16 127 → 79.
const DIRECT_LAYOUT_CHANNELS: usize = 256;

/// The forward convolution `g` of `x` as the direct kernel runs it.
fn direct_forward<'a>(g: &Conv2dGeometry, x: &'a [f32]) -> Direct<'a> {
    Direct {
        x: x.into(),
        batch: g.batch,
        c_in: g.c_in,
        in_hw: g.in_hw,
        pad: g.padding,
        kernel: g.kernel,
        stride: g.stride[0],
        c_out: g.c_out,
        out_hw: g.out_hw,
    }
}

/// Stride and dilation 1: what the direct kernels run for every pass.
fn unit_steps(g: &Conv2dGeometry) -> bool {
    g.stride == [1, 1] && g.dilation == [1, 1]
}

/// Dilation 1 and one of [`direct::STRIDES`] on both axes: what the direct kernels run forward
/// and for the weight gradient.
fn direct_steps(g: &Conv2dGeometry) -> bool {
    g.stride[0] == g.stride[1] && direct::STRIDES.contains(&g.stride[0]) && g.dilation == [1, 1]
}

/// Splits `tasks` tasks into one contiguous range per thread (fewer when there are fewer
/// tasks), so a reduction keeps one partial sum per thread.
fn per_thread(tasks: usize) -> Vec<std::ops::Range<usize>> {
    let parts = rayon::current_num_threads().min(tasks).max(1);
    (0..parts).map(|p| p * tasks / parts..(p + 1) * tasks / parts).collect()
}

thread_local! {
    /// Each thread's column block, reused across calls.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A batch of channels-first images.
#[derive(Clone, Copy)]
struct Planes<'a> {
    data: &'a [f32],
    batch: usize,
    channels: usize,
    hw: [usize; 2],
}

/// `y[n, o, ·] = Σ taps of x[n] × wmat[o, ·]` for every image, with `wmat` as `[c_out, K + 1]`
/// rows ending with the bias (K = channels × taps), blocks of pixels spread over threads; then
/// `max(·, 0)` on each block when `relu`.
fn im2col_gemm(x: Planes, taps: &Taps, out_hw: [usize; 2], wmat: &[f32], c_out: usize, relu: bool, y: &mut [f32]) {
    let Planes { data, batch, channels, hw: [h, w] } = x;
    let k = channels * taps.per_channel();
    let pixels = out_hw[0] * out_hw[1];
    let block = block_pixels(k + 1, pixels);
    let blocks = pixels.div_ceil(block);
    let lookup = channel_lookup(&[channels]);
    let y = SendPtr(y.as_mut_ptr());
    (0..batch * blocks).into_par_iter().for_each(|t| {
        let (n, b) = (t / blocks, t % blocks);
        let (q0, m) = (b * block, block.min(pixels - b * block));
        let image =
            ConvInput::new(vec![(&data[n * channels * h * w..][..channels * h * w], channels)], &lookup, (h, w), false);
        COLS.with(|cols| {
            let mut cols = cols.borrow_mut();
            let cols = grow(&mut cols, (k + 1) * block);
            im2col_block(&image, channels, (h, w), taps, out_hw[1], (q0, m), cols, block);
            cols[k * block..][..m].fill(1.0);
            // SAFETY: dst is pixels q0..q0+m (stride 1) of the c_out channels (stride `pixels`)
            // of image n: inside y, and disjoint between tasks; lhs is m × (k+1) with column
            // stride `block` inside cols; rhs is (k+1) × c_out with column stride k+1 = wmat.
            unsafe {
                let dst = y.get().add(n * c_out * pixels + q0);
                product([m, c_out, k + 1], (dst, pixels, 1), (cols.as_ptr(), block, 1), (wmat.as_ptr(), k + 1, 1));
                if relu {
                    for o in 0..c_out {
                        let row = std::slice::from_raw_parts_mut(dst.add(o * pixels), m);
                        row.iter_mut().for_each(|v| *v = v.max(0.0));
                    }
                }
            }
        });
    });
}

/// `[c_out, K]` weights with a bias column appended: `[c_out, K + 1]`. The product reads it
/// column by column, sequentially along K (measured: a row-major `[K + 1, c_out]` copy, read 6
/// values per step one row of c_out apart, ran the 1024-channel 16² layer at 47 instead of
/// 99 GFLOP/s).
fn with_bias(weight: &[f32], c_out: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let k = weight.len() / c_out;
    let mut wmat = Vec::with_capacity(c_out * (k + 1));
    for o in 0..c_out {
        wmat.extend_from_slice(&weight[o * k..][..k]);
        wmat.push(bias.map_or(0.0, |b| b[o]));
    }
    wmat
}

/// Forward pass: `y = conv(x, weight) + bias`.
pub fn conv2d_forward(
    g: &Conv2dGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), KernelError> {
    forward(g, x, weight, bias, false, y)
}

/// Forward pass with a ReLU: `y = max(conv(x, weight) + bias, 0)` (a NaN gives 0, as a
/// separate ReLU pass would). The maximum is taken while each block of `y` is still in cache,
/// which saves the separate pass over the layer's output (`bioseg-train`'s U-Net: 23 ReLU
/// passes, 7.6 ms of an F=16 step).
pub fn conv2d_forward_relu(
    g: &Conv2dGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), KernelError> {
    forward(g, x, weight, bias, true, y)
}

/// [`conv2d_forward`], with a ReLU when `relu`.
fn forward(
    g: &Conv2dGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
) -> Result<(), KernelError> {
    g.check("input", x.len(), g.input_len())?;
    g.check("weights", weight.len(), g.weight_len())?;
    g.check("output", y.len(), g.output_len())?;
    if let Some(b) = bias {
        g.check("bias", b.len(), g.c_out)?;
    }
    if direct_steps(g) && direct::pays(g.c_in, g.c_out) {
        let weights = kernel_weights(weight, g.c_out, g.c_in, g.kernel, false);
        let conv = direct_forward(g, x);
        conv.run(&weights, bias, relu, y);
        return Ok(());
    }
    let wmat = with_bias(weight, g.c_out, bias);
    let planes = Planes { data: x, batch: g.batch, channels: g.c_in, hw: g.in_hw };
    im2col_gemm(planes, &g.taps(), g.out_hw, &wmat, g.c_out, relu, y);
    Ok(())
}

/// Data gradient: `dx = ∂(Σ dy·y)/∂x` (the transposed convolution of `dy`); overwrites `dx`.
pub fn conv2d_backward_data(g: &Conv2dGeometry, weight: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<(), KernelError> {
    g.check("weights", weight.len(), g.weight_len())?;
    g.check("output gradient", dy.len(), g.output_len())?;
    g.check("input gradient", dx.len(), g.input_len())?;
    data_gradient(g, weight, dy, None, dx);
    Ok(())
}

/// [`conv2d_backward_data`] plus `bias` per channel of `dx` (lengths checked by the callers):
/// the transposed convolution forward.
fn data_gradient(g: &Conv2dGeometry, weight: &[f32], dy: &[f32], bias: Option<&[f32]>, dx: &mut [f32]) {
    let [kh, kw] = g.kernel;
    let (c_in, c_out) = (g.c_in, g.c_out);
    if unit_steps(g) && direct::pays(c_out, c_in) && (0..2).all(|a| g.padding[a] < g.kernel[a]) {
        // The "full" convolution below, by the direct kernel.
        let weights = kernel_weights(weight, c_in, c_out, g.kernel, true);
        let conv = Direct {
            x: dy.into(),
            batch: g.batch,
            c_in: c_out,
            in_hw: g.out_hw,
            pad: [0, 1].map(|a| g.kernel[a] - 1 - g.padding[a]),
            kernel: g.kernel,
            stride: 1,
            c_out: c_in,
            out_hw: g.in_hw,
        };
        conv.run(&weights, bias, false, dx);
        return;
    }
    if direct::pays(c_out, c_in)
        && let Some(phases) = Direct::phases(g, dy)
    {
        phases.run(weight, bias, dx);
        return;
    }
    if g.stride == [1, 1] {
        // dx[c, y] = Σ_{o, i} W[o, c, kh−1−i] · dy[o, y + p − d·(kh−1) + d·i]: a convolution of
        // dy with the kernel flipped and its channel axes swapped, reading d·(k−1) − p beyond
        // dy's border.
        // Row c: the kernel flipped for every o, then the bias (times the row of ones); rows
        // over the threads (serial, the loops held ~1 % of a U-Net step on the calling thread).
        let k = c_out * kh * kw;
        let mut wmat = vec![0f32; c_in * (k + 1)];
        wmat.par_chunks_mut(k + 1).enumerate().for_each(|(c, row)| {
            for o in 0..c_out {
                for ry in 0..kh {
                    for rx in 0..kw {
                        row[(o * kh + ry) * kw + rx] = weight[((o * c_in + c) * kh + kh - 1 - ry) * kw + kw - 1 - rx];
                    }
                }
            }
            row[k] = bias.map_or(0.0, |b| b[c]);
        });
        let taps = Taps {
            origin: [0, 1].map(|a| g.padding[a] as isize - (g.dilation[a] * (g.kernel[a] - 1)) as isize),
            kernel: g.kernel,
            stride: [1, 1],
            dilation: g.dilation,
        };
        let planes = Planes { data: dy, batch: g.batch, channels: c_out, hw: g.out_hw };
        im2col_gemm(planes, &taps, g.in_hw, &wmat, c_in, false, dx);
        return;
    }
    // Strided: cols = Wᵀ × dy per block, added back onto the input positions (col2im). Blocks
    // of one image overlap in dx, so a task is one image's group of input channels (their
    // rows of cols, their planes of dx), its blocks in sequence.
    let taps = g.taps();
    let per_channel = kh * kw;
    let pixels = g.out_hw[0] * g.out_hw[1];
    let plane = g.in_hw[0] * g.in_hw[1];
    let groups = (2 * rayon::current_num_threads()).div_ceil(g.batch).clamp(1, c_in);
    let group = c_in.div_ceil(groups);
    dx.par_chunks_mut(c_in * plane).enumerate().for_each(|(n, dx)| {
        dx.par_chunks_mut(group * plane).enumerate().for_each(|(gi, dx)| {
            dx.fill(0.0);
            let channels = dx.len() / plane;
            let k = channels * per_channel;
            let block = block_pixels(k, pixels);
            COLS.with(|cols| {
                let mut cols = cols.borrow_mut();
                let cols = grow(&mut cols, k * block);
                let mut q0 = 0;
                while q0 < pixels {
                    let m = block.min(pixels - q0);
                    // SAFETY: dst is m × k (column stride `block`) inside cols; lhs is dy's
                    // pixels q0..q0+m of image n (m × c_out, column stride `pixels`); rhs is
                    // this group's columns of W read as c_out × k (row stride c_in·kh·kw).
                    unsafe {
                        let lhs = dy.as_ptr().add(n * c_out * pixels + q0);
                        let rhs = weight.as_ptr().add(gi * group * per_channel);
                        product(
                            [m, k, c_out],
                            (cols.as_mut_ptr(), block, 1),
                            (lhs, pixels, 1),
                            (rhs, 1, c_in * per_channel),
                        );
                    }
                    col2im_block(cols, block, channels, (g.in_hw[0], g.in_hw[1]), &taps, g.out_hw[1], (q0, m), dx);
                    q0 += m;
                }
            });
            if let Some(b) = bias {
                for (c, plane) in dx.chunks_exact_mut(plane).enumerate() {
                    let v = b[gi * group + c];
                    plane.iter_mut().for_each(|p| *p += v);
                }
            }
        });
    });
}

/// Weight gradient: `dw = Σ_{n, pixels} dy ⊗ taps of x` (one product over all N·H·W pixels,
/// per-thread partial sums); overwrites `dw`.
///
/// The product is `dwᵀ[K, c_out] += cols[K, block] × dyᵀ[block, c_out]`, K first: the gemm
/// microkernels are 64 rows tall, and K = c_in·kh·kw is the taller side in a U-Net (measured:
/// the `[c_out, K]` orientation ran the 2×2 up-convolutions' gradients at 40 GFLOP/s instead of
/// 110, the 3×3 ones at 108 instead of 119), summed in the layout [`DIRECT_LAYOUT_CHANNELS`]
/// chooses.
pub fn conv2d_backward_weight(g: &Conv2dGeometry, x: &[f32], dy: &[f32], dw: &mut [f32]) -> Result<(), KernelError> {
    g.check("input", x.len(), g.input_len())?;
    g.check("output gradient", dy.len(), g.output_len())?;
    g.check("weight gradient", dw.len(), g.weight_len())?;
    if direct_steps(g) && direct::pays_weight_gradient(g.c_in, g.c_out, g.kernel[1]) {
        let conv = direct_forward(g, x);
        conv.weight_gradient(dy, dw);
        return Ok(());
    }
    let k_split =
        g.c_out >= K_SPLIT_CHANNELS || g.c_out * rayon::current_num_threads() >= g.batch * g.out_hw[0] * g.out_hw[1];
    weight_gradient(g, x, dy, dw, k_split.then_some(K_SPLIT_COLS_BUDGET));
    Ok(())
}

/// [`conv2d_backward_weight`] by either strategy: the threads sharing out K over chunks of
/// `k_split` column values ([`weight_gradient_k_split`]) or per-thread partial sums over blocks
/// of pixels ([`weight_gradient_partial_sums`]) when `None`.
fn weight_gradient(g: &Conv2dGeometry, x: &[f32], dy: &[f32], dw: &mut [f32], k_split: Option<usize>) {
    let (k, c_out) = (g.c_in * g.kernel[0] * g.kernel[1], g.c_out);
    // The sums' layout: `[K, c_out]` row-major, transposed at the end, or straight in dw's
    // `[c_out, K]` layout (see the function's documentation).
    let direct = c_out >= DIRECT_LAYOUT_CHANNELS;
    let strides = if direct { (k, 1) } else { (1, c_out) };
    let sums = if let Some(budget) = k_split {
        let mut sums = if direct { None } else { Some(vec![0f32; k * c_out]) };
        weight_gradient_k_split(g, x, dy, strides, sums.as_deref_mut().unwrap_or(dw), budget);
        sums
    } else {
        match weight_gradient_partial_sums(g, x, dy, strides) {
            Some(s) if direct => {
                dw.copy_from_slice(&s);
                None
            }
            None => {
                dw.fill(0.0);
                None
            }
            s => s,
        }
    };
    if let Some(s) = sums {
        transpose_into(&s, k, c_out, dw);
    }
}

/// The weight gradient's sums (`[K, c_out]` with strides `(cs, rs)`), one partial sum per
/// thread over its blocks of pixels (a partial sum per rayon split cost as much zeroing and
/// adding as the products themselves on the 16×16 layers); `None` without pixels.
fn weight_gradient_partial_sums(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    (cs, rs): (usize, usize),
) -> Option<Vec<f32>> {
    let [h, w] = g.in_hw;
    let (c_in, c_out) = (g.c_in, g.c_out);
    let k = c_in * g.kernel[0] * g.kernel[1];
    let pixels = g.out_hw[0] * g.out_hw[1];
    let taps = g.taps();
    let block = block_pixels_within(k, pixels, WEIGHT_GRADIENT_COLS_BUDGET, 4096);
    let blocks = pixels.div_ceil(block);
    let lookup = channel_lookup(&[c_in]);
    per_thread(g.batch * blocks)
        .into_par_iter()
        .map(|tasks| {
            let mut acc = vec![0f32; c_out * k];
            for t in tasks {
                let (n, b) = (t / blocks, t % blocks);
                let (q0, m) = (b * block, block.min(pixels - b * block));
                let image =
                    ConvInput::new(vec![(&x[n * c_in * h * w..][..c_in * h * w], c_in)], &lookup, (h, w), false);
                COLS.with(|cols| {
                    let mut cols = cols.borrow_mut();
                    let cols = grow(&mut cols, k * block);
                    im2col_block(&image, c_in, (h, w), &taps, g.out_hw[1], (q0, m), cols, block);
                    // SAFETY: acc is k × c_out (strides cs, rs, inside it); dy's pixels
                    // q0..q0+m of image n are c_out × m with row stride `pixels`; the column
                    // block is k × m with row stride `block`: all inside their buffers.
                    unsafe {
                        let dy = dy.as_ptr().add(n * c_out * pixels + q0);
                        product_acc(
                            [k, c_out, m],
                            (acc.as_mut_ptr(), cs, rs),
                            (cols.as_ptr(), 1, block),
                            (dy, pixels, 1),
                            true,
                        );
                    }
                });
            }
            acc
        })
        .reduce_with(|mut a, b| {
            a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
            a
        })
}

/// The weight gradient's sums, `[K, c_out]` with strides `(cs, rs)` in `dst`, with the threads
/// sharing out K instead of the pixels: for chunks of pixels (columns of at most `cols_budget`
/// values, at least 64 pixels), the columns first (one task per input channel), then one
/// product over the chunk per block of K rows, added into `dst`; no thread keeps a partial sum
/// of the whole gradient (measured: 1024→1024 3×3 at 32², batch 1: per-thread sums of
/// 9216 × 1024 values, rewritten every 64 pixels, ran at 73 GFLOP/s, this at 165).
fn weight_gradient_k_split(
    g: &Conv2dGeometry,
    x: &[f32],
    dy: &[f32],
    (cs, rs): (usize, usize),
    dst: &mut [f32],
    cols_budget: usize,
) {
    let [h, w] = g.in_hw;
    let (c_in, c_out) = (g.c_in, g.c_out);
    let per_channel = g.kernel[0] * g.kernel[1];
    let k = c_in * per_channel;
    let pixels = g.out_hw[0] * g.out_hw[1];
    let chunk = (cols_budget / k).max(64).min(pixels.max(1));
    let taps = g.taps();
    let lookup = channel_lookup(&[1]);
    // Blocks of K rows (multiples of 64, the microkernels' height), a few per thread.
    let tasks = 4 * rayon::current_num_threads();
    let rows = k.div_ceil(tasks).next_multiple_of(64);
    let mut cols = vec![0f32; k * chunk.min(pixels)];
    let dst = SendPtr(dst.as_mut_ptr());
    for n in 0..g.batch {
        for q0 in (0..pixels).step_by(chunk) {
            let m = chunk.min(pixels - q0);
            // cols[kk, j]: tap kk of pixel q0 + j of image n.
            cols[..k * m].par_chunks_mut(per_channel * m).enumerate().for_each(|(c, rows)| {
                let plane = &x[(n * c_in + c) * h * w..][..h * w];
                let image = ConvInput::new(vec![(plane, 1)], &lookup, (h, w), false);
                im2col_block(&image, 1, (h, w), &taps, g.out_hw[1], (q0, m), rows, m);
            });
            let first = n == 0 && q0 == 0;
            (0..k.div_ceil(rows)).into_par_iter().for_each(|t| {
                let (k0, kn) = (t * rows, rows.min(k - t * rows));
                // SAFETY: dst rows k0..k0+kn (row stride rs, column stride cs) of the k × c_out
                // sums are this task's alone; lhs is rows k0.. of the chunk's columns (kn × m,
                // row stride m); rhs is image n's dy at pixels q0.. read as m × c_out.
                unsafe {
                    product_acc(
                        [kn, c_out, m],
                        (dst.get().add(k0 * rs), cs, rs),
                        (cols.as_ptr().add(k0 * m), 1, m),
                        (dy.as_ptr().add(n * c_out * pixels + q0), pixels, 1),
                        !first,
                    );
                }
            });
        }
    }
}

/// `dst[o, kk] = src[kk, o]` for a `k × c_out` source, in 32 × 32 tiles (element by element it
/// missed the cache on every read for the 1024-channel layers).
fn transpose_into(src: &[f32], k: usize, c_out: usize, dst: &mut [f32]) {
    const T: usize = 32;
    for o0 in (0..c_out).step_by(T) {
        for k0 in (0..k).step_by(T) {
            for o in o0..(o0 + T).min(c_out) {
                for kk in k0..(k0 + T).min(k) {
                    dst[o * k + kk] = src[kk * c_out + o];
                }
            }
        }
    }
}

/// Per-channel sums of `batch` images of `channels` planes of `pixels` values: the bias
/// gradient of a convolution (`data` = dy) or of a transposed convolution.
pub fn channel_sums(
    data: &[f32],
    batch: usize,
    channels: usize,
    pixels: usize,
    out: &mut [f32],
) -> Result<(), KernelError> {
    if data.len() != batch * channels * pixels {
        return Err(KernelError::Length { what: "gradient", got: data.len(), expected: batch * channels * pixels });
    }
    if out.len() != channels {
        return Err(KernelError::Length { what: "bias gradient", got: out.len(), expected: channels });
    }
    out.par_iter_mut().enumerate().for_each(|(c, out)| {
        *out = (0..batch).map(|n| sum(&data[(n * channels + c) * pixels..][..pixels])).sum();
    });
    Ok(())
}

/// A sum in 16 lanes (vectorised by the compiler; its order is fixed, so results repeat).
fn sum(v: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (l, x) in lanes.iter_mut().zip(c) {
            *l += x;
        }
    }
    lanes.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Bias gradient of a convolution: `db[o] = Σ_{n, pixels} dy[n, o, ·]`.
pub fn conv2d_backward_bias(g: &Conv2dGeometry, dy: &[f32], db: &mut [f32]) -> Result<(), KernelError> {
    channel_sums(dy, g.batch, g.c_out, g.out_hw[0] * g.out_hw[1], db)
}

/// Transposed convolution `y = convᵀ(x, weight) + bias`, with `g` from
/// [`Conv2dGeometry::transposed`] (`x` is its output, `y` its input; weights
/// `[c_in_t, c_out_t, kh, kw]`).
pub fn conv_transpose2d_forward(
    g: &Conv2dGeometry,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
) -> Result<(), KernelError> {
    g.check("weights", weight.len(), g.weight_len())?;
    g.check("input", x.len(), g.output_len())?;
    g.check("output", y.len(), g.input_len())?;
    if let Some(b) = bias {
        g.check("bias", b.len(), g.c_in)?;
    }
    data_gradient(g, weight, x, bias, y);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both weight-gradient strategies agree, in both sum layouts, whichever one the geometry
    /// would choose (the public reference tests reach each only through that choice).
    #[test]
    fn weight_gradient_strategies_agree() {
        for (batch, c_in, c_out, hw, kernel, stride, padding) in [
            (2, 3, 5, 9, 3, 1, 1),
            (1, 4, 300, 6, 3, 2, 0),
            (3, 2, 7, 17, 2, 1, 0),
            (2, 3, 4, 20, 3, 1, 1),
            (1, 8, 256, 3, 1, 1, 2),
        ] {
            let g =
                Conv2dGeometry::new(batch, c_in, [hw, hw + 1], c_out, [kernel; 2], [stride; 2], [padding; 2], [1, 1])
                    .expect("a valid geometry");
            let x: Vec<f32> = (0..g.input_len()).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
            let dy: Vec<f32> = (0..g.output_len()).map(|i| ((i * 104_729) % 19) as f32 / 9.0 - 1.0).collect();
            let mut sums = vec![1f32; g.weight_len()];
            weight_gradient(&g, &x, &dy, &mut sums, None);
            assert!(sums.iter().any(|&v| v != 0.0), "{g:?}: an all-zero gradient proves nothing");
            let scale = sums.iter().fold(1f32, |m, v| m.max(v.abs()));
            // All pixels in one chunk, and chunks of 64 pixels with a shorter last one.
            let k = g.c_in * kernel * kernel;
            for budget in [K_SPLIT_COLS_BUDGET, 64 * k] {
                let mut split = vec![1f32; g.weight_len()];
                weight_gradient(&g, &x, &dy, &mut split, Some(budget));
                let worst = split.iter().zip(&sums).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
                assert!(worst <= 1e-5 * scale, "{g:?}, budget {budget}: strategies differ by {worst}");
            }
        }
    }
}
