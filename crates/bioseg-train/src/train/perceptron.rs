//! Training the perceptron as in the course: 1000 samples of 10 features uniform in (−1, 1),
//! label 1 where their sum is positive; mean squared error; plain SGD.

use std::path::PathBuf;
use std::time::Duration;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, CheckpointState};
use crate::error::TrainError;
use crate::model::perceptron::{Perceptron, PerceptronConfig};
use crate::train::seeds::epoch_rng;

/// `n` samples of `features` values uniform in (−1, 1) and their labels (1 where the sum is
/// positive), row-major, drawn from `seed`.
pub fn perceptron_samples(n: usize, features: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..n * features).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let y = x.chunks(features).map(|r| if r.iter().sum::<f32>() > 0.0 { 1.0 } else { 0.0 }).collect();
    (x, y)
}

/// Options of a perceptron run (the CLI's flags).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PerceptronTraining {
    /// Training samples.
    pub samples: usize,
    /// Features per sample.
    pub features: usize,
    /// Seed of the data, the initial weights and the shuffling.
    pub seed: u64,
    /// Epochs to reach (a resumed run continues up to this).
    pub epochs: usize,
    /// Mini-batch size.
    pub batch_size: usize,
    /// SGD learning rate.
    pub learning_rate: f64,
    /// Where checkpoints go (none: no checkpoints).
    pub checkpoint_dir: Option<PathBuf>,
    /// Continue from the newest checkpoint in `checkpoint_dir`.
    pub resume: bool,
    /// Hide the progress bar.
    pub quiet: bool,
    /// Sleep after each epoch (only to make kill-and-resume testable on a fast model).
    #[serde(skip)]
    pub pause_per_epoch: Duration,
}

impl Default for PerceptronTraining {
    fn default() -> Self {
        PerceptronTraining {
            samples: 1000,
            features: 10,
            seed: 1,
            epochs: 100,
            batch_size: 32,
            learning_rate: 0.5,
            checkpoint_dir: None,
            resume: false,
            quiet: true,
            pause_per_epoch: Duration::ZERO,
        }
    }
}

/// Loss and accuracy after one epoch.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochRecord {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub loss: f64,
    /// Training-set accuracy at the end of the epoch.
    pub accuracy: f64,
}

const KIND: &str = "perceptron";

impl PerceptronTraining {
    fn check(&self) -> Result<(), TrainError> {
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if self.samples == 0 {
            return bad("--samples must be at least 1");
        }
        if self.features == 0 {
            return bad("--features must be at least 1");
        }
        if self.batch_size == 0 {
            return bad("--batch-size must be at least 1");
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("--lr must be a positive number");
        }
        if self.resume && self.checkpoint_dir.is_none() {
            return bad("--resume needs a checkpoint folder");
        }
        Ok(())
    }

    /// The fields that must agree between a checkpoint and a resumed run.
    fn identity(&self) -> serde_json::Value {
        serde_json::json!({
            "samples": self.samples, "features": self.features, "seed": self.seed,
            "batch_size": self.batch_size, "learning_rate": self.learning_rate,
        })
    }
}

/// Accuracy of `model` on rows `x` with labels `y` (threshold 0.5).
pub fn accuracy<B: Backend>(model: &Perceptron<B>, x: &[f32], y: &[f32], device: &B::Device) -> f64 {
    let f = model.features();
    let n = y.len();
    let input = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [n, f]), device);
    let p: Vec<f32> = model.forward(input).into_data().convert::<f32>().to_vec().unwrap();
    let correct = p.iter().zip(y).filter(|(p, y)| (**p > 0.5) == (**y > 0.5)).count();
    correct as f64 / n as f64
}

/// Trains (or resumes) a perceptron; returns the trained model (without autodiff) and the
/// history of every epoch, resumed ones included.
pub fn train_perceptron<B: AutodiffBackend>(
    cfg: &PerceptronTraining,
    device: &B::Device,
) -> Result<(Perceptron<B::InnerBackend>, Vec<EpochRecord>), TrainError> {
    cfg.check()?;
    B::seed(device, cfg.seed);
    let mut model: Perceptron<B> = PerceptronConfig::new().with_features(cfg.features).init(device);
    let mut optim = SgdConfig::new().init::<B, Perceptron<B>>();
    let mut history: Vec<EpochRecord> = Vec::new();
    let mut start = 0;

    if cfg.resume {
        let dir = cfg.checkpoint_dir.as_ref().expect("checked");
        if let Some(ckpt) = checkpoint::latest(dir)? {
            let (m, record, state) = checkpoint::load::<B, _, _>(&ckpt, KIND, model, device)?;
            if state.config != cfg.identity() {
                return Err(TrainError::Checkpoint {
                    path: ckpt,
                    reason: format!("was trained with {} but this run asks for {}", state.config, cfg.identity()),
                });
            }
            model = m;
            optim = optim.load_record(record);
            history = serde_json::from_value(state.history)
                .map_err(|e| TrainError::Checkpoint { path: ckpt.clone(), reason: e.to_string() })?;
            start = state.epoch;
            tracing::info!("resuming from {} (epoch {start})", ckpt.display());
        }
    }

    let (x, y) = perceptron_samples(cfg.samples, cfg.features, cfg.seed);
    let f = cfg.features;
    let bar = crate::progress::bar(cfg.epochs as u64, "perceptron", cfg.quiet);
    bar.set_position(start as u64);
    let mut order: Vec<usize> = (0..cfg.samples).collect();
    for epoch in start..cfg.epochs {
        order.sort_unstable();
        order.shuffle(&mut epoch_rng(cfg.seed, epoch, 1));
        let mut loss_sum = 0.0f64;
        for batch in order.chunks(cfg.batch_size) {
            let bx: Vec<f32> = batch.iter().flat_map(|&i| x[i * f..(i + 1) * f].iter().copied()).collect();
            let by: Vec<f32> = batch.iter().map(|&i| y[i]).collect();
            let n = batch.len();
            let input = Tensor::<B, 2>::from_data(TensorData::new(bx, [n, f]), device);
            let target = Tensor::<B, 2>::from_data(TensorData::new(by, [n, 1]), device);
            let diff = model.forward(input) - target;
            let loss = (diff.clone() * diff).mean();
            let value: f32 = loss.clone().into_scalar().elem();
            if !value.is_finite() {
                return Err(TrainError::Diverged { epoch: epoch + 1, loss: value });
            }
            loss_sum += value as f64 * n as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(cfg.learning_rate, model, grads);
        }
        let record = EpochRecord {
            epoch: epoch + 1,
            loss: loss_sum / cfg.samples as f64,
            accuracy: accuracy(&model.valid(), &x, &y, device),
        };
        bar.set_message(format!("loss {:.4} acc {:.3}", record.loss, record.accuracy));
        bar.inc(1);
        history.push(record);
        if let Some(dir) = &cfg.checkpoint_dir {
            let state = CheckpointState {
                kind: KIND.into(),
                epoch: epoch + 1,
                seed: cfg.seed,
                config: cfg.identity(),
                history: serde_json::to_value(&history).expect("history serialises"),
                best: None,
                model: None,
                optimizer: None,
            };
            checkpoint::save::<B, _, _>(dir, &model, optim.to_record(), state, 2)?;
        }
        if !cfg.pause_per_epoch.is_zero() {
            std::thread::sleep(cfg.pause_per_epoch);
        }
    }
    bar.finish_and_clear();
    Ok((model.valid(), history))
}
