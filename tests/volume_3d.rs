//! Volumetric (rank-5, 3-D convolution) models: tiled in 3-D with halos read from the real
//! neighbouring data (z included), the prediction equals whole-volume inference to 1e-5 for
//! any volume size, in channels-first (NCDHW, symbolic size) and channels-last (NDHWC, fixed
//! size, Keras' layout) models; `bioseg predict` streams a volume slab by slab through such a
//! model into OME-Zarr with the same result; 2-D inputs and TTA are refused clearly.

use std::path::{Path, PathBuf};

use bioseg_data::volume::open_volume;
use bioseg_infer::OnnxModel;
use bioseg_infer::predict::{PredictOptions, Predictor};
use bioseg_infer::tiling::{Blend, TileSize, reflect};
use bioseg_onnx::{
    Dim, GraphBuilder, ModelMetadata, Normalization, OutputActivation, TensorLayout, Value, attr_int, attr_ints,
    attr_string,
};
use bioseg_suite::{bioseg, run_fails, run_ok};
use ndarray::{Array4, ArrayView4};

/// Deterministic pseudo-random weights in [-0.5, 0.5).
fn weights(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn conv3d(g: &mut GraphBuilder, name: &str, x: &Value, cin: usize, cout: usize, seed: u64) -> Value {
    let w = g.weight(&format!("{name}.w"), &[cout, cin, 3, 3, 3], &weights(cout * cin * 27, seed));
    let b = g.weight(&format!("{name}.b"), &[cout], &weights(cout, seed + 100));
    g.node(
        "Conv",
        name,
        &[x, &w, &b],
        vec![attr_ints("kernel_shape", &[3, 3, 3]), attr_ints("pads", &[1; 6]), attr_ints("strides", &[1, 1, 1])],
    )
}

fn dims5(channels_last: bool, c: usize, size: Option<[usize; 3]>) -> Vec<Dim> {
    let sp: Vec<Dim> = match size {
        Some(s) => s.iter().map(|&v| Dim::Fixed(v)).collect(),
        None => vec![Dim::symbol("depth"), Dim::symbol("height"), Dim::symbol("width")],
    };
    let mut d = vec![Dim::symbol("batch")];
    if channels_last {
        d.extend(sp);
        d.push(Dim::Fixed(c));
    } else {
        d.push(Dim::Fixed(c));
        d.extend(sp);
    }
    d
}

/// A small 3-D U-Net-like model, NCDHW, symbolic size: conv → relu → maxpool 2 → conv → relu →
/// nearest ×2 → concat with the skip → conv → softmax over 2 classes. Size multiple 2.
fn unet3d(dir: &Path) -> PathBuf {
    let mut g = GraphBuilder::new("unet3d");
    let x = g.input("volume", &dims5(false, 1, None));
    let c1 = conv3d(&mut g, "c1", &x, 1, 4, 1);
    let r1 = g.node("Relu", "r1", &[&c1], vec![]);
    let p = g.node(
        "MaxPool",
        "pool",
        &[&r1],
        vec![attr_ints("kernel_shape", &[2, 2, 2]), attr_ints("strides", &[2, 2, 2]), attr_ints("pads", &[0; 6])],
    );
    let c2 = conv3d(&mut g, "c2", &p, 4, 4, 2);
    let r2 = g.node("Relu", "r2", &[&c2], vec![]);
    let roi = Value(String::new());
    let scales = g.constant_f32("up.scales", &[5], &[1.0, 1.0, 2.0, 2.0, 2.0]);
    let up = g.node(
        "Resize",
        "up",
        &[&r2, &roi, &scales],
        vec![
            attr_string("mode", "nearest"),
            attr_string("coordinate_transformation_mode", "asymmetric"),
            attr_string("nearest_mode", "floor"),
        ],
    );
    let cat = g.node("Concat", "cat", &[&r1, &up], vec![attr_int("axis", 1)]);
    let c3 = conv3d(&mut g, "c3", &cat, 8, 2, 3);
    let y = g.node("Softmax", "probs", &[&c3], vec![attr_int("axis", 1)]);
    g.output(&y, "probs", &dims5(false, 2, None));
    let md = ModelMetadata {
        layout: Some(TensorLayout::Nchw),
        input_channels: Some(1),
        classes: vec!["background".into(), "mitochondria".into()],
        output: Some(OutputActivation::Softmax),
        normalization: Some(Normalization::Divide(255.0)),
        size_multiple: Some(2),
        recommended_halo: Some(8),
        ..Default::default()
    };
    let path = dir.join("unet3d.onnx");
    bioseg_onnx::write_model(&bioseg_onnx::model_from_graph(g.finish(), &md, ""), &path).unwrap();
    path
}

/// A Keras-style model: NDHWC input fixed at 12 × 20 × 20, transposed inside the graph, two
/// 3-D convolutions, sigmoid, no bioseg metadata.
fn keras_like(dir: &Path) -> PathBuf {
    let mut g = GraphBuilder::new("keras3d");
    let x = g.input("input_1", &dims5(true, 1, Some([12, 20, 20])));
    let t = g.node("Transpose", "to_ncdhw", &[&x], vec![attr_ints("perm", &[0, 4, 1, 2, 3])]);
    let c1 = conv3d(&mut g, "c1", &t, 1, 3, 7);
    let r1 = g.node("Relu", "r1", &[&c1], vec![]);
    let c2 = conv3d(&mut g, "c2", &r1, 3, 1, 8);
    let s = g.node("Sigmoid", "s", &[&c2], vec![]);
    let y = g.node("Transpose", "to_ndhwc", &[&s], vec![attr_ints("perm", &[0, 2, 3, 4, 1])]);
    g.output(&y, "output", &dims5(true, 1, Some([12, 20, 20])));
    let path = dir.join("keras3d.onnx");
    bioseg_onnx::write_model(&bioseg_onnx::model_from_graph(g.finish(), &ModelMetadata::default(), ""), &path).unwrap();
    path
}

/// A volume `[Z, Y, X, 1]` with structure at all scales, values 0..255.
fn volume(z: usize, y: usize, x: usize) -> Array4<f32> {
    Array4::from_shape_fn((z, y, x, 1), |(k, i, j, _)| {
        let v = ((j as f32 * 0.41 + k as f32 * 0.7).sin() * (i as f32 * 0.29 - k as f32 * 0.3).cos() + 1.0) * 100.0
            + ((j * 31 + i * 17 + k * 13) % 23) as f32;
        v.clamp(0.0, 255.0).round()
    })
}

/// Whole-volume inference: mirrored by `halo` on every side (up to the size multiple), one run
/// (for a fixed-size model: the volume placed in one window), cropped. `[K, Z, Y, X]`.
fn whole(model: &OnnxModel, vol: ArrayView4<f32>, halo: usize, multiple: usize, channels_last: bool) -> Array4<f32> {
    let (d, h, w, _) = vol.dim();
    let pad = |n: usize| (n + 2 * halo).div_ceil(multiple) * multiple;
    let (pd, ph, pw) = (pad(d), pad(h), pad(w));
    let mut data = vec![0f32; pd * ph * pw];
    for z in 0..pd {
        for y in 0..ph {
            for x in 0..pw {
                let s = |i: usize, n: usize| reflect(i as i64 - halo as i64, n);
                data[(z * ph + y) * pw + x] = vol[[s(z, d), s(y, h), s(x, w), 0]] / 255.0;
            }
        }
    }
    let shape = if channels_last { vec![1, pd, ph, pw, 1] } else { vec![1, 1, pd, ph, pw] };
    let (oshape, out) = model.run(&shape, &data).unwrap().swap_remove(0);
    let k = if channels_last { oshape[4] } else { oshape[1] };
    Array4::from_shape_fn((k, d, h, w), |(kk, z, y, x)| {
        let (z, y, x) = (z + halo, y + halo, x + halo);
        if channels_last { out[((z * ph + y) * pw + x) * k + kk] } else { out[((kk * pd + z) * ph + y) * pw + x] }
    })
}

fn max_diff(a: &Array4<f32>, b: &Array4<f32>) -> f32 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn tiled_3d_prediction_equals_whole_volume_inference_for_any_size() {
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&unet3d(dir.path())).unwrap();
    for (d, h, w) in [(19, 45, 38), (8, 16, 16), (5, 9, 30), (1, 20, 20)] {
        let vol = volume(d, h, w);
        let reference = whole(&model, vol.view(), 8, 2, false);
        for (tile, tile_z, blend) in
            [(16, 8, Blend::Crop), (12, 4, Blend::Crop), (64, 64, Blend::Crop), (16, 8, Blend::Gaussian)]
        {
            let opts = PredictOptions {
                tile: TileSize::Pixels(tile),
                tile_z,
                blend,
                overlap: if blend == Blend::Gaussian { 4 } else { 0 },
                ..Default::default()
            };
            let p = Predictor::new(&model, opts).unwrap();
            assert!(p.io().volumetric);
            assert_eq!(p.halo(), 8);
            let got = p.predict_volume(vol.view(), 255.0, &|_| {}).unwrap();
            let diff = max_diff(&got.probs, &reference);
            assert!(
                diff < 1e-5,
                "{d}x{h}x{w}, tile {tile}/{tile_z} {blend:?}: differs by {diff} ({} tiles)",
                got.tiles
            );
        }
    }
}

