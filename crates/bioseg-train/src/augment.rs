//! Seeded data augmentation for segmentation training, free of any deep-learning framework.
//!
//! The trainer feeds the network random `(crop_h, crop_w)` crops of its training images, each
//! transformed jointly with its mask, in the spirit of Keras' `ImageDataGenerator` and
//! Augmentor as used by the NIH Biowulf `unet` module: elastic distortion (Simard et al.),
//! rotation, shear, perspective skew/tilt, zoom, flips and 90° rotations, plus brightness and
//! contrast on the image only.
//!
//! All geometric transforms are composed into one inverse coordinate map, from each output
//! pixel to a point of the source, which is evaluated once per output pixel (the source is
//! never transformed as a whole, so the cost is O(crop area)). The image is sampled there
//! bilinearly and the mask with the nearest neighbour, so mask values are always class indices
//! of the source. Points outside the source are mirrored back into it (half-sample symmetric
//! reflection: index −1 reads 0, −2 reads 1, W reads W−1), so a crop is always full of real
//! data.
//!
//! Each sample draws, in this order, from its generator:
//! 1. flips and 90° rotations (if [`AugmentConfig::flips`]): a horizontal flip, a vertical flip
//!    (each with probability ½) and a rotation by k·90°, k uniform in 0..4;
//! 2. the crop position: an integer offset uniform over the positions where the (flipped,
//!    90°-rotated) crop window lies inside the source, or, along an axis where the source is
//!    smaller than the window, uniform over the placements where the window covers the source
//!    (the rest is mirror padding);
//! 3. rotation, shear, zoom and skew, each enabled one applied with probability ½ and a
//!    magnitude uniform in its range (so crops without any interpolation occur too);
//! 4. the elastic field, with probability [`AugmentConfig::elastic_probability`];
//! 5. contrast and brightness, always, with a magnitude uniform in their ranges.
//!
//! [`augment_batch`] derives one generator per sample index from `(seed, index)` only, so a
//! batch does not depend on the number of threads, and a stream can be resumed at any index.

use ndarray::{Array2, Array3};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Probability with which each enabled continuous geometric transform (rotation, shear, zoom,
/// skew) is applied to a sample.
const TRANSFORM_PROBABILITY: f64 = 0.5;
/// Largest accepted skew: each corner then stays in its own quadrant, so the quadrilateral is
/// convex and the perspective map is well defined over the crop.
const MAX_SKEW: f32 = 0.24;
/// Largest accepted zoom (the scale stays positive).
const MAX_ZOOM: f32 = 0.9;
/// The Gaussian kernel of the elastic field is truncated at this many sigmas (as in SciPy).
const GAUSS_TRUNCATE: f32 = 4.0;
/// Source coordinates are clamped to ± this before indexing (guards against overflow).
const COORD_LIMIT: f32 = 1.0e7;

/// Which transforms are on and how strong.
///
/// Magnitudes are symmetric: a value `a` draws uniformly in `[-a, a]` (zoom: scale in
/// `[1 - z, 1 + z]`, contrast: factor in `[1 - c, 1 + c]`). Negative or non-finite magnitudes
/// count as their absolute value or 0; `skew` is capped at 0.24, `zoom` at 0.9 and
/// `elastic_probability` is clamped to `[0, 1]`. Missing fields deserialize to their
/// [`Default`] values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// Random horizontal and vertical flips and rotations by multiples of 90° (default true).
    pub flips: bool,
    /// Largest rotation angle in degrees, drawn uniformly in ± this (default 15).
    pub rotation_degrees: f32,
    /// Largest shear factor, drawn uniformly in ± this along a random axis (default 0.1).
    pub shear: f32,
    /// Zoom range: the content is scaled by a factor uniform in `[1 - zoom, 1 + zoom]`
    /// (default 0.1).
    pub zoom: f32,
    /// Perspective skew/tilt: each corner of the crop moves independently by up to this
    /// fraction of the crop's width and height (default 0.1, at most 0.24).
    pub skew: f32,
    /// Scale of the elastic displacement in pixels, as `alpha` of Simard et al. (default 34).
    pub elastic_alpha: f32,
    /// Standard deviation in pixels of the Gaussian that smooths the elastic field (default 4).
    pub elastic_sigma: f32,
    /// Probability that a sample gets an elastic distortion (default 0.5).
    pub elastic_probability: f32,
    /// Largest additive brightness change, as a fraction of the crop's value range
    /// (max − min over all channels), drawn uniformly in ± this (default 0.1). Image only.
    pub brightness: f32,
    /// Contrast range: each channel is scaled around its mean by a factor uniform in
    /// `[1 - contrast, 1 + contrast]` (default 0.1). Image only.
    pub contrast: f32,
}

impl Default for AugmentConfig {
    /// The course's settings: every transform on with moderate strength.
    fn default() -> Self {
        AugmentConfig {
            flips: true,
            rotation_degrees: 15.0,
            shear: 0.1,
            zoom: 0.1,
            skew: 0.1,
            elastic_alpha: 34.0,
            elastic_sigma: 4.0,
            elastic_probability: 0.5,
            brightness: 0.1,
            contrast: 0.1,
        }
    }
}

impl AugmentConfig {
    /// Every transform off: [`augment_crop`] then only takes a random crop (an exact copy of
    /// source pixels, mirrored where the source is smaller than the crop).
    pub fn none() -> Self {
        AugmentConfig {
            flips: false,
            rotation_degrees: 0.0,
            shear: 0.0,
            zoom: 0.0,
            skew: 0.0,
            elastic_alpha: 0.0,
            elastic_sigma: 0.0,
            elastic_probability: 0.0,
            brightness: 0.0,
            contrast: 0.0,
        }
    }
}

