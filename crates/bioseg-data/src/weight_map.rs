//! The U-Net paper's per-pixel loss weights (Ronneberger et al. 2015, eq. 2):
//!
//! `w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / 2σ²)`
//!
//! where `d1` and `d2` are the distances from pixel `x` to the nearest and the second nearest
//! cell, and `w_c` balances the class frequencies. The thin background gaps between touching
//! cells get weights up to `w_c + w0`, so the network learns to separate the cells there, which
//! is what the Rand scores of the ISBI challenge measure.
//!
//! Cells are the 4-connected regions of one non-background class (class 0 is the background:
//! the membranes of an ISBI 2012 label), as [`crate::segmentation_scores::class_regions`] finds
//! them. Distances are exact Euclidean distances between pixel centres, 0 inside the cell.
//!
//! Cost: one exact squared distance transform per cell, restricted to the cell's bounding box
//! grown by the reach `R` beyond which the border term is below 10⁻³·`w0` (with `d2 ≥ d1`, a
//! cell further than `R = σ·√(2·ln 1000)` ≈ 3.7σ cannot be the second nearest of a pixel with a
//! term above that; such terms are left out, an error below 10⁻³·`w0`). An ISBI section (512²,
//! ~100 cells, σ = 5) takes a few milliseconds; the trainer computes the map once per training
//! image, and warps it with the image (`bioseg-train`'s augmentation).

use ndarray::{Array2, ArrayView2};

use crate::segmentation_scores::class_regions;

/// Parameters of the border term; `w_c` comes from the class weights.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BorderWeights {
    /// Weight added at a point equidistant and adjacent to two cells (paper: 10).
    pub w0: f32,
    /// Width of the border term in pixels (paper: 5).
    pub sigma: f32,
}

impl Default for BorderWeights {
    fn default() -> Self {
        BorderWeights { w0: 10.0, sigma: 5.0 }
    }
}

/// Relative size of the smallest border term kept (see the module documentation).
const NEGLIGIBLE: f32 = 1e-3;

/// The weight map of a class-index `mask` (`[H, W]`, class 0 = background between cells):
/// `class_weights[c]` for a pixel of class `c` (1 where the slice is shorter), plus the border
/// term of `border`.
pub fn unet_weight_map(mask: ArrayView2<'_, u8>, class_weights: &[f32], border: BorderWeights) -> Array2<f32> {
    let (h, w) = mask.dim();
    let mut out = mask.mapv(|c| class_weights.get(c as usize).copied().unwrap_or(1.0));
    if h == 0 || w == 0 || border.w0 <= 0.0 || border.sigma <= 0.0 || !border.sigma.is_finite() {
        return out;
    }
    let (cells, n) = class_regions(mask, 0);
    if n < 2 {
        return out;
    }
    let reach = (border.sigma * (2.0 * (1.0 / NEGLIGIBLE).ln()).sqrt()).ceil() as usize + 1;
    // Bounding box of every cell: [y0, y1, x0, x1] (inclusive).
    let mut boxes = vec![[usize::MAX, 0, usize::MAX, 0]; n + 1];
    for ((y, x), &c) in cells.indexed_iter() {
        let b = &mut boxes[c as usize];
        b[0] = b[0].min(y);
        b[1] = b[1].max(y);
        b[2] = b[2].min(x);
        b[3] = b[3].max(x);
    }
    // The two smallest squared distances to a cell seen so far, per pixel.
    let mut d1 = Array2::<f32>::from_elem((h, w), f32::INFINITY);
    let mut d2 = d1.clone();
    let mut grid = Vec::new();
    let mut scratch = Scratch::default();
    for (c, b) in boxes.iter().enumerate().skip(1) {
        let (y0, y1) = (b[0].saturating_sub(reach), (b[1] + reach).min(h - 1));
        let (x0, x1) = (b[2].saturating_sub(reach), (b[3] + reach).min(w - 1));
        let (bh, bw) = (y1 - y0 + 1, x1 - x0 + 1);
        grid.clear();
        grid.extend(
            (y0..=y1)
                .flat_map(|y| (x0..=x1).map(move |x| (y, x)))
                .map(|(y, x)| if cells[[y, x]] == c as u32 { 0.0 } else { f32::INFINITY }),
        );
        squared_distances(&mut grid, bh, bw, &mut scratch);
        for (i, y) in (y0..=y1).enumerate() {
            for (j, x) in (x0..=x1).enumerate() {
                let d = grid[i * bw + j];
                let (a, b) = (&mut d1[[y, x]], &mut d2[[y, x]]);
                if d < *a {
                    *b = *a;
                    *a = d;
                } else if d < *b {
                    *b = d;
                }
            }
        }
    }
    let two_s2 = 2.0 * border.sigma * border.sigma;
    for ((o, &a), &b) in out.iter_mut().zip(&d1).zip(&d2) {
        if b.is_finite() {
            let s = a.sqrt() + b.sqrt();
            *o += border.w0 * (-(s * s) / two_s2).exp();
        }
    }
    out
}

/// Buffers of [`squared_distances`].
#[derive(Default)]
struct Scratch {
    f: Vec<f32>,
    d: Vec<f32>,
    v: Vec<usize>,
    z: Vec<f32>,
}

/// In place: `grid` (`h` × `w`, 0 on the object, ∞ elsewhere) becomes the squared Euclidean
/// distance of every pixel to the nearest object pixel (∞ when there is none), by the
/// separable algorithm of Felzenszwalb and Huttenlocher (2012): a 1-D lower envelope of
/// parabolas along the columns, then along the rows. Exact, O(h·w).
fn squared_distances(grid: &mut [f32], h: usize, w: usize, s: &mut Scratch) {
    for x in 0..w {
        s.f.clear();
        s.f.extend((0..h).map(|y| grid[y * w + x]));
        line(s);
        for y in 0..h {
            grid[y * w + x] = s.d[y];
        }
    }
    for y in 0..h {
        s.f.clear();
        s.f.extend_from_slice(&grid[y * w..(y + 1) * w]);
        line(s);
        grid[y * w..(y + 1) * w].copy_from_slice(&s.d[..w]);
    }
}

