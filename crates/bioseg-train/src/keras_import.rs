//! Keras classic U-Nets, exported to ONNX, as the initial weights of bioseg's Burn U-Net
//! (`bioseg-train unet --init-from KERAS.onnx`).
//!
//! The ONNX graph is read without an ML framework. Its convolutions (Conv and ConvTranspose
//! nodes with constant weights) are taken in topological order and mapped, one by one, onto the
//! Burn U-Net's layers in forward order:
//!
//! ```text
//! down[0].conv1, down[0].conv2, …, down[d-1].conv2, bottleneck.conv1, bottleneck.conv2,
//! up[0].up_conv (Conv 2×2) or up[0].up_transpose (ConvTranspose), up[0].block.conv1,
//! up[0].block.conv2, …, up[d-1].block.conv2, head, out
//! ```
//!
//! (`up[0]` is the deepest decoder level, as in [`Unet`]). What tf2onnx and Keras 3's
//! `model.export(format="onnx")` write, and how it is read:
//!
//! - Conv kernels are stored OIHW (Burn's layout) with `auto_pad=SAME_UPPER` (or explicit pads
//!   for fixed input sizes): 3×3 "same" is padded 1 on every side, Keras' 2×2 "same" 0 top/left
//!   and 1 bottom/right, exactly as the Burn U-Net pads.
//! - ConvTranspose kernels are stored `[C_in, C_out, kH, kW]` (Burn's layout); stride 2 with a 2×2
//!   kernel, followed by the Slice/Pad pair tf2onnx emits for "same" output sizes (a no-op when
//!   kernel = stride).
//! - Batch normalisation arrives folded as `Mul` by a per-channel constant then `Add` of one
//!   (`x·s + t`, with s = γ/√(σ²+ε) and t = β − μ·s), or as a `BatchNormalization` node. A
//!   `BatchNormalization` node is loaded as is (γ, β, μ, σ², ε). A folded pair is loaded as
//!   γ = s, β = t, μ = 0, σ² = 1 − ε: inference is then exactly Keras', but γ, β and the moving
//!   statistics cannot be told apart any more, so in training mode (batch statistics) the
//!   imported normalisation starts from γ = s, β = t rather than Keras' own γ and β.
//! - Every convolution but the last must be followed (after its normalisation, through
//!   Identity/Slice/Pad/Dropout) by a ReLU, as in `tools/keras/unet.py`, where the 2×2 up-conv
//!   and the Conv2DTranspose also end in ReLU (directly, or after their batch norm), like
//!   bioseg's U-Net.
//!
//! Graph inputs and node names differ between exporters and are never relied on. Any mismatch
//! is a [`TrainError::KerasImport`] naming the first layer that differs, with the expected and
//! the found shapes. [`keras_unet_config`] reads the architecture from the graph, so that a
//! matching Burn U-Net can be built in the first place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bioseg_onnx::proto::{GraphProto, NodeProto, TensorProto};
use burn::module::{Param, RunningState};
use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, PaddingConfig2d};
use burn::prelude::*;

use crate::error::TrainError;
use crate::model::unet::{ConvBlock, Unet, UnetConfig, Upsample};

/// Batch normalisation found after a convolution.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasBatchNorm {
    /// Scale γ.
    pub gamma: Vec<f32>,
    /// Shift β.
    pub beta: Vec<f32>,
    /// Moving mean.
    pub mean: Vec<f32>,
    /// Moving variance.
    pub var: Vec<f32>,
    /// ε; `None` for a folded `Mul`/`Add` pair (the Burn layer keeps its own ε and gets
    /// σ² = 1 − ε, so that √(σ² + ε) = 1).
    pub epsilon: Option<f64>,
}

/// One convolution of the ONNX graph with what follows it.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasConv {
    /// The ONNX node's name (for messages).
    pub node: String,
    /// Whether it is a ConvTranspose (else a Conv).
    pub transpose: bool,
    /// Weight shape as stored: `[out, in, kH, kW]` (Conv) or `[in, out, kH, kW]` (ConvTranspose).
    pub weight_dims: Vec<usize>,
    /// Weight values, row-major in `weight_dims`.
    pub weight: Vec<f32>,
    /// Bias, when the node has one.
    pub bias: Option<Vec<f32>>,
    /// Padding `[top, left, bottom, right]` (resolved from `auto_pad` or `pads`).
    pub pads: [usize; 4],
    /// Strides `[h, w]`.
    pub strides: [usize; 2],
    /// Dilations `[h, w]`.
    pub dilations: [usize; 2],
    /// Groups.
    pub group: usize,
    /// `output_padding` (ConvTranspose).
    pub output_padding: [usize; 2],
    /// Batch normalisation applied to its output.
    pub batch_norm: Option<KerasBatchNorm>,
    /// The op that consumes the (normalised) output: `Relu`, `Sigmoid`, `Softmax`, … (`None`:
    /// a graph output or several consumers).
    pub next_op: Option<String>,
}

