//! bioseg-infer: runs segmentation (and any other) ONNX models on CPUs with tract.
//!
//! - [`OnnxModel`]: a loaded model, its input/output description and bioseg metadata, with one
//!   optimised tract plan per concrete input shape (built once, shared across threads).
//! - [`tensor_run`]: `bioseg run`, any model on tensor files (`.npy`, `.csv`).
//! - [`inspect`]: `bioseg inspect`, what an ONNX file holds and whether tract can run it.
//!
//! This crate never depends on Burn: deployment needs only tract.

pub mod bioimageio;
mod conv_transpose;
pub mod error;
pub mod evaluate;
pub mod gemm_conv;
pub mod inspect;
pub mod io_spec;
mod max_pool;
pub mod model;
mod names;
mod onnx_ops;
pub mod output;
mod passes;
mod pointwise;
pub mod predict;
pub mod predict_file;
pub mod predict_volumetric;
pub mod progress;
mod repeat_chain;
mod resize;
mod softmax;
pub mod tensor_run;
mod tiler;
pub mod tiling;
pub mod volume_predict;

pub use error::InferError;
pub use model::{InputDim, OnnxModel};
