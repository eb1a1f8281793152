//! Tiling geometry: where tiles go, which source pixels each reads (with mirroring only at the
//! data's true borders), and how their outputs are blended.
//!
//! Along each axis the output is cut into cores of `tile` pixels starting at multiples of
//! `step` (= `tile` − `overlap`); the last core is moved back so it ends exactly at the border
//! (every pixel is covered, none is left out when the step does not divide the size). A tile
//! reads its core plus `halo` pixels of context on each side from the real neighbouring data;
//! only where that window leaves the data is it filled by reflection. Tile starts are aligned to
//! the model's size multiple so every tile sees the same pooling grid as whole-image inference.

/// Blending of overlapping tile outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blend {
    /// Each output pixel is taken from the one tile whose core contains it (exact, streams).
    Crop,
    /// Overlapping cores are averaged with Gaussian weights (σ = core/8), nnU-Net style.
    Gaussian,
}

impl Blend {
    /// Every blending and its name on the command line.
    const NAMES: [(Blend, &'static str); 2] = [(Blend::Crop, "crop"), (Blend::Gaussian, "gaussian")];
}

impl std::str::FromStr for Blend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&Blend::NAMES, "blend", s)
    }
}

impl std::fmt::Display for Blend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::names::name_of(&Blend::NAMES, self))
    }
}

/// How the threads share an image's (or a volume block's) tiles.
///
/// The convolutions split their own work over rayon's threads in both modes (blocks of output
/// pixels or rows), so with tiles in parallel a thread that runs out of tiles helps finish the
/// last tile's layers, and one tile alone still uses every core. Measured (BENCHMARKS.md, "Two
/// cores on one tile"): tiles in parallel are ~20 % faster for F=16 U-Nets on 256 tiles (one
/// tile at a time leaves the non-convolution ops and the tile copies on one core) and as fast
/// for F=64 on 512 tiles, where one tile at a time needs a third less memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parallelism {
    /// Two tiles per thread in flight, each run by one thread.
    #[default]
    Tiles,
    /// One tile at a time, each convolution split over the threads: less memory.
    Layers,
}

impl Parallelism {
    /// Every mode and its name on the command line.
    const NAMES: [(Parallelism, &'static str); 2] = [(Parallelism::Tiles, "tiles"), (Parallelism::Layers, "layers")];
}

impl std::str::FromStr for Parallelism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::names::parse(&Parallelism::NAMES, "parallelism", s)
    }
}

impl std::fmt::Display for Parallelism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::names::name_of(&Parallelism::NAMES, self))
    }
}

/// One axis of a tiling plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AxisPlan {
    /// Data size along the axis.
    pub size: usize,
    /// Core size (output pixels per tile; may be less than requested for small data).
    pub core: usize,
    /// Context read on each side of the core.
    pub halo: usize,
    /// Core start positions.
    pub starts: Vec<usize>,
}

impl AxisPlan {
    /// Plans one axis: `size` data pixels, requested core `tile`, `overlap` between cores,
    /// `halo` context, cores and window sizes aligned to `multiple`. The core shrinks to the
    /// data (rounded up to the multiple) for small data.
    pub fn new(size: usize, tile: usize, overlap: usize, halo: usize, multiple: usize) -> Result<Self, String> {
        let m = multiple.max(1);
        let core = tile.min(size.div_ceil(m) * m);
        Self::with_core(size, (core / m).max(1) * m, overlap, halo.div_ceil(m) * m, m)
    }

    /// Plans one axis for a model with a fixed input size `window`: the halo is rounded up to
    /// the multiple and the core is whatever the window leaves.
    pub fn fixed_window(
        size: usize,
        window: usize,
        overlap: usize,
        halo: usize,
        multiple: usize,
    ) -> Result<Self, String> {
        let m = multiple.max(1);
        let mut halo = halo.div_ceil(m) * m;
        while halo > 0 && window < 2 * halo + m {
            halo -= m;
        }
        if window <= 2 * halo {
            return Err(format!("the model's fixed input size {window} leaves no room inside a halo of {halo}"));
        }
        let m = if (window - 2 * halo).is_multiple_of(m) { m } else { 1 };
        Self::with_core(size, window - 2 * halo, overlap, halo, m)
    }

