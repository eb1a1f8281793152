//! U-Net training as the Biowulf `unet` module does it (`train.py -d DATA -c membrane -a 20 -b 2
//! -e … -F … -l … --loss … --cw … -X … -Y …`), with checkpoints, exact resume and ONNX export.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, sync_channel};
use std::time::{Duration, Instant};

use bioseg_data::metrics::{ConfusionMatrix, SegmentationScores};
use bioseg_onnx::Normalization;
use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use ndarray::{Array2, Array3};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::augment::{AugmentConfig, Sample, augment_batch};
use crate::checkpoint::{self, CheckpointState};
use crate::error::TrainError;
use crate::model::SegmentationNet;
use crate::model::unet::{Unet, UnetConfig, Upsample};
use crate::train::batch::to_tensors;
use crate::train::losses::{ClassWeights, Loss, LossKind};
use crate::train::schedule::LrSchedule;
use crate::train::seeds::epoch_rng;
use bioseg_data::weight_map::{BorderWeights, unet_weight_map};

/// Everything a U-Net run needs (the CLI's flags).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnetTraining {
    /// Data root in the seed's layout (`ROOT/<object_class>/train/{image,label}`).
    pub data_dir: PathBuf,
    /// Object class sub-folder (`membrane`, `mito`, …).
    pub object_class: String,
    /// Input channels (1 or 3); images are converted.
    pub in_channels: usize,
    /// Start filters.
    pub filters: usize,
    /// Down levels.
    pub depth: usize,
    /// Dropout rate at the deepest levels.
    pub drop_rate: f64,
    /// Batch normalisation.
    pub batch_norm: bool,
    /// With `batch_norm`, also after the decoder's upsampling layers and the head (the Keras
    /// layout; set by `--init-from`). Left out of the JSON when off, so the identity of earlier
    /// runs is unchanged.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch_norm_all: bool,
    /// Decoder upsampling.
    pub upsample: String,
    /// Effective data-size multiplier: steps per epoch = images × rate / batch.
    pub augmentation_rate: usize,
    /// Augmentation transforms.
    pub augment: AugmentConfig,
    /// Mini-batch size.
    pub batch_size: usize,
    /// Epochs to reach.
    pub epochs: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Loss.
    pub loss: LossKind,
    /// Tversky β.
    pub beta: f32,
    /// Focal-Tversky γ.
    pub gamma: f32,
    /// Class weights.
    pub class_weights: ClassWeights,
    /// Training crop width (-X).
    pub crop_width: usize,
    /// Training crop height (-Y).
    pub crop_height: usize,
    /// Fraction of images held out for validation.
    pub val_fraction: f64,
    /// Seed of everything random.
    pub seed: u64,
    /// Override of the steps per epoch (0: images × rate / batch).
    pub steps_per_epoch: usize,
    /// Stop starting new epochs after this many minutes (0: no limit).
    pub max_minutes: f64,
    /// Class names (empty: derived from the data).
    pub class_names: Vec<String>,
    /// Names (file stems) of the images held out for validation; empty: a seeded random
    /// `val_fraction` of the images.
    #[serde(default)]
    pub val_names: Vec<String>,
    /// The U-Net paper's per-pixel loss weights (`--weight-map unet`): class weight plus a
    /// border term between touching cells; bce and wcce only. Left out of the JSON when off
    /// (as are the two options below), so the identity of earlier runs is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_map: Option<BorderWeights>,
    /// Learning-rate schedule over the run's steps (epochs × steps per epoch).
    #[serde(default, skip_serializing_if = "is_default")]
    pub lr_schedule: LrSchedule,
    /// Steps of linear learning-rate warm-up at the start of the run.
    #[serde(default, skip_serializing_if = "is_default")]
    pub warmup_steps: usize,
}

/// For `skip_serializing_if`: the value is its type's default.
fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Default for UnetTraining {
    fn default() -> Self {
        UnetTraining {
            data_dir: PathBuf::from("data/synth"),
            object_class: "membrane".into(),
            in_channels: 1,
            filters: 64,
            depth: 4,
            drop_rate: 0.5,
            batch_norm: false,
            batch_norm_all: false,
            upsample: "nearest".into(),
            augmentation_rate: 20,
            augment: AugmentConfig::default(),
            batch_size: 2,
            epochs: 10,
            learning_rate: 1e-4,
            loss: LossKind::Bce,
            beta: 0.7,
            gamma: 1.0,
            class_weights: ClassWeights::Uniform,
            crop_width: 256,
            crop_height: 256,
            val_fraction: 0.2,
            seed: 1,
            steps_per_epoch: 0,
            max_minutes: 0.0,
            class_names: Vec::new(),
            val_names: Vec::new(),
            weight_map: None,
            lr_schedule: LrSchedule::Constant,
            warmup_steps: 0,
        }
    }
}

