//! A scheduler may SIGKILL a training run at any moment. Killed at pseudo-random moments
//! (seeded, spread over the run's measured duration: during start-up, mid-epoch, while a
//! checkpoint is written, during export), `bioseg-train unet` must always leave only complete,
//! loadable checkpoints and no half-written ONNX, and `-w/--load-weights OUT/checkpoints` must
//! carry the run to the end with exactly the weights and losses of an uninterrupted run.
//! (Volume prediction's kill-and-resume is in `volume_predict.rs`.)

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bioseg_suite::{bioseg_train, onnx_weights, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn train_cmd(data: &Path, out: &Path) -> Command {
    let mut cmd = bioseg_train();
    cmd.args(["-q", "unet", "-F", "2", "--depth", "2", "-X", "64", "-Y", "64", "-b", "2"]).args([
        "-e",
        "10",
        "--steps-per-epoch",
        "3",
        "--seed",
        "3",
        "-d",
        s(data),
        "-o",
        s(out),
    ]);
    cmd
}

/// `(epoch, train loss, val loss, val Dice)` of history.json, without timings.
fn losses(out: &Path) -> Vec<(u64, f64, f64, String)> {
    let text = std::fs::read_to_string(out.join("history.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["epoch"].as_u64().unwrap(),
                e["train_loss"].as_f64().unwrap(),
                e["val_loss"].as_f64().unwrap(),
                e["val_dice"].to_string(),
            )
        })
        .collect()
}

/// The checkpoints a resume may pick (hidden temporaries excluded).
fn checkpoints(out: &Path) -> Vec<PathBuf> {
    let dir = out.join("checkpoints");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    v.sort();
    v
}

/// A small deterministic generator (xorshift64*), so kill moments are reproducible.
struct Moments(u64);
impl Moments {
    fn next_fraction(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn training_killed_at_random_moments_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let params = bioseg_data::SynthParams { width: 64, height: 64, ..Default::default() };
    bioseg_data::write_dataset(&data, 4, 0, &params, 11).unwrap();

    let reference = dir.path().join("reference");
    let t0 = Instant::now();
    run_ok(&mut train_cmd(&data, &reference));
    let duration = t0.elapsed();

    let out = dir.path().join("killed");
    let check = dir.path().join("check.onnx");
    let mut moments = Moments(0x9e37_79b9_7f4a_7c15);
    let mut kills = 0;
    let mut finished = false;
    for _ in 0..40 {
        let mut cmd = train_cmd(&data, &out);
        if !checkpoints(&out).is_empty() {
            cmd.args(["-w", s(&out.join("checkpoints"))]);
        }
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let at = duration.mul_f64(0.03 + 0.4 * moments.next_fraction());
        let deadline = Instant::now() + at;
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            assert!(status.success(), "a resumed run failed: {err}");
            finished = true;
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;

        // Whatever the moment, every visible checkpoint loads, and no partial ONNX exists.
        for ckpt in checkpoints(&out) {
            let _ = std::fs::remove_file(&check);
            run_ok(bioseg_train().args(["-q", "export", "--checkpoint", s(&ckpt), "--onnx", s(&check)]));
        }
        let model = out.join("model.onnx");
        if model.exists() {
            bioseg_onnx::read_model(&model).expect("a complete model.onnx");
        }
    }
    assert!(finished, "the run never finished after {kills} kills");
    assert!(kills >= 4, "only {kills} kills: the run was too fast to interrupt");
    eprintln!("killed {kills} times; uninterrupted run {duration:?}");

    assert_eq!(losses(&out), losses(&reference), "resumed losses differ");
    assert_eq!(
        onnx_weights(&out.join("model.onnx")),
        onnx_weights(&reference.join("model.onnx")),
        "resumed weights differ"
    );
    let leftovers: Vec<_> = std::fs::read_dir(out.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary checkpoints left: {leftovers:?}");
}