    fn with_core(size: usize, core: usize, overlap: usize, halo: usize, m: usize) -> Result<Self, String> {
        if size == 0 {
            return Err("cannot tile an empty axis".into());
        }
        // One tile covers small data: the overlap is irrelevant then.
        let overlap = if core >= size { 0 } else { overlap };
        if overlap >= core {
            return Err(format!("overlap {overlap} must be smaller than the tile core {core}"));
        }
        let step = ((core - overlap) / m).max(1) * m;
        let mut starts = Vec::new();
        let mut s = 0usize;
        loop {
            if s + core >= size {
                // Last tile: end at (or just past) the border, start aligned up to the
                // multiple; the part past the border reads mirrored data and is discarded.
                let last = size.saturating_sub(core).div_ceil(m) * m;
                starts.push(last.min(s));
                break;
            }
            starts.push(s);
            s += step;
        }
        starts.dedup();
        Ok(AxisPlan { size, core, halo, starts })
    }

    /// An axis of one position without context: the z axis of a 2-D image.
    pub fn single() -> Self {
        AxisPlan { size: 1, core: 1, halo: 0, starts: vec![0] }
    }

    /// Window length of every tile (core + 2 × halo).
    pub fn window(&self) -> usize {
        self.core + 2 * self.halo
    }

    /// Which source index the window position `i` of the tile starting at `start` reads.
    pub fn source_index(&self, start: usize, i: usize) -> usize {
        reflect(start as i64 - self.halo as i64 + i as i64, self.size)
    }

    /// The part of the core of tile `k` that crop-blending writes: `[from, to)` in data
    /// coordinates. Adjacent tiles split their overlap in the middle, so the ranges partition
    /// `[0, size)`.
    pub fn crop_range(&self, k: usize) -> (usize, usize) {
        let s = self.starts[k];
        let end = (s + self.core).min(self.size);
        let from = if k == 0 { 0 } else { (self.starts[k - 1] + self.core).min(self.size).midpoint(s) };
        let to = if k + 1 == self.starts.len() { self.size } else { end.midpoint(self.starts[k + 1]) };
        (from.max(s), to.min(end))
    }
}

/// Mirror index `i` into `[0, n)` without repeating the edge pixel (numpy's `reflect`),
/// repeatedly for windows far outside small data.
pub fn reflect(i: i64, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let n = n as i64;
    let period = 2 * (n - 1);
    let mut j = i.rem_euclid(period);
    if j >= n {
        j = period - j;
    }
    j as usize
}

/// Gaussian weights over a core of `len` pixels (σ = len/8), never below 1e-3 of the peak so
/// that border pixels covered by one tile keep a valid weight.
pub fn gaussian_weights(len: usize) -> Vec<f32> {
    let sigma = (len as f64 / 8.0).max(1e-6);
    let c = (len as f64 - 1.0) / 2.0;
    (0..len)
        .map(|i| {
            let d = (i as f64 - c) / sigma;
            ((-0.5 * d * d).exp()).max(1e-3) as f32
        })
        .collect()
}

/// The core size of tiles along rows and columns: a number of pixels, or `auto`, chosen for
/// each image by [`auto_tile`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TileSize {
    /// The core that computes the least for the image ([`auto_tile`]).
    Auto,
    /// This many pixels (shrunk to small images, aligned to the model's size multiple).
    Pixels(usize),
}

impl TileSize {
    /// The core of a volumetric (3-D) model's tiles along rows and columns under `auto`: the
    /// fixed 256 of earlier versions (3-D windows grow with their depth too; the 2-D choice
    /// has not been measured for them).
    pub const AUTO_3D: usize = 256;

    /// The core of a volumetric model's tiles along rows and columns.
    pub fn volumetric(self) -> usize {
        match self {
            TileSize::Pixels(t) => t,
            TileSize::Auto => Self::AUTO_3D,
        }
    }

