//! Winograd F(4×4, 3×3) on AVX-512: 3×3, stride-1 convolutions with 4× fewer multiplications
//! than the direct kernels (used by the inference engine's convolution).
//!
//! Each 4×4 block of output pixels ("tile") is `Y = Aᵀ [Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B)] A` of the
//! 6×6 input patch `d_c` around it (Lavin & Gray 2016, interpolation points 0, ±1, ±2, ∞). A
//! block of tiles (a run of the image's tiles in row-major order, sized so that its transformed
//! input and products stay in L2) goes through three passes, each on whole vectors of 16 tiles:
//!
//! 1. input transform, 16 tiles at a time: each of the six input rows they read (66 values,
//!    read in place, or copied with zeros where they cross the image's border) is split into
//!    its four column phases by two rounds of `vpermt2ps` (lane `j` of phase `p` is column
//!    `4j + p`, so the six columns of 16 tiles are four phases and two of them shifted by a
//!    lane), transformed along the row and then down the six rows: `V[ξ][c][t]`, tiles
//!    contiguous;
//! 2. for each of the 36 positions ξ, `M[ξ][o][t] = Σ_c U[ξ][c][o] · V[ξ][c][t]` on a register
//!    tile of 8 outputs × 48 tiles (24 accumulators; per input channel three vector loads and
//!    eight broadcasts feed 24 multiply-adds, where the direct kernels' tiles load one value
//!    per one to three multiply-adds);
//! 3. output transform down the rows and along them, the bias and a folded ReLU added, the
//!    four columns of 16 tiles interleaved back into 64 output pixels of a row.
//!
//! The 36 planes of V and of M lie one cache line more than their size apart: at sizes that
//! are multiples of 4 KiB the transforms' 36 loads or stores per vector of tiles shared L1 sets
//! (the op11 zoo window, one thread: 140 → 129 ms).
//!
//! Measured (`examples/winograd4_layers`, one thread, Intel Xeon AVX-512, best of 4–7, ms,
//! direct kernels or F(2×2, 3×3) → this): 16→16 at 544² 8.7 → 6.2, 32→16 at 544² 15.1 → 11.2,
//! 64→32 at 272² 14.8 → 8.4, 64→64 at 136² 7.1 → 3.8, 128→128 at 68² 4.9 (F(2×2)) → 4.0,
//! 256→256 at 136² 66 (F(2×2)) → 51, and on a 320² window's layers 16→16 at 320² 3.0 → 2.4,
//! 128→128 at 40² 2.5 → 1.4. From 512 input channels F(2×2, 3×3) stays faster (512→512 at 68²
//! 54 against 69 ms: a block's transformed input outgrows L2), so `bioseg-infer` runs this for
//! 8–256 input channels.

use crate::gemm::grow;
use crate::input::{ChannelView, ConvInput};

/// Tiles per vector.
const LANES: usize = 16;
/// Tile vectors and outputs of the product's register tile (a block's last register tile may
/// hold one or two vectors of tiles).
const TV: usize = 3;
const NR: usize = 8;
/// Tiles per register tile: whole blocks hold a multiple of it.
const T_STEP: usize = TV * LANES;
/// Bytes of a block's transformed input and products at most (L2 is 1–2 MiB per core).
const BLOCK_BYTES: usize = 1 << 20;

/// A 3×3, stride-1 convolution with its kernel transformed once for [`Winograd4::convolve_tiles`].
#[derive(Clone, Debug, PartialEq)]
pub struct Winograd4 {
    c_in: usize,
    c_out: usize,
    /// `G g Gᵀ` of every (output, input) channel pair as `[36][c_in][c_out]`.
    u: Vec<f32>,
    bias: Vec<f32>,
}

/// Reusable per-thread buffers of [`Winograd4::convolve_tiles`].
#[derive(Default)]
pub struct Winograd4Buffers {
    v: Vec<f32>,
    m: Vec<f32>,
}

