//! Direct convolutions for stride-1 layers with few channels (the 16–64-channel layers of a
//! U-Net at full and half resolution): the forward pass and the data gradient without im2col
//! and without the `gemm` crate.
//!
//! Design: a task (one image, a band of output rows) copies the input rows its band reads into
//! a zero-padded local buffer, one plane per channel, `wp = out_w + kw − 1` columns wide. In
//! that buffer, output pixel `(r, col)` computed at position `p = r·wp + col` reads tap
//! `(ry, rx)` of channel `c` at `c·plane + p + ry·wp + rx`, so every tap of every position is
//! an offset into the band, without the `kh·kw` copies of im2col. A microkernel ([`tile`])
//! keeps [`TILE`] positions × [`OUT`] output channels in registers, one AVX-512 vector of
//! output channels per position, and multiplies each tap's weight vector by input values
//! broadcast from memory inside the multiply-add (`vfmadd231ps zmm, zmm, [mem]{1to16}`): one
//! load per 16 multiply-adds, nothing packed. The `kw − 1` positions at the end of each band
//! row (and the last tile's overhang) are wasted work, dropped when the block is transposed
//! into the output with its bias ([`copy_out`], 16 × 16 in registers). Where there are two
//! chunks of 16 output channels, [`tile_pair`] runs both, so each broadcast value feeds two
//! multiply-adds.
//!
//! The weight gradient ([`Direct::weight_gradient`]) turns the same band round: per position,
//! one vector of 16 output-channel gradients times 8 band rows × 3 taps broadcast from memory.
//!
//! Why (BENCHMARKS.md, "CPU training"): im2col wrote 9 copies of every input value and the
//! product read them back (`perf`: ~20 % of an F=16 U-Net step in `im2col_block` and its
//! `memmove`), and `gemm`'s 64 × 6 microkernel split 16 output channels as 6 + 6 + 4. Measured
//! per layer (forward / data / weight gradient, GFLOP/s, 2 threads, Intel AVX-512,
//! `examples/unet_layers`, im2col → direct): 16→16 at 256² 176 / 171 / 139 → 233 / 224 / 259,
//! 32→32 at 128² 220 / 223 / 204 → 256 / 283 / 307, 64→64 at 64² 252 / 254 / 264 → 278 / 285 /
//! 343; all 22 layers of the F=16 U-Net 188 → 159 ms. Wider layers lose (128→128 at 32² 262 →
//! 247 forward; 256→256 at 16² 276 → 140: a tile's band of 256 channels no longer fits in L1;
//! weight gradients of 128–256 channels at 16² 260 → 175), hence [`pays`].

use rayon::prelude::*;

use crate::gemm::{SendPtr, grow};

/// Output channels per tile (the lanes of one AVX-512 vector).
const OUT: usize = 16;

/// Positions per tile: accumulator registers (of 32; one more holds the weights).
const TILE: usize = 24;

/// Positions per tile when two chunks of output channels run together ([`tile_pair`]): 2 × 12
/// accumulators, and one broadcast of an input value per two multiply-adds instead of one.
/// Measured (`examples/unet_layers`, forward / data gradient GFLOP/s, single → pair): 64→64 at
/// 64² 305 / 304 → 336 / 332, 64→32 at 128² 305 / 292 → 336 / 323, all 22 layers 150 → 146 ms;
/// the 24-position tile is load-bound (one broadcast load per multiply-add).
const PAIR_TILE: usize = 12;

/// Band rows (input channel, kernel row) per weight-gradient tile, and the taps per row it
/// runs (3: the tile holds ROWS · ROW_TAPS = 24 vectors of sums).
const ROWS: usize = 8;
const ROW_TAPS: usize = 3;

/// Values of a task's padded input band (512 KiB of f32) at most, when rows allow.
const BAND_BUDGET: usize = 128 * 1024;

/// Positions per band at most: the block of 2048 positions × 16 channels is 128 KiB.
const BAND_POSITIONS: usize = 2048;

/// Fewest and most input channels for which the direct kernel runs (see the module's
/// measurements: one input channel leaves the tiles with 9 multiply-adds per position, and
/// beyond 64 the band outgrows L1).
const CHANNELS: std::ops::RangeInclusive<usize> = 8..=64;

