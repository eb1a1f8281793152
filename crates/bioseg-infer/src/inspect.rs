//! `bioseg inspect`: what an ONNX file holds and whether bioseg (tract) can run it.
//!
//! [`inspect`] decodes the protobuf itself (so it reports on files bioseg cannot run, too) and
//! gathers: graph inputs and outputs with their symbolic axes, the image interface
//! ([`ModelIo::probe`]: layout, channels, fixed size), an op histogram, the parameter count,
//! bioseg's metadata and any other `metadata_props`, the recommended tile and halo, and whether
//! tract supports every op (checked against [`TRACT_ONNX_OPS`], then by preparing the model for
//! a small concrete input shape and running it once on zeros).
//!
//! ## The receptive-field estimate
//!
//! Models without bioseg metadata (Keras', PyTorch's) get a size multiple and a receptive field
//! computed from the graph by [`estimate_graph`]: the nodes are walked in topological order from
//! the image input, and every tensor on the data path carries its *scale* (input pixels per
//! pixel of that tensor) and its receptive-field *radius* in input pixels:
//!
//! - Conv (kernel k, dilation d, stride s): radius += ⌈(k−1)·d/2⌉ · scale (the larger one-sided
//!   extent, which is what "same" padding gives: 1 for 3×3, 1 for Keras' 2×2 with SAME_UPPER);
//!   scale ×= s.
//! - MaxPool / AveragePool (kernel k, stride s): radius += (k−1) · scale; scale ×= s.
//! - Upsampling by f (Resize / Upsample with constant scales, ConvTranspose with stride f,
//!   DepthToSpace, and Keras' `UpSampling2D`, which tf2onnx writes as two Unsqueeze → Tile →
//!   Reshape chains, one per axis): scale ÷= f, radius += (f−1) · new scale (the alignment
//!   offset of the nearest source pixel), plus ⌈(k−f)/2⌉ · new scale for a ConvTranspose kernel
//!   wider than its stride.
//! - Several data inputs (Concat, Add, …): the largest radius and the finest scale (a U-Net's skip
//!   connection restores the scale even where an upsampling was not recognised; the estimate then
//!   stays an upper bound).
//! - Shape-only branches (Shape, Size and everything computed from them alone) are ignored.
//!
//! The size multiple is the coarsest scale reached (2^pools for a U-Net); the recommended halo is
//! the radius rounded up to the size multiple. For bioseg's own U-Nets the estimate equals
//! `bioseg_train::model::unet::receptive_field_radius` (138 px at depth 4); for a Keras classic
//! U-Net of depth 4 it is the same 138 px, 123 px with Conv2DTranspose. Graphs that pool over the
//! whole image (GlobalAveragePool, Flatten, Gemm) or hold no convolution get no estimate.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use bioseg_onnx::ModelMetadata;
use bioseg_onnx::proto::{AttributeProto, DimensionValue, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use serde::Serialize;

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::{InputDim, OnnxModel};
use crate::tiling::AxisPlan;

/// The ONNX op types tract-onnx 0.23.9 registers (its `reg.insert("Name", …)` calls in
/// `tract-onnx-0.23.9/src/ops/**.rs`), sorted. `Attention`, `GroupQueryAttention` and
/// `MultiHeadAttention` are left out: tract registers them only with its `transformers` feature,
/// which bioseg does not enable.
pub const TRACT_ONNX_OPS: &[&str] = &[
    "Abs",
    "Acos",
    "Acosh",
    "Add",
    "And",
    "ArgMax",
    "ArgMin",
    "ArrayFeatureExtractor",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "AveragePool",
    "BatchNormalization",
    "BiasGelu",
    "BitShift",
    "BitwiseAnd",
    "BitwiseNot",
    "BitwiseOr",
    "BitwiseXor",
    "BlackmanWindow",
    "Cast",
    "CastLike",
    "CategoryMapper",
    "Ceil",
    "Celu",
    "Clip",
    "Compress",
    "Concat",
    "Constant",
    "ConstantLike",
    "ConstantOfShape",
    "Conv",
    "ConvInteger",
    "ConvTranspose",
    "Cos",
    "Cosh",
    "CumSum",
    "DFT",
    "DepthToSpace",
    "DequantizeLinear",
    "Div",
    "Dropout",
    "DynamicQuantizeLinear",
    "Einsum",
    "Elu",
    "Equal",
    "Erf",
    "Exp",
    "Expand",
    "EyeLike",
    "FastGelu",
    "Flatten",
    "Floor",
    "GRU",
    "Gather",
    "GatherBlockQuantized",
    "GatherElements",
    "GatherND",
    "Gelu",
    "Gemm",
    "GlobalAveragePool",
    "GlobalLpPool",
    "GlobalMaxPool",
    "Greater",
    "GreaterOrEqual",
    "GridSample",
    "GroupNormalization",
    "HammingWindow",
    "HannWindow",
    "HardSigmoid",
    "HardSwish",
    "Hardmax",
    "Identity",
    "If",
    "InstanceNormalization",
    "IsInf",
    "IsNaN",
    "LRN",
    "LSTM",
    "LayerNormalization",
    "LeakyRelu",
    "Less",
    "LessOrEqual",
    "LinearClassifier",
    "LinearRegressor",
    "Log",
    "LogSoftmax",
    "LpNormalization",
    "MatMul",
    "MatMulInteger",
    "MatMulNBits",
    "Max",
    "MaxPool",
    "Mean",
    "MeanVarianceNormalization",
    "MelWeightMatrix",
    "Min",
    "Mish",
    "Mod",
    "Mul",
    "Multinomial",
    "Neg",
    "NonMaxSuppression",
    "NonZero",
    "Normalizer",
    "Not",
    "OneHot",
    "Or",
    "PRelu",
    "Pad",
    "ParametricSoftplus",
    "Pow",
    "QLinearConv",
    "QLinearMatMul",
    "QuantizeLinear",
    "QuickGelu",
    "RMSNormalization",
    "RNN",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Range",
    "Reciprocal",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
    "Relu",
    "Reshape",
    "Resize",
    "RotaryEmbedding",
    "Round",
    "Rsqrt",
    "STFT",
    "ScaledTanh",
    "Scan",
    "Scatter",
    "ScatterElements",
    "ScatterND",
    "Selu",
    "Shape",
    "Shrink",
    "Sigmoid",
    "Sign",
    "SimplifiedLayerNormalization",
    "Sin",
    "Sinh",
    "Size",
    "SkipLayerNormalization",
    "SkipSimplifiedLayerNormalization",
    "Slice",
    "Softmax",
    "Softplus",
    "Softsign",
    "SpaceToDepth",
    "Split",
    "Sqrt",
    "Squeeze",
    "Sub",
    "Sum",
    "Swish",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
    "Tile",
    "TopK",
    "Transpose",
    "TreeEnsembleClassifier",
    "Trilu",
    "Unsqueeze",
    "Where",
    "Xor",
];

/// Whether tract-onnx 0.23.9, as bioseg builds it, registers the op type `op`.
pub fn tract_supports(op: &str) -> bool {
    TRACT_ONNX_OPS.binary_search(&op).is_ok()
}

/// Where a reported value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// bioseg's `metadata_props`.
    Metadata,
    /// The graph declares it (a fixed input size).
    Graph,
    /// Estimated from the graph by [`estimate_graph`].
    Computed,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Metadata => "metadata",
            Source::Graph => "graph",
            Source::Computed => "computed",
        })
    }
}

