//! Direct convolutions for stride-1 and stride-2 layers with few channels (the 16–64-channel
//! layers of a U-Net at full and half resolution): the forward pass and the data gradient
//! without im2col and without the `gemm` crate.
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
//! multiply-adds. At stride 1 with a 3-wide kernel (most layers, forward and data gradient),
//! [`row_tile`] walks a kernel row's input values instead of positions and keeps the row's
//! three weight vectors in registers, so each broadcast feeds three taps ([`ROW_PAIR_TILE`]).
//!
//! Stride 2 (the U-Net's folded decoder step, `bioseg-train`'s `upsample_conv2x2`, is a
//! transposed convolution 3×3 / 2 whose data gradient is a stride-2 convolution): the band
//! holds each phase's rows (even input rows, then odd ones) at full width and a position
//! reads every other value, so the same tiles run with `S = 2` ([`Direct::layout`]). The
//! transposed convolution itself (the stride-2 data gradient) runs as four stride-1
//! convolutions, one per phase of its output, written interleaved ([`Direct::phases`]).
//! Measured (`FOLDED=1 examples/unet_layers`, forward / data / weight gradient GFLOP/s,
//! im2col + gemm, col2im for the forward → direct): 32→16 at 256² 112 / 124 / 122 → 206 /
//! 238 / 231, 64→32 at 128² 166 / 165 / 164 → 254 / 257 / 252; the F=16 U-Net step's
//! transposed convolutions 23.7 → 16.8 ms.
//!
//! The weight gradient ([`Direct::weight_gradient`]) turns the same band round: per position,
//! one vector of 16 output-channel gradients times 8 band rows × 3 taps broadcast from memory.
//! At stride 1 [`rows_tile`] walks input values instead of positions, so each broadcast feeds
//! three taps (8 broadcasts per 24 multiply-adds instead of 24): 16→16 at 256² weight gradient
//! 201–235 → 255–272 GFLOP/s (three alternating runs of `LAYER=1 examples/unet_layers`).
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
use crate::geometry::Conv2dGeometry;

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

/// Positions per tile when two chunks of output channels run in [`row_tile`]: 2 × 8 sums, 2
/// × 3 weights and three broadcasts in registers. [`row_tile`] walks a row's input values
/// instead of positions, so one broadcast feeds the row's three taps (`P + 2` broadcasts per
/// `3·P·K` multiply-adds; [`tile`] makes one per multiply-add, [`tile_pair`] one per two).
/// Measured (`examples/unet_layers`, 2 threads, Intel Xeon AVX-512 at 2.6 GHz, forward / data
/// gradient GFLOP/s, two alternating rounds, [`tile`]/[`tile_pair`] → row tiles): 16→16 at
/// 256² 210–217 / 212–220 → 238–249 / 244–250, 32→16 at 256² 251–253 / 244–248 → 274–283 /
/// 250–261, 64→32 at 128² 265 / 277 → 310 / 314; all 22 layers with weight gradients
/// 167–171 → 163–165 ms (the single-chunk row tile alone: 168–169 ms).
const ROW_PAIR_TILE: usize = 8;

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

/// Whether the direct kernel runs a dilation-1 convolution ([`STRIDES`]) reading `c_in` channels
/// and writing `c_out` on this machine: AVX-512, whole vectors of output channels, and
/// [`CHANNELS`] input channels. `BIOSEG_DIRECT_CONV=0` turns it off (for comparisons).
pub(crate) fn pays(c_in: usize, c_out: usize) -> bool {
    runs(c_in, c_out) && CHANNELS.contains(&c_in)
}

/// Whether the direct kernel can run a layer reading `c_in` channels (at least
/// [`CHANNELS`]' start) and writing `c_out` on this machine, wherever it pays.
fn runs(c_in: usize, c_out: usize) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let on = *ON.get_or_init(|| {
        let env = std::env::var("BIOSEG_DIRECT_CONV").map_or(true, |v| v != "0");
        #[cfg(target_arch = "x86_64")]
        let cpu = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let cpu = false;
        env && cpu
    });
    on && c_out.is_multiple_of(OUT) && c_in >= *CHANNELS.start()
}

/// Whether [`Direct::weight_gradient`] runs a dilation-1 convolution: as [`pays`],
/// for kernels three taps wide.
pub(crate) fn pays_weight_gradient(c_in: usize, c_out: usize, kw: usize) -> bool {
    kw == ROW_TAPS && pays(c_in, c_out)
}

/// The input of a [`Direct`] convolution: channels-first images, whole or as parts
/// concatenated along the channels (inference folds a channel `Concat` into the convolution:
/// the band is filled from each channel's own part, and the concatenated copy is never made).
#[derive(Clone, Copy)]
pub(crate) enum Planes<'a> {
    /// `[batch, c_in, h, w]`.
    Whole(&'a [f32]),
    /// Parts `[batch, channels, h, w]` with their channel counts; `lookup[c]` is the part and
    /// the channel within it of input channel `c` (`channel_lookup`).
    Parts { parts: &'a [(&'a [f32], usize)], lookup: &'a [(usize, usize)] },
}

impl<'a> Planes<'a> {
    /// Channel `c` of image `n` (`c_in` channels of `hw` values).
    fn plane(&self, n: usize, c: usize, c_in: usize, hw: usize) -> &'a [f32] {
        match *self {
            Planes::Whole(x) => &x[(n * c_in + c) * hw..][..hw],
            Planes::Parts { parts, lookup } => {
                let (p, local) = lookup[c];
                let (data, channels) = parts[p];
                &data[(n * channels + local) * hw..][..hw]
            }
        }
    }
}

impl<'a> From<&'a [f32]> for Planes<'a> {
    fn from(x: &'a [f32]) -> Self {
        Planes::Whole(x)
    }
}

/// A dilation-1 convolution of a batch of channels-first images, stride 1 or 2 (the same on
/// both axes).
#[derive(Clone, Copy)]
pub(crate) struct Direct<'a> {
    /// The input, `[batch, c_in, h, w]`.
    pub x: Planes<'a>,
    pub batch: usize,
    pub c_in: usize,
    pub in_hw: [usize; 2],
    /// Zero padding above and left of the input (below and right follow from the output size).
    pub pad: [usize; 2],
    pub kernel: [usize; 2],
    /// 1 or 2 ([`STRIDES`]).
    pub stride: usize,
    pub c_out: usize,
    pub out_hw: [usize; 2],
}

