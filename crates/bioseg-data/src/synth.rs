//! A seeded generator of synthetic EM-like sections with exact labels.
//!
//! The picture: a tessellation of cells (a power diagram of jittered-grid seeds,
//! seen through a smooth random warp so that the boundaries wave), dark membranes
//! along the cell boundaries with a width that differs from one cell edge to the
//! next and varies a little along each edge, gray cell interiors with a smooth
//! random texture, a few small dark vesicles, and mitochondria: dark elliptical
//! blobs with a darker rim and striped cristae, placed inside cells at a distance
//! from every membrane. The image is then blurred and gets Gaussian noise.
//!
//! The labels come from the geometry, not from the image: a pixel is membrane
//! when its (warped) position lies within half the edge's width of a cell
//! boundary, mitochondrion when it lies inside a placed ellipse.
//!
//! Everything is a function of the parameters and the seed: the same call gives
//! the same sample on any machine and any number of threads (per-pixel randomness
//! comes from hashing the pixel position, the rest from a `ChaCha8Rng`). Rows are
//! processed in parallel with rayon.

use std::path::Path;

use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::DataError;
use crate::image::{MAX_PIXELS, write_gray_u8_png};

/// Parameters of [`generate`]. Lengths are in pixels, intensities in gray levels
/// (0..=255) before blur and noise. The defaults suit a 256x256 section.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthParams {
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Mean cell radius (a cell's area is about `pi * r^2`); at least 3.
    pub mean_cell_radius: f32,
    /// Spread of cell sizes, 0 (uniform) to 1.
    pub cell_size_variation: f32,
    /// Amplitude of the boundary warp as a fraction of the cell radius, 0 to 1.
    pub boundary_waviness: f32,
    /// Narrowest membrane (full width).
    pub membrane_width_min: f32,
    /// Widest membrane (full width); each cell edge draws its width in `[min, max]`.
    pub membrane_width_max: f32,
    /// Mean number of mitochondria per cell (Poisson).
    pub mito_per_cell: f32,
    /// Smallest semi-major axis of a mitochondrion.
    pub mito_radius_min: f32,
    /// Largest semi-major axis of a mitochondrion.
    pub mito_radius_max: f32,
    /// Mean number of small dark vesicles per cell (unlabelled, part of the cytoplasm).
    pub vesicles_per_cell: f32,
    /// Mean gray level of the cytoplasm.
    pub cytoplasm_level: f32,
    /// Standard deviation of the cytoplasm's gray level from cell to cell.
    pub cytoplasm_variation: f32,
    /// Standard deviation (roughly) of the cytoplasm's texture.
    pub texture_amplitude: f32,
    /// Size of the texture's finest grain.
    pub texture_scale: f32,
    /// Gray level at a membrane's centre line.
    pub membrane_level: f32,
    /// Gray level of a mitochondrion's interior.
    pub mito_level: f32,
    /// Gray level of a mitochondrion's rim.
    pub mito_rim_level: f32,
    /// Amplitude of the slow illumination variation across the image.
    pub illumination_variation: f32,
    /// Standard deviation of the additive Gaussian noise (after blurring).
    pub noise_sigma: f32,
    /// Standard deviation of the Gaussian blur (0 for none).
    pub blur_sigma: f32,
}

impl Default for SynthParams {
    fn default() -> Self {
        SynthParams {
            width: 256,
            height: 256,
            mean_cell_radius: 18.0,
            cell_size_variation: 0.7,
            boundary_waviness: 0.5,
            membrane_width_min: 2.0,
            membrane_width_max: 4.5,
            mito_per_cell: 0.3,
            mito_radius_min: 5.0,
            mito_radius_max: 11.0,
            vesicles_per_cell: 2.0,
            cytoplasm_level: 175.0,
            cytoplasm_variation: 14.0,
            texture_amplitude: 12.0,
            texture_scale: 2.5,
            membrane_level: 55.0,
            mito_level: 120.0,
            mito_rim_level: 65.0,
            illumination_variation: 10.0,
            noise_sigma: 9.0,
            blur_sigma: 0.9,
        }
    }
}