/// Per-epoch record of the history (also written as CSV).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct UnetEpoch {
    /// Epoch number (1-based).
    pub epoch: usize,
    /// Mean training loss.
    pub train_loss: f64,
    /// Validation loss (NaN-free; 0 without validation data).
    pub val_loss: f64,
    /// Validation Dice per class (empty without validation data).
    pub val_dice: Vec<f64>,
    /// Validation IoU per class (empty without validation data).
    pub val_iou: Vec<f64>,
    /// Validation pixel error (0 without validation data).
    pub val_pixel_error: f64,
    /// Seconds the epoch took.
    pub seconds: f64,
    /// Training images (crops) per second.
    pub images_per_second: f64,
}

impl UnetEpoch {
    /// Whether the epoch was validated (a run without validation data has no scores).
    pub fn validated(&self) -> bool {
        !self.val_dice.is_empty()
    }

    /// `val loss L, val Dice NAME D, ..., val pixel error E`, or `no validation data`.
    pub fn validation_summary(&self, class_names: &[String]) -> String {
        if !self.validated() {
            return "no validation data".into();
        }
        format!(
            "val loss {:.4}, val Dice {}, val pixel error {:.4}",
            self.val_loss,
            bioseg_data::cli_support::named_scores(class_names, &self.val_dice),
            self.val_pixel_error
        )
    }

    /// Mean Dice over the foreground classes (class 1…; for a binary model class 1).
    pub fn foreground_dice(&self) -> f64 {
        let fg = &self.val_dice[1.min(self.val_dice.len())..];
        if fg.is_empty() { 0.0 } else { fg.iter().sum::<f64>() / fg.len() as f64 }
    }
}

/// What a finished (or resumed-and-finished) run produced.
pub struct TrainedUnet<B: Backend> {
    /// The final model.
    pub model: Unet<B>,
    /// Every epoch's record.
    pub history: Vec<UnetEpoch>,
    /// Number of classes in the data (2 for binary).
    pub data_classes: usize,
    /// The normalisation applied to inputs.
    pub normalization: Normalization,
    /// Class names.
    pub class_names: Vec<String>,
}

/// Class names of a binary model trained on `object_class`: the ISBI convention for membranes
/// (label 255 = cell interior, 0 = membrane), background/foreground otherwise.
pub fn binary_class_names(object_class: &str) -> Vec<String> {
    if object_class == "membrane" {
        vec!["membrane".into(), "cell-interior".into()]
    } else {
        vec!["background".into(), object_class.into()]
    }
}

/// Loaded, normalised training and validation data.
pub struct UnetData {
    /// Training images and masks.
    pub train: Vec<Sample>,
    /// Validation crops (fixed, covering the held-out images).
    pub val: Vec<Sample>,
    /// Classes in the masks (2 for binary masks).
    pub classes: usize,
    /// Pixel fraction of each class in the training masks.
    pub class_frequencies: Vec<f64>,
    /// Normalisation applied to the images.
    pub normalization: Normalization,
    /// Names of the held-out images.
    pub val_names: Vec<String>,
}

impl UnetData {
    /// Gives every training image and validation crop the U-Net paper's weight map
    /// ([`unet_weight_map`]), with `w_c` = the loss's `class_weights` scaled so that their mean
    /// over the training pixels is 1 (uniform weights: 1 everywhere, plus the border term).
    /// Training images get the map of the whole image (the augmentation warps it with the
    /// image); validation crops get their own crop's map, which only the validation loss uses.
    pub fn add_weight_maps(&mut self, class_weights: &[f32], border: BorderWeights) {
        use rayon::prelude::*;
        let mean: f64 = self.class_frequencies.iter().zip(class_weights).map(|(f, &w)| f * f64::from(w)).sum();
        let wc: Vec<f32> =
            class_weights.iter().map(|&w| if mean > 0.0 { (f64::from(w) / mean) as f32 } else { 1.0 }).collect();
        self.train.par_iter_mut().chain(self.val.par_iter_mut()).for_each(|s| {
            s.weights = Some(unet_weight_map(s.mask.view(), &wc, border));
        });
    }
}

