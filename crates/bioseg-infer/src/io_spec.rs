//! What a segmentation model expects and produces, read from its graph and metadata.

use bioseg_onnx::proto::ModelProto;
use bioseg_onnx::{Normalization, OutputActivation, TensorLayout};

use crate::error::InferError;
use crate::model::{InputDim, OnnxModel};

/// The image interface of a model: a 2-D model takes a batch of images (rank 4: NCHW or NHWC),
/// a volumetric one a batch of volumes (rank 5: NCDHW or NDHWC, reported as `Nchw`/`Nhwc`:
/// channels first or last).
#[derive(Clone, Debug, PartialEq)]
pub struct ModelIo {
    /// Input (and output) layout.
    pub layout: TensorLayout,
    /// Whether the model is volumetric (rank-5 input, 3-D convolutions).
    pub volumetric: bool,
    /// Fixed input depth of a volumetric model, if the graph fixes it.
    pub fixed_depth: Option<usize>,
    /// Input channels.
    pub channels: usize,
    /// Fixed input height and width, if the graph fixes them.
    pub fixed_size: Option<(usize, usize)>,
    /// Height and width must be multiples of this (tile origins are aligned to it).
    pub size_multiple: usize,
    /// Whether several tiles can be stacked on the batch axis.
    pub batch_symbolic: bool,
    /// What the output holds.
    pub activation: OutputActivation,
    /// Normalisation recorded in the model, if any.
    pub normalization: Option<Normalization>,
    /// Recommended halo from the metadata, if any.
    pub recommended_halo: Option<usize>,
}

/// The halo a model without `bioseg.recommended_halo` gets from its receptive-field radius: the
/// radius rounded up to the size multiple (so tile origins stay on the pooling grid). `bioseg
/// predict` and `bioseg inspect` both use it.
pub fn halo_from_radius(radius: usize, size_multiple: usize) -> usize {
    radius.div_ceil(size_multiple.max(1)) * size_multiple.max(1)
}

fn fixed(d: &InputDim) -> Option<usize> {
    match d {
        InputDim::Fixed(n) => Some(*n),
        _ => None,
    }
}

impl ModelIo {
    /// Reads the interface of `model`; `layout` overrides the detection.
    pub fn probe(model: &OnnxModel, layout: Option<TensorLayout>) -> Result<Self, InferError> {
        let md = model.metadata();
        let dims = model.input_dims();
        let bad = |reason: String| InferError::Model { path: model.path().to_path_buf(), reason };
        if dims.len() != 4 && dims.len() != 5 {
            return Err(bad(format!(
                "input `{}` has rank {} ([{}]); an image model takes a rank-4 batch of images (or rank 5: a batch of volumes)",
                model.input_name(),
                dims.len(),
                dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
            )));
        }
        let rank = dims.len();
        let volumetric = rank == 5;
        let layout = layout.or(md.layout).unwrap_or_else(|| {
            let small = |d: &InputDim| matches!(fixed(d), Some(1..=4));
            if small(&dims[rank - 1]) && !small(&dims[1]) { TensorLayout::Nhwc } else { TensorLayout::Nchw }
        });
        // Channel axis, then the spatial axes ([depth,] height, width).
        let (c_axis, first_spatial) = match layout {
            TensorLayout::Nchw => (1, 2),
            TensorLayout::Nhwc => (rank - 1, 1),
            TensorLayout::Nc => return Err(bad("metadata says layout `nc`: not an image model".into())),
        };
        let (h_axis, w_axis) = (first_spatial + rank - 4, first_spatial + rank - 3);
        let fixed_depth = if volumetric { fixed(&dims[first_spatial]) } else { None };
        let channels = fixed(&dims[c_axis]).or(md.input_channels).unwrap_or(1);
        if channels == 0 || channels > 4 {
            return Err(bad(format!("input has {channels} channels in layout {layout}; expected 1 to 4")));
        }
        let fixed_size = match (fixed(&dims[h_axis]), fixed(&dims[w_axis])) {
            (Some(h), Some(w)) => Some((h, w)),
            _ => None,
        };
        // Without bioseg metadata, estimate the size multiple and receptive field from the graph
        // (pooling depth, conv/pool/resize chain); fall back to 16 and a 32-pixel halo.
        let estimate = model.proto().graph.as_ref().map(bioseg_onnx::estimate_graph);
        let size_multiple =
            md.size_multiple.or_else(|| estimate.as_ref().and_then(|e| e.size_multiple)).unwrap_or(16).max(1);
        let recommended_halo = md.recommended_halo.or_else(|| {
            estimate.as_ref().and_then(|e| e.receptive_field_radius).map(|r| halo_from_radius(r, size_multiple))
        });
        let batch_symbolic = fixed(&dims[0]).is_none();
        let activation = md.output.unwrap_or_else(|| detect_activation(model.proto()));
        Ok(ModelIo {
            layout,
            volumetric,
            fixed_depth,
            channels,
            fixed_size,
            size_multiple,
            batch_symbolic,
            activation,
            normalization: md.normalization,
            recommended_halo,
        })
    }
}

/// Sigmoid or softmax when the graph output comes from one (through shape-only ops), logits
/// otherwise.
pub fn detect_activation(proto: &ModelProto) -> OutputActivation {
    let Some(g) = &proto.graph else { return OutputActivation::Logits };
    let Some(out) = g.output.first() else { return OutputActivation::Logits };
    let mut name = out.name.clone();
    for _ in 0..8 {
        let Some(node) = g.node.iter().find(|n| n.output.contains(&name)) else { break };
        match node.op_type.as_str() {
            "Sigmoid" => return OutputActivation::Sigmoid,
            "Softmax" => return OutputActivation::Softmax,
            "Identity" | "Transpose" | "Reshape" | "Squeeze" | "Unsqueeze" | "Cast" => {
                name = node.input.first().cloned().unwrap_or_default();
            }
            _ => break,
        }
    }
    OutputActivation::Logits
}
