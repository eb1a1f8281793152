//! The architectures bioseg trains. Each is a Burn module with a `Config` and an ONNX export.

mod conv_relu;
pub mod perceptron;
pub mod unet;

pub use conv_relu::conv_relu;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

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
