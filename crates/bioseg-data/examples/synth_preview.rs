//! Writes one synthetic sample as PNGs for a visual check and times the generator.
//!
//! `cargo run --release -p bioseg-data --example synth_preview -- OUT_DIR [SIZE] [SEED] [LENGTH_SCALE]`

use std::time::Instant;

use bioseg_data::{SynthParams, generate, write_gray_u8_png, write_rgb_u8_png};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = std::path::PathBuf::from(args.next().unwrap_or_else(|| "synth_preview".into()));
    let size: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let seed: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1);
    std::fs::create_dir_all(&out)?;
    let scale: f32 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1.0);
    let params = SynthParams { width: size, height: size, ..SynthParams::default() }.scaled(scale);
    let start = Instant::now();
    let s = generate(&params, seed)?;
    println!("generated {size}x{size} in {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let n = size as u32;
    write_gray_u8_png(out.join("image.png"), n, n, s.image.as_slice().unwrap_or(&[]))?;
    write_gray_u8_png(out.join("membrane.png"), n, n, s.membrane.as_slice().unwrap_or(&[]))?;
    let overlay: Vec<u8> = s
        .image
        .iter()
        .zip(&s.classes)
        .flat_map(|(&g, &c)| match c {
            1 => [255, g / 3, g / 3],
            2 => [g / 3, 255, g / 3],
            _ => [g, g, g],
        })
        .collect();
    write_rgb_u8_png(out.join("overlay.png"), n, n, &overlay)?;
    // A 3x close-up of 128x128 pixels around a mitochondrion.
    let mito: Vec<(usize, usize)> = s.classes.indexed_iter().filter(|(_, c)| **c == 2).map(|(p, _)| p).collect();
    if let Some(&(cy, cx)) = mito.get(mito.len() / 2) {
        let half = 64.min(size / 2);
        let x0 = cx.saturating_sub(half).min(size - 2 * half);
        let y0 = cy.saturating_sub(half).min(size - 2 * half);
        let z = 3;
        let side = 2 * half * z;
        let mut crop = Vec::with_capacity(side * side);
        for y in 0..side {
            for x in 0..side {
                crop.push(s.image[[y0 + y / z, x0 + x / z]]);
            }
        }
        write_gray_u8_png(out.join("closeup.png"), side as u32, side as u32, &crop)?;
    }
    Ok(())
}
