//! BioImage Model Zoo packages end to end: packages written by the zoo's own tooling
//! (`tools/bioimageio/make_fixtures.py`: `bioimageio.spec` packed them, ONNX Runtime computed
//! their test outputs, `bioimageio.core`'s `test_model` passed them) run through bioseg equal to
//! their expected outputs (the whole tensor; tiled, away from the borders bioseg mirrors),
//! through the library and the binary; a package bioseg exports reads back as the model it came
//! from.

use std::path::{Path, PathBuf};

use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::TileSize;
use bioseg_suite::{bioseg, bioseg_train, root, run_ok};
use bioseg_train::device::CpuBackend;
use bioseg_train::model::unet::{Unet, UnetConfig};
use ndarray::{Array3, ArrayD, Axis, s};

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/bioimageio").join(name)
}

/// The package's test input and expected output.
fn test_tensors(model: &OnnxModel) -> (ArrayD<f32>, ArrayD<f32>) {
    let p = model.package().expect("a package");
    let (i, o) = p.test_tensors().unwrap().expect("test tensors");
    (
        bioseg_data::parse_npy(Path::new("in.npy"), &i).unwrap(),
        bioseg_data::parse_npy(Path::new("out.npy"), &o).unwrap(),
    )
}

fn max_diff<'a>(a: impl IntoIterator<Item = &'a f32>, b: impl IntoIterator<Item = &'a f32>) -> f32 {
    a.into_iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn zoo_tooling_packages_run_equal_to_onnx_runtime() {
    let mut predictions = vec![];
    for (name, channels, classes) in [("zoo-nearest-op11.zip", 1, 1), ("zoo-rgb-3class-op17.zip", 3, 3)] {
        let model = OnnxModel::load(&fixture(name)).unwrap();
        // The whole test tensor, as bioimageio.core runs it.
        let t = bioseg_infer::bioimageio::run_test_tensors(&model).unwrap();
        assert!(t.max_abs_diff <= 1e-4, "{name}: {}", t.max_abs_diff);
        assert_eq!(t.input_shape[1], channels);
        // Tiled: bioseg mirrors the image at its borders (the U-Net paper's overlap-tile
        // strategy) where a run of the whole tensor pads with zeros inside the graph, so the two
        // agree away from the borders (beyond the halo, which covers the receptive field), and
        // tiles of any size agree everywhere (the package's per-sample normalisation takes the
        // whole image's statistics, never a tile's).
        let (x, want) = test_tensors(&model);
        let chw = x.index_axis(Axis(0), 0).into_dimensionality::<ndarray::Ix3>().unwrap();
        let image: Array3<f32> = chw.permuted_axes([1, 2, 0]).to_owned();
        let predict = |tile: usize| {
            let options = PredictOptions { tile: TileSize::Pixels(tile), ..PredictOptions::default() };
            Predictor::new(&model, options).unwrap().predict(image.view(), 255.0, &|_| {}).unwrap()
        };
        let (whole, tiled) = (predict(256), predict(48));
        assert_eq!((whole.tiles, tiled.tiles), (1, 16), "{name}");
        assert_eq!(tiled.probs.dim().0, classes);
        let d = max_diff(tiled.probs.iter(), whole.probs.iter());
        assert!(d <= 1e-5, "{name}: tiles change the prediction by {d}");
        let halo = model.metadata().recommended_halo.unwrap();
        let inner = |a: ndarray::ArrayView3<f32>| {
            a.slice_move(s![.., halo..a.dim().1 - halo, halo..a.dim().2 - halo]).to_owned()
        };
        let want = want.index_axis(Axis(0), 0).into_dimensionality::<ndarray::Ix3>().unwrap();
        let d = max_diff(inner(tiled.probs.view()).iter(), inner(want.view()).iter());
        assert!(d <= 1e-4, "{name}: tiled prediction differs from ONNX Runtime's by {d} inside the borders");
        predictions.push((name, tiled.probs));
    }
    // The binary gives the library's prediction, on the 1-channel package's test input written
    // as a float32 TIFF.
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&fixture("zoo-nearest-op11.zip")).unwrap();
    let (x, _) = test_tensors(&model);
    let (h, w) = (x.shape()[2], x.shape()[3]);
    let tif = dir.path().join("input.tif");
    bioseg_data::write_gray_f32_tiff(&tif, w as u32, h as u32, x.as_slice().unwrap()).unwrap();
    let out = dir.path().join("prob.tif");
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    run_ok(
        bioseg()
            .args(["predict", "-q", "-m", &s(&fixture("zoo-nearest-op11.zip")), "-i", &s(&tif), "-o", &s(&out)])
            .args(["--output-type", "prob-f32", "--tile", "48"]),
    );
    let got = bioseg_data::read_image(&out).unwrap().data;
    let d = max_diff(got.iter(), predictions[0].1.iter());
    assert!(d <= 1e-6, "bioseg predict on the package differs from the library's prediction by {d}");
    // inspect --test passes, and names the package.
    let report = run_ok(bioseg().args(["inspect", "-m", &s(&fixture("zoo-rgb-3class-op17.zip")), "--test"]));
    assert!(report.contains("BioImage Model Zoo package: zoo-rgb-3class-op17"), "{report}");
    assert!(report.contains("normalisation zscore") && report.contains("max |bioseg - expected|"), "{report}");
}