/// One training sample: the image `[H, W, C]` (already normalised), its mask `[H, W]` of
/// class indices and optionally a loss weight per pixel `[H, W]`. All have the same `H` and `W`.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The image, `[H, W, C]`, f32.
    pub image: Array3<f32>,
    /// The class index of each pixel, `[H, W]`.
    pub mask: Array2<u8>,
    /// The loss weight of each pixel (`--weight-map unet`: `bioseg_data::weight_map`), `[H, W]`;
    /// none: the loss weighs pixels by class only.
    pub weights: Option<Array2<f32>>,
}

impl Sample {
    /// A sample without pixel weights.
    pub fn new(image: Array3<f32>, mask: Array2<u8>) -> Sample {
        Sample { image, mask, weights: None }
    }
}

/// `n` synthetic EM sections of `size` × `size` (seeds `seed`, `seed + 1`, …) as membrane
/// samples: the gray image scaled to [0, 1], the mask 1 on membrane pixels. For checks and
/// benchmarks that need data without a dataset on disk.
pub fn synthetic_samples(n: usize, size: usize, seed: u64) -> Result<Vec<Sample>, bioseg_data::DataError> {
    let p = bioseg_data::SynthParams { width: size, height: size, ..Default::default() };
    (0..n as u64)
        .map(|s| {
            let g = bioseg_data::generate(&p, seed + s)?;
            Ok(Sample::new(
                g.image.mapv(|v| v as f32 / 255.0).insert_axis(ndarray::Axis(2)),
                g.membrane.mapv(|v| u8::from(v > 127)),
            ))
        })
        .collect()
}

/// Draws a random crop of `(crop_h, crop_w)` from `src` with a random combination of the
/// configured transforms, all drawn from `rng`.
///
/// The geometric transforms are composed into ONE inverse coordinate map (affine: rotation,
/// shear, zoom, flips and 90° rotations; then a projective skew; then an optional elastic
/// displacement field) that is sampled once per output pixel, bilinearly for the image (and the
/// pixel weights, when the sample has them) and with the nearest neighbour for the mask. Output pixels that map outside the source read its
/// mirror image, so crops are always full of real data. The crop position is uniform over the
/// source (over the integer positions where the window fits, so that crops without continuous
/// transforms are exact copies of source pixels). If the source is smaller than the crop along
/// an axis, it is mirror-padded (no error). Brightness and contrast then change the image
/// only. The cost is O(crop area), whatever the size of the source.
///
/// # Panics
/// If the source is empty (zero height or width) or its image and mask differ in height or
/// width.
pub fn augment_crop(
    src: &Sample,
    crop_h: usize,
    crop_w: usize,
    cfg: &AugmentConfig,
    rng: &mut impl rand::Rng,
) -> Sample {
    let (sh, sw, channels) = src.image.dim();
    assert_eq!((sh, sw), src.mask.dim(), "augment: the image is {sh}x{sw} but its mask is {:?}", src.mask.dim());
    assert!(sh > 0 && sw > 0, "augment: the source image is empty ({sh}x{sw})");

    let warp = Warp::draw(sh, sw, crop_h, crop_w, cfg, rng);

    let image = src.image.as_standard_layout();
    let image = image.as_slice().expect("standard layout is contiguous");
    let mask = src.mask.as_standard_layout();
    let mask = mask.as_slice().expect("standard layout is contiguous");

    let weights = src.weights.as_ref().map(|w| {
        assert_eq!(w.dim(), (sh, sw), "augment: the image is {sh}x{sw} but its weights are {:?}", w.dim());
        w.as_standard_layout()
    });
    let weights = weights.as_ref().map(|w| w.as_slice().expect("standard layout is contiguous"));
    let mut out_image = vec![0.0f32; crop_h * crop_w * channels];
    let mut out_mask = vec![0u8; crop_h * crop_w];
    let mut out_weights = vec![0.0f32; if weights.is_some() { crop_h * crop_w } else { 0 }];
    for i in 0..crop_h {
        for j in 0..crop_w {
            let k = i * crop_w + j;
            let (x, y) = warp.map(i, j, k);

            // Mask: nearest neighbour (ties round up), mirrored.
            let xn = reflect(floor_i64(x + 0.5), sw);
            let yn = reflect(floor_i64(y + 0.5), sh);
            out_mask[k] = mask[yn * sw + xn];

            // Image: bilinear between the four mirrored neighbours.
            let (x0, y0) = (floor_i64(x), floor_i64(y));
            let (fx, fy) = (x - x0 as f32, y - y0 as f32);
            let (xa, xb) = (reflect(x0, sw), reflect(x0 + 1, sw));
            let (ya, yb) = (reflect(y0, sh), reflect(y0 + 1, sh));
            let bilinear = |v00: f32, v01: f32, v10: f32, v11: f32| {
                // Exact at integer coordinates (fx = fy = 0 gives v00 bit for bit).
                let top = v00 + fx * (v01 - v00);
                let bottom = v10 + fx * (v11 - v10);
                top + fy * (bottom - top)
            };
            if let Some(wt) = weights {
                out_weights[k] = bilinear(wt[ya * sw + xa], wt[ya * sw + xb], wt[yb * sw + xa], wt[yb * sw + xb]);
            }
            let (p00, p01) = ((ya * sw + xa) * channels, (ya * sw + xb) * channels);
            let (p10, p11) = ((yb * sw + xa) * channels, (yb * sw + xb) * channels);
            let out = &mut out_image[k * channels..(k + 1) * channels];
            for (c, o) in out.iter_mut().enumerate() {
                *o = bilinear(image[p00 + c], image[p01 + c], image[p10 + c], image[p11 + c]);
            }
        }
    }

    photometric(&mut out_image, channels, cfg, rng);

    Sample {
        image: Array3::from_shape_vec((crop_h, crop_w, channels), out_image)
            .expect("the output buffer has the crop's shape"),
        mask: Array2::from_shape_vec((crop_h, crop_w), out_mask).expect("the output buffer has the crop's shape"),
        weights: weights.map(|_| {
            Array2::from_shape_vec((crop_h, crop_w), out_weights).expect("the output buffer has the crop's shape")
        }),
    }
}

