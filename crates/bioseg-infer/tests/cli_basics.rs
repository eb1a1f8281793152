//! `bioseg` command-line basics: help, and clean one-line errors on bad input.

use std::process::Command;

fn bioseg() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bioseg"))
}

#[test]
fn help_lists_the_commands_and_defaults() {
    let out = bioseg().arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "predict"] {
        assert!(text.contains(cmd), "{text}");
    }
    let out = bioseg().args(["predict", "--help"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[default: auto]") && text.contains("[default: crop]"), "{text}");
}

fn assert_clean_failure(args: &[&str], needle: &str) {
    let out = bioseg().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(errors[0].contains(needle), "{args:?}: {stderr}");
}

#[test]
fn missing_and_garbage_models_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.onnx");
    let input = dir.path().join("x.csv");
    std::fs::write(&input, "1,2,3\n").unwrap();
    assert_clean_failure(&["run", "-m", missing.to_str().unwrap(), "--input", input.to_str().unwrap()], "missing.onnx");
    let garbage = dir.path().join("garbage.onnx");
    std::fs::write(&garbage, b"this is not a protobuf at all \xff\xff\xff").unwrap();
    assert_clean_failure(&["run", "-m", garbage.to_str().unwrap(), "--input", input.to_str().unwrap()], "garbage.onnx");
}
