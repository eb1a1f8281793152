//! A faster CPU convolution plugged into tract: im2col in blocks + the `gemm` crate.
//!
//! tract 0.23's own convolution reaches 48–55 GFLOP/s on one AVX-512 core for the 3×3
//! convolutions of a U-Net, where ONNX Runtime reaches 150–230 (BENCHMARKS.md). [`GemmConv`]
//! replaces tract's `Conv` nodes that it can run (2-D, stride 1, dilation 1, one group, f32,
//! constant weights, any kernel size and padding, channels first or last) after tract has
//! decluttered the graph and before it optimises it; tract stays the engine for every other op.
//!
//! How it computes, per image, in blocks of 512 consecutive output pixels: an im2col block
//! (`C·kh·kw` rows, each a few contiguous row segments of the input, zero where the window
//! leaves the image: padding costs no copy of the input) and one matrix product
//! `[m, C·kh·kw + 1] × [C·kh·kw + 1, O]` whose extra row of ones times the bias folds the bias
//! in, written straight into the output tensor in its layout (strides), then a following ReLU
//! applied while the block is in cache. The product runs on the `gemm` crate
//! (runtime-dispatched AVX-512 / AVX2 / NEON kernels), one thread per block; the blocks are
//! spread over rayon's threads. With tiles in parallel (one per thread) each thread mostly runs
//! its own tile's blocks; a thread without a tile takes blocks of the others (work stealing), so
//! the last tile of an image, or an image of one tile, uses every core.
//!
//! Two other paths take the layers where they are faster: Winograd F(2×2, 3×3) for 3×3 layers
//! of 256 input channels and more, and, channels first on AVX-512 machines, the direct kernels
//! of bioseg's trainer (`bioseg_kernels::DirectConv`: no im2col, 16 output channels per
//! register tile, a folded `Concat` read part by part) for 8–255 input channels and whole
//! vectors of 16 outputs. Measured on a 544² window of an F=16 PyTorch-style U-Net (one
//! thread, three alternating runs, im2col → direct): 96→32 at 272² 46–49 → 26–35 ms, 192→64
//! at 136² 36–39 → 28–35 ms, 128→128 at 68² 22–25 → 16–19 ms, the window 247–269 → 226–236 ms;
//! 384→128 stays faster on Winograd (21–23 against 23–30 ms). The direct kernels split a
//! layer's rows, and Winograd its bands of tile rows, over rayon's threads the same way.
//!
//! Before all of these, on AVX-512 machines, 3×3 layers of 8–256 input channels with outputs
//! in multiples of 8 run on Winograd F(4×4, 3×3) (`bioseg_kernels::Winograd4`: 4× fewer
//! multiplications than the direct kernels, register tiles of 8 outputs × 48 tiles; blocks of
//! tiles over rayon's threads). The op11 zoo U-Net's 544² window, one thread, alternating
//! runs: 169–171 → 129–134 ms (every 3×3 layer faster but the full-resolution ones by 1.3–1.4×
//! and the others by 1.5–1.9×; per layer in `bioseg_kernels`' `winograd4.rs`).

use std::cell::RefCell;

use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat};
use tract_core::ops::nn::DataFormat;

use rayon::prelude::*;

use bioseg_kernels::{
    ConvInput, DirectConv, SendPtr, Taps, Winograd, Winograd4, Winograd4Buffers, WinogradBuffers, channel_lookup, grow,
    im2col_block, product, transform_kernel,
};

/// Output pixels per im2col block (measured: 256–1024 are equally fast; 512 keeps the block
/// in L2 for up to 64 input channels).
const BLOCK: usize = 512;