/// A stride-1 convolution of channels-first images with its weights laid out once for the
/// direct kernels: inference (bioseg-infer's convolution op) builds one per layer and runs it
/// on every tile, its channels possibly coming from several concatenated parts.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectConv {
    c_in: usize,
    c_out: usize,
    kernel: [usize; 2],
    /// Zero padding above and left (below and right follow from the output size).
    pad: [usize; 2],
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl DirectConv {
    /// The convolution with weights `oihw` (`[c_out, c_in, kh, kw]`), `bias` (`[c_out]`) and
    /// zero padding `pad` above and left, or `None` when the direct kernels do not run it on
    /// this machine: AVX-512, whole vectors of 16 outputs, 8 to `max_c_in` input channels (the
    /// caller's measured limit: a forward pass alone, over large tiles, gains up to more
    /// channels than training's passes, whose limit is `pays`').
    pub fn new(
        oihw: &[f32],
        bias: &[f32],
        [c_out, c_in]: [usize; 2],
        kernel: [usize; 2],
        pad: [usize; 2],
        max_c_in: usize,
    ) -> Option<Self> {
        let ok = runs(c_in, c_out)
            && c_in <= max_c_in
            && oihw.len() == c_out * c_in * kernel[0] * kernel[1]
            && bias.len() == c_out;
        ok.then(|| DirectConv {
            c_in,
            c_out,
            kernel,
            pad,
            weights: kernel_weights(oihw, c_out, c_in, kernel, false),
            bias: bias.to_vec(),
        })
    }

    /// `y = conv(x) + bias` (then `max(y, 0)` when `relu`) for `batch` images of `in_hw` whose
    /// channels are the concatenation of `parts` (each `[batch, channels, h, w]` with its
    /// channel count), into `y` (`[batch, c_out, out_hw]`, every value written); taps outside
    /// the image read zeros, so any padding below and right is implied by `out_hw`. The rows
    /// of the output are spread over rayon's threads.
    pub fn run(
        &self,
        parts: &[(&[f32], usize)],
        batch: usize,
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        relu: bool,
        y: &mut [f32],
    ) -> Result<(), crate::KernelError> {
        let check = |what, got: usize, expected: usize| {
            if got == expected { Ok(()) } else { Err(crate::KernelError::Length { what, got, expected }) }
        };
        check("input channels", parts.iter().map(|p| p.1).sum(), self.c_in)?;
        for &(data, channels) in parts {
            check("input part", data.len(), batch * channels * in_hw[0] * in_hw[1])?;
        }
        check("output", y.len(), batch * self.c_out * out_hw[0] * out_hw[1])?;
        if out_hw.contains(&0) {
            return Ok(());
        }
        let channels: Vec<usize> = parts.iter().map(|p| p.1).collect();
        let lookup = crate::input::channel_lookup(&channels);
        let x = if parts.len() == 1 { Planes::Whole(parts[0].0) } else { Planes::Parts { parts, lookup: &lookup } };
        let conv = Direct {
            x,
            batch,
            c_in: self.c_in,
            in_hw,
            pad: self.pad,
            kernel: self.kernel,
            stride: 1,
            c_out: self.c_out,
            out_hw,
        };
        conv.run(&self.weights, Some(&self.bias), relu, y);
        Ok(())
    }
}

/// The strides the direct kernels run.
pub(crate) const STRIDES: [usize; 2] = [1, 2];

/// Where a task's band of rows is read (see [`Direct::layout`]).
#[derive(Clone, Copy, Debug)]
struct Layout {
    /// Positions per band row: output columns, then the wasted ones.
    wp: usize,
    /// Values per band row: `stride · wp`.
    row: usize,
    /// Phase-plane rows an output row's taps span beyond the first (`kh − 1` at stride 1).
    span: usize,
    /// The phase-plane row of a band's first row, relative to its first output row.
    first: isize,
}