#[test]
fn a_keras_style_channels_last_fixed_size_model_tiles_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = OnnxModel::load(&keras_like(dir.path())).unwrap();
    let p = Predictor::new(&model, PredictOptions { halo: Some(3), ..Default::default() }).unwrap();
    assert_eq!(p.io().layout, TensorLayout::Nhwc);
    assert_eq!((p.io().fixed_depth, p.io().fixed_size), (Some(12), Some((20, 20))));
    assert_eq!(p.io().activation, OutputActivation::Sigmoid);
    let vol = volume(17, 33, 29);
    let got = p.predict_volume(vol.view(), 255.0, &|_| {}).unwrap();
    assert!(got.tiles > 8, "{} tiles", got.tiles);
    // The reference: the model on a mirrored window around each voxel is what tiling emulates;
    // a symbolic copy of the same graph runs the whole volume at once.
    let mut g = bioseg_onnx::read_model(model.path()).unwrap();
    let graph = g.graph.as_mut().unwrap();
    for io in graph.input.iter_mut().chain(graph.output.iter_mut()) {
        let shape = io.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap();
        for (i, d) in shape.dim.iter_mut().enumerate().skip(1).take(3) {
            d.value = Some(bioseg_onnx::proto::DimensionValue::DimParam(format!("s{i}")));
        }
    }
    let sym = dir.path().join("keras3d_symbolic.onnx");
    bioseg_onnx::write_model(&g, &sym).unwrap();
    let sym = OnnxModel::load(&sym).unwrap();
    let reference = whole(&sym, vol.view(), 3, 1, true);
    let diff = max_diff(&got.probs, &reference);
    assert!(diff < 1e-5, "fixed-size NDHWC tiling differs from whole-volume inference by {diff}");
}