/// One tile row's part of a block: tile row `ty`, tile columns `tx0..tx1`, at `off` in the block.
#[derive(Clone, Copy)]
struct Segment {
    ty: usize,
    tx0: usize,
    tx1: usize,
    off: usize,
}

impl Winograd4 {
    /// The convolution with weights `oihw` (`[c_out, c_in, 3, 3]`) and `bias` (`[c_out]`), or
    /// `None` when this machine has no AVX-512 or `c_out` is not a multiple of 8.
    pub fn new(oihw: &[f32], bias: &[f32], c_out: usize, c_in: usize) -> Option<Self> {
        if !available() || c_out == 0 || !c_out.is_multiple_of(NR) || c_in == 0 {
            return None;
        }
        assert_eq!(oihw.len(), c_out * c_in * 9, "a [c_out, c_in, 3, 3] kernel");
        assert_eq!(bias.len(), c_out, "one bias per output");
        const G: [[f64; 3]; 6] = [
            [0.25, 0.0, 0.0],
            [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
            [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
            [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
            [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
            [0.0, 0.0, 1.0],
        ];
        let mut u = vec![0f32; 36 * c_in * c_out];
        for o in 0..c_out {
            for c in 0..c_in {
                let g = &oihw[(o * c_in + c) * 9..][..9];
                // (G g) Gᵀ, in f64.
                let mut gg = [[0f64; 3]; 6];
                for (i, row) in G.iter().enumerate() {
                    for j in 0..3 {
                        gg[i][j] = (0..3).map(|k| row[k] * g[k * 3 + j] as f64).sum();
                    }
                }
                for i in 0..6 {
                    for (j, row) in G.iter().enumerate() {
                        let value: f64 = (0..3).map(|k| gg[i][k] * row[k]).sum();
                        u[((i * 6 + j) * c_in + c) * c_out + o] = value as f32;
                    }
                }
            }
        }
        Some(Winograd4 { c_in, c_out, u, bias: bias.to_vec() })
    }

    /// Input channels.
    pub fn c_in(&self) -> usize {
        self.c_in
    }

    /// Output channels.
    pub fn c_out(&self) -> usize {
        self.c_out
    }

    /// Tiles of an output `ho` × `wo`: rows and columns of 4×4 blocks.
    pub fn tiles((ho, wo): (usize, usize)) -> (usize, usize) {
        (ho.div_ceil(4), wo.div_ceil(4))
    }

    /// Tiles per block of work (a multiple of 48): the unit in which an image's tiles may be
    /// split over threads.
    pub fn block_tiles(&self) -> usize {
        let per_tile = 36 * 4 * (self.c_in + self.c_out);
        (BLOCK_BYTES / per_tile / T_STEP).max(1) * T_STEP
    }

    /// Convolves tiles `tiles` (row-major tile indices of [`Winograd4::tiles`]) of one image `x`
    /// (`h` × `w`, zero padding `pad` above and left): output `(o, r, col)` goes to
    /// `o·ys[0] + (r·wo + col)·ys[1]` from `y` (`ho` × `wo`), then `max(·, 0)` when `relu`.
    ///
    /// # Safety
    /// Every output element of those tiles (rows `4·ty ..`, columns `4·tx ..`, clipped to
    /// `ho` × `wo`) must be inside one allocation that nothing else reads or writes during the
    /// call; `x` must have `c_in` channels of `h` × `w`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn convolve_tiles(
        &self,
        x: &ConvInput,
        hw: (usize, usize),
        pad: [usize; 2],
        y: *mut f32,
        ys: [usize; 2],
        out_hw: (usize, usize),
        tiles: std::ops::Range<usize>,
        relu: bool,
        buf: &mut Winograd4Buffers,
    ) {
        let (th, tw) = Self::tiles(out_hw);
        let end = tiles.end.min(th * tw);
        let step = self.block_tiles();
        let mut q0 = tiles.start;
        while q0 < end {
            let q1 = (q0 + step).min(end);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `new` checked AVX-512; the output contract is the caller's.
            unsafe {
                self.block(x, hw, pad, y, ys, out_hw, q0..q1, relu, buf)
            };
            q0 = q1;
        }
    }

    /// The tile-row segments of tiles `q0..q1` of an output `tw` tiles wide.
    fn segments(tw: usize, q0: usize, q1: usize) -> impl Iterator<Item = Segment> {
        (q0 / tw..q1.div_ceil(tw)).map(move |ty| {
            let tx0 = q0.max(ty * tw) - ty * tw;
            let tx1 = q1.min((ty + 1) * tw) - ty * tw;
            Segment { ty, tx0, tx1, off: ty * tw + tx0 - q0 }
        })
    }

    /// One block: the three passes of the module documentation.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        &self,
        x: &ConvInput,
        (h, w): (usize, usize),
        pad: [usize; 2],
        y: *mut f32,
        ys: [usize; 2],
        (ho, wo): (usize, usize),
        tiles: std::ops::Range<usize>,
        relu: bool,
        buf: &mut Winograd4Buffers,
    ) {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let (_, tw) = Self::tiles((ho, wo));
        let t = tiles.end - tiles.start;
        let tpad = t.next_multiple_of(LANES);
        let Winograd4Buffers { v, m } = buf;
        // The 36 planes of V and M lie one cache line more than their size apart: planes a
        // multiple of 4 KiB apart would share the L1 sets the transforms' 36 loads and stores use.
        let (vplane, mplane) = (c_in * tpad + LANES, c_out * tpad + LANES);
        let v = grow(v, 36 * vplane);
        // 16 values more: the last segment's last vector of tiles may reach past the block.
        let m = grow(m, 36 * mplane + LANES);
        // Lanes past the block's tiles feed the products too: keep them finite.
        if tpad > t {
            for plane in v.chunks_exact_mut(vplane) {
                for r in plane.chunks_exact_mut(tpad) {
                    r[t..].fill(0.0);
                }
            }
        }
        for c in 0..c_in {
            let ch = x.channel(c);
            for s in Self::segments(tw, tiles.start, tiles.end) {
                // SAFETY: the segment's tiles are at `off .. off + (tx1 − tx0)` ≤ t of each of
                // V's 36 planes (row c).
                unsafe { input_transform(&ch, (h, w), pad, s, v.as_mut_ptr().add(c * tpad + s.off), vplane) };
            }
        }
        for xi in 0..36 {
            for o0 in (0..c_out).step_by(NR) {
                for t0 in (0..tpad).step_by(T_STEP) {
                    // SAFETY: V[ξ] is c_in rows of tpad, U[ξ] c_in rows of c_out, M[ξ] c_out
                    // rows of tpad; o0 + NR ≤ c_out and t0 + 16·vectors ≤ tpad.
                    unsafe {
                        let (v, u) = (v.as_ptr().add(xi * vplane + t0), self.u.as_ptr().add(xi * c_in * c_out + o0));
                        let m = m.as_mut_ptr().add(xi * mplane + o0 * tpad + t0);
                        match (tpad - t0) / LANES {
                            1 => product_tile::<1>(v, tpad, u, c_out, c_in, m, tpad),
                            2 => product_tile::<2>(v, tpad, u, c_out, c_in, m, tpad),
                            _ => product_tile::<TV>(v, tpad, u, c_out, c_in, m, tpad),
                        }
                    }
                }
            }
        }
        for o in 0..c_out {
            for s in Self::segments(tw, tiles.start, tiles.end) {
                // SAFETY: M[ξ][o] holds the segment's tiles at `off ..`; the output rows and
                // columns written are the segment's, clipped to ho × wo (the caller's contract).
                unsafe {
                    output_transform(
                        m.as_ptr().add(o * tpad + s.off),
                        mplane,
                        s,
                        self.bias[o],
                        relu,
                        y.add(o * ys[0]),
                        ys[1],
                        (ho, wo),
                    )
                }
            }
        }
    }
}

/// Whether this machine runs [`Winograd4`]: AVX-512.
fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Lane-index vectors for `vpermt2ps`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn indices(f: impl Fn(i32) -> i32) -> __m512i {
    let v: [i32; 16] = std::array::from_fn(|k| f(k as i32));
    // SAFETY: 16 lanes read from a 16-element array.
    unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
}

/// `Bᵀ d` of six vectors (each lane a tile).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn bt(d: [__m512; 6]) -> [__m512; 6] {
    let (four, five, two) = (_mm512_set1_ps(4.0), _mm512_set1_ps(5.0), _mm512_set1_ps(2.0));
    let [d0, d1, d2, d3, d4, d5] = d;
    let s12 = _mm512_add_ps(d1, d2);
    let s34 = _mm512_add_ps(d3, d4);
    let m12 = _mm512_sub_ps(d1, d2);
    let m43 = _mm512_sub_ps(d4, d3);
    let m31 = _mm512_sub_ps(d3, d1);
    let m42 = _mm512_sub_ps(d4, d2);
    [
        _mm512_fmadd_ps(four, d0, _mm512_fnmadd_ps(five, d2, d4)),
        _mm512_fnmadd_ps(four, s12, s34),
        _mm512_fmadd_ps(four, m12, m43),
        _mm512_fmadd_ps(two, m31, m42),
        _mm512_fnmadd_ps(two, m31, m42),
        _mm512_fmadd_ps(four, d1, _mm512_fnmadd_ps(five, d3, d5)),
    ]
}

/// `Aᵀ m` of six vectors.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn at(m: [__m512; 6]) -> [__m512; 4] {
    let [m0, m1, m2, m3, m4, m5] = m;
    let a12 = _mm512_add_ps(m1, m2);
    let s12 = _mm512_sub_ps(m1, m2);
    let a34 = _mm512_add_ps(m3, m4);
    let s34 = _mm512_sub_ps(m3, m4);
    [
        _mm512_add_ps(_mm512_add_ps(m0, a12), a34),
        _mm512_fmadd_ps(_mm512_set1_ps(2.0), s34, s12),
        _mm512_fmadd_ps(_mm512_set1_ps(4.0), a34, a12),
        _mm512_add_ps(_mm512_fmadd_ps(_mm512_set1_ps(8.0), s34, s12), m5),
    ]
}