thread_local! {
    /// Each thread's padded input band and output block, reused across calls.
    static BUFFERS: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// The weights as [`tile`] reads them, `[c_out / OUT][taps][c_in][OUT]`: element `(o, t, c)` is
/// `weight[src(o, t, c)]`. Filled over the threads, each task writing one `(chunk, tap)` run
/// (the serial loops, scattered writes, held ~1 % of a U-Net step on the calling thread).
pub(crate) fn tile_weights(
    weight: &[f32],
    c_out: usize,
    c_in: usize,
    taps: usize,
    src: impl Fn(usize, usize, usize) -> usize + Sync,
) -> Vec<f32> {
    let mut out = vec![0f32; taps * c_in * c_out];
    out.par_chunks_mut((c_in * OUT).max(1)).enumerate().for_each(|(i, run)| {
        let (chunk, t) = (i / taps, i % taps);
        for (c, v) in run.chunks_exact_mut(OUT).enumerate() {
            for (j, v) in v.iter_mut().enumerate() {
                *v = weight[src(chunk * OUT + j, t, c)];
            }
        }
    });
    out
}

/// [`tile_weights`] of a convolution's `weight` `[c_out, c_in, kh, kw]`: element `(o, tap, c)`
/// is `weight[o, c, ry, rx]`, or `weight[c, o, kh−1−ry, kw−1−rx]` when `flipped` (the data
/// gradient: `weight` `[c_in, c_out, kh, kw]`).
pub(crate) fn kernel_weights(
    weight: &[f32],
    c_out: usize,
    c_in: usize,
    [kh, kw]: [usize; 2],
    flipped: bool,
) -> Vec<f32> {
    tile_weights(weight, c_out, c_in, kh * kw, |o, t, c| {
        let (ry, rx) = (t / kw, t % kw);
        if flipped {
            ((c * c_out + o) * kh + kh - 1 - ry) * kw + kw - 1 - rx
        } else {
            ((o * c_in + c) * kh + ry) * kw + rx
        }
    })
}

impl<'a> Direct<'a> {
    /// The band's layout. At stride `s`, output pixel `(r, col)` reads input row `s·r − pad +
    /// ky`, which is row `r + q(ky)` of phase `(ky − pad) mod s` (the input rows `≡` that phase
    /// mod `s`), `q(ky) = ⌊(ky − pad)/s⌋`. A band holds, per phase and per channel, the phase
    /// rows its output rows read, each a whole input row padded left by `pad` zeros and `s·wp`
    /// wide; position `p = i·wp + col` then reads tap `(ky, kx)` at `s·p + kx` past the tap's
    /// row of band row `i`: a constant offset per tap, as at stride 1 (one phase, `wp = wo +
    /// kw − 1`). Stride 2 thus needs no im2col and no de-interleaved copy of the input, and
    /// the broadcasts read every other value.
    fn layout(&self) -> Layout {
        let s = self.stride as isize;
        let q = |k: usize, pad: usize| (k as isize - pad as isize).div_euclid(s);
        let [kh, kw] = self.kernel;
        let first = q(0, self.pad[0]);
        // The last tap of a row, s·(wo − 1) + kw − 1, inside s·wp values.
        let wp = self.out_hw[1] + kw.div_ceil(self.stride) - 1;
        Layout { wp, row: self.stride * wp, span: (q(kh - 1, self.pad[0]) - first) as usize, first }
    }

    /// The offset of tap row `ky` in a band of phase planes of `plane` values (channel 0):
    /// its phase's planes, then its row.
    fn tap_row(&self, ky: usize, l: &Layout, plane: usize) -> usize {
        let d = ky as isize - self.pad[0] as isize;
        let phase = d.rem_euclid(self.stride as isize) as usize;
        phase * self.c_in * plane + (d.div_euclid(self.stride as isize) - l.first) as usize * l.row
    }

    /// Output rows per band: the band within [`BAND_BUDGET`] values and [`BAND_POSITIONS`]
    /// positions, evened out over the image, and narrower when the batch would give fewer than
    /// two bands per thread.
    fn band_rows(&self, l: &Layout) -> usize {
        let ho = self.out_hw[0];
        let wp = l.wp;
        let by_input = (BAND_BUDGET / (self.c_in * self.stride * l.row).max(1)).saturating_sub(l.span);
        let most = by_input.min(BAND_POSITIONS / wp).clamp(1, ho);
        let mut bands = ho.div_ceil(most);
        let wanted = 2 * rayon::current_num_threads();
        if self.batch * bands < wanted {
            bands = wanted.div_ceil(self.batch).min(ho);
        }
        ho.div_ceil(bands)
    }

    /// Copies the input rows that output rows `r0 ..` of image `n` read into `band` (per
    /// phase, `c_in` planes of `plane` values, rows of `l.row`; see [`Direct::layout`]), zero
    /// where a tap falls outside the image.
    fn fill_band(&self, n: usize, r0: usize, l: &Layout, plane: usize, band: &mut [f32]) {
        let Direct { x, c_in, in_hw: [h, w], pad, stride: s, .. } = *self;
        let (lo, hi) = (pad[1].min(l.row), (w + pad[1]).min(l.row));
        for (k, dst) in band.chunks_exact_mut(plane).take(s * c_in).enumerate() {
            let (phase, c) = (k / c_in, k % c_in);
            let src = x.plane(n, c, c_in, h * w);
            for (i, row) in dst.chunks_exact_mut(l.row).enumerate() {
                // Band row i is phase row r0 + i + first, input row s·(that) + phase; column j
                // input column j − pad[1].
                let yi = s as isize * ((r0 + i) as isize + l.first) + phase as isize;
                if yi < 0 || yi >= h as isize {
                    row.fill(0.0);
                    continue;
                }
                row[..lo].fill(0.0);
                row[hi..].fill(0.0);
                row[lo..hi].copy_from_slice(&src[yi as usize * w + lo - pad[1]..][..hi - lo]);
            }
        }
    }

    /// `y = conv(x) + bias`, then `max(y, 0)` when `relu` (in the copy out of each block);
    /// `weights` from [`kernel_weights`]; every element of `y` is written. Callers check
    /// [`pays`] first.
    pub(crate) fn run(&self, weights: &[f32], bias: Option<&[f32]>, relu: bool, y: &mut [f32]) {
        match self.stride {
            1 => self.run_strided::<1>(weights, bias, relu, y),
            2 => self.run_strided::<2>(weights, bias, relu, y),
            s => unreachable!("stride {s}: callers check `STRIDES`"),
        }
    }

    /// [`Direct::run`] at stride `S`.
    fn run_strided<const S: usize>(&self, weights: &[f32], bias: Option<&[f32]>, relu: bool, y: &mut [f32]) {
        let Direct { batch, c_in, kernel: [kh, kw], c_out, out_hw: [ho, wo], .. } = *self;
        debug_assert_eq!(self.stride, S);
        let l = self.layout();
        let wp = l.wp;
        let rows = self.band_rows(&l);
        let bands = ho.div_ceil(rows);
        let chunk_len = kh * kw * c_in * OUT;
        let y = SendPtr(y.as_mut_ptr());
        (0..batch * bands).into_par_iter().for_each(|t| {
            let (n, b) = (t / bands, t % bands);
            let (r0, r) = (b * rows, rows.min(ho - b * rows));
            let plane = (r + l.span) * l.row;
            let offsets: Vec<usize> = (0..kh * kw).map(|t| self.tap_row(t / kw, &l, plane) + t % kw).collect();
            // Tiles run past the band's r·wp positions by less than TILE.
            let m = (r * wp).next_multiple_of(TILE);
            BUFFERS.with(|bufs| {
                let (band, block) = &mut *bufs.borrow_mut();
                // The last phase's last channel's tiles read up to kw + S·TILE values past it.
                let band = grow(band, S * c_in * plane + kw + S * TILE);
                let block = grow(block, 2 * m * OUT);
                self.fill_band(n, r0, &l, plane, band);
                let (block, block2) = block.split_at_mut(m * OUT);
                let mut chunk = 0;
                while chunk < c_out / OUT {
                    // Two chunks at a time where there are two: each broadcast input value then
                    // feeds two multiply-adds (the module's note on PAIR_TILE).
                    let pair = chunk + 1 < c_out / OUT;
                    let w = &weights[chunk * chunk_len..][..chunk_len];
                    let w2 = pair.then(|| &weights[(chunk + 1) * chunk_len..][..chunk_len]);
                    // SAFETY: the band holds S·c_in·plane + kw + S·TILE values (see `products`).
                    unsafe { products::<S>(band, plane, &offsets, c_in, w, w2, m, block, block2) };
                    for (k, blk) in [&*block, &*block2].into_iter().enumerate().take(if pair { 2 } else { 1 }) {
                        let first = (chunk + k) * OUT;
                        let out = Epilogue { add: std::array::from_fn(|j| bias.map_or(0.0, |b| b[first + j])), relu };
                        // SAFETY: rows r0 .. r0 + r of channels first .. first + OUT of image n:
                        // inside y, disjoint from other tasks' rows; blk holds r·wp positions.
                        unsafe {
                            copy_out(blk, wp, r, wo, &out, y.get().add(((n * c_out + first) * ho + r0) * wo), ho * wo)
                        };
                    }
                    chunk += if pair { 2 } else { 1 };
                }
            });
        });
    }

    /// The data gradient of a stride-2, dilation-1 convolution `g` (its transposed
    /// convolution), plus `bias` per channel, into `dx` (overwritten). Callers check
    /// [`pays_phases`] (and `pays` for the channels).
    ///
    /// Each phase `(py, px)` of `dx` (the pixels at `(2u + py, 2v + px)`) is a stride-1
    /// convolution of `dy` whose taps are those of the kernel with `ky ≡ py + pad` (mod 2),
    /// tap `ky` reading `dy` row `u + (py + pad − ky)/2`; all four read one band of `dy` (this
    /// `Direct`: stride 1, its `pad` and `kernel` covering every phase's taps) and are written
    /// interleaved ([`copy_out_interleaved`]): no col2im scatter, no zero-filled buffer, and
    /// 2.25 instead of 4 multiply-adds per pixel for the U-Net's 3×3 kernel.
    pub(crate) fn phases(g: &Conv2dGeometry, dy: &'a [f32]) -> Option<Phases<'a>> {
        // Per axis and phase, the taps (k, d): kernel index and dy offset.
        let taps = |a: usize| -> [Vec<(usize, isize)>; 2] {
            std::array::from_fn(|ph| {
                (0..g.kernel[a])
                    .filter_map(|k| {
                        let d = (ph + g.padding[a]) as isize - k as isize;
                        (d.rem_euclid(2) == 0).then_some((k, d / 2))
                    })
                    .collect()
            })
        };
        let (ty, tx) = (taps(0), taps(1));
        if g.stride != [2, 2] || g.dilation != [1, 1] || ty.iter().chain(&tx).any(Vec::is_empty) {
            return None;
        }
        let range = |t: &[Vec<(usize, isize)>; 2]| {
            let d = t.iter().flatten().map(|&(_, d)| d);
            (d.clone().min().unwrap_or(0), d.max().unwrap_or(0))
        };
        let ((y0, y1), (x0, x1)) = (range(&ty), range(&tx));
        if y0 > 0 || x0 > 0 {
            return None;
        }
        let conv = Direct {
            x: dy.into(),
            batch: g.batch,
            c_in: g.c_out,
            in_hw: g.out_hw,
            pad: [-y0 as usize, -x0 as usize],
            kernel: [(y1 - y0 + 1) as usize, (x1 - x0 + 1) as usize],
            stride: 1,
            c_out: g.c_in,
            out_hw: g.in_hw.map(|v| v.div_ceil(2)),
        };
        let wp = conv.layout().wp;
        let phases = std::array::from_fn(|p| {
            let (py, px) = (p / 2, p % 2);
            ty[py]
                .iter()
                .flat_map(|&(ky, dy)| {
                    tx[px].iter().map(move |&(kx, dx)| (ky, kx, (dy - y0) as usize * wp + (dx - x0) as usize))
                })
                .collect()
        });
        Some(Phases { conv, out_hw: g.in_hw, kernel: g.kernel, phases })
    }

    /// Weight gradient: `dw[o, c, ry, rx] = Σ_{n, r, col} dy[n, o, r, col] · x[n, c, s·r + ry −
    /// pad[0], s·col + rx − pad[1]]`, overwriting `dw`. Callers check [`pays_weight_gradient`].
    ///
    /// Per band, the output gradient of a chunk of [`OUT`] channels is transposed to one vector
    /// per position (zero at the wasted ones), and [`rows_tile`] sums, over every position, its
    /// product with 8 band rows × 3 taps broadcast from memory: one partial sum of `[c_in·kh,
    /// 3, OUT]` per chunk and thread, added up at the end.
    pub(crate) fn weight_gradient(&self, dy: &[f32], dw: &mut [f32]) {
        match self.stride {
            1 => self.weight_gradient_strided::<1>(dy, dw),
            2 => self.weight_gradient_strided::<2>(dy, dw),
            s => unreachable!("stride {s}: callers check `STRIDES`"),
        }
    }

    /// [`Direct::weight_gradient`] at stride `S`.
    fn weight_gradient_strided<const S: usize>(&self, dy: &[f32], dw: &mut [f32]) {
        let Direct { batch, c_in, kernel: [kh, kw], c_out, out_hw: [ho, wo], .. } = *self;
        debug_assert_eq!((kw, self.stride), (ROW_TAPS, S));
        let l = self.layout();
        let wp = l.wp;
        let rows = self.band_rows(&l);
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
                        let plane = (r + l.span) * l.row;
                        let m = r * wp;
                        // Rows read up to kw − 1 values past the last plane.
                        let band = grow(band, S * c_in * plane + kw);
                        self.fill_band(n, r0, &l, plane, band);
                        let bases: Vec<usize> = (0..padded)
                            .map(|row| {
                                if row < band_rows { (row / kh) * plane + self.tap_row(row % kh, &l, plane) } else { 0 }
                            })
                            .collect();
                        let dyt = grow(dyt, m * OUT);
                        for chunk in 0..chunks {
                            // Written in order, the OUT channel rows read side by side.
                            let base = ((n * c_out + chunk * OUT) * ho + r0) * wo;
                            for (i, row) in dyt.chunks_exact_mut(wp * OUT).enumerate() {
                                let (valid, wasted) = row.split_at_mut(wo * OUT);
                                copy_in(&dy[base + i * wo..], ho * wo, valid);
                                wasted.fill(0.0);
                            }
                            let out = &mut sums[chunk * padded * ROW_TAPS * OUT..][..padded * ROW_TAPS * OUT];
                            for (group, out) in
                                bases.chunks_exact(ROWS).zip(out.chunks_exact_mut(ROWS * ROW_TAPS * OUT))
                            {
                                let group: &[usize; ROWS] = group.try_into().expect("ROWS bases");
                                // SAFETY: row bases + S·p + rx < S·c_in·plane + kw for p < m =
                                // r·wp (base ≤ (S − 1)·c_in·plane + (c_in − 1)·plane + span·row,
                                // S·m = r·row); dyt holds m vectors; out holds ROWS·ROW_TAPS
                                // vectors; pays_weight_gradient checked AVX-512.
                                unsafe { rows_tile::<S>(band.as_ptr(), group, dyt.as_ptr(), m, out.as_mut_ptr()) };
                            }
                        }
                    }
                });
                sums
            })
            .collect();
        // The threads' sums added up, one output channel's weights per task.
        dw.par_chunks_mut(c_in * kh * kw).enumerate().for_each(|(o, dw)| {
            for (i, dw) in dw.iter_mut().enumerate() {
                // i = (c·kh + ry)·kw + rx, and kw = ROW_TAPS: sums row c·kh + ry, tap rx.
                let at = (((o / OUT) * padded + i / kw) * ROW_TAPS + i % kw) * OUT + o % OUT;
                *dw = partial.iter().map(|p| p[at]).sum();
            }
        });
    }
}

