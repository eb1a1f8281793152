//! A package opened for running: its description and its files, read safely
//! ([`crate::archive`]) and checked against their sha256.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::archive::Source;
use crate::error::PackageError;
use crate::rdf::{FileRef, MAX_RDF_BYTES, ModelDescription, parse_yaml, read_description};

/// Bytes the ONNX weights may hold (protobuf's 2 GiB limit).
pub const MAX_WEIGHTS_BYTES: u64 = 2 << 30;

/// Bytes a test tensor may hold.
pub const MAX_TEST_TENSOR_BYTES: u64 = 256 << 20;

/// The names a package's description may have at its top level.
fn is_description_name(name: &str) -> bool {
    name == "rdf.yaml" || name == "bioimageio.yaml" || name.ends_with(".bioimageio.yaml")
}

/// Whether `path` looks like a package rather than an ONNX file: a `.zip`, a `.yaml`, or a
/// folder holding an `rdf.yaml`.
pub fn is_package(path: &Path) -> bool {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    matches!(ext.as_str(), "zip" | "yaml" | "yml") || (path.is_dir() && path.join("rdf.yaml").is_file())
}

/// A package's test input and expected output, as `.npy` bytes.
pub type TestTensors = (Vec<u8>, Vec<u8>);

/// An opened BioImage Model Zoo package.
pub struct Package {
    source: Source,
    description: ModelDescription,
}

impl std::fmt::Debug for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Package").field("path", &self.source.path()).field("name", &self.description.name).finish()
    }
}

impl Package {
    /// Opens a package: a `.zip` archive, its `rdf.yaml` (files beside it) or a folder holding
    /// one. The description is read and checked ([`read_description`]); files are read on
    /// demand.
    pub fn open(path: &Path) -> Result<Package, PackageError> {
        let described = |reason: String| PackageError::Description { path: path.to_path_buf(), reason };
        let meta = std::fs::metadata(path).map_err(|e| PackageError::io(path, e))?;
        let (source, rdf_name) = if meta.is_dir() {
            (Source::dir(path)?, None)
        } else if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("zip")) {
            (Source::zip(path)?, None)
        } else {
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (Source::dir(dir)?, Some(name))
        };
        let rdf_name = match rdf_name {
            Some(n) => n,
            None => {
                let names = source.top_level_files()?;
                let found: Vec<&String> = names.iter().filter(|n| is_description_name(n)).collect();
                match found.as_slice() {
                    [one] => (*one).clone(),
                    [] => {
                        return Err(described("no rdf.yaml (nor *.bioimageio.yaml) at the package's top level".into()));
                    }
                    many => return Err(described(format!("several descriptions: {many:?}"))),
                }
            }
        };
        let bytes = source.read(&rdf_name, MAX_RDF_BYTES)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| described(format!("{rdf_name} is not UTF-8 text")))?;
        let value = parse_yaml(text).map_err(|e| described(format!("{rdf_name}: {e}")))?;
        let description = read_description(&value).map_err(|e| described(format!("{rdf_name}: {e}")))?;
        Ok(Package { source, description })
    }

    /// The package's path.
    pub fn path(&self) -> &Path {
        self.source.path()
    }

    /// The model description.
    pub fn description(&self) -> &ModelDescription {
        &self.description
    }

    /// Reads a file the description names, at most `limit` bytes, checking its sha256.
    fn read_checked(&self, file: &FileRef, limit: u64) -> Result<Vec<u8>, PackageError> {
        let bytes = self.source.read(&file.source, limit)?;
        if let Some(expected) = &file.sha256 {
            let actual = sha256_hex(&bytes);
            if &actual != expected {
                return Err(PackageError::Checksum {
                    path: self.path().to_path_buf(),
                    file: file.source.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        Ok(bytes)
    }

    /// The ONNX weights' bytes.
    pub fn onnx_bytes(&self) -> Result<Vec<u8>, PackageError> {
        self.read_checked(&self.description.weights, MAX_WEIGHTS_BYTES)
    }

    /// The test input's and expected output's `.npy` bytes, if the package has them.
    pub fn test_tensors(&self) -> Result<Option<TestTensors>, PackageError> {
        let Some((i, o)) = &self.description.test_tensors else { return Ok(None) };
        Ok(Some((self.read_checked(i, MAX_TEST_TENSOR_BYTES)?, self.read_checked(o, MAX_TEST_TENSOR_BYTES)?)))
    }

    /// A name for the weights (for messages and caches): the package path and the weights file.
    pub fn weights_path(&self) -> PathBuf {
        self.path().join(&self.description.weights.source)
    }
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
