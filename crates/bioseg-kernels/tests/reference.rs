//! Every kernel against a direct, loop-by-loop reference on random shapes (proptest): kernels
//! 1–3, padding 0–2, stride 1–2, dilation 1–2, 1–20 channels, batch 1–3, sizes down to 1×1.

use bioseg_kernels::*;
use proptest::prelude::*;

/// Max pooling by its definition: values, first-maximum indices and the routed gradient.
fn reference_max_pool(g: &Pool2dGeometry, x: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<i64>, Vec<f32>) {
    let ([h, w], [kh, kw], [sy, sx], [ho, wo]) = (g.in_hw, g.kernel, g.stride, g.out_hw);
    let (mut want, mut want_idx, mut want_dx) = (vec![], vec![], vec![0f32; x.len()]);
    for p in 0..g.planes {
        for r in 0..ho {
            for c in 0..wo {
                let mut best = (f32::NEG_INFINITY, usize::MAX);
                for ry in 0..kh {
                    for rx in 0..kw {
                        let i = (r * sy + ry) * w + c * sx + rx;
                        if best.1 == usize::MAX || x[p * h * w + i] > best.0 {
                            best = (x[p * h * w + i], i);
                        }
                    }
                }
                want_dx[p * h * w + best.1] += dy[(p * ho + r) * wo + c];
                want.push(best.0);
                want_idx.push(best.1 as i64);
            }
        }
    }
    (want, want_idx, want_dx)
}

/// The U-Net's 2×2 / 2 pooling has its own row loop: every size up to 9×9, odd ones included,
/// with many ties (values in {-2, …, 2}) so the first-maximum order is checked at each position.
#[test]
fn two_by_two_pooling_matches_the_reference_with_ties() {
    for (h, w, seed) in (2..=9).flat_map(|h| (2..=9).flat_map(move |w| (0..4).map(move |s| (h, w, s)))) {
        let g = Pool2dGeometry::new(3, [h, w], [2, 2], [2, 2]).unwrap();
        let x: Vec<f32> = values(3 * h * w, seed).iter().map(|v| (v * 2.0).round()).collect();
        let dy = values(3 * g.out_hw[0] * g.out_hw[1], seed + 7);
        let (want, want_idx, _) = reference_max_pool(&g, &x, &dy);
        let (mut y, mut idx) = (vec![f32::NAN; want.len()], vec![-1i64; want.len()]);
        max_pool2d_forward(&g, &x, &mut y, &mut idx).unwrap();
        assert_eq!((&y, &idx), (&want, &want_idx), "{h}x{w} seed {seed}");
    }
}

