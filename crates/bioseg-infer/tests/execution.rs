//! `bioseg inspect` tells which nodes run on bioseg's fast paths and which on tract's kernels.

use std::path::PathBuf;

use bioseg_infer::OnnxModel;

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
    // Every convolution bioseg swapped in is listed as bioseg's, and nothing else is.
    let bioseg_nodes: usize = tract.execution.iter().filter(|o| o.bioseg).map(|o| o.nodes).sum();
    assert!(bioseg_nodes > 0, "{:?}", tract.execution);
    assert_eq!(bioseg_nodes, model.gemm_convolution_count(&shape).unwrap());
    assert!(tract.execution.iter().filter(|o| o.bioseg).all(|o| o.op.starts_with("BiosegGemmConv")));
    // The U-Net's pooling runs on tract's kernels.
    assert!(tract.execution.iter().any(|o| !o.bioseg && o.op.contains("MaxPool")), "{:?}", tract.execution);
    // The text says both.
    let text = report.to_text();
    assert!(text.contains("bioseg's fast path: ") && text.contains("tract's kernels: "), "{text}");
    // With bioseg's convolution off, tract runs everything.
    let plain = OnnxModel::load(&path).unwrap().with_gemm_convolutions(false);
    let ops = plain.execution(&shape).unwrap();
    assert!(!ops.is_empty() && ops.iter().all(|o| !o.bioseg), "{ops:?}");
}