/// The convolutions of a Keras U-Net graph, in topological order.
#[derive(Clone, Debug, PartialEq)]
pub struct KerasUnet {
    /// The file.
    pub path: PathBuf,
    /// Name of the graph's image input.
    pub input_name: String,
    /// Conv / ConvTranspose nodes with constant weights, in topological order.
    pub convs: Vec<KerasConv>,
    /// MaxPool nodes in the graph.
    pub max_pools: usize,
}

fn import_err(path: &Path, reason: impl Into<String>) -> TrainError {
    TrainError::KerasImport { path: path.to_path_buf(), reason: reason.into() }
}

fn ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

fn int(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn string(node: &NodeProto, name: &str) -> Option<String> {
    node.attribute.iter().find(|a| a.name == name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}

fn float(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn pair(v: &[i64], default: usize) -> [usize; 2] {
    match v {
        [a, b, ..] => [(*a).max(0) as usize, (*b).max(0) as usize],
        [a] => [(*a).max(0) as usize; 2],
        [] => [default; 2],
    }
}

/// Reads the convolutions of the Keras U-Net in the ONNX file at `path`.
pub fn read_keras_unet(path: &Path) -> Result<KerasUnet, TrainError> {
    let proto = bioseg_onnx::read_model(path)?;
    let graph = proto.graph.as_ref().ok_or_else(|| import_err(path, "the file holds no graph"))?;
    parse_graph(path, graph)
}

fn parse_graph(path: &Path, graph: &GraphProto) -> Result<KerasUnet, TrainError> {
    let consts = bioseg_onnx::constants(graph);
    let values = |name: &str, what: &str, node: &str| -> Result<Vec<f32>, TrainError> {
        let t: &TensorProto = consts
            .get(name)
            .ok_or_else(|| import_err(path, format!("node `{node}`: its {what} `{name}` is not a constant")))?;
        bioseg_onnx::initializer_to_f32(t).map_err(|e| import_err(path, format!("node `{node}`: {what}: {e}")))
    };
    let input_name = graph
        .input
        .iter()
        .find(|i| !consts.contains_key(i.name.as_str()))
        .map(|i| i.name.clone())
        .ok_or_else(|| import_err(path, "the graph has no input"))?;
    // Data consumers of every tensor (shape-only uses are not data).
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        if matches!(n.op_type.as_str(), "Shape" | "Size") {
            continue;
        }
        for x in &n.input {
            if !x.is_empty() {
                let v = consumers.entry(x.as_str()).or_default();
                if !v.contains(&i) {
                    v.push(i);
                }
            }
        }
    }
    let single = |t: &str| -> Option<&NodeProto> {
        match consumers.get(t).map(Vec::as_slice) {
            Some([i]) => graph.node.get(*i),
            _ => None,
        }
    };
    let other_input = |n: &NodeProto, data: &str| -> Option<String> {
        n.input.iter().find(|x| x.as_str() != data && !x.is_empty()).cloned()
    };

    let mut convs = Vec::new();
    let max_pools = graph.node.iter().filter(|n| n.op_type == "MaxPool").count();
    for idx in bioseg_onnx::topological_order(graph) {
        let node = &graph.node[idx];
        let transpose = match node.op_type.as_str() {
            "Conv" => false,
            "ConvTranspose" => true,
            _ => continue,
        };
        let name =
            if node.name.is_empty() { node.output.first().cloned().unwrap_or_default() } else { node.name.clone() };
        let w_name = node.input.get(1).ok_or_else(|| import_err(path, format!("node `{name}` has no weight input")))?;
        let w_tensor = consts
            .get(w_name.as_str())
            .ok_or_else(|| import_err(path, format!("node `{name}`: its weight `{w_name}` is not a constant")))?;
        let weight_dims: Vec<usize> = w_tensor.dims.iter().map(|&d| d.max(0) as usize).collect();
        if weight_dims.len() != 4 {
            return Err(import_err(
                path,
                format!("node `{name}`: weight shape {weight_dims:?} is not 2-D convolution's"),
            ));
        }
        let weight = values(w_name, "weight", &name)?;
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            Some(b) => Some(values(b, "bias", &name)?),
            None => None,
        };
        let (kh, kw) = (weight_dims[2], weight_dims[3]);
        let strides = pair(&ints(node, "strides").unwrap_or_default(), 1);
        let dilations = pair(&ints(node, "dilations").unwrap_or_default(), 1);
        let auto_pad = string(node, "auto_pad").unwrap_or_default();
        let pads = match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" if !transpose => {
                // Stride-1 "same": total k−1 per axis, the odd pixel at the end (UPPER) or start.
                let split = |k: usize| {
                    let total = k.saturating_sub(1);
                    let small = total / 2;
                    if auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) }
                };
                let ((t, b), (l, r)) = (split(kh), split(kw));
                [t, l, b, r]
            }
            // Transposed: "same" pads nothing when the kernel equals the stride.
            "SAME_UPPER" | "SAME_LOWER" if [kh, kw] == strides => [0; 4],
            "VALID" | "" | "NOTSET" => match ints(node, "pads").unwrap_or_default().as_slice() {
                [] => [0; 4],
                [t, l, b, r] => [*t, *l, *b, *r].map(|v| v.max(0) as usize),
                other => {
                    return Err(import_err(path, format!("node `{name}`: unexpected pads {other:?}")));
                }
            },
            other => {
                return Err(import_err(path, format!("node `{name}`: unsupported auto_pad `{other}`")));
            }
        };
        let group = int(node, "group").unwrap_or(1).max(1) as usize;
        let output_padding = pair(&ints(node, "output_padding").unwrap_or_default(), 0);
        let channels = if transpose { weight_dims[1] * group } else { weight_dims[0] };

        // Follow the output: pass-through ops, then an optional batch norm, then the activation.
        let mut cur = node.output.first().cloned().unwrap_or_default();
        let mut batch_norm = None;
        let mut next_op = None;
        let mut bias = bias;
        for _ in 0..12 {
            let Some(n) = single(&cur) else { break };
            let out = n.output.first().cloned().unwrap_or_default();
            match n.op_type.as_str() {
                "Identity" | "Slice" | "Pad" | "Dropout" => cur = out,
                // A bias added after a bias-less convolution.
                "Add" if batch_norm.is_none() && bias.is_none() => {
                    let c = other_input(n, &cur)
                        .ok_or_else(|| import_err(path, format!("node `{}`: one input", n.name)))?;
                    bias = Some(per_channel(path, &values(&c, "bias", &n.name)?, channels, &n.name)?);
                    cur = out;
                }
                "Mul" if batch_norm.is_none() => {
                    let Some(c) = other_input(n, &cur).filter(|c| consts.contains_key(c.as_str())) else {
                        next_op = Some(n.op_type.clone());
                        break;
                    };
                    let scale = per_channel(path, &values(&c, "batch-norm scale", &n.name)?, channels, &n.name)?;
                    let add = single(&out).filter(|a| a.op_type == "Add").ok_or_else(|| {
                        import_err(
                            path,
                            format!("node `{}`: a per-channel Mul not followed by an Add (batch norm)", n.name),
                        )
                    })?;
                    let c = other_input(add, &out)
                        .ok_or_else(|| import_err(path, format!("node `{}`: one input", add.name)))?;
                    let shift = per_channel(path, &values(&c, "batch-norm shift", &add.name)?, channels, &add.name)?;
                    batch_norm = Some(KerasBatchNorm {
                        gamma: scale,
                        beta: shift,
                        mean: vec![0.0; channels],
                        var: vec![1.0; channels],
                        epsilon: None,
                    });
                    cur = add.output.first().cloned().unwrap_or_default();
                }
                "BatchNormalization" if batch_norm.is_none() => {
                    let mut p = Vec::new();
                    for (i, what) in ["scale", "B", "mean", "var"].into_iter().enumerate() {
                        let name_i = n.input.get(i + 1).ok_or_else(|| {
                            import_err(path, format!("node `{}`: BatchNormalization without `{what}`", n.name))
                        })?;
                        p.push(per_channel(path, &values(name_i, what, &n.name)?, channels, &n.name)?);
                    }
                    let var = p.pop().unwrap_or_default();
                    let mean = p.pop().unwrap_or_default();
                    let beta = p.pop().unwrap_or_default();
                    let gamma = p.pop().unwrap_or_default();
                    let epsilon = Some(float(n, "epsilon").unwrap_or(1e-5) as f64);
                    batch_norm = Some(KerasBatchNorm { gamma, beta, mean, var, epsilon });
                    cur = out;
                }
                other => {
                    next_op = Some(other.to_string());
                    break;
                }
            }
        }
        convs.push(KerasConv {
            node: name,
            transpose,
            weight_dims,
            weight,
            bias,
            pads,
            strides,
            dilations,
            group,
            output_padding,
            batch_norm,
            next_op,
        });
    }
    Ok(KerasUnet { path: path.to_path_buf(), input_name, convs, max_pools })
}