/// Choices of [`use_gemm_convolutions`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmConvOptions {
    /// Fewest input channels of a 3×3 convolution run with Winograd F(2×2, 3×3) instead of
    /// im2col. Default 256 (`BIOSEG_WINOGRAD_MIN_CHANNELS` overrides it, for tuning on other
    /// CPUs). Measured per layer on the F=64 U-Net (AVX-512, one thread): Winograd is 1.3–1.8×
    /// faster from 256 input channels on (its 16 matrix products have `c_in` as inner
    /// dimension), about even at 128, and slower below, where its transforms cost more than the
    /// multiplications they save.
    pub winograd_min_channels: usize,
    /// Most input channels of a layer run on the direct kernels (`bioseg_kernels::DirectConv`:
    /// channels first, from 8 input channels, whole vectors of 16 outputs, AVX-512) instead
    /// of im2col; 0 turns them off. Default 255 (below Winograd's 256;
    /// `BIOSEG_DIRECT_MAX_CHANNELS` overrides it, `BIOSEG_DIRECT_CONV=0` turns the direct
    /// kernels off everywhere). See [`GemmConv::from_conv`] for the measurements.
    pub direct_max_channels: usize,
    /// Fewest and most input channels of a 3×3 layer run with Winograd F(4×4, 3×3) on AVX-512
    /// (`bioseg_kernels::Winograd4`) instead of the paths above; a minimum above the maximum
    /// turns it off. Defaults 8 and 256 (`BIOSEG_WINOGRAD4_MIN_CHANNELS`,
    /// `BIOSEG_WINOGRAD4_MAX_CHANNELS` override them). See the module documentation.
    pub winograd4_min_channels: usize,
    pub winograd4_max_channels: usize,
}

impl GemmConvOptions {
    /// These options with Winograd F(4×4, 3×3) off (its minimum above its maximum).
    pub fn without_winograd4(self) -> Self {
        GemmConvOptions { winograd4_min_channels: usize::MAX, winograd4_max_channels: 0, ..self }
    }
}

impl Default for GemmConvOptions {
    fn default() -> Self {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        GemmConvOptions {
            winograd_min_channels: env("BIOSEG_WINOGRAD_MIN_CHANNELS").unwrap_or(256),
            direct_max_channels: env("BIOSEG_DIRECT_MAX_CHANNELS").unwrap_or(255),
            winograd4_min_channels: env("BIOSEG_WINOGRAD4_MIN_CHANNELS").unwrap_or(8),
            winograd4_max_channels: env("BIOSEG_WINOGRAD4_MAX_CHANNELS").unwrap_or(256),
        }
    }
}

/// A 2-D, stride-1 convolution run as im2col + GEMM (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct GemmConv {
    /// Layout of the input and output (channels first or last, with or without a batch axis).
    pub format: DataFormat,
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Zero padding: top, left, bottom, right.
    pub pad: [usize; 4],
    /// Input channels.
    pub c_in: usize,
    /// Channel counts of the op's inputs when a channel `Concat` was folded in (their sum is
    /// `c_in`); `[c_in]` for one input.
    pub parts: Vec<usize>,
    /// Output channels.
    pub c_out: usize,
    /// The input is upsampled ×`up` (nearest) before the convolution: 1, or 2 when a
    /// `NearestUpsample` ×2 was folded in.
    pub up: usize,
    /// The output computed as `up²` phases (one when `up` is 1).
    pub phases: Arc<Vec<Phase>>,
    /// Apply `max(0, ·)` to the output (a following ReLU folded in).
    pub relu: bool,
    /// For 3×3 kernels between wide layers: the Winograd-transformed kernel and the bias
    /// (`bioseg_kernels::Winograd`), used instead of im2col.
    pub winograd: Option<WinogradKernel>,
    /// For channels-first layers of 8–64 input channels and whole vectors of 16 outputs on
    /// AVX-512 machines (no up-sampling folded in): `bioseg_kernels::DirectConv`, used instead
    /// of im2col (see [`GemmConv::from_conv`] for the measurements).
    pub direct: Option<Arc<DirectConv>>,
    /// For 3×3 layers of 8–256 input channels ([`GemmConvOptions::winograd4_min_channels`]),
    /// outputs in multiples of 8, on AVX-512 machines (no up-sampling folded in): Winograd
    /// F(4×4, 3×3), used instead of every other path.
    pub winograd4: Option<Arc<Winograd4>>,
}

