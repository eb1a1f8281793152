//! The tiling property of `bioseg predict`: with a halo covering the receptive field, tiled
//! output equals whole-image inference to 1e-5 at every pixel, for any image size; with a
//! smaller halo and Gaussian blending, the difference stays within a stated bound.

use std::path::{Path, PathBuf};

use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::{Blend, Parallelism, TileSize, reflect};
use bioseg_onnx::TensorLayout;
use bioseg_train::device::CpuBackend;
use bioseg_train::model::unet::{Unet, UnetConfig};
use ndarray::{Array3, ArrayView3};

fn export_tiny(dir: &Path, depth: usize, classes: usize) -> PathBuf {
    let _serial = bioseg_suite::burn_lock();
    <CpuBackend as burn::tensor::backend::Backend>::seed(&Default::default(), 42);
    let model: Unet<CpuBackend> =
        UnetConfig::new().with_filters(4).with_depth(depth).with_classes(classes).init(&Default::default());
    let path = dir.join(format!("unet_d{depth}_c{classes}.onnx"));
    bioseg_train::export::write_onnx(&model.to_onnx(&bioseg_train::export::base_metadata()), &path).unwrap();
    path
}

/// An image with structure at all scales, values 0..255.
fn image(h: usize, w: usize, c: usize) -> Array3<f32> {
    Array3::from_shape_fn((h, w, c), |(y, x, k)| {
        let v = ((x as f32 * 0.37 + k as f32).sin() * (y as f32 * 0.23).cos() + 1.0) * 100.0
            + ((x * 31 + y * 17 + k * 7) % 23) as f32;
        v.clamp(0.0, 255.0)
    })
}

/// Whole-image inference: the image mirrored by `halo` on every side (plus up to the size
/// multiple), one model run, cropped back. Returns `[K, H, W]` probabilities.
fn whole(model: &OnnxModel, img: ArrayView3<f32>, halo: usize, multiple: usize, layout: TensorLayout) -> Array3<f32> {
    let (h, w, c) = img.dim();
    let ph = (h + 2 * halo).div_ceil(multiple) * multiple;
    let pw = (w + 2 * halo).div_ceil(multiple) * multiple;
    let mut data = vec![0f32; c * ph * pw];
    for y in 0..ph {
        for x in 0..pw {
            let (sy, sx) = (reflect(y as i64 - halo as i64, h), reflect(x as i64 - halo as i64, w));
            for k in 0..c {
                let idx = match layout {
                    TensorLayout::Nhwc => (y * pw + x) * c + k,
                    _ => (k * ph + y) * pw + x,
                };
                data[idx] = img[[sy, sx, k]] / 255.0;
            }
        }
    }
    let shape = match layout {
        TensorLayout::Nhwc => vec![1, ph, pw, c],
        _ => vec![1, c, ph, pw],
    };
    let (oshape, out) = model.run(&shape, &data).unwrap().swap_remove(0);
    let k = if layout == TensorLayout::Nhwc { oshape[3] } else { oshape[1] };
    Array3::from_shape_fn((k, h, w), |(kk, y, x)| {
        let (y, x) = (y + halo, x + halo);
        match layout {
            TensorLayout::Nhwc => out[(y * pw + x) * k + kk],
            _ => out[(kk * ph + y) * pw + x],
        }
    })
}

fn max_diff(a: &Array3<f32>, b: &Array3<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tiled_equals_whole_image_for_any_size() {
    let dir = tempfile::tempdir().unwrap();
    for (depth, classes) in [(2, 1), (3, 3)] {
        let model = OnnxModel::load(&export_tiny(dir.path(), depth, classes)).unwrap();
        let halo = model.metadata().recommended_halo.unwrap();
        let multiple = 1 << depth;
        for (h, w) in [(40, 57), (64, 64), (23, 100), (97, 33), (5, 7)] {
            let img = image(h, w, 1);
            let reference = whole(&model, img.view(), halo, multiple, TensorLayout::Nchw);
            for (tile, batch, parallel) in
                [(16, 1, Parallelism::Tiles), (32, 3, Parallelism::Tiles), (16, 1, Parallelism::Layers)]
            {
                let p = Predictor::new(
                    &model,
                    PredictOptions { tile: TileSize::Pixels(tile), batch, parallel, ..Default::default() },
                )
                .unwrap();
                assert_eq!(p.halo(), halo);
                let tiled = p.predict(img.view(), 255.0, &|_| {}).unwrap();
                let d = max_diff(&tiled.probs, &reference);
                assert!(
                    d <= 1e-5,
                    "depth {depth} {h}x{w} tile {tile} {parallel}: max diff {d} ({} tiles)",
                    tiled.tiles
                );
            }
        }
    }
}

#[test]
fn small_halo_with_gaussian_blending_stays_within_bound() {
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&export_tiny(dir.path(), 2, 1)).unwrap();
    let img = image(96, 120, 1);
    let reference = whole(&model, img.view(), 28, 4, TensorLayout::Nchw);
    let opts = PredictOptions {
        tile: TileSize::Pixels(32),
        halo: Some(8),
        overlap: 16,
        blend: Blend::Gaussian,
        ..Default::default()
    };
    let blended = Predictor::new(&model, opts.clone()).unwrap().predict(img.view(), 255.0, &|_| {}).unwrap();
    let cropped = Predictor::new(&model, PredictOptions { blend: Blend::Crop, ..opts })
        .unwrap()
        .predict(img.view(), 255.0, &|_| {})
        .unwrap();
    let (db, dc) = (max_diff(&blended.probs, &reference), max_diff(&cropped.probs, &reference));
    // The stated bound for a halo of 8 px (receptive-field radius 30 px, seeded random weights): 0.1.
    assert!(db <= 0.1, "gaussian blend differs by {db} (crop: {dc})");
    assert!(db <= 1.1 * dc + 1e-4, "blending ({db}) should not be worse than cropping ({dc})");
}

