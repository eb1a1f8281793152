//! Errors of the inference library.

use std::path::PathBuf;

/// What can go wrong loading a model or running it.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model file cannot be used.
    #[error("model {path}: {reason}")]
    Model {
        /// The ONNX file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Input data that does not fit the model.
    #[error("{0}")]
    Input(String),
    /// Reading or writing data failed.
    #[error(transparent)]
    Data(#[from] bioseg_data::DataError),
    /// The ONNX file could not be decoded.
    #[error(transparent)]
    Onnx(#[from] bioseg_onnx::OnnxError),
    /// A report could not be written as JSON.
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A BioImage Model Zoo package cannot be read or run.
    #[error(transparent)]
    Package(#[from] bioseg_bioimageio::PackageError),
    /// The prediction was stopped through its cancel flag (Ctrl-C in Python).
    #[error("interrupted")]
    Cancelled,
    /// An error and what was being done (`predicting FILE`).
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<InferError>,
    },
    /// tract failed while running.
    #[error("inference failed: {0}")]
    Run(String),
}

impl InferError {
    /// This error with what was being done (shown first: `CONTEXT: ERROR`).
    pub fn context(self, context: String) -> Self {
        InferError::Context { context, source: Box::new(self) }
    }

    /// The error behind any contexts.
    pub fn root(&self) -> &InferError {
        match self {
            InferError::Context { source, .. } => source.root(),
            e => e,
        }
    }
}
