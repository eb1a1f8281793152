//! Building ONNX graphs node by node.

use crate::proto::{
    AttributeProto, AttributeType, DataType, Dimension, DimensionValue, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto,
};

/// One axis of a graph input or output: a fixed size or a named symbol (`batch`, `height`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic size, resolved when the model is run.
    Symbol(String),
}

impl Dim {
    /// A symbolic axis named `name`.
    pub fn symbol(name: &str) -> Self {
        Dim::Symbol(name.to_string())
    }
}

/// A named value in the graph (an input, a weight, or a node's output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value(pub String);

impl Value {
    /// The value's name in the graph.
    pub fn name(&self) -> &str {
        &self.0
    }
}

/// Builds a [`GraphProto`]: inputs, float32 weights, nodes in topological order, outputs.
#[derive(Debug, Default)]
pub struct GraphBuilder {
    graph: GraphProto,
    parameter_count: usize,
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => DimensionValue::DimValue(*n as i64),
                Dim::Symbol(s) => DimensionValue::DimParam(s.clone()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.to_string(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: DataType::Float as i32,
                shape: Some(TensorShapeProto { dim }),
            }),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

impl GraphBuilder {
    /// An empty graph called `name`.
    pub fn new(name: &str) -> Self {
        GraphBuilder { graph: GraphProto { name: name.to_string(), ..Default::default() }, parameter_count: 0 }
    }

    /// Declares a float32 graph input.
    pub fn input(&mut self, name: &str, dims: &[Dim]) -> Value {
        self.graph.input.push(value_info(name, dims));
        Value(name.to_string())
    }

    /// Declares `value` as a float32 graph output called `name` (through an `Identity` node when
    /// the names differ).
    pub fn output(&mut self, value: &Value, name: &str, dims: &[Dim]) {
        if value.0 != name {
            self.graph.node.push(NodeProto {
                input: vec![value.0.clone()],
                output: vec![name.to_string()],
                name: format!("{name}_identity"),
                op_type: "Identity".into(),
                ..Default::default()
            });
        }
        self.graph.output.push(value_info(name, dims));
    }

    /// Adds a float32 weight tensor (a trainable parameter: counted in [`Self::parameter_count`]).
    pub fn weight(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Value {
        debug_assert_eq!(dims.iter().product::<usize>(), data.len(), "weight {name}");
        self.parameter_count += data.len();
        self.constant_f32(name, dims, data)
    }

    /// Adds a float32 constant that is not a trainable parameter.
    pub fn constant_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> Value {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            name: name.to_string(),
            raw_data,
            ..Default::default()
        });
        Value(name.to_string())
    }

    /// Adds an int64 constant (shapes, axes).
    pub fn constant_i64(&mut self, name: &str, dims: &[usize], data: &[i64]) -> Value {
        let raw_data = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.graph.initializer.push(TensorProto {
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Int64 as i32,
            name: name.to_string(),
            raw_data,
            ..Default::default()
        });
        Value(name.to_string())
    }

