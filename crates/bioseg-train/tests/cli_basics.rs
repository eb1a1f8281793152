//! `bioseg-train` command-line basics: help and clean errors.

use std::process::Command;

fn bioseg_train() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bioseg-train"))
}

#[test]
fn help_explains_the_biowulf_options_with_defaults() {
    let out = bioseg_train().args(["unet", "--help"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in
        ["--augmentation-rate", "--batch-size", "--filters", "--loss", "--cw", "--load-weights", "[default: 20]"]
    {
        assert!(text.contains(flag), "missing {flag} in:\n{text}");
    }
}

#[test]
fn cuda_without_the_feature_or_a_gpu_is_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = bioseg_train()
        .args(["-q", "perceptron", "--epochs", "1", "--device", "cuda:0", "-o"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if cfg!(feature = "cuda") && out.status.success() {
        return; // a GPU is present
    }
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.lines().any(|l| l.starts_with("error:")), "{stderr}");
}

#[test]
fn missing_data_folder_names_it() {
    let out = bioseg_train()
        .args(["-q", "unet", "-d", "/nonexistent/data", "-e", "1", "-o"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("/nonexistent/data"), "{stderr}");
}