    /// The core to request for a `height × width` image tiled with `halo` (in pixels) and
    /// `overlap` by a model of size multiple `multiple`.
    pub fn resolve(self, height: usize, width: usize, overlap: usize, halo: usize, multiple: usize) -> usize {
        match self {
            TileSize::Pixels(t) => t,
            TileSize::Auto => auto_tile(height, width, overlap, halo, multiple),
        }
    }
}

impl std::str::FromStr for TileSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("auto") {
            return Ok(TileSize::Auto);
        }
        match s.parse::<usize>() {
            Ok(t) if t > 0 => Ok(TileSize::Pixels(t)),
            _ => Err(format!("tile size {s:?}: expected `auto` or a positive number of pixels")),
        }
    }
}

impl std::fmt::Display for TileSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TileSize::Auto => f.write_str("auto"),
            TileSize::Pixels(t) => write!(f, "{t}"),
        }
    }
}

/// Largest core [`auto_tile`] picks: a window of (512 + 2 · halo)², whose activations stay
/// within a few hundred MiB per tile in flight for the U-Nets of this project (F=64: ~1 GiB at
/// halo 144).
pub const AUTO_TILE_MAX: usize = 512;

/// The tile core, up to [`AUTO_TILE_MAX`] and in multiples of `multiple`, whose windows cover
/// a `height × width` image with the fewest computed pixels (the smaller core on ties): a
/// tile pays its halo on every side, so on a 512² ISBI section with the shipped model's
/// 144-pixel halo a 256 core computes 4 windows of 544² (4.5× the image) where a 512 core
/// computes one of 800² (2.4×). The cores of a tile are shared by bioseg's convolutions
/// (their rows are split over the threads), so fewer, larger tiles do not leave cores idle.
pub fn auto_tile(height: usize, width: usize, overlap: usize, halo: usize, multiple: usize) -> usize {
    let m = multiple.max(1);
    let largest = height.max(width).div_ceil(m) * m;
    let computed = |t: usize| -> Option<usize> {
        let plan = TilePlan::new(height, width, (t, t), overlap, halo, m).ok()?;
        let axis = |a: &AxisPlan| a.starts.len() * (a.core + 2 * a.halo);
        Some(axis(&plan.y) * axis(&plan.x))
    };
    (1..=AUTO_TILE_MAX.min(largest).max(m) / m)
        .map(|k| k * m)
        .filter_map(|t| computed(t).map(|c| (c, t)))
        .min()
        .map_or(AUTO_TILE_MAX.min(largest).max(m), |(_, t)| t)
}

/// A 2-D tiling plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TilePlan {
    /// Rows.
    pub y: AxisPlan,
    /// Columns.
    pub x: AxisPlan,
}

impl TilePlan {
    /// Plans a `height × width` image.
    pub fn new(
        height: usize,
        width: usize,
        tile: (usize, usize),
        overlap: usize,
        halo: usize,
        multiple: usize,
    ) -> Result<Self, String> {
        Ok(TilePlan {
            y: AxisPlan::new(height, tile.0, overlap, halo, multiple)?,
            x: AxisPlan::new(width, tile.1, overlap, halo, multiple)?,
        })
    }

    /// Plans a `height × width` image for a model whose input is fixed at `window`.
    pub fn fixed(
        height: usize,
        width: usize,
        window: (usize, usize),
        overlap: usize,
        halo: usize,
        multiple: usize,
    ) -> Result<Self, String> {
        Ok(TilePlan {
            y: AxisPlan::fixed_window(height, window.0, overlap, halo, multiple)?,
            x: AxisPlan::fixed_window(width, window.1, overlap, halo, multiple)?,
        })
    }

    /// The plan as a grid of one slice without context (what the tiler runs).
    pub fn grid(&self) -> GridPlan {
        GridPlan { z: AxisPlan::single(), y: self.y.clone(), x: self.x.clone() }
    }

    /// All tiles, row-major.
    pub fn tiles(&self) -> Vec<GridTile> {
        self.grid().tiles()
    }

    /// Model input size `(height, width)` of every tile.
    pub fn window(&self) -> (usize, usize) {
        (self.y.window(), self.x.window())
    }
}

/// A tiling plan along z, y and x (for a 2-D image, z is [`AxisPlan::single`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GridPlan {
    /// Slices.
    pub z: AxisPlan,
    /// Rows.
    pub y: AxisPlan,
    /// Columns.
    pub x: AxisPlan,
}

