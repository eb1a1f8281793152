//! A loaded ONNX model with a cache of optimised tract plans, one per concrete input shape.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bioseg_onnx::ModelMetadata;
use bioseg_onnx::proto::{DataType, DimensionValue, ModelProto};
use tract_core::internal::{DatumType, IntoTValue, TVec, Tensor, TractResult, TypedModel, tvec};
use tract_core::runtime::{DefaultRuntime, Runnable, Runtime};
use tract_onnx::prelude::{Datum, Framework, InferenceFact, InferenceModelExt};

use crate::error::InferError;
use crate::gemm_conv::{GemmConvOptions, use_gemm_convolutions};

/// One axis of the model's input as declared in the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputDim {
    /// A fixed size.
    Fixed(usize),
    /// A symbol (any size, possibly constrained by the architecture).
    Symbol(String),
    /// Not declared.
    Unknown,
}

impl std::fmt::Display for InputDim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputDim::Fixed(n) => write!(f, "{n}"),
            InputDim::Symbol(s) => write!(f, "{s}"),
            InputDim::Unknown => write!(f, "?"),
        }
    }
}

type Plan = Arc<dyn Runnable>;

/// One output of a model run: its shape and its values (row-major).
pub type Output = (Vec<usize>, Vec<f32>);

/// An ONNX model ready to run on any input shape its graph allows.
pub struct OnnxModel {
    path: PathBuf,
    bytes: Vec<u8>,
    proto: ModelProto,
    metadata: ModelMetadata,
    input_name: String,
    input_dims: Vec<InputDim>,
    output_names: Vec<String>,
    plans: Mutex<HashMap<Vec<usize>, Plan>>,
    /// Prepare plans with im2col convolutions ([`prefers_im2col`]).
    im2col: bool,
    /// Run the convolutions it can with [`crate::gemm_conv::GemmConv`] and the 2×2 / 2 pools
    /// with [`crate::max_pool::BiosegMaxPool`] (`None`: tract's ops for both).
    gemm_conv: Option<GemmConvOptions>,
    /// The package the model came from, if any.
    package: Option<Arc<bioseg_bioimageio::Package>>,
}

/// `base` with every field `package` gives replaced by the package's.
pub(crate) fn overridden(base: &ModelMetadata, package: &ModelMetadata) -> ModelMetadata {
    let mut m = base.clone();
    m.layout = package.layout.or(m.layout);
    m.input_channels = package.input_channels.or(m.input_channels);
    if !package.classes.is_empty() {
        m.classes = package.classes.clone();
    }
    m.output = package.output.or(m.output);
    m.normalization = package.normalization.or(m.normalization);
    m.size_multiple = package.size_multiple.or(m.size_multiple);
    m.recommended_halo = package.recommended_halo.or(m.recommended_halo);
    m.input_description = package.input_description.clone().or(m.input_description);
    m
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("path", &self.path)
            .field("input", &self.input_name)
            .field("input_dims", &self.input_dims)
            .finish()
    }
}

impl OnnxModel {
    /// Reads and checks a model: an ONNX file, or a BioImage Model Zoo package (a `.zip`, its
    /// `rdf.yaml` or a folder holding one; [`bioseg_bioimageio::is_package`]) with ONNX weights,
    /// whose description then overrides the ONNX file's metadata (layout, channels, classes,
    /// normalisation, output activation, size multiple, halo). The graph must decode, have
    /// exactly one float32 input (weights excluded) and at least one output. Nothing is
    /// optimised until a shape is run.
    pub fn load(path: &Path) -> Result<Self, InferError> {
        if bioseg_bioimageio::is_package(path) {
            let package = bioseg_bioimageio::Package::open(path)?;
            let mut model = Self::from_bytes(path, package.onnx_bytes()?)?;
            model.metadata = overridden(&model.metadata, &package.description().metadata);
            model.package = Some(Arc::new(package));
            return Ok(model);
        }
        let bytes = std::fs::read(path)
            .map_err(|e| InferError::Model { path: path.to_path_buf(), reason: format!("cannot read: {e}") })?;
        Self::from_bytes(path, bytes)
    }

