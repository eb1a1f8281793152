//! Label images and how their pixel values map to class indices.
//!
//! Label files come in several conventions; [`MaskEncoding::detect_named`] looks
//! at the distinct values of *all* of a dataset's labels (so the mapping is the
//! same for every file) and picks one:
//!
//! * [`MaskEncoding::Binary`]: gray values 0 and 255 (or 0 and 65535) only;
//!   class = value above half the maximum. For ISBI membrane labels (255 = cell
//!   interior, 0 = membrane) class 1 is the cell interior.
//! * [`MaskEncoding::Indexed`]: small non-negative integers used as class indices
//!   directly (0, 1, 2, …; below 32, or below the `num_classes` the caller gives).
//! * [`MaskEncoding::GrayLevels`]: a few distinct gray levels (at most 32, or at
//!   most `num_classes`), mapped to 0, 1, 2, … in increasing order (e.g.
//!   0, 128, 255 → 0, 1, 2).
//! * [`MaskEncoding::OneHot`]: RGB where every pixel has exactly one channel at
//!   the maximum and the others at 0; class = that channel (R = 0, G = 1, B = 2).
//! * [`MaskEncoding::Colors`]: other RGB labels with few distinct colors (e.g.
//!   palette PNGs), mapped to 0, 1, 2, … in lexicographic `(r, g, b)` order.
//!
//! RGB labels whose pixels are all gray (r = g = b) are treated as gray.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

use crate::error::DataError;
use crate::image::{Image, SampleDepth};

/// Most distinct values [`LabelValues`] records for one image before giving up.
pub const MAX_DISTINCT_VALUES: usize = 1024;

/// Most classes an automatically detected [`MaskEncoding::Indexed`] or
/// [`MaskEncoding::GrayLevels`] encoding may have when the caller does not say
/// how many classes to expect.
pub const AUTO_MAX_CLASSES: usize = 32;

/// A decoded label: one class index per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Class index per pixel, `[height, width]`.
    pub classes: Array2<u8>,
    /// Number of classes of the dataset (every entry of `classes` is below it).
    pub num_classes: usize,
}

impl Mask {
    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.classes.ncols()
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.classes.nrows()
    }

    /// Number of pixels of each class (`num_classes` entries; indices at or above
    /// `num_classes` are ignored).
    pub fn class_counts(&self) -> Vec<u64> {
        let mut counts = vec![0u64; self.num_classes];
        for &c in &self.classes {
            if let Some(n) = counts.get_mut(c as usize) {
                *n += 1;
            }
        }
        counts
    }
}

/// A pixel value of a label image as an `[r, g, b]` triple (gray pixels repeat the value).
pub type LabelColor = [f32; 3];

/// The distinct pixel values of one label image, with how often each occurs.
///
/// This is all that [`MaskEncoding`] detection needs, so a dataset can be scanned
/// without keeping every label image in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelValues {
    /// Channels of the image (1 or 3 for images read from files).
    pub channels: usize,
    /// Sample depth of the image.
    pub depth: SampleDepth,
    /// Image width.
    pub width: usize,
    /// Image height.
    pub height: usize,
    /// Distinct values in increasing order with their pixel counts.
    pub values: Vec<(LabelColor, u64)>,
    /// True when the image has more than [`MAX_DISTINCT_VALUES`] distinct values
    /// (`values` then holds only the first ones seen).
    pub overflow: bool,
    /// True when some sample is NaN.
    pub has_nan: bool,
}

/// Order-preserving integer key of an `f32` (`-0.0` is folded into `0.0`).
fn key(v: f32) -> u32 {
    let b = (v + 0.0).to_bits();
    if b >> 31 == 1 { !b } else { b | 0x8000_0000 }
}

/// Inverse of [`key`].
fn unkey(k: u32) -> f32 {
    f32::from_bits(if k >> 31 == 1 { k & 0x7fff_ffff } else { !k })
}