/// `values` as one value per channel (a scalar is broadcast).
fn per_channel(path: &Path, values: &[f32], channels: usize, node: &str) -> Result<Vec<f32>, TrainError> {
    match values.len() {
        n if n == channels => Ok(values.to_vec()),
        1 => Ok(vec![values[0]; channels]),
        n => Err(import_err(path, format!("node `{node}`: {n} values for {channels} channels"))),
    }
}

impl KerasUnet {
    /// The Burn U-Net configuration of this graph: depth from the number of convolutions
    /// (5·depth + 4), filters and input channels from the first, classes from the last,
    /// transposed or nearest upsampling, and batch normalisation (in the conv blocks, and after
    /// the upsampling layers and the head). The drop rate is not in the graph: 0.5, Keras'.
    pub fn config(&self) -> Result<UnetConfig, TrainError> {
        let err = |r: String| import_err(&self.path, r);
        let n = self.convs.len();
        if n < 9 || !(n - 4).is_multiple_of(5) {
            return Err(err(format!(
                "the graph has {n} convolutions; a classic U-Net of depth d has 5·d + 4 \
                 (2 per level down, 2 in the bottleneck, 3 per level up, head and output)"
            )));
        }
        let depth = (n - 4) / 5;
        if self.max_pools != 0 && self.max_pools != depth {
            return Err(err(format!(
                "{n} convolutions make a U-Net of depth {depth}, but the graph has {} MaxPool nodes",
                self.max_pools
            )));
        }
        let first = &self.convs[0];
        if first.transpose {
            return Err(err(format!("the first convolution (node `{}`) is a ConvTranspose", first.node)));
        }
        let up = &self.convs[2 * depth + 2];
        let last = &self.convs[n - 1];
        let cfg = UnetConfig::new()
            .with_in_channels(first.weight_dims[1] * first.group)
            .with_filters(first.weight_dims[0])
            .with_depth(depth)
            .with_classes(last.weight_dims[0])
            .with_batch_norm(first.batch_norm.is_some())
            .with_batch_norm_all(first.batch_norm.is_some() && up.batch_norm.is_some())
            .with_upsample(if up.transpose { Upsample::Transpose } else { Upsample::Nearest });
        cfg.validate().map_err(|e| err(format!("the graph's U-Net is not one bioseg can build: {e}")))?;
        Ok(cfg)
    }
}