/// The inference pooling (values only, tract's fold from `f32::MIN`): every size up to 9×9,
/// ties, and special values (NaN is passed over, −∞ gives `f32::MIN`, as tract's).
#[test]
fn inference_pooling_matches_the_reference_values() {
    for (h, w, seed) in (1..=9).flat_map(|h| (1..=9).flat_map(move |w| (0..3).map(move |s| (h, w, s)))) {
        let mut x: Vec<f32> = values(2 * h * w, seed).iter().map(|v| (v * 2.0).round()).collect();
        if seed == 2 {
            x[0] = f32::NAN;
            let last = x.len() - 1;
            x[last] = f32::NEG_INFINITY;
        }
        let (ho, wo) = (h / 2, w / 2);
        let mut want = Vec::new();
        for p in 0..2 {
            for r in 0..ho {
                for c in 0..wo {
                    let mut m = f32::MIN;
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let v = x[p * h * w + (2 * r + dy) * w + 2 * c + dx];
                        if v > m {
                            m = v;
                        }
                    }
                    want.push(m);
                }
            }
        }
        let mut y = vec![f32::NAN; want.len()];
        max_pool_2x2(2, [h, w], &x, &mut y).unwrap();
        assert_eq!(y, want, "{h}x{w} seed {seed}");
        // Where the windows hold no special value it is the training pooling's maximum.
        if h >= 2 && w >= 2 && seed < 2 {
            let g = Pool2dGeometry::new(2, [h, w], [2, 2], [2, 2]).unwrap();
            let (mut y2, mut idx) = (vec![0f32; want.len()], vec![0i64; want.len()]);
            max_pool2d_forward(&g, &x, &mut y2, &mut idx).unwrap();
            assert_eq!(y, y2, "{h}x{w} seed {seed}");
        }
    }
    assert!(max_pool_2x2(1, [4, 4], &[0.0; 15], &mut [0.0; 4]).is_err());
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    // A small LCG: reproducible, no extra dependency.
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// (input index, output index, weight index) of every multiply-add of the convolution.
fn for_each_tap(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let [h, w] = g.in_hw;
    let [ho, wo] = g.out_hw;
    for n in 0..g.batch {
        for o in 0..g.c_out {
            for r in 0..ho {
                for c in 0..wo {
                    for i in 0..g.c_in {
                        for ry in 0..g.kernel[0] {
                            for rx in 0..g.kernel[1] {
                                let y = (r * g.stride[0] + ry * g.dilation[0]) as isize - g.padding[0] as isize;
                                let x = (c * g.stride[1] + rx * g.dilation[1]) as isize - g.padding[1] as isize;
                                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                                    continue;
                                }
                                let xi = ((n * g.c_in + i) * h + y as usize) * w + x as usize;
                                let yi = ((n * g.c_out + o) * ho + r) * wo + c;
                                let wi = ((o * g.c_in + i) * g.kernel[0] + ry) * g.kernel[1] + rx;
                                f(xi, yi, wi);
                            }
                        }
                    }
                }
            }
        }
    }
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-3f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-4 * scale, "{what}[{i}]: {g} vs {w} (scale {scale})");
    }
}

