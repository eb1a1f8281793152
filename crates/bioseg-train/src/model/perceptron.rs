//! The course's first network: one dense layer with a sigmoid (Keras `Dense(1,
//! activation="sigmoid")`).

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use bioseg_onnx::{Dim, GraphBuilder, ModelMetadata, OutputActivation, TensorLayout};

/// Configuration of a [`Perceptron`].
#[derive(Config, Debug)]
pub struct PerceptronConfig {
    /// Number of input features.
    #[config(default = 10)]
    pub features: usize,
}

/// Dense(features → 1) + sigmoid.
#[derive(Module, Debug)]
pub struct Perceptron<B: Backend> {
    /// The dense layer (weight `[features, 1]`).
    pub dense: Linear<B>,
}

impl PerceptronConfig {
    /// A freshly initialised perceptron.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Perceptron<B> {
        super::materialize(Perceptron { dense: LinearConfig::new(self.features, 1).init(device) })
    }
}

impl<B: Backend> Perceptron<B> {
    /// `[batch, features]` → probabilities `[batch, 1]`.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        sigmoid(self.dense.forward(x))
    }

    /// Number of input features.
    pub fn features(&self) -> usize {
        self.dense.weight.dims()[0]
    }

    /// The ONNX graph of this model: input `input` `[batch, features]`, output `probability`
    /// `[batch, 1]`, symbolic batch.
    pub fn to_onnx(&self, metadata: &ModelMetadata) -> bioseg_onnx::proto::ModelProto {
        let f = self.features();
        let mut g = GraphBuilder::new("perceptron");
        let x = g.input("input", &[Dim::symbol("batch"), Dim::Fixed(f)]);
        let w: Vec<f32> = self.dense.weight.val().into_data().convert::<f32>().to_vec().unwrap();
        let b: Vec<f32> = match &self.dense.bias {
            Some(b) => b.val().into_data().convert::<f32>().to_vec().unwrap(),
            None => vec![0.0],
        };
        let z = g.dense("dense", &x, &w, [f, 1], &b);
        let y = g.sigmoid("sigmoid", &z);
        g.output(&y, "probability", &[Dim::symbol("batch"), Dim::Fixed(1)]);
        let mut md = metadata.clone();
        md.architecture.get_or_insert_with(|| "perceptron".into());
        md.task.get_or_insert_with(|| "binary-classification".into());
        md.layout = Some(TensorLayout::Nc);
        md.output = Some(OutputActivation::Sigmoid);
        md.input_description.get_or_insert_with(|| format!("{f} float features per row"));
        bioseg_onnx::model_from_graph(g.finish(), &md, "Perceptron: Dense(1) + sigmoid")
    }
}
