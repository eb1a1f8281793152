//! The architectures bioseg trains. Each is a Burn module with a `Config` and an ONNX export.

pub mod perceptron;
pub mod unet;
