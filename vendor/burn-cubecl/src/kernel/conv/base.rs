use burn_backend::ops::ConvOptions;
use burn_std::Shape;
use cubek::convolution::{AcceleratedTileKind, components::ConvSetupError};

#[cfg(feature = "autotune")]
use crate::kernel::conv::{backward_weight::wgrad_autotune, dgrad_autotune};
use crate::{
    CubeRuntime,
    kernel::conv::{
        backward_data::{fallback::conv_data_backward_fallback, implicit_gemm::*},
        backward_weight::{fallback::conv_weight_backward_fallback, implicit_gemm::*},
        forward::implicit_gemm::conv_gemm_simple_sync,
    },
    ops::{permute_nchw_to_nhwc, permute_nchw_to_nhwc_shape, permute_nhwc_to_nchw},
    tensor::CubeTensor,
};

use super::conv_direct;
#[cfg(feature = "autotune")]
use super::forward::conv_autotune;

/// The strategy to be used when launching a convolution kernel.
pub enum ConvStrategy {
    /// A simple direct convolution.
    Direct,
    #[cfg(feature = "autotune")]
    /// Using autotune to choose the best kernel based on runtime information.
    Autotune,
    /// Implicit GEMM implementation of convolution. Lower memory usage but requires CMMA and
    /// has constraints on tensor shape.
    ImplicitGemm,
}

impl Default for ConvStrategy {
    fn default() -> Self {
        // if autotune is enabled, default to autotune
        #[cfg(feature = "autotune")]
        return ConvStrategy::Autotune;

        // bioseg patch: without autotune, use the implicit GEMM (tensor cores), which falls back
        // to the direct/fallback kernels for the shapes it cannot handle. Upstream defaults to
        // `Direct`, whose weight gradient (a convolution with the whole output gradient as the
        // kernel) made a U-Net training step take seconds on an H200.
        #[cfg(not(feature = "autotune"))]
        ConvStrategy::ImplicitGemm
    }
}

/// Performs an N-dimensional convolution with the given strategy
///
/// * `input` - The input feature map
/// * `weight` - The weights (filter) applied to each kernel
/// * `bias` - The bias added to each channel
/// * `options` - The options to use for the convolution
/// * `strategy` - The convolution algorithm to use. Autotune will pick the fastest available option.
pub fn conv_forward<R: CubeRuntime, const N: usize>(
    input: CubeTensor<R>,
    weight: CubeTensor<R>,
    bias: Option<CubeTensor<R>>,
    options: ConvOptions<N>,
    strategy: ConvStrategy,
) -> Result<CubeTensor<R>, ConvSetupError> {
    let input = permute_nchw_to_nhwc(input);
    let weight = permute_nchw_to_nhwc(weight);

    let out = conv_forward_nhwc(input, weight, bias, options, strategy)?;

    Ok(permute_nhwc_to_nchw(out))
}

/// Performs an N-dimensional convolution with the given strategy on NHWC inputs/outputs
///
/// * `input` - The input feature map
/// * `weight` - The weights (filter) applied to each kernel
/// * `bias` - The bias added to each channel
/// * `options` - The options to use for the convolution
/// * `strategy` - The convolution algorithm to use. Autotune will pick the fastest available option.
pub fn conv_forward_nhwc<R: CubeRuntime, const N: usize>(
    input: CubeTensor<R>,
    weight: CubeTensor<R>,
    bias: Option<CubeTensor<R>>,
    options: ConvOptions<N>,
    strategy: ConvStrategy,
) -> Result<CubeTensor<R>, ConvSetupError> {
    match strategy {
        ConvStrategy::Direct => conv_direct::<R, N>(input, weight, bias, options),
        #[cfg(feature = "autotune")]
        ConvStrategy::Autotune => Ok(conv_autotune::<R, N>(input, weight, bias, options)),
        ConvStrategy::ImplicitGemm => {
            if options.groups != 1 {
                conv_direct::<R, N>(input, weight, bias, options)
            } else {
                // bioseg patch: fall back to the direct kernel when the GEMM cannot be set up.
                match conv_gemm_simple_sync::<R, N>(
                    input.clone(),
                    weight.clone(),
                    bias.clone(),
                    options.clone(),
                    AcceleratedTileKind::Cmma,
                ) {
                    Ok(out) => Ok(out),
                    Err(err) => {
                        warn_once("forward", &err);
                        conv_direct::<R, N>(input, weight, bias, options)
                    }
                }
            }
        }
    }
}

/// Performs an N-dimensional convolution backwards pass with regard to weight, with the given strategy
///
/// * `input` - The input feature map
/// * `out_grad` - The output gradients
/// * `weight_shape` - The shape of the weights/weight gradients
/// * `options` - The options used for the convolution
/// * `strategy` - The convolution algorithm to use. Autotune will pick the fastest available option.
pub fn conv_weight_backward<R: CubeRuntime, const N: usize>(
    input: CubeTensor<R>,
    out_grad: CubeTensor<R>,
    weight_shape: Shape,
    options: ConvOptions<N>,
    strategy: ConvStrategy,
) -> Result<CubeTensor<R>, ConvSetupError> {
    let input = permute_nchw_to_nhwc(input);
    let out_grad = permute_nchw_to_nhwc(out_grad);
    let weight_shape = permute_nchw_to_nhwc_shape(weight_shape);

    let weight_grad = match strategy {
        ConvStrategy::Direct => {
            conv_weight_backward_fallback::<R, N>(input, out_grad, weight_shape, options)
        }
        #[cfg(feature = "autotune")]
        ConvStrategy::Autotune => Ok(wgrad_autotune::<R, N>(
            input,
            out_grad,
            weight_shape,
            options,
        )),
        ConvStrategy::ImplicitGemm => {
            if options.groups != 1 {
                conv_weight_backward_fallback::<R, N>(input, out_grad, weight_shape, options)
            } else {
                // bioseg patch: fall back when the GEMM cannot be set up.
                match wgrad_gemm_simple_sync::<R, N>(
                    input.clone(),
                    out_grad.clone(),
                    weight_shape.clone(),
                    options.clone(),
                    AcceleratedTileKind::Cmma,
                ) {
                    Ok(out) => Ok(out),
                    Err(err) => wgrad_gemm_channel_padded::<R, N>(input, out_grad, weight_shape, options, err),
                }
            }
        }
    }?;

    Ok(permute_nhwc_to_nchw(weight_grad))
}