impl LabelValues {
    /// Scans `image` for its distinct values.
    pub fn of(image: &Image) -> Self {
        let (height, width, channels) = image.data.dim();
        let mut out = LabelValues {
            channels,
            depth: image.depth,
            width,
            height,
            values: Vec::new(),
            overflow: false,
            has_nan: false,
        };
        if channels == 1 {
            let mut hist = [0u64; 256];
            let mut map: BTreeMap<u32, u64> = BTreeMap::new();
            let mut last: Option<(u32, u64)> = None;
            for &v in image.data.iter() {
                if v.is_nan() {
                    out.has_nan = true;
                    continue;
                }
                if (0.0..=255.0).contains(&v) && v.fract() == 0.0 {
                    hist[v as usize] += 1;
                    continue;
                }
                let k = key(v);
                match &mut last {
                    Some((lk, n)) if *lk == k => *n += 1,
                    _ => {
                        if let Some((lk, n)) = last.take() {
                            *map.entry(lk).or_default() += n;
                        }
                        if map.len() >= MAX_DISTINCT_VALUES && !map.contains_key(&k) {
                            out.overflow = true;
                        } else {
                            last = Some((k, 1));
                        }
                    }
                }
            }
            if let Some((lk, n)) = last {
                *map.entry(lk).or_default() += n;
            }
            for (i, &n) in hist.iter().enumerate() {
                if n > 0 {
                    *map.entry(key(i as f32)).or_default() += n;
                }
            }
            if map.len() > MAX_DISTINCT_VALUES {
                out.overflow = true;
            }
            out.values = map
                .into_iter()
                .map(|(k, n)| {
                    let v = unkey(k);
                    ([v, v, v], n)
                })
                .collect();
        } else if channels == 3 {
            let mut map: BTreeMap<[u32; 3], u64> = BTreeMap::new();
            let mut last: Option<([u32; 3], u64)> = None;
            for px in image.data.lanes(Axis(2)) {
                if px.iter().any(|v| v.is_nan()) {
                    out.has_nan = true;
                    continue;
                }
                let k = [key(px[0]), key(px[1]), key(px[2])];
                match &mut last {
                    Some((lk, n)) if *lk == k => *n += 1,
                    _ => {
                        if let Some((lk, n)) = last.take() {
                            *map.entry(lk).or_default() += n;
                        }
                        if map.len() >= MAX_DISTINCT_VALUES && !map.contains_key(&k) {
                            out.overflow = true;
                        } else {
                            last = Some((k, 1));
                        }
                    }
                }
            }
            if let Some((lk, n)) = last {
                *map.entry(lk).or_default() += n;
            }
            out.values = map.into_iter().map(|(k, n)| ([unkey(k[0]), unkey(k[1]), unkey(k[2])], n)).collect();
        }
        out
    }

    /// True when every value is gray (`r = g = b`).
    pub fn is_gray(&self) -> bool {
        self.values.iter().all(|(c, _)| c[0] == c[1] && c[1] == c[2])
    }

    /// True when some value is exactly `color`.
    fn contains(&self, color: &LabelColor) -> bool {
        self.values.iter().any(|(c, _)| c == color)
    }
}

/// How the pixel values of a dataset's label images map to class indices
/// (see the module documentation).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum MaskEncoding {
    /// Gray values `0` and `max` (255 or 65535): class 0 and class 1.
    Binary {
        /// The "on" value (255 or 65535).
        max: f32,
    },
    /// Gray values are class indices `0..num_classes`.
    Indexed {
        /// Number of classes.
        num_classes: usize,
    },
    /// Distinct gray levels, class = position in `levels` (increasing).
    GrayLevels {
        /// The gray levels, increasing.
        levels: Vec<f32>,
    },
    /// RGB one-hot: exactly one channel at `max`, the others 0; class = channel.
    OneHot {
        /// The "on" value of a channel.
        max: f32,
    },
    /// Distinct RGB colors, class = position in `colors` (lexicographic order).
    Colors {
        /// The colors, in increasing `(r, g, b)` order.
        colors: Vec<LabelColor>,
    },
}

