//! Winograd F(2×2, 3×3): 3×3, stride-1 convolutions with 2.25× fewer multiplications (used by
//! the inference engine's convolution for wide layers).
//!
//! Each 2×2 block of output pixels ("tile") is computed from the 4×4 input patch around it:
//! `Y = Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A`. The 16 element-wise products summed over input
//! channels are 16 matrix products `[tiles, C] × [C, O]` (the `gemm` crate), one per position
//! ξ of the 4×4 transformed patch; the transforms are additions only, written as loops over
//! tiles that the compiler vectorises. Tiles are processed in blocks of about [`TILES`] (whole
//! rows of tiles), so the transformed blocks stay in L2.

use crate::gemm::{grow, product};
use crate::input::ConvInput;

/// Tiles per block (rounded to whole tile rows).
const TILES: usize = 256;

/// The transformed kernel `G g Gᵀ` of every (output, input) channel pair, as 16 matrices
/// `[c_out, c_in]` (row `o`, column `c` at `ξ·c_out·c_in + o·c_in + c`).
pub fn transform_kernel(oihw: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let mut u = vec![0f32; 16 * c_out * c_in];
    for o in 0..c_out {
        for c in 0..c_in {
            let g = &oihw[(o * c_in + c) * 9..][..9];
            // G g (4×3), then (G g) Gᵀ (4×4); G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1].
            let mut gg = [[0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, d) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + d);
                gg[2][j] = 0.5 * (a - b + d);
                gg[3][j] = d;
            }
            for (i, row) in gg.iter().enumerate() {
                let (a, b, d) = (row[0], row[1], row[2]);
                let t = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                for (j, v) in t.into_iter().enumerate() {
                    u[(i * 4 + j) * c_out * c_in + o * c_in + c] = v;
                }
            }
        }
    }
    u
}

/// Geometry and parameters of one Winograd convolution.
pub struct Winograd<'a> {
    /// Transformed kernel ([`transform_kernel`]).
    pub u: &'a [f32],
    /// Bias per output channel.
    pub bias: &'a [f32],
    /// Input channels, output channels.
    pub c_in: usize,
    pub c_out: usize,
    /// Zero padding above and left of the input (below/right follow from the output size).
    pub top: usize,
    pub left: usize,
    /// Apply `max(0, ·)` to the output.
    pub relu: bool,
}

/// Reusable buffers of [`Winograd::convolve`].
#[derive(Default)]
pub struct Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
    rows: Vec<f32>,
    tmp: Vec<f32>,
}