const KIND: &str = "unet";

impl UnetTraining {
    /// Whether images are held out for validation (`--val-fraction 0` without `--val-names`:
    /// a final model trained on all the data, with no validation scores).
    pub fn holds_out_validation(&self) -> bool {
        self.val_fraction > 0.0 || !self.val_names.is_empty()
    }

    /// The model configuration these options describe, for `classes` data classes.
    pub fn model_config(&self, classes: usize) -> UnetConfig {
        UnetConfig::new()
            .with_in_channels(self.in_channels)
            .with_classes(if classes <= 2 { 1 } else { classes })
            .with_filters(self.filters)
            .with_depth(self.depth)
            .with_drop_rate(self.drop_rate)
            .with_batch_norm(self.batch_norm)
            .with_batch_norm_all(self.batch_norm_all)
            .with_upsample(self.upsample.parse().unwrap_or(Upsample::Nearest))
    }

    /// Checks option values before any work starts.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        self.model_config(2).validate().map_err(TrainError::Config)?;
        self.upsample.parse::<Upsample>().map_err(TrainError::Config)?;
        let m = 1usize << self.depth;
        if self.crop_width == 0
            || self.crop_height == 0
            || !self.crop_width.is_multiple_of(m)
            || !self.crop_height.is_multiple_of(m)
        {
            return bad(format!(
                "-X/-Y ({}x{}) must be positive multiples of {m} (2^depth)",
                self.crop_width, self.crop_height
            ));
        }
        if self.in_channels != 1 && self.in_channels != 3 {
            return bad(format!("--in-channels must be 1 (gray) or 3 (RGB), not {}", self.in_channels));
        }
        if self.batch_size == 0 {
            return bad("-b/--batch-size must be at least 1".into());
        }
        if let Some(b) = self.weight_map {
            if !matches!(self.loss, LossKind::Bce | LossKind::Wcce) {
                return bad(format!("--weight-map needs --loss bce or wcce, not {}", self.loss));
            }
            if !(b.w0.is_finite() && b.w0 >= 0.0 && b.sigma.is_finite() && b.sigma > 0.0) {
                return bad(format!("--w0 must be ≥ 0 and --sigma > 0 (got {} and {})", b.w0, b.sigma));
            }
        }
        if self.augmentation_rate == 0 {
            return bad("-a/--augmentation-rate must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad("-l/--lr must be a positive number".into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!("--val-fraction must be in [0, 1), not {}", self.val_fraction));
        }
        if !(0.0..=1.0).contains(&self.beta) || self.gamma.is_nan() || self.gamma <= 0.0 {
            return bad("--beta must be in [0, 1] and --gamma positive".into());
        }
        Ok(())
    }

    /// Loads the data: pairs, mask decoding, normalisation, train/validation split, fixed
    /// validation crops.
    pub fn load_data(&self) -> Result<UnetData, TrainError> {
        let ds = bioseg_data::SegmentationDataset::open(&self.data_dir, &self.object_class, "train")?;
        let mut images = Vec::new();
        let mut masks = Vec::new();
        let mut names = Vec::new();
        for i in 0..ds.len() {
            let (image, mask) = ds.load_pair(i)?;
            let pair = &ds.pairs()[i];
            if image.data.iter().any(|v| !v.is_finite()) {
                return Err(TrainError::Config(format!("image {} holds NaN or infinite values", pair.image.display())));
            }
            let (h, w, _) = image.data.dim();
            if w < self.crop_width || h < self.crop_height {
                return Err(TrainError::Config(format!(
                    "-X/-Y crop {}x{} is larger than image {} ({w}x{h}); use a smaller crop",
                    self.crop_width,
                    self.crop_height,
                    pair.image.display()
                )));
            }
            images.push(image);
            masks.push(mask);
            names.push(ds.pairs()[i].name.clone());
        }
        let classes = masks.iter().map(|m| m.num_classes).max().unwrap_or(2).max(2);
        let normalization = normalization_for(images.first().map(|i| i.depth));
        let mut samples: Vec<(String, Sample)> = Vec::new();
        for ((image, mask), name) in images.into_iter().zip(masks).zip(names) {
            let mut data = convert_channels(image.data, self.in_channels);
            if let Some(s) = data.as_slice_mut() {
                normalization.apply(s);
            }
            samples.push((name, Sample::new(data, mask.classes)));
        }
        // Deterministic split.
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.shuffle(&mut epoch_rng(self.seed, 0, 77));
        let n_val = if samples.len() >= 2 {
            ((samples.len() as f64 * self.val_fraction).round() as usize).min(samples.len() - 1)
        } else {
            0
        };
        let val_idx: Vec<usize> = if self.val_names.is_empty() {
            order[..n_val].to_vec()
        } else {
            let mut idx = Vec::new();
            for name in &self.val_names {
                match samples.iter().position(|(n, _)| n == name) {
                    Some(i) => idx.push(i),
                    None => {
                        return Err(TrainError::Config(format!(
                            "--val-names: no image named `{name}` in {}",
                            self.data_dir.join(&self.object_class).join("train").display()
                        )));
                    }
                }
            }
            idx
        };
        let mut train = Vec::new();
        let mut val = Vec::new();
        let mut val_names = Vec::new();
        for (i, (name, s)) in samples.into_iter().enumerate() {
            if val_idx.contains(&i) {
                val_names.push(name);
                val.extend(grid_crops(&s, self.crop_height, self.crop_width));
            } else {
                train.push(s);
            }
        }
        let mut counts = vec![0u64; classes];
        for s in &train {
            for &c in s.mask.iter() {
                if (c as usize) < classes {
                    counts[c as usize] += 1;
                }
            }
        }
        let total: u64 = counts.iter().sum();
        let class_frequencies = counts.iter().map(|&c| c as f64 / total.max(1) as f64).collect();
        Ok(UnetData { train, val, classes, class_frequencies, normalization, val_names })
    }

