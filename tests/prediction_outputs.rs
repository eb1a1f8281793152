//! What `bioseg predict` writes for a multi-class model, through the binary: one file per
//! prediction (a TIFF ImageJ hyperstack of a page per class, or an OME-Zarr store with a channel
//! axis, for 2-D images and volumes alike), one PNG per class where PNG cannot hold channels;
//! every form holds the predictor's probabilities.

use std::path::{Path, PathBuf};

use bioseg_data::volume::open_volume;
use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_suite::{bioseg, run_fails, run_ok};
use bioseg_train::device::CpuBackend;
use bioseg_train::model::unet::{Unet, UnetConfig};
use ndarray::{Array3, Axis};

const CLASSES: [&str; 3] = ["background", "membrane", "mitochondria"];

/// A tiny 3-class U-Net exported by bioseg with its class names.
fn export_three_class(dir: &Path) -> PathBuf {
    let _serial = bioseg_suite::burn_lock();
    let model: Unet<CpuBackend> =
        UnetConfig::new().with_filters(4).with_depth(2).with_classes(3).init(&Default::default());
    let mut meta = bioseg_train::export::base_metadata();
    meta.classes = CLASSES.map(String::from).to_vec();
    let path = dir.join("three.onnx");
    bioseg_train::export::write_onnx(&model.to_onnx(&meta), &path).unwrap();
    path
}

/// An 8-bit `h × w` image with structure, as row-major samples.
fn image(h: usize, w: usize, k: usize) -> Vec<u8> {
    (0..h * w).map(|i| (((i % w) * 7 + (i / w) * 3 + k * 29) % 251) as u8).collect()
}

/// The predictor's probabilities `[classes, h, w]` for one image.
fn probabilities(model: &Path, pixels: &[u8], h: usize, w: usize) -> Array3<f32> {
    let model = OnnxModel::load(model).unwrap();
    let p = Predictor::new(&model, PredictOptions::default()).unwrap();
    let img = Array3::from_shape_fn((h, w, 1), |(y, x, _)| f32::from(pixels[y * w + x]));
    p.predict(img.view(), 255.0, &|_| {}).unwrap().probs
}

/// Every page, channel 0, of a volume file `[pages, h, w]`.
fn pages(path: &Path) -> Array3<f32> {
    let v = open_volume(path, None).unwrap();
    let [z, y, x] = v.info().shape;
    v.read_slab(0..z, 0..y, 0..x).unwrap().index_axis_move(Axis(3), 0)
}