impl SynthParams {
    /// The same parameters with every length (cell radius, membrane widths,
    /// mitochondrion radii, texture grain, blur) multiplied by `factor`; the image
    /// size is left as it is. `factor = 2` with a 512x512 size gives the default look
    /// at twice the resolution.
    pub fn scaled(&self, factor: f32) -> SynthParams {
        SynthParams {
            mean_cell_radius: self.mean_cell_radius * factor,
            membrane_width_min: self.membrane_width_min * factor,
            membrane_width_max: self.membrane_width_max * factor,
            mito_radius_min: self.mito_radius_min * factor,
            mito_radius_max: self.mito_radius_max * factor,
            texture_scale: self.texture_scale * factor,
            blur_sigma: self.blur_sigma * factor,
            ..self.clone()
        }
    }

    /// Checks that every parameter is in range ([`DataError::InvalidParameter`]).
    pub fn validate(&self) -> Result<(), DataError> {
        let (w, h) = (self.width as u64, self.height as u64);
        if w == 0 || h == 0 || w.saturating_mul(h) > MAX_PIXELS {
            return Err(DataError::param(
                "width/height",
                format!("{w}x{h} (need at least 1x1 and at most 2^31 pixels)"),
            ));
        }
        let finite = [
            ("mean_cell_radius", self.mean_cell_radius),
            ("cell_size_variation", self.cell_size_variation),
            ("boundary_waviness", self.boundary_waviness),
            ("membrane_width_min", self.membrane_width_min),
            ("membrane_width_max", self.membrane_width_max),
            ("mito_per_cell", self.mito_per_cell),
            ("mito_radius_min", self.mito_radius_min),
            ("mito_radius_max", self.mito_radius_max),
            ("vesicles_per_cell", self.vesicles_per_cell),
            ("cytoplasm_level", self.cytoplasm_level),
            ("cytoplasm_variation", self.cytoplasm_variation),
            ("texture_amplitude", self.texture_amplitude),
            ("texture_scale", self.texture_scale),
            ("membrane_level", self.membrane_level),
            ("mito_level", self.mito_level),
            ("mito_rim_level", self.mito_rim_level),
            ("illumination_variation", self.illumination_variation),
            ("noise_sigma", self.noise_sigma),
            ("blur_sigma", self.blur_sigma),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(DataError::param(name, format!("{v} is not a finite number")));
            }
        }
        let range = |name: &'static str, v: f32, lo: f32, hi: f32| {
            if v < lo || v > hi { Err(DataError::param(name, format!("{v} is outside {lo}..={hi}"))) } else { Ok(()) }
        };
        let r = self.mean_cell_radius;
        range("mean_cell_radius", r, 3.0, 10_000.0)?;
        range("cell_size_variation", self.cell_size_variation, 0.0, 1.0)?;
        range("boundary_waviness", self.boundary_waviness, 0.0, 1.0)?;
        range("membrane_width_min", self.membrane_width_min, 0.1, r)?;
        range("membrane_width_max", self.membrane_width_max, self.membrane_width_min, r)?;
        range("mito_per_cell", self.mito_per_cell, 0.0, 20.0)?;
        range("mito_radius_min", self.mito_radius_min, 1.0, r)?;
        range("mito_radius_max", self.mito_radius_max, self.mito_radius_min, 2.0 * r)?;
        range("vesicles_per_cell", self.vesicles_per_cell, 0.0, 50.0)?;
        range("cytoplasm_variation", self.cytoplasm_variation, 0.0, 255.0)?;
        range("texture_scale", self.texture_scale, 0.5, 1000.0)?;
        range("noise_sigma", self.noise_sigma, 0.0, 255.0)?;
        range("blur_sigma", self.blur_sigma, 0.0, 20.0)?;
        Ok(())
    }
}

/// One synthetic section and its labels, all `[height, width]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSample {
    /// The EM-like image.
    pub image: Array2<u8>,
    /// Membrane label like ISBI: 255 = cell interior (mitochondria included), 0 = membrane.
    pub membrane: Array2<u8>,
    /// Mitochondrion label: 255 = mitochondrion, 0 = elsewhere.
    pub mito: Array2<u8>,
    /// Class per pixel: 0 = cytoplasm, 1 = membrane, 2 = mitochondrion.
    pub classes: Array2<u8>,
}

/// Class index of cytoplasm in [`SynthSample::classes`].
pub const CLASS_CYTOPLASM: u8 = 0;
/// Class index of membrane in [`SynthSample::classes`].
pub const CLASS_MEMBRANE: u8 = 1;
/// Class index of mitochondria in [`SynthSample::classes`].
pub const CLASS_MITO: u8 = 2;

