//! One optimisation step of a segmentation network over one or several devices (data parallel).
//!
//! The global batch is split into one shard per device; each device runs a replica of the model
//! (`fork`) on its shard, and the shard losses are weighted by their share of the batch before
//! `backward`, so the sum of the replicas' gradients is exactly the gradient of the mean loss
//! over the whole batch — what a single device would compute on the concatenated batch (for
//! losses that are means over pixels: bce and wcce; Dice and Tversky are averaged per replica, as
//! Keras' MirroredStrategy does). The optimizer then applies the summed gradients once
//! (`step_multi`), keeping one set of weights.

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, MultiGradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::augment::Sample;
use crate::error::TrainError;
use crate::model::SegmentationNet;
use crate::train::batch::to_tensors;
use crate::train::losses::Loss;

/// Runs one step on `batch` split over `devices` (the first holds the master weights) and
/// returns the updated model and the batch's mean loss.
pub fn step<B, M, O>(
    model: M,
    optim: &mut O,
    loss: &Loss,
    batch: &[Sample],
    devices: &[B::Device],
    learning_rate: f64,
) -> Result<(M, f64), TrainError>
where
    B: AutodiffBackend,
    M: SegmentationNet<B> + AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let total = batch.len();
    if devices.len() <= 1 {
        let device = devices.first().cloned().unwrap_or_else(|| model.devices()[0].clone());
        return Ok(on_worker(|| {
            let b = to_tensors::<B>(batch, model.classes(), &device);
            let l = loss.forward(model.forward_logits(b.images), b.targets, b.weights);
            let value: f32 = l.clone().into_scalar().elem();
            let grads = GradientsParams::from_grads(l.backward(), &model);
            (optim.step(learning_rate, model, grads), value as f64)
        }));
    }
    let (multi, value) = replica_gradients(&model, loss, batch, devices, total);
    Ok((optim.step_multi(learning_rate, model, multi), value))
}

/// The gradients of `batch` split into one shard per device: each replica's loss is weighted by
/// its shard's share of a global batch of `global_total` samples, so the replicas' gradients
/// sum to the gradient of the global batch's mean loss. Returns them with this batch's part of
/// that mean loss.
pub fn replica_gradients<B: AutodiffBackend, M: SegmentationNet<B> + AutodiffModule<B>>(
    model: &M,
    loss: &Loss,
    batch: &[Sample],
    devices: &[B::Device],
    global_total: usize,
) -> (MultiGradientsParams, f64) {
    let shard_len = batch.len().div_ceil(devices.len().max(1));
    let mut multi = MultiGradientsParams::default();
    let mut value = 0.0f64;
    for (device, shard) in devices.iter().zip(batch.chunks(shard_len)) {
        let replica = if devices.len() == 1 { model.clone() } else { model.clone().fork(device) };
        let b = to_tensors::<B>(shard, replica.classes(), device);
        let share = shard.len() as f64 / global_total as f64;
        let l = loss.forward(replica.forward_logits(b.images), b.targets, b.weights);
        let v: f32 = l.clone().into_scalar().elem();
        value += v as f64 * share;
        let grads = GradientsParams::from_grads(l.mul_scalar(share).backward(), &replica);
        multi.grads.push((grads, device.to_id()));
    }
    (multi, value)
}

/// Runs `f` on one of rayon's worker threads and waits for it.
///
/// A CPU step runs a few hundred parallel kernels and element-wise passes. Called from a thread
/// outside the pool, each one is injected into the pool while the caller sleeps, and the caller
/// is woken when it ends: two thread wake-ups per operation, and the calling core idle
/// meanwhile. On a worker, the pieces go to its own queue, it works on them itself and only the
/// other workers need waking. `f` must not wait for other rayon work submitted from outside
/// the pool (the batch producer's): with one worker thread that would never run. A step does
/// no such wait; the loop that receives batches stays outside.
fn on_worker<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}