/// The data gradient of a stride-2 convolution as four phases of stride-1 direct convolutions
/// ([`Direct::phases`]).
pub(crate) struct Phases<'a> {
    /// The convolution of `dy` every phase reads (its band), over the grid of phase pixels.
    conv: Direct<'a>,
    /// The size of `dx`.
    out_hw: [usize; 2],
    /// The strided convolution's kernel.
    kernel: [usize; 2],
    /// Per phase `py·2 + px`: its taps `(ky, kx, offset in a band plane)`.
    phases: [Vec<(usize, usize, usize)>; 4],
}

impl Phases<'_> {
    /// `dx = ∂(Σ dy·y)/∂x + bias`, `weight` `[c_out, c_in, kh, kw]` of the strided convolution
    /// (`dy`'s channels first); every element of `dx` is written.
    pub(crate) fn run(&self, weight: &[f32], bias: Option<&[f32]>, dx: &mut [f32]) {
        let Direct { batch, c_in, c_out, out_hw: [hu, _], .. } = self.conv;
        let [kh, kw] = self.kernel;
        let [h, w] = self.out_hw;
        let chunks = c_out / OUT;
        // Per phase, [chunk][tap][c][OUT] as `tile` reads them: element (o, tap, c) is the
        // weight from dy channel c to dx channel o.
        let weights: Vec<Vec<f32>> = self
            .phases
            .iter()
            .map(|taps| {
                tile_weights(weight, c_out, c_in, taps.len(), |o, t, c| {
                    let (ky, kx, _) = taps[t];
                    ((c * c_out + o) * kh + ky) * kw + kx
                })
            })
            .collect();
        let offsets: Vec<Vec<usize>> = self.phases.iter().map(|t| t.iter().map(|t| t.2).collect()).collect();
        let l = self.conv.layout();
        let rows = self.conv.band_rows(&l);
        let bands = hu.div_ceil(rows);
        let dx = SendPtr(dx.as_mut_ptr());
        (0..batch * bands).into_par_iter().for_each(|t| {
            let (n, b) = (t / bands, t % bands);
            let (r0, r) = (b * rows, rows.min(hu - b * rows));
            let plane = (r + l.span) * l.row;
            let m = (r * l.wp).next_multiple_of(TILE);
            BUFFERS.with(|bufs| {
                let (band, block) = &mut *bufs.borrow_mut();
                let band = grow(band, c_in * plane + self.conv.kernel[1] + TILE);
                let block = grow(block, 4 * m * OUT);
                self.conv.fill_band(n, r0, &l, plane, band);
                // Two chunks (where there are two) of both column phases of one row phase.
                let (even, odd) = block.split_at_mut(2 * m * OUT);
                let mut chunk = 0;
                while chunk < chunks {
                    let pair = chunk + 1 < chunks;
                    for py in 0..2 {
                        for (px, blocks) in [&mut *even, &mut *odd].into_iter().enumerate() {
                            let (w, len) = (&weights[py * 2 + px], offsets[py * 2 + px].len() * c_in * OUT);
                            let (b1, b2) = blocks.split_at_mut(m * OUT);
                            let w2 = pair.then(|| &w[(chunk + 1) * len..][..len]);
                            // SAFETY: the band holds c_in·plane + kw + TILE values of a stride-1
                            // band whose taps span the conv's kernel (see `products`).
                            unsafe {
                                products::<1>(
                                    band,
                                    plane,
                                    &offsets[py * 2 + px],
                                    c_in,
                                    &w[chunk * len..][..len],
                                    w2,
                                    m,
                                    b1,
                                    b2,
                                )
                            };
                        }
                        for k in 0..1 + usize::from(pair) {
                            let first = (chunk + k) * OUT;
                            let add: [f32; OUT] = std::array::from_fn(|j| bias.map_or(0.0, |b| b[first + j]));
                            let blocks = [&even[k * m * OUT..][..m * OUT], &odd[k * m * OUT..][..m * OUT]];
                            // SAFETY: rows 2·(r0 .. r0 + r) + py of channels first .. first +
                            // OUT of image n: inside dx, disjoint from other tasks' rows.
                            unsafe {
                                copy_out_interleaved(
                                    blocks,
                                    l.wp,
                                    (r0, r, py),
                                    [h, w],
                                    &add,
                                    dx.get().add((n * c_out + first) * h * w),
                                )
                            };
                        }
                    }
                    chunk += 1 + usize::from(pair);
                }
            });
        });
    }
}