/// Reads the architecture of the Keras U-Net at `path` as a [`UnetConfig`] (see
/// [`KerasUnet::config`]).
pub fn keras_unet_config(path: &Path) -> Result<UnetConfig, TrainError> {
    read_keras_unet(path)?.config()
}

/// What a Burn layer expects from its ONNX counterpart.
struct Slot {
    name: String,
    transpose: bool,
    weight_dims: [usize; 4],
    pads: [usize; 4],
    strides: [usize; 2],
    batch_norm: bool,
    relu: bool,
}

fn conv_slot<B: Backend>(name: String, c: &Conv2d<B>, batch_norm: bool, relu: bool) -> Slot {
    let pads = match c.padding {
        PaddingConfig2d::Explicit(t, l, b, r) => [t, l, b, r],
        PaddingConfig2d::Valid => [0; 4],
        PaddingConfig2d::Same => {
            let [kh, kw] = c.kernel_size;
            [(kh - 1) / 2, (kw - 1) / 2, kh - 1 - (kh - 1) / 2, kw - 1 - (kw - 1) / 2]
        }
    };
    Slot { name, transpose: false, weight_dims: c.weight.val().dims(), pads, strides: c.stride, batch_norm, relu }
}

fn transpose_slot<B: Backend>(name: String, t: &ConvTranspose2d<B>, batch_norm: bool) -> Slot {
    let [p0, p1] = t.padding;
    Slot {
        name,
        transpose: true,
        weight_dims: t.weight.val().dims(),
        pads: [p0, p1, p0, p1],
        strides: t.stride,
        batch_norm,
        relu: true,
    }
}

