//! Training loops.

pub mod batch;
pub mod data_parallel;
pub mod losses;
pub mod multi_node;
pub mod perceptron;
pub mod schedule;
pub mod seeds;
pub mod unet;