/// The products of a band with one chunk of weights `w` into `block`, and with a second chunk
/// `w2` into `block2` where given, for positions `0 .. m` (a multiple of [`TILE`]).
///
/// # Safety
/// The tiles read `band[c·plane + offsets[t] + S·p]` for `c < c_in`, `p < m`: the callers'
/// bands hold `S·c_in·plane + kw + S·TILE` values with offsets below `(S − 1)·c_in·plane +
/// span·row + kw` and `S·m < r·row + S·TILE`, `plane = (r + span)·row` (see
/// [`Direct::layout`]); `w` and `w2` hold `offsets.len()·c_in` vectors of [`OUT`], the blocks
/// `m·OUT` values; [`pays`] returned true.
#[allow(clippy::too_many_arguments)]
unsafe fn products<const S: usize>(
    band: &[f32],
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: &[f32],
    w2: Option<&[f32]>,
    m: usize,
    block: &mut [f32],
    block2: &mut [f32],
) {
    debug_assert!(m.is_multiple_of(TILE) && block.len() >= m * OUT && w.len() >= offsets.len() * c_in * OUT);
    match w2 {
        // Taps in rows of three adjacent ones (stride 1, a 3-wide kernel: the forward and data
        // gradient of most U-Net layers): each broadcast input value feeds its row's three taps
        // (the module's note on ROW_PAIR_TILE).
        // SAFETY (both): the function's contract (ROW_PAIR_TILE divides TILE); a row's taps read
        // the values `tile` reads.
        Some(w2) if S == 1 && rows_of_three(offsets) => unsafe {
            row_tiles::<2, ROW_PAIR_TILE>(band, plane, offsets, c_in, [w, w2], [block, block2], m)
        },
        None if S == 1 && rows_of_three(offsets) => unsafe {
            row_tiles::<1, TILE>(band, plane, offsets, c_in, [w], [block], m)
        },
        // Two chunks at a time where there are two: each broadcast input value then feeds two
        // multiply-adds (the module's note on PAIR_TILE).
        Some(w2) => {
            for p0 in (0..m).step_by(PAIR_TILE) {
                // SAFETY: the function's contract, with PAIR_TILE < TILE positions (m is a
                // multiple of both).
                unsafe {
                    tile_pair::<S>(
                        band.as_ptr().add(S * p0),
                        plane,
                        offsets,
                        c_in,
                        w.as_ptr(),
                        w2.as_ptr(),
                        block.as_mut_ptr().add(p0 * OUT),
                        block2.as_mut_ptr().add(p0 * OUT),
                    )
                };
            }
        }
        None => {
            for p0 in (0..m).step_by(TILE) {
                // SAFETY: the function's contract.
                unsafe {
                    tile::<S>(
                        band.as_ptr().add(S * p0),
                        plane,
                        offsets,
                        c_in,
                        w.as_ptr(),
                        block.as_mut_ptr().add(p0 * OUT),
                    )
                };
            }
        }
    }
}