/// Whether the direct kernel runs a stride-1, dilation-1 convolution reading `c_in` channels
/// and writing `c_out` on this machine: AVX-512, whole vectors of output channels, and
/// [`CHANNELS`] input channels. `BIOSEG_DIRECT_CONV=0` turns it off (for comparisons).
pub(crate) fn pays(c_in: usize, c_out: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| {
        let env = std::env::var("BIOSEG_DIRECT_CONV").map_or(true, |v| v != "0");
        #[cfg(target_arch = "x86_64")]
        let cpu = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let cpu = false;
        env && cpu
    });
    on && c_out.is_multiple_of(OUT) && CHANNELS.contains(&c_in)
}

/// Whether [`Direct::weight_gradient`] runs a stride-1, dilation-1 convolution: as [`pays`],
/// for kernels three taps wide.
pub(crate) fn pays_weight_gradient(c_in: usize, c_out: usize, kw: usize) -> bool {
    kw == ROW_TAPS && pays(c_in, c_out)
}

/// A stride-1, dilation-1 convolution of a batch of channels-first images.
#[derive(Clone, Copy)]
pub(crate) struct Direct<'a> {
    /// The input, `[batch, c_in, h, w]`.
    pub x: &'a [f32],
    pub batch: usize,
    pub c_in: usize,
    pub in_hw: [usize; 2],
    /// Zero padding above and left of the input (below and right follow from the output size).
    pub pad: [usize; 2],
    pub kernel: [usize; 2],
    pub c_out: usize,
    pub out_hw: [usize; 2],
}