    /// [`OnnxModel::load`] of ONNX bytes read from `path`.
    fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self, InferError> {
        let bad = |reason: String| InferError::Model { path: path.to_path_buf(), reason };
        let proto = bioseg_onnx::decode_model(&bytes, path)?;
        let graph = proto.graph.as_ref().expect("decode_model checks the graph");
        let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let inputs: Vec<_> = graph.input.iter().filter(|i| !initializers.contains(i.name.as_str())).collect();
        if inputs.len() != 1 {
            return Err(bad(format!(
                "has {} inputs ({}); bioseg runs models with exactly one input",
                inputs.len(),
                inputs.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        if graph.output.is_empty() {
            return Err(bad("declares no output".into()));
        }
        let input = inputs[0];
        let tensor_type = input
            .r#type
            .as_ref()
            .and_then(|t| t.tensor_type.as_ref())
            .ok_or_else(|| bad(format!("input `{}` is not a tensor", input.name)))?;
        if tensor_type.elem_type != DataType::Float as i32 {
            return Err(bad(format!(
                "input `{}` has element type {} ({}), but bioseg feeds float32",
                input.name,
                tensor_type.elem_type,
                DataType::try_from(tensor_type.elem_type)
                    .map(|d| format!("{d:?}"))
                    .unwrap_or_else(|_| "unknown".into())
            )));
        }
        let input_dims = tensor_type
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimensionValue::DimValue(v)) if *v > 0 => InputDim::Fixed(*v as usize),
                        Some(DimensionValue::DimParam(p)) if !p.is_empty() => InputDim::Symbol(p.clone()),
                        _ => InputDim::Unknown,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let metadata = ModelMetadata::from_model(&proto)?;
        let im2col = prefers_im2col(&proto);
        Ok(OnnxModel {
            path: path.to_path_buf(),
            input_name: input.name.clone(),
            output_names: graph.output.iter().map(|o| o.name.clone()).collect(),
            bytes,
            proto,
            metadata,
            input_dims,
            plans: Mutex::new(HashMap::new()),
            im2col,
            gemm_conv: gemm_convolutions_enabled().then(GemmConvOptions::default),
            package: None,
        })
    }

    /// The same model with `metadata` in place of its own (what a package describes).
    pub fn with_metadata(mut self, metadata: ModelMetadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The BioImage Model Zoo package the model was loaded from, if any.
    pub fn package(&self) -> Option<&bioseg_bioimageio::Package> {
        self.package.as_deref()
    }

    /// The ONNX file's bytes (a package's weights).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The same model with bioseg's ops ([`crate::gemm_conv`]'s convolution and
    /// [`crate::max_pool`]'s pooling) on or off (default: on, unless `BIOSEG_GEMM_CONV=0`);
    /// plans already built are dropped.
    pub fn with_gemm_convolutions(mut self, on: bool) -> Self {
        self.gemm_conv = on.then(GemmConvOptions::default);
        self.plans = Mutex::new(HashMap::new());
        self
    }

    /// The same model with bioseg's convolution on, with these options.
    pub fn with_gemm_options(mut self, options: GemmConvOptions) -> Self {
        self.gemm_conv = Some(options);
        self.plans = Mutex::new(HashMap::new());
        self
    }

    /// How many of the graph's convolutions run as [`crate::gemm_conv::GemmConv`] for an input
    /// of `shape` (0 when turned off).
    pub fn gemm_convolution_count(&self, shape: &[usize]) -> Result<usize, InferError> {
        self.check_input_shape(shape)?;
        self.typed_model(shape).map(|(_, n)| n).map_err(|e| self.prepare_error(shape, e))
    }

    /// The decluttered typed model for `shape`, with bioseg's convolutions swapped in when on,
    /// and how many were.
    fn typed_model(&self, shape: &[usize]) -> TractResult<(TypedModel, usize)> {
        let mut model = crate::onnx_ops::onnx().model_for_read(&mut std::io::Cursor::new(&self.bytes))?;
        model.set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), shape))?;
        let mut typed: TypedModel = model.into_typed()?.into_decluttered()?;
        let replaced = match &self.gemm_conv {
            Some(options) => {
                crate::max_pool::use_bioseg_max_pools(&mut typed)?;
                crate::resize::nearest_resizes_as_upsamples(&mut typed)?;
                crate::repeat_chain::repeat_chains_as_upsamples(&mut typed)?;
                let convolutions = use_gemm_convolutions(&mut typed, options)?;
                crate::resize::use_bioseg_resizes(&mut typed)?;
                crate::softmax::use_bioseg_softmax(&mut typed)?;
                crate::pointwise::use_bioseg_pointwise(&mut typed)?;
                crate::conv_transpose::use_bioseg_conv_transposes(&mut typed)?;
                convolutions
            }
            None => 0,
        };
        Ok((typed, replaced))
    }

    /// Time spent per kind of operation (tract's op names, `BiosegGemmConv` for bioseg's
    /// convolution) over `repeats` runs of `data` of `shape` on one thread: milliseconds per run,
    /// slowest first.
    pub fn profile(&self, shape: &[usize], data: &[f32], repeats: usize) -> Result<Vec<OpTime>, InferError> {
        self.check_input_shape(shape)?;
        let run_err = |e: anyhow::Error| InferError::Run(error_chain(&e));
        let plan = self
            .typed_model(shape)
            .and_then(|(typed, _)| tract_core::plan::SimplePlan::new(typed.into_optimized()?))
            .map_err(|e| self.prepare_error(shape, e))?;
        let mut state = tract_core::plan::SimpleState::new(&plan).map_err(run_err)?;
        let input = Tensor::from_shape(shape, data).map_err(run_err)?;
        let mut times: HashMap<String, (f64, std::collections::HashSet<usize>)> = HashMap::new();
        for _ in 0..repeats.max(1) {
            state
                .run_plan_with_eval(tvec!(input.clone().into_tvalue()), |ctx, op_state, node, inputs| {
                    let t0 = std::time::Instant::now();
                    let out = tract_core::plan::eval(ctx, op_state, node, inputs);
                    let e = times.entry(op_kind(node.op()).0).or_default();
                    e.0 += t0.elapsed().as_secs_f64() * 1e3;
                    e.1.insert(node.id);
                    out
                })
                .map_err(run_err)?;
        }
        let mut ops: Vec<OpTime> = times
            .into_iter()
            .map(|(op, (ms, nodes))| OpTime { op, nodes: nodes.len(), ms: ms / repeats.max(1) as f64 })
            .collect();
        ops.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(ops)
    }

    /// Which kernels run the optimised plan for an input of `shape`: every kind of operation
    /// (as in [`profile`](Self::profile)), whether it is bioseg's own, and how many nodes run
    /// it; bioseg's first, then the most frequent. Inputs and constants are left out.
    pub fn execution(&self, shape: &[usize]) -> Result<Vec<ExecutedOp>, InferError> {
        self.check_input_shape(shape)?;
        let optimized = self
            .typed_model(shape)
            .and_then(|(typed, _)| typed.into_optimized())
            .map_err(|e| self.prepare_error(shape, e))?;
        let mut counts: HashMap<(String, bool), usize> = HashMap::new();
        for node in optimized.nodes() {
            let name = node.op().name();
            if name == "Source" || name == "Const" {
                continue;
            }
            *counts.entry(op_kind(node.op())).or_default() += 1;
        }
        let mut ops: Vec<ExecutedOp> =
            counts.into_iter().map(|((op, bioseg), nodes)| ExecutedOp { op, bioseg, nodes }).collect();
        ops.sort_by(|a, b| b.bioseg.cmp(&a.bioseg).then(b.nodes.cmp(&a.nodes)).then(a.op.cmp(&b.op)));
        Ok(ops)
    }

    fn prepare_error(&self, shape: &[usize], e: anyhow::Error) -> InferError {
        InferError::Model {
            path: self.path.clone(),
            reason: format!("tract cannot prepare it for input {shape:?}: {}", error_chain(&e)),
        }
    }

    /// The file the model came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded ONNX protobuf.
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// bioseg metadata (empty for other exporters' models).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// Name of the graph input.
    pub fn input_name(&self) -> &str {
        &self.input_name
    }

    /// The input's declared axes.
    pub fn input_dims(&self) -> &[InputDim] {
        &self.input_dims
    }

    /// Names of the graph outputs.
    pub fn output_names(&self) -> &[String] {
        &self.output_names
    }

    /// Checks `shape` against the declared input axes.
    pub fn check_input_shape(&self, shape: &[usize]) -> Result<(), InferError> {
        if !self.input_dims.is_empty() && shape.len() != self.input_dims.len() {
            return Err(InferError::Input(format!(
                "model {} expects a rank-{} input [{}], got shape {:?}",
                self.path.display(),
                self.input_dims.len(),
                self.input_dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                shape
            )));
        }
        for (axis, (d, &n)) in self.input_dims.iter().zip(shape).enumerate() {
            if let InputDim::Fixed(f) = d
                && *f != n
            {
                return Err(InferError::Input(format!(
                    "model {} needs size {f} on input axis {axis}, got {n} (shape {:?})",
                    self.path.display(),
                    shape
                )));
            }
        }
        if shape.contains(&0) {
            return Err(InferError::Input(format!("empty input shape {shape:?}")));
        }
        Ok(())
    }

    /// The optimised plan for a concrete input shape, built on first use and cached.
    pub fn plan(&self, shape: &[usize]) -> Result<Plan, InferError> {
        self.check_input_shape(shape)?;
        if let Some(p) = self.plans.lock().expect("plan cache").get(shape) {
            return Ok(p.clone());
        }
        let bad = |e: anyhow::Error| self.prepare_error(shape, e);
        let start = std::time::Instant::now();
        let prepare = || -> Result<Plan, InferError> {
            let prepared = || -> TractResult<Plan> {
                let (typed, _) = self.typed_model(shape)?;
                Ok(Arc::from(DefaultRuntime.prepare(typed)?))
            };
            prepared().map_err(bad)
        };
        // The convolution strategy is read while tract optimises the model for this shape.
        let plan = if self.im2col && std::env::var_os(DIRECT_SPATIAL_KNOB).is_none() {
            tract_data::knobs::KnobScope::new([(DIRECT_SPATIAL_KNOB, "true")]).map_err(bad)?.enter(prepare)?
        } else {
            prepare()?
        };
        tracing::debug!("optimised the model for input {shape:?} in {:.0} ms", start.elapsed().as_secs_f64() * 1e3);
        self.plans.lock().expect("plan cache").insert(shape.to_vec(), plan.clone());
        Ok(plan)
    }

    /// Runs the model on one float32 input of `shape`; returns each output's shape and values.
    pub fn run(&self, shape: &[usize], data: &[f32]) -> Result<Vec<Output>, InferError> {
        let plan = self.plan(shape)?;
        let run_err = |e: anyhow::Error| InferError::Run(error_chain(&e));
        let input = Tensor::from_shape(shape, data).map_err(run_err)?;
        let outputs = plan.run(tvec!(input.into_tvalue())).map_err(run_err)?;
        outputs
            .into_iter()
            .map(|t| {
                let t = t.cast_to_dt(DatumType::F32).map_err(run_err)?;
                let values = t.try_as_plain_ram().and_then(|v| v.as_slice::<f32>().map(|s| s.to_vec()));
                Ok((t.shape().to_vec(), values.map_err(run_err)?))
            })
            .collect::<Result<TVec<_>, InferError>>()
            .map(|v| v.into_vec())
    }
}

/// Time per kind of operation ([`OnnxModel::profile`]).
#[derive(Clone, Debug)]
pub struct OpTime {
    /// tract's name for the operation.
    pub op: String,
    /// How many nodes of the plan run it.
    pub nodes: usize,
    /// Milliseconds per run, all those nodes together.
    pub ms: f64,
}

/// A kind of operation in an optimised plan ([`OnnxModel::execution`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExecutedOp {
    /// tract's name for the operation, or bioseg's op (its convolution with its shape and path).
    pub op: String,
    /// Whether it is bioseg's own fast path ([`crate::gemm_conv::GemmConv`],
    /// [`crate::max_pool::BiosegMaxPool`], resize.rs's up-sampling ops, softmax.rs, conv_transpose.rs,
    /// pointwise.rs) rather than one of
    /// tract's kernels.
    pub bioseg: bool,
    /// How many nodes of the plan run it.
    pub nodes: usize,
}