/// Deterministic batch generation in parallel: sample `first_index + i` (for `i < count`) of
/// the stream seeded `seed` is produced by a generator derived from `(seed, first_index + i)`
/// only, so the result does not depend on the number of threads, the order of computation or
/// how the stream is split into batches. Each sample picks its source uniformly from
/// `sources`, then calls [`augment_crop`].
///
/// # Panics
/// If `sources` is empty while `count > 0`, or as [`augment_crop`].
pub fn augment_batch(
    sources: &[Sample],
    first_index: u64,
    count: usize,
    crop_h: usize,
    crop_w: usize,
    cfg: &AugmentConfig,
    seed: u64,
) -> Vec<Sample> {
    if count == 0 {
        return Vec::new();
    }
    assert!(!sources.is_empty(), "augment_batch: no source samples to crop from");
    (0..count)
        .into_par_iter()
        .map(|i| {
            let mut rng = sample_rng(seed, first_index.wrapping_add(i as u64));
            let src = &sources[rng.random_range(0..sources.len())];
            augment_crop(src, crop_h, crop_w, cfg, &mut rng)
        })
        .collect()
}

/// The generator of sample `index` of the stream seeded `seed`: ChaCha8 keyed by the seed, one
/// independent stream per index.
fn sample_rng(seed: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index);
    rng
}

/// Mirrors an index into `0..n` (half-sample symmetric: −1 → 0, n → n − 1, period 2n).
#[inline]
fn reflect(i: i64, n: usize) -> usize {
    let n = n as i64;
    if (0..n).contains(&i) {
        return i as usize;
    }
    let period = 2 * n;
    let m = i.rem_euclid(period);
    (if m >= n { period - 1 - m } else { m }) as usize
}

/// A magnitude from the config: absolute value, non-finite as 0.
fn magnitude(x: f32) -> f32 {
    if x.is_finite() { x.abs() } else { 0.0 }
}

/// Uniform in `[-a, a]` (0 when `a` is 0; never panics).
fn symmetric(rng: &mut impl Rng, a: f32) -> f32 {
    (rng.random::<f32>() * 2.0 - 1.0) * a
}

/// 2×2 matrix product `a · b`.
fn mat_mul(a: [[f32; 2]; 2], b: [[f32; 2]; 2]) -> [[f32; 2]; 2] {
    [
        [a[0][0] * b[0][0] + a[0][1] * b[1][0], a[0][0] * b[0][1] + a[0][1] * b[1][1]],
        [a[1][0] * b[0][0] + a[1][1] * b[1][0], a[1][0] * b[0][1] + a[1][1] * b[1][1]],
    ]
}

/// The composed inverse map of one sample, from output pixel `(i, j)` to source `(x, y)`:
/// `source = centre + M · P(j − half_w, i − half_h) + d(i, j)` with `M` the affine part,
/// `P` the perspective part and `d` the elastic displacement.
struct Warp {
    /// Source coordinates (x, y) of the crop's centre.
    centre: [f32; 2],
    /// Half the crop's extent between its first and last pixel centres: ((cw−1)/2, (ch−1)/2).
    half: [f32; 2],
    /// Affine part (rows: x, y).
    m: [[f32; 2]; 2],
    /// Perspective part, if drawn.
    perspective: Option<Homography>,
    /// Elastic displacements (dx, dy) per output pixel in source pixels, if drawn.
    elastic: Option<(Vec<f32>, Vec<f32>)>,
}

impl Warp {
    /// Draws the geometric part of a sample's transform.
    fn draw(sh: usize, sw: usize, ch: usize, cw: usize, cfg: &AugmentConfig, rng: &mut impl Rng) -> Warp {
        // 1. Flips and 90° rotations: an exact, integer-preserving matrix.
        let mut m = [[1.0f32, 0.0], [0.0, 1.0]];
        let mut quarter_turns = 0u32;
        if cfg.flips {
            let hflip = rng.random_bool(0.5);
            let vflip = rng.random_bool(0.5);
            quarter_turns = rng.random_range(0..4u32);
            if hflip {
                m = mat_mul(m, [[-1.0, 0.0], [0.0, 1.0]]);
            }
            if vflip {
                m = mat_mul(m, [[1.0, 0.0], [0.0, -1.0]]);
            }
            for _ in 0..quarter_turns {
                m = mat_mul([[0.0, -1.0], [1.0, 0.0]], m);
            }
        }

        // 2. The window's extent in the source (swapped by odd quarter turns) and its position.
        // Offsets are integers and the centre is chosen so that flips and quarter turns alone
        // map pixel centres onto pixel centres (exact copies, no interpolation).
        let (wx, wy) = if quarter_turns % 2 == 1 { (ch, cw) } else { (cw, ch) };
        let ox = window_offset(rng, sw, wx);
        let oy = window_offset(rng, sh, wy);
        let centre = [ox + (wx.max(1) - 1) as f32 / 2.0, oy + (wy.max(1) - 1) as f32 / 2.0];
        let half = [(cw.max(1) - 1) as f32 / 2.0, (ch.max(1) - 1) as f32 / 2.0];

        // 3. Continuous transforms, each with probability ½ (composition: zoom · shear ·
        // rotation · flips).
        let rotation = magnitude(cfg.rotation_degrees);
        if rotation > 0.0 && rng.random_bool(TRANSFORM_PROBABILITY) {
            let theta = symmetric(rng, rotation).to_radians();
            let (s, c) = theta.sin_cos();
            m = mat_mul([[c, -s], [s, c]], m);
        }
        let shear = magnitude(cfg.shear);
        if shear > 0.0 && rng.random_bool(TRANSFORM_PROBABILITY) {
            let k = symmetric(rng, shear);
            let along_x = rng.random_bool(0.5);
            let sm = if along_x { [[1.0, k], [0.0, 1.0]] } else { [[1.0, 0.0], [k, 1.0]] };
            m = mat_mul(sm, m);
        }
        let zoom = magnitude(cfg.zoom).min(MAX_ZOOM);
        if zoom > 0.0 && rng.random_bool(TRANSFORM_PROBABILITY) {
            let scale = 1.0 + symmetric(rng, zoom);
            // Content scaled by `scale` ⇒ the inverse map shrinks by it.
            let inv = 1.0 / scale;
            m = mat_mul([[inv, 0.0], [0.0, inv]], m);
        }
        let skew = magnitude(cfg.skew).min(MAX_SKEW);
        let perspective =
            (skew > 0.0 && rng.random_bool(TRANSFORM_PROBABILITY)).then(|| Homography::draw(skew, ch, cw, rng));

        // 4. Elastic distortion on the crop grid.
        let alpha = magnitude(cfg.elastic_alpha);
        let p = if cfg.elastic_probability.is_finite() { cfg.elastic_probability.clamp(0.0, 1.0) } else { 0.0 };
        let elastic = (alpha > 0.0 && ch * cw > 0 && p > 0.0 && rng.random_bool(f64::from(p))).then(|| {
            let sigma = magnitude(cfg.elastic_sigma);
            let dx = elastic_field(ch, cw, alpha, sigma, rng);
            let dy = elastic_field(ch, cw, alpha, sigma, rng);
            (dx, dy)
        });

        Warp { centre, half, m, perspective, elastic }
    }