#[test]
fn an_exported_package_reads_back_as_its_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for classes in [1, 3] {
        let onnx = d.join(format!("unet{classes}.onnx"));
        {
            let _serial = bioseg_suite::burn_lock();
            let model: Unet<CpuBackend> =
                UnetConfig::new().with_filters(4).with_depth(2).with_classes(classes).init(&Default::default());
            let mut meta = bioseg_train::export::base_metadata();
            meta.normalization = Some(bioseg_onnx::Normalization::Percentile { low: 2.0, high: 98.0 });
            bioseg_train::export::write_onnx(&model.to_onnx(&meta), &onnx).unwrap();
        }
        let sample = d.join("sample.png");
        let px: Vec<u8> = (0..300 * 280).map(|i| ((i % 300) * 3 + (i / 300) * 7 % 200) as u8).collect();
        bioseg_data::write_gray_u8(&sample, 300, 280, &px).unwrap();
        let zip = d.join(format!("unet{classes}.zip"));
        let s = |p: &Path| p.to_str().unwrap().to_owned();
        let printed = run_ok(bioseg_train().args([
            "export",
            "--model",
            &s(&onnx),
            "--bioimageio",
            &s(&zip),
            "--sample",
            &s(&sample),
            "--author",
            "Test Author",
            "--cite",
            "A data paper|10.1000/xyz",
        ]));
        assert!(printed.contains("BioImage Model Zoo package written to"), "{printed}");
        let package = bioseg_bioimageio::Package::open(&zip).unwrap();
        let description = package.description();
        assert_eq!(
            description.metadata.normalization,
            Some(bioseg_onnx::Normalization::Percentile { low: 2.0, high: 98.0 })
        );
        assert_eq!(description.metadata.size_multiple, Some(4));
        // The package and the ONNX file predict the same, and the test tensors are reproduced.
        let from_zip = OnnxModel::load(&zip).unwrap();
        let t = bioseg_infer::bioimageio::run_test_tensors(&from_zip).unwrap();
        assert_eq!(t.max_abs_diff, 0.0);
        assert_eq!(t.output_shape[1], classes);
        let image = Array3::from_shape_fn((40, 56, 1), |(y, x, _)| px[y * 300 + x] as f32);
        let predict = |m: &OnnxModel| {
            Predictor::new(m, PredictOptions::default()).unwrap().predict(image.view(), 255.0, &|_| {}).unwrap()
        };
        assert_eq!(predict(&from_zip).probs, predict(&OnnxModel::load(&onnx).unwrap()).probs);
        // Exporting again over it needs --overwrite.
        let again = bioseg_train()
            .args(["export", "--model", &s(&onnx), "--bioimageio", &s(&zip), "--sample", &s(&sample)])
            .output()
            .unwrap();
        assert!(!again.status.success());
    }
}