impl fmt::Display for MaskEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskEncoding::Binary { max } => write!(f, "binary (0 / {max})"),
            MaskEncoding::Indexed { num_classes } => {
                write!(f, "class indices 0..{}", num_classes.saturating_sub(1))
            }
            MaskEncoding::GrayLevels { levels } => write!(f, "gray levels {levels:?}"),
            MaskEncoding::OneHot { max } => write!(f, "one-hot RGB (channel at {max})"),
            MaskEncoding::Colors { colors } => write!(f, "{} RGB colors", colors.len()),
        }
    }
}

/// Formats a value for error messages: a gray level as one number, else `r,g,b`.
fn show(c: &LabelColor) -> String {
    if c[0] == c[1] && c[1] == c[2] { format!("{}", c[0]) } else { format!("{},{},{}", c[0], c[1], c[2]) }
}

impl MaskEncoding {
    /// Detects the encoding of in-memory label images (see [`Self::detect_named`]);
    /// error messages call the images `<label N>`.
    pub fn detect(labels: &[&Image]) -> Result<Self, DataError> {
        let names: Vec<PathBuf> = (0..labels.len()).map(|i| PathBuf::from(format!("<label {i}>"))).collect();
        let values: Vec<LabelValues> = labels.iter().map(|l| LabelValues::of(l)).collect();
        let named: Vec<(&Path, &LabelValues)> = names.iter().map(PathBuf::as_path).zip(values.iter()).collect();
        Self::detect_named(&named, None)
    }