fn max_diff(a: ndarray::ArrayView2<f32>, b: ndarray::ArrayView2<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn predict(model: &Path, input: &Path, output: &Path, kind: &str) {
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    run_ok(bioseg().args(["predict", "-q", "-m", &s(model), "-i", &s(input), "-o", &s(output), "--output-type", kind]));
}

/// The files in `dir` (names), sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

fn zarr_attributes(store: &Path) -> serde_json::Value {
    let group: serde_json::Value = serde_json::from_slice(&std::fs::read(store.join("zarr.json")).unwrap()).unwrap();
    group["attributes"]["ome"].clone()
}

#[test]
fn multi_class_probabilities_are_one_file_per_prediction() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = export_three_class(d);
    let (h, w) = (40, 56);
    let px = image(h, w, 0);
    let png = d.join("in").join("section.png");
    std::fs::create_dir(png.parent().unwrap()).unwrap();
    bioseg_data::write_gray_u8(&png, w as u32, h as u32, &px).unwrap();
    let want = probabilities(&model, &px, h, w);
    assert_eq!(want.dim(), (3, h, w));

    // float32 TIFF: one ImageJ hyperstack of three pages, the classes in order.
    let out = d.join("tif");
    std::fs::create_dir(&out).unwrap();
    predict(&model, &png, &out.join("probs.tif"), "prob-f32");
    assert_eq!(listing(&out), ["probs.tif"]);
    let got = pages(&out.join("probs.tif"));
    assert_eq!(got.dim(), (3, h, w));
    for c in 0..3 {
        assert_eq!(max_diff(got.index_axis(Axis(0), c), want.index_axis(Axis(0), c)), 0.0, "class {c}");
    }
    let bytes = std::fs::read(out.join("probs.tif")).unwrap();
    let description = b"ImageJ=1.11a\nimages=3\nchannels=3\nhyperstack=true\nmode=grayscale\n";
    assert!(bytes.windows(description.len()).any(|win| win == description), "no ImageJ hyperstack description");

    // OME-Zarr for a 2-D image: axes c, y, x, the model's class names as channel labels.
    let store = d.join("probs.zarr");
    predict(&model, &png, &store, "prob-f32");
    let ome = zarr_attributes(&store);
    let axes: Vec<&str> =
        ome["multiscales"][0]["axes"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(axes, ["c", "y", "x"]);
    let labels: Vec<&str> =
        ome["omero"]["channels"].as_array().unwrap().iter().map(|c| c["label"].as_str().unwrap()).collect();
    assert_eq!(labels, CLASSES);
    let v = open_volume(&store, None).unwrap();
    assert_eq!((v.info().shape, v.info().channels), ([1, h, w], 3));
    let read = v.read_slab(0..1, 0..h, 0..w).unwrap();
    for c in 0..3 {
        let plane = read.index_axis(Axis(0), 0).index_axis(Axis(2), c).to_owned();
        assert_eq!(max_diff(plane.view(), want.index_axis(Axis(0), c)), 0.0, "zarr class {c}");
    }
    // Labels are one channel: axes y, x and no omero block.
    let labels_store = d.join("labels.zarr");
    predict(&model, &png, &labels_store, "labels");
    let ome = zarr_attributes(&labels_store);
    assert_eq!(ome["multiscales"][0]["axes"].as_array().unwrap().len(), 2);
    assert!(ome.get("omero").is_none());

    // PNG holds one channel: one 8-bit file per class.
    let out = d.join("png");
    std::fs::create_dir(&out).unwrap();
    predict(&model, &png, &out.join("probs.png"), "prob-u8");
    assert_eq!(listing(&out), ["probs_class0.png", "probs_class1.png", "probs_class2.png"]);
    // float32 probabilities have no PNG form.
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    run_fails(
        bioseg()
            .args(["predict", "-q", "-m", &s(&model), "-i", &s(&png), "-o", &s(&out.join("f.png"))])
            .args(["--output-type", "prob-f32"]),
        "prob-f32 needs a .tif/.tiff or .zarr output",
    );

    // A volume of three slices into TIFF: one file, a page per class of each slice (ImageJ's
    // order, channel fastest).
    let slices: Vec<Vec<u8>> = (0..3).map(|k| image(h, w, k)).collect();
    let stack = d.join("in").join("stack.tif");
    bioseg_data::write_gray_u8_pages(&stack, w as u32, h as u32, &slices).unwrap();
    let out = d.join("vol");
    std::fs::create_dir(&out).unwrap();
    predict(&model, &stack, &out.join("vol.tif"), "prob-u8");
    assert_eq!(listing(&out), ["vol.tif"]);
    let got = pages(&out.join("vol.tif"));
    assert_eq!(got.dim(), (9, h, w));
    let bytes = std::fs::read(out.join("vol.tif")).unwrap();
    let description = b"images=9\nchannels=3\nslices=3\nhyperstack=true\n";
    assert!(bytes.windows(description.len()).any(|win| win == description), "no ImageJ hyperstack description");
    for (z, px) in slices.iter().enumerate() {
        let want = probabilities(&model, px, h, w).mapv(|p| (p * 255.0).round());
        for c in 0..3 {
            // 8-bit samples on their own scale (prob-u8: p · 255, rounded).
            let page = got.index_axis(Axis(0), z * 3 + c);
            assert_eq!(max_diff(page, want.index_axis(Axis(0), c)), 0.0, "slice {z} class {c}");
        }
    }
}