thread_local! {
    /// Each thread's padded input band and output block, reused across calls.
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The weights as [`tile`] reads them, `[c_out / OUT][kh·kw][c_in][OUT]`: element `(o, tap,
/// c)` is `weight[o, c, ry, rx]` (forward, `weight` `[c_out, c_in, kh, kw]`), or `weight[c, o,
/// kh−1−ry, kw−1−rx]` when `flipped` (the data gradient: `weight` `[c_in, c_out, kh, kw]`).
pub(crate) fn tile_weights(weight: &[f32], c_out: usize, c_in: usize, [kh, kw]: [usize; 2], flipped: bool) -> Vec<f32> {
    let taps = kh * kw;
    let mut out = vec![0f32; taps * c_in * c_out];
    for o in 0..c_out {
        for c in 0..c_in {
            for ry in 0..kh {
                for rx in 0..kw {
                    let v = if flipped {
                        weight[((c * c_out + o) * kh + kh - 1 - ry) * kw + kw - 1 - rx]
                    } else {
                        weight[((o * c_in + c) * kh + ry) * kw + rx]
                    };
                    out[(((o / OUT) * taps + ry * kw + rx) * c_in + c) * OUT + o % OUT] = v;
                }
            }
        }
    }
    out
}

impl Direct<'_> {
    /// Output rows per band: the band within [`BAND_BUDGET`] values and [`BAND_POSITIONS`]
    /// positions, evened out over the image, and narrower when the batch would give fewer than
    /// two bands per thread.
    fn band_rows(&self, wp: usize) -> usize {
        let ho = self.out_hw[0];
        let by_input = (BAND_BUDGET / (self.c_in * wp).max(1)).saturating_sub(self.kernel[0] - 1);
        let most = by_input.min(BAND_POSITIONS / wp).clamp(1, ho);
        let mut bands = ho.div_ceil(most);
        let wanted = 2 * rayon::current_num_threads();
        if self.batch * bands < wanted {
            bands = wanted.div_ceil(self.batch).min(ho);
        }
        ho.div_ceil(bands)
    }

    /// Copies the input rows that output rows `r0 ..` of image `n` read into `band` (`c_in`
    /// planes of `plane` values, rows of `wp`), zero where a tap falls outside the image.
    fn fill_band(&self, n: usize, r0: usize, wp: usize, plane: usize, band: &mut [f32]) {
        let Direct { x, c_in, in_hw: [h, w], pad, .. } = *self;
        let image = &x[n * c_in * h * w..][..c_in * h * w];
        for (c, dst) in band.chunks_exact_mut(plane).take(c_in).enumerate() {
            let src = &image[c * h * w..][..h * w];
            for (i, row) in dst.chunks_exact_mut(wp).enumerate() {
                // Band row i is input row r0 + i − pad[0]; column j input column j − pad[1].
                let yi = (r0 + i) as isize - pad[0] as isize;
                if yi < 0 || yi >= h as isize {
                    row.fill(0.0);
                    continue;
                }
                let (lo, hi) = (pad[1].min(wp), (w + pad[1]).min(wp));
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                row[lo..hi].copy_from_slice(&src[yi as usize * w + lo - pad[1]..][..hi - lo]);
            }
        }
    }

    /// `y = conv(x) + bias`, `weights` from [`tile_weights`]; every element of `y` is written.
    /// Callers check [`pays`] first.
    pub(crate) fn run(&self, weights: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
        let Direct { batch, c_in, kernel: [kh, kw], c_out, out_hw: [ho, wo], .. } = *self;
        let wp = wo + kw - 1;
        let rows = self.band_rows(wp);
        let bands = ho.div_ceil(rows);
        let offsets: Vec<usize> = (0..kh * kw).map(|t| (t / kw) * wp + t % kw).collect();
        let chunk_len = kh * kw * c_in * OUT;
        let y = SendPtr(y.as_mut_ptr());
        (0..batch * bands).into_par_iter().for_each(|t| {
            let (n, b) = (t / bands, t % bands);
            let (r0, r) = (b * rows, rows.min(ho - b * rows));
            let plane = (r + kh - 1) * wp;
            // Tiles run past the band's r·wp positions by less than TILE.
            let m = (r * wp).next_multiple_of(TILE);
            BUFFERS.with(|bufs| {
                let (band, block) = &mut *bufs.borrow_mut();
                // The last channel's tiles read up to kw + TILE values past its plane.
                let band = grow(band, c_in * plane + kw + TILE);
                let block = grow(block, 2 * m * OUT);
                self.fill_band(n, r0, wp, plane, band);
                let (block, block2) = block.split_at_mut(m * OUT);
                let mut chunk = 0;
                while chunk < c_out / OUT {
                    // Two chunks at a time where there are two: each broadcast input value then
                    // feeds two multiply-adds (the module's note on PAIR_TILE).
                    let pair = chunk + 1 < c_out / OUT;
                    let w = &weights[chunk * chunk_len..][..chunk_len];
                    if pair {
                        let w2 = &weights[(chunk + 1) * chunk_len..][..chunk_len];
                        for p0 in (0..m).step_by(PAIR_TILE) {
                            // SAFETY: as for `tile` below, with PAIR_TILE < TILE positions (m is
                            // a multiple of both) and a second chunk of weights and block.
                            unsafe {
                                tile_pair(
                                    band.as_ptr().add(p0),
                                    plane,
                                    &offsets,
                                    c_in,
                                    w.as_ptr(),
                                    w2.as_ptr(),
                                    block.as_mut_ptr().add(p0 * OUT),
                                    block2.as_mut_ptr().add(p0 * OUT),
                                )
                            };
                        }
                    } else {
                        for p0 in (0..m).step_by(TILE) {
                            // SAFETY: the tile reads band[c·plane + offsets[t] + p0 + i] for i <
                            // TILE: at most (c_in − 1)·plane + (kh − 1)·wp + kw − 1 + m − 1, below
                            // c_in·plane + kw + TILE since m < r·wp + TILE; w holds kh·kw·c_in
                            // vectors of OUT; the tile writes block[p0·OUT ..][.. TILE·OUT], inside
                            // m·OUT; pays() checked AVX-512.
                            unsafe {
                                tile(
                                    band.as_ptr().add(p0),
                                    plane,
                                    &offsets,
                                    c_in,
                                    w.as_ptr(),
                                    block.as_mut_ptr().add(p0 * OUT),
                                )
                            };
                        }
                    }
                    for (k, blk) in [&*block, &*block2].into_iter().enumerate().take(if pair { 2 } else { 1 }) {
                        let first = (chunk + k) * OUT;
                        let add: [f32; OUT] = std::array::from_fn(|j| bias.map_or(0.0, |b| b[first + j]));
                        // SAFETY: rows r0 .. r0 + r of channels first .. first + OUT of image n:
                        // inside y, disjoint from other tasks' rows; blk holds r·wp positions.
                        unsafe {
                            copy_out(blk, wp, r, wo, &add, y.get().add(((n * c_out + first) * ho + r0) * wo), ho * wo)
                        };
                    }
                    chunk += if pair { 2 } else { 1 };
                }
            });
        });
    }

    /// Weight gradient: `dw[o, c, ry, rx] = Σ_{n, r, col} dy[n, o, r, col] · x[n, c, r + ry −
    /// pad[0], col + rx − pad[1]]`, overwriting `dw`. Callers check [`pays_weight_gradient`].
    ///
    /// Per band, the output gradient of a chunk of [`OUT`] channels is transposed to one vector
    /// per position (zero at the wasted ones), and [`rows_tile`] sums, over every position, its
    /// product with 8 band rows × 3 taps broadcast from memory: one partial sum of `[c_in·kh,
    /// 3, OUT]` per chunk and thread, added up at the end.
    pub(crate) fn weight_gradient(&self, dy: &[f32], dw: &mut [f32]) {
        let Direct { batch, c_in, kernel: [kh, kw], c_out, out_hw: [ho, wo], .. } = *self;
        debug_assert_eq!(kw, ROW_TAPS);
        let wp = wo + kw - 1;
        let rows = self.band_rows(wp);
        let bands = ho.div_ceil(rows);
        // Band rows (c, ry) in groups of ROWS, the last group padded with row 0 (its sums dropped).
        let band_rows = c_in * kh;
        let padded = band_rows.next_multiple_of(ROWS);
        let chunks = c_out / OUT;
        let sums_len = chunks * padded * ROW_TAPS * OUT;
        let tasks = batch * bands;
        let threads = rayon::current_num_threads().min(tasks).max(1);
        let partial: Vec<Vec<f32>> = (0..threads)
            .into_par_iter()
            .map(|part| {
                let mut sums = vec![0f32; sums_len];
                BUFFERS.with(|bufs| {
                    let (band, dyt) = &mut *bufs.borrow_mut();
                    for t in part * tasks / threads..(part + 1) * tasks / threads {
                        let (n, b) = (t / bands, t % bands);
                        let (r0, r) = (b * rows, rows.min(ho - b * rows));
                        let plane = (r + kh - 1) * wp;
                        let m = r * wp;
                        // Rows read up to kw − 1 values past the last plane.
                        let band = grow(band, c_in * plane + kw);
                        self.fill_band(n, r0, wp, plane, band);
                        let bases: Vec<usize> = (0..padded)
                            .map(|row| if row < band_rows { (row / kh) * plane + (row % kh) * wp } else { 0 })
                            .collect();
                        let dyt = grow(dyt, m * OUT);
                        for chunk in 0..chunks {
                            // Written in order, the OUT channel rows read side by side.
                            let base = ((n * c_out + chunk * OUT) * ho + r0) * wo;
                            for (i, row) in dyt.chunks_exact_mut(wp * OUT).enumerate() {
                                let (valid, wasted) = row.split_at_mut(wo * OUT);
                                for (col, v) in valid.chunks_exact_mut(OUT).enumerate() {
                                    for (j, d) in v.iter_mut().enumerate() {
                                        *d = dy[base + j * ho * wo + i * wo + col];
                                    }
                                }
                                wasted.fill(0.0);
                            }
                            let out = &mut sums[chunk * padded * ROW_TAPS * OUT..][..padded * ROW_TAPS * OUT];
                            for (group, out) in
                                bases.chunks_exact(ROWS).zip(out.chunks_exact_mut(ROWS * ROW_TAPS * OUT))
                            {
                                let group: &[usize; ROWS] = group.try_into().expect("ROWS bases");
                                // SAFETY: row bases + p + rx < c_in·plane + kw for p < m = r·wp
                                // (base ≤ (c_in − 1)·plane + (kh − 1)·wp); dyt holds m vectors;
                                // out holds ROWS·ROW_TAPS vectors; pays_weight_gradient checked
                                // AVX-512.
                                unsafe { rows_tile(band.as_ptr(), group, dyt.as_ptr(), m, out.as_mut_ptr()) };
                            }
                        }
                    }
                });
                sums
            })
            .collect();
        for o in 0..c_out {
            for c in 0..c_in {
                for ry in 0..kh {
                    for rx in 0..kw {
                        let at = (((o / OUT) * padded + c * kh + ry) * ROW_TAPS + rx) * OUT + o % OUT;
                        dw[((o * c_in + c) * kh + ry) * kw + rx] = partial.iter().map(|p| p[at]).sum();
                    }
                }
            }
        }
    }
}

