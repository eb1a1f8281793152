//! Graph analysis without an inference engine: the constant tensors of a graph, its nodes in
//! topological order, and the size multiple and receptive field of an image-to-image network
//! ([`estimate_graph`]), for `bioseg inspect`, `bioseg predict`'s halo and the Keras import in
//! `bioseg-train` (which thus needs no inference engine).
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

use std::collections::HashMap;

use crate::proto::{AttributeProto, GraphProto, NodeProto, TensorProto};

/// What [`estimate_graph`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    let const_f32 = |name: &str| consts.get(name).and_then(|t| crate::initializer_to_f32(t).ok());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Dim, GraphBuilder, Value};

    /// A bioseg-style U-Net graph of `depth` levels (weights all zero; only the shapes matter).
    fn unet_graph(depth: usize) -> GraphProto {
        let mut g = GraphBuilder::new("t");
        let dims = [Dim::symbol("b"), Dim::Fixed(1), Dim::symbol("h"), Dim::symbol("w")];
        let mut x = g.input("input", &dims);
        let conv = |g: &mut GraphBuilder, name: &str, x: &Value, cin: usize, cout: usize, k: usize| {
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
