//! The deployment crate must never pull Burn in, and the shared kernels neither engine.

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
    let tree = dependency_tree("bioseg-infer");
    assert!(tree.lines().any(|l| l.starts_with("tract")), "tract expected in:\n{tree}");
    let burn: Vec<&str> = tree.lines().filter(|l| l.starts_with("burn") || l.starts_with("cubecl")).collect();
    assert!(burn.is_empty(), "bioseg-infer depends on {burn:?}");
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