/// [`tile`] for two chunks of output channels at once: `out` (weights `w`) and `out2` (`w2`),
/// [`PAIR_TILE`] positions each.
///
/// # Safety
/// As for [`tile`], for both chunks.
#[allow(unused_variables, clippy::too_many_arguments)]
unsafe fn tile_pair(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: *const f32,
    w2: *const f32,
    out: *mut f32,
    out2: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        tile_pair_avx512(band, plane, offsets, c_in, w, w2, out, out2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_pair_avx512(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: *const f32,
    w2: *const f32,
    out: *mut f32,
    out2: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); PAIR_TILE];
    let mut acc2 = [_mm512_setzero_ps(); PAIR_TILE];
    for (t, &off) in offsets.iter().enumerate() {
        for c in 0..c_in {
            // SAFETY: inside the buffers (the caller's contract).
            unsafe {
                let wv = _mm512_loadu_ps(w.add((t * c_in + c) * OUT));
                let wv2 = _mm512_loadu_ps(w2.add((t * c_in + c) * OUT));
                let src = band.add(c * plane + off);
                for i in 0..PAIR_TILE {
                    let b = _mm512_set1_ps(*src.add(i));
                    acc[i] = _mm512_fmadd_ps(wv, b, acc[i]);
                    acc2[i] = _mm512_fmadd_ps(wv2, b, acc2[i]);
                }
            }
        }
    }
    for i in 0..PAIR_TILE {
        // SAFETY: inside `out` and `out2` (the caller's contract).
        unsafe {
            _mm512_storeu_ps(out.add(i * OUT), acc[i]);
            _mm512_storeu_ps(out2.add(i * OUT), acc2[i]);
        }
    }
}