    /// Detects the one encoding that fits all `labels` (file name and scanned values).
    ///
    /// With `num_classes`, class indices must stay below it: a value that would
    /// need more classes is reported ([`DataError::LabelValue`]) with the first
    /// file holding it. Without it, at most [`AUTO_MAX_CLASSES`] gray levels or
    /// colors are accepted. Labels with NaN samples, channel counts other than 1
    /// or 3, or too many distinct values give [`DataError::MaskEncoding`].
    pub fn detect_named(labels: &[(&Path, &LabelValues)], num_classes: Option<usize>) -> Result<Self, DataError> {
        let Some(first) = labels.first() else {
            return Err(DataError::MaskEncoding {
                path: PathBuf::from("<no labels>"),
                reason: "no label images to detect an encoding from".into(),
            });
        };
        if let Some(n) = num_classes
            && !(1..=256).contains(&n)
        {
            return Err(DataError::MaskEncoding {
                path: first.0.to_path_buf(),
                reason: format!("{n} classes requested; masks hold 1 to 256 classes"),
            });
        }
        for (path, v) in labels {
            let problem = if v.channels != 1 && v.channels != 3 {
                Some(format!("{} channels (expected 1 or 3)", v.channels))
            } else if v.has_nan {
                Some("NaN samples".to_string())
            } else if v.overflow {
                Some(format!("more than {MAX_DISTINCT_VALUES} distinct values; this does not look like a label image"))
            } else {
                None
            };
            if let Some(reason) = problem {
                return Err(DataError::MaskEncoding { path: path.to_path_buf(), reason });
            }
        }
        // The union of all values, sorted.
        let mut union: BTreeMap<[u32; 3], ()> = BTreeMap::new();
        for (_, v) in labels {
            for (c, _) in &v.values {
                union.insert([key(c[0]), key(c[1]), key(c[2])], ());
            }
        }
        let union: Vec<LabelColor> = union.into_keys().map(|k| [unkey(k[0]), unkey(k[1]), unkey(k[2])]).collect();
        let first_with = |c: &LabelColor| -> PathBuf {
            labels.iter().find(|(_, v)| v.contains(c)).map(|(p, _)| p.to_path_buf()).unwrap_or_default()
        };
        let limit = num_classes.unwrap_or(AUTO_MAX_CLASSES);
        let too_many = |what: &str, count: usize, offending: &LabelColor| -> DataError {
            match num_classes {
                Some(n) => DataError::LabelValue {
                    path: first_with(offending),
                    value: show(offending),
                    reason: format!("the labels hold {count} distinct {what} but {n} classes are expected"),
                },
                None => DataError::MaskEncoding {
                    path: first_with(offending),
                    reason: format!(
                        "the labels hold {count} distinct {what} (more than {AUTO_MAX_CLASSES}); give the number of classes if this is intended"
                    ),
                },
            }
        };

        if union.iter().all(|c| c[0] == c[1] && c[1] == c[2]) {
            let levels: Vec<f32> = union.iter().map(|c| c[0]).collect();
            // Binary 0 / 255 or 0 / 65535.
            for max in [255.0f32, 65535.0] {
                if levels.contains(&max) && levels.iter().all(|&v| v == 0.0 || v == max) {
                    if num_classes == Some(1) {
                        let c = [max; 3];
                        return Err(DataError::LabelValue {
                            path: first_with(&c),
                            value: show(&c),
                            reason: "binary labels need 2 classes but 1 is expected".into(),
                        });
                    }
                    return Ok(MaskEncoding::Binary { max });
                }
            }
            // Small integers used as class indices.
            let all_int = levels.iter().all(|&v| v >= 0.0 && v.fract() == 0.0);
            let top = levels.last().copied().unwrap_or(0.0);
            if all_int && (top as usize) < limit {
                return Ok(MaskEncoding::Indexed { num_classes: num_classes.unwrap_or(top as usize + 1) });
            }
            if levels.len() <= limit {
                return Ok(MaskEncoding::GrayLevels { levels });
            }
            let offending = if all_int {
                // The smallest index that does not fit.
                let v = levels.iter().copied().find(|&v| v as usize >= limit).unwrap_or(top);
                [v; 3]
            } else {
                [top; 3]
            };
            if all_int && let Some(n) = num_classes {
                return Err(DataError::LabelValue {
                    path: first_with(&offending),
                    value: show(&offending),
                    reason: format!("class indices must be below {n}"),
                });
            }
            return Err(too_many("gray levels", levels.len(), &offending));
        }

        // RGB: one-hot?
        let max = union.iter().flat_map(|c| c.iter().copied()).fold(f32::MIN, f32::max);
        let is_unit =
            |c: &LabelColor| c.iter().filter(|&&v| v == max).count() == 1 && c.iter().all(|&v| v == max || v == 0.0);
        if max > 0.0 && union.iter().all(is_unit) {
            if let Some(n) = num_classes
                && let Some(c) = union.iter().find(|c| c.iter().position(|&v| v == max).unwrap_or(0) >= n)
            {
                return Err(DataError::LabelValue {
                    path: first_with(c),
                    value: show(c),
                    reason: format!("one-hot channel is a class index at or above the {n} expected classes"),
                });
            }
            return Ok(MaskEncoding::OneHot { max });
        }
        if union.len() <= limit {
            return Ok(MaskEncoding::Colors { colors: union });
        }
        let offending = union.last().copied().unwrap_or_default();
        Err(too_many("colors", union.len(), &offending))
    }

    /// Number of classes the encoding distinguishes.
    pub fn num_classes(&self) -> usize {
        match self {
            MaskEncoding::Binary { .. } => 2,
            MaskEncoding::Indexed { num_classes } => *num_classes,
            MaskEncoding::GrayLevels { levels } => levels.len(),
            MaskEncoding::OneHot { .. } => 3,
            MaskEncoding::Colors { colors } => colors.len(),
        }
    }

    /// True for the encodings of gray labels.
    fn is_gray(&self) -> bool {
        matches!(self, MaskEncoding::Binary { .. } | MaskEncoding::Indexed { .. } | MaskEncoding::GrayLevels { .. })
    }

    /// The class of one pixel value, or `None` when the value is not part of the encoding.
    pub fn class_of(&self, c: &LabelColor) -> Option<u8> {
        let gray = c[0] == c[1] && c[1] == c[2];
        let class = match self {
            MaskEncoding::Binary { max } if gray => {
                if c[0] == 0.0 {
                    0
                } else if c[0] == *max {
                    1
                } else {
                    return None;
                }
            }
            MaskEncoding::Indexed { num_classes } if gray => {
                let v = c[0];
                if v >= 0.0 && v.fract() == 0.0 && (v as usize) < *num_classes {
                    v as usize
                } else {
                    return None;
                }
            }
            MaskEncoding::GrayLevels { levels } if gray => {
                levels.binary_search_by(|l| l.total_cmp(&(c[0] + 0.0))).ok()?
            }
            MaskEncoding::OneHot { max } => {
                if c.iter().filter(|&&v| v == *max).count() != 1 || !c.iter().all(|&v| v == *max || v == 0.0) {
                    return None;
                }
                c.iter().position(|v| v == max)?
            }
            MaskEncoding::Colors { colors } => colors.iter().position(|k| k == c)?,
            _ => return None,
        };
        u8::try_from(class).ok()
    }