/// The name of a plan's operation, and whether it is bioseg's: bioseg's convolutions are told
/// apart by their shape and path, its pooling and tract's ops by their name.
fn op_kind(op: &dyn tract_core::ops::Op) -> (String, bool) {
    match op.downcast_ref::<crate::gemm_conv::GemmConv>() {
        Some(conv) => (conv.describe(), true),
        None => (
            op.name().to_string(),
            crate::resize::is_bioseg_op(op)
                || op.is::<crate::softmax::BiosegSoftmax>()
                || op.is::<crate::conv_transpose::BiosegConvTranspose>()
                || op.is::<crate::pointwise::BiosegPointwise>()
                || op.is::<crate::max_pool::BiosegMaxPool>(),
        ),
    }
}

/// An anyhow error and its causes on one line.
pub fn error_chain(e: &anyhow::Error) -> String {
    bioseg_data::cli_support::error_line(e.as_ref())
}

/// Environment variable that turns bioseg's own convolution ([`crate::gemm_conv`]) off
/// (`BIOSEG_GEMM_CONV=0`): every convolution then runs on tract's kernels, as before.
pub const GEMM_CONV_ENV: &str = "BIOSEG_GEMM_CONV";

/// Whether plans use [`crate::gemm_conv::GemmConv`] for the convolutions it can run and
/// [`crate::max_pool::BiosegMaxPool`] for the pools (default: yes; `BIOSEG_GEMM_CONV=0` or
/// `false` says no).
pub fn gemm_convolutions_enabled() -> bool {
    !matches!(std::env::var(GEMM_CONV_ENV).as_deref(), Ok("0") | Ok("false") | Ok("off"))
}

