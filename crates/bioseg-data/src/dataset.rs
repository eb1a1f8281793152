//! The on-disk dataset layout and paired image/label access.
//!
//! Layout (the "seed layout"):
//!
//! ```text
//! ROOT/<object_class>/<split>/image/NAME.png
//! ROOT/<object_class>/<split>/label/NAME.png   (or mask/NAME.png; .tif/.tiff also accepted)
//! ```
//!
//! Images and labels pair by file stem (`image/3.png` ↔ `label/3.png` or
//! `label/3.tif`) and are ordered naturally (`2` before `10`). Hidden files
//! (names starting with `.`) and files other than `.png`/`.tif`/`.tiff` are ignored.
//!
//! [`SegmentationDataset::open`] checks the whole dataset up front: it pairs the
//! files, reads every image header and every label (in parallel) and detects the
//! one [`MaskEncoding`] that fits all labels, so that later loads cannot fail on
//! anything but changes to the files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::env::natural_cmp;
use crate::error::DataError;
use crate::image::{Image, ImageFormat, image_dimensions, read_image};
use crate::mask::{LabelValues, Mask, MaskEncoding};

/// One image and its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplePair {
    /// The shared file stem (e.g. `"3"`).
    pub name: String,
    /// The image file.
    pub image: PathBuf,
    /// The label file.
    pub label: PathBuf,
}

/// A split of one object class: paired images and labels with a common mask encoding.
#[derive(Debug, Clone)]
pub struct SegmentationDataset {
    dir: PathBuf,
    image_dir: PathBuf,
    label_dir: PathBuf,
    pairs: Vec<SamplePair>,
    sizes: Vec<(usize, usize)>,
    encoding: MaskEncoding,
    num_classes: usize,
    class_frequencies: Vec<u64>,
}

/// The image files of `dir` (`.png`, `.tif`, `.tiff`; not hidden), in natural order of
/// their names.
///
/// Errors: the folder is missing ([`DataError::MissingFolder`]) or unreadable, holds no
/// image ([`DataError::EmptyFolder`]), or holds two images with the same stem
/// ([`DataError::DuplicateStem`]).
pub fn list_images(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, DataError> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(DataError::MissingFolder { path: dir.to_path_buf() });
    }
    let entries = std::fs::read_dir(dir).map_err(|e| DataError::read(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| DataError::read(dir, e))?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // `metadata` follows symbolic links, so linked files count.
        if hidden || !ImageFormat::is_image_path(&path) || !path.is_file() {
            continue;
        }
        files.push(path);
    }
    if files.is_empty() {
        return Err(DataError::EmptyFolder { path: dir.to_path_buf() });
    }
    files.sort_by(|a, b| natural_cmp(&file_name(a), &file_name(b)));
    let mut seen: HashMap<String, &PathBuf> = HashMap::new();
    for f in &files {
        if let Some(prev) = seen.insert(stem(f), f) {
            return Err(DataError::DuplicateStem { first: prev.clone(), second: f.clone() });
        }
    }
    Ok(files)
}

