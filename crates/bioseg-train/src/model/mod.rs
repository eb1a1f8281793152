//! The architectures bioseg trains. Each is a Burn module with a `Config` and an ONNX export;
//! the segmentation networks implement [`SegmentationNet`], the seam between an architecture
//! and everything that trains one (the step on one device, data parallel and multi-node,
//! validation, the losses that take its logits).

mod conv_relu;
pub mod perceptron;
pub mod unet;

pub use conv_relu::conv_relu;

use bioseg_onnx::ModelMetadata;
use bioseg_onnx::proto::ModelProto;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A segmentation network as training sees it. A new architecture (a residual U-Net, another
/// encoder) is a module that implements this: the steps in `train::data_parallel` and
/// `train::multi_node` and `train::unet::validate` are generic over it.
///
/// Images are rank-4 (`[N, C, H, W]`); a volumetric network would add its own rank here.
pub trait SegmentationNet<B: Backend>: Module<B> {
    /// Channels of the logits: 1 for a binary network (sigmoid), K ≥ 2 for K classes (softmax).
    fn classes(&self) -> usize;
    /// Logits `[N, classes, H, W]` of a batch of images `[N, C, H, W]`.
    fn forward_logits(&self, x: Tensor<B, 4>) -> Tensor<B, 4>;
    /// The network as an ONNX graph that outputs probabilities, with `metadata`.
    fn to_onnx(&self, metadata: &ModelMetadata) -> ModelProto;
}

/// Forces Burn's lazily initialised parameters to take their values now. Clones of a lazy
/// parameter initialise independently (each draws new random values), so a model must be
/// materialised before it is cloned into replicas or compared.
pub fn materialize<B: Backend, M: Module<B>>(model: M) -> M {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
    model
}