impl Winograd<'_> {
    /// Tile rows (pairs of output rows) per block of work for an output `wo` wide: the unit in
    /// which [`Winograd::convolve_rows`] may split an image over threads.
    pub fn rows_per_block(wo: usize) -> usize {
        (TILES / wo.div_ceil(2).max(1)).max(1)
    }

    /// Convolves one image `x` (`h` × `w`); output `(o, r, col)` goes to
    /// `o·ys[0] + (r·wo + col)·ys[1]` (`ho` × `wo`).
    pub fn convolve(
        &self,
        x: &ConvInput,
        hw: (usize, usize),
        y: &mut [f32],
        ys: [usize; 2],
        (ho, wo): (usize, usize),
        buf: &mut Buffers,
    ) {
        assert!(ho == 0 || wo == 0 || (self.c_out - 1) * ys[0] + ((ho - 1) * wo + wo - 1) * ys[1] < y.len());
        // SAFETY: the assertion keeps every output element inside `y`, which is borrowed
        // mutably for the whole call.
        unsafe { self.convolve_rows(x, hw, y.as_mut_ptr(), ys, (ho, wo), 0..ho.div_ceil(2), buf) }
    }

    /// [`Winograd::convolve`] for tile rows `tile_rows` only (output rows `2·start ..
    /// 2·end`), through a raw output pointer, so that threads can share one image's rows.
    ///
    /// # Safety
    /// Every output element of those rows (`o·ys[0] + (r·wo + col)·ys[1]` from `y`) must be
    /// inside one allocation that nothing else reads or writes during the call.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn convolve_rows(
        &self,
        x: &ConvInput,
        (h, w): (usize, usize),
        y: *mut f32,
        ys: [usize; 2],
        (ho, wo): (usize, usize),
        tile_rows: std::ops::Range<usize>,
        buf: &mut Buffers,
    ) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        let rows_per_block = Self::rows_per_block(wo);
        let block_tiles = rows_per_block * tw;
        let row_len = 2 * tw + 2;
        let Buffers { v, m, rows, tmp } = buf;
        let v = grow(v, 16 * c_in * block_tiles);
        let m = grow(m, 16 * c_out * block_tiles);
        let rows = grow(rows, 4 * row_len);
        let tmp = grow(tmp, 16 * tw);
        let (mut ty0, th) = (tile_rows.start, tile_rows.end.min(th));
        while ty0 < th {
            let nrows = rows_per_block.min(th - ty0);
            let t_count = nrows * tw;
            // 1. Input transform V[ξ][c][t] = (Bᵀ d B)[ξ] of every tile t of the block.
            for c in 0..c_in {
                let ch = x.channel(c);
                for r in 0..nrows {
                    let ty = ty0 + r;
                    // The 4 input rows of this tile row, zero-padded to 2·tw + 2 columns.
                    for i in 0..4 {
                        let dst = &mut rows[i * row_len..][..row_len];
                        let yi = (2 * ty + i) as isize - self.top as isize;
                        if yi < 0 || yi >= h as isize {
                            dst.fill(0.0);
                            continue;
                        }
                        let base = ch.base + yi as usize * ch.row_stride;
                        // Columns j of the buffer hold input column j − left.
                        let lo = self.left.min(row_len);
                        let hi = (w + self.left).min(row_len);
                        dst[..lo].fill(0.0);
                        dst[hi.max(lo)..].fill(0.0);
                        if hi > lo {
                            let n = hi - lo;
                            let src0 = base + (lo - self.left) * ch.col_stride;
                            if ch.col_stride == 1 {
                                dst[lo..hi].copy_from_slice(&ch.data[src0..src0 + n]);
                            } else {
                                for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                                    *d = ch.data[src0 + k * ch.col_stride];
                                }
                            }
                        }
                    }
                    // Horizontal: d·B for each of the 4 rows → tmp[i·4 + k][t].
                    for i in 0..4 {
                        let src = &rows[i * row_len..][..row_len];
                        let (t0, rest) = tmp[i * 4 * tw..][..4 * tw].split_at_mut(tw);
                        let (t1, rest) = rest.split_at_mut(tw);
                        let (t2, t3) = rest.split_at_mut(tw);
                        for t in 0..tw {
                            let (a0, a1, a2, a3) = (src[2 * t], src[2 * t + 1], src[2 * t + 2], src[2 * t + 3]);
                            t0[t] = a0 - a2;
                            t1[t] = a1 + a2;
                            t2[t] = a2 - a1;
                            t3[t] = a1 - a3;
                        }
                    }
                    // Vertical: Bᵀ·(d·B) → V[ξ][c][t] for the 4 ξ of each column k.
                    let off = c * block_tiles + r * tw;
                    for k in 0..4 {
                        let b = |i: usize| &tmp[(i * 4 + k) * tw..][..tw];
                        let (b0, b1, b2, b3) = (b(0), b(1), b(2), b(3));
                        let plane = c_in * block_tiles;
                        let (v0, rest) = v[k * plane..].split_at_mut(4 * plane);
                        let (v1, rest) = rest.split_at_mut(4 * plane);
                        let (v2, v3) = rest.split_at_mut(4 * plane);
                        let (v0, v1, v2, v3) = (
                            &mut v0[off..off + tw],
                            &mut v1[off..off + tw],
                            &mut v2[off..off + tw],
                            &mut v3[off..off + tw],
                        );
                        for t in 0..tw {
                            v0[t] = b0[t] - b2[t];
                            v1[t] = b1[t] + b2[t];
                            v2[t] = b2[t] - b1[t];
                            v3[t] = b1[t] - b3[t];
                        }
                    }
                }
            }
            // 2. M[ξ] = V[ξ] × U[ξ]ᵀ: [t_count, c_in] × [c_in, c_out] for each ξ.
            for xi in 0..16 {
                // SAFETY: dst is M[ξ] (t_count rows, c_out columns of stride block_tiles), lhs is
                // V[ξ] (t_count × c_in, column stride block_tiles), rhs is U[ξ] read as
                // [c_in, c_out] (row stride 1, column stride c_in); all inside their buffers.
                unsafe {
                    product(
                        [t_count, c_out, c_in],
                        (m.as_mut_ptr().add(xi * c_out * block_tiles), block_tiles, 1),
                        (v.as_ptr().add(xi * c_in * block_tiles), block_tiles, 1),
                        (self.u.as_ptr().add(xi * c_out * c_in), c_in, 1),
                    );
                }
            }
            // 3. Output transform Y = Aᵀ M A (+ bias, ReLU) into the output, row pair by row pair.
            let (top_row, rest) = rows.split_at_mut(row_len);
            let bottom_row = &mut rest[..row_len];
            for o in 0..c_out {
                let b = self.bias[o];
                for r in 0..nrows {
                    let ty = ty0 + r;
                    let at = |xi: usize| &m[xi * c_out * block_tiles + o * block_tiles + r * tw..][..tw];
                    let mx: [&[f32]; 16] = std::array::from_fn(at);
                    for t in 0..tw {
                        let s0 = [0, 1, 2, 3].map(|j| mx[j][t] + mx[4 + j][t] + mx[8 + j][t]);
                        let s1 = [0, 1, 2, 3].map(|j| mx[4 + j][t] - mx[8 + j][t] - mx[12 + j][t]);
                        top_row[2 * t] = s0[0] + s0[1] + s0[2] + b;
                        top_row[2 * t + 1] = s0[1] - s0[2] - s0[3] + b;
                        bottom_row[2 * t] = s1[0] + s1[1] + s1[2] + b;
                        bottom_row[2 * t + 1] = s1[1] - s1[2] - s1[3] + b;
                    }
                    for (a, src) in [&*top_row, &*bottom_row].into_iter().enumerate() {
                        let yr = 2 * ty + a;
                        if yr >= ho {
                            continue;
                        }
                        let base = o * ys[0] + yr * wo * ys[1];
                        let src = &src[..wo];
                        // SAFETY: row `yr` of channel `o` is inside the caller's rows.
                        unsafe {
                            if ys[1] == 1 {
                                let dst = std::slice::from_raw_parts_mut(y.add(base), wo);
                                if self.relu {
                                    for (d, s) in dst.iter_mut().zip(src) {
                                        *d = s.max(0.0);
                                    }
                                } else {
                                    dst.copy_from_slice(src);
                                }
                            } else {
                                for (col, s) in src.iter().enumerate() {
                                    *y.add(base + col * ys[1]) = if self.relu { s.max(0.0) } else { *s };
                                }
                            }
                        }
                    }
                }
            }
            ty0 += nrows;
        }
    }
}