/// A file's name as text (lossy for non-UTF-8 names).
fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// A file's stem as text (lossy for non-UTF-8 names).
fn stem(p: &Path) -> String {
    p.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Reports the first of `root`, `root/class`, `root/class/split`, `.../image` that is missing.
fn check_folders(root: &Path, object_class: &str, split: &str) -> Result<(), DataError> {
    let mut p = root.to_path_buf();
    for part in ["", object_class, split, "image"] {
        if !part.is_empty() {
            p.push(part);
        }
        if !p.is_dir() {
            return Err(DataError::MissingFolder { path: p });
        }
    }
    Ok(())
}

/// What [`SegmentationDataset::open`] learns about one pair.
struct Scanned {
    size: (usize, usize),
    values: LabelValues,
}

impl SegmentationDataset {
    /// Opens `root/object_class/split` and detects the label encoding
    /// (see the module documentation for what is checked).
    pub fn open(root: impl AsRef<Path>, object_class: &str, split: &str) -> Result<Self, DataError> {
        Self::open_impl(root.as_ref(), object_class, split, None)
    }

    /// Like [`Self::open`], but the labels must fit `num_classes` classes: a label value
    /// that would need more is an error naming the file and the value.
    pub fn open_with_classes(
        root: impl AsRef<Path>,
        object_class: &str,
        split: &str,
        num_classes: usize,
    ) -> Result<Self, DataError> {
        Self::open_impl(root.as_ref(), object_class, split, Some(num_classes))
    }

    fn open_impl(root: &Path, object_class: &str, split: &str, num_classes: Option<usize>) -> Result<Self, DataError> {
        check_folders(root, object_class, split)?;
        let dir = root.join(object_class).join(split);
        let image_dir = dir.join("image");
        let label_dir = {
            let label = dir.join("label");
            let mask = dir.join("mask");
            if label.is_dir() {
                label
            } else if mask.is_dir() {
                mask
            } else {
                return Err(DataError::MissingLabelFolder { label, mask });
            }
        };
        let images = list_images(&image_dir)?;
        let labels = list_images(&label_dir)?;
        let pairs = pair_up(&images, &labels, &image_dir, &label_dir)?;

        let scanned: Vec<Result<Scanned, DataError>> = pairs.par_iter().map(scan_pair).collect();
        let scanned: Vec<Scanned> = scanned.into_iter().collect::<Result<_, _>>()?;

        let named: Vec<(&Path, &LabelValues)> =
            pairs.iter().zip(&scanned).map(|(p, s)| (p.label.as_path(), &s.values)).collect();
        let encoding = MaskEncoding::detect_named(&named, num_classes)?;
        let num_classes = num_classes.unwrap_or_else(|| encoding.num_classes());
        let mut class_frequencies = vec![0u64; num_classes];
        for (path, values) in &named {
            for (c, n) in encoding.class_counts(values, path)?.into_iter().enumerate() {
                if let Some(total) = class_frequencies.get_mut(c) {
                    *total += n;
                }
            }
        }
        Ok(SegmentationDataset {
            dir,
            image_dir,
            label_dir,
            sizes: scanned.iter().map(|s| s.size).collect(),
            pairs,
            encoding,
            num_classes,
            class_frequencies,
        })
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when the dataset has no pairs (never the case for an opened dataset).
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, in natural order of their names.
    pub fn pairs(&self) -> &[SamplePair] {
        &self.pairs
    }

    /// The split's folder (`root/object_class/split`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `image/` folder.
    pub fn image_dir(&self) -> &Path {
        &self.image_dir
    }

    /// The label folder (`label/` or `mask/`).
    pub fn label_dir(&self) -> &Path {
        &self.label_dir
    }

    /// `(width, height)` of pair `i` as seen when the dataset was opened.
    pub fn size(&self, i: usize) -> Result<(usize, usize), DataError> {
        self.check_index(i)?;
        Ok(self.sizes[i])
    }

    /// The label encoding detected for the whole dataset.
    pub fn encoding(&self) -> &MaskEncoding {
        &self.encoding
    }

    /// Number of classes (the caller's, or the encoding's).
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Pixel count of each class over all labels (`num_classes()` entries).
    pub fn class_frequencies(&self) -> &[u64] {
        &self.class_frequencies
    }

    /// Inverse-frequency class weights, `total / (present_classes * count)`, so that a
    /// class's weight times its frequency is the same for every class present and the
    /// frequency-weighted mean weight is 1. Classes with no pixels get weight 0.
    pub fn class_weights(&self) -> Vec<f32> {
        let total: u64 = self.class_frequencies.iter().sum();
        let present = self.class_frequencies.iter().filter(|&&n| n > 0).count();
        self.class_frequencies
            .iter()
            .map(|&n| if n == 0 { 0.0 } else { (total as f64 / (present as f64 * n as f64)) as f32 })
            .collect()
    }

    fn check_index(&self, i: usize) -> Result<(), DataError> {
        if i < self.pairs.len() {
            Ok(())
        } else {
            Err(DataError::IndexOutOfRange { path: self.dir.clone(), index: i, len: self.pairs.len() })
        }
    }

    /// Reads image `i`.
    pub fn load_image(&self, i: usize) -> Result<Image, DataError> {
        self.check_index(i)?;
        read_image(&self.pairs[i].image)
    }

    /// Reads and decodes label `i`.
    pub fn load_mask(&self, i: usize) -> Result<Mask, DataError> {
        self.check_index(i)?;
        let path = &self.pairs[i].label;
        let label = read_image(path)?;
        self.decode(&label, path)
    }

    /// Reads image `i` and its decoded label, checking that their sizes agree.
    pub fn load_pair(&self, i: usize) -> Result<(Image, Mask), DataError> {
        self.check_index(i)?;
        let pair = &self.pairs[i];
        let image = read_image(&pair.image)?;
        let label = read_image(&pair.label)?;
        if (image.width(), image.height()) != (label.width(), label.height()) {
            return Err(DataError::SizeMismatch {
                image: pair.image.clone(),
                label: pair.label.clone(),
                image_width: image.width(),
                image_height: image.height(),
                label_width: label.width(),
                label_height: label.height(),
            });
        }
        let mask = self.decode(&label, &pair.label)?;
        Ok((image, mask))
    }

    fn decode(&self, label: &Image, path: &Path) -> Result<Mask, DataError> {
        let mut mask = self.encoding.decode(label, path)?;
        mask.num_classes = self.num_classes;
        Ok(mask)
    }
}

/// Pairs images and labels by stem, reporting the first unpaired file of either side.
fn pair_up(
    images: &[PathBuf],
    labels: &[PathBuf],
    image_dir: &Path,
    label_dir: &Path,
) -> Result<Vec<SamplePair>, DataError> {
    let by_stem: HashMap<String, &PathBuf> = labels.iter().map(|l| (stem(l), l)).collect();
    let image_stems: HashMap<String, &PathBuf> = images.iter().map(|i| (stem(i), i)).collect();
    let lonely_images: Vec<&PathBuf> = images.iter().filter(|i| !by_stem.contains_key(&stem(i))).collect();
    if let Some(first) = lonely_images.first() {
        return Err(DataError::UnpairedImage {
            image: (*first).clone(),
            label_dir: label_dir.to_path_buf(),
            more: lonely_images.len() - 1,
        });
    }
    let lonely_labels: Vec<&PathBuf> = labels.iter().filter(|l| !image_stems.contains_key(&stem(l))).collect();
    if let Some(first) = lonely_labels.first() {
        return Err(DataError::UnpairedLabel {
            label: (*first).clone(),
            image_dir: image_dir.to_path_buf(),
            more: lonely_labels.len() - 1,
        });
    }
    Ok(images
        .iter()
        .map(|i| {
            let name = stem(i);
            SamplePair { label: by_stem[&name].clone(), image: i.clone(), name }
        })
        .collect())
}

/// Reads the image header and the full label of one pair.
fn scan_pair(pair: &SamplePair) -> Result<Scanned, DataError> {
    let (w, h) = image_dimensions(&pair.image)?;
    let (w, h) = (w as usize, h as usize);
    let label = read_image(&pair.label)?;
    if (label.width(), label.height()) != (w, h) {
        return Err(DataError::SizeMismatch {
            image: pair.image.clone(),
            label: pair.label.clone(),
            image_width: w,
            image_height: h,
            label_width: label.width(),
            label_height: label.height(),
        });
    }
    Ok(Scanned { size: (w, h), values: LabelValues::of(&label) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{write_gray_u8_png, write_gray_u8_tiff, write_rgb_u8_png};

    /// Writes `n` 4x3 pairs with labels 0/255 into `root/c/train/{image,label}`.
    fn make(root: &Path, names: &[&str], label_dir: &str) -> PathBuf {
        let dir = root.join("c/train");
        std::fs::create_dir_all(dir.join("image")).unwrap();
        std::fs::create_dir_all(dir.join(label_dir)).unwrap();
        for (k, name) in names.iter().enumerate() {
            let img: Vec<u8> = (0..12).map(|i| (i * 10 + k) as u8).collect();
            write_gray_u8_png(dir.join("image").join(format!("{name}.png")), 4, 3, &img).unwrap();
            let lab: Vec<u8> = (0..12).map(|i| if i < 4 { 0 } else { 255 }).collect();
            write_gray_u8_png(dir.join(label_dir).join(format!("{name}.png")), 4, 3, &lab).unwrap();
        }
        dir
    }

    #[test]
    fn opens_pairs_in_natural_order() {
        let d = tempfile::tempdir().unwrap();
        make(d.path(), &["10", "2", "1"], "label");
        let ds = SegmentationDataset::open(d.path(), "c", "train").unwrap();
        let names: Vec<&str> = ds.pairs().iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["1", "2", "10"]);
        assert_eq!(ds.len(), 3);
        assert_eq!(ds.encoding(), &MaskEncoding::Binary { max: 255.0 });
        assert_eq!(ds.num_classes(), 2);
        assert_eq!(ds.class_frequencies(), &[12, 24]);
        let w = ds.class_weights();
        assert!((w[0] - 1.5).abs() < 1e-6 && (w[1] - 0.75).abs() < 1e-6, "{w:?}");
        let (img, mask) = ds.load_pair(2).unwrap();
        assert_eq!(img.data[[0, 1, 0]], 10.0); // "10" was written first (k = 0)
        assert_eq!(mask.classes[[0, 0]], 0);
        assert_eq!(mask.classes[[2, 3]], 1);
        assert_eq!(ds.size(0).unwrap(), (4, 3));
        assert!(matches!(ds.load_pair(3), Err(DataError::IndexOutOfRange { .. })));
    }

    #[test]
    fn accepts_mask_folder_and_tif_labels() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["a"], "mask");
        std::fs::remove_file(dir.join("mask/a.png")).unwrap();
        write_gray_u8_tiff(dir.join("mask/a.tif"), 4, 3, &[1; 12]).unwrap();
        // Junk and hidden files are ignored.
        std::fs::write(dir.join("mask/notes.txt"), "x").unwrap();
        std::fs::write(dir.join("image/.hidden.png"), "x").unwrap();
        let ds = SegmentationDataset::open(d.path(), "c", "train").unwrap();
        assert_eq!(ds.pairs()[0].label, dir.join("mask/a.tif"));
        assert_eq!(ds.encoding(), &MaskEncoding::Indexed { num_classes: 2 });
        assert_eq!(ds.load_mask(0).unwrap().classes.sum(), 12);
    }

    #[test]
    fn missing_and_empty_folders() {
        let d = tempfile::tempdir().unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err();
        assert!(matches!(&err, DataError::MissingFolder { path } if path.ends_with("c")), "{err}");
        std::fs::create_dir_all(d.path().join("c/train/image")).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err();
        assert!(matches!(err, DataError::MissingLabelFolder { .. }), "{err}");
        std::fs::create_dir_all(d.path().join("c/train/label")).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err();
        assert!(matches!(&err, DataError::EmptyFolder { path } if path.ends_with("image")), "{err}");
    }

    #[test]
    fn unpaired_files_are_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1", "2", "3"], "label");
        std::fs::remove_file(dir.join("label/2.png")).unwrap();
        std::fs::remove_file(dir.join("label/3.png")).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err().to_string();
        assert!(err.contains("image/2.png") && err.contains("(and 1 more)"), "{err}");

        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1", "2"], "label");
        std::fs::remove_file(dir.join("image/2.png")).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err().to_string();
        assert!(err.contains("label/2.png has no image"), "{err}");
    }

    #[test]
    fn duplicate_stems_are_rejected() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1"], "label");
        write_gray_u8_tiff(dir.join("label/1.tif"), 4, 3, &[0; 12]).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err();
        assert!(matches!(err, DataError::DuplicateStem { .. }), "{err}");
    }

    #[test]
    fn size_mismatch_names_both_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["3"], "label");
        write_gray_u8_png(dir.join("label/3.png"), 2, 2, &[0, 255, 0, 255]).unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "size mismatch: image {} is 4x3 but label {} is 2x2",
                dir.join("image/3.png").display(),
                dir.join("label/3.png").display()
            )
        );
    }

    #[test]
    fn corrupt_label_is_named() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1", "2"], "label");
        std::fs::write(dir.join("label/2.png"), b"\x89PNG\r\n\x1a\nxx").unwrap();
        let err = SegmentationDataset::open(d.path(), "c", "train").unwrap_err();
        assert!(matches!(&err, DataError::CorruptImage { path, .. } if path.ends_with("label/2.png")), "{err}");
    }

    #[test]
    fn class_count_is_checked() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1", "2"], "label");
        write_gray_u8_png(dir.join("label/2.png"), 4, 3, &[0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        write_gray_u8_png(dir.join("label/1.png"), 4, 3, &[0; 12]).unwrap();
        let err = SegmentationDataset::open_with_classes(d.path(), "c", "train", 3).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataError::LabelValue { .. }), "{msg}");
        assert!(msg.contains("label/2.png") && msg.contains("value 3"), "{msg}");
        let ds = SegmentationDataset::open_with_classes(d.path(), "c", "train", 6).unwrap();
        assert_eq!(ds.num_classes(), 6);
        assert_eq!(ds.class_frequencies(), &[20, 1, 1, 1, 1, 0]);
        assert_eq!(ds.class_weights()[5], 0.0);
        assert_eq!(ds.load_mask(1).unwrap().num_classes, 6);
    }

    #[test]
    fn one_hot_rgb_dataset() {
        let d = tempfile::tempdir().unwrap();
        let dir = make(d.path(), &["1"], "label");
        let mut rgb = Vec::new();
        for i in 0..12 {
            let mut px = [0u8; 3];
            px[i % 3] = 255;
            rgb.extend(px);
        }
        write_rgb_u8_png(dir.join("label/1.png"), 4, 3, &rgb).unwrap();
        let ds = SegmentationDataset::open(d.path(), "c", "train").unwrap();
        assert_eq!(ds.encoding(), &MaskEncoding::OneHot { max: 255.0 });
        assert_eq!(ds.class_frequencies(), &[4, 4, 4]);
        let (_, m) = ds.load_pair(0).unwrap();
        assert_eq!(m.classes[[0, 2]], 2);
    }

    #[test]
    fn list_images_sorts_and_filters() {
        let d = tempfile::tempdir().unwrap();
        for n in ["b10.png", "b9.TIF", "a.tiff", "x.jpg"] {
            std::fs::write(d.path().join(n), b"").unwrap();
        }
        std::fs::create_dir(d.path().join("dir.png")).unwrap();
        let names: Vec<String> = list_images(d.path()).unwrap().iter().map(|p| file_name(p)).collect();
        assert_eq!(names, ["a.tiff", "b9.TIF", "b10.png"]);
        assert!(matches!(list_images(d.path().join("nope")), Err(DataError::MissingFolder { .. })));
    }
}