fn keras(name: &str) -> PathBuf {
    bioseg_suite::root().join("tests/fixtures/keras").join(name)
}

#[test]
fn keras_nhwc_dynamic_unet_tiles_exactly() {
    let model = OnnxModel::load(&keras("unet_dynamic_tf2onnx_op13.onnx")).unwrap();
    let p =
        Predictor::new(&model, PredictOptions { tile: TileSize::Pixels(48), halo: Some(128), ..Default::default() })
            .unwrap();
    assert_eq!(p.io().layout, TensorLayout::Nhwc);
    let img = image(70, 90, 1);
    let tiled = p.predict(img.view(), 255.0, &|_| {}).unwrap();
    let reference = whole(&model, img.view(), 128, 16, TensorLayout::Nhwc);
    let d = max_diff(&tiled.probs, &reference);
    assert!(d <= 1e-5, "max diff {d}");
}

#[test]
fn keras_fixed_size_model_tiles_a_larger_image() {
    let model = OnnxModel::load(&keras("unet_fixed256_tf2onnx_op13.onnx")).unwrap();
    let p = Predictor::new(&model, PredictOptions::default()).unwrap();
    assert_eq!(p.io().fixed_size, Some((256, 256)));
    let img = image(300, 420, 1);
    let pred = p.predict(img.view(), 255.0, &|_| {}).unwrap();
    assert_eq!(pred.probs.dim(), (1, 300, 420));
    assert!(pred.tiles >= 4);
    // Each output pixel equals the model run on the window around its tile: check the first
    // tile's core against a direct run on the mirrored window.
    let plan = p.plan(300, 420).unwrap();
    let (wh, ww) = plan.window();
    assert_eq!((wh, ww), (256, 256));
    let mut window = vec![0f32; wh * ww];
    for y in 0..wh {
        for x in 0..ww {
            window[y * ww + x] = img[[plan.y.source_index(0, y), plan.x.source_index(0, x), 0]] / 255.0;
        }
    }
    let (_, out) = model.run(&[1, 256, 256, 1], &window).unwrap().swap_remove(0);
    let (hy, hx) = (plan.y.halo, plan.x.halo);
    let (ty, tx) = plan.y.crop_range(0);
    let (_, tx_end) = plan.x.crop_range(0);
    let mut d = 0f32;
    for y in ty..plan.y.crop_range(0).1 {
        for x in tx..tx_end {
            d = d.max((pred.probs[[0, y, x]] - out[(y + hy) * ww + x + hx]).abs());
        }
    }
    assert!(d <= 1e-6, "max diff {d}");
}

/// `--tta`: the average of the 8 flips and 90° rotations, each predicted and mapped back —
/// checked against predictions of explicitly rotated and flipped copies of the image.
#[test]
fn test_time_augmentation_averages_the_eight_symmetries() {
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&export_tiny(dir.path(), 2, 3)).unwrap();
    let (h, w) = (37, 52); // not square: rotations change the tiling
    let img = image(h, w, 1);
    let opts = PredictOptions { tile: TileSize::Pixels(32), ..Default::default() };
    let plain = Predictor::new(&model, opts.clone()).unwrap();
    let tta = Predictor::new(&model, PredictOptions { tta: true, ..opts }).unwrap();
    let got = tta.predict(img.view(), 255.0, &|_| {}).unwrap();
    assert_eq!(got.probs.dim(), (3, h, w));
    assert_eq!(got.tiles, tta.tile_count(h, w).unwrap());

    // Rotations by quarter turns (counter-clockwise) and a horizontal mirror, as owned copies.
    let rot = |a: &Array3<f32>| -> Array3<f32> {
        let (ah, aw, c) = a.dim();
        Array3::from_shape_fn((aw, ah, c), |(y, x, k)| a[[x, aw - 1 - y, k]])
    };
    let unrot = |p: &Array3<f32>| -> Array3<f32> {
        // Inverse of `rot` on class maps [K, H', W'].
        let (k, ph, pw) = p.dim();
        Array3::from_shape_fn((k, pw, ph), |(kk, y, x)| p[[kk, ph - 1 - x, y]])
    };
    let mirror = |a: &Array3<f32>| -> Array3<f32> {
        let (ah, aw, c) = a.dim();
        Array3::from_shape_fn((ah, aw, c), |(y, x, k)| a[[y, aw - 1 - x, k]])
    };
    let unmirror = |p: &Array3<f32>| -> Array3<f32> {
        let (k, ph, pw) = p.dim();
        Array3::from_shape_fn((k, ph, pw), |(kk, y, x)| p[[kk, y, pw - 1 - x]])
    };
    let mut sum = Array3::<f32>::zeros((3, h, w));
    for m in [false, true] {
        let mut a = if m { mirror(&img) } else { img.clone() };
        for r in 0..4 {
            let mut p = plain.predict(a.view(), 255.0, &|_| {}).unwrap().probs;
            for _ in 0..r {
                p = unrot(&p);
            }
            if m {
                p = unmirror(&p);
            }
            sum += &p;
            a = rot(&a);
        }
    }
    sum /= 8.0;
    let d = max_diff(&got.probs, &sum);
    assert!(d < 1e-5, "TTA differs from the explicit average by {d}");
    // And it is not simply the plain prediction (the model is not symmetric).
    let p = plain.predict(img.view(), 255.0, &|_| {}).unwrap().probs;
    assert!(max_diff(&got.probs, &p) > 1e-4);
}
