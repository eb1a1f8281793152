//! The crate's one error type.

use std::path::PathBuf;

/// What can go wrong reading or writing a package. Every message is one line that names the
/// package and the problem.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// A file or archive could not be read or written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The archive is not a valid zip file, or one bioseg refuses to read (unsafe entry names,
    /// sizes beyond the limits).
    #[error("{path}: {reason}")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The model description (`rdf.yaml`) is not valid YAML, not a model description of a
    /// supported format, or describes something bioseg cannot run.
    #[error("{path}: {reason}")]
    Description {
        /// The package (or its rdf.yaml).
        path: PathBuf,
        /// What is wrong, with the field's location (`inputs[0].axes[2]`).
        reason: String,
    },
    /// A file of the package differs from the sha256 its description gives.
    #[error("{path}: {file} has sha256 {actual}, but rdf.yaml says {expected}")]
    Checksum {
        /// The package.
        path: PathBuf,
        /// The file inside it.
        file: String,
        /// The description's value.
        expected: String,
        /// The file's value.
        actual: String,
    },
}

impl PackageError {
    pub(crate) fn io(path: impl Into<PathBuf>, e: impl std::fmt::Display) -> Self {
        PackageError::Io { path: path.into(), reason: e.to_string() }
    }
}