    fn identity(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("serialises");
        // Options that may change between a run and its resumption.
        if let Some(o) = v.as_object_mut() {
            o.remove("epochs");
            o.remove("max_minutes");
        }
        v
    }
}

/// Converts `[H, W, C]` to `in_channels` channels (gray ↔ RGB).
fn convert_channels(data: Array3<f32>, in_channels: usize) -> Array3<f32> {
    let (h, w, c) = data.dim();
    if c == in_channels {
        return data;
    }
    Array3::from_shape_fn((h, w, in_channels), |(y, x, k)| {
        if c == 1 {
            data[[y, x, 0]]
        } else if in_channels == 1 {
            (0..c.min(3)).map(|i| data[[y, x, i]]).sum::<f32>() / c.min(3) as f32
        } else {
            data[[y, x, k.min(c - 1)]]
        }
    })
}

/// Crops covering `s` on a grid (the last row/column aligned to the border), mirror-padding
/// images smaller than the crop.
pub fn grid_crops(s: &Sample, ch: usize, cw: usize) -> Vec<Sample> {
    let (h, w, _) = s.image.dim();
    if h < ch || w < cw {
        let cfg = AugmentConfig::none();
        let mut rng = epoch_rng(0, 0, 0);
        return vec![crate::augment::augment_crop(s, ch, cw, &cfg, &mut rng)];
    }
    let starts = |n: usize, c: usize| -> Vec<usize> {
        let mut v: Vec<usize> = (0..n.saturating_sub(c) + 1).step_by(c).collect();
        if *v.last().unwrap() + c < n {
            v.push(n - c);
        }
        v
    };
    let mut out = Vec::new();
    for &y in &starts(h, ch) {
        for &x in &starts(w, cw) {
            out.push(Sample {
                image: s.image.slice(ndarray::s![y..y + ch, x..x + cw, ..]).to_owned(),
                mask: s.mask.slice(ndarray::s![y..y + ch, x..x + cw]).to_owned(),
                weights: s.weights.as_ref().map(|w| w.slice(ndarray::s![y..y + ch, x..x + cw]).to_owned()),
            });
        }
    }
    out
}