    /// Source coordinates (x, y) of output pixel `(i, j)`; `k = i * crop_w + j`.
    #[inline]
    fn map(&self, i: usize, j: usize, k: usize) -> (f32, f32) {
        let mut u = j as f32 - self.half[0];
        let mut v = i as f32 - self.half[1];
        if let Some(h) = &self.perspective {
            (u, v) = h.apply(u, v);
        }
        let m = &self.m;
        let mut x = self.centre[0] + (m[0][0] * u + m[0][1] * v);
        let mut y = self.centre[1] + (m[1][0] * u + m[1][1] * v);
        if let Some((dx, dy)) = &self.elastic {
            x += dx[k];
            y += dy[k];
        }
        (sanitize(x), sanitize(y))
    }
}

/// The window's first source index along an axis: uniform over the integer positions where a
/// window of `window` pixels lies inside `source` pixels, or covers them if it is larger.
fn window_offset(rng: &mut impl Rng, source: usize, window: usize) -> f32 {
    let (s, w) = (source as i64, window as i64);
    let (lo, hi) = ((s - w).min(0), (s - w).max(0));
    rng.random_range(lo..=hi) as f32
}

/// `x.floor()` as an integer, for `|x| ≤ COORD_LIMIT` (exact: such floats are integers or
/// have a fractional part, and integers up to 2²⁴ convert exactly). Avoids a libm call on
/// targets without SSE4.1.
#[inline]
fn floor_i64(x: f32) -> i64 {
    let t = x as i64;
    if (t as f32) > x { t - 1 } else { t }
}

/// Keeps a coordinate finite and small enough for integer indexing.
#[inline]
fn sanitize(x: f32) -> f32 {
    if x.is_nan() { 0.0 } else { x.clamp(-COORD_LIMIT, COORD_LIMIT) }
}

/// A projective map in coordinates normalised so that the crop spans `[-1, 1]²`.
struct Homography {
    /// `h[0..8]` of `[[h0, h1, h2], [h3, h4, h5], [h6, h7, 1]]`.
    h: [f32; 8],
    /// Half the crop's width and height in pixels (the normalisation).
    scale: [f32; 2],
}

impl Homography {
    /// The map from the crop's corners to corners each moved by up to `skew` × the crop's size.
    fn draw(skew: f32, ch: usize, cw: usize, rng: &mut impl Rng) -> Homography {
        let corners = [[-1.0f64, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]];
        // `skew` is a fraction of the size, i.e. 2·skew in normalised units.
        let moved: Vec<[f64; 2]> = corners
            .iter()
            .map(|&[x, y]| {
                let dx = f64::from(symmetric(rng, 2.0 * skew));
                let dy = f64::from(symmetric(rng, 2.0 * skew));
                [x + dx, y + dy]
            })
            .collect();
        let mut a = [[0.0f64; 9]; 8];
        for (n, (&[x, y], &[tx, ty])) in corners.iter().zip(&moved).enumerate() {
            a[2 * n] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * tx, -y * tx, tx];
            a[2 * n + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -x * ty, -y * ty, ty];
        }
        let h = solve8(a).map(|v| v as f32);
        Homography { h, scale: [(cw as f32 / 2.0).max(0.5), (ch as f32 / 2.0).max(0.5)] }
    }

    /// Applies the map to centred pixel coordinates `(u, v)`.
    #[inline]
    fn apply(&self, u: f32, v: f32) -> (f32, f32) {
        let h = &self.h;
        let (x, y) = (u / self.scale[0], v / self.scale[1]);
        // Over the crop the denominator stays near 1 (convex target quadrilateral); the floor
        // only guards degenerate inputs.
        let den = (h[6] * x + h[7] * y + 1.0).max(1.0e-3);
        let tx = (h[0] * x + h[1] * y + h[2]) / den;
        let ty = (h[3] * x + h[4] * y + h[5]) / den;
        (tx * self.scale[0], ty * self.scale[1])
    }
}