/// A value and where it comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sourced<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub source: Source,
}

/// One symbolic (or undeclared) axis of a graph input or output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolicAxis {
    /// Axis index.
    pub axis: usize,
    /// The symbol's name; `None` when the axis is not declared at all.
    pub symbol: Option<String>,
}

/// A graph input or output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorReport {
    /// Its name in the graph.
    pub name: String,
    /// Element type (`float32`, `int64`, …).
    pub elem_type: String,
    /// Axes as written: a size, a symbol name, or `?` when undeclared; empty when the graph
    /// declares no shape.
    pub dims: Vec<String>,
    /// The axes that are not fixed.
    pub symbolic_axes: Vec<SymbolicAxis>,
}

/// The image interface bioseg derives with [`ModelIo::probe`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceReport {
    /// `nchw` or `nhwc`.
    pub layout: String,
    /// Input channels.
    pub channels: usize,
    /// Fixed input `[height, width]`, if the graph fixes them.
    pub fixed_size: Option<[usize; 2]>,
    /// Whether the batch axis is symbolic.
    pub batch_symbolic: bool,
    /// `sigmoid`, `softmax` or `logits`.
    pub output_activation: String,
    /// The normalisation recorded in the metadata, if any.
    pub normalization: Option<String>,
}

/// Size multiple, receptive field and tiling recommendation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TilingReport {
    /// Height and width must be multiples of this.
    pub size_multiple: Option<Sourced<usize>>,
    /// Receptive-field radius in pixels.
    pub receptive_field_radius: Option<Sourced<usize>>,
    /// Recommended halo (context around each tile) in pixels.
    pub recommended_halo: Option<Sourced<usize>>,
    /// Recommended tile core size in pixels (`bioseg predict --tile`).
    pub recommended_tile: Option<Sourced<usize>>,
    /// MaxPool nodes in the graph.
    pub max_pool_nodes: usize,
    /// How the values were obtained, and caveats.
    pub notes: Vec<String>,
}

/// Whether tract can run the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TractReport {
    /// The tract version bioseg is built with.
    pub version: String,
    /// Op types of the graph that tract does not register, sorted.
    pub unsupported_ops: Vec<String>,
    /// `unsupported_ops` is empty.
    pub all_ops_supported: bool,
    /// Domains of nodes outside the standard ONNX ones (`ai.onnx`, `ai.onnx.ml`).
    pub custom_domains: Vec<String>,
    /// The concrete input shape tract was tried with.
    pub trial_input_shape: Option<Vec<usize>>,
    /// Whether tract prepared (optimised) the model for that shape and ran it on zeros.
    pub prepared: bool,
    /// Output shapes of the trial run.
    pub trial_output_shapes: Vec<Vec<usize>>,
    /// Why the trial failed (or was not attempted).
    pub error: Option<String>,
}