fn block_slots<B: Backend>(prefix: &str, b: &ConvBlock<B>, out: &mut Vec<Slot>) {
    out.push(conv_slot(format!("{prefix}.conv1"), &b.conv1, b.bn1.is_some(), true));
    out.push(conv_slot(format!("{prefix}.conv2"), &b.conv2, b.bn2.is_some(), true));
}

/// The Burn U-Net's layers in forward order.
fn slots<B: Backend>(model: &Unet<B>) -> Vec<Slot> {
    let mut out = Vec::new();
    for (i, b) in model.down.iter().enumerate() {
        block_slots(&format!("down{i}"), b, &mut out);
    }
    block_slots("bottleneck", &model.bottleneck, &mut out);
    for (i, u) in model.up.iter().enumerate() {
        match (&u.up_conv, &u.up_transpose) {
            (Some(c), _) => out.push(conv_slot(format!("up{i}.up_conv"), c, u.up_bn.is_some(), true)),
            (None, Some(t)) => out.push(transpose_slot(format!("up{i}.up_transpose"), t, u.up_bn.is_some())),
            (None, None) => {}
        }
        block_slots(&format!("up{i}.block"), &u.block, &mut out);
    }
    out.push(conv_slot("head".into(), &model.head, model.head_bn.is_some(), true));
    out.push(conv_slot("out".into(), &model.out, false, false));
    out
}

fn describe(dims: &[usize], transpose: bool) -> String {
    format!("{} weight {dims:?}", if transpose { "ConvTranspose" } else { "Conv" })
}

/// Checks every found convolution against its Burn slot; the first difference is the error.
fn check(keras: &KerasUnet, slots: &[Slot], classes: usize) -> Result<(), TrainError> {
    // When the counts differ, say so: a shallower U-Net's layers can match a deeper one's for a
    // while (same shapes), so the first difference alone may not explain itself.
    let count_note = if keras.convs.len() == slots.len() {
        String::new()
    } else {
        let depth = |n: usize| {
            if n >= 4 && (n - 4).is_multiple_of(5) { format!(" (depth {})", (n - 4) / 5) } else { String::new() }
        };
        format!(
            "; the graph has {} convolutions{} and {} MaxPool, the Burn U-Net {} convolutions{}",
            keras.convs.len(),
            depth(keras.convs.len()),
            keras.max_pools,
            slots.len(),
            depth(slots.len())
        )
    };
    let err = |r: String| import_err(&keras.path, format!("{r}{count_note}"));
    for (i, slot) in slots.iter().enumerate() {
        let Some(k) = keras.convs.get(i) else {
            return Err(err(format!(
                "layer {}: expected a {}, but the graph has only {} convolutions (the Burn U-Net has {})",
                slot.name,
                describe(&slot.weight_dims, slot.transpose),
                keras.convs.len(),
                slots.len()
            )));
        };
        let at = format!("layer {} (ONNX node `{}`)", slot.name, k.node);
        if k.transpose != slot.transpose || k.weight_dims != slot.weight_dims {
            let mut reason = format!(
                "{at}: expected {}, found {}",
                describe(&slot.weight_dims, slot.transpose),
                describe(&k.weight_dims, k.transpose)
            );
            if k.transpose != slot.transpose {
                reason += if k.transpose {
                    " (the Keras model upsamples with Conv2DTranspose: --upsample transpose)"
                } else {
                    " (the Keras model upsamples with UpSampling2D + Conv 2×2: --upsample nearest)"
                };
            } else if slot.name == "head" || slot.name == "out" {
                reason += &format!(
                    " (the Burn U-Net predicts {classes} channel(s) for the data's classes; the Keras model {})",
                    keras.convs.last().map(|c| c.weight_dims[0]).unwrap_or(0)
                );
            }
            return Err(err(reason));
        }
        if k.group != 1 || k.dilations != [1, 1] {
            return Err(err(format!("{at}: groups {} and dilations {:?} are not supported", k.group, k.dilations)));
        }
        let out_channels = if slot.transpose { slot.weight_dims[1] } else { slot.weight_dims[0] };
        if let Some(b) = k.bias.as_ref().filter(|b| b.len() != out_channels) {
            return Err(err(format!("{at}: expected {out_channels} bias values, found {}", b.len())));
        }
        if k.strides != slot.strides {
            return Err(err(format!("{at}: expected strides {:?}, found {:?}", slot.strides, k.strides)));
        }
        if k.pads != slot.pads || k.output_padding != [0, 0] {
            return Err(err(format!(
                "{at}: expected padding [top, left, bottom, right] {:?}, found {:?}{}",
                slot.pads,
                k.pads,
                if k.output_padding != [0, 0] {
                    format!(" with output padding {:?}", k.output_padding)
                } else {
                    String::new()
                }
            )));
        }
        if k.batch_norm.is_some() != slot.batch_norm {
            return Err(err(if slot.batch_norm {
                format!("{at}: the Burn U-Net batch-normalises this layer's output, the graph does not")
            } else {
                format!(
                    "{at}: the graph batch-normalises this layer's output, the Burn U-Net does not ({})",
                    if slot.name.contains("up_") || slot.name == "head" {
                        "batch norm after the upsampling and head convolutions too"
                    } else {
                        "--batch-norm"
                    }
                )
            }));
        }
        let relu = k.next_op.as_deref() == Some("Relu");
        if relu != slot.relu {
            return Err(err(if slot.relu {
                format!(
                    "{at}: the Burn U-Net applies ReLU after this layer, the graph applies {}",
                    k.next_op.as_deref().unwrap_or("nothing it can follow")
                )
            } else {
                format!("{at}: the graph applies ReLU after the output convolution")
            }));
        }
    }
    if let Some(extra) = keras.convs.get(slots.len()) {
        return Err(err(format!(
            "ONNX node `{}` ({}) has no counterpart: the Burn U-Net has {} convolutions, the graph {}",
            extra.node,
            describe(&extra.weight_dims, extra.transpose),
            slots.len(),
            keras.convs.len()
        )));
    }
    Ok(())
}