fn geometry() -> impl Strategy<Value = Conv2dGeometry> {
    (
        1..=3usize,
        1..=20usize,
        1..=20usize,
        1..=12usize,
        1..=12usize,
        1..=3usize,
        1..=3usize,
        0..=2usize,
        1..=2usize,
        1..=2usize,
    )
        .prop_filter_map("kernel fits", |(batch, c_in, c_out, h, w, kh, kw, pad, stride, dil)| {
            Conv2dGeometry::new(batch, c_in, [h, w], c_out, [kh, kw], [stride, 3 - stride], [pad, pad.min(1)], [dil, 1])
                .ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn convolution_and_its_gradients_match_the_reference(g in geometry(), seed in 0u64..1000) {
        let x = values(g.input_len(), seed);
        let wt = values(g.weight_len(), seed + 1);
        let bias = values(g.c_out, seed + 2);
        let dy = values(g.output_len(), seed + 3);

        let mut want = vec![0f32; g.output_len()];
        for (i, v) in want.iter_mut().enumerate() {
            *v = bias[i / (g.out_hw[0] * g.out_hw[1]) % g.c_out];
        }
        let (mut want_dx, mut want_dw) = (vec![0f32; g.input_len()], vec![0f32; g.weight_len()]);
        for_each_tap(&g, |xi, yi, wi| {
            want[yi] += x[xi] * wt[wi];
            want_dx[xi] += dy[yi] * wt[wi];
            want_dw[wi] += dy[yi] * x[xi];
        });
        // The bias gradient is a plain sum of up to hundreds of values of both signs: compared
        // in f64 against a tolerance on the sum of their magnitudes (a result near zero after
        // cancellation carries the rounding of the terms, not of the result).
        let (mut want_db, mut db_magnitude) = (vec![0f64; g.c_out], vec![0f64; g.c_out]);
        for (i, v) in dy.iter().enumerate() {
            let c = i / (g.out_hw[0] * g.out_hw[1]) % g.c_out;
            want_db[c] += f64::from(*v);
            db_magnitude[c] += f64::from(v.abs());
        }

        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward(&g, &x, &wt, Some(&bias), &mut y).unwrap();
        assert_close(&y, &want, "forward");
        let want_relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        let mut y = vec![f32::NAN; g.output_len()];
        conv2d_forward_relu(&g, &x, &wt, Some(&bias), &mut y).unwrap();
        assert_close(&y, &want_relu, "forward with ReLU");
        let mut dx = vec![f32::NAN; g.input_len()];
        conv2d_backward_data(&g, &wt, &dy, &mut dx).unwrap();
        assert_close(&dx, &want_dx, "data gradient");
        let mut dw = vec![f32::NAN; g.weight_len()];
        conv2d_backward_weight(&g, &x, &dy, &mut dw).unwrap();
        assert_close(&dw, &want_dw, "weight gradient");
        let mut db = vec![f32::NAN; g.c_out];
        conv2d_backward_bias(&g, &dy, &mut db).unwrap();
        for (c, (&got, &want)) in db.iter().zip(&want_db).enumerate() {
            let tolerance = 1e-6 * db_magnitude[c] + 1e-7;
            assert!((f64::from(got) - want).abs() <= tolerance, "bias gradient[{c}]: {got} vs {want} (±{tolerance})");
        }
    }

    #[test]
    fn transposed_convolution_is_the_data_gradient_plus_bias(
        batch in 1..=2usize, c_in in 1..=8usize, c_out in 1..=8usize, h in 1..=7usize, w in 1..=7usize,
        k in 1..=3usize, stride in 1..=2usize, pad in 0..=1usize, seed in 0u64..1000,
    ) {
        let output_padding = [stride - 1, 0];
        let Ok(g) = Conv2dGeometry::transposed(batch, c_in, [h, w], c_out, [k, k], [stride, stride], [pad, pad], output_padding, [1, 1]) else {
            return Ok(());
        };
        prop_assert_eq!(g.out_hw, [h, w]);
        let x = values(g.output_len(), seed);
        let wt = values(g.weight_len(), seed + 1);
        let bias = values(c_out, seed + 2);
        let mut want = vec![0f32; g.input_len()];
        for_each_tap(&g, |xi, yi, wi| want[xi] += x[yi] * wt[wi]);
        let plane = g.in_hw[0] * g.in_hw[1];
        for (i, v) in want.iter_mut().enumerate() {
            *v += bias[i / plane % c_out];
        }
        let mut y = vec![f32::NAN; g.input_len()];
        conv_transpose2d_forward(&g, &x, &wt, Some(&bias), &mut y).unwrap();
        assert_close(&y, &want, "transposed convolution");
    }

    #[test]
    fn max_pooling_and_its_gradient_match_the_reference(
        planes in 1..=6usize, h in 1..=11usize, w in 1..=11usize, kh in 1..=3usize, kw in 1..=3usize,
        sy in 1..=3usize, sx in 1..=3usize, seed in 0u64..1000, ties in any::<bool>(),
    ) {
        let Ok(g) = Pool2dGeometry::new(planes, [h, w], [kh, kw], [sy, sx]) else { return Ok(()) };
        let mut x = values(planes * h * w, seed);
        if ties {
            x.iter_mut().for_each(|v| *v = (*v * 2.0).round());
        }
        let [ho, wo] = g.out_hw;
        let dy = values(planes * ho * wo, seed + 1);
        let (want, want_idx, want_dx) = reference_max_pool(&g, &x, &dy);
        let (mut y, mut idx) = (vec![0f32; want.len()], vec![0i64; want.len()]);
        max_pool2d_forward(&g, &x, &mut y, &mut idx).unwrap();
        prop_assert_eq!(&y, &want);
        prop_assert_eq!(&idx, &want_idx);
        let mut dx = vec![f32::NAN; x.len()];
        max_pool2d_backward(planes, [h, w], &dy, &idx, &mut dx).unwrap();
        assert_close(&dx, &want_dx, "pooling gradient");
    }

    #[test]
    fn nearest_upsampling_and_its_gradient_match_the_reference(
        planes in 1..=4usize, h in 1..=9usize, w in 1..=9usize, fy in 1..=3usize, fx in 1..=3usize, seed in 0u64..1000,
    ) {
        let x = values(planes * h * w, seed);
        let (ho, wo) = (h * fy, w * fx);
        prop_assert_eq!(whole_factors([h, w], [ho, wo]).unwrap(), [fy, fx]);
        let dy = values(planes * ho * wo, seed + 1);
        let mut want = vec![0f32; planes * ho * wo];
        let mut want_dx = vec![0f32; x.len()];
        for p in 0..planes {
            for r in 0..ho {
                for c in 0..wo {
                    want[(p * ho + r) * wo + c] = x[(p * h + r / fy) * w + c / fx];
                    want_dx[(p * h + r / fy) * w + c / fx] += dy[(p * ho + r) * wo + c];
                }
            }
        }
        let mut y = vec![f32::NAN; want.len()];
        upsample_nearest(planes, [h, w], [fy, fx], &x, &mut y).unwrap();
        prop_assert_eq!(&y, &want);
        let mut dx = vec![f32::NAN; x.len()];
        upsample_nearest_backward(planes, [h, w], [fy, fx], &dy, &mut dx).unwrap();
        assert_close(&dx, &want_dx, "up-sampling gradient");
    }
}

#[test]
fn wrong_lengths_and_shapes_are_errors_not_panics() {
    let g = Conv2dGeometry::new(1, 2, [4, 4], 3, [3, 3], [1, 1], [1, 1], [1, 1]).unwrap();
    let mut y = vec![0f32; g.output_len()];
    assert!(matches!(
        conv2d_forward(&g, &[0.0; 5], &vec![0.0; g.weight_len()], None, &mut y),
        Err(KernelError::Length { .. })
    ));
    assert!(matches!(
        Conv2dGeometry::new(1, 1, [2, 2], 1, [5, 5], [1, 1], [0, 0], [1, 1]),
        Err(KernelError::KernelTooLarge { .. })
    ));
    assert!(matches!(Conv2dGeometry::new(1, 1, [2, 2], 1, [1, 1], [0, 1], [0, 0], [1, 1]), Err(KernelError::Zero(_))));
    assert!(matches!(whole_factors([3, 3], [7, 6]), Err(KernelError::NotWholeFactor { .. })));
}

#[test]
fn large_layers_split_into_many_blocks_match_the_reference() {
    // Enough pixels and channels for several blocks per image and several threads; and enough
    // output channels for the weight gradient's other layout.
    for g in [
        Conv2dGeometry::new(2, 24, [40, 36], 20, [3, 3], [1, 1], [1, 1], [1, 1]).unwrap(),
        Conv2dGeometry::new(1, 6, [12, 11], 272, [3, 3], [1, 1], [1, 1], [1, 1]).unwrap(),
    ] {
        check_large(&g);
    }
}

#[test]
fn direct_kernel_layers_match_the_reference() {
    // The direct kernel's layers (8–64 channels read, whole vectors of 16 written; on AVX-512
    // machines): several bands per image, one-pixel images, uneven padding, kernels wider than
    // tall, channel counts that are not multiples of 8, and 32 output channels (two chunks);
    // 3-wide kernels run the row tiles (one chunk, two, and two plus one).
    for (batch, c_in, [h, w], c_out, kernel, pad) in [
        (2, 16, [37, 41], 16, [3, 3], [1, 1]),
        (2, 32, [29, 35], 64, [3, 3], [1, 1]),
        (1, 10, [1, 1], 16, [3, 3], [1, 1]),
        (3, 24, [5, 9], 32, [2, 3], [0, 2]),
        (1, 64, [13, 6], 16, [3, 1], [2, 0]),
        (2, 8, [70, 3], 48, [1, 3], [0, 1]),
    ] {
        let g = Conv2dGeometry::new(batch, c_in, [h, w], c_out, kernel, [1, 1], pad, [1, 1]).unwrap();
        check_large(&g);
        // The data gradient reads the output's 16–48 channels and writes the input's.
        let t = Conv2dGeometry::new(batch, c_out, [h, w], c_in.next_multiple_of(16), kernel, [1, 1], pad, [1, 1]);
        check_large(&t.unwrap());
    }
}

#[test]
fn direct_kernel_stride_two_layers_match_the_reference() {
    // The direct kernels at stride 2 (forward and weight gradient; the U-Net's folded decoder
    // step runs its data gradient as such a convolution): odd and even sizes, padding 0–2,
    // kernels 1–3 and wider than tall, two chunks of output channels, and several bands.
    for (batch, c_in, [h, w], c_out, kernel, pad) in [
        (2, 16, [64, 64], 32, [3, 3], [1, 1]),
        (2, 16, [37, 41], 32, [3, 3], [1, 1]),
        (1, 8, [2, 2], 16, [3, 3], [1, 1]),
        (3, 24, [20, 17], 16, [3, 3], [0, 2]),
        (1, 12, [9, 12], 48, [2, 3], [0, 1]),
        (2, 10, [5, 7], 16, [1, 1], [0, 0]),
        (1, 64, [11, 10], 16, [3, 2], [2, 1]),
    ] {
        let g = Conv2dGeometry::new(batch, c_in, [h, w], c_out, kernel, [2, 2], pad, [1, 1]).unwrap();
        check_large(&g);
        // Its data gradient as a transposed convolution with a bias, which the phases add as
        // they write.
        let (x, wt, bias) = (values(g.output_len(), 8), values(g.weight_len(), 9), values(g.c_in, 10));
        let mut want = vec![0f32; g.input_len()];
        for_each_tap(&g, |xi, yi, wi| want[xi] += x[yi] * wt[wi]);
        let plane = h * w;
        want.iter_mut().enumerate().for_each(|(i, v)| *v += bias[i / plane % g.c_in]);
        let mut y = vec![f32::NAN; g.input_len()];
        conv_transpose2d_forward(&g, &x, &wt, Some(&bias), &mut y).unwrap();
        assert_close(&y, &want, "transposed convolution with bias");
    }
}

fn check_large(g: &Conv2dGeometry) {
    let g = *g;
    let x = values(g.input_len(), 5);
    let wt = values(g.weight_len(), 6);
    let dy = values(g.output_len(), 7);
    let (mut want, mut want_dx, mut want_dw) =
        (vec![0f32; g.output_len()], vec![0f32; g.input_len()], vec![0f32; g.weight_len()]);
    for_each_tap(&g, |xi, yi, wi| {
        want[yi] += x[xi] * wt[wi];
        want_dx[xi] += dy[yi] * wt[wi];
        want_dw[wi] += dy[yi] * x[xi];
    });
    let mut y = vec![0f32; g.output_len()];
    conv2d_forward(&g, &x, &wt, None, &mut y).unwrap();
    assert_close(&y, &want, "forward");
    check_relu(&g, &x, &wt, &want);
    let mut dx = vec![0f32; g.input_len()];
    conv2d_backward_data(&g, &wt, &dy, &mut dx).unwrap();
    assert_close(&dx, &want_dx, "data gradient");
    let mut dw = vec![0f32; g.weight_len()];
    conv2d_backward_weight(&g, &x, &dy, &mut dw).unwrap();
    assert_close(&dw, &want_dw, "weight gradient");
}

/// The fused forward with a ReLU against `max(want + bias, 0)` (`want`: the reference without
/// bias), with a bias that leaves a good share of the outputs negative.
fn check_relu(g: &Conv2dGeometry, x: &[f32], wt: &[f32], want: &[f32]) {
    let bias = values(g.c_out, 11);
    let plane = g.out_hw[0] * g.out_hw[1];
    let want: Vec<f32> = want.iter().enumerate().map(|(i, v)| (v + bias[i / plane % g.c_out]).max(0.0)).collect();
    let zeros = want.iter().filter(|&&v| v == 0.0).count();
    assert!(want.len() < 8 || (zeros > want.len() / 8 && zeros < want.len()), "{zeros} of {} clamped", want.len());
    let mut y = vec![f32::NAN; g.output_len()];
    conv2d_forward_relu(g, x, wt, Some(&bias), &mut y).unwrap();
    assert_close(&y, &want, "forward with ReLU");
}