/// Everything `bioseg inspect` reports about an ONNX file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelReport {
    /// The file.
    pub path: PathBuf,
    /// Producer name and version (`tf2onnx 1.17.0`, `bioseg 0.1.0`).
    pub producer: String,
    /// ONNX IR version.
    pub ir_version: i64,
    /// Opset per domain (`ai.onnx` for the default domain).
    pub opsets: BTreeMap<String, i64>,
    /// Graph inputs (initializers listed as inputs by old exporters are left out).
    pub inputs: Vec<TensorReport>,
    /// Graph outputs.
    pub outputs: Vec<TensorReport>,
    /// The image interface, when bioseg can read one.
    pub interface: Option<InterfaceReport>,
    /// Why there is no image interface (not loadable, not a rank-4 image input, …).
    pub interface_error: Option<String>,
    /// Number of (top-level) nodes.
    pub nodes: usize,
    /// Nodes per op type.
    pub op_histogram: BTreeMap<String, usize>,
    /// Number of initializers.
    pub initializers: usize,
    /// Parameters: the number of values in floating-point initializers.
    pub parameters: u64,
    /// Values in all initializers (also integer shape and axis constants).
    pub initializer_values: u64,
    /// bioseg's metadata (`bioseg.*` keys).
    pub bioseg_metadata: BTreeMap<String, String>,
    /// Every other `metadata_props` entry.
    pub other_metadata: BTreeMap<String, String>,
    /// Why bioseg's metadata could not be read, if it could not.
    pub metadata_error: Option<String>,
    /// Size multiple, receptive field, recommended tile and halo.
    pub tiling: TilingReport,
    /// tract support.
    pub tract: TractReport,
}

/// What [`estimate_graph`] found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct GraphEstimate {
    /// Conv / ConvTranspose nodes on the data path.
    pub conv_nodes: usize,
    /// MaxPool nodes on the data path.
    pub max_pool_nodes: usize,
    /// The coarsest scale reached (input pixels per pixel): the size multiple.
    pub size_multiple: Option<usize>,
    /// Receptive-field radius in input pixels at the outputs.
    pub receptive_field_radius: Option<usize>,
    /// Why there is no estimate, or what was assumed.
    pub notes: Vec<String>,
}

/// Inspects the ONNX file at `path`. Fails only when the file cannot be read or decoded; a
/// model bioseg or tract cannot run is reported as such.
pub fn inspect(path: &Path) -> Result<ModelReport, InferError> {
    let proto = bioseg_onnx::read_model(path)?;
    let Some(graph) = proto.graph.as_ref() else {
        return Err(InferError::Model { path: path.to_path_buf(), reason: "the file holds no graph".into() });
    };
    let init_names: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();

    let mut opsets = BTreeMap::new();
    for o in &proto.opset_import {
        let d = if o.domain.is_empty() { "ai.onnx".to_string() } else { o.domain.clone() };
        opsets.insert(d, o.version);
    }
    let mut op_histogram = BTreeMap::new();
    let mut custom_domains = Vec::new();
    for n in &graph.node {
        *op_histogram.entry(n.op_type.clone()).or_insert(0usize) += 1;
        if !matches!(n.domain.as_str(), "" | "ai.onnx" | "ai.onnx.ml") && !custom_domains.contains(&n.domain) {
            custom_domains.push(n.domain.clone());
        }
    }
    custom_domains.sort();
    let (mut parameters, mut initializer_values) = (0u64, 0u64);
    for t in &graph.initializer {
        let n = t.dims.iter().map(|&d| d.max(0) as u64).product::<u64>();
        initializer_values += n;
        if matches!(t.data_type, 1 | 10 | 11 | 16) {
            parameters += n;
        }
    }
    let (metadata, metadata_error) = match ModelMetadata::from_model(&proto) {
        Ok(md) => (md, None),
        Err(e) => (ModelMetadata::default(), Some(e.to_string())),
    };
    let mut bioseg_metadata = BTreeMap::new();
    let mut other_metadata = BTreeMap::new();
    for e in &proto.metadata_props {
        let target = if e.key.starts_with("bioseg.") { &mut bioseg_metadata } else { &mut other_metadata };
        target.insert(e.key.clone(), e.value.clone());
    }

    let model = OnnxModel::load(path);
    let io = match &model {
        Ok(m) => ModelIo::probe(m, None).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let interface = io.as_ref().ok().map(|io| InterfaceReport {
        layout: io.layout.to_string(),
        channels: io.channels,
        fixed_size: io.fixed_size.map(|(h, w)| [h, w]),
        batch_symbolic: io.batch_symbolic,
        output_activation: io.activation.to_string(),
        normalization: io.normalization.map(|n| n.to_string()),
    });
    let estimate = estimate_graph(graph);
    let tiling = tiling_report(&metadata, io.as_ref().ok(), &estimate);

    let mut unsupported_ops: Vec<String> = op_histogram.keys().filter(|op| !tract_supports(op)).cloned().collect();
    unsupported_ops.sort();
    let mut tract = TractReport {
        version: tract::version().to_string(),
        all_ops_supported: unsupported_ops.is_empty(),
        unsupported_ops,
        custom_domains,
        trial_input_shape: None,
        prepared: false,
        trial_output_shapes: Vec::new(),
        error: None,
    };
    match &model {
        Ok(m) => {
            let multiple = tiling.size_multiple.map(|s| s.value).unwrap_or(16);
            let shape = trial_shape(m, io.as_ref().ok(), multiple);
            let zeros = vec![0f32; shape.iter().product()];
            match m.run(&shape, &zeros) {
                Ok(outputs) => {
                    tract.prepared = true;
                    tract.trial_output_shapes = outputs.into_iter().map(|(s, _)| s).collect();
                }
                Err(e) => tract.error = Some(e.to_string()),
            }
            tract.trial_input_shape = Some(shape);
        }
        Err(e) => tract.error = Some(format!("not attempted: {e}")),
    }

    Ok(ModelReport {
        path: path.to_path_buf(),
        producer: format!("{} {}", proto.producer_name, proto.producer_version).trim().to_string(),
        ir_version: proto.ir_version,
        opsets,
        inputs: graph.input.iter().filter(|i| !init_names.contains(i.name.as_str())).map(tensor_report).collect(),
        outputs: graph.output.iter().map(tensor_report).collect(),
        interface,
        interface_error: io.err(),
        nodes: graph.node.len(),
        op_histogram,
        initializers: graph.initializer.len(),
        parameters,
        initializer_values,
        bioseg_metadata,
        other_metadata,
        metadata_error,
        tiling,
        tract,
    })
}

/// A small input shape to try the model with: batch 1, channels from the interface, height and
/// width the fixed size or 32 rounded up to the size multiple (other models: 1 for the first
/// symbolic axis, 32 for the rest).
fn trial_shape(model: &OnnxModel, io: Option<&ModelIo>, multiple: usize) -> Vec<usize> {
    let dims = model.input_dims();
    match io {
        Some(io) => {
            let m = multiple.max(1);
            let side = 32usize.div_ceil(m) * m;
            let (h, w) = io.fixed_size.unwrap_or((side, side));
            let b = match dims.first() {
                Some(InputDim::Fixed(n)) => *n,
                _ => 1,
            };
            match io.layout {
                bioseg_onnx::TensorLayout::Nhwc => vec![b, h, w, io.channels],
                _ => vec![b, io.channels, h, w],
            }
        }
        None => dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                InputDim::Fixed(n) => *n,
                _ if i == 0 => 1,
                _ => 32,
            })
            .collect(),
    }
}

