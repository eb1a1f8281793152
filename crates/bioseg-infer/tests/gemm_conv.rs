//! bioseg's convolution (`gemm_conv`) against tract's own on random convolutions: every kernel
//! size, padding, channel count, batch and layout it claims, and the cases it must leave alone.

use bioseg_infer::gemm_conv::GemmConvOptions;
use bioseg_infer::model::OnnxModel;
use bioseg_onnx::{Dim, GraphBuilder, ModelMetadata, Value, attr_ints, model_from_graph, write_model};
use proptest::prelude::*;

/// One convolution layer of a test graph.
#[derive(Clone, Debug)]
struct Layer {
    c_out: usize,
    kernel: [usize; 2],
    pads: [usize; 4],
    stride: usize,
    bias: bool,
}

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect()
}

/// A graph `input → conv (→ relu → conv …) → output`, channels first, or channels last with
/// Transposes around the convolutions (as tf2onnx writes Keras models).
fn model(dir: &std::path::Path, c_in: usize, layers: &[Layer], channels_last: bool) -> OnnxModel {
    let mut g = GraphBuilder::new("convs");
    let sym = |s: &str| Dim::symbol(s);
    let dims = if channels_last {
        [sym("n"), sym("h"), sym("w"), Dim::Fixed(c_in)]
    } else {
        [sym("n"), Dim::Fixed(c_in), sym("h"), sym("w")]
    };
    let mut x: Value = g.input("x", &dims);
    if channels_last {
        x = g.node("Transpose", "to_nchw", &[&x], vec![attr_ints("perm", &[0, 3, 1, 2])]);
    }
    let mut c = c_in;
    for (i, l) in layers.iter().enumerate() {
        if i > 0 {
            x = g.relu(&format!("relu{i}"), &x);
        }
        let w = values(l.c_out * c * l.kernel[0] * l.kernel[1], 7 + i as u64);
        let b = values(l.c_out, 100 + i as u64);
        x = g.conv2d(
            &format!("conv{i}"),
            &x,
            &w,
            [l.c_out, c, l.kernel[0], l.kernel[1]],
            l.bias.then_some(b.as_slice()),
            l.pads,
            l.stride,
        );
        c = l.c_out;
    }
    if channels_last {
        x = g.node("Transpose", "to_nhwc", &[&x], vec![attr_ints("perm", &[0, 2, 3, 1])]);
    }
    let out_dims = [sym("n"), sym("a"), sym("b"), sym("c")];
    g.output(&x, "y", &out_dims);
    let path = dir.join("convs.onnx");
    write_model(&model_from_graph(g.finish(), &ModelMetadata::default(), ""), &path).unwrap();
    OnnxModel::load(&path).unwrap()
}

/// Runs `shape` through tract's convolutions and through bioseg's; returns the largest
/// difference relative to the output's scale, and how many convolutions bioseg's ran.
fn compare(
    dir: &std::path::Path,
    c_in: usize,
    layers: &[Layer],
    channels_last: bool,
    shape: [usize; 4],
) -> (f32, usize) {
    compare_with(dir, c_in, layers, channels_last, shape, GemmConvOptions::default())
}

fn compare_with(
    dir: &std::path::Path,
    c_in: usize,
    layers: &[Layer],
    channels_last: bool,
    shape: [usize; 4],
    options: GemmConvOptions,
) -> (f32, usize) {
    let x = values(shape.iter().product(), 42);
    let tract = model(dir, c_in, layers, channels_last).with_gemm_convolutions(false);
    let ours = model(dir, c_in, layers, channels_last).with_gemm_options(options);
    assert_eq!(tract.gemm_convolution_count(&shape).unwrap(), 0);
    let replaced = ours.gemm_convolution_count(&shape).unwrap();
    let (s1, a) = tract.run(&shape, &x).unwrap().swap_remove(0);
    let (s2, b) = ours.run(&shape, &x).unwrap().swap_remove(0);
    assert_eq!(s1, s2, "output shapes");
    (relative_difference(&a, &b), replaced)
}

