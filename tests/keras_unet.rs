//! Keras-exported U-Nets (tf2onnx opsets 13/17 and Keras 3's export; fixtures of
//! `tools/keras/make_fixtures.py`, no TensorFlow needed here):
//!
//! - tract (through `OnnxModel`/`Predictor`, NHWC detected) gives Keras' numbers on every U-Net
//!   fixture, and `bioseg predict` tiles a larger PNG exactly like whole-image inference;
//! - `bioseg inspect` describes every fixture (NHWC, op histogram, receptive field, tract
//!   support), and its receptive-field estimate bounds the measured influence of a pixel;
//! - `bioseg-train unet --init-from` loads Keras weights into the Burn U-Net: Burn's forward
//!   equals Keras' output, a few training steps run, and mismatches name the first layer.

use std::path::{Path, PathBuf};

use bioseg_infer::OnnxModel;
use bioseg_infer::gemm_conv::GemmConvOptions;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::{TileSize, reflect};
use bioseg_onnx::TensorLayout;
use bioseg_suite::{bioseg, bioseg_train, run_ok};
use bioseg_train::TrainError;
use bioseg_train::device::{CpuAutodiff, CpuBackend};
use bioseg_train::keras_import::{keras_unet_config, load_keras_unet};
use bioseg_train::model::unet::{Unet, UnetConfig, Upsample};
use bioseg_train::train::unet::adopt_keras_architecture;
use bioseg_train::train::unet::{RunOptions, UnetTraining, train_unet};
use burn::prelude::*;
use ndarray::{Array3, ArrayD};

fn fixtures() -> PathBuf {
    bioseg_suite::root().join("tests/fixtures/keras")
}

/// One U-Net entry of `manifest.json`.
#[derive(Debug)]
struct Fixture {
    name: String,
    model: String,
    onnx: PathBuf,
    input: PathBuf,
    expected: PathBuf,
    classes: usize,
    in_channels: usize,
    fixed: bool,
}

fn unet_fixtures() -> Vec<Fixture> {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let s = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")).to_string();
    let v: Vec<Fixture> = manifest["fixtures"]
        .as_array()
        .expect("fixtures")
        .iter()
        .filter(|e| e["layout"] == "nhwc")
        .map(|e| Fixture {
            name: s(e, "name"),
            model: s(e, "model"),
            onnx: fixtures().join(s(e, "onnx")),
            input: fixtures().join(s(e, "input")),
            expected: fixtures().join(s(e, "expected")),
            classes: e["classes"].as_u64().expect("classes") as usize,
            in_channels: e["in_channels"].as_u64().expect("in_channels") as usize,
            fixed: e["dynamic_dims"].as_array().is_some_and(|d| !d.iter().any(|x| x == 1)),
        })
        .collect();
    assert!(v.len() >= 12, "expected 4 U-Nets x 3 exports, got {}", v.len());
    v
}

fn fixture(name: &str) -> Fixture {
    unet_fixtures().into_iter().find(|f| f.name == name).unwrap_or_else(|| panic!("no fixture {name}"))
}