fn tiling_report(md: &ModelMetadata, io: Option<&ModelIo>, est: &GraphEstimate) -> TilingReport {
    let mut notes = Vec::new();
    let mut report = TilingReport {
        size_multiple: None,
        receptive_field_radius: None,
        recommended_halo: None,
        recommended_tile: None,
        max_pool_nodes: est.max_pool_nodes,
        notes: Vec::new(),
    };
    let Some(io) = io else {
        notes.push("no image interface: no tiling recommendation".to_string());
        report.notes = notes;
        return report;
    };
    let sourced = |md: Option<usize>, computed: Option<usize>| {
        md.map(|value| Sourced { value, source: Source::Metadata })
            .or(computed.map(|value| Sourced { value, source: Source::Computed }))
    };
    report.size_multiple = sourced(md.size_multiple, est.size_multiple);
    report.receptive_field_radius = sourced(md.receptive_field_radius, est.receptive_field_radius);
    let m = report.size_multiple.map(|s| s.value).unwrap_or(1).max(1);
    report.recommended_halo = sourced(
        md.recommended_halo,
        report.receptive_field_radius.map(|r| crate::io_spec::halo_from_radius(r.value, m)),
    );
    if md.size_multiple.is_none() || md.receptive_field_radius.is_none() {
        notes.extend(est.notes.iter().cloned());
        if est.receptive_field_radius.is_some() {
            notes.push(
                "computed values are an estimate from the graph (see `bioseg_infer::inspect`): \
                 the halo covers the receptive field, so tiled output equals whole-image output"
                    .to_string(),
            );
        }
    }
    if md.size_multiple.is_none() {
        notes.push(format!(
            "without bioseg.size_multiple, `bioseg predict` aligns tiles to {} unless --size-multiple is given",
            io.size_multiple
        ));
    }
    if md.recommended_halo.is_none() {
        // What `bioseg predict` will use (`ModelIo`, the one source of that choice).
        notes.push(match io.recommended_halo {
            Some(h) => format!(
                "without bioseg.recommended_halo, `bioseg predict` uses a halo of {h} (the receptive field \
                 rounded up to {}; --halo overrides it)",
                io.size_multiple
            ),
            None => format!(
                "without bioseg.recommended_halo or a receptive field, `bioseg predict` uses a halo of {}: \
                 pass --halo",
                crate::predict::FALLBACK_HALO
            ),
        });
    }
    let halo = report.recommended_halo.map(|h| h.value);
    match (io.fixed_size, halo) {
        (Some((h, w)), halo) => {
            report.recommended_tile = Some(Sourced { value: h.min(w), source: Source::Graph });
            let side = h.min(w);
            match AxisPlan::fixed_window(side, side, 0, halo.unwrap_or(0), m) {
                Ok(plan) => notes.push(format!(
                    "fixed input {h}x{w}: each tile is one {h}x{w} window, a core of {} px inside a halo of {} px",
                    plan.core, plan.halo
                )),
                Err(e) => notes.push(format!("fixed input {h}x{w}: {e}")),
            }
        }
        (None, Some(halo)) => {
            let tile = 256usize.max(2 * halo).div_ceil(m) * m;
            report.recommended_tile = Some(Sourced { value: tile, source: Source::Computed });
            notes.push(format!(
                "recommended tile: at least 256 px and at least twice the halo (so the context read \
                 around a tile costs at most 4x its core): --tile {tile}"
            ));
        }
        (None, None) => {}
    }
    report.notes = notes;
    report
}