/// Solves the 8×8 system `[A | b]` by Gaussian elimination with partial pivoting; a singular
/// system (which the corner constraints never produce) gives the identity map.
fn solve8(mut a: [[f64; 9]; 8]) -> [f64; 8] {
    const IDENTITY: [f64; 8] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0];
    for col in 0..8 {
        let pivot = (col..8).max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs())).expect("non-empty range");
        if a[pivot][col].abs() < 1.0e-12 {
            return IDENTITY;
        }
        a.swap(col, pivot);
        let pivot_row = a[col];
        for (row, r) in a.iter_mut().enumerate() {
            let f = r[col] / pivot_row[col];
            if row != col && f != 0.0 {
                for (v, p) in r[col..].iter_mut().zip(&pivot_row[col..]) {
                    *v -= f * p;
                }
            }
        }
    }
    let x: [f64; 8] = std::array::from_fn(|r| a[r][8] / a[r][r]);
    if x.iter().all(|v| v.is_finite()) { x } else { IDENTITY }
}

/// One component of a Simard et al. elastic field on an `h × w` grid: uniform noise in
/// `[-1, 1]`, smoothed by a Gaussian of `sigma` (mirrored borders), times `alpha`.
fn elastic_field(h: usize, w: usize, alpha: f32, sigma: f32, rng: &mut impl Rng) -> Vec<f32> {
    let mut field: Vec<f32> = (0..h * w).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    if sigma > 0.0 {
        let kernel = gaussian_kernel(sigma);
        field = smooth_rows(&field, h, w, &kernel);
        field = smooth_columns(&field, h, w, &kernel);
    }
    field.iter_mut().for_each(|v| *v *= alpha);
    field
}

/// A normalised 1-D Gaussian kernel of `sigma`, radius `round(4σ)` (as SciPy's default).
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (GAUSS_TRUNCATE * sigma + 0.5) as usize;
    let weights: Vec<f64> = (0..=2 * radius)
        .map(|t| {
            let x = t as f64 - radius as f64;
            (-0.5 * x * x / f64::from(sigma * sigma)).exp()
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    weights.iter().map(|w| (w / sum) as f32).collect()
}

/// Convolves each row of the `h × w` field with `kernel` (mirrored ends).
fn smooth_rows(field: &[f32], h: usize, w: usize, kernel: &[f32]) -> Vec<f32> {
    let radius = kernel.len() / 2;
    let mut out = vec![0.0f32; h * w];
    let mut padded = vec![0.0f32; w + 2 * radius];
    for (row, out_row) in field.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        for (t, p) in padded.iter_mut().enumerate() {
            *p = row[reflect(t as i64 - radius as i64, w)];
        }
        for (t, &kt) in kernel.iter().enumerate() {
            for (o, &s) in out_row.iter_mut().zip(&padded[t..t + w]) {
                *o += kt * s;
            }
        }
    }
    out
}

/// Convolves each column of the `h × w` field with `kernel` (mirrored ends).
fn smooth_columns(field: &[f32], h: usize, w: usize, kernel: &[f32]) -> Vec<f32> {
    let radius = kernel.len() / 2;
    let mut out = vec![0.0f32; h * w];
    for (y, out_row) in out.chunks_exact_mut(w).enumerate() {
        for (t, &kt) in kernel.iter().enumerate() {
            let src = reflect(y as i64 + t as i64 - radius as i64, h);
            for (o, &s) in out_row.iter_mut().zip(&field[src * w..(src + 1) * w]) {
                *o += kt * s;
            }
        }
    }
    out
}