fn param<B: Backend, const D: usize>(
    old: &Param<Tensor<B, D>>,
    values: &[f32],
    dims: [usize; D],
    device: &B::Device,
) -> Param<Tensor<B, D>> {
    let t = Tensor::<B, D>::from_data(TensorData::new(values.to_vec(), dims), device);
    Param::initialized(old.id, t.require_grad())
}

fn bias<B: Backend>(
    old: &Option<Param<Tensor<B, 1>>>,
    values: Option<&[f32]>,
    n: usize,
    device: &B::Device,
) -> Option<Param<Tensor<B, 1>>> {
    let zeros = vec![0.0; n];
    let values = values.unwrap_or(&zeros);
    let t = Tensor::<B, 1>::from_data(TensorData::new(values.to_vec(), [n]), device).require_grad();
    Some(match old {
        Some(p) => Param::initialized(p.id, t),
        None => Param::from_tensor(t),
    })
}

fn load_conv<B: Backend>(c: &mut Conv2d<B>, k: &KerasConv, device: &B::Device) {
    let dims = c.weight.val().dims();
    c.weight = param(&c.weight, &k.weight, dims, device);
    c.bias = bias(&c.bias, k.bias.as_deref(), dims[0], device);
}

fn load_transpose<B: Backend>(t: &mut ConvTranspose2d<B>, k: &KerasConv, device: &B::Device) {
    let dims = t.weight.val().dims();
    t.weight = param(&t.weight, &k.weight, dims, device);
    t.bias = bias(&t.bias, k.bias.as_deref(), dims[1] * t.groups, device);
}

fn load_bn<B: Backend>(bn: &mut Option<BatchNorm<B>>, k: &KerasConv, device: &B::Device) {
    let (Some(bn), Some(src)) = (bn.as_mut(), &k.batch_norm) else {
        return;
    };
    let n = src.gamma.len();
    let vec1 = |v: &[f32]| Tensor::<B, 1>::from_data(TensorData::new(v.to_vec(), [n]), device);
    bn.gamma = param(&bn.gamma, &src.gamma, [n], device);
    bn.beta = param(&bn.beta, &src.beta, [n], device);
    let var = match src.epsilon {
        Some(eps) => {
            bn.epsilon = eps;
            src.var.clone()
        }
        // Folded x·s + t: μ = 0 and σ² + ε = 1 make the layer exactly x·γ + β.
        None => vec![(1.0 - bn.epsilon) as f32; n],
    };
    bn.running_mean = RunningState::new(vec1(&src.mean));
    bn.running_var = RunningState::new(vec1(&var));
}