/// `out[i·OUT + j] = Σ_{t, c} w[(t·c_in + c)·OUT + j] · band[c·plane + offsets[t] + i]` for
/// `i < TILE`, `j < OUT`.
///
/// # Safety
/// Every address named above must be inside its buffer, and [`pays`] must have returned true.
#[allow(unused_variables)]
unsafe fn tile(band: *const f32, plane: usize, offsets: &[usize], c_in: usize, w: *const f32, out: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        tile_avx512(band, plane, offsets, c_in, w, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512(band: *const f32, plane: usize, offsets: &[usize], c_in: usize, w: *const f32, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); TILE];
    for (t, &off) in offsets.iter().enumerate() {
        for c in 0..c_in {
            // SAFETY: inside the buffers (the caller's contract).
            unsafe {
                let wv = _mm512_loadu_ps(w.add((t * c_in + c) * OUT));
                let src = band.add(c * plane + off);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(wv, _mm512_set1_ps(*src.add(i)), *a);
                }
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: inside `out` (the caller's contract).
        unsafe { _mm512_storeu_ps(out.add(i * OUT), *a) };
    }
}

/// Writes a block of `r` rows of `wp` positions × [`OUT`] channels (`block[(i·wp + col)·OUT +
/// j]`) into `OUT` channel planes of `r` rows of `wo` values (`dst[j·plane + i·wo + col]`),
/// adding `add[j]`; positions `wo .. wp` of each row are dropped.
///
/// Per row, 16 positions at a time are loaded as 16 vectors, transposed in registers and
/// stored as 16 channel rows; the strided scalar copy it replaced read one value per cache line
/// of the block, 16 times over (the forward of a 16→16 layer at 256² spent 22 % of its time
/// there; `examples/unet_layers`).
///
/// # Safety
/// `block` must hold `r·wp·OUT` values, `dst` the `OUT` planes' `r` rows.
unsafe fn copy_out(block: &[f32], wp: usize, r: usize, wo: usize, add: &[f32; OUT], dst: *mut f32, plane: usize) {
    debug_assert!(block.len() >= r * wp * OUT);
    // The vector transpose takes whole groups of 16 columns (none without x86-64; `pays` keeps
    // other targets off this path anyway).
    let whole = if cfg!(target_arch = "x86_64") { wo - wo % OUT } else { 0 };
    for i in 0..r {
        let src = &block[i * wp * OUT..];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the callers checked AVX-512 (`pays`); reads inside `src`, writes inside row i
        // of each plane (the caller's contract).
        unsafe {
            transpose_out_avx512(src.as_ptr(), whole, add, dst.add(i * wo), plane)
        };
        for col in whole..wo {
            for (j, &a) in add.iter().enumerate() {
                // SAFETY: row i of plane j (the caller's contract).
                unsafe { *dst.add(j * plane + i * wo + col) = src[col * OUT + j] + a };
            }
        }
    }
}

/// `dst[j·plane + col] = src[col·OUT + j] + add[j]` for `col < cols` (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_out_avx512(src: *const f32, cols: usize, add: &[f32; OUT], dst: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        let bias = _mm512_loadu_ps(add.as_ptr());
        for col0 in (0..cols).step_by(16) {
            // r[q]: position col0 + q, lanes = channels (plus the bias).
            let r: [__m512; 16] =
                std::array::from_fn(|q| _mm512_add_ps(_mm512_loadu_ps(src.add((col0 + q) * OUT)), bias));
            let t = transpose16(r);
            for (j, v) in t.iter().enumerate() {
                _mm512_storeu_ps(dst.add(j * plane + col0), *v);
            }
        }
    }
}