fn elem_type_name(t: i32) -> String {
    match t {
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        16 => "bfloat16",
        _ => return format!("type {t}"),
    }
    .to_string()
}

fn tensor_report(v: &ValueInfoProto) -> TensorReport {
    let tensor = v.r#type.as_ref().and_then(|t| t.tensor_type.as_ref());
    let elem_type = tensor.map(|t| elem_type_name(t.elem_type)).unwrap_or_else(|| "not a tensor".into());
    let mut dims = Vec::new();
    let mut symbolic_axes = Vec::new();
    if let Some(shape) = tensor.and_then(|t| t.shape.as_ref()) {
        for (axis, d) in shape.dim.iter().enumerate() {
            match &d.value {
                Some(DimensionValue::DimValue(n)) if *n > 0 => dims.push(n.to_string()),
                Some(DimensionValue::DimParam(p)) if !p.is_empty() => {
                    dims.push(p.clone());
                    symbolic_axes.push(SymbolicAxis { axis, symbol: Some(p.clone()) });
                }
                _ => {
                    dims.push("?".into());
                    symbolic_axes.push(SymbolicAxis { axis, symbol: None });
                }
            }
        }
    }
    TensorReport { name: v.name.clone(), elem_type, dims, symbolic_axes }
}

// ---- the graph walk --------------------------------------------------------------------------

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_ints_max(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).and_then(|a| a.ints.iter().copied().max())
}

fn attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

/// Integer values of a constant tensor (int64 or int32).
fn tensor_i64(t: &TensorProto) -> Option<Vec<i64>> {
    match t.data_type {
        7 if !t.raw_data.is_empty() => {
            Some(t.raw_data.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8]))).collect())
        }
        7 => Some(t.int64_data.clone()),
        6 if !t.raw_data.is_empty() => Some(
            t.raw_data.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap_or([0; 4])) as i64).collect(),
        ),
        6 => Some(t.int32_data.iter().map(|&v| v as i64).collect()),
        _ => None,
    }
}

/// The constant tensors of a graph: initializers and `Constant` nodes' values.
pub fn constants(graph: &GraphProto) -> HashMap<&str, &TensorProto> {
    let mut map: HashMap<&str, &TensorProto> = graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
    for n in &graph.node {
        if n.op_type == "Constant"
            && let (Some(out), Some(t)) = (n.output.first(), attr(n, "value").and_then(|a| a.t.as_ref()))
        {
            map.insert(out.as_str(), t);
        }
    }
    map
}

/// Node indices in topological order (stable: among ready nodes, file order first). Falls back
/// to file order if the graph has a cycle or dangling references.
pub fn topological_order(graph: &GraphProto) -> Vec<usize> {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in &n.output {
            if !o.is_empty() {
                producer.insert(o.as_str(), i);
            }
        }
    }
    let mut indegree = vec![0usize; graph.node.len()];
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        let mut deps: Vec<usize> = n.input.iter().filter_map(|x| producer.get(x.as_str()).copied()).collect();
        deps.sort_unstable();
        deps.dedup();
        for d in deps {
            if d != i {
                indegree[i] += 1;
                users[d].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> =
        (0..graph.node.len()).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for &u in &users[i] {
            indegree[u] -= 1;
            if indegree[u] == 0 {
                ready.push(Reverse(u));
            }
        }
    }
    if order.len() == graph.node.len() { order } else { (0..graph.node.len()).collect() }
}

#[derive(Clone, Copy, Debug)]
struct Flow {
    /// Input pixels per pixel of this tensor.
    scale: f64,
    /// Receptive-field radius in input pixels.
    radius: f64,
    /// A repeat-interleave (Keras UpSampling2D) seen on one axis, waiting for the other.
    pending: Option<i64>,
}

