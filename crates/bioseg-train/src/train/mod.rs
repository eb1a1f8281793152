//! Training loops.

pub mod losses;
pub mod perceptron;
pub mod seeds;
pub mod unet;
