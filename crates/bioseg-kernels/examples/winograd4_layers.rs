//! One 3×3 inference layer, one thread: the direct kernels (`DirectConv`) against Winograd
//! F(2×2, 3×3) (`Winograd`) and F(4×4, 3×3) (`Winograd4`), milliseconds per call (best of `REPEAT`, default 7), for the
//! layers of an F=16 U-Net on a 544² window (or `LAYERS="c_in,c_out,size ..."`).
//!
//!     RAYON_NUM_THREADS=1 cargo run --release -p bioseg-kernels --example winograd4_layers
use bioseg_kernels::{
    ConvInput, DirectConv, Winograd, Winograd4, Winograd4Buffers, WinogradBuffers, channel_lookup, transform_kernel,
};

fn best(repeat: usize, mut f: impl FnMut()) -> f64 {
    // FLUSH=1: the caches are flushed before each call (1 GiB written), as a layer's input
    // computed long before it would be.
    let mut flush = std::env::var("FLUSH").is_ok_and(|v| v == "1").then(|| vec![0u8; 1 << 30]);
    f();
    (0..repeat)
        .map(|_| {
            if let Some(buffer) = flush.as_mut() {
                buffer.iter_mut().for_each(|b| *b = b.wrapping_add(1));
                std::hint::black_box(&buffer);
            }
            let t = std::time::Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let repeat = std::env::var("REPEAT").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    let layers: Vec<[usize; 3]> = match std::env::var("LAYERS") {
        Ok(v) => v
            .split_whitespace()
            .map(|l| {
                let n: Vec<usize> = l.split(',').map(|x| x.parse().expect("c_in,c_out,size")).collect();
                [n[0], n[1], n[2]]
            })
            .collect(),
        Err(_) => vec![
            [16, 16, 544],
            [32, 16, 544],
            [16, 32, 272],
            [32, 32, 272],
            [64, 32, 272],
            [64, 64, 136],
            [128, 64, 136],
            [128, 128, 68],
            [256, 128, 68],
            [256, 256, 34],
        ],
    };
    println!("| layer | direct ms | Winograd F(2×2,3×3) ms | Winograd F(4×4,3×3) ms | speed-up over the faster |");
    println!("|---|---|---|---|---|");
    for [c_in, c_out, size] in layers {
        let x: Vec<f32> = (0..c_in * size * size).map(|i| ((i * 7919) % 2001) as f32 / 1000.0 - 1.0).collect();
        let k: Vec<f32> = (0..c_out * c_in * 9).map(|i| ((i * 104729) % 2001) as f32 / 1e5 - 0.01).collect();
        let bias = vec![0.1f32; c_out];
        let mut y = vec![0f32; c_out * size * size];
        let direct = DirectConv::new(&k, &bias, [c_out, c_in], [3, 3], [1, 1], 255);
        let t_direct =
            direct.map(|d| best(repeat, || d.run(&[(&x, c_in)], 1, [size, size], [size, size], true, &mut y).unwrap()));
        let w4 = Winograd4::new(&k, &bias, c_out, c_in).expect("AVX-512");
        // Two halves, as a folded Concat gives them (PARTS=2).
        let halves = std::env::var("PARTS").is_ok_and(|v| v == "2");
        let (a, b) = x.split_at(c_in / 2 * size * size);
        let counts = if halves { vec![c_in / 2, c_in - c_in / 2] } else { vec![c_in] };
        let parts = if halves { vec![(a, c_in / 2), (b, c_in - c_in / 2)] } else { vec![(&x[..], c_in)] };
        let lookup = channel_lookup(&counts);
        let input = ConvInput::new(parts, &lookup, (size, size), false);
        let (th, tw) = Winograd4::tiles((size, size));
        let mut buf = Winograd4Buffers::default();
        let t_w4 = best(repeat, || {
            // SAFETY: y holds the whole output.
            unsafe {
                w4.convolve_tiles(
                    &input,
                    (size, size),
                    [1, 1],
                    y.as_mut_ptr(),
                    [size * size, 1],
                    (size, size),
                    0..th * tw,
                    true,
                    &mut buf,
                )
            }
        });
        let u = transform_kernel(&k, c_out, c_in);
        let f2 = Winograd { u: &u, bias: &bias, c_in, c_out, top: 1, left: 1, relu: true };
        let mut buf2 = WinogradBuffers::default();
        let t_f2 =
            best(repeat, || f2.convolve(&input, (size, size), &mut y, [size * size, 1], (size, size), &mut buf2));
        let d = t_direct.map_or("—".into(), |t| format!("{t:.2}"));
        let r = t_direct.unwrap_or(f64::INFINITY).min(t_f2) / t_w4;
        println!("| {c_in}→{c_out} at {size}² | {d} | {t_f2:.2} | {t_w4:.2} | {r:.2} |");
    }
}