/// The kernel of a [`GemmConv`] run with Winograd F(2×2, 3×3).
#[derive(Debug, Clone, PartialEq)]
pub struct WinogradKernel {
    /// `G g Gᵀ` of every channel pair (`bioseg_kernels::transform_kernel`).
    pub u: Arc<Vec<f32>>,
    /// Bias per output channel.
    pub bias: Arc<Vec<f32>>,
}

impl Eq for GemmConv {}

/// The output pixels `(up·i + a, up·j + b)` of a [`GemmConv`], computed as a convolution of the
/// (not upsampled) input: output `(i, j)` of the phase reads input rows `i + oy ..` and columns
/// `j + ox ..` (zero outside the image). With `up` = 1 it is the convolution itself
/// (`oy = −pad_top`, `ox = −pad_left`); with `up` = 2, nearest upsampling repeats every input
/// pixel twice, so taps that land on the same input pixel are summed into one: a 2×2 kernel
/// after ×2 upsampling becomes four kernels of 1, 2, 2 and 4 taps (1.8× fewer operations, and no
/// upsampled copy).
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Output row and column offsets within an `up` × `up` block.
    pub a: usize,
    pub b: usize,
    /// Input row and column of the first tap, relative to the phase pixel.
    pub oy: isize,
    pub ox: isize,
    /// Taps per column and per row.
    pub kh: usize,
    pub kw: usize,
    /// Weights as `[c_out, c_in·kh·kw + 1]` rows, each ending with the bias.
    pub weights: Vec<f32>,
}

impl Phase {
    /// The phases of an OIHW kernel `[c_out, c_in, kh, kw]` applied after ×`up` nearest
    /// upsampling with padding `top`, `left`.
    fn split(
        oihw: &[f32],
        bias: &[f32],
        [c_out, c_in, kh, kw]: [usize; 4],
        up: usize,
        top: usize,
        left: usize,
    ) -> Vec<Phase> {
        // Input offset of tap d at phase a: floor((a + d − pad) / up).
        let offset = |a: usize, d: usize, pad: usize| ((a + d) as isize - pad as isize).div_euclid(up as isize);
        let mut phases = Vec::with_capacity(up * up);
        for a in 0..up {
            for b in 0..up {
                let (oy, ox) = (offset(a, 0, top), offset(b, 0, left));
                let (ph, pw) =
                    ((offset(a, kh - 1, top) - oy + 1) as usize, (offset(b, kw - 1, left) - ox + 1) as usize);
                let k = c_in * ph * pw;
                let mut weights = vec![0f32; c_out * (k + 1)];
                for o in 0..c_out {
                    for c in 0..c_in {
                        for dy in 0..kh {
                            for dx in 0..kw {
                                let ry = (offset(a, dy, top) - oy) as usize;
                                let rx = (offset(b, dx, left) - ox) as usize;
                                weights[o * (k + 1) + (c * ph + ry) * pw + rx] +=
                                    oihw[((o * c_in + c) * kh + dy) * kw + dx];
                            }
                        }
                    }
                    weights[o * (k + 1) + k] = bias[o];
                }
                phases.push(Phase { a, b, oy, ox, kh: ph, kw: pw, weights });
            }
        }
        phases
    }
}

