//! The shapes of a 2-D convolution, shared by the im2col path (`conv2d.rs`) and the direct
//! kernels (`direct.rs`): sizes checked once, output size derived, lengths and work counted.

use crate::error::KernelError;
use crate::im2col::Taps;

/// The shapes of one 2-D convolution `x [batch, c_in, in_hw] ⊛ w [c_out, c_in, kernel] →
/// y [batch, c_out, out_hw]` with symmetric zero padding (one group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeometry {
    pub batch: usize,
    pub c_in: usize,
    pub in_hw: [usize; 2],
    pub c_out: usize,
    pub out_hw: [usize; 2],
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Conv2dGeometry {
    /// The geometry of a convolution; its output size follows from the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: usize,
        c_in: usize,
        in_hw: [usize; 2],
        c_out: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, KernelError> {
        for (name, v) in [
            ("batch", batch),
            ("input channels", c_in),
            ("output channels", c_out),
            ("input height", in_hw[0]),
            ("input width", in_hw[1]),
            ("kernel height", kernel[0]),
            ("kernel width", kernel[1]),
            ("stride", stride[0].min(stride[1])),
            ("dilation", dilation[0].min(dilation[1])),
        ] {
            if v == 0 {
                return Err(KernelError::Zero(name));
            }
        }
        let mut out_hw = [0; 2];
        for a in 0..2 {
            let span = dilation[a] * (kernel[a] - 1) + 1;
            let padded = in_hw[a] + 2 * padding[a];
            if span > padded {
                return Err(KernelError::KernelTooLarge { kernel: span, input: in_hw[a], padding: padding[a] });
            }
            out_hw[a] = (padded - span) / stride[a] + 1;
        }
        Ok(Conv2dGeometry { batch, c_in, in_hw, c_out, out_hw, kernel, stride, padding, dilation })
    }

    /// The convolution whose data gradient is the transposed convolution `x [batch, c_in_t,
    /// in_hw_t] → [batch, c_out_t, …]` (weights `[c_in_t, c_out_t, kernel]`): its input is the
    /// transposed convolution's output, its output the transposed convolution's input.
    #[allow(clippy::too_many_arguments)]
    pub fn transposed(
        batch: usize,
        c_in_t: usize,
        in_hw_t: [usize; 2],
        c_out_t: usize,
        kernel: [usize; 2],
        stride: [usize; 2],
        padding: [usize; 2],
        output_padding: [usize; 2],
        dilation: [usize; 2],
    ) -> Result<Self, KernelError> {
        let mut out = [0; 2];
        for a in 0..2 {
            let full =
                (in_hw_t[a].max(1) - 1) * stride[a] + dilation[a] * kernel[a].saturating_sub(1) + output_padding[a] + 1;
            out[a] = full.checked_sub(2 * padding[a]).filter(|&o| o > 0).ok_or(KernelError::KernelTooLarge {
                kernel: kernel[a],
                input: in_hw_t[a],
                padding: padding[a],
            })?;
        }
        let g = Conv2dGeometry::new(batch, c_out_t, out, c_in_t, kernel, stride, padding, dilation)?;
        if g.out_hw != in_hw_t {
            return Err(KernelError::Length {
                what: "transposed convolution input rows",
                got: in_hw_t[0],
                expected: g.out_hw[0],
            });
        }
        Ok(g)
    }

    /// Values of the input, the output and the weights.
    pub fn input_len(&self) -> usize {
        self.batch * self.c_in * self.in_hw[0] * self.in_hw[1]
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.c_out * self.out_hw[0] * self.out_hw[1]
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in * self.kernel[0] * self.kernel[1]
    }

    /// Multiply-adds of the forward pass (each gradient costs as many).
    pub fn macs(&self) -> usize {
        self.output_len() * self.c_in * self.kernel[0] * self.kernel[1]
    }

    pub(crate) fn taps(&self) -> Taps {
        Taps {
            origin: [-(self.padding[0] as isize), -(self.padding[1] as isize)],
            kernel: self.kernel,
            stride: self.stride,
            dilation: self.dilation,
        }
    }

    pub(crate) fn check(&self, what: &'static str, got: usize, expected: usize) -> Result<(), KernelError> {
        if got == expected { Ok(()) } else { Err(KernelError::Length { what, got, expected }) }
    }
}