/// Writes the blocks of the two column phases (`blocks[px]`: `r` rows of `wp` positions ×
/// [`OUT`] channels) of row phase `py` into rows `2·(r0 + i) + py` of `OUT` channel planes of
/// size `[h, w]` at `dst`, position `v` of a row to columns `2v + px`, adding `add[j]`; rows
/// and columns past `h` and `w` are dropped (odd sizes), as are positions past the phase grid.
///
/// # Safety
/// Both blocks must hold `r·wp·OUT` values and `dst` the `OUT` planes.
unsafe fn copy_out_interleaved(
    blocks: [&[f32]; 2],
    wp: usize,
    (r0, r, py): (usize, usize, usize),
    [h, w]: [usize; 2],
    add: &[f32; OUT],
    dst: *mut f32,
) {
    debug_assert!(blocks.iter().all(|b| b.len() >= r * wp * OUT));
    // Whole groups of 16 positions (32 columns) interleaved in registers (none without x86-64;
    // `pays` keeps other targets off this path anyway).
    let half = w / 2;
    let whole = if cfg!(target_arch = "x86_64") { half - half % OUT } else { 0 };
    for i in 0..r {
        let row = 2 * (r0 + i) + py;
        if row >= h {
            break;
        }
        let src = blocks.map(|b| &b[i * wp * OUT..]);
        // SAFETY: row `row` of each plane (the caller's contract).
        let d = unsafe { dst.add(row * w) };
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the callers checked AVX-512 (`pays`); reads inside the blocks' row i, writes
        // inside columns 0 .. 2·whole ≤ w of the row.
        unsafe {
            interleave_out_avx512(src, whole, add, d, h * w)
        };
        for v in whole..w.div_ceil(2) {
            for (px, s) in src.iter().enumerate() {
                if 2 * v + px < w {
                    for (j, &a) in add.iter().enumerate() {
                        // SAFETY: column 2v + px < w of the row (the caller's contract).
                        unsafe { *d.add(j * h * w + 2 * v + px) = s[v * OUT + j] + a };
                    }
                }
            }
        }
    }
}