// ---------------------------------------------------------------------------
// Hash-based randomness (position → number), independent of thread scheduling.
// ---------------------------------------------------------------------------

/// SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_4767_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed and two integers.
fn hash2(seed: u64, a: i64, b: i64) -> u64 {
    mix(seed ^ mix((a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (b as u64).rotate_left(29)))
}

/// A hash mapped to `[0, 1)`.
fn unit(h: u64) -> f32 {
    (h >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A standard normal number from a hash (Box–Muller).
fn normal(h: u64) -> f32 {
    let u1 = ((h >> 40) as f32 + 1.0) * (1.0 / ((1u64 << 24) as f32 + 1.0));
    let u2 = ((h & 0xFF_FFFF) as f32) * (1.0 / (1u64 << 24) as f32);
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Smooth value noise in `[-1, 1]` with unit lattice spacing.
fn value_noise(seed: u64, x: f32, y: f32) -> f32 {
    let (xf, yf) = (x.floor(), y.floor());
    let (ix, iy) = (xf as i64, yf as i64);
    let (fx, fy) = (x - xf, y - yf);
    let sx = fx * fx * (3.0 - 2.0 * fx);
    let sy = fy * fy * (3.0 - 2.0 * fy);
    let v = |dx: i64, dy: i64| unit(hash2(seed, ix + dx, iy + dy)) * 2.0 - 1.0;
    let top = v(0, 0) + (v(1, 0) - v(0, 0)) * sx;
    let bottom = v(0, 1) + (v(1, 1) - v(0, 1)) * sx;
    top + (bottom - top) * sy
}

/// Granular cytoplasm texture with grain size `scale` pixels and a standard
/// deviation of about 1: three octaves of value noise plus sparse dark speckles.
fn cytoplasm_texture(seed: u64, x: f32, y: f32, scale: f32) -> f32 {
    let a = value_noise(seed, x / scale, y / scale);
    let b = value_noise(seed ^ 0x5555, x / (scale * 2.7), y / (scale * 2.7));
    let c = value_noise(seed ^ 0x7777, x / (scale * 7.0), y / (scale * 7.0));
    let speckle = (value_noise(seed ^ 0x9999, x / (scale * 0.9), y / (scale * 0.9)) - 0.5).max(0.0);
    3.0 * (0.4 * a + 0.45 * b + 0.4 * c) - 5.0 * speckle
}

/// A Poisson-distributed count (Knuth's method; `lambda` is at most 50).
fn poisson(rng: &mut ChaCha8Rng, lambda: f32) -> usize {
    if lambda <= 0.0 {
        return 0;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p: f32 = rng.random();
    while p > limit && k < 1000 {
        k += 1;
        p *= rng.random::<f32>();
    }
    k
}

// ---------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------

/// The cell tessellation: jittered-grid seeds with power-diagram weights, seen
/// through a smooth warp.
struct Tessellation {
    /// Grid spacing of the seeds.
    spacing: f32,
    /// Grid coordinates of seed 0.
    origin: i64,
    /// Seeds per grid row.
    cols: usize,
    /// Seed rows.
    rows: usize,
    /// Seed positions (warped space).
    pos: Vec<(f32, f32)>,
    /// Squared power weights.
    weight: Vec<f32>,
    warp_amplitude: f32,
    warp_scale: f32,
    width_min: f32,
    width_max: f32,
    seed: u64,
}

/// What the geometry says about one pixel.
#[derive(Clone, Copy)]
struct PixelGeom {
    /// Cell index (into the seed list).
    cell: u32,
    /// Distance to the nearest boundary in units of that edge's half width
    /// (below 1: membrane).
    edge_ratio: f32,
}

impl Tessellation {
    fn new(params: &SynthParams, rng: &mut ChaCha8Rng) -> Self {
        let r = params.mean_cell_radius;
        let spacing = r * std::f32::consts::PI.sqrt();
        let margin = 3;
        let origin = -(margin as i64);
        let cols = (params.width as f32 / spacing).ceil() as usize + 2 * margin;
        let rows = (params.height as f32 / spacing).ceil() as usize + 2 * margin;
        let jitter = 0.9;
        let mut pos = Vec::with_capacity(cols * rows);
        let mut weight = Vec::with_capacity(cols * rows);
        for gy in 0..rows {
            for gx in 0..cols {
                let jx = (rng.random::<f32>() - 0.5) * jitter;
                let jy = (rng.random::<f32>() - 0.5) * jitter;
                pos.push((
                    ((gx as i64 + origin) as f32 + 0.5 + jx) * spacing,
                    ((gy as i64 + origin) as f32 + 0.5 + jy) * spacing,
                ));
                // Skewed so that a few cells get large weights (and grow large).
                let w = params.cell_size_variation * spacing * rng.random::<f32>().powf(1.5);
                weight.push(w * w);
            }
        }
        Tessellation {
            spacing,
            origin,
            cols,
            rows,
            pos,
            weight,
            warp_amplitude: params.boundary_waviness * r,
            warp_scale: 1.6 * r,
            width_min: params.membrane_width_min,
            width_max: params.membrane_width_max,
            seed: rng.random(),
        }
    }

    /// The warped position of pixel `(x, y)`.
    fn warp(&self, x: f32, y: f32) -> (f32, f32) {
        if self.warp_amplitude == 0.0 {
            return (x, y);
        }
        let s = self.warp_scale;
        let a = self.warp_amplitude;
        let f = 2.6 / s;
        let dx = value_noise(self.seed ^ 1, x / s, y / s) + 0.35 * value_noise(self.seed ^ 2, x * f, y * f);
        let dy = value_noise(self.seed ^ 3, x / s, y / s) + 0.35 * value_noise(self.seed ^ 4, x * f, y * f);
        (x + a * dx, y + a * dy)
    }

    /// Full width of the membrane between cells `i` and `j` near pixel `(x, y)`.
    fn edge_width(&self, i: u32, j: u32, x: f32, y: f32) -> f32 {
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        let u = unit(hash2(self.seed ^ 0xED6E, a as i64, b as i64));
        let base = self.width_min + (self.width_max - self.width_min) * u;
        let along = 1.0 + 0.25 * value_noise(self.seed ^ 0x3333, x / 7.0, y / 7.0);
        (base * along).max(self.width_min * 0.75)
    }

    /// Cell and boundary distance of pixel centre `(x, y)`.
    fn at(&self, x: f32, y: f32) -> PixelGeom {
        let (qx, qy) = self.warp(x, y);
        let gx = (qx / self.spacing).floor() as i64 - self.origin;
        let gy = (qy / self.spacing).floor() as i64 - self.origin;
        let mut cand: [(u32, f32); 25] = [(0, f32::INFINITY); 25];
        let mut n = 0;
        let mut best = (0u32, f32::INFINITY);
        for cy in gy - 2..=gy + 2 {
            if cy < 0 || cy >= self.rows as i64 {
                continue;
            }
            for cx in gx - 2..=gx + 2 {
                if cx < 0 || cx >= self.cols as i64 {
                    continue;
                }
                let k = cy as usize * self.cols + cx as usize;
                let (sx, sy) = self.pos[k];
                let d = (qx - sx) * (qx - sx) + (qy - sy) * (qy - sy) - self.weight[k];
                cand[n] = (k as u32, d);
                n += 1;
                if d < best.1 {
                    best = (k as u32, d);
                }
            }
        }
        let (i, di) = best;
        let (six, siy) = self.pos[i as usize];
        let mut edge = f32::INFINITY;
        let mut other = i;
        for &(j, dj) in &cand[..n] {
            if j == i {
                continue;
            }
            let (sjx, sjy) = self.pos[j as usize];
            let sep = ((six - sjx).powi(2) + (siy - sjy).powi(2)).sqrt().max(1e-3);
            let dist = (dj - di) / (2.0 * sep);
            if dist < edge {
                edge = dist;
                other = j;
            }
        }
        let half = 0.5 * self.edge_width(i, other, x, y);
        PixelGeom { cell: i, edge_ratio: edge / half }
    }
}

/// An ellipse in image coordinates.
#[derive(Clone, Copy)]
struct Ellipse {
    cx: f32,
    cy: f32,
    /// Semi-major axis.
    a: f32,
    /// Semi-minor axis.
    b: f32,
    cos: f32,
    sin: f32,
}

impl Ellipse {
    /// Coordinates along the major and minor axes relative to the centre.
    fn local(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        (dx * self.cos + dy * self.sin, -dx * self.sin + dy * self.cos)
    }

    /// Normalised radius: below 1 inside.
    fn rho(&self, x: f32, y: f32, grow: f32) -> f32 {
        let (u, v) = self.local(x, y);
        ((u / (self.a + grow)).powi(2) + (v / (self.b + grow)).powi(2)).sqrt()
    }

    /// Pixel bounding box `(x0, y0, x1, y1)` (inclusive) of the ellipse grown by
    /// `grow`, clipped to the image.
    fn bbox(&self, grow: f32, w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
        let r = self.a + grow + 1.0;
        let x0 = (self.cx - r).floor().max(0.0) as usize;
        let y0 = (self.cy - r).floor().max(0.0) as usize;
        let x1 = (self.cx + r).ceil().min(w as f32 - 1.0);
        let y1 = (self.cy + r).ceil().min(h as f32 - 1.0);
        if x1 < 0.0 || y1 < 0.0 || x0 as f32 > x1 || y0 as f32 > y1 {
            return None;
        }
        Some((x0, y0, x1 as usize, y1 as usize))
    }
}

/// Generates one sample (see the module documentation).
pub fn generate(params: &SynthParams, seed: u64) -> Result<SynthSample, DataError> {
    params.validate()?;
    let (w, h) = (params.width, params.height);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tess = Tessellation::new(params, &mut rng);
    let tex_seed: u64 = rng.random();
    let cell_seed: u64 = rng.random();
    let noise_seed: u64 = rng.random();
    let illum_scale = 0.45 * w.max(h) as f32;

    // 1. Geometry and base intensity, row by row in parallel.
    let mut cells = vec![0u32; w * h];
    let mut classes = vec![CLASS_CYTOPLASM; w * h];
    let mut intensity = vec![0f32; w * h];
    let cyto =
        |cell: u32| params.cytoplasm_level + params.cytoplasm_variation * normal(hash2(cell_seed, cell as i64, 0));
    cells.par_chunks_mut(w).zip(classes.par_chunks_mut(w)).zip(intensity.par_chunks_mut(w)).enumerate().for_each(
        |(y, ((cell_row, class_row), int_row))| {
            for x in 0..w {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                let g = tess.at(fx, fy);
                cell_row[x] = g.cell;
                let illum =
                    params.illumination_variation * value_noise(tex_seed ^ 9, fx / illum_scale, fy / illum_scale);
                let texture = params.texture_amplitude * cytoplasm_texture(tex_seed, fx, fy, params.texture_scale);
                let interior = cyto(g.cell) + texture + illum;
                int_row[x] = if g.edge_ratio < 1.0 {
                    class_row[x] = CLASS_MEMBRANE;
                    // Darkest on the centre line, a little lighter towards the edges.
                    let t = g.edge_ratio.max(0.0);
                    params.membrane_level + 25.0 * t * t + 0.4 * texture + illum
                } else {
                    interior
                };
            }
        },
    );

    // 2. Cell centroids and areas (in image space) to place organelles.
    let n_cells = tess.pos.len();
    let stats = cells
        .par_chunks(w)
        .enumerate()
        .fold(
            || vec![(0f64, 0f64, 0u64); n_cells],
            |mut acc, (y, row)| {
                for (x, &c) in row.iter().enumerate() {
                    let e = &mut acc[c as usize];
                    e.0 += x as f64 + 0.5;
                    e.1 += y as f64 + 0.5;
                    e.2 += 1;
                }
                acc
            },
        )
        .reduce(
            || vec![(0f64, 0f64, 0u64); n_cells],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.0 += y.0;
                    x.1 += y.1;
                    x.2 += y.2;
                }
                a
            },
        );

    // 3. Mitochondria: ellipses fully inside one cell, at least `gap` pixels from
    //    any membrane pixel and from each other (checked on the pixel grid).
    let gap = 2.0;
    let mut placed: Vec<Ellipse> = Vec::new();
    let fits = |e: &Ellipse, cell: u32, classes: &[u8], grow: f32| -> bool {
        let Some((x0, y0, x1, y1)) = e.bbox(grow, w, h) else {
            return false;
        };
        let mut inside_image = 0usize;
        for y in y0..=y1 {
            for x in x0..=x1 {
                if e.rho(x as f32 + 0.5, y as f32 + 0.5, grow) <= 1.0 {
                    let k = y * w + x;
                    if cells[k] != cell || classes[k] != CLASS_CYTOPLASM {
                        return false;
                    }
                    inside_image += 1;
                }
            }
        }
        inside_image > 0
    };
    for (cell, &(sx, sy, n)) in stats.iter().enumerate() {
        let count = poisson(&mut rng, params.mito_per_cell);
        if n == 0 || count == 0 {
            continue;
        }
        let (mx, my) = ((sx / n as f64) as f32, (sy / n as f64) as f32);
        let cell_r = (n as f32 / std::f32::consts::PI).sqrt();
        for _ in 0..count {
            for _attempt in 0..12 {
                let a = rng.random_range(params.mito_radius_min..=params.mito_radius_max);
                let a = a.min(cell_r * 0.8);
                let b = (a * rng.random_range(0.42f32..0.75)).max(1.0);
                let theta = rng.random_range(0.0..std::f32::consts::PI);
                let (ox, oy) = (rng.random::<f32>() - 0.5, rng.random::<f32>() - 0.5);
                let e = Ellipse {
                    cx: mx + ox * cell_r * 0.7,
                    cy: my + oy * cell_r * 0.7,
                    a,
                    b,
                    cos: theta.cos(),
                    sin: theta.sin(),
                };
                if a >= 1.5 && fits(&e, cell as u32, &classes, gap) {
                    rasterize_mito(&e, params, &mut classes, &mut intensity, w, h, hash2(cell_seed, cell as i64, 7));
                    placed.push(e);
                    break;
                }
            }
        }
    }

    // 4. Vesicles: small dark circles in the cytoplasm (unlabelled).
    for (cell, &(sx, sy, n)) in stats.iter().enumerate() {
        let count = poisson(&mut rng, params.vesicles_per_cell);
        if n == 0 || count == 0 {
            continue;
        }
        let (mx, my) = ((sx / n as f64) as f32, (sy / n as f64) as f32);
        let cell_r = (n as f32 / std::f32::consts::PI).sqrt();
        for _ in 0..count {
            let r = rng.random_range(1.2f32..2.6);
            let (ox, oy) = (rng.random::<f32>() - 0.5, rng.random::<f32>() - 0.5);
            let e = Ellipse { cx: mx + ox * cell_r * 1.4, cy: my + oy * cell_r * 1.4, a: r, b: r, cos: 1.0, sin: 0.0 };
            if fits(&e, cell as u32, &classes, 1.0)
                && let Some((x0, y0, x1, y1)) = e.bbox(0.0, w, h)
            {
                for y in y0..=y1 {
                    for x in x0..=x1 {
                        let rho = e.rho(x as f32 + 0.5, y as f32 + 0.5, 0.0);
                        if rho <= 1.0 {
                            // A dark membrane around a lighter lumen.
                            intensity[y * w + x] -= if rho > 0.55 { 55.0 } else { 25.0 };
                        }
                    }
                }
            }
        }
    }
    drop(cells);

    // 5. Blur, noise, quantise.
    let blurred = gaussian_blur(&intensity, w, h, params.blur_sigma);
    drop(intensity);
    let mut image = vec![0u8; w * h];
    image.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        for (x, out) in row.iter_mut().enumerate() {
            let n = params.noise_sigma * normal(hash2(noise_seed, x as i64, y as i64));
            *out = (blurred[y * w + x] + n).round().clamp(0.0, 255.0) as u8;
        }
    });

    let membrane: Vec<u8> = classes.iter().map(|&c| if c == CLASS_MEMBRANE { 0 } else { 255 }).collect();
    let mito: Vec<u8> = classes.iter().map(|&c| if c == CLASS_MITO { 255 } else { 0 }).collect();
    let shape = (h, w);
    let arr =
        |v: Vec<u8>| Array2::from_shape_vec(shape, v).map_err(|e| DataError::param("width/height", e.to_string()));
    Ok(SynthSample { image: arr(image)?, membrane: arr(membrane)?, mito: arr(mito)?, classes: arr(classes)? })
}

/// Draws one mitochondrion into the class map and the intensity image.
fn rasterize_mito(
    e: &Ellipse,
    params: &SynthParams,
    classes: &mut [u8],
    intensity: &mut [f32],
    w: usize,
    h: usize,
    seed: u64,
) {
    let Some((x0, y0, x1, y1)) = e.bbox(0.0, w, h) else {
        return;
    };
    // Cristae spacing grows with the organelle but stays wide enough to survive the blur.
    let period = (e.b * (0.5 + 0.2 * unit(mix(seed)))).max(3.0 + 4.0 * params.blur_sigma);
    let phase = unit(mix(seed ^ 1)) * std::f32::consts::TAU;
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let rho = e.rho(px, py, 0.0);
            if rho > 1.0 {
                continue;
            }
            let k = y * w + x;
            classes[k] = CLASS_MITO;
            let (u, v) = e.local(px, py);
            // Cristae: stripes across the long axis, slightly bent.
            let cristae = (std::f32::consts::TAU * (u + 0.15 * v * v / e.b.max(1.0)) / period + phase).sin();
            // The rim is about 1.5 px or a fifth of the minor axis thick.
            let rim = (1.0 - (1.5f32).max(0.2 * e.b) / e.b.max(1.0)).clamp(0.4, 0.85);
            intensity[k] = if rho > rim {
                params.mito_rim_level
            } else {
                // Cristae: dark bands on the lighter matrix.
                params.mito_level + 28.0 * cristae
            };
        }
    }
}

