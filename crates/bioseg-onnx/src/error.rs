//! Errors of the ONNX reader and writer.

use std::path::PathBuf;

/// What can go wrong reading, writing or interpreting an ONNX file.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an ONNX protobuf.
    #[error("{path}: not a valid ONNX file ({reason})")]
    Decode {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The protobuf decoder's message.
        reason: String,
    },
    /// The file decodes, but is not what the caller needs.
    #[error("{0}")]
    Invalid(String),
    /// A metadata value could not be parsed.
    #[error("metadata `{key}` = `{value}`: {reason}")]
    Metadata {
        /// The metadata key.
        key: String,
        /// The offending value.
        value: String,
        /// Why it is wrong.
        reason: String,
    },
}
