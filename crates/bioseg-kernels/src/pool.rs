//! Max pooling for training (NCHW f32, no padding, dilation 1): values and the index of each
//! maximum within its input plane, and the backward pass that routes each output gradient to
//! that index. One task per plane.

use rayon::prelude::*;

use crate::error::KernelError;

/// The shapes of a max pooling of `planes` (= batch × channels) planes of `in_hw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeometry {
    pub planes: usize,
    pub in_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub out_hw: [usize; 2],
}

impl Pool2dGeometry {
    /// Windows that start inside the input and end within it (floor mode, no padding).
    pub fn new(planes: usize, in_hw: [usize; 2], kernel: [usize; 2], stride: [usize; 2]) -> Result<Self, KernelError> {
        if kernel.contains(&0) || stride.contains(&0) {
            return Err(KernelError::Zero("pooling kernel and stride"));
        }
        let mut out_hw = [0; 2];
        for a in 0..2 {
            if kernel[a] > in_hw[a] {
                return Err(KernelError::KernelTooLarge { kernel: kernel[a], input: in_hw[a], padding: 0 });
            }
            out_hw[a] = (in_hw[a] - kernel[a]) / stride[a] + 1;
        }
        Ok(Pool2dGeometry { planes, in_hw, kernel, stride, out_hw })
    }

    fn lens(&self) -> (usize, usize) {
        (self.in_hw[0] * self.in_hw[1], self.out_hw[0] * self.out_hw[1])
    }
}

/// `y` = the maximum of each window, `indices` = its position `row·w + col` in the input plane
/// (the first maximum in row-major order when several are equal, as Burn's).
pub fn max_pool2d_forward(
    g: &Pool2dGeometry,
    x: &[f32],
    y: &mut [f32],
    indices: &mut [i64],
) -> Result<(), KernelError> {
    let (in_len, out_len) = g.lens();
    for (what, got, expected) in [
        ("input", x.len(), g.planes * in_len),
        ("output", y.len(), g.planes * out_len),
        ("indices", indices.len(), g.planes * out_len),
    ] {
        if got != expected {
            return Err(KernelError::Length { what, got, expected });
        }
    }
    if out_len == 0 {
        return Ok(());
    }
    let ([kh, kw], [sy, sx], w, wo) = (g.kernel, g.stride, g.in_hw[1], g.out_hw[1]);
    y.par_chunks_mut(out_len).zip(indices.par_chunks_mut(out_len)).enumerate().for_each(|(p, (y, idx))| {
        let x = &x[p * in_len..][..in_len];
        let rows = y.chunks_exact_mut(wo).zip(idx.chunks_exact_mut(wo));
        for (ro, (y, idx)) in rows.enumerate() {
            let r = ro * sy;
            if [kh, kw, sx] == [2, 2, 2] {
                pool_row_2x2(&x[r * w..], w, r * w, y, idx);
                continue;
            }
            for (co, (y, idx)) in y.iter_mut().zip(idx.iter_mut()).enumerate() {
                let c = co * sx;
                let mut best = r * w + c;
                let mut max = x[best];
                for ry in 0..kh {
                    for rx in 0..kw {
                        let i = (r + ry) * w + c + rx;
                        if x[i] > max {
                            (max, best) = (x[i], i);
                        }
                    }
                }
                *y = max;
                *idx = best as i64;
            }
        }
    });
    Ok(())
}

/// One output row of the U-Net's 2×2 / 2 pooling: `x` starts at the window's top input row
/// (`base` is that row's position in the plane). The four candidates are compared in row-major
/// order with the same strict `>` as the general loop, as selects without a division or a
/// branch per pixel (the general loop divided per pixel): the four pools of an F=16 step
/// 4.5–4.9 → 2.3 ms (`bioseg-train bench --profile`, alternating binaries).
fn pool_row_2x2(x: &[f32], w: usize, base: usize, y: &mut [f32], idx: &mut [i64]) {
    let (top, bottom) = (&x[..w], &x[w..2 * w]);
    for (c, (y, idx)) in y.iter_mut().zip(idx.iter_mut()).enumerate() {
        let (a, b, d, e) = (top[2 * c], top[2 * c + 1], bottom[2 * c], bottom[2 * c + 1]);
        let (mut max, mut off) = (a, 0);
        if b > max {
            (max, off) = (b, 1);
        }
        if d > max {
            (max, off) = (d, w);
        }
        if e > max {
            (max, off) = (e, w + 1);
        }
        *y = max;
        *idx = (base + 2 * c + off) as i64;
    }
}

/// The values of the 2×2 / 2 max pooling of `planes` planes of `in_hw` (floor: an odd last row
/// or column is left out), without indices: the inference engine's pooling, on the calling
/// thread (bioseg runs one tile per thread). Each window folds its four values in row-major
/// order into `f32::MIN` with a strict `>`, tract's own rule, so both give the same values
/// (NaN and −∞ included); written as a branch-free maximum per pixel, where tract 0.23's
/// stride-2 path visits each window's taps with bounds checks.
pub fn max_pool_2x2(planes: usize, in_hw: [usize; 2], x: &[f32], y: &mut [f32]) -> Result<(), KernelError> {
    let ([h, w], [ho, wo]) = (in_hw, [in_hw[0] / 2, in_hw[1] / 2]);
    for (what, got, expected) in [("input", x.len(), planes * h * w), ("output", y.len(), planes * ho * wo)] {
        if got != expected {
            return Err(KernelError::Length { what, got, expected });
        }
    }
    if ho == 0 || wo == 0 {
        return Ok(());
    }
    let fold = |m: f32, v: f32| if v > m { v } else { m };
    for (x, y) in x.chunks_exact(h * w).zip(y.chunks_exact_mut(ho * wo)) {
        for (r, y) in y.chunks_exact_mut(wo).enumerate() {
            let (top, bottom) = (&x[2 * r * w..][..2 * wo], &x[(2 * r + 1) * w..][..2 * wo]);
            for ((y, t), b) in y.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                *y = fold(fold(fold(fold(f32::MIN, t[0]), t[1]), b[0]), b[1]);
            }
        }
    }
    Ok(())
}

/// `dx[index] += dy` for every output pixel of `planes` planes (overwrites `dx`, `planes` planes
/// of `in_hw`; overlapping windows add up; an index outside the plane is ignored).
pub fn max_pool2d_backward(
    planes: usize,
    in_hw: [usize; 2],
    dy: &[f32],
    indices: &[i64],
    dx: &mut [f32],
) -> Result<(), KernelError> {
    let in_len = in_hw[0] * in_hw[1];
    let out_len = dy.len().checked_div(planes).unwrap_or(0);
    for (what, got, expected) in [
        ("output gradient", dy.len(), planes * out_len),
        ("indices", indices.len(), dy.len()),
        ("input gradient", dx.len(), planes * in_len),
    ] {
        if got != expected {
            return Err(KernelError::Length { what, got, expected });
        }
    }
    if in_len == 0 {
        return Ok(());
    }
    dx.par_chunks_mut(in_len).enumerate().for_each(|(p, dx)| {
        dx.fill(0.0);
        for (&g, &i) in dy[p * out_len..][..out_len].iter().zip(&indices[p * out_len..][..out_len]) {
            if let Some(d) = usize::try_from(i).ok().and_then(|i| dx.get_mut(i)) {
                *d += g;
            }
        }
    });
    Ok(())
}
