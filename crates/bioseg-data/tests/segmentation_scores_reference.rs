//! The segmentation scores against reference numbers from scikit-image (adapted Rand error,
//! variation of information) and from an independent numpy implementation of the ISBI 2012
//! definitions, written by `tools/metrics/make_fixtures.py` into `tests/fixtures/metrics/`.

use std::path::{Path, PathBuf};

use bioseg_data::{adapted_rand_error, cells, isbi_scores, variation_of_information};
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_npy::read_npy;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/metrics")
}

fn manifest() -> Value {
    let text = std::fs::read_to_string(fixtures().join("manifest.json")).expect("manifest.json");
    serde_json::from_str(&text).expect("valid JSON")
}

fn labels(name: &str) -> ArrayD<u32> {
    read_npy(fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn assert_close(what: &str, got: f64, want: &Value, tol: f64) {
    let want = want.as_f64().unwrap_or_else(|| panic!("{what}: no number in the manifest"));
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got}, scikit-image/reference {want} (|diff| {})",
        (got - want).abs()
    );
}

#[test]
fn matches_scikit_image_and_the_isbi_reference() {
    let m = manifest();
    let tol = m["tolerance"].as_f64().unwrap();
    assert!(tol <= 1e-6);
    let cases = m["cases"].as_array().unwrap();
    assert!(cases.len() >= 6, "expected at least 6 cases");
    let mut isbi_checked = 0;
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let t = labels(case["true"].as_str().unwrap());
        let s = labels(case["test"].as_str().unwrap());
        for (key, ignore) in [("ignore_0", &[0u32][..]), ("ignore_none", &[][..])] {
            let are = adapted_rand_error(t.view(), s.view(), ignore).unwrap();
            let want = &case["adapted_rand_error"][key];
            assert_close(&format!("{name} ARE {key} error"), are.error, &want["error"], tol);
            assert_close(&format!("{name} ARE {key} precision"), are.precision, &want["precision"], tol);
            assert_close(&format!("{name} ARE {key} recall"), are.recall, &want["recall"], tol);
            let (a, b) = variation_of_information(t.view(), s.view(), ignore).unwrap();
            let want = &case["variation_of_information"][key];
            assert_close(&format!("{name} VI {key} [0]"), a, &want[0], tol);
            assert_close(&format!("{name} VI {key} [1]"), b, &want[1], tol);
        }
        if let Some(isbi) = case.get("isbi") {
            let t2 = t.view().into_dimensionality::<Ix2>().unwrap();
            let s2 = s.view().into_dimensionality::<Ix2>().unwrap();
            let got = isbi_scores(s2, t2).unwrap();
            for (field, value) in [
                ("v_rand", got.v_rand),
                ("v_rand_split", got.v_rand_split),
                ("v_rand_merge", got.v_rand_merge),
                ("v_info", got.v_info),
                ("v_info_split", got.v_info_split),
                ("v_info_merge", got.v_info_merge),
            ] {
                assert_close(&format!("{name} {field}"), value, &isbi[field], tol);
            }
            isbi_checked += 1;
        }
    }
    assert!(isbi_checked >= 5);
}

#[test]
fn cells_match_scipy_connected_components() {
    let m = manifest();
    let mut checked = 0;
    for case in m["cases"].as_array().unwrap() {
        let Some(maps) = case.get("maps") else {
            continue;
        };
        for (map_key, thr_key, labels_key) in [("truth", "truth_threshold", "true"), ("pred", "pred_threshold", "test")]
        {
            let map: Array2<f32> = read_npy(fixtures().join(maps[map_key].as_str().unwrap())).unwrap();
            let thr = maps[thr_key].as_f64().unwrap() as f32;
            let (got, n) = cells(map.view(), thr);
            let want = labels(case[labels_key].as_str().unwrap()).into_dimensionality::<Ix2>().unwrap();
            // scipy.ndimage.label numbers components in raster order of their first pixel too.
            assert_eq!(got, want, "{} {map_key}", case["name"]);
            assert_eq!(n as u32, want.iter().copied().max().unwrap_or(0));
            checked += 1;
        }
    }
    assert!(checked >= 4);
}
