//! U-Net training (CI-sized): the loss falls, ONNX export equals Burn's forward, multi-class
//! wcce learns every class, resume is exact, and data parallelism averages gradients exactly.

use std::path::Path;

use bioseg_data::weight_map::BorderWeights;
use bioseg_infer::OnnxModel;
use bioseg_train::augment::{AugmentConfig, augment_batch, synthetic_samples};
use bioseg_train::device::{CpuAutodiff, CpuBackend};
use bioseg_train::model::unet::{Unet, UnetConfig, Upsample};
use bioseg_train::train::losses::{ClassWeights, Loss, LossKind};
use bioseg_train::train::schedule::LrSchedule;
use bioseg_train::train::unet::{RunOptions, UnetTraining, train_unet};
use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::prelude::*;

fn synth(dir: &Path, n: usize, size: usize) {
    let params = bioseg_data::SynthParams { width: size, height: size, ..Default::default() };
    bioseg_data::write_dataset(dir, n, 0, &params, 3).unwrap();
}

fn tiny(data: &Path, object_class: &str) -> UnetTraining {
    UnetTraining {
        data_dir: data.to_path_buf(),
        object_class: object_class.into(),
        filters: 4,
        depth: 2,
        drop_rate: 0.0,
        augmentation_rate: 2,
        batch_size: 2,
        epochs: 2,
        learning_rate: 3e-3,
        crop_width: 64,
        crop_height: 64,
        val_fraction: 0.25,
        ..Default::default()
    }
}

fn weights(m: &Unet<CpuBackend>) -> Vec<f32> {
    let mut v = Vec::new();
    for b in m.down.iter().chain(std::iter::once(&m.bottleneck)) {
        v.extend(b.conv1.weight.val().into_data().to_vec::<f32>().unwrap());
        v.extend(b.conv2.weight.val().into_data().to_vec::<f32>().unwrap());
    }
    v.extend(m.out.weight.val().into_data().to_vec::<f32>().unwrap());
    v
}

#[test]
fn tiny_unet_loss_falls_on_synthetic_membranes() {
    let _serial = bioseg_suite::burn_lock();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4, 96);
    let cfg = UnetTraining {
        epochs: 6,
        steps_per_epoch: 10,
        filters: 8,
        augment: AugmentConfig::none(),
        ..tiny(dir.path(), "membrane")
    };
    let trained =
        train_unet::<CpuAutodiff>(&cfg, &RunOptions { quiet: true, ..Default::default() }, &[Default::default()])
            .unwrap();
    let h = &trained.history;
    assert_eq!(h.len(), 6);
    let (first, last) = (h[0].train_loss, h.last().unwrap().train_loss);
    assert!(last < 0.8 * first, "loss did not fall clearly: {first} -> {last}");
    assert_eq!(h[0].val_dice.len(), 2);
}

fn check_export(config: UnetConfig, sizes: &[(usize, usize)]) {
    let device = Default::default();
    let model: Unet<CpuBackend> = config.init(&device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unet.onnx");
    bioseg_train::export::write_onnx(&model.to_onnx(&bioseg_train::export::base_metadata()), &path).unwrap();
    let onnx = OnnxModel::load(&path).unwrap();
    let md = onnx.metadata();
    assert_eq!(md.size_multiple, Some(1 << config.depth));
    assert!(md.recommended_halo.unwrap() >= md.receptive_field_radius.unwrap());
    for &(h, w) in sizes {
        let c = config.in_channels;
        let n = 2;
        let x: Vec<f32> = (0..n * c * h * w).map(|i| ((i * 7919) % 255) as f32 / 255.0).collect();
        let burn_out: Vec<f32> = model
            .forward(Tensor::<CpuBackend, 4>::from_data(TensorData::new(x.clone(), [n, c, h, w]), &device))
            .into_data()
            .to_vec()
            .unwrap();
        let outs = onnx.run(&[n, c, h, w], &x).unwrap();
        assert_eq!(outs[0].0, vec![n, config.classes, h, w]);
        let max = burn_out.iter().zip(&outs[0].1).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max <= 1e-4, "{config:?} at {h}x{w}: max |burn - tract| = {max}");
    }
}

