//! The exporter zoo (`tests/fixtures/zoo/`, written by `tools/zoo/make_zoo.py`): U-Nets written
//! the way other ONNX exporters write them (Resize at opsets 11/13/18 with scales or sizes and
//! axes, the old Upsample, bilinear `align_corners` and `pytorch_half_pixel`, ConvTranspose,
//! BatchNormalization, sigmoid and softmax heads).
//!
//! - bioseg (tract with bioseg's fast paths) gives ONNX Runtime's numbers on every fixture, and
//!   so does plain tract (the fast paths off): the rewrites change speed, not results;
//! - `bioseg inspect`'s execution list shows which of bioseg's ops took each model's blocks
//!   over: the up-sampling of every nearest form is folded into a convolution or run by
//!   bioseg's op, never by tract's generic Resize; the 1×1 head runs on bioseg's pointwise op,
//!   never on tract's matrix product.

use std::path::PathBuf;

use bioseg_infer::OnnxModel;
use bioseg_infer::tensor_run::run_tensor;
use ndarray::ArrayD;

fn zoo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/zoo")
}

/// One entry of `manifest.json`.
struct Fixture {
    name: String,
    onnx: PathBuf,
    input: PathBuf,
    expected: PathBuf,
    up: String,
}

fn fixtures() -> Vec<Fixture> {
    let text = std::fs::read_to_string(zoo().join("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let s = |e: &serde_json::Value, k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")).to_string();
    let v: Vec<Fixture> = manifest["fixtures"]
        .as_array()
        .expect("fixtures")
        .iter()
        .map(|e| Fixture {
            name: s(e, "name"),
            onnx: zoo().join(s(e, "onnx")),
            input: zoo().join(s(e, "input")),
            expected: zoo().join(s(e, "expected")),
            up: s(e, "up"),
        })
        .collect();
    assert!(v.len() >= 9, "expected the 9 zoo U-Nets, got {}", v.len());
    v
}

fn npy(path: &std::path::Path) -> ArrayD<f32> {
    bioseg_data::read_tensor(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn every_zoo_unet_gives_onnx_runtime_numbers_with_and_without_bioseg_fast_paths() {
    for f in fixtures() {
        let input = npy(&f.input);
        let expected = npy(&f.expected);
        for fast in [true, false] {
            let model =
                OnnxModel::load(&f.onnx).unwrap_or_else(|e| panic!("{}: {e}", f.name)).with_gemm_convolutions(fast);
            let out = run_tensor(&model, &input).unwrap_or_else(|e| panic!("{} (fast paths {fast}): {e}", f.name));
            let d = max_diff(&out.output, &expected);
            assert!(d <= 1e-4, "{} (fast paths {fast}): bioseg vs ONNX Runtime max abs diff {d}", f.name);
        }
    }
}

#[test]
fn no_zoo_unet_leaves_its_upsampling_to_tracts_generic_resize() {
    for f in fixtures() {
        let model = OnnxModel::load(&f.onnx).unwrap();
        let shape = npy(&f.input).shape().to_vec();
        let ops = model.execution(&shape).unwrap_or_else(|e| panic!("{}: {e}", f.name));
        let generic: Vec<_> = ops.iter().filter(|o| !o.bioseg && o.op.contains("Resize")).collect();
        assert!(generic.is_empty(), "{}: tract runs {generic:?}", f.name);
        let bioseg: Vec<&str> = ops.iter().filter(|o| o.bioseg).map(|o| o.op.as_str()).collect();
        let upsampling_taken_over = match f.up.as_str() {
            "convtranspose" => bioseg.iter().any(|o| o.contains("ConvTranspose")),
            up if up.starts_with("bilinear") => bioseg.iter().any(|o| o.contains("BiosegResize")),
            _ => bioseg.iter().any(|o| o.contains("upsample") || o.contains("Upsample")),
        };
        assert!(upsampling_taken_over, "{} ({}): bioseg's ops are {bioseg:?}", f.name, f.up);
        // The 1×1 head (tract: a packed matrix product) runs on bioseg's pointwise op.
        assert!(bioseg.contains(&"BiosegPointwise"), "{}: bioseg's ops are {bioseg:?}", f.name);
        let matmul: Vec<_> = ops.iter().filter(|o| !o.bioseg && o.op.contains("MatMul")).collect();
        assert!(matmul.is_empty(), "{}: tract runs {matmul:?}", f.name);
    }
}

/// The Keras exports (`tests/fixtures/keras/`, tools/keras/make_fixtures.py): tf2onnx writes
/// `UpSampling2D` as Unsqueeze/Tile/Transpose/Reshape chains; bioseg recognises them as
/// up-sampling (no broadcast or tile is left to tract), and folds the batch normalisation
/// after `Conv2DTranspose` into it, with Keras' numbers.
#[test]
fn keras_upsampling_chains_are_taken_over_with_keras_numbers() {
    let keras = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/keras");
    let text = std::fs::read_to_string(keras.join("manifest.json")).expect("manifest.json");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let mut checked = 0;
    for e in manifest["fixtures"].as_array().expect("fixtures") {
        let name = e["name"].as_str().unwrap_or_default();
        if !name.starts_with("unet_") {
            continue;
        }
        let file = |k: &str| keras.join(e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")));
        let model = OnnxModel::load(&file("onnx")).unwrap();
        let input = npy(&file("input"));
        let ops = model.execution(input.shape()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let repeats: Vec<_> = ops.iter().filter(|o| o.op == "MultiBroadcastTo" || o.op == "Tile").collect();
        assert!(repeats.is_empty(), "{name}: tract still runs {repeats:?}");
        let out = run_tensor(&model, &input).unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = max_diff(&out.output, &npy(&file("expected")));
        assert!(d <= 1e-4, "{name}: bioseg vs Keras max abs diff {d}");
        checked += 1;
    }
    assert!(checked >= 12, "expected 4 U-Nets x 3 exports, got {checked}");
}