fn npy(path: &Path) -> ArrayD<f32> {
    bioseg_data::read_tensor(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `[1, H, W, C]` → the image `[H, W, C]`.
fn image_of(t: &ArrayD<f32>) -> Array3<f32> {
    let s = t.shape();
    assert_eq!((t.ndim(), s[0]), (4, 1), "{s:?}");
    t.to_shape((s[1], s[2], s[3])).unwrap().to_owned()
}

fn max_diff(a: impl IntoIterator<Item = f32>, b: impl IntoIterator<Item = f32>) -> f32 {
    a.into_iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn every_keras_unet_fixture_runs_with_keras_numbers() {
    for f in unet_fixtures() {
        let model = OnnxModel::load(&f.onnx).unwrap();
        let img = image_of(&npy(&f.input));
        let expected = npy(&f.expected);
        let (h, w, c) = img.dim();
        assert_eq!(c, f.in_channels, "{}", f.name);
        // Whole image: one tile covering it, no halo (Keras ran the whole image).
        let opts = PredictOptions { tile: TileSize::Pixels(h.max(w)), halo: Some(0), ..Default::default() };
        let p = Predictor::new(&model, opts).unwrap();
        assert_eq!(p.io().layout, TensorLayout::Nhwc, "{}", f.name);
        assert_eq!(p.io().channels, f.in_channels, "{}", f.name);
        assert_eq!(p.io().fixed_size.is_some(), f.fixed, "{}", f.name);
        // Inputs are already in [0, 1]: a maximum of 1 means no normalisation.
        let pred = p.predict(img.view(), 1.0, &|_| {}).unwrap();
        assert_eq!(pred.tiles, 1, "{}", f.name);
        assert_eq!(pred.probs.dim(), (f.classes, h, w), "{}", f.name);
        let d = max_diff(
            (0..h)
                .flat_map(|y| (0..w).flat_map(move |x| (0..f.classes).map(move |k| (y, x, k))))
                .map(|(y, x, k)| pred.probs[[k, y, x]]),
            expected.iter().copied(),
        );
        assert!(d <= 1e-4, "{}: bioseg vs Keras max abs diff {d}", f.name);
    }
}

/// A larger 8-bit image with structure at all scales.
fn big_image(h: usize, w: usize) -> Vec<u8> {
    (0..h * w)
        .map(|i| {
            let (y, x) = ((i / w) as f32, (i % w) as f32);
            let v = ((x * 0.11).sin() * (y * 0.07).cos() + 1.0) * 100.0 + ((i * 37) % 41) as f32;
            v.clamp(0.0, 255.0) as u8
        })
        .collect()
}

#[test]
fn bioseg_predict_tiles_a_larger_png_with_a_keras_unet_exactly() {
    let f = fixture("unet_dynamic_tf2onnx_op17");
    let dir = tempfile::tempdir().unwrap();
    let (h, w) = (150usize, 230usize);
    let pixels = big_image(h, w);
    let png = dir.path().join("big.png");
    bioseg_data::write_gray_u8_png(&png, w as u32, h as u32, &pixels).unwrap();
    // The halo `bioseg inspect` recommends for this model (receptive field 138 px).
    let halo = 144;
    let out = dir.path().join("probs.tif");
    let stdout = run_ok(
        bioseg().args(["predict", "--quiet", "-m"]).arg(&f.onnx).arg("-i").arg(&png).arg("-o").arg(&out).args([
            "--output-type",
            "prob-f32",
            "--tile",
            "64",
            "--halo",
            &halo.to_string(),
        ]),
    );
    assert!(stdout.contains("tiles"), "{stdout}");
    let tiled = bioseg_data::read_image(&out).unwrap();
    assert_eq!(tiled.data.dim(), (h, w, 1));

    // Whole-image reference: the image mirrored by the halo (up to the size multiple 16), one
    // tract run, cropped back.
    let model = OnnxModel::load(&f.onnx).unwrap();
    let (ph, pw) = ((h + 2 * halo).div_ceil(16) * 16, (w + 2 * halo).div_ceil(16) * 16);
    let mut data = vec![0f32; ph * pw];
    for y in 0..ph {
        for x in 0..pw {
            let (sy, sx) = (reflect(y as i64 - halo as i64, h), reflect(x as i64 - halo as i64, w));
            data[y * pw + x] = pixels[sy * w + sx] as f32 / 255.0;
        }
    }
    let (_, whole) = model.run(&[1, ph, pw, 1], &data).unwrap().swap_remove(0);
    let mut d = 0f32;
    for y in 0..h {
        for x in 0..w {
            d = d.max((tiled.data[[y, x, 0]] - whole[(y + halo) * pw + x + halo]).abs());
        }
    }
    assert!(d <= 1e-5, "tiled vs whole image: max abs diff {d}");
}

#[test]
fn bioseg_inspect_describes_every_keras_unet() {
    for f in unet_fixtures() {
        let text = run_ok(bioseg().args(["inspect", "-m"]).arg(&f.onnx));
        assert!(text.contains("layout nhwc"), "{}:\n{text}", f.name);
        assert!(text.lines().any(|l| l.trim_start().starts_with("Conv ")), "{}: no op histogram:\n{text}", f.name);
        assert!(text.contains("every op is supported"), "{}:\n{text}", f.name);
        assert!(text.contains("prepared and ran"), "{}:\n{text}", f.name);

        let json = run_ok(bioseg().args(["inspect", "--json", "-m"]).arg(&f.onnx));
        let r: serde_json::Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{}: {e}\n{json}", f.name));
        assert_eq!(r["interface"]["layout"], "nhwc", "{}", f.name);
        assert_eq!(r["interface"]["channels"], f.in_channels, "{}", f.name);
        let transpose = f.model == "unet_bn_transpose";
        let hist = &r["op_histogram"];
        assert_eq!(hist["Conv"], if transpose { 20 } else { 24 }, "{}: {hist}", f.name);
        assert_eq!(hist["MaxPool"], 4, "{}: {hist}", f.name);
        if transpose {
            assert_eq!(hist["ConvTranspose"], 4, "{}: {hist}", f.name);
        }
        assert!(r["parameters"].as_u64().unwrap() > 100_000, "{}", f.name);
        assert_eq!(r["tract"]["all_ops_supported"], true, "{}", f.name);
        assert_eq!(r["tract"]["prepared"], true, "{}: {}", f.name, r["tract"]);
        assert_eq!(r["tiling"]["size_multiple"]["value"], 16, "{}", f.name);
        assert_eq!(r["tiling"]["receptive_field_radius"]["source"], "computed", "{}", f.name);
        let radius = r["tiling"]["receptive_field_radius"]["value"].as_u64().unwrap();
        assert_eq!(radius, if transpose { 123 } else { 138 }, "{}", f.name);
        let halo = radius.div_ceil(16) * 16;
        assert_eq!(r["tiling"]["recommended_halo"]["value"], halo, "{}", f.name);
        // The note names the halo `bioseg predict` uses on this model, not another default.
        let notes = r["tiling"]["notes"].to_string();
        assert!(notes.contains(&format!("uses a halo of {halo} ")), "{}: {notes}", f.name);
        let model = OnnxModel::load(&f.onnx).unwrap();
        let predictor = Predictor::new(&model, PredictOptions::default()).unwrap();
        assert_eq!(predictor.halo() as u64, halo, "{}", f.name);
        let symbolic = r["inputs"][0]["symbolic_axes"].as_array().unwrap().len();
        assert_eq!(symbolic, f.onnx_dynamic_dims(), "{}", f.name);
    }
}

impl Fixture {
    fn onnx_dynamic_dims(&self) -> usize {
        let text = std::fs::read_to_string(fixtures().join("manifest.json")).unwrap();
        let m: serde_json::Value = serde_json::from_str(&text).unwrap();
        m["fixtures"].as_array().unwrap().iter().find(|e| e["name"] == self.name.as_str()).unwrap()["dynamic_dims"]
            .as_array()
            .unwrap()
            .len()
    }
}

/// The receptive-field estimate is a property of the graph: with exact convolution kernels (no
/// Winograd) a pixel changes nothing beyond it. Winograd's transforms cancel outside a tile's 3×3
/// taps only up to rounding, so with bioseg's default kernels a pixel moves values beyond the
/// estimate by rounding only (measured on these fixtures with F(4×4, 3×3): any difference at all
/// reaches 156–157 px against a radius of 138, differences above 1e-6 up to 152 px, above 1e-5
/// none beyond 104 px; the outputs are probabilities).
#[test]
fn receptive_field_estimate_bounds_the_measured_influence_of_a_pixel() {
    let exact = GemmConvOptions { winograd_min_channels: usize::MAX, ..GemmConvOptions::default() }.without_winograd4();
    for name in ["unet_dynamic_tf2onnx_op13", "unet_bn_transpose_keras3"] {
        let f = fixture(name);
        let report = bioseg_infer::inspect::inspect(&f.onnx).unwrap();
        let radius = report.tiling.receptive_field_radius.unwrap().value;
        let n = 320usize;
        let base: Vec<f32> = (0..n * n).map(|i| (((i * 7919) % 97) as f32) / 97.0).collect();
        let mut poked = base.clone();
        let c = n / 2;
        poked[c * n + c] += 5.0;
        // How far from the poked pixel the output moves by more than `tolerance`.
        let reach = |model: &OnnxModel, tolerance: f32| {
            let (_, a) = model.run(&[1, n, n, 1], &base).unwrap().swap_remove(0);
            let (_, b) = model.run(&[1, n, n, 1], &poked).unwrap().swap_remove(0);
            let mut reach = 0usize;
            for y in 0..n {
                for x in 0..n {
                    if (a[y * n + x] - b[y * n + x]).abs() > tolerance {
                        reach = reach.max(y.abs_diff(c)).max(x.abs_diff(c));
                    }
                }
            }
            reach
        };
        let model = OnnxModel::load(&f.onnx).unwrap().with_gemm_options(exact.clone());
        let exact_reach = reach(&model, 0.0);
        assert!(exact_reach > radius / 2, "{name}: the impulse reached only {exact_reach} px (estimate {radius})");
        assert!(
            exact_reach <= radius,
            "{name}: the impulse reached {exact_reach} px, beyond the estimated radius {radius}"
        );
        // Bioseg's default kernels: beyond the estimate, rounding only.
        let model = OnnxModel::load(&f.onnx).unwrap();
        let rounded_reach = reach(&model, 1e-5);
        assert!(
            rounded_reach <= radius,
            "{name}: the impulse moved values by > 1e-5 at {rounded_reach} px, beyond {radius}"
        );
    }
}

/// Keras' expected output `[1, H, W, K]` vs Burn's `[1, K, H, W]`.
fn burn_vs_keras(model: &Unet<CpuBackend>, f: &Fixture) -> f32 {
    let input = npy(&f.input);
    let s = input.shape().to_vec();
    let (h, w, c) = (s[1], s[2], s[3]);
    let nchw: Vec<f32> =
        (0..c).flat_map(|k| (0..h * w).map(move |p| (k, p))).map(|(k, p)| input[[0, p / w, p % w, k]]).collect();
    let x = Tensor::<CpuBackend, 4>::from_data(TensorData::new(nchw, [1, c, h, w]), &Default::default());
    let y: Vec<f32> = model.forward(x).into_data().to_vec().unwrap();
    let expected = npy(&f.expected);
    let k = expected.shape()[3];
    let keras_nchw =
        (0..k).flat_map(|kk| (0..h * w).map(move |p| (kk, p))).map(|(kk, p)| expected[[0, p / w, p % w, kk]]);
    assert_eq!(y.len(), k * h * w, "{}", f.name);
    max_diff(y, keras_nchw)
}

#[test]
fn keras_weights_in_burn_give_keras_outputs() {
    let _serial = bioseg_suite::burn_lock();
    let device = Default::default();
    for f in unet_fixtures() {
        let cfg = keras_unet_config(&f.onnx).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        assert_eq!(
            (cfg.filters, cfg.depth, cfg.in_channels, cfg.classes),
            (4, 4, f.in_channels, f.classes),
            "{}",
            f.name
        );
        let bn = f.model == "unet_bn_transpose";
        assert_eq!((cfg.batch_norm, cfg.batch_norm_all), (bn, bn), "{}", f.name);
        assert_eq!(cfg.upsample, if bn { Upsample::Transpose } else { Upsample::Nearest }, "{}", f.name);
        let model: Unet<CpuBackend> = cfg.init(&device);
        let model = load_keras_unet(model, &f.onnx, &device).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let d = burn_vs_keras(&model, &f);
        assert!(d <= 1e-4, "{}: Burn vs Keras max abs diff {d}", f.name);
        if f.name.ends_with("_op13") {
            // Re-exported by bioseg (NCHW; batch norm after the upsampling and head convolutions
            // for the BN variant), tract still gives Keras' numbers.
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("reexport.onnx");
            let md = bioseg_train::export::base_metadata();
            bioseg_train::export::write_onnx(&model.to_onnx(&md), &path).unwrap();
            let onnx = OnnxModel::load(&path).unwrap();
            let input = npy(&f.input);
            let s = input.shape().to_vec();
            let (h, w, c) = (s[1], s[2], s[3]);
            let nchw: Vec<f32> = (0..c * h * w).map(|i| input[[0, (i / w) % h, i % w, i / (h * w)]]).collect();
            let (_, y) = onnx.run(&[1, c, h, w], &nchw).unwrap().swap_remove(0);
            let expected = npy(&f.expected);
            let k = expected.shape()[3];
            let keras: Vec<f32> = (0..k * h * w).map(|i| expected[[0, (i / w) % h, i % w, i / (h * w)]]).collect();
            let d = max_diff(y, keras);
            assert!(d <= 1e-4, "{}: re-exported ONNX (tract) vs Keras max abs diff {d}", f.name);
        }
    }
}

#[test]
fn keras_initialised_unets_train() {
    let _serial = bioseg_suite::burn_lock();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let params = bioseg_data::SynthParams { width: 64, height: 64, ..Default::default() };
    bioseg_data::write_dataset(&data, 4, 0, &params, 5).unwrap();
    for (name, object_class) in [
        ("unet_dynamic_tf2onnx_op13", "membrane"),
        ("unet_bn_transpose_tf2onnx_op17", "membrane"),
        ("unet_rgb3class_keras3", "multiclass"),
    ] {
        let f = fixture(name);
        let mut cfg = UnetTraining {
            data_dir: data.clone(),
            object_class: object_class.into(),
            epochs: 1,
            steps_per_epoch: 3,
            batch_size: 2,
            learning_rate: 1e-3,
            crop_width: 64,
            crop_height: 64,
            val_fraction: 0.25,
            ..Default::default()
        };
        let warnings = adopt_keras_architecture(&mut cfg, &f.onnx).unwrap();
        assert!(warnings.iter().any(|w| w.contains("-F/--filters 64 replaced by 4")), "{warnings:?}");
        assert_eq!((cfg.filters, cfg.depth, cfg.in_channels), (4, 4, f.in_channels));
        let opts = RunOptions { quiet: true, init_from: Some(f.onnx.clone()), ..Default::default() };
        let trained =
            train_unet::<CpuAutodiff>(&cfg, &opts, &[Default::default()]).unwrap_or_else(|e| panic!("{name}: {e}"));
        let loss = trained.history[0].train_loss;
        assert!(loss.is_finite() && loss > 0.0, "{name}: loss {loss}");
        assert_eq!(trained.model.classes, f.classes, "{name}");
        // Training moved the weights away from Keras' (so the imported ones were trainable).
        let d = burn_vs_keras(&trained.model, &f);
        assert!(d > 1e-6, "{name}: the weights did not change ({d})");
    }
}

#[test]
fn mismatched_architectures_name_the_first_layer_that_differs() {
    let _serial = bioseg_suite::burn_lock();
    let device = Default::default();
    let dynamic = fixture("unet_dynamic_tf2onnx_op13").onnx;
    let bn = fixture("unet_bn_transpose_tf2onnx_op13").onnx;
    let load = |cfg: UnetConfig, path: &Path| -> String {
        let model: Unet<CpuBackend> = cfg.init(&device);
        match load_keras_unet(model, path, &device) {
            Ok(_) => panic!("{cfg:?} loaded {}", path.display()),
            Err(e) => {
                assert!(matches!(e, TrainError::KerasImport { .. }), "{e:?}");
                e.to_string()
            }
        }
    };
    let e = load(UnetConfig::new().with_filters(8), &dynamic);
    assert!(e.contains("layer down0.conv1") && e.contains("[8, 1, 3, 3]") && e.contains("[4, 1, 3, 3]"), "{e}");
    let e = load(UnetConfig::new().with_filters(4).with_depth(3), &dynamic);
    // Depth 3's bottleneck has the shapes of Keras' deepest down level: the first difference
    // is the first up-conv, and the message gives both depths.
    assert!(e.contains("layer up0.up_conv") && e.contains("[16, 32, 2, 2]") && e.contains("[64, 32, 3, 3]"), "{e}");
    assert!(e.contains("24 convolutions (depth 4)") && e.contains("19 convolutions (depth 3)"), "{e}");
    let e = load(UnetConfig::new().with_filters(4).with_upsample(Upsample::Transpose), &dynamic);
    assert!(e.contains("layer up0.up_transpose") && e.contains("--upsample nearest"), "{e}");
    let e = load(UnetConfig::new().with_filters(4).with_upsample(Upsample::Transpose), &bn);
    assert!(e.contains("layer down0.conv1") && e.contains("batch-normalises"), "{e}");
    let e = load(UnetConfig::new().with_filters(4).with_batch_norm(true).with_upsample(Upsample::Transpose), &bn);
    assert!(e.contains("layer up0.up_transpose") && e.contains("batch-normalises"), "{e}");
    let e = load(UnetConfig::new().with_filters(4).with_classes(3), &dynamic);
    assert!(e.contains("layer head") && e.contains("[6, 4, 3, 3]") && e.contains("[2, 4, 3, 3]"), "{e}");
    // Not a U-Net at all, and not a file.
    let perceptron = fixtures().join("perceptron_functional_tf2onnx.onnx");
    let e = keras_unet_config(&perceptron).unwrap_err().to_string();
    assert!(e.contains("0 convolutions"), "{e}");
    assert!(keras_unet_config(&fixtures().join("missing.onnx")).is_err());
}

#[test]
fn bioseg_train_unet_init_from_fine_tunes_a_keras_unet() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let params = bioseg_data::SynthParams { width: 64, height: 64, ..Default::default() };
    bioseg_data::write_dataset(&data, 3, 0, &params, 9).unwrap();
    let keras = fixture("unet_bn_transpose_keras3").onnx;
    let out = dir.path().join("run");
    let cmd_out = bioseg_train()
        .args(["unet", "--quiet", "-c", "membrane", "-e", "1", "--steps-per-epoch", "2", "-b", "2"])
        .args(["-X", "64", "-Y", "64", "-F", "16", "--depth", "3", "-d"])
        .arg(&data)
        .arg("-o")
        .arg(&out)
        .arg("--init-from")
        .arg(&keras)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cmd_out.stderr);
    assert!(cmd_out.status.success(), "{stderr}");
    assert!(stderr.contains("-F/--filters 16 replaced by 4"), "{stderr}");
    assert!(stderr.contains("--depth 3 replaced by 4"), "{stderr}");
    assert!(stderr.contains("--upsample nearest replaced by transpose"), "{stderr}");
    let onnx = out.join("model.onnx");
    assert!(onnx.is_file());
    // The fine-tuned model exports with the Keras layout (batch norm after the transposed
    // convolutions and the head) and runs with tract.
    let text = run_ok(bioseg().args(["inspect", "-m"]).arg(&onnx));
    assert!(text.contains("layout nchw") && text.contains("every op is supported"), "{text}");
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("BatchNormalization") && l.trim_end().ends_with(" 23")),
        "{text}"
    );

    // A Keras model whose classes do not fit the data: a clean error naming the layer.
    let rgb = fixture("unet_rgb3class_tf2onnx_op13").onnx;
    let out = bioseg_train()
        .args(["unet", "--quiet", "-c", "membrane", "-e", "1", "--steps-per-epoch", "1", "-X", "64", "-Y", "64", "-d"])
        .arg(&data)
        .arg("-o")
        .arg(dir.path().join("run2"))
        .arg("--init-from")
        .arg(&rgb)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("layer head") && stderr.contains("cannot initialise from"), "{stderr}");
}