/// The tract knob bioseg sets for wide networks (see [`prefers_im2col`]).
pub const DIRECT_SPATIAL_KNOB: &str = "TRACT_DISABLE_DIRECT_SPATIAL";

/// Whether tract should run this model's convolutions as im2col + matrix product instead of its
/// "direct spatial" kernel: measured on x86-64 with AVX-512 (BENCHMARKS.md, `tools/bench/ops.py`),
/// im2col runs 3×3 convolutions of 64 channels 2.3–2.8× faster, but is slower for narrow ones
/// (16→2: 5×, 32→16: 1.2×). So: yes when every 3×3 convolution of the graph, the output head
/// (≤ 4 filters) aside, has at least 32 filters (the classic F=64 U-Net: −18 % time per tile),
/// no for narrower networks (F=16: +7 % with im2col). An environment variable of the knob's
/// name overrides the choice.
pub fn prefers_im2col(proto: &ModelProto) -> bool {
    let Some(g) = &proto.graph else { return false };
    let dims: std::collections::HashMap<&str, &[i64]> =
        g.initializer.iter().map(|t| (t.name.as_str(), t.dims.as_slice())).collect();
    let filters: Vec<i64> = g
        .node
        .iter()
        .filter(|n| n.op_type == "Conv")
        .filter_map(|n| n.input.get(1).and_then(|w| dims.get(w.as_str())))
        .filter(|d| d.len() == 4 && d[2] == 3 && d[3] == 3 && d[0] > 4)
        .map(|d| d[0])
        .collect();
    !filters.is_empty() && filters.iter().all(|&f| f >= 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bioseg_onnx::{Dim, GraphBuilder};

    /// A chain of 3×3 convolutions with these filter counts (1 input channel), then a 1×1 head.
    fn convs(filters: &[usize]) -> ModelProto {
        let mut g = GraphBuilder::new("convs");
        let dims = [Dim::symbol("n"), Dim::Fixed(1), Dim::symbol("h"), Dim::symbol("w")];
        let mut x = g.input("x", &dims);
        let mut cin = 1;
        for (i, &f) in filters.iter().enumerate() {
            x = g.conv2d(&format!("c{i}"), &x, &vec![0.0; f * cin * 9], [f, cin, 3, 3], None, [1; 4], 1);
            cin = f;
        }
        let y = g.conv2d("head", &x, &vec![0.0; cin], [1, cin, 1, 1], None, [0; 4], 1);
        g.output(&y, "y", &dims);
        bioseg_onnx::model_from_graph(g.finish(), &ModelMetadata::default(), "")
    }

    #[test]
    fn im2col_only_for_networks_whose_convolutions_are_all_wide() {
        assert!(prefers_im2col(&convs(&[64, 64, 128, 2])));
        assert!(!prefers_im2col(&convs(&[16, 16, 32, 2])));
        assert!(!prefers_im2col(&convs(&[64, 16])));
        assert!(!prefers_im2col(&convs(&[])));
    }
}
