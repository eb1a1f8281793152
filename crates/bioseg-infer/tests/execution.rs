//! `bioseg inspect` tells which nodes run on bioseg's fast paths and which on tract's kernels.

use std::path::PathBuf;

use bioseg_infer::OnnxModel;
use bioseg_onnx::{Dim, GraphBuilder, ModelMetadata};

fn model_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

#[test]
fn inspect_lists_bioseg_s_fast_paths_and_tract_s_kernels() {
    let path = model_path("models/membrane_unet_f8.onnx");
    let report = bioseg_infer::inspect::inspect(&path).unwrap();
    let tract = &report.tract;
    assert!(tract.prepared, "{:?}", tract.error);
    let shape = tract.trial_input_shape.clone().unwrap();
    let model = OnnxModel::load(&path).unwrap();
    // Every convolution bioseg swapped in is listed as bioseg's, and so are its four pools and
    // the 1×1 head.
    let nodes = |p: &dyn Fn(&str) -> bool| -> usize {
        tract.execution.iter().filter(|o| o.bioseg && p(&o.op)).map(|o| o.nodes).sum()
    };
    assert_eq!(nodes(&|op| op.starts_with("BiosegGemmConv")), model.gemm_convolution_count(&shape).unwrap());
    assert_eq!(nodes(&|op| op == "BiosegMaxPool2x2"), 4, "{:?}", tract.execution);
    assert_eq!(nodes(&|op| op == "BiosegPointwise"), 1, "{:?}", tract.execution);
    assert_eq!(nodes(&|_| true), model.gemm_convolution_count(&shape).unwrap() + 5);
    // tract runs the rest: the sigmoid; no pooling and no matrix product.
    assert!(tract.execution.iter().any(|o| !o.bioseg && o.op.contains("Sigmoid")), "{:?}", tract.execution);
    for kind in ["MaxPool", "MatMul"] {
        assert!(!tract.execution.iter().any(|o| !o.bioseg && o.op.contains(kind)), "{:?}", tract.execution);
    }
    // The text says both.
    let text = report.to_text();
    assert!(text.contains("bioseg's fast path: ") && text.contains("tract's kernels: "), "{text}");
    // With bioseg's convolution off, tract runs everything.
    let plain = OnnxModel::load(&path).unwrap().with_gemm_convolutions(false);
    let ops = plain.execution(&shape).unwrap();
    assert!(!ops.is_empty() && ops.iter().all(|o| !o.bioseg), "{ops:?}");
}

/// bioseg's 2×2 / 2 pooling gives tract's values bit for bit, odd sizes included (floor), with
/// ties and negative values; a 3×3 pooling stays on tract.
#[test]
fn bioseg_s_pooling_gives_tract_s_values() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pools.onnx");
    let mut g = GraphBuilder::new("pools");
    let dims = [Dim::Fixed(1), Dim::Fixed(3), Dim::symbol("h"), Dim::symbol("w")];
    let x = g.input("x", &dims);
    let p2 = g.max_pool("p2", &x, 2);
    let p3 = g.max_pool("p3", &x, 3);
    g.output(&p2, "p2", &[Dim::Fixed(1), Dim::Fixed(3), Dim::symbol("h2"), Dim::symbol("w2")]);
    g.output(&p3, "p3", &[Dim::Fixed(1), Dim::Fixed(3), Dim::symbol("h3"), Dim::symbol("w3")]);
    let proto = bioseg_onnx::model_from_graph(g.finish(), &ModelMetadata::default(), "");
    bioseg_onnx::write_model(&proto, &path).unwrap();
    let fast = OnnxModel::load(&path).unwrap();
    let plain = OnnxModel::load(&path).unwrap().with_gemm_convolutions(false);
    for (h, w) in [(8, 8), (9, 7), (33, 64), (3, 5)] {
        let shape = [1, 3, h, w];
        let data: Vec<f32> = (0..3 * h * w).map(|i| ((i * 7919 % 13) as f32 - 6.0) / 2.0).collect();
        assert_eq!(fast.run(&shape, &data).unwrap(), plain.run(&shape, &data).unwrap(), "{h}x{w}");
    }
    let ops = fast.execution(&[1, 3, 9, 9]).unwrap();
    assert!(ops.iter().any(|o| o.bioseg && o.op == "BiosegMaxPool2x2" && o.nodes == 1), "{ops:?}");
    assert!(ops.iter().any(|o| !o.bioseg && o.op.contains("MaxPool")), "{ops:?}");
}
