//! Errors of the training library.

use std::path::PathBuf;

/// What can go wrong while training, checkpointing or exporting.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A checkpoint is missing, truncated or from another model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Data could not be loaded.
    #[error(transparent)]
    Data(#[from] bioseg_data::DataError),
    /// The ONNX writer or reader failed.
    #[error(transparent)]
    Onnx(#[from] bioseg_onnx::OnnxError),
    /// Options that cannot work together, or values out of range.
    #[error("{0}")]
    Config(String),
    /// A Keras U-Net (ONNX) that cannot initialise the Burn U-Net.
    #[error("cannot initialise from {path}: {reason}")]
    KerasImport {
        /// The ONNX file.
        path: PathBuf,
        /// What does not match (the first layer that differs, expected vs found).
        reason: String,
    },
    /// A plot (the training curves) could not be drawn.
    #[error("cannot draw plot {0}")]
    Plot(String),
    /// The loss became NaN or infinite.
    #[error("training diverged at epoch {epoch}: loss is {loss}")]
    Diverged {
        /// The epoch (1-based).
        epoch: usize,
        /// The loss value.
        loss: f32,
    },
}

impl TrainError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