/// The 16 × 16 transpose of `r` (`out[j]` lane `q` = `r[q]` lane `j`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn transpose16(r: [std::arch::x86_64::__m512; 16]) -> [std::arch::x86_64::__m512; 16] {
    use std::arch::x86_64::*;
    // Pairs of rows interleaved by 32-bit lanes, then by 64-bit lanes, then 128-bit blocks
    // gathered twice: the standard 4-stage transpose.
    let t: [__m512; 16] = std::array::from_fn(|i| {
        let (a, b) = (r[i & !1], r[i | 1]);
        if i % 2 == 0 { _mm512_unpacklo_ps(a, b) } else { _mm512_unpackhi_ps(a, b) }
    });
    let u: [__m512; 16] = std::array::from_fn(|i| {
        // Within each group of 4: (t0, t2) lo/hi, (t1, t3) lo/hi.
        let g = i & !3;
        let (a, b) = (_mm512_castps_pd(t[g + (i >> 1 & 1)]), _mm512_castps_pd(t[g + 2 + (i >> 1 & 1)]));
        _mm512_castpd_ps(if i % 2 == 0 { _mm512_unpacklo_pd(a, b) } else { _mm512_unpackhi_pd(a, b) })
    });
    let v: [__m512; 16] = std::array::from_fn(|i| {
        // Within each group of 8: u[i] with u[i + 4] (0x88: even 128-bit blocks, 0xdd: odd).
        let g = i & !7;
        let (a, b) = (u[g + (i & 3)], u[g + 4 + (i & 3)]);
        if i & 4 == 0 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    });
    std::array::from_fn(|i| {
        let (a, b) = (v[i & 7], v[8 + (i & 7)]);
        if i & 8 == 0 { _mm512_shuffle_f32x4::<0x88>(a, b) } else { _mm512_shuffle_f32x4::<0xdd>(a, b) }
    })
}

/// `out[(g·ROW_TAPS + rx)·OUT + j] += Σ_{p < m} dyt[p·OUT + j] · band[bases[g] + p + rx]` for
/// `g < ROWS`, `rx < ROW_TAPS`, `j < OUT`.
///
/// # Safety
/// Every address named above must be inside its buffer, and [`pays`] must have returned true.
#[allow(unused_variables)]
unsafe fn rows_tile(band: *const f32, bases: &[usize; ROWS], dyt: *const f32, m: usize, out: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        rows_tile_avx512(band, bases, dyt, m, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_tile_avx512(band: *const f32, bases: &[usize; ROWS], dyt: *const f32, m: usize, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); ROWS * ROW_TAPS];
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        let rows: [*const f32; ROWS] = std::array::from_fn(|g| band.add(bases[g]));
        for p in 0..m {
            let d = _mm512_loadu_ps(dyt.add(p * OUT));
            for (g, row) in rows.iter().enumerate() {
                for rx in 0..ROW_TAPS {
                    let a = &mut acc[g * ROW_TAPS + rx];
                    *a = _mm512_fmadd_ps(d, _mm512_set1_ps(*row.add(p + rx)), *a);
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let o = out.add(i * OUT);
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), *a));
        }
    }
}
