//! Writing trained models as ONNX files with bioseg's metadata.

use std::path::Path;

use bioseg_onnx::{ModelMetadata, proto::ModelProto};

use crate::error::TrainError;

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