#[test]
fn bioseg_predict_streams_a_volume_through_a_3d_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model_path = unet3d(d);
    let model = OnnxModel::load(&model_path).unwrap();
    let (z, h, w) = (13, 40, 36);
    let vol = volume(z, h, w);
    let pages: Vec<Vec<u8>> =
        (0..z).map(|k| vol.index_axis(ndarray::Axis(0), k).iter().map(|&v| v as u8).collect()).collect();
    let tif = d.join("stack.tif");
    bioseg_data::write_gray_u8_pages(&tif, w as u32, h as u32, &pages).unwrap();
    let reference = whole(&model, vol.view(), 8, 2, false);

    let out = d.join("probs.zarr");
    let stdout =
        run_ok(bioseg().args(["-q", "predict", "-m"]).arg(&model_path).arg("-i").arg(&tif).arg("-o").arg(&out).args([
            "--output-type",
            "prob-f32",
            "--tile",
            "16",
            "--tile-z",
            "6",
            "--slab",
            "4",
        ]));
    assert!(stdout.contains("megapixels/s"), "{stdout}");
    let v = open_volume(&out, None).unwrap();
    assert_eq!(v.info().shape, [z, h, w]);
    let got = v.read_slab(0..z, 0..h, 0..w).unwrap(); // [z, y, x, class]
    let got = got.permuted_axes([3, 0, 1, 2]).to_owned();
    let diff = max_diff(&got, &reference);
    assert!(diff < 1e-5, "streamed 3-D prediction differs from whole-volume inference by {diff}");

    // A part of the volume: the same values there (context read from the data around it).
    let part = d.join("part.zarr");
    run_ok(bioseg().args(["-q", "predict", "-m"]).arg(&model_path).arg("-i").arg(&tif).arg("-o").arg(&part).args([
        "--output-type",
        "prob-f32",
        "--z-range",
        "5:11",
        "--roi",
        "3:30,10:36",
        "--slab",
        "3",
    ]));
    let p = open_volume(&part, None).unwrap();
    let got = p.read_slab(0..6, 0..27, 0..26).unwrap().permuted_axes([3, 0, 1, 2]).to_owned();
    let want = reference.slice(ndarray::s![.., 5..11, 3..30, 10..36]).to_owned();
    assert!(max_diff(&got, &want) < 1e-5);

    // A 2-D image, or TTA, with a 3-D model: one clear line.
    let png = d.join("slice.png");
    bioseg_data::write_gray_u8_png(&png, w as u32, h as u32, &pages[0]).unwrap();
    run_fails(
        bioseg().args(["predict", "-m"]).arg(&model_path).arg("-i").arg(&png).arg("-o").arg(d.join("p.png")),
        "volumetric",
    );
    run_fails(
        bioseg().args(["predict", "--tta", "-m"]).arg(&model_path).arg("-i").arg(&tif).arg("-o").arg(d.join("t.zarr")),
        "--tta",
    );
}
