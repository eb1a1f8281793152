//! The deployment crate must never pull Burn in.

#[test]
fn bioseg_infer_dependency_tree_has_no_burn() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "-p", "bioseg-infer", "--edges", "normal,build", "--prefix", "none", "--offline"])
        .current_dir(bioseg_suite::root())
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(tree.lines().any(|l| l.starts_with("tract")), "tract expected in:\n{tree}");
    let burn: Vec<&str> = tree.lines().filter(|l| l.starts_with("burn") || l.starts_with("cubecl")).collect();
    assert!(burn.is_empty(), "bioseg-infer depends on {burn:?}");
}
