//! The perceptron end to end: Burn training → checkpoints → ONNX → tract (`bioseg run`).

use std::time::{Duration, Instant};

use bioseg_infer::OnnxModel;
use bioseg_suite::{bioseg, bioseg_train, onnx_weights, run_ok};
use bioseg_train::device::{CpuAutodiff, CpuBackend};
use bioseg_train::train::perceptron::{PerceptronTraining, accuracy, perceptron_samples, train_perceptron};
use burn::prelude::*;

#[test]
fn default_training_reaches_95_percent_and_onnx_matches_burn() {
    let _serial = bioseg_suite::burn_lock();
    let device = Default::default();
    let cfg = PerceptronTraining::default();
    let (model, history) = train_perceptron::<CpuAutodiff>(&cfg, &device).unwrap();
    assert_eq!(history.len(), 100);
    assert!(history.last().unwrap().loss < history[0].loss, "loss did not fall: {history:?}");

    let (x, y) = perceptron_samples(1000, 10, 424242);
    let acc = accuracy(&model, &x, &y, &device);
    assert!(acc >= 0.95, "accuracy on 1000 fresh samples is {acc}");

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.onnx");
    let md = bioseg_train::export::base_metadata();
    bioseg_train::export::write_onnx(&model.to_onnx(&md), &path).unwrap();
    let onnx = OnnxModel::load(&path).unwrap();
    assert_eq!(onnx.metadata().architecture.as_deref(), Some("perceptron"));
    assert!(onnx.metadata().writer.as_deref().unwrap().starts_with("bioseg-train"));
    for n in [1usize, 10, 37] {
        let (x, _) = perceptron_samples(n, 10, 7 + n as u64);
        let burn_out: Vec<f32> = model
            .forward(Tensor::<CpuBackend, 2>::from_data(TensorData::new(x.clone(), [n, 10]), &device))
            .into_data()
            .to_vec()
            .unwrap();
        let outs = onnx.run(&[n, 10], &x).unwrap();
        assert_eq!(outs[0].0, vec![n, 1]);
        for (a, b) in burn_out.iter().zip(&outs[0].1) {
            assert!((a - b).abs() <= 1e-5, "burn {a} vs tract {b}");
        }
    }
}

#[test]
fn cli_trains_exports_and_bioseg_run_reports_accuracy() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let stdout = run_ok(bioseg_train().args(["-q", "perceptron", "--epochs", "30", "-o"]).arg(&out));
    assert!(stdout.contains("accuracy on 1000 fresh samples"), "{stdout}");
    let onnx = out.join("perceptron.onnx");
    assert!(onnx.is_file() && out.join("test_input.npy").is_file());
    let pred = out.join("pred.npy");
    let stdout = run_ok(
        bioseg()
            .args(["run", "-m"])
            .arg(&onnx)
            .arg("--input")
            .arg(out.join("test_input.npy"))
            .arg("--labels")
            .arg(out.join("test_labels.npy"))
            .arg("--output")
            .arg(&pred),
    );
    assert_eq!(stdout.lines().filter(|l| l.starts_with("row")).count(), 10, "{stdout}");
    let acc_line = stdout.lines().find(|l| l.starts_with("accuracy:")).expect("accuracy line");
    let acc: f64 = acc_line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(acc >= 0.8, "{stdout}");
    let written = bioseg_data::read_tensor(&pred).unwrap();
    assert_eq!(written.shape(), &[10, 1]);
    // The output exists now: a second run refuses to overwrite it.
    let before = std::fs::read(&pred).unwrap();
    bioseg_suite::run_fails(
        bioseg().args(["run", "-m"]).arg(&onnx).arg("--input").arg(out.join("test_input.npy")).arg("-o").arg(&pred),
        "--overwrite",
    );
    assert_eq!(before, std::fs::read(&pred).unwrap());
}

#[test]
fn killed_training_resumes_to_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let common = ["-q", "perceptron", "--epochs", "24", "--samples", "300"];
    run_ok(bioseg_train().args(common).arg("-o").arg(&a));

    // Kill a slowed-down run after its 8th checkpoint, then resume it.
    let mut child = bioseg_train()
        .args(common)
        .args(["--pause-per-epoch-ms", "60", "-o"])
        .arg(&b)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let target = b.join("checkpoints").join("epoch-000008");
    let start = Instant::now();
    while !target.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(!b.join("perceptron.onnx").exists(), "the killed run finished before the kill");
    let stdout = run_ok(bioseg_train().args(common).arg("--resume").arg("-o").arg(&b));
    assert!(stdout.contains("final epoch 24"), "{stdout}");

    let (wa, wb) = (onnx_weights(&a.join("perceptron.onnx")), onnx_weights(&b.join("perceptron.onnx")));
    assert_eq!(wa, wb, "resumed weights differ from the uninterrupted run");
    let ha = std::fs::read_to_string(a.join("history.json")).unwrap();
    let hb = std::fs::read_to_string(b.join("history.json")).unwrap();
    assert_eq!(ha, hb);
}

#[test]
fn resume_in_process_matches_uninterrupted() {
    let _serial = bioseg_suite::burn_lock();
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = PerceptronTraining {
        epochs: 5,
        samples: 200,
        checkpoint_dir: Some(dir.path().join("ckpt")),
        ..Default::default()
    };
    train_perceptron::<CpuAutodiff>(&cfg, &device).unwrap();
    cfg.epochs = 12;
    cfg.resume = true;
    let (resumed, hist) = train_perceptron::<CpuAutodiff>(&cfg, &device).unwrap();
    assert_eq!(hist.len(), 12);
    let straight_cfg = PerceptronTraining { epochs: 12, samples: 200, ..Default::default() };
    let (straight, hist2) = train_perceptron::<CpuAutodiff>(&straight_cfg, &device).unwrap();
    assert_eq!(hist, hist2);
    let w = |m: &bioseg_train::model::perceptron::Perceptron<CpuBackend>| -> Vec<f32> {
        m.dense.weight.val().into_data().to_vec().unwrap()
    };
    assert_eq!(w(&resumed), w(&straight));

    // A checkpoint whose options differ is refused with a clear error.
    let other = PerceptronTraining { seed: 99, ..cfg.clone() };
    let err = train_perceptron::<CpuAutodiff>(&other, &device).unwrap_err().to_string();
    assert!(err.contains("checkpoint") && err.contains("seed"), "{err}");
}