    /// Adds a node `op_type` named `name` (its single output is also called `name`).
    /// An empty input name stands for an omitted optional input.
    pub fn node(&mut self, op_type: &str, name: &str, inputs: &[&Value], attributes: Vec<AttributeProto>) -> Value {
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: vec![name.to_string()],
            name: name.to_string(),
            op_type: op_type.to_string(),
            attribute: attributes,
            ..Default::default()
        });
        Value(name.to_string())
    }

    /// Number of trainable parameters added through [`Self::weight`].
    pub fn parameter_count(&self) -> usize {
        self.parameter_count
    }

    /// The finished graph.
    pub fn finish(self) -> GraphProto {
        self.graph
    }

    // ---- The layers of bioseg's architectures -------------------------------------------------

    /// 2-D convolution, weight `[out, in, kh, kw]`, pads `[top, left, bottom, right]`.
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &mut self,
        name: &str,
        x: &Value,
        weight: &[f32],
        weight_dims: [usize; 4],
        bias: Option<&[f32]>,
        pads: [usize; 4],
        stride: usize,
    ) -> Value {
        let w = self.weight(&format!("{name}.weight"), &weight_dims, weight);
        let mut inputs = vec![x, &w];
        let b;
        if let Some(bias) = bias {
            b = self.weight(&format!("{name}.bias"), &[weight_dims[0]], bias);
            inputs.push(&b);
        }
        self.node(
            "Conv",
            name,
            &inputs,
            vec![
                attr_ints("kernel_shape", &[weight_dims[2] as i64, weight_dims[3] as i64]),
                attr_ints("pads", &[pads[0] as i64, pads[1] as i64, pads[2] as i64, pads[3] as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("dilations", &[1, 1]),
                attr_int("group", 1),
            ],
        )
    }

    /// 2-D transposed convolution, weight `[in, out, kh, kw]`, stride = kernel (no overlap).
    pub fn conv_transpose2d(
        &mut self,
        name: &str,
        x: &Value,
        weight: &[f32],
        weight_dims: [usize; 4],
        bias: Option<&[f32]>,
        stride: usize,
    ) -> Value {
        let w = self.weight(&format!("{name}.weight"), &weight_dims, weight);
        let mut inputs = vec![x, &w];
        let b;
        if let Some(bias) = bias {
            b = self.weight(&format!("{name}.bias"), &[weight_dims[1]], bias);
            inputs.push(&b);
        }
        self.node(
            "ConvTranspose",
            name,
            &inputs,
            vec![
                attr_ints("kernel_shape", &[weight_dims[2] as i64, weight_dims[3] as i64]),
                attr_ints("strides", &[stride as i64, stride as i64]),
                attr_ints("pads", &[0, 0, 0, 0]),
            ],
        )
    }

    /// Inference-mode batch normalisation over axis 1.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        name: &str,
        x: &Value,
        gamma: &[f32],
        beta: &[f32],
        mean: &[f32],
        var: &[f32],
        epsilon: f32,
    ) -> Value {
        let c = gamma.len();
        let g = self.weight(&format!("{name}.gamma"), &[c], gamma);
        let b = self.weight(&format!("{name}.beta"), &[c], beta);
        let m = self.constant_f32(&format!("{name}.running_mean"), &[c], mean);
        let v = self.constant_f32(&format!("{name}.running_var"), &[c], var);
        self.node("BatchNormalization", name, &[x, &g, &b, &m, &v], vec![attr_float("epsilon", epsilon)])
    }

    /// `x · W + b` with `W` stored `[in, out]` (Gemm; Burn's and Keras' dense layout).
    pub fn dense(
        &mut self,
        name: &str,
        x: &Value,
        weight_in_out: &[f32],
        dims_in_out: [usize; 2],
        bias: &[f32],
    ) -> Value {
        let w = self.weight(&format!("{name}.weight"), &dims_in_out, weight_in_out);
        let b = self.weight(&format!("{name}.bias"), &[dims_in_out[1]], bias);
        self.node("Gemm", name, &[x, &w, &b], vec![])
    }

    /// Element-wise ReLU.
    pub fn relu(&mut self, name: &str, x: &Value) -> Value {
        self.node("Relu", name, &[x], vec![])
    }

    /// Element-wise logistic sigmoid.
    pub fn sigmoid(&mut self, name: &str, x: &Value) -> Value {
        self.node("Sigmoid", name, &[x], vec![])
    }

    /// Softmax over the channel axis (1).
    pub fn softmax_channels(&mut self, name: &str, x: &Value) -> Value {
        self.node("Softmax", name, &[x], vec![attr_int("axis", 1)])
    }

    /// Max pooling with a `k × k` window and stride `k`.
    pub fn max_pool(&mut self, name: &str, x: &Value, k: usize) -> Value {
        self.node(
            "MaxPool",
            name,
            &[x],
            vec![
                attr_ints("kernel_shape", &[k as i64, k as i64]),
                attr_ints("strides", &[k as i64, k as i64]),
                attr_ints("pads", &[0, 0, 0, 0]),
            ],
        )
    }

    /// Nearest-neighbour upsampling of H and W by an integer `factor` (Resize with scales;
    /// `asymmetric` + `floor`, which is Keras' `UpSampling2D` and Burn's nearest interpolation).
    pub fn upsample_nearest(&mut self, name: &str, x: &Value, factor: usize) -> Value {
        let roi = Value(String::new());
        let scales = self.constant_f32(&format!("{name}.scales"), &[4], &[1.0, 1.0, factor as f32, factor as f32]);
        self.node(
            "Resize",
            name,
            &[x, &roi, &scales],
            vec![
                attr_string("mode", "nearest"),
                attr_string("coordinate_transformation_mode", "asymmetric"),
                attr_string("nearest_mode", "floor"),
            ],
        )
    }

    /// Concatenation along the channel axis (1).
    pub fn concat_channels(&mut self, name: &str, xs: &[&Value]) -> Value {
        self.node("Concat", name, xs, vec![attr_int("axis", 1)])
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: value, ..Default::default() }
}

/// A list-of-integers attribute.
pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: values.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: value, ..Default::default() }
}

/// A string attribute.
pub fn attr_string(name: &str, value: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: value.as_bytes().to_vec(),
        ..Default::default()
    }
}