    /// What a valid value looks like, for error messages.
    fn expectation(&self) -> String {
        match self {
            MaskEncoding::Binary { max } => format!("expected 0 or {max}"),
            MaskEncoding::Indexed { num_classes } => {
                format!("expected an integer class index below {num_classes}")
            }
            MaskEncoding::GrayLevels { levels } => {
                format!("expected one of the gray levels {levels:?}")
            }
            MaskEncoding::OneHot { max } => {
                format!("expected exactly one channel at {max} and the others at 0")
            }
            MaskEncoding::Colors { colors } => {
                format!("expected one of the dataset's {} colors", colors.len())
            }
        }
    }

    /// Pixel counts per class for a scanned label (`num_classes()` entries).
    ///
    /// `path` names the label in the error for a value the encoding does not know.
    pub fn class_counts(&self, values: &LabelValues, path: &Path) -> Result<Vec<u64>, DataError> {
        let mut counts = vec![0u64; self.num_classes()];
        for (c, n) in &values.values {
            let class = self.class_of(c).ok_or_else(|| DataError::LabelValue {
                path: path.to_path_buf(),
                value: show(c),
                reason: self.expectation(),
            })?;
            counts[class as usize] += n;
        }
        Ok(counts)
    }

    /// Decodes a label image into class indices; `path` names it in errors.
    ///
    /// Every pixel must be one of the values the encoding knows (no
    /// thresholding of stray values), otherwise [`DataError::LabelValue`] names
    /// the file and the value.
    pub fn decode(&self, label: &Image, path: &Path) -> Result<Mask, DataError> {
        let (h, w, channels) = label.data.dim();
        let channels_ok = match channels {
            1 => self.is_gray(),
            3 => true,
            _ => false,
        };
        if !channels_ok {
            return Err(DataError::MaskEncoding {
                path: path.to_path_buf(),
                reason: format!("label has {channels} channels but the dataset's encoding is {self}"),
            });
        }
        let mut classes = Array2::<u8>::zeros((h, w));
        // Cache the last value: labels have long runs of equal pixels.
        let mut last: Option<(LabelColor, u8)> = None;
        for ((y, x), out) in classes.indexed_iter_mut() {
            let c = if channels == 1 {
                let v = label.data[[y, x, 0]];
                [v, v, v]
            } else {
                [label.data[[y, x, 0]], label.data[[y, x, 1]], label.data[[y, x, 2]]]
            };
            let class = match last {
                Some((lc, k)) if lc == c => k,
                _ => {
                    let k = self.class_of(&c).ok_or_else(|| DataError::LabelValue {
                        path: path.to_path_buf(),
                        value: show(&c),
                        reason: format!("at x={x}, y={y}: {}", self.expectation()),
                    })?;
                    last = Some((c, k));
                    k
                }
            };
            *out = class;
        }
        Ok(Mask { classes, num_classes: self.num_classes() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array3, array};

    fn gray(v: &[f32], depth: SampleDepth) -> Image {
        Image { data: Array3::from_shape_vec((1, v.len(), 1), v.to_vec()).unwrap(), depth }
    }

    fn rgb(px: &[[f32; 3]]) -> Image {
        let flat: Vec<f32> = px.iter().flatten().copied().collect();
        Image { data: Array3::from_shape_vec((1, px.len(), 3), flat).unwrap(), depth: SampleDepth::U8 }
    }

    fn p() -> &'static Path {
        Path::new("/l/1.png")
    }

    #[test]
    fn binary_0_255() {
        let a = gray(&[0.0, 255.0, 255.0], SampleDepth::U8);
        let b = gray(&[255.0, 255.0], SampleDepth::U8);
        let e = MaskEncoding::detect(&[&a, &b]).unwrap();
        assert_eq!(e, MaskEncoding::Binary { max: 255.0 });
        let m = e.decode(&a, p()).unwrap();
        assert_eq!(m.classes, array![[0u8, 1, 1]]);
        assert_eq!(m.num_classes, 2);
        // A stray value is an error naming file and value.
        let bad = gray(&[0.0, 128.0], SampleDepth::U8);
        let err = e.decode(&bad, p()).unwrap_err().to_string();
        assert!(err.contains("/l/1.png") && err.contains("128") && err.contains("x=1"), "{err}");
    }

    #[test]
    fn binary_16_bit() {
        let a = gray(&[0.0, 65535.0], SampleDepth::U16);
        assert_eq!(MaskEncoding::detect(&[&a]).unwrap(), MaskEncoding::Binary { max: 65535.0 });
    }

    #[test]
    fn small_integers_are_indices() {
        let a = gray(&[0.0, 1.0, 2.0], SampleDepth::U8);
        let b = gray(&[0.0, 0.0], SampleDepth::U8);
        let e = MaskEncoding::detect(&[&a, &b]).unwrap();
        assert_eq!(e, MaskEncoding::Indexed { num_classes: 3 });
        assert_eq!(e.decode(&a, p()).unwrap().classes, array![[0u8, 1, 2]]);
        // 0/1 masks are two-class indices.
        let c = gray(&[0.0, 1.0], SampleDepth::U8);
        assert_eq!(MaskEncoding::detect(&[&c]).unwrap().num_classes(), 2);
        // An all-zero mask is a single class.
        let z = gray(&[0.0], SampleDepth::U8);
        assert_eq!(MaskEncoding::detect(&[&z]).unwrap(), MaskEncoding::Indexed { num_classes: 1 });
    }

    #[test]
    fn gray_levels_are_sorted_across_the_dataset() {
        let a = gray(&[255.0, 0.0], SampleDepth::U8);
        let b = gray(&[128.0, 0.0], SampleDepth::U8);
        let e = MaskEncoding::detect(&[&a, &b]).unwrap();
        assert_eq!(e, MaskEncoding::GrayLevels { levels: vec![0.0, 128.0, 255.0] });
        assert_eq!(e.decode(&a, p()).unwrap().classes, array![[2u8, 0]]);
        assert_eq!(e.decode(&b, p()).unwrap().classes, array![[1u8, 0]]);
    }

    #[test]
    fn one_hot_rgb() {
        let a = rgb(&[[255.0, 0.0, 0.0], [0.0, 255.0, 0.0], [0.0, 0.0, 255.0]]);
        let e = MaskEncoding::detect(&[&a]).unwrap();
        assert_eq!(e, MaskEncoding::OneHot { max: 255.0 });
        assert_eq!(e.decode(&a, p()).unwrap().classes, array![[0u8, 1, 2]]);
        let bad = rgb(&[[255.0, 255.0, 0.0]]);
        assert!(matches!(e.decode(&bad, p()), Err(DataError::LabelValue { .. })));
    }

    #[test]
    fn other_colors_and_gray_rgb() {
        let a = rgb(&[[10.0, 20.0, 30.0], [0.0, 0.0, 0.0], [10.0, 20.0, 30.0]]);
        let e = MaskEncoding::detect(&[&a]).unwrap();
        assert_eq!(e.num_classes(), 2);
        assert_eq!(e.decode(&a, p()).unwrap().classes, array![[1u8, 0, 1]]);
        // RGB whose pixels are gray decodes like gray.
        let g = rgb(&[[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]);
        let e = MaskEncoding::detect(&[&g]).unwrap();
        assert_eq!(e, MaskEncoding::Binary { max: 255.0 });
        assert_eq!(e.decode(&g, p()).unwrap().classes, array![[0u8, 1]]);
    }

    #[test]
    fn expected_class_count_is_enforced() {
        let a = gray(&[0.0, 1.0, 2.0, 3.0], SampleDepth::U8);
        let va = LabelValues::of(&a);
        let z = gray(&[0.0], SampleDepth::U8);
        let vz = LabelValues::of(&z);
        let labels = [(Path::new("/d/0.png"), &vz), (Path::new("/d/7.png"), &va)];
        let err = MaskEncoding::detect_named(&labels, Some(3)).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::LabelValue { .. }), "{msg}");
        assert!(msg.contains("/d/7.png") && msg.contains(" 3 "), "{msg}");
        // Enough classes: fine, and the count is the caller's.
        let e = MaskEncoding::detect_named(&labels, Some(5)).unwrap();
        assert_eq!(e, MaskEncoding::Indexed { num_classes: 5 });
        // Gray levels that do not fit.
        let g = gray(&[0.0, 100.0, 200.0], SampleDepth::U8);
        let vg = LabelValues::of(&g);
        let err = MaskEncoding::detect_named(&[(Path::new("/d/g.png"), &vg)], Some(2)).unwrap_err();
        assert!(err.to_string().contains("/d/g.png"), "{err}");
    }