impl GemmConv {
    /// The replacement for a tract `Conv` node, or `None` when the node is outside what
    /// [`GemmConv`] runs (the node then stays tract's).
    pub fn from_conv(
        model: &TypedModel,
        node: &TypedNode,
        conv: &Conv,
        options: &GemmConvOptions,
        up: usize,
    ) -> TractResult<Option<GemmConv>> {
        let spec = &conv.pool_spec;
        if conv.q_params.is_some() || conv.group != 1 || spec.rank() != 2 || node.inputs.len() != 3 {
            return Ok(None);
        }
        if spec.dilations().iter().any(|&d| d != 1) || spec.strides().iter().any(|&s| s != 1) {
            return Ok(None);
        }
        let input = model.outlet_fact(node.inputs[0])?;
        let (Some(kernel), Some(bias)) =
            (model.outlet_fact(node.inputs[1])?.konst.clone(), model.outlet_fact(node.inputs[2])?.konst.clone())
        else {
            return Ok(None);
        };
        if input.datum_type != f32::datum_type()
            || kernel.datum_type() != f32::datum_type()
            || bias.datum_type() != f32::datum_type()
        {
            return Ok(None);
        }
        let Some(shape) = input.shape.as_concrete() else { return Ok(None) };
        let data = spec.data_format.shape(shape.to_vec())?;
        let hw = data.hw_dims().to_vec();
        let padding = spec.computed_padding(&hw);
        let (kh, kw) = (spec.kernel_shape[0], spec.kernel_shape[1]);
        let (c_in, c_out) = (conv.input_channels(), conv.output_channels());
        if *data.c() != c_in || padding.iter().any(|p| p.convoluted == 0) {
            return Ok(None);
        }
        // The kernel in OIHW order, whatever the graph's kernel format.
        let oihw: Vec<f32> = {
            let k = kernel.to_plain_array_view::<f32>()?;
            let k = match conv.kernel_fmt {
                KernelFormat::OIHW => k.into_dyn(),
                KernelFormat::HWIO => k.permuted_axes(vec![3, 2, 0, 1]).into_dyn(),
                KernelFormat::OHWI => k.permuted_axes(vec![0, 3, 1, 2]).into_dyn(),
            };
            if k.shape() != [c_out, c_in, kh, kw] {
                return Ok(None);
            }
            k.iter().copied().collect()
        };
        let bias: Vec<f32> = match bias.rank() {
            0 => vec![*bias.try_as_plain_ram()?.as_slice::<f32>()?.first().unwrap_or(&0.0); c_out],
            1 if bias.len() == c_out => bias.try_as_plain_ram()?.as_slice::<f32>()?.to_vec(),
            _ => return Ok(None),
        };
        let phases =
            Phase::split(&oihw, &bias, [c_out, c_in, kh, kw], up, padding[0].pad_before, padding[1].pad_before);
        let pad = [padding[0].pad_before, padding[1].pad_before];
        let winograd4 = (up == 1
            && kh == 3
            && kw == 3
            && (options.winograd4_min_channels..=options.winograd4_max_channels).contains(&c_in))
        .then(|| Winograd4::new(&oihw, &bias, c_out, c_in))
        .flatten()
        .map(Arc::new);
        let direct = (winograd4.is_none() && up == 1 && !spec.data_format.c_is_last())
            .then(|| DirectConv::new(&oihw, &bias, [c_out, c_in], [kh, kw], pad, options.direct_max_channels))
            .flatten()
            .map(Arc::new);
        Ok(Some(GemmConv {
            format: spec.data_format,
            kernel: [kh, kw],
            pad: [padding[0].pad_before, padding[1].pad_before, padding[0].pad_after, padding[1].pad_after],
            c_in,
            c_out,
            parts: vec![c_in],
            up,
            phases: Arc::new(phases),
            relu: false,
            winograd: (direct.is_none()
                && winograd4.is_none()
                && up == 1
                && kh == 3
                && kw == 3
                && c_out >= 16
                && c_in >= options.winograd_min_channels)
                .then(|| WinogradKernel { u: Arc::new(transform_kernel(&oihw, c_out, c_in)), bias: Arc::new(bias) }),
            direct,
            winograd4,
        }))
    }

    /// A short description: channels, kernel, path.
    pub fn describe(&self) -> String {
        format!(
            "BiosegGemmConv {}{}→{} {}×{}{}",
            if self.up > 1 { "upsample ×2, " } else { "" },
            self.c_in,
            self.c_out,
            self.kernel[0],
            self.kernel[1],
            if self.winograd.is_some() {
                " winograd"
            } else if self.winograd4.is_some() {
                " winograd4"
            } else if self.direct.is_some() {
                " direct"
            } else {
                ""
            }
        )
    }

    /// Output height and width for an input of `h` × `w`.
    fn output_hw(&self, h: usize, w: usize) -> (usize, usize) {
        let (h, w) = (h * self.up, w * self.up);
        (h + self.pad[0] + self.pad[2] + 1 - self.kernel[0], w + self.pad[1] + self.pad[3] + 1 - self.kernel[1])
    }