/// The mask of the first `n` (≤ 16) lanes.
#[inline]
fn lanes(n: usize) -> u16 {
    if n >= 16 { u16::MAX } else { (1u16 << n) - 1 }
}

/// Values of an input row that 16 tiles read: 64 columns and the two after them.
const CHUNK_COLUMNS: usize = 4 * LANES + 2;

/// Pass 1 for channel `ch` and segment `s`: `V[ξ][t]` at `v + ξ·plane + t` for the segment's
/// `n` tiles.
///
/// # Safety
/// `v` must address `n` tiles of 36 planes `plane` apart.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_transform(
    ch: &ChannelView,
    (h, w): (usize, usize),
    [top, left]: [usize; 2],
    s: Segment,
    v: *mut f32,
    plane: usize,
) {
    let (even, odd) = (indices(|k| 2 * k), indices(|k| 2 * k + 1));
    // Rows that cross the image's border are copied here, zero outside it.
    let mut edge = [[0f32; 4 * LANES + LANES]; 6];
    let n = s.tx1 - s.tx0;
    for k in 0..n.div_ceil(LANES) {
        let mask = lanes(n - k * LANES);
        // Input column of the chunk's first value.
        let x0 = (4 * (s.tx0 + k * LANES)) as isize - left as isize;
        let mut h6 = [[_mm512_setzero_ps(); 6]; 6];
        for (i, hi) in h6.iter_mut().enumerate() {
            let yi = (4 * s.ty + i) as isize - top as isize;
            let inside = yi >= 0 && (yi as usize) < h;
            let r: *const f32 = if inside && ch.col_stride == 1 && x0 >= 0 && x0 as usize + CHUNK_COLUMNS <= w {
                // In place: the chunk's columns are all inside the row.
                ch.data[ch.base + yi as usize * ch.row_stride + x0 as usize..][..CHUNK_COLUMNS].as_ptr()
            } else {
                let row = &mut edge[i];
                row.fill(0.0);
                if inside {
                    // Values q with an input column x0 + q inside the image.
                    let lo = (-x0).clamp(0, CHUNK_COLUMNS as isize) as usize;
                    let hi = (w as isize - x0).clamp(lo as isize, CHUNK_COLUMNS as isize) as usize;
                    let base = ch.base + yi as usize * ch.row_stride;
                    for (q, d) in row[lo..hi].iter_mut().enumerate() {
                        *d = ch.data[base + (x0 + (lo + q) as isize) as usize * ch.col_stride];
                    }
                }
                row.as_ptr()
            };
            // SAFETY: 66 values from `r` (a row of the input or of `edge`).
            unsafe {
                let z = [0, 1, 2, 3].map(|q| _mm512_loadu_ps(r.add(q * LANES)));
                // Columns 2j / 2j + 1, then 4j + p: the four phases.
                let a = _mm512_permutex2var_ps(z[0], even, z[1]);
                let b = _mm512_permutex2var_ps(z[0], odd, z[1]);
                let c = _mm512_permutex2var_ps(z[2], even, z[3]);
                let d = _mm512_permutex2var_ps(z[2], odd, z[3]);
                let p0 = _mm512_permutex2var_ps(a, even, c);
                let p2 = _mm512_permutex2var_ps(a, odd, c);
                let p1 = _mm512_permutex2var_ps(b, even, d);
                let p3 = _mm512_permutex2var_ps(b, odd, d);
                // Columns 4j + 4 and 4j + 5: phases 0 and 1 one lane on.
                let next = |p: __m512, col: usize| {
                    _mm512_castsi512_ps(_mm512_alignr_epi32(
                        _mm512_castps_si512(_mm512_set1_ps(*r.add(4 * LANES + col))),
                        _mm512_castps_si512(p),
                        1,
                    ))
                };
                let (p4, p5) = (next(p0, 0), next(p1, 1));
                *hi = bt([p0, p1, p2, p3, p4, p5]);
            }
        }
        #[allow(clippy::needless_range_loop)] // `col` picks a column of the rows' transforms
        for col in 0..6 {
            let vv = bt(std::array::from_fn(|i| h6[i][col]));
            for (row, value) in vv.into_iter().enumerate() {
                // SAFETY: plane ξ = 6·row + col, tiles 16k .. 16k + 16 masked to n.
                unsafe { _mm512_mask_storeu_ps(v.add((row * 6 + col) * plane + k * LANES), mask, value) };
            }
        }
    }
}