fn load_block<'a, B: Backend>(b: &mut ConvBlock<B>, it: &mut impl Iterator<Item = &'a KerasConv>, device: &B::Device) {
    if let Some(k) = it.next() {
        load_conv(&mut b.conv1, k, device);
        load_bn(&mut b.bn1, k, device);
    }
    if let Some(k) = it.next() {
        load_conv(&mut b.conv2, k, device);
        load_bn(&mut b.bn2, k, device);
    }
}

/// Loads the weights of the Keras classic U-Net at `path` (ONNX from tf2onnx or Keras 3) into
/// `model`, a Burn U-Net of the same architecture (see [`keras_unet_config`]). Every layer is
/// checked before anything is loaded: on a mismatch the error names the first layer that
/// differs, with the expected and the found shapes.
pub fn load_keras_unet<B: Backend>(model: Unet<B>, path: &Path, device: &B::Device) -> Result<Unet<B>, TrainError> {
    let keras = read_keras_unet(path)?;
    load_keras_graph(model, &keras, device)
}

/// [`load_keras_unet`] from an already read graph.
pub fn load_keras_graph<B: Backend>(
    mut model: Unet<B>,
    keras: &KerasUnet,
    device: &B::Device,
) -> Result<Unet<B>, TrainError> {
    check(keras, &slots(&model), model.classes)?;
    let mut it = keras.convs.iter();
    for b in model.down.iter_mut() {
        load_block(b, &mut it, device);
    }
    load_block(&mut model.bottleneck, &mut it, device);
    for u in model.up.iter_mut() {
        if let Some(k) = it.next() {
            if let Some(c) = u.up_conv.as_mut() {
                load_conv(c, k, device);
            }
            if let Some(t) = u.up_transpose.as_mut() {
                load_transpose(t, k, device);
            }
            load_bn(&mut u.up_bn, k, device);
        }
        load_block(&mut u.block, &mut it, device);
    }
    if let Some(k) = it.next() {
        load_conv(&mut model.head, k, device);
        load_bn(&mut model.head_bn, k, device);
    }
    if let Some(k) = it.next() {
        load_conv(&mut model.out, k, device);
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;

    fn roundtrip(cfg: UnetConfig) {
        let device = Default::default();
        let a: Unet<CpuBackend> = cfg.init(&device);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.onnx");
        crate::export::write_onnx(&a.to_onnx(&crate::export::base_metadata()), &path).unwrap();
        let keras = read_keras_unet(&path).unwrap();
        let inferred = keras.config().unwrap();
        assert_eq!(
            (inferred.filters, inferred.depth, inferred.in_channels, inferred.classes),
            (cfg.filters, cfg.depth, cfg.in_channels, cfg.classes)
        );
        assert_eq!(
            (inferred.batch_norm, inferred.batch_norm_all, inferred.upsample),
            (cfg.batch_norm, cfg.batch_norm && cfg.batch_norm_all, cfg.upsample)
        );
        let b: Unet<CpuBackend> = load_keras_graph(cfg.init(&device), &keras, &device).unwrap();
        let x =
            Tensor::<CpuBackend, 4>::random([1, cfg.in_channels, 32, 32], burn::tensor::Distribution::Default, &device);
        let (ya, yb) = (a.forward(x.clone()), b.forward(x));
        let d: f32 = (ya - yb).abs().max().into_scalar();
        assert!(d < 1e-5, "{d}");
    }

    /// bioseg's own exports (Conv, ConvTranspose, BatchNormalization nodes) import exactly.
    #[test]
    fn bioseg_exports_round_trip_through_the_importer() {
        roundtrip(UnetConfig::new().with_filters(4).with_depth(2));
        roundtrip(
            UnetConfig::new()
                .with_filters(4)
                .with_depth(3)
                .with_in_channels(3)
                .with_classes(3)
                .with_batch_norm(true)
                .with_batch_norm_all(true)
                .with_upsample(Upsample::Transpose),
        );
        roundtrip(UnetConfig::new().with_filters(2).with_depth(1).with_batch_norm(true));
    }
}