    /// Output height and width as tract dimensions.
    fn output_dims(&self, hw: &[TDim]) -> [TDim; 2] {
        let grow = |axis: usize| (self.pad[axis] + self.pad[axis + 2] + 1) as i64 - self.kernel[axis] as i64;
        let up = self.up as i64;
        [hw[0].clone() * up + grow(0), hw[1].clone() * up + grow(1)]
    }

    /// Convolves one image `x` (`h` × `w`); `y` receives `[c_out, ho, wo]` or `[ho, wo, c_out]`
    /// (as `self.format`). The blocks of every phase are spread over rayon's threads (see
    /// [`GemmConv::convolve_block`]).
    fn convolve_image(&self, x: &ConvInput, h: usize, w: usize, y: &mut [f32]) {
        let (ho, wo) = self.output_hw(h, w);
        let mut blocks = Vec::new();
        for (p, ph) in self.phases.iter().enumerate() {
            let (hi, wi) = self.phase_hw(ph, ho, wo);
            let pixels = hi * wi;
            let mut q0 = 0;
            while q0 < pixels {
                let mut m = BLOCK.min(pixels - q0);
                if self.up > 1 {
                    m = m.min(wi - q0 % wi);
                }
                blocks.push((p, q0, m));
                q0 += m;
            }
        }
        assert_eq!(y.len(), self.c_out * ho * wo);
        let y = SendPtr(y.as_mut_ptr());
        blocks.par_iter().for_each(|&(p, q0, m)| {
            COLS.with(|cols| {
                // SAFETY: `y` holds the whole output (asserted above); blocks write disjoint
                // output pixels (one phase's pixels q0..q0 + m each).
                unsafe { self.convolve_block(&self.phases[p], x, (h, w), y.get(), (q0, m), &mut cols.borrow_mut()) }
            })
        });
    }

    /// Rows and columns of a phase's output pixels.
    fn phase_hw(&self, ph: &Phase, ho: usize, wo: usize) -> (usize, usize) {
        let up = self.up;
        ((ho + up - 1 - ph.a) / up, (wo + up - 1 - ph.b) / up)
    }

    /// A phase's output pixels `q0 .. q0 + m` (within one output row when `up` > 1, at most
    /// [`BLOCK`]): an im2col block and one GEMM written straight into the output `y`, then the
    /// ReLU while the block is in cache. No rayon call inside, so the thread's im2col buffer
    /// `cols` stays borrowed by this block only.
    ///
    /// # Safety
    /// `y` must point to the whole output (`c_out · ho · wo` elements), and nothing else may
    /// touch this block's pixels during the call.
    unsafe fn convolve_block(
        &self,
        ph: &Phase,
        x: &ConvInput,
        (h, w): (usize, usize),
        y: *mut f32,
        (q0, m): (usize, usize),
        cols: &mut Vec<f32>,
    ) {
        let (ho, wo) = self.output_hw(h, w);
        let up = self.up;
        let (_, wi) = self.phase_hw(ph, ho, wo);
        let (c_in, c_out) = (self.c_in, self.c_out);
        // Strides of the output (channel, pixel).
        let (yc, yp) = if self.format.c_is_last() { (1, c_out) } else { (ho * wo, 1) };
        let k = c_in * ph.kh * ph.kw;
        let cols = grow(cols, (k + 1) * BLOCK);
        let taps = Taps { origin: [ph.oy, ph.ox], kernel: [ph.kh, ph.kw], stride: [1, 1], dilation: [1, 1] };
        // im2col of phase pixels q0..q0+m: row `(c, ry, rx)` holds, for each pixel (i, j),
        // the input at (i + oy + ry, j + ox + rx), zero outside the image.
        im2col_block(x, c_in, (h, w), &taps, wi, (q0, m), cols, BLOCK);
        cols[k * BLOCK..][..m].fill(1.0);
        // The block's first output pixel, and the output step between its pixels.
        let (r0, c0) = (q0 / wi, q0 % wi);
        let first = ((up * r0 + ph.a) * wo + up * c0 + ph.b) * yp;
        let step = up * yp;
        // SAFETY: dst addresses m pixels (stride `step`) of c_out channels (stride yc), all
        // inside the output (phase pixels map below ho × wo); lhs is `m` × `k+1` with column
        // stride BLOCK inside `cols`; rhs is `k+1` × `c_out` with column stride `k+1` inside the
        // phase's weights.
        unsafe {
            let out = y.add(first);
            product([m, c_out, k + 1], (out, yc, step), (cols.as_ptr(), BLOCK, 1), (ph.weights.as_ptr(), k + 1, 1));
            if self.relu {
                for o in 0..c_out {
                    for i in 0..m {
                        let v = out.add(o * yc + i * step);
                        *v = (*v).max(0.0);
                    }
                }
            }
        }
    }
}

