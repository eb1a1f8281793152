//! Keras-exported perceptrons (tf2onnx and Keras 3 export, Sequential and Functional) run with
//! bioseg and give Keras' numbers. Fixtures: `tools/keras/make_fixtures.py`.

use std::path::PathBuf;

use bioseg_infer::OnnxModel;
use bioseg_suite::{bioseg, run_ok};

fn fixtures() -> PathBuf {
    bioseg_suite::root().join("tests/fixtures/keras")
}

fn perceptron_models() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("tests/fixtures/keras exists")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("perceptron_") && n.ends_with(".onnx")
        })
        .collect();
    v.sort();
    v
}

#[test]
fn keras_perceptrons_match_keras_to_1e5() {
    let models = perceptron_models();
    assert!(models.len() >= 4, "expected Sequential and Functional via tf2onnx and Keras 3: {models:?}");
    let input = bioseg_data::read_tensor(fixtures().join("perceptron_input.npy")).unwrap();
    for path in models {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let expected = bioseg_data::read_tensor(fixtures().join(format!("{stem}_expected.npy"))).unwrap();
        let model = OnnxModel::load(&path).unwrap();
        let out = bioseg_infer::tensor_run::run_tensor(&model, &input).unwrap().output;
        assert_eq!(out.len(), expected.len(), "{stem}");
        for (a, b) in out.iter().zip(expected.iter()) {
            assert!((a - b).abs() <= 1e-5, "{stem}: bioseg {a} vs keras {b}");
        }
    }
}

#[test]
fn bioseg_run_on_a_keras_perceptron_prints_accuracy() {
    let model = perceptron_models().into_iter().next().unwrap();
    let stdout = run_ok(
        bioseg()
            .args(["run", "-m"])
            .arg(&model)
            .arg("--input")
            .arg(fixtures().join("perceptron_input.npy"))
            .arg("--labels")
            .arg(fixtures().join("perceptron_labels.npy")),
    );
    assert!(stdout.lines().any(|l| l.starts_with("accuracy:")), "{stdout}");
}
