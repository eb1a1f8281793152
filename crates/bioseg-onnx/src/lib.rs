//! bioseg-onnx: read and write ONNX files without an ML framework.
//!
//! - [`proto`]: the ONNX protobuf messages (prost), enough to write bioseg's own architectures and
//!   to inspect any exporter's file (op histogram, initializers, metadata).
//! - [`GraphBuilder`]: builds a graph node by node with named weights and symbolic axes.
//! - [`ModelMetadata`]: the `metadata_props` bioseg writes and reads (task, layout, classes,
//!   normalisation, size multiple, receptive field, halo).
//! - [`estimate_graph`], [`topological_order`], [`constants`]: graph analysis for any exporter's
//!   file (the size multiple and receptive field of models without bioseg metadata).

mod builder;
mod error;
mod graph;
mod metadata;
mod model_file;
pub mod proto;

pub use builder::{Dim, GraphBuilder, Value, attr_float, attr_int, attr_ints, attr_string};
pub use error::OnnxError;
pub use graph::{GraphEstimate, constants, estimate_graph, topological_order};
pub use metadata::{ModelMetadata, Normalization, OutputActivation, TensorLayout};
pub use model_file::{
    OPSET_VERSION, decode_model, encode_model, initializer_to_f32, model_from_graph, read_model, write_model,
};
