//! BioImage Model Zoo packages (bioimage.io): a model description (`rdf.yaml`, model spec 0.5),
//! ONNX weights, test tensors and documentation, zipped.
//!
//! * [`Package::open`] reads a package from a stranger (a zip, an `rdf.yaml` or a folder) without
//!   extracting anything, within limits, and translates its description into bioseg's
//!   [`ModelMetadata`](bioseg_onnx::ModelMetadata) ([`ModelDescription`]); what bioseg cannot run
//!   is refused with the field named ([`supported`]).
//! * [`write_package`] writes a package atomically; `bioseg-train export --bioimageio` builds
//!   the description.

mod archive;
mod error;
mod package;
mod rdf;
mod write;

pub use archive::MAX_ENTRIES;
pub use error::PackageError;
pub use package::{MAX_TEST_TENSOR_BYTES, MAX_WEIGHTS_BYTES, Package, TestTensors, is_package, sha256_hex};
pub use rdf::{FileRef, MAX_RDF_BYTES, ModelDescription, parse_yaml, read_description, supported};
pub use write::write_package;

/// The fuzz harness of the package reader (`fuzz/fuzz_targets/bioimageio_package.rs`, and the
/// committed corpus in this crate's tests): the first byte chooses the form, the rest is a zip
/// archive (even) or an `rdf.yaml` in a folder (odd), written into `scratch`; the package is
/// opened and its weights and test tensors read. Every outcome must be a value or an error.
#[doc(hidden)]
pub fn fuzz_package(data: &[u8], scratch: &std::path::Path) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let path = if mode % 2 == 0 {
        let p = scratch.join("package.zip");
        if std::fs::write(&p, rest).is_err() {
            return;
        }
        p
    } else {
        let dir = scratch.join("package");
        let _ = std::fs::create_dir_all(&dir);
        if std::fs::write(dir.join("rdf.yaml"), rest).is_err() {
            return;
        }
        if let Ok(text) = std::str::from_utf8(rest)
            && let Ok(value) = parse_yaml(text)
        {
            let _ = read_description(&value);
        }
        dir
    };
    if let Ok(p) = Package::open(&path) {
        let _ = p.onnx_bytes();
        let _ = p.test_tensors();
    }
}