    #[test]
    fn non_label_images_are_rejected() {
        let noise: Vec<f32> = (0..2000).map(|i| i as f32 * 0.37).collect();
        let a = gray(&noise, SampleDepth::F32);
        let err = MaskEncoding::detect(&[&a]).unwrap_err();
        assert!(matches!(err, DataError::MaskEncoding { .. }), "{err}");
        let ramp: Vec<f32> = (0..100).map(|i| i as f32 * 2.0).collect();
        let err = MaskEncoding::detect(&[&gray(&ramp, SampleDepth::U8)]).unwrap_err();
        assert!(err.to_string().contains("100 distinct gray levels"), "{err}");
        let nan = gray(&[0.0, f32::NAN], SampleDepth::F32);
        assert!(MaskEncoding::detect(&[&nan]).is_err());
        assert!(MaskEncoding::detect(&[]).is_err());
    }

    #[test]
    fn float_labels() {
        let a = gray(&[0.0, 0.5, 1.0], SampleDepth::F32);
        let e = MaskEncoding::detect(&[&a]).unwrap();
        assert_eq!(e, MaskEncoding::GrayLevels { levels: vec![0.0, 0.5, 1.0] });
        let b = gray(&[-0.0, 1.0], SampleDepth::F32);
        let e = MaskEncoding::detect(&[&b]).unwrap();
        assert_eq!(e.decode(&b, p()).unwrap().classes, array![[0u8, 1]]);
    }