/// Makes the run options describe the Keras U-Net at `path` (filters, depth, input channels,
/// batch norm, upsampling); returns one warning per option that changed.
pub fn adopt_keras_architecture(cfg: &mut UnetTraining, path: &Path) -> Result<Vec<String>, TrainError> {
    let k = crate::keras_import::keras_unet_config(path)?;
    let mut warnings = Vec::new();
    let from = path.display();
    let mut set = |flag: &str, old: String, new: String| {
        if old != new {
            warnings.push(format!("{flag} {old} replaced by {new}, the architecture of {from}"));
        }
    };
    let upsample = match k.upsample {
        Upsample::Nearest => "nearest",
        Upsample::Transpose => "transpose",
    };
    set("-F/--filters", cfg.filters.to_string(), k.filters.to_string());
    set("--depth", cfg.depth.to_string(), k.depth.to_string());
    set("--in-channels", cfg.in_channels.to_string(), k.in_channels.to_string());
    set("--batch-norm", cfg.batch_norm.to_string(), k.batch_norm.to_string());
    set("--upsample", cfg.upsample.clone(), upsample.to_string());
    set(
        "batch norm after the upsampling and head convolutions:",
        cfg.batch_norm_all.to_string(),
        k.batch_norm_all.to_string(),
    );
    cfg.filters = k.filters;
    cfg.depth = k.depth;
    cfg.in_channels = k.in_channels;
    cfg.batch_norm = k.batch_norm;
    cfg.batch_norm_all = k.batch_norm_all;
    cfg.upsample = upsample.to_string();
    Ok(warnings)
}

/// The normalisation of a run, from its first training image's sample type: 16-bit images are
/// divided by 65535, floating-point ones kept, everything else divided by 255.
pub fn normalization_for(depth: Option<bioseg_data::SampleDepth>) -> Normalization {
    match depth {
        Some(bioseg_data::SampleDepth::U16) => Normalization::Divide(65535.0),
        Some(bioseg_data::SampleDepth::F32) => Normalization::None,
        _ => Normalization::Divide(255.0),
    }
}

/// Class maps `[N][H, W]` from probabilities `[N, K, H, W]` (threshold 0.5 for K = 1).
pub fn predicted_classes<B: Backend>(probs: Tensor<B, 4>) -> Vec<Array2<u8>> {
    let [n, k, h, w] = probs.dims();
    let v: Vec<f32> = probs.into_data().convert::<f32>().to_vec().expect("f32");
    (0..n)
        .map(|i| {
            Array2::from_shape_fn((h, w), |(y, x)| {
                let at = |c: usize| v[((i * k + c) * h + y) * w + x];
                if k == 1 {
                    u8::from(at(0) > 0.5)
                } else {
                    (0..k).max_by(|&a, &b| at(a).total_cmp(&at(b))).unwrap_or(0) as u8
                }
            })
        })
        .collect()
}

/// Validation loss and scores of `model` over fixed crops.
pub fn validate<B: Backend, M: SegmentationNet<B>>(
    model: &M,
    loss: &Loss,
    val: &[Sample],
    classes: usize,
    batch: usize,
    device: &B::Device,
) -> (f64, SegmentationScores) {
    let mut loss_sum = 0.0;
    let mut preds = Vec::new();
    for chunk in val.chunks(batch.max(1)) {
        let b = to_tensors::<B>(chunk, model.classes(), device);
        let logits = model.forward_logits(b.images);
        let l: f32 = loss.forward(logits.clone(), b.targets, b.weights).into_scalar().elem();
        loss_sum += l as f64 * chunk.len() as f64;
        let probs = if model.classes() == 1 {
            burn::tensor::activation::sigmoid(logits)
        } else {
            burn::tensor::activation::softmax(logits, 1)
        };
        preds.extend(predicted_classes(probs));
    }
    let mut confusion = ConfusionMatrix::new(classes).expect("at least one class");
    for (p, s) in preds.iter().zip(val) {
        confusion.add(p.view(), s.mask.view()).expect("prediction and mask have the crop's shape");
    }
    (loss_sum / val.len().max(1) as f64, confusion.scores())
}

/// A callback after every epoch: the run's folder, the history so far and the class names
/// (e.g. [`crate::history::write_history`]).
pub type OnEpoch = fn(&Path, &[UnetEpoch], &[String]);

/// Options of one call to [`train_unet`] that do not define the run (and so may change on resume).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Checkpoint folder (`OUT/checkpoints`); none = no checkpoints.
    pub checkpoint_dir: Option<PathBuf>,
    /// Resume from this checkpoint (folder or checkpoint folder).
    pub resume_from: Option<PathBuf>,
    /// Hide progress bars.
    pub quiet: bool,
    /// Called after every epoch with the history so far (curves, CSV).
    pub on_epoch: Option<OnEpoch>,
    /// Folder given to `on_epoch`.
    pub out_dir: Option<PathBuf>,
    /// Write this many augmented samples as PNGs here before training.
    pub save_augmented: Option<(PathBuf, usize)>,
    /// Initialise the weights from this Keras U-Net ONNX file
    /// ([`crate::keras_import::load_keras_unet`]) before any resume.
    pub init_from: Option<PathBuf>,
    /// Multi-node data parallel: this process's place among the nodes (one process per node;
    /// needs the `collective` feature; see [`crate::train::multi_node`]). None: one node.
    pub multi_node: Option<crate::train::multi_node::MultiNodeConfig>,
}