/// Performs an N-dimensional convolution backwards data pass with the given strategy
///
/// * `input` - The input feature map
/// * `weight` - The weights (filter) applied to each kernel
/// * `in_shape` - The shape of the input to the layer
/// * `options` - The options to use for the convolution
/// * `strategy` - The convolution algorithm to use. Autotune will pick the fastest available option.
pub fn conv_data_backward<R: CubeRuntime, const N: usize>(
    out_grad: CubeTensor<R>,
    weights: CubeTensor<R>,
    in_shape: Shape,
    options: ConvOptions<N>,
    strategy: ConvStrategy,
) -> Result<CubeTensor<R>, ConvSetupError> {
    let out_grad = permute_nchw_to_nhwc(out_grad);
    let weights = permute_nchw_to_nhwc(weights);
    let in_shape = permute_nchw_to_nhwc_shape(in_shape);

    let weight_grad = match strategy {
        ConvStrategy::Direct => {
            conv_data_backward_fallback::<R, N>(out_grad, weights, in_shape, options)?
        }
        #[cfg(feature = "autotune")]
        ConvStrategy::Autotune => dgrad_autotune::<R, N>(out_grad, weights, in_shape, options),
        ConvStrategy::ImplicitGemm => {
            if options.groups != 1 || options.stride.iter().any(|&s| s != 1) {
                conv_data_backward_fallback::<R, N>(out_grad, weights, in_shape, options)?
            } else {
                // bioseg patch: fall back when the GEMM cannot be set up.
                match dgrad_gemm_simple_sync::<R, N>(
                    out_grad.clone(),
                    weights.clone(),
                    in_shape.clone(),
                    options.clone(),
                    AcceleratedTileKind::Cmma,
                ) {
                    Ok(out) => out,
                    Err(err) => {
                        warn_once("data gradient", &err);
                        conv_data_backward_fallback::<R, N>(out_grad, weights, in_shape, options)?
                    }
                }
            }
        }
    };

    Ok(permute_nhwc_to_nchw(weight_grad))
}

/// bioseg patch: the implicit-GEMM weight gradient cannot be set up for some narrow layers (a
/// U-Net's 64→2 and 2→1 heads). Upstream then falls back to a direct convolution whose kernel
/// is the whole output gradient (a few threads summing millions of terms: seconds per step).
/// Instead, zero-pad both channel counts to a multiple of 16 (the padding contributes nothing
/// to the sums), run the GEMM, and keep the real channels; only if that fails too, fall back.
fn wgrad_gemm_channel_padded<R: CubeRuntime, const N: usize>(
    input: CubeTensor<R>,
    out_grad: CubeTensor<R>,
    weight_shape: Shape,
    options: ConvOptions<N>,
    first_error: ConvSetupError,
) -> Result<CubeTensor<R>, ConvSetupError> {
    use burn_backend::TensorMetadata;

    let round = |c: usize| c.div_ceil(16) * 16;
    let pad_channels = |t: CubeTensor<R>| -> CubeTensor<R> {
        let shape = t.shape();
        let c = shape[shape.num_dims() - 1];
        if c == round(c) {
            return t;
        }
        let mut padded = shape.clone();
        let last = padded.num_dims() - 1;
        padded[last] = round(c);
        let zeros = crate::ops::numeric::zeros_client::<R>(t.client.clone(), t.device.clone(), padded, t.dtype);
        let ranges: Vec<burn_backend::Slice> =
            shape.iter().map(|&d| burn_backend::Slice::from(0..d)).collect();
        crate::kernel::slice_assign(zeros, &ranges, t)
    };
    let rank = weight_shape.num_dims();
    let (c_out, c_in) = (weight_shape[0], weight_shape[rank - 1]);
    let mut padded_shape = weight_shape.clone();
    padded_shape[0] = round(c_out);
    padded_shape[rank - 1] = round(c_in);
    let attempt = wgrad_gemm_simple_sync::<R, N>(
        pad_channels(input.clone()),
        pad_channels(out_grad.clone()),
        padded_shape,
        options.clone(),
        AcceleratedTileKind::Cmma,
    );
    match attempt {
        Ok(padded) => {
            let ranges: Vec<core::ops::Range<usize>> = weight_shape.iter().map(|&d| 0..d).collect();
            Ok(crate::kernel::into_contiguous(crate::kernel::slice(padded, &ranges)))
        }
        Err(err) => {
            warn_once("weight gradient", &first_error);
            warn_once("weight gradient (channels padded)", &err);
            conv_weight_backward_fallback::<R, N>(input, out_grad, weight_shape, options)
        }
    }
}

/// bioseg patch: say once per kind of convolution pass that the implicit GEMM was not used.
fn warn_once(pass: &str, err: &ConvSetupError) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.iter().any(|p| p == pass) {
        seen.push(pass.to_string());
        log::warn!("convolution {pass}: implicit GEMM unavailable ({err:?}), using the fallback kernel");
    }
}
