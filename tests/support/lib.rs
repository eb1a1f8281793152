//! bioseg-suite: helpers shared by the end-to-end tests and benchmarks: locating (and if needed building) the workspace's
//! binaries, and running them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Rust sources under `dir`, at any depth (in directory order).
pub fn rust_sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a source folder") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            found.extend(rust_sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// Path of the workspace binary `name` (from package `package`). `cargo test --workspace`
/// builds every binary before running tests; a test run alone needs `cargo build --workspace`
/// first (cargo holds its build lock while tests run, so a test cannot build it).
pub fn bin(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    // target/<profile>/deps/test-binary -> target/<profile>/
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p {package}` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// `bioseg` (the inference CLI).
pub fn bioseg() -> Command {
    Command::new(bin("bioseg-infer", "bioseg"))
}

/// `bioseg-train` (the training CLI).
pub fn bioseg_train() -> Command {
    Command::new(bin("bioseg-train", "bioseg-train"))
}

/// Runs `cmd`, asserting success, and returns stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd`, asserting a clean failure: non-zero exit, no panic, one `error:` line naming
/// `needle`. Returns stderr.
pub fn run_fails(cmd: &mut Command, needle: &str) -> String {
    let out: Output = cmd.output().expect("spawn");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{cmd:?} unexpectedly succeeded");
    assert_ne!(out.status.code(), Some(101), "{cmd:?} panicked:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{cmd:?} panicked:\n{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "{cmd:?}: expected one error line, got:\n{stderr}");
    assert!(error_lines[0].contains(needle), "{cmd:?}: error does not mention `{needle}`:\n{stderr}");
    stderr
}

/// Serialises tests that train with Burn inside the test process: Burn's CPU backend seeds and
/// autodiff graphs are process-wide, so two trainings in parallel threads are not reproducible.
pub fn burn_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Every initializer of an ONNX file as `(name, float values)`, sorted by name: two exports
/// compare equal exactly when their weights do.
pub fn onnx_weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let model = bioseg_onnx::read_model(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut w: Vec<(String, Vec<f32>)> = model
        .graph
        .expect("a graph")
        .initializer
        .iter()
        .map(|t| (t.name.clone(), bioseg_onnx::initializer_to_f32(t).unwrap()))
        .collect();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}