/// Separable Gaussian blur with replicated borders (returns a copy when `sigma` is 0).
fn gaussian_blur(src: &[f32], w: usize, h: usize, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return src.to_vec();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let kernel: Vec<f32> = {
        let k: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
        let sum: f32 = k.iter().sum();
        k.into_iter().map(|v| v / sum).collect()
    };
    let clamp = |v: isize, n: usize| v.clamp(0, n as isize - 1) as usize;
    let mut tmp = vec![0f32; w * h];
    tmp.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        let src_row = &src[y * w..(y + 1) * w];
        for (x, out) in row.iter_mut().enumerate() {
            let mut acc = 0.0;
            for (t, kv) in kernel.iter().enumerate() {
                acc += kv * src_row[clamp(x as isize + t as isize - radius, w)];
            }
            *out = acc;
        }
    });
    let mut dst = vec![0f32; w * h];
    dst.par_chunks_mut(w).enumerate().for_each(|(y, row)| {
        row.fill(0.0);
        for (t, kv) in kernel.iter().enumerate() {
            let sy = clamp(y as isize + t as isize - radius, h);
            let src_row = &tmp[sy * w..(sy + 1) * w];
            for (out, s) in row.iter_mut().zip(src_row) {
                *out += kv * s;
            }
        }
    });
    dst
}

