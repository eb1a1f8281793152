//! ONNX operators tract 0.23 does not parse, added to its operator register.
//!
//! - `Upsample` (opsets 7–9, deprecated at 10 but still written by older PyTorch and
//!   keras2onnx exports): tract has no builder for it, so such a model did not load. It is
//!   `Resize` of opset 10 under another name (inputs `X, scales` at opset 9, `scales` an
//!   attribute at 7–8; `mode` nearest or linear; the `asymmetric` coordinate transform), and is
//!   parsed into tract's ONNX `Resize` op, which bioseg's resize passes then take over
//!   (resize.rs).

use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::tract_core::ops::nn::resize::{CoordTransformer, Interpolator};
use tract_onnx_opl::resize::{AspectRatio, CoordTransform, Nearest, Resize};

/// tract's ONNX framework with bioseg's additions to its operator register.
pub fn onnx() -> tract_onnx::Onnx {
    let mut onnx = tract_onnx::onnx();
    register(&mut onnx.op_register);
    onnx
}

fn register(ops: &mut OnnxOpRegister) {
    ops.insert("Upsample", upsample);
}

fn upsample(ctx: &ParsingContext, node: &NodeProto) -> TractResult<(Box<dyn InferenceOp>, Vec<String>)> {
    let interpolator = Interpolator::parse(node.get_attr_opt("mode")?.unwrap_or("nearest"))?;
    let resize = Resize {
        axes: None,
        coord_transformer: CoordTransform::Plain(CoordTransformer::Asymmetric),
        interpolator,
        nearest: Nearest::Floor,
        antialias: false,
        cubic_coeff_a_bits: (-0.75f32).to_bits(),
        exclude_outside: false,
        extrapolation_value_bits: 0f32.to_bits(),
        keep_aspect_ratio_policy: AspectRatio::Stretch,
        optional_roi_input: None,
        optional_scales_input: Some(1),
        optional_sizes_input: None,
    };
    let scales = if ctx.onnx_operator_set_version < 9 {
        let scales: Vec<f32> = node.get_attr_vec("scales")?;
        Some(tensor1(&scales))
    } else {
        None
    };
    Ok((expand(UpsampleInference { resize, scales }), vec![]))
}

/// `Upsample` while tract infers shapes: the output is the input times the constant scales.
#[derive(Clone, Debug)]
struct UpsampleInference {
    resize: Resize,
    /// The `scales` attribute (opsets 7–8); `None` when they are the second input (opset 9).
    scales: Option<Tensor>,
}

impl Expansion for UpsampleInference {
    fn name(&self) -> StaticName {
        "Upsample".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_output_arity(outputs, 1)?;
        check_input_arity(inputs, if self.scales.is_some() { 1 } else { 2 })?;
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].rank, &outputs[0].rank)?;
        let resize = &self.resize;
        // The output's shape: the input's times the scales.
        let output_shape = move |s: &mut Solver<'r>, shape: TVec<TDim>, scales: &Tensor| {
            let output = resize.compute_output_shape(&shape, Some(scales), None)?;
            for (i, dim) in output.iter().enumerate() {
                s.equals(&outputs[0].shape[i], dim.to_dim())?;
            }
            Ok(())
        };
        if let Some(scales) = &self.scales {
            s.given(&inputs[0].shape, move |s, shape| output_shape(s, shape, scales))
        } else {
            s.given_2(&inputs[0].shape, &inputs[1].value, move |s, shape, scales| output_shape(s, shape, &scales))
        }
    }

    fn wire(&self, name: &str, model: &mut TypedModel, inputs: &[OutletId]) -> TractResult<TVec<OutletId>> {
        let scales = match &self.scales {
            Some(scales) => model.add_const(format!("{name}.scales"), scales.clone())?,
            None => inputs[1],
        };
        model.wire_node(name, self.resize.clone(), &[inputs[0], scales])
    }
}