thread_local! {
    /// Per-thread im2col block, reused across calls, so it is not mapped and zeroed again at
    /// every call; borrowed by one block at a time.
    static COLS: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread buffers of the Winograd path.
    static WINOGRAD: RefCell<WinogradBuffers> = RefCell::new(WinogradBuffers::default());
    /// Per-thread buffers of the Winograd F(4×4, 3×3) path.
    static WINOGRAD4: RefCell<Winograd4Buffers> = RefCell::new(Winograd4Buffers::default());
}

impl Op for GemmConv {
    fn name(&self) -> StaticName {
        "BiosegGemmConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} {}→{} kernel {}×{} pad {:?}{}{}",
            self.format,
            self.c_in,
            self.c_out,
            self.kernel[0],
            self.kernel[1],
            self.pad,
            if self.relu { " + ReLU" } else { "" },
            if self.winograd.is_some() {
                " (Winograd F(2×2,3×3))"
            } else if self.winograd4.is_some() {
                " (Winograd F(4×4,3×3))"
            } else {
                ""
            }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for GemmConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        bioseg_kernels::clean_upper_state();
        ensure!(
            inputs.len() == self.parts.len(),
            "BiosegGemmConv: {} inputs, expected {}",
            inputs.len(),
            self.parts.len()
        );
        let shape = self.format.shape(inputs[0].shape().to_vec())?;
        let (h, w) = (shape.hw_dims()[0], shape.hw_dims()[1]);
        let n = shape.n().copied().unwrap_or(1);
        for (input, &c) in inputs.iter().zip(&self.parts) {
            let s = self.format.shape(input.shape().to_vec())?;
            ensure!(
                *s.c() == c && s.hw_dims() == [h, w] && s.n().copied().unwrap_or(1) == n,
                "BiosegGemmConv: input of shape {:?}, expected {c} channels of {h}×{w}",
                input.shape()
            );
        }
        let (ho, wo) = self.output_hw(h, w);
        let out_shape = self.format.from_n_c_hw(n, self.c_out, [ho, wo])?;
        // SAFETY: every element is written below (the phases, or Winograd's tiles, cover the
        // whole output).
        let mut output = unsafe { Tensor::uninitialized::<f32>(out_shape.shape.as_slice())? };
        {
            let views = inputs.iter().map(|t| t.try_as_plain_ram()).collect::<TractResult<Vec<_>>>()?;
            let data = views.iter().map(|v| v.as_slice::<f32>()).collect::<TractResult<Vec<_>>>()?;
            let lookup = channel_lookup(&self.parts);
            let channels_last = self.format.c_is_last();
            let image = |i: usize| {
                let parts = data.iter().zip(&self.parts).map(|(d, &c)| (&d[i * c * h * w..][..c * h * w], c)).collect();
                ConvInput::new(parts, &lookup, (h, w), channels_last)
            };
            let mut y = output.try_as_plain_ram_mut()?;
            let y = y.as_slice_mut::<f32>()?;
            let y_len = self.c_out * ho * wo;
            // Output strides of (channel, pixel) for the Winograd paths.
            let ys = if channels_last { [1, self.c_out] } else { [ho * wo, 1] };
            if let Some(wino) = &self.winograd4 {
                // Blocks of tiles of every image, spread over rayon's threads.
                let (th, tw) = Winograd4::tiles((ho, wo));
                let (tiles, block) = (th * tw, wino.block_tiles());
                let jobs: Vec<(usize, usize)> =
                    (0..n).flat_map(|i| (0..tiles).step_by(block).map(move |q| (i, q))).collect();
                let out = SendPtr(y.as_mut_ptr());
                jobs.par_iter().for_each(|&(i, q)| {
                    WINOGRAD4.with(|b| {
                        // SAFETY: image i's output is y[i·y_len ..][.. y_len]; jobs write
                        // disjoint tiles.
                        unsafe {
                            wino.convolve_tiles(
                                &image(i),
                                (h, w),
                                [self.pad[0], self.pad[1]],
                                out.get().add(i * y_len),
                                ys,
                                (ho, wo),
                                q..(q + block).min(tiles),
                                self.relu,
                                &mut b.borrow_mut(),
                            )
                        }
                    })
                });
            } else if let Some(direct) = &self.direct {
                let parts: Vec<(&[f32], usize)> = data.iter().copied().zip(self.parts.iter().copied()).collect();
                direct
                    .run(&parts, n, [h, w], [ho, wo], self.relu, y)
                    .map_err(|e| format_err!("BiosegGemmConv: {e}"))?;
            } else if let Some(WinogradKernel { u, bias }) = &self.winograd {
                let wino = Winograd {
                    u,
                    bias,
                    c_in: self.c_in,
                    c_out: self.c_out,
                    top: self.pad[0],
                    left: self.pad[1],
                    relu: self.relu,
                };
                // Bands of tile rows of every image, spread over rayon's threads.
                let (th, band) = (ho.div_ceil(2), Winograd::rows_per_block(wo));
                let bands: Vec<(usize, usize)> =
                    (0..n).flat_map(|i| (0..th).step_by(band).map(move |t| (i, t))).collect();
                let out = SendPtr(y.as_mut_ptr());
                bands.par_iter().for_each(|&(i, t)| {
                    WINOGRAD.with(|b| {
                        // SAFETY: image i's output is y[i·y_len ..][.. y_len]; bands write
                        // disjoint output rows.
                        unsafe {
                            wino.convolve_rows(
                                &image(i),
                                (h, w),
                                out.get().add(i * y_len),
                                ys,
                                (ho, wo),
                                t..(t + band).min(th),
                                &mut b.borrow_mut(),
                            )
                        }
                    })
                });
            } else {
                for i in 0..n {
                    self.convolve_image(&image(i), h, w, &mut y[i * y_len..][..y_len]);
                }
            }
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

impl TypedOp for GemmConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == f32::datum_type());
        let shape = self.format.shape(inputs[0].shape.to_tvec())?;
        let [ho, wo] = self.output_dims(shape.hw_dims());
        let n = shape.n().cloned().unwrap_or_else(|| 1.to_dim());
        let out = self.format.from_n_c_hw(n, self.c_out.to_dim(), [ho, wo])?;
        Ok(tvec!(f32::fact(out.shape.as_slice())))
    }

    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let shape = self.format.shape(inputs[0].shape.to_tvec())?;
        let n = shape.n().cloned().unwrap_or_else(|| 1.to_dim());
        let [ho, wo] = self.output_dims(shape.hw_dims());
        let points = ho * wo;
        // Operations actually run: the phases' taps, over a quarter of the pixels each when up = 2.
        let taps: usize = self.phases.iter().map(|p| p.kh * p.kw).sum::<usize>() / (self.up * self.up);
        let macs = self.c_in * self.c_out * taps.max(1);
        Ok(tvec!((Cost::FMA(f32::datum_type()), n * points * macs)))
    }

    as_op!();
}