/// The object classes [`write_dataset`] writes, with what their labels hold.
pub const DATASET_CLASSES: [&str; 3] = ["membrane", "mito", "multiclass"];

/// Writes a synthetic dataset in the seed layout:
///
/// ```text
/// out/membrane/{train,test}/{image,label}/N.png    labels 255 = cell interior, 0 = membrane
/// out/mito/{train,test}/{image,label}/N.png        labels 255 = mitochondrion
/// out/multiclass/{train,test}/{image,label}/N.png  labels 0 = cytoplasm, 1 = membrane, 2 = mitochondrion
/// ```
///
/// with `N` = 0, 1, … per split; the three object classes share the same images.
/// Train and test samples come from different seeds derived from `seed`. Folders are
/// created as needed; every file is written atomically, existing files are replaced.
pub fn write_dataset(
    out_dir: impl AsRef<Path>,
    n_train: usize,
    n_test: usize,
    params: &SynthParams,
    seed: u64,
) -> Result<(), DataError> {
    let out = out_dir.as_ref();
    params.validate()?;
    for class in DATASET_CLASSES {
        for split in ["train", "test"] {
            for kind in ["image", "label"] {
                let dir = out.join(class).join(split).join(kind);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| DataError::OutputFolder { dir: dir.clone(), reason: e.to_string() })?;
            }
        }
    }
    let jobs: Vec<(&str, u64, usize)> =
        (0..n_train).map(|k| ("train", 0u64, k)).chain((0..n_test).map(|k| ("test", 1u64, k))).collect();
    let (w, h) = (params.width as u32, params.height as u32);
    jobs.par_iter().try_for_each(|&(split, split_id, k)| {
        let sample_seed = mix(seed ^ mix((split_id << 48) ^ k as u64));
        let s = generate(params, sample_seed)?;
        let name = format!("{k}.png");
        for (class, label) in DATASET_CLASSES.iter().zip([&s.membrane, &s.mito, &s.classes]) {
            let dir = out.join(class).join(split);
            write_gray_u8_png(dir.join("image").join(&name), w, h, as_slice(&s.image))?;
            write_gray_u8_png(dir.join("label").join(&name), w, h, as_slice(label))?;
        }
        Ok(())
    })
}