#[test]
fn exported_onnx_equals_burn_forward_at_two_sizes() {
    let _serial = bioseg_suite::burn_lock();
    check_export(UnetConfig::new().with_filters(4).with_depth(3), &[(64, 64), (48, 80)]);
    check_export(
        UnetConfig::new().with_filters(4).with_depth(2).with_batch_norm(true).with_upsample(Upsample::Transpose),
        &[(32, 32), (44, 20)],
    );
    check_export(
        UnetConfig::new().with_filters(4).with_depth(2).with_in_channels(3).with_classes(3),
        &[(32, 48), (16, 16)],
    );
}

#[test]
fn multiclass_wcce_learns_every_class() {
    let _serial = bioseg_suite::burn_lock();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 4, 128);
    let cfg = UnetTraining {
        filters: 8,
        depth: 3,
        epochs: 16,
        steps_per_epoch: 12,
        learning_rate: 3e-3,
        loss: LossKind::Wcce,
        class_weights: ClassWeights::Auto,
        augment: AugmentConfig { elastic_probability: 0.0, ..AugmentConfig::default() },
        ..tiny(dir.path(), "multiclass")
    };
    let trained =
        train_unet::<CpuAutodiff>(&cfg, &RunOptions { quiet: true, ..Default::default() }, &[Default::default()])
            .unwrap();
    assert_eq!(trained.data_classes, 3);
    assert_eq!(trained.model.classes, 3);
    let last = trained.history.last().unwrap();
    // CI-sized (3 small images, ~200 steps): every class is predicted where it is, none
    // collapses into the majority class, and the mean Dice is well above chance.
    for (c, d) in last.val_dice.iter().enumerate() {
        assert!(*d > 0.05, "class {c} not learned: validation Dice {:?}", last.val_dice);
    }
    let mean = last.val_dice.iter().sum::<f64>() / 3.0;
    assert!(mean > 0.5, "mean validation Dice {mean}: {:?}", last.val_dice);
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let _serial = bioseg_suite::burn_lock();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 3, 64);
    let cfg = UnetTraining { epochs: 3, ..tiny(dir.path(), "membrane") };
    let dev = [Default::default()];
    let straight = train_unet::<CpuAutodiff>(&cfg, &RunOptions { quiet: true, ..Default::default() }, &dev).unwrap();

    let ckpt = dir.path().join("ckpt");
    let first = UnetTraining { epochs: 1, ..cfg.clone() };
    let opts = RunOptions { quiet: true, checkpoint_dir: Some(ckpt.clone()), ..Default::default() };
    train_unet::<CpuAutodiff>(&first, &opts, &dev).unwrap();
    let resumed =
        train_unet::<CpuAutodiff>(&cfg, &RunOptions { resume_from: Some(ckpt.clone()), ..opts.clone() }, &dev).unwrap();
    let without_timing = |h: &[bioseg_train::train::unet::UnetEpoch]| {
        h.iter().map(|e| (e.epoch, e.train_loss, e.val_loss, e.val_dice.clone(), e.val_pixel_error)).collect::<Vec<_>>()
    };
    assert_eq!(without_timing(&resumed.history), without_timing(&straight.history));
    assert_eq!(weights(&resumed.model), weights(&straight.model));
    assert!(ckpt.join("best").join("state.json").is_file());

    // A checkpoint from other options is refused and names what differs.
    let other = UnetTraining { learning_rate: 1e-2, ..cfg };
    let err = train_unet::<CpuAutodiff>(&other, &RunOptions { resume_from: Some(ckpt), ..opts }, &dev)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("learning_rate"), "{err}");
}

