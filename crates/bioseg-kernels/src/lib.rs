//! bioseg-kernels: the CPU convolution, pooling and up-sampling kernels of bioseg (f32), one
//! implementation for both halves of the project:
//!
//! - inference (`bioseg-infer`'s convolution op inside tract): [`im2col_block`] + [`product`]
//!   over a [`ConvInput`] (channels first or last, several concatenated parts), and
//!   [`Winograd4`] F(4×4, 3×3) on AVX-512 for 3×3 layers of 8–256 channels and [`Winograd`]
//!   F(2×2, 3×3) for wider ones;
//! - training (Burn's `flex` backend, patched in `vendor/burn-flex`): NCHW convolution forward,
//!   data, weight and bias gradients and the transposed convolution ([`conv2d_forward`] …),
//!   max pooling with indices and its gradient, nearest up-sampling and its gradient, each
//!   spread over the cores with rayon; the layers with 8–64 channels on direct AVX-512 kernels
//!   (register tiles of 16 output channels, no im2col).
//!
//! It depends on neither Burn nor tract, so the inference crate never links Burn and the
//! trainer gets the `gemm` crate's AVX-512 kernels on its own.

mod conv2d;
mod direct;
mod error;
mod gemm;
mod geometry;
mod im2col;
mod input;
mod pool;
mod upper_state;
mod upsample;
mod winograd;
mod winograd4;

pub use conv2d::{
    channel_sums, conv_transpose2d_forward, conv2d_backward_bias, conv2d_backward_data, conv2d_backward_weight,
    conv2d_forward, conv2d_forward_relu,
};
pub use direct::DirectConv;
pub use error::KernelError;
pub use gemm::{SendPtr, View, grow, matrix_product_rate, product, product_acc};
pub use geometry::Conv2dGeometry;
pub use im2col::{Taps, col2im_block, im2col_block};
pub use input::{ChannelView, ConvInput, channel_lookup};
pub use pool::{Pool2dGeometry, max_pool_2x2, max_pool2d_backward, max_pool2d_forward};
pub use upper_state::clean_upper_state;
pub use upsample::{upsample_nearest, upsample_nearest_backward, whole_factors};
pub use winograd::{Buffers as WinogradBuffers, Winograd, transform_kernel};
pub use winograd4::{Winograd4, Winograd4Buffers};
