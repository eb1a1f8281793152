//! bioseg-train: trains bioseg's networks with Burn and exports them to ONNX.
//!
//! - [`model`]: the architectures (perceptron, U-Net), each a `#[derive(Module)]` struct with its
//!   `Config` beside it and an ONNX export.
//! - [`train`]: training loops with checkpoints and exact resume.
//! - [`checkpoint`]: atomic, validated checkpoint folders.
//! - [`device`]: CPU (Burn's `flex` backend) or CUDA (feature `cuda`) selection.
//! - [`keras_import`]: Keras classic U-Nets (ONNX) as initial weights (`unet --init-from`).

pub mod augment;
pub mod bioimageio;
pub mod checkpoint;
pub mod curves;
pub mod demo;
pub mod device;
pub mod engine;
pub mod error;
pub mod export;
pub mod gpu_check;
pub mod history;
pub mod keras_import;
pub mod model;
pub mod progress;
pub mod train;

pub use error::TrainError;