/// Writes the graph to `dir/name`, runs `shape` through tract's convolutions and through
/// bioseg's (with `options`): the relative difference ([`relative_difference`]) and how many
/// convolutions were bioseg's. Output shapes must agree.
fn check_graph(
    g: GraphBuilder,
    dir: &std::path::Path,
    name: &str,
    shape: &[usize],
    options: GemmConvOptions,
) -> (f32, usize) {
    let path = dir.join(name);
    write_model(&model_from_graph(g.finish(), &ModelMetadata::default(), ""), &path).unwrap();
    let input = values(shape.iter().product(), 6);
    let ours = OnnxModel::load(&path).unwrap().with_gemm_options(options);
    let tract = OnnxModel::load(&path).unwrap().with_gemm_convolutions(false);
    let (s1, a) = tract.run(shape, &input).unwrap().swap_remove(0);
    let (s2, b) = ours.run(shape, &input).unwrap().swap_remove(0);
    assert_eq!(s1, s2, "output shapes");
    assert!(a.iter().any(|v| *v < 0.0) || a.iter().any(|v| *v > 0.0), "a non-trivial output");
    (relative_difference(&a, &b), ours.gemm_convolution_count(shape).unwrap())
}

/// Largest difference between `b` and the reference `a`, relative to `a`'s largest magnitude
/// (at least 1).
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(1f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (p, q)| m.max((p - q).abs())) / scale
}

fn layer(c_out: usize, kernel: [usize; 2], pads: [usize; 4]) -> Layer {
    Layer { c_out, kernel, pads, stride: 1, bias: true }
}

#[test]
fn unet_like_convolutions_match_tract_in_both_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let layers =
        [layer(16, [3, 3], [1; 4]), layer(16, [3, 3], [1; 4]), layer(2, [3, 3], [1; 4]), layer(1, [1, 1], [0; 4])];
    for channels_last in [false, true] {
        let shape = if channels_last { [2, 37, 45, 1] } else { [2, 1, 37, 45] };
        let (d, n) = compare(dir.path(), 1, &layers, channels_last, shape);
        assert!(d <= 1e-5, "relative difference {d} (channels last: {channels_last})");
        // tract turns the 1×1 convolution into a matrix product itself; the 3×3 ones are ours.
        assert_eq!(n, 3, "channels last: {channels_last}");
    }
}

#[test]
fn what_it_cannot_run_stays_with_tract() {
    let dir = tempfile::tempdir().unwrap();
    let strided = Layer { c_out: 4, kernel: [3, 3], pads: [1; 4], stride: 2, bias: true };
    let (d, n) = compare(dir.path(), 3, &[strided, layer(5, [3, 3], [1; 4])], false, [1, 3, 20, 18]);
    assert!(d <= 1e-5, "relative difference {d}");
    assert_eq!(n, 1, "the stride-2 convolution is tract's, the next one ours");
}