/// The samples of a standard-layout array (always the case for generated arrays).
fn as_slice(a: &Array2<u8>) -> &[u8] {
    a.as_slice().unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SynthParams {
        SynthParams { width: 96, height: 80, ..SynthParams::default() }
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let p = small();
        let a = generate(&p, 7).unwrap();
        let b = generate(&p, 7).unwrap();
        let c = generate(&p, 8).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.image, c.image);
        assert_eq!(a.image.dim(), (80, 96));
    }

    #[test]
    fn labels_are_consistent() {
        let s = generate(&SynthParams::default(), 3).unwrap();
        for ((&c, &m), &mi) in s.classes.iter().zip(&s.membrane).zip(&s.mito) {
            assert!(c <= 2);
            assert_eq!(m == 0, c == CLASS_MEMBRANE);
            assert_eq!(mi == 255, c == CLASS_MITO);
            assert!(m == 0 || m == 255);
            assert!(mi == 0 || mi == 255);
        }
        let n = s.classes.len() as f64;
        let frac = |k: u8| s.classes.iter().filter(|&&c| c == k).count() as f64 / n;
        let (mem, mito) = (frac(CLASS_MEMBRANE), frac(CLASS_MITO));
        assert!((0.08..0.35).contains(&mem), "membrane fraction {mem}");
        assert!((0.003..0.15).contains(&mito), "mito fraction {mito}");
    }

    #[test]
    fn mitochondria_do_not_touch_membranes() {
        for seed in 0..4 {
            let s = generate(&SynthParams::default(), seed).unwrap();
            let (h, w) = s.classes.dim();
            for y in 0..h {
                for x in 0..w {
                    if s.classes[[y, x]] != CLASS_MITO {
                        continue;
                    }
                    for (dy, dx) in [(-1i64, 0i64), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)] {
                        let (yy, xx) = (y as i64 + dy, x as i64 + dx);
                        if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                            assert_ne!(s.classes[[yy as usize, xx as usize]], CLASS_MEMBRANE);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn membranes_are_darker_than_cytoplasm() {
        let s = generate(&SynthParams::default(), 11).unwrap();
        let mean = |k: u8| {
            let v: Vec<f64> =
                s.classes.iter().zip(&s.image).filter(|(c, _)| **c == k).map(|(_, &i)| i as f64).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (cyto, mem, mito) = (mean(CLASS_CYTOPLASM), mean(CLASS_MEMBRANE), mean(CLASS_MITO));
        assert!(mem + 40.0 < cyto, "membrane {mem} vs cytoplasm {cyto}");
        assert!(mito + 20.0 < cyto, "mito {mito} vs cytoplasm {cyto}");
    }

    #[test]
    fn no_blur_no_noise_and_odd_sizes() {
        let p = SynthParams { width: 1, height: 33, blur_sigma: 0.0, noise_sigma: 0.0, ..SynthParams::default() };
        let s = generate(&p, 1).unwrap();
        assert_eq!(s.image.dim(), (33, 1));
    }

    #[test]
    fn invalid_params_are_rejected() {
        let bad = [
            SynthParams { width: 0, ..small() },
            SynthParams { mean_cell_radius: 1.0, ..small() },
            SynthParams { membrane_width_min: 5.0, membrane_width_max: 2.0, ..small() },
            SynthParams { noise_sigma: f32::NAN, ..small() },
            SynthParams { blur_sigma: -1.0, ..small() },
            SynthParams { width: 1 << 20, height: 1 << 20, ..small() },
        ];
        for p in bad {
            let err = generate(&p, 0).unwrap_err();
            assert!(matches!(err, DataError::InvalidParameter { .. }), "{err}");
        }
    }

    #[test]
    fn params_from_partial_json() {
        let p: SynthParams = serde_json::from_str(r#"{"width": 64, "noise_sigma": 3.0}"#).unwrap();
        assert_eq!(p.width, 64);
        assert_eq!(p.height, 256);
        assert!(serde_json::from_str::<SynthParams>(r#"{"widht": 64}"#).is_err());
    }

    #[test]
    fn blur_preserves_constant_images() {
        let src = vec![3.0f32; 20 * 7];
        let out = gaussian_blur(&src, 20, 7, 2.0);
        assert!(out.iter().all(|v| (v - 3.0).abs() < 1e-5));
    }

    #[test]
    fn poisson_mean_is_about_right() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let n = 20_000;
        let total: usize = (0..n).map(|_| poisson(&mut rng, 0.7)).sum();
        let mean = total as f64 / n as f64;
        assert!((mean - 0.7).abs() < 0.03, "{mean}");
    }
}