/// The 1-D transform `d[q] = min_p (q − p)² + f[p]` of `s.f` into `s.d`.
fn line(s: &mut Scratch) {
    let n = s.f.len();
    s.d.clear();
    s.d.resize(n, f32::INFINITY);
    s.v.clear();
    s.z.clear();
    let f = &s.f;
    // Parabolas rooted at the finite samples only (an infinite one never is the minimum).
    for q in (0..n).filter(|&q| f[q].is_finite()) {
        let qf = q as f32;
        loop {
            let Some(&p) = s.v.last() else {
                s.v.push(q);
                s.z.push(f32::NEG_INFINITY);
                break;
            };
            let pf = p as f32;
            let cross = ((f[q] + qf * qf) - (f[p] + pf * pf)) / (2.0 * (qf - pf));
            if cross <= *s.z.last().expect("one boundary per parabola") {
                s.v.pop();
                s.z.pop();
            } else {
                s.v.push(q);
                s.z.push(cross);
                break;
            }
        }
    }
    if s.v.is_empty() {
        return;
    }
    let mut k = 0;
    for q in 0..n {
        let qf = q as f32;
        while k + 1 < s.v.len() && s.z[k + 1] < qf {
            k += 1;
        }
        let p = s.v[k];
        s.d[q] = (qf - p as f32).powi(2) + f[p];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute-force squared distances to the nearest `true` pixel.
    fn brute(obj: &Array2<bool>) -> Array2<f32> {
        let (h, w) = obj.dim();
        Array2::from_shape_fn((h, w), |(y, x)| {
            obj.indexed_iter()
                .filter(|(_, o)| **o)
                .map(|((py, px), _)| (y as f32 - py as f32).powi(2) + (x as f32 - px as f32).powi(2))
                .fold(f32::INFINITY, f32::min)
        })
    }

    #[test]
    fn distance_transform_is_exact() {
        let (h, w) = (13, 17);
        for seed in 0..6u64 {
            let obj = Array2::from_shape_fn((h, w), |(y, x)| {
                (y as u64 * 31 + x as u64 * 17 + seed * 7).wrapping_mul(2654435761).is_multiple_of(23)
            });
            let mut grid: Vec<f32> = obj.iter().map(|&o| if o { 0.0 } else { f32::INFINITY }).collect();
            squared_distances(&mut grid, h, w, &mut Scratch::default());
            let want = brute(&obj);
            for (g, e) in grid.iter().zip(want.iter()) {
                assert!(g == e || (g - e).abs() < 1e-3, "{g} vs {e} (seed {seed})");
            }
        }
    }

    #[test]
    fn gaps_between_cells_weigh_most() {
        // Two cells (class 1) separated by a 2-pixel membrane gap (class 0) at columns 10..12,
        // and a wide membrane band on the right (columns 22..40) with one cell beyond it.
        let mask = Array2::from_shape_fn((20, 48), |(_, x)| u8::from(!(10..12).contains(&x) && !(22..40).contains(&x)));
        let m = unet_weight_map(mask.view(), &[1.0, 1.0], BorderWeights::default());
        // In the gap: d1 = 1, d2 = 2 (or 2, 1): 1 + 10·exp(−9/50).
        let gap = 1.0 + 10.0 * (-9.0f32 / 50.0).exp();
        assert!((m[[5, 10]] - gap).abs() < 1e-4, "{}", m[[5, 10]]);
        assert!((m[[5, 11]] - gap).abs() < 1e-4);
        // Inside a cell next to the gap: d1 = 0, d2 = 3 to the other cell.
        assert!((m[[5, 9]] - (1.0 + 10.0 * (-9.0f32 / 50.0).exp())).abs() < 1e-4);
        // The middle of the wide band (column 30/31): d1 ≈ 9, d2 ≈ 10: almost nothing.
        assert!(m[[5, 30]] < 1.0 + 10.0 * (-361.0f32 / 50.0).exp() + 1e-3, "{}", m[[5, 30]]);
        // Far inside the rightmost cell: only w_c.
        assert!((m[[5, 47]] - 1.0).abs() < 1e-3, "{}", m[[5, 47]]);
        // The map is symmetric in the two gap columns and everywhere ≥ w_c.
        assert!(m.iter().all(|&v| v >= 1.0));
    }

    #[test]
    fn class_weights_and_degenerate_masks() {
        let one_cell = Array2::from_shape_fn((8, 8), |(y, _)| u8::from(y >= 4));
        let m = unet_weight_map(one_cell.view(), &[0.25, 0.75], BorderWeights::default());
        assert_eq!(m[[0, 0]], 0.25);
        assert_eq!(m[[7, 7]], 0.75);
        let empty = Array2::<u8>::zeros((0, 5));
        assert_eq!(unet_weight_map(empty.view(), &[1.0], BorderWeights::default()).dim(), (0, 5));
        // No border term: class weights only; a missing class weight is 1.
        let two = Array2::from_shape_fn((4, 9), |(_, x)| if x == 4 { 0 } else { 2 });
        let m = unet_weight_map(two.view(), &[0.5], BorderWeights { w0: 0.0, sigma: 5.0 });
        assert_eq!(m[[0, 4]], 0.5);
        assert_eq!(m[[0, 0]], 1.0);
    }
}