/// `dst[j·plane + 2·col + px] = src[px][col·OUT + j] + add[j]` for `col < cols` (a multiple of
/// 16): two 16 × 16 transposes, their rows interleaved.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_out_avx512(src: [&[f32]; 2], cols: usize, add: &[f32; OUT], dst: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    // Lane k of the low half takes lane k/2 of the even phase (k even) or of the odd one
    // (index 16 + k/2), the high half lanes 8 + k/2.
    let index = |base: i32| {
        let v: [i32; 16] = std::array::from_fn(|k| base + (k as i32 / 2) + if k % 2 == 1 { 16 } else { 0 });
        // SAFETY: 16 lanes read from a 16-element array.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    };
    let (lo, hi) = (index(0), index(8));
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        let bias = _mm512_loadu_ps(add.as_ptr());
        for col0 in (0..cols).step_by(16) {
            let [e, o] = src.map(|s| {
                debug_assert!(s.len() >= (col0 + 16) * OUT);
                transpose16(std::array::from_fn(|q| {
                    _mm512_add_ps(_mm512_loadu_ps(s.as_ptr().add((col0 + q) * OUT)), bias)
                }))
            });
            for j in 0..OUT {
                let d = dst.add(j * plane + 2 * col0);
                _mm512_storeu_ps(d, _mm512_permutex2var_ps(e[j], lo, o[j]));
                _mm512_storeu_ps(d.add(16), _mm512_permutex2var_ps(e[j], hi, o[j]));
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
unsafe fn tile_pair<const S: usize>(
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
        tile_pair_avx512::<S>(band, plane, offsets, c_in, w, w2, out, out2)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_pair_avx512<const S: usize>(
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
                    let b = _mm512_set1_ps(*src.add(S * i));
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

/// `out[i·OUT + j] = Σ_{t, c} w[(t·c_in + c)·OUT + j] · band[c·plane + offsets[t] + S·i]` for
/// `i < TILE`, `j < OUT`.
///
/// # Safety
/// Every address named above must be inside its buffer, and [`pays`] must have returned true.
#[allow(unused_variables)]
unsafe fn tile<const S: usize>(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: *const f32,
    out: *mut f32,
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        tile_avx512::<S>(band, plane, offsets, c_in, w, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const S: usize>(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: *const f32,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); TILE];
    for (t, &off) in offsets.iter().enumerate() {
        for c in 0..c_in {
            // SAFETY: inside the buffers (the caller's contract).
            unsafe {
                let wv = _mm512_loadu_ps(w.add((t * c_in + c) * OUT));
                let src = band.add(c * plane + off);
                for (i, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(wv, _mm512_set1_ps(*src.add(S * i)), *a);
                }
            }
        }
    }
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: inside `out` (the caller's contract).
        unsafe { _mm512_storeu_ps(out.add(i * OUT), *a) };
    }
}

/// Whether `offsets` are whole rows of three adjacent taps (`o, o + 1, o + 2`): a 3-wide
/// kernel's taps at stride 1, in [`Direct::run`]'s order.
fn rows_of_three(offsets: &[usize]) -> bool {
    offsets.len().is_multiple_of(3) && offsets.chunks_exact(3).all(|r| r[1] == r[0] + 1 && r[2] == r[0] + 2)
}

/// [`row_tile`] over positions `0 .. m`, `P` at a time: chunk `k`'s weights `w[k]` into
/// `blocks[k]`.
///
/// # Safety
/// As for [`products`], with `P` dividing `m`.
#[allow(clippy::too_many_arguments)]
unsafe fn row_tiles<const K: usize, const P: usize>(
    band: &[f32],
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: [&[f32]; K],
    blocks: [&mut [f32]; K],
    m: usize,
) {
    let w = w.map(|w| w.as_ptr());
    let out = blocks.map(|b| b.as_mut_ptr());
    for p0 in (0..m).step_by(P) {
        // SAFETY: the caller's contract.
        unsafe { row_tile::<K, P>(band.as_ptr().add(p0), plane, offsets, c_in, w, out.map(|o| o.add(p0 * OUT))) };
    }
}

/// [`tile`] at stride 1 for `K` chunks of output channels (weights `w[k]` into `out[k]`) and
/// `P` positions, taps in rows of three adjacent ones ([`rows_of_three`]).
///
/// # Safety
/// As for [`tile`], for each chunk, with `P` positions.
#[allow(unused_variables)]
unsafe fn row_tile<const K: usize, const P: usize>(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: [*const f32; K],
    out: [*mut f32; K],
) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        row_tile_avx512::<K, P>(band, plane, offsets, c_in, w, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn row_tile_avx512<const K: usize, const P: usize>(
    band: *const f32,
    plane: usize,
    offsets: &[usize],
    c_in: usize,
    w: [*const f32; K],
    out: [*mut f32; K],
) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); P]; K];
    for (g, row) in offsets.chunks_exact(3).enumerate() {
        for c in 0..c_in {
            // SAFETY: inside the buffers (the caller's contract): tap kx of position i reads
            // value i + kx of the row, as `tile` does.
            unsafe {
                let wv: [[__m512; 3]; K] = std::array::from_fn(|k| {
                    std::array::from_fn(|kx| _mm512_loadu_ps(w[k].add(((3 * g + kx) * c_in + c) * OUT)))
                });
                let src = band.add(c * plane + row[0]);
                // Values i, i + 1 and i + 2 for position i; each broadcast is made once and
                // passed on (a loop without branches, which the compiler unrolls with the sums
                // in registers).
                let (mut b0, mut b1) = (_mm512_set1_ps(*src), _mm512_set1_ps(*src.add(1)));
                for i in 0..P {
                    let b2 = _mm512_set1_ps(*src.add(i + 2));
                    for (a, wv) in acc.iter_mut().zip(&wv) {
                        a[i] = _mm512_fmadd_ps(wv[0], b0, a[i]);
                        a[i] = _mm512_fmadd_ps(wv[1], b1, a[i]);
                        a[i] = _mm512_fmadd_ps(wv[2], b2, a[i]);
                    }
                    (b0, b1) = (b1, b2);
                }
            }
        }
    }
    for (acc, out) in acc.iter().zip(out) {
        for (i, a) in acc.iter().enumerate() {
            // SAFETY: inside `out` (the caller's contract).
            unsafe { _mm512_storeu_ps(out.add(i * OUT), *a) };
        }
    }
}

/// What a block's values get on their way out: `add[j]` on channel `j` (the bias), then
/// `max(·, 0)` when `relu`.
struct Epilogue {
    add: [f32; OUT],
    relu: bool,
}

/// Writes a block of `r` rows of `wp` positions × [`OUT`] channels (`block[(i·wp + col)·OUT +
/// j]`) into `OUT` channel planes of `r` rows of `wo` values (`dst[j·plane + i·wo + col]`),
/// through `out`; positions `wo .. wp` of each row are dropped.
///
/// Per row, 16 positions at a time are loaded as 16 vectors, transposed in registers and
/// stored as 16 channel rows; the strided scalar copy it replaced read one value per cache line
/// of the block, 16 times over (the forward of a 16→16 layer at 256² spent 22 % of its time
/// there; `examples/unet_layers`).
///
/// # Safety
/// `block` must hold `r·wp·OUT` values, `dst` the `OUT` planes' `r` rows.
unsafe fn copy_out(block: &[f32], wp: usize, r: usize, wo: usize, out: &Epilogue, dst: *mut f32, plane: usize) {
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
            transpose_out_avx512(src.as_ptr(), whole, out, dst.add(i * wo), plane)
        };
        for col in whole..wo {
            for (j, &a) in out.add.iter().enumerate() {
                let v = src[col * OUT + j] + a;
                // SAFETY: row i of plane j (the caller's contract).
                unsafe { *dst.add(j * plane + i * wo + col) = if out.relu { v.max(0.0) } else { v } };
            }
        }
    }
}

