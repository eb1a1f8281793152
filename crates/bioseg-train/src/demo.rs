//! `bioseg-train demo`: the whole mission on built-in data in a few minutes on a CPU.
//!
//! 1. writes a synthetic EM-like dataset (`bioseg-train synth`),
//! 2. trains a small U-Net on its membranes for a time budget,
//! 3. exports ONNX,
//! 4. predicts a larger synthetic section tile by tile with bioseg's tract engine
//!    (what `bioseg predict` does),
//! 5. prints Dice / IoU / pixel error against the exact labels and writes an overlay PNG.

use anyhow::{Context, Result};

use std::path::PathBuf;

use crate::export::export_trained;
use crate::history::write_history;
use crate::train::unet::{RunOptions, UnetTraining, train_unet};

/// What the demo does (`bioseg-train demo --help` gives each option's default).
#[derive(Clone, Debug)]
pub struct Demo {
    /// Output folder for the data, the run and the prediction.
    pub out: PathBuf,
    /// Training time budget in minutes.
    pub minutes: f64,
    /// Start filters of the demo U-Net.
    pub filters: usize,
    /// Side of the large synthetic image predicted at the end.
    pub predict_size: usize,
    /// Seed of the data and the training.
    pub seed: u64,
}

/// Runs the demo.
pub fn run_demo(args: &Demo, quiet: bool) -> Result<()> {
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let data = out.join("data");
    let params = bioseg_data::synth::SynthParams { width: 256, height: 256, ..Default::default() };
    println!("1/5 writing a synthetic EM dataset to {}", data.display());
    bioseg_data::synth::write_dataset(&data, 12, 2, &params, args.seed)
        .with_context(|| format!("cannot write {}", data.display()))?;

    let run = out.join("run");
    std::fs::create_dir_all(&run).with_context(|| format!("cannot create {}", run.display()))?;
    let cfg = UnetTraining {
        data_dir: data.clone(),
        object_class: "membrane".into(),
        filters: args.filters,
        depth: 4,
        drop_rate: 0.0,
        augmentation_rate: 8,
        batch_size: 4,
        epochs: 1000,
        learning_rate: 1e-3,
        crop_width: 128,
        crop_height: 128,
        val_fraction: 0.17,
        seed: args.seed,
        max_minutes: args.minutes,
        ..Default::default()
    };
    println!(
        "2/5 training a U-Net (F={}, depth 4) on CPU for {} minute(s) [{}]",
        args.filters,
        args.minutes,
        run.display()
    );
    let opts = RunOptions {
        checkpoint_dir: Some(run.join("checkpoints")),
        quiet,
        on_epoch: Some(write_history),
        out_dir: Some(run.clone()),
        ..Default::default()
    };
    let trained = train_unet::<crate::device::CpuAutodiff>(&cfg, &opts, &[Default::default()])?;
    if let Some(h) = trained.history.last() {
        let speed = trained.history.iter().map(|e| e.images_per_second).sum::<f64>() / trained.history.len() as f64;
        println!(
            "   {} epochs at {speed:.1} training images/s; last: train loss {:.4}, validation Dice {}, pixel error {:.4}",
            h.epoch,
            h.train_loss,
            bioseg_data::cli_support::named_scores(&trained.class_names, &h.val_dice),
            h.val_pixel_error
        );
    }
    let onnx = run.join("model.onnx");
    println!("3/5 exporting {}", onnx.display());
    export_trained(&trained, &cfg, &onnx).with_context(|| format!("cannot export {}", onnx.display()))?;

    let n = args.predict_size;
    println!("4/5 predicting a {n}x{n} synthetic section with tract (tiled)");
    let big = bioseg_data::synth::generate(
        &bioseg_data::synth::SynthParams { width: n, height: n, ..Default::default() },
        args.seed.wrapping_add(999),
    )?;
    let section = out.join("section.png");
    bioseg_data::write_gray_u8(&section, n as u32, n as u32, big.image.as_slice().expect("contiguous"))?;
    let pred_path = out.join("prediction.png");
    let pred = crate::engine::predict_section(&onnx, big.image.view(), &pred_path)?;
    let (labels, secs) = (pred.labels, pred.seconds);

    let truth = big.membrane.mapv(|v| u8::from(v > 127));
    let scores = bioseg_data::segmentation_scores(labels.view(), truth.view(), 2)?;
    let overlay_path = out.join("overlay.png");
    // Membranes (class 0 of the ISBI-style labels) drawn in colour over the section.
    let membranes = labels.mapv(|c| u8::from(c == 0));
    let overlay = bioseg_data::overlay::overlay_labels(&big.image.view(), &membranes.view(), 0.6);
    bioseg_data::write_rgb_u8_png(&overlay_path, n as u32, n as u32, overlay.as_slice().expect("contiguous"))?;
    println!(
        "5/5 {} tiles in {:.2} s ({:.2} megapixels/s); membrane Dice {:.3}, interior Dice {:.3}, IoU {:.3}/{:.3}, pixel error {:.4}",
        pred.tiles,
        secs,
        (n * n) as f64 / 1e6 / secs,
        scores.per_class[0].dice,
        scores.per_class[1].dice,
        scores.per_class[0].iou,
        scores.per_class[1].iou,
        scores.pixel_error
    );
    println!("   wrote {}, {} and {}", section.display(), pred_path.display(), overlay_path.display());
    println!("   next: bioseg predict -m {} -i YOUR_IMAGE.png -o out.png", onnx.display());
    Ok(())
}