/// Images large enough for several im2col blocks and Winograd bands, run on a pool of 4 threads
/// (whatever the machine): the blocks each thread writes add up to tract's whole output.
#[test]
fn blocks_and_bands_split_over_threads_match_tract() {
    let dir = tempfile::tempdir().unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().unwrap();
    let layers = [layer(16, [3, 3], [1; 4]), layer(20, [3, 3], [1; 4]), layer(4, [2, 2], [1, 0, 0, 1])];
    for (name, options) in [
        (
            "winograd",
            GemmConvOptions { winograd_min_channels: 16, direct_max_channels: 0, ..GemmConvOptions::default() }
                .without_winograd4(),
        ),
        (
            "im2col",
            GemmConvOptions { winograd_min_channels: usize::MAX, direct_max_channels: 0, ..GemmConvOptions::default() }
                .without_winograd4(),
        ),
        // 70 × 41 again: 18 rows of 11 tiles of 4 × 4, blocks of 192 tiles ending mid-row.
        (
            "winograd4",
            GemmConvOptions {
                winograd_min_channels: usize::MAX,
                direct_max_channels: 0,
                winograd4_min_channels: 8,
                winograd4_max_channels: 256,
            },
        ),
    ] {
        for channels_last in [false, true] {
            // 70 × 41: 35 Winograd tile rows of 21 tiles (bands of 12 rows), 2870 im2col pixels.
            let shape = if channels_last { [2, 70, 41, 16] } else { [2, 16, 70, 41] };
            let (d, n) = pool.install(|| compare_with(dir.path(), 16, &layers, channels_last, shape, options.clone()));
            assert!(d <= 1e-5, "{name}, channels last {channels_last}: relative difference {d}");
            assert_eq!(n, 3, "{name}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any kernel size, asymmetric padding, channel counts, batch, image size, bias or not,
    /// channels first or last: the same numbers as tract.
    #[test]
    fn random_convolutions_match_tract(
        c_in in 1usize..=12,
        c_out in 1usize..=20,
        kh in 1usize..=4,
        kw in 1usize..=4,
        pads in proptest::array::uniform4(0usize..=2),
        h in 1usize..=23,
        w in 1usize..=23,
        n in 1usize..=2,
        bias in any::<bool>(),
        channels_last in any::<bool>(),
    ) {
        prop_assume!(h + pads[0] + pads[2] >= kh && w + pads[1] + pads[3] >= kw);
        let dir = tempfile::tempdir().unwrap();
        let l = Layer { c_out, kernel: [kh, kw], pads, stride: 1, bias };
        let shape = if channels_last { [n, h, w, c_in] } else { [n, c_in, h, w] };
        let (d, replaced) = compare(dir.path(), c_in, &[l], channels_last, shape);
        prop_assert!(d <= 1e-5, "relative difference {}", d);
        // tract usually turns 1×1 convolutions into matrix products itself; the others are ours.
        prop_assert!(replaced == 1 || (kh * kw == 1 && replaced == 0));
    }
}

#[test]
fn a_relu_is_folded_only_when_it_is_the_sole_consumer() {
    // y = conv(x); out = y + relu(y): the ReLU must not be folded into the convolution.
    let dir = tempfile::tempdir().unwrap();
    let mut g = GraphBuilder::new("shared");
    let dims = [Dim::symbol("n"), Dim::Fixed(3), Dim::symbol("h"), Dim::symbol("w")];
    let x = g.input("x", &dims);
    let y = g.conv2d("conv", &x, &values(4 * 3 * 9, 1), [4, 3, 3, 3], Some(&values(4, 2)), [1; 4], 1);
    let r = g.relu("relu", &y);
    let out = g.node("Add", "sum", &[&y, &r], vec![]);
    g.output(&out, "y", &[Dim::symbol("n"), Dim::Fixed(4), Dim::symbol("h"), Dim::symbol("w")]);
    let (diff, replaced) = check_graph(g, dir.path(), "shared.onnx", &[1, 3, 17, 19], GemmConvOptions::default());
    assert_eq!(replaced, 1);
    assert!(diff <= 1e-5, "relative difference {diff}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// 3×3 convolutions with many input channels take the Winograd F(2×2, 3×3) path (here from
    /// 16 input channels on): odd and even sizes (partial tiles), any padding, both layouts, a
    /// folded ReLU.
    #[test]
    fn winograd_convolutions_match_tract(
        c_in in 16usize..=24,
        c_out in 16usize..=24,
        pads in proptest::array::uniform4(0usize..=2),
        h in 1usize..=21,
        w in 1usize..=21,
        n in 1usize..=2,
        channels_last in any::<bool>(),
        second in any::<bool>(),
    ) {
        prop_assume!(h + pads[0] + pads[2] >= 3 && w + pads[1] + pads[3] >= 3);
        let dir = tempfile::tempdir().unwrap();
        let mut layers = vec![Layer { c_out, kernel: [3, 3], pads, stride: 1, bias: true }];
        if second {
            // conv → ReLU (folded) → conv.
            layers.push(layer(16, [3, 3], [1; 4]));
        }
        let shape = if channels_last { [n, h, w, c_in] } else { [n, c_in, h, w] };
        let options = GemmConvOptions {
            winograd_min_channels: 16,
            ..GemmConvOptions::default()
        }
        .without_winograd4();
        let (d, replaced) = compare_with(dir.path(), c_in, &layers, channels_last, shape, options);
        prop_assert!(d <= 1e-5, "relative difference {}", d);
        prop_assert_eq!(replaced, layers.len());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Nearest ×2 upsampling followed by a convolution (the U-Net's up-convolution: Keras'
    /// `UpSampling2D` + `Conv2D(2, padding="same")`, or any kernel and padding) runs as one op
    /// computing the output in four phases, without the upsampled copy: same numbers as tract.
    #[test]
    fn upsampling_folded_into_the_next_convolution_matches_tract(
        c_in in 1usize..=12,
        c_out in 1usize..=12,
        kh in 1usize..=3,
        kw in 1usize..=3,
        pads in proptest::array::uniform4(0usize..=2),
        h in 1usize..=9,
        w in 1usize..=9,
        n in 1usize..=2,
        relu_after in any::<bool>(),
    ) {
        prop_assume!(2 * h + pads[0] + pads[2] >= kh && 2 * w + pads[1] + pads[3] >= kw);
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("upconv");
        let x = g.input("x", &[Dim::symbol("n"), Dim::Fixed(c_in), Dim::symbol("h"), Dim::symbol("w")]);
        let u = g.upsample_nearest("up", &x, 2);
        let mut y = g.conv2d("conv", &u, &values(c_out * c_in * kh * kw, 3), [c_out, c_in, kh, kw], Some(&values(c_out, 4)), pads, 1);
        if relu_after {
            y = g.relu("relu", &y);
        }
        g.output(&y, "y", &[Dim::symbol("n"), Dim::Fixed(c_out), Dim::symbol("a"), Dim::symbol("b")]);
        let (diff, replaced) = check_graph(g, dir.path(), "upconv.onnx", &[n, c_in, h, w], GemmConvOptions::default());
        prop_assert!(diff <= 1e-5, "relative difference {}", diff);
        prop_assert!(kh * kw == 1 || replaced == 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// A channel Concat feeding a convolution (the U-Net's skip connections) is folded in: the
    /// convolution reads both branches directly, im2col and Winograd alike, channels first or
    /// last; same numbers as tract.
    #[test]
    fn concatenation_folded_into_the_next_convolution_matches_tract(
        c1 in 1usize..=20,
        c2 in 1usize..=20,
        c_out in 1usize..=20,
        h in 2usize..=13,
        w in 2usize..=13,
        winograd in any::<bool>(),
        channels_last in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("concat");
        let dims = if channels_last {
            [Dim::symbol("n"), Dim::symbol("h"), Dim::symbol("w"), Dim::Fixed(3)]
        } else {
            [Dim::symbol("n"), Dim::Fixed(3), Dim::symbol("h"), Dim::symbol("w")]
        };
        let mut x = g.input("x", &dims);
        if channels_last {
            x = g.node("Transpose", "to_nchw", &[&x], vec![attr_ints("perm", &[0, 3, 1, 2])]);
        }
        let a = g.conv2d("a", &x, &values(c1 * 3 * 9, 11), [c1, 3, 3, 3], Some(&values(c1, 12)), [1; 4], 1);
        let a = g.relu("ra", &a);
        let b = g.conv2d("b", &x, &values(c2 * 3, 13), [c2, 3, 1, 1], None, [0; 4], 1);
        let cat = g.concat_channels("cat", &[&a, &b]);
        let mut y = g.conv2d("c", &cat, &values(c_out * (c1 + c2) * 9, 14), [c_out, c1 + c2, 3, 3], Some(&values(c_out, 15)), [1; 4], 1);
        if channels_last {
            y = g.node("Transpose", "to_nhwc", &[&y], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        }
        g.output(&y, "y", &[Dim::symbol("n"), Dim::symbol("p"), Dim::symbol("q"), Dim::symbol("r")]);
        let shape = if channels_last { [2, h, w, 3] } else { [2, 3, h, w] };
        let options = GemmConvOptions {
            winograd_min_channels: if winograd { 1 } else { 100_000 },
            ..GemmConvOptions::default()
        }
        .without_winograd4();
        let (diff, replaced) = check_graph(g, dir.path(), "concat.onnx", &shape, options);
        prop_assert_eq!(replaced, 2, "the 3×3 branch and the convolution after the Concat");
        prop_assert!(diff <= 1e-5, "relative difference {}", diff);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Channels-first layers of 8–64 input channels and 16 or 32 outputs run on the direct
    /// kernels on AVX-512 machines (`execution` says "direct"), a Concat before them folded in
    /// (the band reads each part): same numbers as tract, with the direct kernels and without.
    #[test]
    fn direct_convolutions_match_tract(
        c1 in 4usize..=24,
        c2 in 4usize..=24,
        wide in any::<bool>(),
        kh in 1usize..=3,
        kw in 1usize..=3,
        pads in proptest::array::uniform4(0usize..=1),
        h in 1usize..=19,
        w in 1usize..=19,
        direct in any::<bool>(),
    ) {
        prop_assume!(h + pads[0] + pads[2] >= kh && w + pads[1] + pads[3] >= kw);
        let c_out = if wide { 32 } else { 16 };
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("direct");
        let x = g.input("x", &[Dim::symbol("n"), Dim::Fixed(3), Dim::symbol("h"), Dim::symbol("w")]);
        let a = g.conv2d("a", &x, &values(c1 * 3, 21), [c1, 3, 1, 1], Some(&values(c1, 22)), [0; 4], 1);
        let b = g.conv2d("b", &x, &values(c2 * 3, 23), [c2, 3, 1, 1], None, [0; 4], 1);
        let cat = g.concat_channels("cat", &[&a, &b]);
        let c_in = c1 + c2;
        let y = g.conv2d("c", &cat, &values(c_out * c_in * kh * kw, 24), [c_out, c_in, kh, kw], Some(&values(c_out, 25)), pads, 1);
        let y = g.relu("r", &y);
        g.output(&y, "y", &[Dim::symbol("n"), Dim::Fixed(c_out), Dim::symbol("p"), Dim::symbol("q")]);
        let shape = [2, 3, h, w];
        let options = GemmConvOptions {
            direct_max_channels: if direct { 64 } else { 0 },
            ..GemmConvOptions::default()
        }
        .without_winograd4();
        let (diff, _) = check_graph(g, dir.path(), "direct.onnx", &shape, options.clone());
        prop_assert!(diff <= 1e-5, "relative difference {}", diff);
        let model = OnnxModel::load(&dir.path().join("direct.onnx")).unwrap().with_gemm_options(options);
        let ops = model.execution(&shape).unwrap();
        let avx512 = avx512();
        // tract turns some 1×1 and 1-pixel convolutions into matrix products before bioseg's
        // pass; every one it leaves a convolution is bioseg's, on the direct kernels exactly
        // when they are on and can run it.
        let layer = format!("BiosegGemmConv {c_in}→{c_out} {kh}×{kw}");
        let ours: Vec<_> = ops.iter().filter(|o| o.bioseg && o.op.starts_with(&layer)).collect();
        prop_assert!(!ours.is_empty() || kh * kw == 1 || h * w == 1, "{:?}", ops);
        let expected = direct && avx512 && (8..=64).contains(&c_in);
        prop_assert!(ours.iter().all(|o| o.op.ends_with("direct") == expected), "{:?}", ops);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// 3×3 layers of 8 input channels and more, with outputs in multiples of 8, take Winograd
    /// F(4×4, 3×3) on AVX-512 machines (`execution` says "winograd4"): partial tiles, paddings
    /// 0–2, both layouts, a batch of two, a Concat before and a ReLU after folded in; same
    /// numbers as tract.
    #[test]
    fn winograd4_convolutions_match_tract(
        c1 in 1usize..=20,
        c2 in 1usize..=20,
        outs in 1usize..=3,
        pads in proptest::array::uniform4(0usize..=2),
        h in 1usize..=30,
        w in 1usize..=70,
        channels_last in any::<bool>(),
    ) {
        prop_assume!(h + pads[0] + pads[2] >= 3 && w + pads[1] + pads[3] >= 3);
        let (c_in, c_out) = (c1 + c2, 8 * outs);
        let dir = tempfile::tempdir().unwrap();
        let mut g = GraphBuilder::new("winograd4");
        let dims = if channels_last {
            [Dim::symbol("n"), Dim::symbol("h"), Dim::symbol("w"), Dim::Fixed(3)]
        } else {
            [Dim::symbol("n"), Dim::Fixed(3), Dim::symbol("h"), Dim::symbol("w")]
        };
        let mut x = g.input("x", &dims);
        if channels_last {
            x = g.node("Transpose", "to_nchw", &[&x], vec![attr_ints("perm", &[0, 3, 1, 2])]);
        }
        let a = g.conv2d("a", &x, &values(c1 * 3, 31), [c1, 3, 1, 1], Some(&values(c1, 32)), [0; 4], 1);
        let b = g.conv2d("b", &x, &values(c2 * 3, 33), [c2, 3, 1, 1], None, [0; 4], 1);
        let cat = g.concat_channels("cat", &[&a, &b]);
        let y = g.conv2d("c", &cat, &values(c_out * c_in * 9, 34), [c_out, c_in, 3, 3], Some(&values(c_out, 35)), pads, 1);
        let mut y = g.relu("r", &y);
        if channels_last {
            y = g.node("Transpose", "to_nhwc", &[&y], vec![attr_ints("perm", &[0, 2, 3, 1])]);
        }
        g.output(&y, "y", &[Dim::symbol("n"), Dim::symbol("p"), Dim::symbol("q"), Dim::symbol("r")]);
        let shape = if channels_last { [2, h, w, 3] } else { [2, 3, h, w] };
        let options = GemmConvOptions { winograd4_min_channels: 8, ..GemmConvOptions::default() };
        let (diff, _) = check_graph(g, dir.path(), "winograd4.onnx", &shape, options.clone());
        prop_assert!(diff <= 1e-5, "relative difference {}", diff);
        let model = OnnxModel::load(&dir.path().join("winograd4.onnx")).unwrap().with_gemm_options(options);
        let ops = model.execution(&shape).unwrap();
        let layer = format!("BiosegGemmConv {c_in}→{c_out} 3×3");
        let ours: Vec<_> = ops.iter().filter(|o| o.bioseg && o.op.starts_with(&layer)).collect();
        prop_assert!(!ours.is_empty() || h * w == 1, "{:?}", ops);
        let expected = avx512() && c_in >= 8;
        prop_assert!(ours.iter().all(|o| o.op.ends_with("winograd4") == expected), "{:?}", ops);
    }
}

/// Whether this machine has AVX-512 (what the direct kernels need).
fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}