/// Replaces every tract `Conv` node of a typed model that [`GemmConv`] can run; returns how
/// many were replaced. Run on a decluttered model, before `into_optimized`.
pub fn use_gemm_convolutions(model: &mut TypedModel, options: &GemmConvOptions) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = &model.nodes[id];
        let Some(conv) = node.op_as::<Conv>() else { continue };
        // A nearest ×2 upsampling feeding the convolution is folded in (phases).
        let source = model.node(node.inputs[0].node);
        let up = match source.op_as::<tract_core::ops::nn::NearestUpsample>() {
            Some(u) if upsamples_hw_by_2(&u.scales, conv) => 2,
            _ => 1,
        };
        let Some(mut op) = GemmConv::from_conv(model, node, conv, options, up)? else { continue };
        let mut inputs = vec![if up == 2 { source.inputs[0] } else { node.inputs[0] }];
        // A Concat along the channels feeding the convolution is folded in: the op reads its
        // inputs directly.
        if let Some(parts) = concat_parts(model, source, conv)?.filter(|_| up == 1) {
            op.parts = parts;
            inputs = source.inputs.clone();
        }
        // Fold a ReLU that is the convolution's only consumer.
        let relu = relu_successor(model, node)?;
        op.relu = relu.is_some();
        let name = node.name.clone();
        crate::passes::replace_chain(model, &inputs, relu.unwrap_or(id), &name, op)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// The node computing `max(x, 0)` of `node`'s output, when it is that output's only consumer.