/// Estimates the size multiple and receptive field of an image-to-image graph (see the module
/// documentation for the rules). Never fails: what it cannot estimate is left `None` with a note.
pub fn estimate_graph(graph: &GraphProto) -> GraphEstimate {
    let consts = constants(graph);
    let producer_op: HashMap<&str, &str> =
        graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n.op_type.as_str()))).collect();
    let mut flows: HashMap<&str, Flow> = HashMap::new();
    for i in &graph.input {
        if !consts.contains_key(i.name.as_str()) {
            flows.insert(i.name.as_str(), Flow { scale: 1.0, radius: 0.0, pending: None });
        }
    }
    let mut est = GraphEstimate {
        conv_nodes: 0,
        max_pool_nodes: 0,
        size_multiple: None,
        receptive_field_radius: None,
        notes: Vec::new(),
    };
    let mut max_scale = 1.0f64;
    let mut global: Option<String> = None;
    let mut unknown_resize = false;
    let const_f32 = |name: &str| consts.get(name).and_then(|t| bioseg_onnx::initializer_to_f32(t).ok());
    let const_i64 = |name: &str| consts.get(name).and_then(|t| tensor_i64(t));
    for idx in topological_order(graph) {
        let node = &graph.node[idx];
        let ins: Vec<Flow> = node.input.iter().filter_map(|n| flows.get(n.as_str()).copied()).collect();
        let Some(first) = ins.first().copied() else {
            continue;
        };
        let op = node.op_type.as_str();
        if matches!(op, "Shape" | "Size") {
            continue;
        }
        let mut f = Flow {
            scale: ins.iter().map(|f| f.scale).fold(f64::INFINITY, f64::min),
            radius: ins.iter().map(|f| f.radius).fold(0.0, f64::max),
            pending: first.pending,
        };
        let kernel = |node: &NodeProto| {
            attr_ints_max(node, "kernel_shape")
                .or_else(|| {
                    node.input
                        .get(1)
                        .and_then(|w| consts.get(w.as_str()))
                        .and_then(|t| t.dims.get(2..).and_then(|d| d.iter().copied().max()))
                })
                .unwrap_or(1)
                .max(1) as f64
        };
        let stride = |node: &NodeProto| attr_ints_max(node, "strides").unwrap_or(1).max(1) as f64;
        match op {
            "Conv" | "ConvInteger" | "QLinearConv" => {
                est.conv_nodes += 1;
                let (k, s) = (kernel(node), stride(node));
                let d = attr_ints_max(node, "dilations").unwrap_or(1).max(1) as f64;
                f.radius += ((k - 1.0) * d / 2.0).ceil() * f.scale;
                f.scale *= s;
            }
            "ConvTranspose" => {
                est.conv_nodes += 1;
                let (k, s) = (kernel(node), stride(node));
                let fine = f.scale / s;
                f.radius += (s - 1.0) * fine + ((k - s).max(0.0) / 2.0).ceil() * fine;
                f.scale = fine;
            }
            "MaxPool" | "AveragePool" | "LpPool" => {
                if op == "MaxPool" {
                    est.max_pool_nodes += 1;
                }
                f.radius += (kernel(node) - 1.0) * f.scale;
                f.scale *= stride(node);
            }
            "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "Flatten" | "Gemm" => {
                global.get_or_insert_with(|| op.to_string());
            }
            "Resize" | "Upsample" => {
                let scales = if op == "Resize" {
                    node.input.get(2).filter(|s| !s.is_empty()).and_then(|s| const_f32(s))
                } else {
                    node.input
                        .get(1)
                        .and_then(|s| const_f32(s))
                        .or_else(|| attr(node, "scales").map(|a| a.floats.clone()))
                };
                match scales.and_then(|s| s.get(2..).map(|v| v.iter().copied().fold(0.0f32, f32::max))) {
                    Some(factor) if factor > 0.0 => {
                        let factor = factor as f64;
                        let fine = f.scale / factor;
                        let linear = attr(node, "mode").is_some_and(|a| a.s != b"nearest");
                        if factor > 1.0 {
                            f.radius += (factor - 1.0) * fine + if linear { fine } else { 0.0 };
                        }
                        f.scale = fine;
                    }
                    _ => unknown_resize = true,
                }
            }
            "DepthToSpace" => {
                let b = attr_int(node, "blocksize").unwrap_or(1).max(1) as f64;
                let fine = f.scale / b;
                f.radius += (b - 1.0) * fine;
                f.scale = fine;
            }
            "SpaceToDepth" => {
                let b = attr_int(node, "blocksize").unwrap_or(1).max(1) as f64;
                f.radius += (b - 1.0) * f.scale;
                f.scale *= b;
            }
            "Tile" => {
                let from_unsqueeze =
                    node.input.first().and_then(|x| producer_op.get(x.as_str())).is_some_and(|p| *p == "Unsqueeze");
                let repeats = node.input.get(1).and_then(|r| const_i64(r)).unwrap_or_default();
                let big: Vec<i64> = repeats.iter().copied().filter(|&r| r > 1).collect();
                if from_unsqueeze && big.len() == 1 {
                    let r = big[0];
                    if f.pending == Some(r) {
                        let fine = f.scale / r as f64;
                        f.radius += (r as f64 - 1.0) * fine;
                        f.scale = fine;
                        f.pending = None;
                    } else {
                        f.pending = Some(r);
                    }
                }
            }
            _ => {}
        }
        max_scale = max_scale.max(f.scale);
        for o in &node.output {
            if !o.is_empty() {
                flows.insert(o.as_str(), f);
            }
        }
    }
    let out_radius = graph
        .output
        .iter()
        .filter_map(|o| flows.get(o.name.as_str()))
        .map(|f| f.radius)
        .fold(None, |acc: Option<f64>, r| Some(acc.map_or(r, |a| a.max(r))));
    if est.conv_nodes == 0 {
        est.notes.push("no convolution on the data path: no receptive-field estimate".into());
        return est;
    }
    est.size_multiple = Some((max_scale.round() as usize).max(1));
    if let Some(op) = global {
        est.notes.push(format!("the graph reduces over the whole image ({op}): no finite receptive field"));
        return est;
    }
    if unknown_resize {
        est.notes.push("a Resize/Upsample without constant scales was not counted as upsampling".into());
    }
    match out_radius {
        Some(r) => est.receptive_field_radius = Some(r.ceil() as usize),
        None => est.notes.push("the outputs are not reached from the input: no receptive-field estimate".into()),
    }
    est
}

