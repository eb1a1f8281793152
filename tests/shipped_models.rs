//! The models shipped in `models/` load, say what they are, and segment what they were made
//! for (models/README.md holds their cards).

use bioseg_infer::OnnxModel;
use bioseg_infer::evaluate::{ClassMapping, score_pair};
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_onnx::{Normalization, OutputActivation};

fn model(name: &str) -> OnnxModel {
    OnnxModel::load(&bioseg_suite::root().join("models").join(name)).expect("a shipped model loads")
}

#[test]
fn the_isbi_membrane_model_segments_an_isbi_section() {
    let m = model("isbi2012_membrane_unet.onnx");
    let md = m.metadata();
    assert_eq!(md.classes, ["membrane", "cell-interior"]);
    assert_eq!(md.normalization, Some(Normalization::Divide(255.0)));
    assert_eq!(md.output, Some(OutputActivation::Sigmoid));
    assert_eq!(md.size_multiple, Some(16));
    assert!(md.recommended_halo.is_some_and(|h| h >= 128), "{:?}", md.recommended_halo);
    let training: serde_json::Value = serde_json::from_str(md.training.as_deref().expect("training record")).unwrap();
    assert_eq!(training["filters"], 16);
    assert!(training["val_dice"].is_null(), "trained on all 25 slices: no validation scores");

    let dir = bioseg_data::isbi2012_dir().join("membrane/train");
    if !dir.is_dir() {
        eprintln!("note: skipping the ISBI 2012 prediction: {} not found (set BIOSEG_ISBI2012)", dir.display());
        return;
    }
    // A section it was trained on (all 25 were): a sanity check of the shipped file, not its
    // validation (models/README.md: slices 20–24 with the recipe trained on 0–19).
    let image = bioseg_data::read_image(dir.join("image/22.png")).unwrap();
    let label = bioseg_data::read_image(dir.join("label/22.png")).unwrap();
    let predictor = Predictor::new(&m, PredictOptions::default()).unwrap();
    let pred = predictor.predict(image.data.view(), 255.0, &|_| {}).unwrap();
    let mapping = ClassMapping::new(2, 0.5).unwrap();
    let truth = mapping.truth(&label, "label").unwrap();
    let scores = score_pair("22", &pred.labels(0.5), &truth, 2, 0).unwrap();
    assert!(scores.pixel_error < 0.08, "pixel error {}", scores.pixel_error);
    assert!(scores.dice[0] > 0.75, "membrane Dice {}", scores.dice[0]);
}

#[test]
fn the_synthetic_membrane_model_describes_itself() {
    let m = model("membrane_unet_f8.onnx");
    assert_eq!(m.metadata().classes, ["membrane", "cell-interior"]);
    assert_eq!(m.metadata().normalization, Some(Normalization::Divide(255.0)));
}
