//! im2col and col2im over blocks of output pixels: the data movement of every convolution in
//! this crate.
//!
//! A column block holds, for `m` consecutive output pixels (row-major over an output grid of
//! width `out_w`), one row per kernel tap `(c, ry, rx)`: the input value each pixel's tap reads,
//! zero where the tap leaves the image. Padding therefore costs no padded copy of the input, and
//! a row is a few contiguous runs of an input row when the stride is 1. col2im is the adjoint:
//! it adds a block's rows back onto the input positions they were read from.

use crate::input::ConvInput;

/// Where the taps of output pixel `(r, col)` read: input row `r·stride[0] + origin[0] +
/// ry·dilation[0]` for `ry < kernel[0]`, likewise for columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Taps {
    /// Input row and column of output pixel (0, 0)'s first tap (`−padding` for a convolution).
    pub origin: [isize; 2],
    /// Taps per column and per row.
    pub kernel: [usize; 2],
    /// Input step between neighbouring output pixels.
    pub stride: [usize; 2],
    /// Input step between neighbouring taps.
    pub dilation: [usize; 2],
}

impl Taps {
    /// Rows of a column block per input channel.
    pub fn per_channel(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }

    /// For output columns `col0 .. col0 + run` and tap column `rx`: the first input column read
    /// and the range `lo..hi` of those output columns whose tap lands inside `0..w`.
    #[inline]
    fn columns(&self, col0: usize, run: usize, rx: usize, w: usize) -> (isize, usize, usize) {
        let sx = self.stride[1];
        let first = (col0 * sx) as isize + self.origin[1] + (rx * self.dilation[1]) as isize;
        // Output columns i with 0 ≤ first + i·sx < w.
        let lo = if first >= 0 { 0 } else { first.unsigned_abs().div_ceil(sx) };
        let end = if first >= w as isize { 0 } else { (w as isize - first) as usize };
        let lo = lo.min(run);
        let hi = end.div_ceil(sx).clamp(lo, run);
        (first, lo, hi)
    }

    /// The input row read by output row `r`'s tap row `ry`, when inside `0..h`.
    #[inline]
    fn row(&self, r: usize, ry: usize, h: usize) -> Option<usize> {
        let y = (r * self.stride[0]) as isize + self.origin[0] + (ry * self.dilation[0]) as isize;
        (0..h as isize).contains(&y).then_some(y as usize)
    }
}

/// Fills `cols` (row `(c·kh + ry)·kw + rx` at `cols[row·ld ..][.. m]`) with the taps of output
/// pixels `q0 .. q0 + m` of `c_in` channels of `x` (`h` × `w`).
#[allow(clippy::too_many_arguments)]
pub fn im2col_block(
    x: &ConvInput,
    c_in: usize,
    (h, w): (usize, usize),
    taps: &Taps,
    out_w: usize,
    (q0, m): (usize, usize),
    cols: &mut [f32],
    ld: usize,
) {
    let [kh, kw] = taps.kernel;
    let sx = taps.stride[1];
    for c in 0..c_in {
        let ch = x.channel(c);
        for ry in 0..kh {
            for rx in 0..kw {
                let row = &mut cols[((c * kh + ry) * kw + rx) * ld..][..m];
                let mut j = 0;
                while j < m {
                    let (r, col0) = ((q0 + j) / out_w, (q0 + j) % out_w);
                    let run = (out_w - col0).min(m - j);
                    let dst = &mut row[j..j + run];
                    j += run;
                    let Some(yi) = taps.row(r, ry, h) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let (first, lo, hi) = taps.columns(col0, run, rx, w);
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if hi == lo {
                        continue;
                    }
                    let start = ch.base + yi * ch.row_stride + (first + (lo * sx) as isize) as usize * ch.col_stride;
                    let step = sx * ch.col_stride;
                    if step == 1 {
                        dst[lo..hi].copy_from_slice(&ch.data[start..start + (hi - lo)]);
                    } else {
                        for (i, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = ch.data[start + i * step];
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col_block`] for a channels-first image: adds every value of `cols` to
/// the input position its tap reads (`x[c·h·w + row·w + col]`); taps outside the image are
/// dropped.
#[allow(clippy::too_many_arguments)]
pub fn col2im_block(
    cols: &[f32],
    ld: usize,
    c_in: usize,
    (h, w): (usize, usize),
    taps: &Taps,
    out_w: usize,
    (q0, m): (usize, usize),
    x: &mut [f32],
) {
    let [kh, kw] = taps.kernel;
    let sx = taps.stride[1];
    for c in 0..c_in {
        let plane = &mut x[c * h * w..][..h * w];
        for ry in 0..kh {
            for rx in 0..kw {
                let row = &cols[((c * kh + ry) * kw + rx) * ld..][..m];
                let mut j = 0;
                while j < m {
                    let (r, col0) = ((q0 + j) / out_w, (q0 + j) % out_w);
                    let run = (out_w - col0).min(m - j);
                    let src = &row[j..j + run];
                    j += run;
                    let Some(yi) = taps.row(r, ry, h) else { continue };
                    let (first, lo, hi) = taps.columns(col0, run, rx, w);
                    if hi == lo {
                        continue;
                    }
                    let start = yi * w + (first + (lo * sx) as isize) as usize;
                    if sx == 1 {
                        for (d, s) in plane[start..start + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                            *d += s;
                        }
                    } else {
                        for (i, s) in src[lo..hi].iter().enumerate() {
                            plane[start + i * sx] += s;
                        }
                    }
                }
            }
        }
    }
}
