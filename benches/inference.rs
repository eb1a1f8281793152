//! Criterion micro-benchmarks of the inference engine's parts (`cargo bench -p bioseg-suite`):
//! tiling geometry, one tract run of one tile (the hot loop), and whole tiled predictions of a
//! 1024² image with crop and Gaussian blending, for an F=16 depth-4 U-Net exported by bioseg.
//! The end-to-end comparison with ONNX Runtime is tools/bench/run.sh (BENCHMARKS.md).

use std::path::PathBuf;

use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::{Blend, TilePlan, TileSize};
use bioseg_train::device::CpuBackend;
use bioseg_train::model::unet::{Unet, UnetConfig};
use criterion::{Criterion, criterion_group, criterion_main};
use ndarray::Array3;

fn export_unet(dir: &std::path::Path, filters: usize) -> PathBuf {
    <CpuBackend as burn::tensor::backend::Backend>::seed(&Default::default(), 7);
    let model: Unet<CpuBackend> = UnetConfig::new().with_filters(filters).with_depth(4).init(&Default::default());
    let path = dir.join(format!("unet_f{filters}.onnx"));
    bioseg_train::export::write_onnx(&model.to_onnx(&bioseg_train::export::base_metadata()), &path).unwrap();
    path
}

fn image(h: usize, w: usize) -> Array3<f32> {
    Array3::from_shape_fn((h, w, 1), |(y, x, _)| {
        (((x * 31 + y * 17) % 251) as f32 + (x as f32 * 0.1).sin() * 4.0).abs()
    })
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&export_unet(dir.path(), 16)).unwrap();

    c.bench_function("tiling/plan_4096x4096_tile256", |b| {
        b.iter(|| TilePlan::new(4096, 4096, (256, 256), 0, 32, 16).unwrap().tiles().len())
    });

    // One tile window (256 + 2 × 32), one tract run on one thread: the unit of all the work.
    let window = vec![0.5f32; 320 * 320];
    model.run(&[1, 1, 320, 320], &window).unwrap(); // plan built outside the timing
    let mut g = c.benchmark_group("model_run");
    g.sample_size(10);
    g.bench_function("unet_f16_window320", |b| b.iter(|| model.run(&[1, 1, 320, 320], &window).unwrap()));
    g.finish();

    let img = image(1024, 1024);
    let mut g = c.benchmark_group("predict_1024x1024");
    g.sample_size(10);
    for (name, opts) in [
        ("crop_tile256", PredictOptions { tile: TileSize::Pixels(256), halo: Some(32), ..Default::default() }),
        (
            "gaussian_tile256_overlap32",
            PredictOptions {
                tile: TileSize::Pixels(256),
                halo: Some(32),
                overlap: 32,
                blend: Blend::Gaussian,
                ..Default::default()
            },
        ),
        ("crop_tile512", PredictOptions { tile: TileSize::Pixels(512), halo: Some(32), ..Default::default() }),
    ] {
        let p = Predictor::new(&model, opts).unwrap();
        p.predict(img.view(), 255.0, &|_| {}).unwrap(); // plans per tile shape built once
        g.bench_function(name, |b| b.iter(|| p.predict(img.view(), 255.0, &|_| {}).unwrap()));
    }
    g.finish();
}

criterion_group!(inference, benches);
criterion_main!(inference);