/// Pass 2: `m[j·ms + t] = Σ_c u[c·us + j] · v[c·vs + t]` for `j < 8`, `t < 16·N`.
///
/// # Safety
/// `v` must address `c_in` rows of `16·N` values (`vs` apart), `u` `c_in` rows of 8 (`us`
/// apart), `m` 8 rows of `16·N` (`ms` apart).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_tile<const N: usize>(
    v: *const f32,
    vs: usize,
    u: *const f32,
    us: usize,
    c_in: usize,
    m: *mut f32,
    ms: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); N]; NR];
    for c in 0..c_in {
        // SAFETY: row c of v and u (the caller's contract).
        unsafe {
            let x: [__m512; N] = std::array::from_fn(|q| _mm512_loadu_ps(v.add(c * vs + q * LANES)));
            let w = u.add(c * us);
            for (j, a) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_ps(*w.add(j));
                for (sum, value) in a.iter_mut().zip(x) {
                    *sum = _mm512_fmadd_ps(value, b, *sum);
                }
            }
        }
    }
    for (j, a) in acc.iter().enumerate() {
        for (q, value) in a.iter().enumerate() {
            // SAFETY: row j of m (the caller's contract).
            unsafe { _mm512_storeu_ps(m.add(j * ms + q * LANES), *value) };
        }
    }
}

