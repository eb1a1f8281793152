//! Layering: the deployment crate never pulls Burn in, the shared kernels neither engine, and
//! bioseg-train uses the inference engine in one module only.

/// The crates `package` depends on (normal and build edges), one per line.
fn dependency_tree(package: &str) -> String {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", package, "--edges", "normal,build", "--prefix", "none", "--offline"])
        .current_dir(bioseg_suite::root())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bioseg_infer_dependency_tree_has_no_burn() {
    // The `bioseg` binary and the Python package (inference only, like the binary).
    for package in ["bioseg-infer", "bioseg-python"] {
        let tree = dependency_tree(package);
        assert!(tree.lines().any(|l| l.starts_with("tract")), "tract expected in:\n{tree}");
        let burn: Vec<&str> = tree.lines().filter(|l| l.starts_with("burn") || l.starts_with("cubecl")).collect();
        assert!(burn.is_empty(), "{package} depends on {burn:?}");
    }
}

/// The kernel crate shared by training and inference depends on neither engine.
#[test]
fn bioseg_kernels_depend_on_neither_burn_nor_tract() {
    let tree = dependency_tree("bioseg-kernels");
    assert!(tree.lines().any(|l| l.starts_with("gemm")), "gemm expected in:\n{tree}");
    let engines: Vec<&str> =
        tree.lines().filter(|l| ["burn", "cubecl", "tract"].iter().any(|e| l.starts_with(e))).collect();
    assert!(engines.is_empty(), "bioseg-kernels depends on {engines:?}");
}

/// bioseg-train reaches the inference engine through one module, `engine.rs` (the demo's
/// prediction, gpu-check's ONNX comparison): training, the Keras import and the export use
/// none of it (graph analysis is in bioseg-onnx).
#[test]
fn bioseg_train_uses_the_inference_engine_only_in_engine_rs() {
    let src = bioseg_suite::root().join("crates/bioseg-train/src");
    let files = bioseg_suite::rust_sources(&src);
    assert!(files.len() > 10, "bioseg-train's sources under {}", src.display());
    let users: Vec<String> = files
        .iter()
        .filter(|p| std::fs::read_to_string(p).expect("a source file").contains("bioseg_infer"))
        .map(|p| p.strip_prefix(&src).expect("under src").display().to_string())
        .collect();
    assert_eq!(users, ["engine.rs"], "modules of bioseg-train that name bioseg_infer");
}
