//! Times every convolution kernel on the layer shapes of a classic U-Net (no framework around
//! them): forward, data and weight gradients per layer, in GFLOP/s.
//!
//!     cargo run --release -p bioseg-kernels --example unet_layers -- [F] [size] [batch]
//!     LAYER=9 cargo run ...   # only the tenth layer of the list
//!     FOLDED=1 cargo run ...  # decoder up-sampling as the folded transposed convolution

use std::time::Instant;

use bioseg_kernels::*;

fn time(mut f: impl FnMut()) -> f64 {
    f();
    let t0 = Instant::now();
    let mut n = 0;
    while n < 3 || t0.elapsed().as_secs_f64() < 0.3 {
        f();
        n += 1;
    }
    t0.elapsed().as_secs_f64() / n as f64
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let (f, size, batch) =
        (args.first().copied().unwrap_or(16), args.get(1).copied().unwrap_or(256), args.get(2).copied().unwrap_or(2));
    // (input channels, output channels, kernel, size) of every convolution; kernel 0 stands for
    // the decoder's folded up-sampling (`bioseg-train`'s `upsample_conv2x2`): a transposed
    // convolution 3×3, stride 2, padding 1, output padding 1, from half the size.
    let folded = std::env::var("FOLDED").is_ok_and(|v| v == "1");
    let mut layers = vec![];
    let mut c = 1;
    for level in 0..=4 {
        let s = size >> level;
        layers.push((c, f << level, 3, s));
        layers.push((f << level, f << level, 3, s));
        c = f << level;
    }
    for level in (0..4).rev() {
        let s = size >> level;
        layers.push((f << (level + 1), f << level, if folded { 0 } else { 2 }, s));
        layers.push((f << (level + 1), f << level, 3, s));
        layers.push((f << level, f << level, 3, s));
    }
    println!(
        "{:>22} {:>9} {:>9} {:>9}   (GFLOP/s; {} threads)",
        "layer",
        "forward",
        "data",
        "weight",
        rayon::current_num_threads()
    );
    let (mut total, mut flops) = (0.0, 0.0);
    let only: Option<usize> = std::env::var("LAYER").ok().and_then(|v| v.parse().ok());
    for (i, (ci, co, k, s)) in layers.into_iter().enumerate() {
        if only.is_some_and(|l| l != i) {
            continue;
        }
        let (tf, td, tw, fl, name);
        if k == 0 {
            // The transposed convolution x [ci, s/2] → y [co, s]; `g` is the convolution y → x.
            let g =
                Conv2dGeometry::transposed(batch, ci, [s / 2; 2], co, [3, 3], [2, 2], [1, 1], [1, 1], [1, 1]).unwrap();
            let x = vec![0.5f32; g.output_len()];
            let w = vec![0.1f32; g.weight_len()];
            let mut y = vec![0f32; g.input_len()];
            let mut dx = vec![0f32; g.output_len()];
            let mut dw = vec![0f32; g.weight_len()];
            fl = 2.0 * g.macs() as f64;
            tf = time(|| conv_transpose2d_forward(&g, &x, &w, None, &mut y).unwrap());
            td = time(|| conv2d_forward(&g, &y, &w, None, &mut dx).unwrap());
            tw = time(|| conv2d_backward_weight(&g, &y, &x, &mut dw).unwrap());
            name = format!("{ci}→{co} up 3×3/2 @{s}²");
        } else {
            let g = Conv2dGeometry::new(batch, ci, [s, s], co, [k, k], [1, 1], [(k - 1) / 2; 2], [1, 1]).unwrap();
            let x = vec![0.5f32; g.input_len()];
            let w = vec![0.1f32; g.weight_len()];
            let mut y = vec![0f32; g.output_len()];
            let mut dx = vec![0f32; g.input_len()];
            let mut dw = vec![0f32; g.weight_len()];
            fl = 2.0 * g.macs() as f64;
            tf = time(|| conv2d_forward(&g, &x, &w, None, &mut y).unwrap());
            td = time(|| conv2d_backward_data(&g, &w, &y, &mut dx).unwrap());
            tw = time(|| conv2d_backward_weight(&g, &x, &y, &mut dw).unwrap());
            name = format!("{ci}→{co} {k}×{k} @{s}²");
        }
        println!("{:>22} {:>9.0} {:>9.0} {:>9.0}", name, fl / tf / 1e9, fl / td / 1e9, fl / tw / 1e9);
        total += tf + td + tw;
        flops += 3.0 * fl;
    }
    println!(
        "all layers: {:.1} ms, {:.0} GFLOP/s; matrix-product peak {:.0} GFLOP/s",
        1000.0 * total,
        flops / total / 1e9,
        matrix_product_rate(1.0)
    );
}