/// One tile of a [`GridPlan`]: indices along each axis and the core's origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridTile {
    /// Indices along z, y, x.
    pub k: [usize; 3],
    /// Core origin (z, y, x).
    pub origin: [usize; 3],
}

impl GridPlan {
    /// All tiles, z-major, then rows, then columns.
    pub fn tiles(&self) -> Vec<GridTile> {
        let mut v = Vec::new();
        for (kz, &z0) in self.z.starts.iter().enumerate() {
            for (ky, &y0) in self.y.starts.iter().enumerate() {
                for (kx, &x0) in self.x.starts.iter().enumerate() {
                    v.push(GridTile { k: [kz, ky, kx], origin: [z0, y0, x0] });
                }
            }
        }
        v
    }

    /// Model input size (depth, height, width) of every tile.
    pub fn window(&self) -> [usize; 3] {
        [self.z.window(), self.y.window(), self.x.window()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tile_computes_the_least_and_parses() {
        // A 512² ISBI section with a 144-pixel halo: one window of 800² (2.4× the image)
        // rather than four of 544² (4.5×).
        assert_eq!(auto_tile(512, 512, 0, 144, 16), 512);
        // The core never exceeds the cap, nor the image (rounded up to the multiple).
        assert_eq!(auto_tile(100, 60, 0, 32, 16), 112);
        let big = auto_tile(4096, 4096, 0, 32, 16);
        assert!(big <= AUTO_TILE_MAX && big.is_multiple_of(16));
        // Whatever it picks computes no more than any other allowed core.
        let computed = |t: usize| {
            let p = TilePlan::new(1000, 700, (t, t), 0, 48, 16).unwrap();
            p.y.starts.len() * p.y.window() * p.x.starts.len() * p.x.window()
        };
        let best = computed(auto_tile(1000, 700, 0, 48, 16));
        assert!((16..=512).step_by(16).all(|t| computed(t) >= best));
        assert_eq!("auto".parse::<TileSize>(), Ok(TileSize::Auto));
        assert_eq!("384".parse::<TileSize>(), Ok(TileSize::Pixels(384)));
        assert!("0".parse::<TileSize>().is_err() && "big".parse::<TileSize>().is_err());
        assert_eq!(TileSize::Auto.to_string(), "auto");
        assert_eq!(TileSize::Pixels(64).resolve(512, 512, 0, 144, 16), 64);
        assert_eq!(TileSize::Auto.volumetric(), TileSize::AUTO_3D);
    }

    #[test]
    fn blends_print_as_they_parse() {
        for b in [Blend::Crop, Blend::Gaussian] {
            assert_eq!(b.to_string().parse::<Blend>(), Ok(b));
        }
        assert_eq!("x".parse::<Blend>(), Err("unknown blend `x` (expected crop or gaussian)".to_string()));
    }

    #[test]
    fn reflect_mirrors_without_repeating_edges() {
        let v: Vec<usize> = (-3..8).map(|i| reflect(i, 5)).collect();
        assert_eq!(v, vec![3, 2, 1, 0, 1, 2, 3, 4, 3, 2, 1]);
        assert_eq!(reflect(-7, 2), 1);
        assert_eq!(reflect(100, 1), 0);
    }

    #[test]
    fn crop_ranges_partition_the_axis() {
        for size in [1, 5, 16, 17, 100, 255, 256, 257, 1000] {
            for (tile, overlap) in [(16, 0), (64, 16), (32, 8), (256, 0)] {
                let a = AxisPlan::new(size, tile, overlap, 8, 16).unwrap();
                let mut next = 0;
                for k in 0..a.starts.len() {
                    let (f, t) = a.crop_range(k);
                    assert_eq!(f, next, "size {size} tile {tile} overlap {overlap}: {a:?}");
                    assert!(t > f || size == 0);
                    assert!(a.starts[k] <= f && t <= a.starts[k] + a.core);
                    assert_eq!(a.starts[k] % 16, 0);
                    next = t;
                }
                assert_eq!(next, size);
            }
        }
    }
}