/// `dst[col·OUT + j] = src[j·plane + col]` for the `dst.len() / OUT` columns of a row of `OUT`
/// channel planes: a chunk of the output gradient, one vector per position, as
/// [`rows_tile`] reads it. Whole groups of 16 columns go through 16 × 16 in-register
/// transposes (the strided scalar gather they replace held ~3 % of a 16→16 layer's samples).
fn copy_in(src: &[f32], plane: usize, dst: &mut [f32]) {
    let cols = dst.len() / OUT;
    assert!(cols == 0 || src.len() > (OUT - 1) * plane + cols - 1, "a row of {OUT} planes");
    let whole = if cfg!(target_arch = "x86_64") && pays(OUT, OUT) { cols - cols % 16 } else { 0 };
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `pays` checked AVX-512 (whole is 0 otherwise); the reads are inside `src` (the
    // assertion), the writes inside `dst`.
    unsafe {
        transpose_in_avx512(src.as_ptr(), plane, whole, dst.as_mut_ptr())
    };
    for col in whole..cols {
        for j in 0..OUT {
            dst[col * OUT + j] = src[j * plane + col];
        }
    }
}

/// `dst[col·OUT + j] = src[j·plane + col]` for `col < cols` (a multiple of 16).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_in_avx512(src: *const f32, plane: usize, cols: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        for col0 in (0..cols).step_by(16) {
            let t = transpose16(std::array::from_fn(|j| _mm512_loadu_ps(src.add(j * plane + col0))));
            for (q, v) in t.iter().enumerate() {
                _mm512_storeu_ps(dst.add((col0 + q) * OUT), *v);
            }
        }
    }
}

/// `dst[j·plane + col] = src[col·OUT + j]` through `out` for `col < cols` (a multiple of 16);
/// `vmaxps` returns its second operand, 0, for a NaN, as `f32::max` does.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_out_avx512(src: *const f32, cols: usize, out: &Epilogue, dst: *mut f32, plane: usize) {
    use std::arch::x86_64::*;
    let relu = out.relu;
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        let bias = _mm512_loadu_ps(out.add.as_ptr());
        let zero = _mm512_setzero_ps();
        for col0 in (0..cols).step_by(16) {
            // r[q]: position col0 + q, lanes = channels (plus the bias).
            let r: [__m512; 16] = std::array::from_fn(|q| {
                let v = _mm512_add_ps(_mm512_loadu_ps(src.add((col0 + q) * OUT)), bias);
                if relu { _mm512_max_ps(v, zero) } else { v }
            });
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

/// `out[(g·ROW_TAPS + rx)·OUT + j] += Σ_{p < m} dyt[p·OUT + j] · band[bases[g] + S·p + rx]` for
/// `g < ROWS`, `rx < ROW_TAPS`, `j < OUT`.
///
/// # Safety
/// Every address named above must be inside its buffer, and [`pays`] must have returned true.
#[allow(unused_variables)]
unsafe fn rows_tile<const S: usize>(band: *const f32, bases: &[usize; ROWS], dyt: *const f32, m: usize, out: *mut f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller; `pays` checked AVX-512.
    unsafe {
        rows_tile_avx512::<S>(band, bases, dyt, m, out)
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("the direct kernel needs AVX-512 (`pays`)");
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn rows_tile_avx512<const S: usize>(
    band: *const f32,
    bases: &[usize; ROWS],
    dyt: *const f32,
    m: usize,
    out: *mut f32,
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); ROWS * ROW_TAPS];
    // SAFETY: inside the buffers (the caller's contract).
    unsafe {
        let rows: [*const f32; ROWS] = std::array::from_fn(|g| band.add(bases[g]));
        if S == 1 {
            // Walked by input value q = p + rx instead: each broadcast row value feeds its
            // three taps, with the output gradients of positions q, q − 1 and q − 2 (zero
            // outside 0 .. m) held in registers: 8 broadcasts and one load per 24
            // multiply-adds instead of 24 and one.
            let zero = _mm512_setzero_ps();
            let (mut d1, mut d2) = (zero, zero);
            for q in 0..m + ROW_TAPS - 1 {
                let d0 = if q < m { _mm512_loadu_ps(dyt.add(q * OUT)) } else { zero };
                for (g, row) in rows.iter().enumerate() {
                    let b = _mm512_set1_ps(*row.add(q));
                    for (rx, d) in [d0, d1, d2].into_iter().enumerate() {
                        let a = &mut acc[g * ROW_TAPS + rx];
                        *a = _mm512_fmadd_ps(d, b, *a);
                    }
                }
                (d2, d1) = (d1, d0);
            }
        } else {
            for p in 0..m {
                let d = _mm512_loadu_ps(dyt.add(p * OUT));
                for (g, row) in rows.iter().enumerate() {
                    for rx in 0..ROW_TAPS {
                        let a = &mut acc[g * ROW_TAPS + rx];
                        *a = _mm512_fmadd_ps(d, _mm512_set1_ps(*row.add(S * p + rx)), *a);
                    }
                }
            }
        }
        for (i, a) in acc.iter().enumerate() {
            let o = out.add(i * OUT);
            _mm512_storeu_ps(o, _mm512_add_ps(_mm512_loadu_ps(o), *a));
        }
    }
}