    #[test]
    fn label_values_counts() {
        let a = gray(&[0.0, 0.0, 255.0, 0.5, 0.5], SampleDepth::F32);
        let v = LabelValues::of(&a);
        assert_eq!(v.values, vec![([0.0; 3], 2), ([0.5; 3], 2), ([255.0; 3], 1)]);
        let e = MaskEncoding::GrayLevels { levels: vec![0.0, 0.5, 255.0] };
        assert_eq!(e.class_counts(&v, p()).unwrap(), vec![2, 2, 1]);
        let e = MaskEncoding::Binary { max: 255.0 };
        assert!(e.class_counts(&v, p()).is_err());
    }

    #[test]
    fn wrong_channel_count_is_an_error() {
        let a = rgb(&[[1.0, 2.0, 3.0]]);
        let e = MaskEncoding::Binary { max: 255.0 };
        assert!(e.decode(&a, p()).is_err());
        let one_hot = MaskEncoding::OneHot { max: 255.0 };
        let g = gray(&[255.0], SampleDepth::U8);
        assert!(matches!(one_hot.decode(&g, p()), Err(DataError::MaskEncoding { .. })));
    }

    #[test]
    fn mask_counts() {
        let m = Mask { classes: array![[0u8, 1], [1, 2]], num_classes: 3 };
        assert_eq!(m.class_counts(), vec![1, 2, 1]);
        assert_eq!((m.width(), m.height()), (2, 2));
    }
}