/// Pass 3 for one output channel and one segment: `M[ξ][t]` at `m + ξ·plane + t` → the
/// segment's output pixels, `(r, col)` at `y + (r·wo + col)·step`, plus `bias`, `max(·, 0)`
/// when `relu`.
///
/// # Safety
/// `m` must address the segment's tiles in 36 planes; the output rows `4·ty ..` and columns
/// `4·tx0 .. 4·tx1`, clipped to `ho` × `wo`, must be inside `y`'s allocation.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_transform(
    m: *const f32,
    plane: usize,
    s: Segment,
    bias: f32,
    relu: bool,
    y: *mut f32,
    step: usize,
    (ho, wo): (usize, usize),
) {
    // Lane k of the low half takes lane k/2 of a (k even) or of b (k odd); the high half
    // lanes 8 + k/2.
    let lo = indices(|k| k / 2 + if k % 2 == 1 { 16 } else { 0 });
    let hi = indices(|k| 8 + k / 2 + if k % 2 == 1 { 16 } else { 0 });
    let (b, zero) = (_mm512_set1_ps(bias), _mm512_setzero_ps());
    let n = s.tx1 - s.tx0;
    for k in 0..n.div_ceil(LANES) {
        // Aᵀ down the rows: sums[col][r].
        let sums: [[__m512; 4]; 6] = std::array::from_fn(|col| {
            // SAFETY: planes ξ = 6·i + col, tiles 16k .. 16k + 16 (lanes past the segment's
            // tiles stay inside M, whose planes end with 16 spare values).
            at(std::array::from_fn(|i| unsafe { _mm512_loadu_ps(m.add((i * 6 + col) * plane + k * LANES)) }))
        });
        let col0 = 4 * (s.tx0 + k * LANES);
        let valid = (4 * (n - k * LANES)).min(4 * LANES).min(wo.saturating_sub(col0));
        #[allow(clippy::needless_range_loop)] // `r` picks a row of every column's sums
        for r in 0..4 {
            let row = 4 * s.ty + r;
            if row >= ho {
                break;
            }
            let mut out = at(std::array::from_fn(|col| sums[col][r])).map(|v| _mm512_add_ps(v, b));
            if relu {
                out = out.map(|v| _mm512_max_ps(v, zero));
            }
            // Columns 4j + q of lane j of out[q]: interleave (0, 2) and (1, 3), then the pairs.
            let (u0, u1) = (_mm512_permutex2var_ps(out[0], lo, out[2]), _mm512_permutex2var_ps(out[0], hi, out[2]));
            let (w0, w1) = (_mm512_permutex2var_ps(out[1], lo, out[3]), _mm512_permutex2var_ps(out[1], hi, out[3]));
            let pixels = [
                _mm512_permutex2var_ps(u0, lo, w0),
                _mm512_permutex2var_ps(u0, hi, w0),
                _mm512_permutex2var_ps(u1, lo, w1),
                _mm512_permutex2var_ps(u1, hi, w1),
            ];
            let first = (row * wo + col0) * step;
            if step == 1 {
                for (q, value) in pixels.into_iter().enumerate() {
                    let count = valid.saturating_sub(q * LANES);
                    if count > 0 {
                        // SAFETY: columns col0 + 16q .. + count of the row (the caller's contract).
                        unsafe { _mm512_mask_storeu_ps(y.add(first + q * LANES), lanes(count), value) };
                    }
                }
            } else {
                let mut line = [0f32; 4 * LANES];
                for (q, value) in pixels.into_iter().enumerate() {
                    // SAFETY: 16 values into the 64-value line.
                    unsafe { _mm512_storeu_ps(line.as_mut_ptr().add(q * LANES), value) };
                }
                for (col, value) in line[..valid].iter().enumerate() {
                    // SAFETY: as above, with the output's pixel step.
                    unsafe { *y.add(first + col * step) = *value };
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::channel_lookup;

    /// The convolution computed tap by tap, in f64.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        k: &[f32],
        bias: &[f32],
        (c_in, c_out): (usize, usize),
        (h, w): (usize, usize),
        [top, left]: [usize; 2],
        (ho, wo): (usize, usize),
        relu: bool,
    ) -> Vec<f32> {
        let mut y = vec![0f32; c_out * ho * wo];
        for o in 0..c_out {
            for r in 0..ho {
                for col in 0..wo {
                    let mut s = bias[o] as f64;
                    for c in 0..c_in {
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let (yi, xi) = (
                                    r as isize + dy as isize - top as isize,
                                    col as isize + dx as isize - left as isize,
                                );
                                if yi >= 0 && xi >= 0 && (yi as usize) < h && (xi as usize) < w {
                                    s += x[(c * h + yi as usize) * w + xi as usize] as f64
                                        * k[((o * c_in + c) * 3 + dy) * 3 + dx] as f64;
                                }
                            }
                        }
                    }
                    y[(o * ho + r) * wo + col] = if relu { s.max(0.0) as f32 } else { s as f32 };
                }
            }
        }
        y
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_convolution_tap_by_tap() {
        if !available() {
            eprintln!("no AVX-512: Winograd4 does not run here");
            return;
        }
        // Partial tiles, a block boundary inside a tile row, paddings 0–2, both layouts.
        for (i, &(c_in, c_out, h, w, top, left, bottom, right, relu, channels_last)) in [
            (3, 8, 9, 11, 1, 1, 1, 1, false, false),
            (16, 16, 37, 70, 1, 1, 1, 1, true, false),
            (5, 24, 20, 21, 0, 2, 2, 0, false, true),
            (40, 8, 13, 150, 1, 1, 1, 1, true, false),
            (8, 16, 4, 4, 0, 0, 0, 0, false, false),
        ]
        .iter()
        .enumerate()
        {
            let x = values(c_in * h * w, 1 + i as u32);
            let k = values(c_out * c_in * 9, 100 + i as u32);
            let bias = values(c_out, 200 + i as u32);
            let (ho, wo) = (h + top + bottom - 2, w + left + right - 2);
            let expected = reference(&x, &k, &bias, (c_in, c_out), (h, w), [top, left], (ho, wo), relu);
            let conv = Winograd4::new(&k, &bias, c_out, c_in).unwrap();
            let data: Vec<f32> = if channels_last {
                (0..h * w).flat_map(|p| (0..c_in).map(move |c| (c, p))).map(|(c, p)| x[c * h * w + p]).collect()
            } else {
                x.clone()
            };
            let lookup = channel_lookup(&[c_in]);
            let input = ConvInput::new(vec![(&data, c_in)], &lookup, (h, w), channels_last);
            let mut y = vec![f32::NAN; c_out * ho * wo];
            let ys = if channels_last { [1, c_out] } else { [ho * wo, 1] };
            let (th, tw) = Winograd4::tiles((ho, wo));
            let mut buf = Winograd4Buffers::default();
            // Two calls splitting the tiles mid-row.
            let split = (th * tw) / 2 + 1;
            for range in [0..split, split..th * tw] {
                // SAFETY: y holds the whole output.
                unsafe {
                    conv.convolve_tiles(
                        &input,
                        (h, w),
                        [top, left],
                        y.as_mut_ptr(),
                        ys,
                        (ho, wo),
                        range,
                        relu,
                        &mut buf,
                    )
                };
            }
            let got: Vec<f32> = if channels_last {
                (0..c_out).flat_map(|o| (0..ho * wo).map(move |p| (o, p))).map(|(o, p)| y[p * c_out + o]).collect()
            } else {
                y
            };
            let scale = expected.iter().fold(1f32, |m, v| m.max(v.abs()));
            let diff = expected.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(diff / scale < 1e-5, "case {i}: relative difference {}", diff / scale);
        }
    }
}