impl ModelReport {
    /// The human-readable report `bioseg inspect` prints.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let tensor_line = |t: &TensorReport| {
            let mut l = format!("  {}  {} [{}]", t.name, t.elem_type, t.dims.join(", "));
            if !t.symbolic_axes.is_empty() {
                let axes: Vec<String> = t
                    .symbolic_axes
                    .iter()
                    .map(|a| match &a.symbol {
                        Some(sym) => format!("{} ({sym})", a.axis),
                        None => format!("{} (undeclared)", a.axis),
                    })
                    .collect();
                l += &format!("  symbolic axes: {}", axes.join(", "));
            }
            l
        };
        let _ = writeln!(s, "model: {}", self.path.display());
        let opsets: Vec<String> = self.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
        let _ = writeln!(s, "producer: {}, IR version {}, opset {}", self.producer, self.ir_version, opsets.join(", "));
        let _ = writeln!(s, "inputs:");
        for t in &self.inputs {
            let _ = writeln!(s, "{}", tensor_line(t));
        }
        let _ = writeln!(s, "outputs:");
        for t in &self.outputs {
            let _ = writeln!(s, "{}", tensor_line(t));
        }
        match (&self.interface, &self.interface_error) {
            (Some(i), _) => {
                let size = match i.fixed_size {
                    Some([h, w]) => format!("fixed size {h}x{w}"),
                    None => "any size".into(),
                };
                let _ = writeln!(
                    s,
                    "image interface: layout {}, {} channel(s), {size}, batch {}, output {}{}",
                    i.layout,
                    i.channels,
                    if i.batch_symbolic { "symbolic" } else { "fixed" },
                    i.output_activation,
                    i.normalization.as_ref().map(|n| format!(", normalisation {n}")).unwrap_or_default()
                );
            }
            (None, Some(e)) => {
                let _ = writeln!(s, "image interface: none ({e})");
            }
            (None, None) => {}
        }
        let _ = writeln!(
            s,
            "parameters: {} (float values in {} initializers; {} values in all)",
            self.parameters, self.initializers, self.initializer_values
        );
        let _ = writeln!(s, "ops ({} nodes, {} types):", self.nodes, self.op_histogram.len());
        for (op, n) in &self.op_histogram {
            let mark = if tract_supports(op) { "" } else { "  <- not supported by tract" };
            let _ = writeln!(s, "  {op:<24} {n:>5}{mark}");
        }
        let meta = |m: &BTreeMap<String, String>| {
            if m.is_empty() { " none".to_string() } else { m.iter().map(|(k, v)| format!("\n  {k} = {v}")).collect() }
        };
        let _ = writeln!(s, "bioseg metadata:{}", meta(&self.bioseg_metadata));
        if let Some(e) = &self.metadata_error {
            let _ = writeln!(s, "  (unreadable: {e})");
        }
        let _ = writeln!(s, "other metadata:{}", meta(&self.other_metadata));
        let t = &self.tiling;
        let px = |v: &Option<Sourced<usize>>, unit: &str| match v {
            Some(v) => format!("{}{unit} ({})", v.value, v.source),
            None => "unknown".into(),
        };
        let _ = writeln!(
            s,
            "tiling: size multiple {}, receptive-field radius {}, recommended halo {}, recommended tile {} ({} MaxPool)",
            px(&t.size_multiple, ""),
            px(&t.receptive_field_radius, " px"),
            px(&t.recommended_halo, " px"),
            px(&t.recommended_tile, " px"),
            t.max_pool_nodes
        );
        for n in &t.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        let tr = &self.tract;
        if tr.all_ops_supported {
            let _ = writeln!(s, "tract {}: every op is supported", tr.version);
        } else {
            let _ = writeln!(
                s,
                "tract {}: {} op type(s) NOT supported: {}",
                tr.version,
                tr.unsupported_ops.len(),
                tr.unsupported_ops.join(", ")
            );
        }
        if !tr.custom_domains.is_empty() {
            let _ = writeln!(s, "  custom op domains: {}", tr.custom_domains.join(", "));
        }
        match (&tr.trial_input_shape, tr.prepared, &tr.error) {
            (Some(shape), true, _) => {
                let _ = writeln!(s, "  prepared and ran for input {shape:?}: output(s) {:?}", tr.trial_output_shapes);
            }
            (Some(shape), false, Some(e)) => {
                let _ = writeln!(s, "  FAILED to prepare or run for input {shape:?}: {e}");
            }
            (_, _, Some(e)) => {
                let _ = writeln!(s, "  trial run {e}");
            }
            _ => {}
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bioseg_onnx::{Dim, GraphBuilder};

    #[test]
    fn tract_op_list_is_sorted_non_empty_and_has_the_segmentation_ops() {
        assert!(TRACT_ONNX_OPS.len() > 100, "{}", TRACT_ONNX_OPS.len());
        assert!(TRACT_ONNX_OPS.windows(2).all(|w| w[0] < w[1]), "sorted and unique");
        for op in ["Conv", "ConvTranspose", "Resize", "MaxPool", "BatchNormalization", "Tile", "Softmax"] {
            assert!(tract_supports(op), "{op}");
        }
        assert!(!tract_supports("NonExistentOp"));
        assert!(!tract_supports("MultiHeadAttention"), "needs tract's transformers feature");
    }

    /// A bioseg-style U-Net graph of `depth` levels (weights all zero; only the shapes matter).
    fn unet_graph(depth: usize) -> GraphProto {
        let mut g = GraphBuilder::new("t");
        let dims = [Dim::symbol("b"), Dim::Fixed(1), Dim::symbol("h"), Dim::symbol("w")];
        let mut x = g.input("input", &dims);
        let conv = |g: &mut GraphBuilder, name: &str, x: &bioseg_onnx::Value, cin: usize, cout: usize, k: usize| {
            let pads = if k == 3 { [1, 1, 1, 1] } else { [0, 0, 1, 1] };
            let w = vec![0.0; cout * cin * k * k];
            let y = g.conv2d(name, x, &w, [cout, cin, k, k], None, pads, 1);
            g.relu(&format!("{name}.relu"), &y)
        };
        let mut skips = Vec::new();
        let mut c = 1;
        for l in 0..depth {
            x = conv(&mut g, &format!("d{l}a"), &x, c, 2, 3);
            x = conv(&mut g, &format!("d{l}b"), &x, 2, 2, 3);
            c = 2;
            skips.push(x.clone());
            x = g.max_pool(&format!("p{l}"), &x, 2);
        }
        x = conv(&mut g, "ba", &x, 2, 2, 3);
        x = conv(&mut g, "bb", &x, 2, 2, 3);
        for l in (0..depth).rev() {
            let u = g.upsample_nearest(&format!("u{l}"), &x, 2);
            let u = conv(&mut g, &format!("u{l}c"), &u, 2, 2, 2);
            let skip = skips.pop().unwrap_or_else(|| x.clone());
            let cat = g.concat_channels(&format!("cat{l}"), &[&skip, &u]);
            x = conv(&mut g, &format!("u{l}a"), &cat, 4, 2, 3);
            x = conv(&mut g, &format!("u{l}b"), &x, 2, 2, 3);
        }
        x = conv(&mut g, "head", &x, 2, 2, 3);
        let w = vec![0.0; 2];
        let y = g.conv2d("out", &x, &w, [1, 2, 1, 1], None, [0, 0, 0, 0], 1);
        let y = g.sigmoid("sig", &y);
        g.output(&y, "probabilities", &dims);
        g.finish()
    }

    #[test]
    fn receptive_field_of_a_bioseg_unet_matches_the_closed_form() {
        // bioseg_train::model::unet::receptive_field_radius: depth 2 -> 30, depth 4 -> 138.
        for (depth, radius) in [(2, 30), (4, 138)] {
            let est = estimate_graph(&unet_graph(depth));
            assert_eq!(est.max_pool_nodes, depth);
            assert_eq!(est.size_multiple, Some(1 << depth));
            assert_eq!(est.receptive_field_radius, Some(radius), "{est:?}");
        }
    }

    #[test]
    fn graphs_without_convolutions_or_with_global_pooling_get_no_radius() {
        let mut g = GraphBuilder::new("p");
        let x = g.input("x", &[Dim::symbol("b"), Dim::Fixed(10)]);
        let y = g.dense("d", &x, &[0.0; 10], [10, 1], &[0.0]);
        g.output(&y, "y", &[Dim::symbol("b"), Dim::Fixed(1)]);
        let est = estimate_graph(&g.finish());
        assert_eq!(est.receptive_field_radius, None);
        assert!(!est.notes.is_empty());
    }

    #[test]
    fn topological_order_handles_unsorted_nodes() {
        let mut graph = unet_graph(2);
        graph.node.reverse();
        let order = topological_order(&graph);
        assert_eq!(order.len(), graph.node.len());
        let est = estimate_graph(&graph);
        assert_eq!(est.receptive_field_radius, Some(30));
    }
}