/// Contrast (per channel, around the channel's mean) and then brightness (a fraction of the
/// crop's value range) on the interleaved `[H, W, C]` buffer.
fn photometric(image: &mut [f32], channels: usize, cfg: &AugmentConfig, rng: &mut impl Rng) {
    let contrast = magnitude(cfg.contrast);
    let brightness = magnitude(cfg.brightness);
    if image.is_empty() || channels == 0 || (contrast == 0.0 && brightness == 0.0) {
        return;
    }
    if contrast > 0.0 {
        let factor = 1.0 + symmetric(rng, contrast);
        let pixels = image.len() / channels;
        let mut sums = vec![0.0f64; channels];
        for px in image.chunks_exact(channels) {
            for (s, &v) in sums.iter_mut().zip(px) {
                *s += f64::from(v);
            }
        }
        let means: Vec<f32> = sums.iter().map(|s| (s / pixels as f64) as f32).collect();
        for px in image.chunks_exact_mut(channels) {
            for (v, &mean) in px.iter_mut().zip(&means) {
                *v = (*v - mean) * factor + mean;
            }
        }
    }
    if brightness > 0.0 {
        let shift = symmetric(rng, brightness);
        let (lo, hi) = image.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let range = hi - lo;
        if range.is_finite() && range > 0.0 {
            let delta = shift * range;
            image.iter_mut().for_each(|v| *v += delta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Axis, s};
    use std::collections::BTreeSet;

    /// An image of `c` channels of smooth noise and a mask of random classes from `classes`.
    fn random_source(h: usize, w: usize, c: usize, classes: &[u8], seed: u64) -> Sample {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let image = Array3::from_shape_fn((h, w, c), |_| rng.random_range(-2.0f32..2.0));
        let mask = Array2::from_shape_fn((h, w), |_| classes[rng.random_range(0..classes.len())]);
        Sample::new(image, mask)
    }

    /// Three classes (0, 1, 2) in blocks of `block` pixels; the image has two channels,
    /// (class, class²), so a bilinear blend of different classes can never look like a pure
    /// class (the points (k, k²) are in convex position).
    fn block_source(h: usize, w: usize, block: usize) -> Sample {
        let mask = Array2::from_shape_fn((h, w), |(i, j)| ((i / block + 2 * (j / block)) % 3) as u8);
        let image = Array3::from_shape_fn((h, w, 2), |(i, j, c)| {
            let k = f32::from(mask[[i, j]]);
            if c == 0 { k } else { k * k }
        });
        Sample::new(image, mask)
    }

    /// Every transform on and strong (the elastic distortion always).
    fn strong() -> AugmentConfig {
        AugmentConfig {
            rotation_degrees: 45.0,
            shear: 0.3,
            zoom: 0.3,
            skew: 0.2,
            elastic_probability: 1.0,
            ..AugmentConfig::default()
        }
    }

    fn geometric_only(cfg: AugmentConfig) -> AugmentConfig {
        AugmentConfig { brightness: 0.0, contrast: 0.0, ..cfg }
    }

    /// The 8 images of `a` under flips and 90° rotations (square `a`).
    fn dihedral(a: &Array3<f32>) -> Vec<Array3<f32>> {
        let mut out = Vec::new();
        for t in [a.clone(), a.view().permuted_axes([1, 0, 2]).to_owned()] {
            out.push(t.clone());
            out.push(t.slice(s![.., ..;-1, ..]).to_owned());
            out.push(t.slice(s![..;-1, .., ..]).to_owned());
            out.push(t.slice(s![..;-1, ..;-1, ..]).to_owned());
        }
        out
    }

    #[test]
    fn reflect_mirrors_half_sample() {
        let got: Vec<usize> = (-5..9).map(|i| reflect(i, 3)).collect();
        assert_eq!(got, [1, 2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1, 2]);
        assert!((-4..4).all(|i| reflect(i, 1) == 0));
    }

    #[test]
    fn gaussian_kernel_is_normalised_and_symmetric() {
        let k = gaussian_kernel(4.0);
        assert_eq!(k.len(), 33);
        assert!((k.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        assert!((0..k.len()).all(|t| k[t] == k[k.len() - 1 - t]));
    }

    #[test]
    fn homography_solver_recovers_a_known_map() {
        let h = [1.1f64, 0.05, -0.1, -0.02, 0.9, 0.2, 0.08, -0.06];
        let apply = |x: f64, y: f64| {
            let d = h[6] * x + h[7] * y + 1.0;
            ((h[0] * x + h[1] * y + h[2]) / d, (h[3] * x + h[4] * y + h[5]) / d)
        };
        let mut a = [[0.0f64; 9]; 8];
        for (n, (x, y)) in [(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)].into_iter().enumerate() {
            let (tx, ty) = apply(x, y);
            a[2 * n] = [x, y, 1.0, 0.0, 0.0, 0.0, -x * tx, -y * tx, tx];
            a[2 * n + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -x * ty, -y * ty, ty];
        }
        let got = solve8(a);
        assert!(got.iter().zip(&h).all(|(g, e)| (g - e).abs() < 1e-9), "{got:?}");
        assert_eq!(solve8([[0.0; 9]; 8]), [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn empty_crops_and_channels() {
        let src = random_source(8, 8, 1, &[1], 4);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let out = augment_crop(&src, 0, 5, &strong(), &mut rng);
        assert_eq!((out.image.dim(), out.mask.dim()), ((0, 5, 1), (0, 5)));
        let no_channels = Sample::new(Array3::zeros((8, 8, 0)), src.mask.clone());
        let out = augment_crop(&no_channels, 4, 4, &strong(), &mut rng);
        assert_eq!((out.image.dim(), out.mask.dim()), ((4, 4, 0), (4, 4)));
    }

    #[test]
    fn config_defaults_and_serde() {
        let d = AugmentConfig::default();
        assert!(d.flips);
        assert_eq!((d.rotation_degrees, d.shear, d.zoom, d.skew), (15.0, 0.1, 0.1, 0.1));
        assert_eq!((d.elastic_alpha, d.elastic_sigma, d.elastic_probability), (34.0, 4.0, 0.5));
        assert_eq!((d.brightness, d.contrast), (0.1, 0.1));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<AugmentConfig>(&json).unwrap(), d);
        let partial: AugmentConfig = serde_json::from_str(r#"{"flips": false}"#).unwrap();
        assert_eq!(partial, AugmentConfig { flips: false, ..AugmentConfig::default() });
    }

    /// (1) No transforms and crop == source: the source itself.
    #[test]
    fn none_with_full_crop_is_identity() {
        for (h, w, c) in [(32, 32, 1), (17, 40, 3), (1, 1, 2)] {
            let src = random_source(h, w, c, &[0, 1, 2, 9], 7);
            for seed in 0..10 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let out = augment_crop(&src, h, w, &AugmentConfig::none(), &mut rng);
                assert_eq!(out, src, "{h}x{w}x{c}, seed {seed}");
            }
        }
    }

    /// Without transforms a smaller crop is an exact window of the source.
    #[test]
    fn none_crop_is_a_window() {
        let src = random_source(40, 50, 2, &[1, 4], 3);
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = augment_crop(&src, 16, 24, &AugmentConfig::none(), &mut rng);
            let found = (0..=40 - 16).any(|oy| {
                (0..=50 - 24).any(|ox| {
                    out.image == src.image.slice(s![oy..oy + 16, ox..ox + 24, ..])
                        && out.mask == src.mask.slice(s![oy..oy + 16, ox..ox + 24])
                })
            });
            assert!(found, "seed {seed}: the crop is no window of the source");
        }
    }

    /// (2) Nearest sampling: masks only contain classes of the source, whatever the transform.
    #[test]
    fn masks_keep_source_classes() {
        let classes = [3u8, 7, 200];
        let sources = [
            random_source(48, 64, 1, &classes, 1),
            random_source(20, 9, 3, &classes, 2),
            random_source(1, 5, 1, &classes, 3),
        ];
        let allowed: BTreeSet<u8> = classes.into_iter().collect();
        for cfg in [AugmentConfig::default(), strong()] {
            for seed in 0..150u64 {
                let src = &sources[seed as usize % sources.len()];
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let out = augment_crop(src, 24, 32, &cfg, &mut rng);
                assert_eq!(out.mask.dim(), (24, 32));
                assert_eq!(out.image.dim(), (24, 32, src.image.dim().2));
                assert!(out.image.iter().all(|v| v.is_finite()));
                let seen: BTreeSet<u8> = out.mask.iter().copied().collect();
                assert!(seen.is_subset(&allowed), "seed {seed}: {seen:?}");
            }
        }
    }

    /// (3) Image and mask go through the same map. (a) Wherever the image is a pure class
    /// (bilinear weight only on pixels of one class), the mask has that class. (b) Wherever the
    /// map (redrawn from the same seed) lands far from a class boundary of the source (all
    /// pixels within 2 of the point of one class), image and mask both have that class.
    #[test]
    fn pixel_weights_are_warped_with_the_image() {
        let mut src = random_source(40, 52, 2, &[0, 1], 9);
        src.weights = Some(src.image.index_axis(ndarray::Axis(2), 1).to_owned());
        let cfg = geometric_only(strong());
        for seed in 0..20u64 {
            let out = augment_crop(&src, 32, 48, &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
            let w = out.weights.expect("a sample with weights keeps them");
            assert_eq!(w.dim(), (32, 48));
            for ((i, j), &v) in w.indexed_iter() {
                assert_eq!(v.to_bits(), out.image[[i, j, 1]].to_bits(), "seed {seed} at ({i}, {j})");
            }
        }
        // Without weights, none appear.
        let plain = Sample::new(src.image.clone(), src.mask.clone());
        assert!(augment_crop(&plain, 16, 16, &cfg, &mut ChaCha8Rng::seed_from_u64(1)).weights.is_none());
    }

    #[test]
    fn image_and_mask_stay_aligned() {
        let (sh, sw, ch, cw) = (96, 80, 48, 56);
        let src = block_source(sh, sw, 12);
        let (mut pure, mut interior) = (0usize, 0usize);
        for cfg in [geometric_only(AugmentConfig::default()), geometric_only(strong())] {
            for seed in 0..100u64 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let out = augment_crop(&src, ch, cw, &cfg, &mut rng);
                // augment_crop draws its geometry first, so this is the map it used.
                let warp = Warp::draw(sh, sw, ch, cw, &cfg, &mut ChaCha8Rng::seed_from_u64(seed));
                for i in 0..ch {
                    for j in 0..cw {
                        let class = out.mask[[i, j]];
                        let (a, b) = (out.image[[i, j, 0]], out.image[[i, j, 1]]);
                        for c in 0..3u8 {
                            let k = f32::from(c);
                            if (a - k).abs() < 1e-4 && (b - k * k).abs() < 1e-4 {
                                pure += 1;
                                assert_eq!(c, class, "seed {seed} at ({i}, {j}): image {a}");
                            }
                        }

                        let (x, y) = warp.map(i, j, i * cw + j);
                        let (x0, y0) = (x.floor() as i64, y.floor() as i64);
                        let footprint: BTreeSet<u8> = (y0 - 1..=y0 + 2)
                            .flat_map(|yy| (x0 - 1..=x0 + 2).map(move |xx| (yy, xx)))
                            .map(|(yy, xx)| src.mask[[reflect(yy, sh), reflect(xx, sw)]])
                            .collect();
                        if let [c] = footprint.into_iter().collect::<Vec<_>>()[..] {
                            interior += 1;
                            let k = f32::from(c);
                            assert_eq!(class, c, "seed {seed} at ({i}, {j}): mask");
                            assert!(a == k && b == k * k, "seed {seed} at ({i}, {j}): image ({a}, {b}), class {c}");
                        }
                    }
                }
            }
        }
        // Most of each crop is away from boundaries, so both checks saw plenty of pixels.
        let total = 2 * 100 * ch * cw;
        assert!(pure > total / 2, "{pure} of {total}");
        assert!(interior > total / 2, "{interior} of {total}");
    }

    /// (4) Same seed, same batch; thread count and batch splitting do not matter.
    #[test]
    fn batches_are_deterministic() {
        let sources = vec![
            random_source(64, 64, 1, &[0, 1], 11),
            random_source(50, 70, 1, &[0, 1, 2], 12),
            random_source(30, 20, 1, &[5], 13),
        ];
        let cfg = AugmentConfig::default();
        let a = augment_batch(&sources, 0, 24, 32, 32, &cfg, 42);
        let b = augment_batch(&sources, 0, 24, 32, 32, &cfg, 42);
        assert_eq!(a.len(), 24);
        assert_eq!(a, b);

        let single = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| augment_batch(&sources, 0, 24, 32, 32, &cfg, 42));
        assert_eq!(a, single);
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| augment_batch(&sources, 0, 24, 32, 32, &cfg, 42));
        assert_eq!(a, four);

        // Sample k depends on (seed, k) only: a stream split into batches is the same stream.
        let tail = augment_batch(&sources, 10, 14, 32, 32, &cfg, 42);
        assert_eq!(&a[10..], &tail[..]);

        // Another seed gives another batch; samples within a batch differ.
        let other = augment_batch(&sources, 0, 24, 32, 32, &cfg, 43);
        assert_ne!(a, other);
        assert_ne!(a[0], a[1]);
        assert!(augment_batch(&sources, 0, 0, 32, 32, &cfg, 42).is_empty());

        // augment_crop itself is a pure function of the generator's state.
        let mut r1 = ChaCha8Rng::seed_from_u64(5);
        let mut r2 = ChaCha8Rng::seed_from_u64(5);
        let x = augment_crop(&sources[1], 40, 24, &strong(), &mut r1);
        let y = augment_crop(&sources[1], 40, 24, &strong(), &mut r2);
        assert_eq!(x, y);
    }

    /// (5) Sources smaller than the crop are mirror-padded.
    #[test]
    fn smaller_sources_are_mirror_padded() {
        let (sh, sw) = (5usize, 7usize);
        let (ch, cw) = (12usize, 16usize);
        let src = random_source(sh, sw, 2, &[2, 6], 21);
        for seed in 0..20 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = augment_crop(&src, ch, cw, &AugmentConfig::none(), &mut rng);
            assert_eq!(out.image.dim(), (ch, cw, 2));
            // The crop is the mirrored source seen through some window covering it.
            let matches = |oy: i64, ox: i64| {
                (0..ch).all(|i| {
                    (0..cw).all(|j| {
                        let (y, x) = (reflect(i as i64 + oy, sh), reflect(j as i64 + ox, sw));
                        out.mask[[i, j]] == src.mask[[y, x]]
                            && out.image.slice(s![i, j, ..]) == src.image.slice(s![y, x, ..])
                    })
                })
            };
            let found = (sh as i64 - ch as i64..=0).any(|oy| (sw as i64 - cw as i64..=0).any(|ox| matches(oy, ox)));
            assert!(found, "seed {seed}");
            // Every source pixel appears in the crop.
            let seen: BTreeSet<u32> = out.image.iter().map(|v| v.to_bits()).collect();
            assert!(src.image.iter().all(|v| seen.contains(&v.to_bits())));
        }
        // Every transform, one-pixel and one-row sources too.
        for (h, w) in [(1, 1), (1, 9), (3, 2)] {
            let src = random_source(h, w, 1, &[4, 8], 22);
            for seed in 0..30 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let out = augment_crop(&src, 20, 10, &strong(), &mut rng);
                assert_eq!(out.mask.dim(), (20, 10));
                assert!(out.mask.iter().all(|v| *v == 4 || *v == 8));
                assert!(out.image.iter().all(|v| v.is_finite()));
            }
        }
    }

    /// (6) Flips and 90° rotations change the crop for some seeds, exactly (no interpolation),
    /// and reach all eight orientations; arbitrary rotations change it too.
    #[test]
    fn flips_and_rotations_change_the_output() {
        let src = random_source(24, 24, 2, &[0, 1, 2], 31);
        let candidates = dihedral(&src.image);
        let cfg = AugmentConfig { flips: true, ..AugmentConfig::none() };
        let mut reached = BTreeSet::new();
        for seed in 0..64 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = augment_crop(&src, 24, 24, &cfg, &mut rng);
            let which = candidates.iter().position(|c| *c == out.image);
            let which = which.unwrap_or_else(|| panic!("seed {seed}: not a flip/rotation"));
            reached.insert(which);
        }
        assert_eq!(reached.len(), 8, "orientations reached: {reached:?}");

        let cfg = AugmentConfig { rotation_degrees: 30.0, ..AugmentConfig::none() };
        let changed = (0..20)
            .filter(|&seed| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                augment_crop(&src, 24, 24, &cfg, &mut rng) != src
            })
            .count();
        assert!(changed > 0 && changed < 20, "{changed} of 20 rotated");
    }

    /// Odd quarter turns of a non-square crop still copy pixels exactly.
    #[test]
    fn quarter_turns_of_non_square_crops_are_exact() {
        let src = random_source(30, 30, 1, &[0, 1], 41);
        let values: BTreeSet<u32> = src.image.iter().map(|v| v.to_bits()).collect();
        let cfg = AugmentConfig { flips: true, ..AugmentConfig::none() };
        for seed in 0..32 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let out = augment_crop(&src, 8, 13, &cfg, &mut rng);
            assert!(out.image.iter().all(|v| values.contains(&v.to_bits())), "seed {seed}");
        }
    }

    /// The elastic distortion alone moves pixels but keeps classes.
    #[test]
    fn elastic_distorts() {
        let src = block_source(64, 64, 8);
        let cfg = AugmentConfig {
            elastic_alpha: 34.0,
            elastic_sigma: 4.0,
            elastic_probability: 1.0,
            ..AugmentConfig::none()
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let out = augment_crop(&src, 64, 64, &cfg, &mut rng);
        assert_ne!(out.mask, src.mask);
        assert!(out.mask.iter().all(|&v| v < 3));
        let moved = out.mask.iter().zip(&src.mask).filter(|(a, b)| a != b).count();
        assert!(moved < 64 * 64 / 2, "{moved} pixels changed class");
    }

    /// Brightness and contrast touch the image only, as an affine change per channel.
    #[test]
    fn photometric_changes_the_image_only() {
        let src = random_source(32, 32, 2, &[0, 1], 51);
        let cfg = AugmentConfig { brightness: 0.2, contrast: 0.2, ..AugmentConfig::none() };
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let out = augment_crop(&src, 32, 32, &cfg, &mut rng);
        assert_eq!(out.mask, src.mask);
        assert_ne!(out.image, src.image);
        for c in 0..2 {
            let (x, y) = (src.image.index_axis(Axis(2), c), out.image.index_axis(Axis(2), c));
            // y = a·x + b with the same a, b everywhere.
            let a = (y[[1, 0]] - y[[0, 0]]) / (x[[1, 0]] - x[[0, 0]]);
            let b = y[[0, 0]] - a * x[[0, 0]];
            assert!((0.79..=1.21).contains(&a), "contrast factor {a}");
            for (xv, yv) in x.iter().zip(y.iter()) {
                assert!((a * xv + b - yv).abs() < 1e-3);
            }
        }
    }

    /// Timing of the course's configuration on 256×256 crops (run with
    /// `cargo test --release -p bioseg-train --lib augment -- --ignored --nocapture`).
    #[test]
    #[ignore = "timing; meaningful in release builds only"]
    fn timing_256() {
        let src = random_source(512, 512, 1, &[0, 1], 61);
        let cfg = AugmentConfig { elastic_probability: 1.0, ..AugmentConfig::default() };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = 50;
        let start = std::time::Instant::now();
        for _ in 0..n {
            std::hint::black_box(augment_crop(&src, 256, 256, &cfg, &mut rng));
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / f64::from(n);
        println!("augment_crop 256x256x1, every transform: {ms:.2} ms per crop");
    }
}