/// Trains (or resumes) a U-Net.
///
/// `devices` holds one device, or several for data-parallel training (one replica each; the
/// global batch per step is `batch_size × devices`).
pub fn train_unet<B: AutodiffBackend>(
    cfg: &UnetTraining,
    opts: &RunOptions,
    devices: &[B::Device],
) -> Result<TrainedUnet<B::InnerBackend>, TrainError> {
    cfg.check()?;
    let device = first_device(devices)?;
    let mut data = cfg.load_data()?;
    if data.train.is_empty() {
        return Err(TrainError::Config("no training images left after the validation split".into()));
    }
    let model_cfg = cfg.model_config(data.classes);
    let weights_classes = data.classes;
    let class_weights =
        cfg.class_weights.resolve(weights_classes, &data.class_frequencies).map_err(TrainError::Config)?;
    let loss = Loss { kind: cfg.loss, class_weights, beta: cfg.beta, gamma: cfg.gamma };
    if let Some(border) = cfg.weight_map {
        let t = Instant::now();
        data.add_weight_maps(&loss.class_weights, border);
        tracing::info!(
            "U-Net weight maps (w0 {}, sigma {} px) of {} images and {} crops in {:.1} s",
            border.w0,
            border.sigma,
            data.train.len(),
            data.val.len(),
            t.elapsed().as_secs_f64()
        );
    }
    let class_names = if cfg.class_names.is_empty() {
        if data.classes == 2 {
            crate::train::unet::binary_class_names(&cfg.object_class)
        } else {
            (0..data.classes).map(|c| format!("class{c}")).collect()
        }
    } else if cfg.class_names.len() == data.classes {
        cfg.class_names.clone()
    } else {
        return Err(TrainError::Config(format!(
            "--class-names gives {} names but the labels in {} hold {} classes",
            cfg.class_names.len(),
            cfg.data_dir.join(&cfg.object_class).join("train").display(),
            data.classes
        )));
    };
    tracing::info!(
        "{} training images, {} validation crops, {} classes (frequencies: {}; loss weights: {})",
        data.train.len(),
        data.val.len(),
        data.classes,
        bioseg_data::cli_support::named_scores(&class_names, &data.class_frequencies),
        bioseg_data::cli_support::named_scores(
            &class_names,
            &loss.class_weights.iter().map(|&w| f64::from(w)).collect::<Vec<_>>()
        )
    );

    if let Some((dir, n)) = &opts.save_augmented {
        save_augmented(dir, *n, &data.train, cfg)?;
    }

    B::seed(device, cfg.seed);
    let mut model: Unet<B> = model_cfg.init(device);
    if let Some(path) = &opts.init_from {
        model = crate::keras_import::load_keras_unet(model, path, device)?;
        tracing::info!("initial weights from {}", path.display());
    }
    let run =
        Run { cfg, loss: &loss, class_names: &class_names, classes: data.classes, train: data.train, val: &data.val };
    let (model, history) = train_network(model, run, opts, devices)?;
    Ok(TrainedUnet { model, history, data_classes: data.classes, normalization: data.normalization, class_names })
}

/// The device that holds the master weights: the first of `devices`.
fn first_device<D>(devices: &[D]) -> Result<&D, TrainError> {
    devices.first().ok_or_else(|| TrainError::Config("no device given".into()))
}

/// What a run trains a network on, and how: the options, the loss, the data's classes and the
/// training samples and validation crops.
struct Run<'a> {
    cfg: &'a UnetTraining,
    loss: &'a Loss,
    class_names: &'a [String],
    classes: usize,
    train: Vec<Sample>,
    val: &'a [Sample],
}