#[test]
fn weight_map_and_cosine_schedule_train_and_resume_exactly() {
    let _serial = bioseg_suite::burn_lock();
    let dir = tempfile::tempdir().unwrap();
    synth(dir.path(), 3, 64);
    let cfg = UnetTraining {
        epochs: 3,
        weight_map: Some(BorderWeights::default()),
        lr_schedule: LrSchedule::Cosine,
        warmup_steps: 2,
        ..tiny(dir.path(), "membrane")
    };
    let dev = [Default::default()];
    let quiet = RunOptions { quiet: true, ..Default::default() };
    let straight = train_unet::<CpuAutodiff>(&cfg, &quiet, &dev).unwrap();
    assert!(straight.history.iter().all(|e| e.train_loss.is_finite() && e.val_loss > 0.0));
    // The weight map and the schedule change the run.
    let plain = train_unet::<CpuAutodiff>(&UnetTraining { weight_map: None, ..cfg.clone() }, &quiet, &dev).unwrap();
    assert_ne!(plain.history[0].train_loss, straight.history[0].train_loss);
    let constant =
        train_unet::<CpuAutodiff>(&UnetTraining { lr_schedule: LrSchedule::Constant, ..cfg.clone() }, &quiet, &dev)
            .unwrap();
    assert_ne!(weights(&constant.model), weights(&straight.model));

    // Resumed after epoch 1, the schedule continues at the right step.
    let ckpt = dir.path().join("ckpt");
    let opts = RunOptions { quiet: true, checkpoint_dir: Some(ckpt.clone()), ..Default::default() };
    train_unet::<CpuAutodiff>(&UnetTraining { epochs: 1, ..cfg.clone() }, &opts, &dev).unwrap();
    let resumed =
        train_unet::<CpuAutodiff>(&cfg, &RunOptions { resume_from: Some(ckpt), ..opts.clone() }, &dev).unwrap();
    assert_eq!(weights(&resumed.model), weights(&straight.model));

    // The border weights need a cross-entropy loss.
    let dice = UnetTraining { loss: LossKind::Dice, ..cfg };
    let err = train_unet::<CpuAutodiff>(&dice, &quiet, &dev).err().unwrap().to_string();
    assert!(err.contains("--weight-map needs --loss bce or wcce"), "{err}");
}

#[test]
fn data_parallel_step_equals_single_step_on_the_concatenated_batch() {
    let _serial = bioseg_suite::burn_lock();
    let device = Default::default();
    let sources = synthetic_samples(3, 64, 0).unwrap();
    let batch = augment_batch(&sources, 0, 4, 32, 32, &AugmentConfig::default(), 9);
    let loss = Loss { kind: LossKind::Bce, class_weights: vec![], beta: 0.5, gamma: 1.0 };
    let config = UnetConfig::new().with_filters(4).with_depth(2).with_drop_rate(0.0);
    CpuAutodiff::seed(&device, 5);
    let model: Unet<CpuAutodiff> = config.init(&device);

    let mut opt1 = AdamConfig::new().init::<CpuAutodiff, Unet<CpuAutodiff>>();
    let (single, l1) =
        bioseg_train::train::data_parallel::step(model.clone(), &mut opt1, &loss, &batch, &[device], 1e-2).unwrap();
    let mut opt2 = AdamConfig::new().init::<CpuAutodiff, Unet<CpuAutodiff>>();
    let (dp, l2) =
        bioseg_train::train::data_parallel::step(model.clone(), &mut opt2, &loss, &batch, &[device, device], 1e-2)
            .unwrap();
    assert!((l1 - l2).abs() < 1e-6, "{l1} vs {l2}");
    let (a, b) = (weights(&single.valid()), weights(&dp.valid()));
    let before = weights(&model.valid());
    let moved = a.iter().zip(&before).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(moved > 1e-3, "the step did not change the weights");
    let max = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    assert!(max <= 1e-5, "data-parallel weights differ by {max}");
}
