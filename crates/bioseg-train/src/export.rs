//! Writing trained models as ONNX files with bioseg's metadata: a U-Net just trained, or one
//! read back from a checkpoint folder.

use std::path::Path;

use bioseg_onnx::{ModelMetadata, Normalization, proto::ModelProto};
use burn::tensor::backend::Backend;

use crate::error::TrainError;
use crate::model::unet::Unet;
use crate::train::unet::{TrainedUnet, UnetEpoch, UnetTraining, binary_class_names, normalization_for};

/// `bioseg-train <version>`: the writer recorded in every exported model.
pub fn writer_tag() -> String {
    format!("bioseg-train {}", env!("CARGO_PKG_VERSION"))
}

/// Metadata with the writer filled in.
pub fn base_metadata() -> ModelMetadata {
    ModelMetadata { writer: Some(writer_tag()), ..Default::default() }
}

/// Writes `model` to `path` atomically, creating the parent folder.
pub fn write_onnx(model: &ModelProto, path: &Path) -> Result<(), TrainError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(TrainError::io(parent))?;
    }
    bioseg_onnx::write_model(model, path)?;
    Ok(())
}

/// Metadata for an exported U-Net.
pub fn unet_metadata(trained_classes: &[String], norm: Normalization, training: serde_json::Value) -> ModelMetadata {
    let mut md = base_metadata();
    md.classes = trained_classes.to_vec();
    md.normalization = Some(norm);
    md.training = Some(training.to_string());
    md.input_description = Some("EM image, normalised as bioseg.normalization says".into());
    md
}

/// Exports a trained U-Net with its metadata (the run's options and last scores).
pub fn export_trained<B: Backend>(trained: &TrainedUnet<B>, cfg: &UnetTraining, path: &Path) -> Result<(), TrainError> {
    let last = trained.history.last();
    let validated = last.filter(|h| cfg.holds_out_validation() && h.validated());
    let md = unet_metadata(
        &trained.class_names,
        trained.normalization,
        serde_json::json!({
            "data": cfg.data_dir, "object_class": cfg.object_class, "epochs": trained.history.len(),
            "filters": cfg.filters, "depth": cfg.depth, "loss": cfg.loss.to_string(),
            "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
            "crop": [cfg.crop_height, cfg.crop_width], "seed": cfg.seed,
            "final_train_loss": last.map(|h| h.train_loss),
            "val_dice": validated.map(|h| h.val_dice.clone()),
            "val_pixel_error": validated.map(|h| h.val_pixel_error),
        }),
    );
    write_onnx(&trained.model.to_onnx(&md), path)
}

/// Exports the U-Net of a checkpoint folder (or a folder of checkpoints: its newest) to `onnx`,
/// with the metadata the run would have written (its classes, its data's normalisation).
pub fn export_checkpoint(checkpoint: &Path, onnx: &Path) -> Result<(), TrainError> {
    let ckpt = crate::checkpoint::resolve(checkpoint)?;
    let state = crate::checkpoint::read_state(&ckpt)?;
    let bad = |reason: String| TrainError::Checkpoint { path: ckpt.clone(), reason };
    if state.kind != "unet" {
        return Err(bad(format!("cannot export a `{}` checkpoint here", state.kind)));
    }
    let cfg: UnetTraining = serde_json::from_value(with_epochs(&state.config, state.epoch))
        .map_err(|e| bad(format!("unreadable configuration: {e}")))?;
    let data_classes = state
        .history
        .as_array()
        .and_then(|h| h.first())
        .and_then(|h| h.get("val_dice"))
        .and_then(|d| d.as_array())
        .map(|d| d.len())
        .filter(|&n| n > 0)
        // A run without validation records no scores: the classes it named, else its data's.
        .or_else(|| (!cfg.class_names.is_empty()).then_some(cfg.class_names.len()))
        .or_else(|| {
            bioseg_data::SegmentationDataset::open(&cfg.data_dir, &cfg.object_class, "train")
                .ok()
                .map(|ds| ds.num_classes())
        })
        .unwrap_or(2);
    type B = crate::device::CpuBackend;
    let device = Default::default();
    let model: Unet<B> = cfg.model_config(data_classes).init(&device);
    let (model, _) = crate::checkpoint::load_model::<B, _>(&ckpt, "unet", model, &device)?;
    let history: Vec<UnetEpoch> = serde_json::from_value(state.history).unwrap_or_default();
    let class_names = if !cfg.class_names.is_empty() {
        cfg.class_names.clone()
    } else if data_classes == 2 {
        binary_class_names(&cfg.object_class)
    } else {
        (0..data_classes).map(|c| format!("class{c}")).collect()
    };
    let normalization = data_normalization(&cfg);
    let trained = TrainedUnet { model, history, data_classes, normalization, class_names };
    export_trained(&trained, &cfg, onnx)
}

/// The checkpoint's options with its epoch count and no time limit.
fn with_epochs(config: &serde_json::Value, epochs: usize) -> serde_json::Value {
    let mut c = config.clone();
    if let Some(o) = c.as_object_mut() {
        o.insert("epochs".into(), epochs.into());
        o.insert("max_minutes".into(), 0.0.into());
    }
    c
}

/// The normalisation training used (the first image's sample type), or ÷255 when the data
/// folder is gone.
fn data_normalization(cfg: &UnetTraining) -> Normalization {
    let first = bioseg_data::SegmentationDataset::open(&cfg.data_dir, &cfg.object_class, "train")
        .and_then(|ds| ds.load_pair(0))
        .map(|(img, _)| img.depth);
    normalization_for(first.ok())
}
