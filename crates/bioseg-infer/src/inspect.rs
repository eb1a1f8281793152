//! `bioseg inspect`: what an ONNX file holds and whether bioseg (tract) can run it.
//!
//! [`inspect`] decodes the protobuf itself (so it reports on files bioseg cannot run, too) and
//! gathers: graph inputs and outputs with their symbolic axes, the image interface
//! ([`ModelIo::probe`]: layout, channels, fixed size), an op histogram, the parameter count,
//! bioseg's metadata and any other `metadata_props`, the recommended tile and halo, and whether
//! tract supports every op (checked against [`TRACT_ONNX_OPS`], then by preparing the model for
//! a small concrete input shape and running it once on zeros). Models without bioseg metadata
//! get their size multiple and receptive field from [`bioseg_onnx::estimate_graph`] (its
//! module documents the rules).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use bioseg_onnx::proto::{DimensionValue, ValueInfoProto};
use bioseg_onnx::{GraphEstimate, ModelMetadata, estimate_graph};
use serde::Serialize;

use crate::error::InferError;
use crate::io_spec::ModelIo;
use crate::model::{ExecutedOp, InputDim, OnnxModel};
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
    /// Estimated from the graph by [`bioseg_onnx::estimate_graph`].
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
    /// What runs the trial's optimised plan: bioseg's fast paths (its convolution, with the
    /// up-sampling and concatenation it folds) and tract's kernels, per kind of operation.
    pub execution: Vec<ExecutedOp>,
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
    /// The BioImage Model Zoo package the model came from, if it did.
    pub package: Option<PackageReport>,
}

/// A BioImage Model Zoo package's description, as bioseg reads it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PackageReport {
    /// `name`.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `format_version`.
    pub format_version: String,
    /// The ONNX weights' file in the package.
    pub weights: String,
    /// `weights.onnx.opset_version`.
    pub opset: Option<u64>,
    /// The input's and output's ids.
    pub tensors: [String; 2],
    /// Outputs declared (bioseg runs the first).
    pub outputs: usize,
    /// Whether the package has test tensors (`bioseg inspect --test` runs them).
    pub test_tensors: bool,
    /// The smallest height and width the input takes.
    pub min_size: Option<usize>,
}

/// Inspects the ONNX file (or BioImage Model Zoo package: its description and ONNX weights) at
/// `path`. Fails only when the file cannot be read or decoded; a model bioseg or tract cannot
/// run is reported as such.
pub fn inspect(path: &Path) -> Result<ModelReport, InferError> {
    let package = bioseg_bioimageio::is_package(path).then(|| bioseg_bioimageio::Package::open(path)).transpose()?;
    let proto = match &package {
        Some(p) => bioseg_onnx::decode_model(&p.onnx_bytes()?, &p.weights_path())?,
        None => bioseg_onnx::read_model(path)?,
    };
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
    let (mut metadata, metadata_error) = match ModelMetadata::from_model(&proto) {
        Ok(md) => (md, None),
        Err(e) => (ModelMetadata::default(), Some(e.to_string())),
    };
    if let Some(p) = &package {
        metadata = crate::model::overridden(&metadata, &p.description().metadata);
    }
    let package = package.map(|p| {
        let d = p.description();
        PackageReport {
            name: d.name.clone(),
            description: d.description.clone(),
            format_version: d.format_version.clone(),
            weights: d.weights.source.clone(),
            opset: d.opset,
            tensors: [d.input_id.clone(), d.output_id.clone()],
            outputs: d.outputs,
            test_tensors: d.test_tensors.is_some(),
            min_size: d.min_size,
        }
    });
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
        execution: Vec::new(),
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
                    match m.execution(&shape) {
                        Ok(ops) => tract.execution = ops,
                        Err(e) => tract.error = Some(format!("listing the plan's operations: {e}")),
                    }
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
        package,
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
        if let Some(p) = &self.package {
            let _ = writeln!(
                s,
                "BioImage Model Zoo package: {} (format {}), weights {} (opset {}), input `{}` → output `{}`{}{}",
                p.name,
                p.format_version,
                p.weights,
                p.opset.map(|o| o.to_string()).unwrap_or_else(|| "?".into()),
                p.tensors[0],
                p.tensors[1],
                if p.outputs > 1 { format!(" (the first of {} outputs)", p.outputs) } else { String::new() },
                if p.test_tensors { ", test tensors (run them with --test)" } else { ", no test tensors" }
            );
            if !p.description.is_empty() {
                let _ = writeln!(s, "  {}", p.description.lines().next().unwrap_or_default());
            }
        }
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
                for (bioseg, who) in [(true, "bioseg's fast path"), (false, "tract's kernels")] {
                    let ops: Vec<&ExecutedOp> = tr.execution.iter().filter(|o| o.bioseg == bioseg).collect();
                    if ops.is_empty() {
                        let _ = writeln!(s, "  {who}: no node");
                        continue;
                    }
                    let nodes: usize = ops.iter().map(|o| o.nodes).sum();
                    // One entry per path, channel counts aside (`--json` lists each shape).
                    let mut kinds: Vec<(String, usize)> = Vec::new();
                    for o in ops {
                        let kind = o.op.split(' ').filter(|t| !t.contains('→')).collect::<Vec<_>>().join(" ");
                        match kinds.iter_mut().find(|(k, _)| *k == kind) {
                            Some((_, n)) => *n += o.nodes,
                            None => kinds.push((kind, o.nodes)),
                        }
                    }
                    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
                    let _ = writeln!(s, "  {who}: {nodes} node(s): {}", list.join(", "));
                }
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
}
