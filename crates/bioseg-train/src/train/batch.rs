//! A batch of samples as the tensors a training step takes: the images `[N, C, H, W]`, the
//! one-hot targets `[N, K, H, W]` and the pixel weights `[N, 1, H, W]` when the samples have
//! them. Shared by the training loop's validation, the data-parallel and the multi-node steps.

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::augment::Sample;

/// A batch as tensors.
pub struct BatchTensors<B: Backend> {
    /// The images, `[N, C, H, W]`.
    pub images: Tensor<B, 4>,
    /// The one-hot targets, `[N, K, H, W]` (K = 1 foreground channel for binary models).
    pub targets: Tensor<B, 4>,
    /// The pixel weights, `[N, 1, H, W]`, when every sample has them.
    pub weights: Option<Tensor<B, 4>>,
}

/// Stacks samples into a [`BatchTensors`].
pub fn to_tensors<B: Backend>(samples: &[Sample], target_channels: usize, device: &B::Device) -> BatchTensors<B> {
    let n = samples.len();
    let (h, w, c) = samples[0].image.dim();
    let mut img: Vec<f32> = Vec::with_capacity(n * c * h * w);
    let mut tgt = vec![0f32; n * target_channels * h * w];
    for (i, s) in samples.iter().enumerate() {
        for k in 0..c {
            img.extend(s.image.index_axis(ndarray::Axis(2), k).iter());
        }
        let base = i * target_channels * h * w;
        for (p, &cls) in s.mask.iter().enumerate() {
            if target_channels == 1 {
                tgt[base + p] = if cls >= 1 { 1.0 } else { 0.0 };
            } else if (cls as usize) < target_channels {
                tgt[base + cls as usize * h * w + p] = 1.0;
            }
        }
    }
    let weights = samples.iter().all(|s| s.weights.is_some()).then(|| {
        let wt: Vec<f32> = samples.iter().flat_map(|s| s.weights.as_ref().expect("checked").iter().copied()).collect();
        Tensor::from_data(TensorData::new(wt, [n, 1, h, w]), device)
    });
    BatchTensors {
        images: Tensor::from_data(TensorData::new(img, [n, c, h, w]), device),
        targets: Tensor::from_data(TensorData::new(tgt, [n, target_channels, h, w]), device),
        weights,
    }
}
