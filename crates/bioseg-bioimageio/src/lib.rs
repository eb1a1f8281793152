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
pub use package::{MAX_TEST_TENSOR_BYTES, MAX_WEIGHTS_BYTES, Package, is_package, sha256_hex};
pub use rdf::{FileRef, MAX_RDF_BYTES, ModelDescription, parse_yaml, read_description, supported};
pub use write::write_package;