/// The epoch loop of any segmentation network ([`SegmentationNet`]): resume from a checkpoint,
/// joining the other nodes, the steps (one device, data parallel or multi-node), validation,
/// checkpoints and the per-epoch callback. Returns the trained network and its history.
fn train_network<B, M>(
    mut model: M,
    run: Run,
    opts: &RunOptions,
    devices: &[B::Device],
) -> Result<(M::InnerModule, Vec<UnetEpoch>), TrainError>
where
    B: AutodiffBackend,
    M: SegmentationNet<B> + AutodiffModule<B>,
    M::InnerModule: SegmentationNet<B::InnerBackend>,
{
    let Run { cfg, loss, class_names, classes, train, val } = run;
    let device = first_device(devices)?;
    let replicas = devices.len();
    let mut optim = AdamConfig::new().init::<B, M>();
    let mut history: Vec<UnetEpoch> = Vec::new();
    let mut best: Option<f64> = None;
    let mut start = 0;
    if let Some(from) = &opts.resume_from {
        let ckpt = checkpoint::resolve(from)?;
        let (m, rec, state) = checkpoint::load::<B, _, _>(&ckpt, KIND, model, device)?;
        if state.config != cfg.identity() {
            return Err(TrainError::Checkpoint {
                path: ckpt,
                reason: format!("was trained with other options: {}", diff_json(&state.config, &cfg.identity())),
            });
        }
        model = m;
        optim = optim.load_record(rec);
        history = serde_json::from_value(state.history)
            .map_err(|e| TrainError::Checkpoint { path: ckpt.clone(), reason: e.to_string() })?;
        best = state.best;
        start = state.epoch;
        tracing::info!("resuming from {} after epoch {start}", ckpt.display());
    }

    // Multi-node: every node draws its shard (`rank`) of a global batch `nodes` times larger.
    let (nodes, rank) = opts.multi_node.as_ref().map_or((1, 0), |m| (m.nodes, m.rank));
    #[cfg(feature = "collective")]
    let collective = match &opts.multi_node {
        Some(m) => {
            let c = crate::train::multi_node::Collective::<B>::join(m, device)?;
            c.check_same_weights(&model)?;
            Some(c)
        }
        None => None,
    };
    #[cfg(not(feature = "collective"))]
    if opts.multi_node.is_some() {
        return Err(TrainError::Config(
            "multi-node training needs a bioseg-train built with `--features collective`".into(),
        ));
    }
    // Everything is checked (and every node has joined): only now may the run leave files.
    if let Some(out) = &opts.out_dir {
        std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    }
    let steps = if cfg.steps_per_epoch > 0 {
        cfg.steps_per_epoch
    } else {
        (train.len() * cfg.augmentation_rate).div_ceil(cfg.batch_size * replicas * nodes).max(1)
    };
    let node_batch = cfg.batch_size * replicas;
    let global_batch = node_batch * nodes;
    let t0 = Instant::now();
    let train = std::sync::Arc::new(train);
    for epoch in start..cfg.epochs {
        if cfg.max_minutes > 0.0 && t0.elapsed() > Duration::from_secs_f64(cfg.max_minutes * 60.0) {
            tracing::info!("time limit reached after {epoch} epochs");
            break;
        }
        B::seed(device, cfg.seed.wrapping_add(1000 + epoch as u64).wrapping_add((rank as u64) << 32));
        let batches = spawn_batches(train.clone(), cfg, (global_batch, rank * node_batch, node_batch), epoch, steps);
        let bar = crate::progress::bar(steps as u64, &format!("epoch {}/{}", epoch + 1, cfg.epochs), opts.quiet);
        let te = Instant::now();
        let mut loss_sum = 0.0;
        for (step, batch) in batches.into_iter().enumerate() {
            let lr =
                cfg.lr_schedule.rate(cfg.learning_rate, epoch * steps + step, cfg.epochs * steps, cfg.warmup_steps);
            #[cfg(feature = "collective")]
            let (m, value) = match &collective {
                Some(c) => crate::train::multi_node::step(model, &mut optim, loss, &batch, devices, lr, c)?,
                None => crate::train::data_parallel::step(model, &mut optim, loss, &batch, devices, lr)?,
            };
            #[cfg(not(feature = "collective"))]
            let (m, value) = crate::train::data_parallel::step(model, &mut optim, loss, &batch, devices, lr)?;
            model = m;
            if !value.is_finite() {
                return Err(TrainError::Diverged { epoch: epoch + 1, loss: value as f32 });
            }
            loss_sum += value;
            let ips = ((step + 1) * global_batch) as f64 / te.elapsed().as_secs_f64();
            bar.set_message(format!("loss {:.4} {:.1} img/s", loss_sum / (step + 1) as f64, ips));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let seconds = te.elapsed().as_secs_f64();
        let valid = model.valid();
        // Without validation data (`--val-fraction 0`: a final model on all the data) nothing
        // is measured: no Dice or IoU, loss and pixel error 0.
        let (val_loss, scores) = if val.is_empty() {
            (0.0, None)
        } else {
            let (l, s) = validate(&valid, loss, val, classes, cfg.batch_size, device);
            (l, Some(s))
        };
        let record = UnetEpoch {
            epoch: epoch + 1,
            train_loss: loss_sum / steps as f64,
            val_loss,
            val_dice: scores.iter().flat_map(|s| s.per_class.iter().map(|c| c.dice)).collect(),
            val_iou: scores.iter().flat_map(|s| s.per_class.iter().map(|c| c.iou)).collect(),
            val_pixel_error: scores.as_ref().map_or(0.0, |s| s.pixel_error),
            seconds,
            images_per_second: (steps * global_batch) as f64 / seconds,
        };
        tracing::info!(
            "epoch {}: loss {:.4}, {}, {:.2} img/s",
            record.epoch,
            record.train_loss,
            record.validation_summary(class_names),
            record.images_per_second
        );
        let fg = record.foreground_dice();
        let improved = !val.is_empty() && best.is_none_or(|b| fg > b);
        if improved {
            best = Some(fg);
        }
        history.push(record);
        if let Some(dir) = &opts.checkpoint_dir {
            let state = CheckpointState {
                kind: KIND.into(),
                epoch: epoch + 1,
                seed: cfg.seed,
                config: cfg.identity(),
                history: serde_json::to_value(&history).expect("serialises"),
                best,
                model: None,
                optimizer: None,
            };
            let saved = checkpoint::save::<B, _, _>(dir, &model, optim.to_record(), state, 2)?;
            if improved {
                checkpoint::copy_as(&saved, dir, "best")?;
            }
        }
        if let (Some(f), Some(out)) = (opts.on_epoch, &opts.out_dir) {
            f(out, &history, class_names);
        }
    }
    #[cfg(feature = "collective")]
    if let Some(c) = collective {
        c.finish()?;
    }
    Ok((model.valid(), history))
}

/// Produces the epoch's batches on a background thread (augmentation in parallel with rayon),
/// a few batches ahead of the trainer. Batch `s` of epoch `e` depends only on (seed, e, s).
/// `(b, offset, count)`: the global batch size, and the part of each global batch this process
/// draws (all of it, `(b, 0, b)`, except on the nodes of a multi-node run).
fn spawn_batches(
    train: std::sync::Arc<Vec<Sample>>,
    cfg: &UnetTraining,
    (b, offset, count): (usize, usize, usize),
    epoch: usize,
    steps: usize,
) -> Receiver<Vec<Sample>> {
    let (tx, rx) = sync_channel(4);
    let (aug, ch, cw, seed) = (cfg.augment.clone(), cfg.crop_height, cfg.crop_width, cfg.seed);
    std::thread::spawn(move || {
        for step in 0..steps {
            let first = ((epoch * steps + step) * b + offset) as u64;
            let batch = augment_batch(&train, first, count, ch, cw, &aug, seed);
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    rx
}

fn save_augmented(dir: &Path, n: usize, train: &[Sample], cfg: &UnetTraining) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let samples = augment_batch(train, 0, n, cfg.crop_height, cfg.crop_width, &cfg.augment, cfg.seed);
    for (i, s) in samples.iter().enumerate() {
        let (h, w, _) = s.image.dim();
        let img: Vec<u8> = s
            .image
            .index_axis(ndarray::Axis(2), 0)
            .iter()
            .map(|&v| (v * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect();
        let max = s.mask.iter().copied().max().unwrap_or(1).max(1) as u32;
        let mask: Vec<u8> = s.mask.iter().map(|&c| (c as u32 * 255 / max) as u8).collect();
        bioseg_data::write_gray_u8_png(dir.join(format!("{i}_image.png")), w as u32, h as u32, &img)?;
        bioseg_data::write_gray_u8_png(dir.join(format!("{i}_mask.png")), w as u32, h as u32, &mask)?;
    }
    Ok(())
}

fn diff_json(a: &serde_json::Value, b: &serde_json::Value) -> String {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => {
            let mut d: Vec<String> = b
                .iter()
                .filter(|(k, v)| a.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k} {} -> {v}", a.get(k).cloned().unwrap_or_default()))
                .collect();
            d.sort();
            d.join(", ")
        }
        _ => "different configuration".into(),
    }
}