fn relu_successor(model: &TypedModel, node: &TypedNode) -> TractResult<Option<usize>> {
    let Some((next, slot)) = crate::passes::sole_consumer(model, node)? else { return Ok(None) };
    let Some(bin) = next.op_as::<tract_core::ops::binary::TypedBinOp>() else { return Ok(None) };
    if !bin.0.is::<tract_core::ops::math::Max>() || next.inputs.len() != 2 {
        return Ok(None);
    }
    let other = next.inputs[1 - slot];
    let fact = model.outlet_fact(other)?;
    let zero = fact.konst.as_ref().is_some_and(|k| {
        k.datum_type() == f32::datum_type()
            && k.try_as_plain_ram()
                .and_then(|v| v.as_slice::<f32>().map(|s| s.iter().all(|&v| v == 0.0)))
                .unwrap_or(false)
    });
    // The zero must broadcast onto the convolution's output without changing its shape.
    let same_shape =
        model.outlet_fact(OutletId::new(next.id, 0))?.shape == model.outlet_fact(OutletId::new(node.id, 0))?.shape;
    Ok((zero && same_shape && fact.shape.volume() == 1.to_dim()).then_some(next.id))
}

/// Whether `scales` (per input axis) upsample exactly the two spatial axes of `conv`'s layout by 2.
fn upsamples_hw_by_2(scales: &[usize], conv: &Conv) -> bool {
    let format = conv.pool_spec.data_format;
    let rank = 3 + usize::from(format.has_n());
    let h_axis = format.h_axis();
    scales.len() == rank
        && scales.iter().enumerate().all(|(axis, &s)| s == if axis == h_axis || axis == h_axis + 1 { 2 } else { 1 })
}

/// The channel counts of the inputs of `source` when it is a `Concat` along `conv`'s channel
/// axis of two or more computed (not constant) tensors with known channel counts.
fn concat_parts(model: &TypedModel, source: &TypedNode, conv: &Conv) -> TractResult<Option<Vec<usize>>> {
    let Some(concat) = source.op_as::<tract_core::ops::array::TypedConcat>() else { return Ok(None) };
    let output = model.outlet_fact(OutletId::new(source.id, 0))?;
    let c_axis = conv.pool_spec.data_format.shape(output.shape.to_tvec())?.c_axis();
    if concat.axis != c_axis || source.inputs.len() < 2 {
        return Ok(None);
    }
    let mut parts = Vec::with_capacity(source.inputs.len());
    for &i in &source.inputs {
        let fact = model.outlet_fact(i)?;
        if fact.konst.is_some() || fact.datum_type != f32::datum_type() {
            return Ok(None);
        }
        let Ok(c) = fact.shape[c_axis].to_usize() else { return Ok(None) };
        parts.push(c);
    }
    Ok(Some(parts))
}
